//! The launcher's log directory belongs to one boot (issue 13, finding 7), with the real
//! image: a second boot into a used directory is refused before QEMU starts, and the first
//! boot's files are untouched and still verify, with the verifier command the launcher
//! printed: the log key from the monitor's evidence (plain QEMU: unattested, so with
//! `--allow-unattested`), not a bare key file. (A write error while storing the log is
//! performed in `host/tests/launcher.rs`.)

use std::path::Path;
use std::process::{Command, Output};

use qemu_tests::cli::text;
use qemu_tests::{image, measurements, printed_verifier_commands, workspace_bin};

const FILES: [&str; 5] = [
    "provenance.log",
    "log.vkey",
    "checkpoint.note",
    "nonce.hex",
    "evidence/log.bin",
];

/// A one-agent bundle in `dir/bundle` (written once).
fn bundle(dir: &Path) -> std::path::PathBuf {
    let b = dir.join("bundle");
    if b.exists() {
        return b;
    }
    std::fs::create_dir(&b).unwrap();
    std::fs::write(b.join("hello.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(b.join("policy.bin"), b"policy").unwrap();
    std::fs::write(
        b.join("manifest.json"),
        omega_bundle::Manifest::json("policy.bin", [("hello", "hello.wasm")]),
    )
    .unwrap();
    b
}

fn omega_run(dir: &Path, logs: &Path) -> Output {
    Command::new(workspace_bin("omega-host", "omega"))
        .arg("run")
        .arg("--image")
        .arg(image())
        .arg("--bundle")
        .arg(bundle(dir))
        .arg("--log-dir")
        .arg(logs)
        .args(["--connect-timeout", "60"])
        .output()
        .unwrap()
}

/// Runs the `verify-log` command the launcher printed; it must pass.
fn verify_log(printed: &str) {
    let commands = printed_verifier_commands(printed);
    let cmd = commands
        .iter()
        .find(|c| c[0] == "verify-log")
        .unwrap_or_else(|| panic!("no verify-log command printed\n{printed}"));
    assert!(cmd.iter().any(|a| a == "--evidence"), "{cmd:?}");
    assert!(cmd.iter().any(|a| a == "--allow-unattested"), "{cmd:?}");
    let v = measurements(cmd);
    assert!(v.status.success(), "{cmd:?}\n{}", text(&v));
}

#[test]
fn a_second_boot_into_a_used_log_directory_is_refused_and_the_first_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let first = omega_run(dir.path(), &logs);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let before: Vec<Vec<u8>> = FILES
        .iter()
        .map(|f| std::fs::read(logs.join(f)).unwrap())
        .collect();
    let printed = String::from_utf8_lossy(&first.stdout).into_owned();
    verify_log(&printed);

    let second = omega_run(dir.path(), &logs);
    let out = text(&second);
    assert_eq!(second.status.code(), Some(1), "{out}");
    assert!(out.contains("belongs to one boot"), "{out}");
    assert!(!out.contains("QEMU started"), "{out}");
    for (f, b) in FILES.iter().zip(&before) {
        assert_eq!(&std::fs::read(logs.join(f)).unwrap(), b, "{f} changed");
    }
    verify_log(&printed);
}
