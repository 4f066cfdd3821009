//! The `omega` binary as a process: signals, and (with an image) a whole run under QEMU.
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn omega() -> Command {
    Command::new(env!("CARGO_BIN_EXE_omega"))
}

#[test]
fn sigterm_stops_qemu_and_exits_130() {
    // A stand-in for QEMU that never creates the socket and would run for a minute.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-qemu");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let img = dir.path().join("omega.bin");
    std::fs::write(&img, b"image").unwrap();
    let mut child = omega()
        .args([
            "run",
            "--image",
            img.to_str().unwrap(),
            "--qemu",
            fake.to_str().unwrap(),
        ])
        .args(["--log-dir", dir.path().to_str().unwrap(), "--log", "debug"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sending a signal to our own child process by pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let t0 = Instant::now();
    let status = child.wait().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    // The fake QEMU is gone (killed and reaped by the launcher).
    let pid: u32 = err
        .split("QEMU started (pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .expect("pid in the log");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "fake QEMU {pid} still running"
    );
}

/// The image (`OMEGA_IMAGE`, built from this tree) and QEMU, or None after saying why.
/// Under CI a missing prerequisite fails the test instead.
fn image_and_qemu() -> Option<String> {
    let image = std::env::var("OMEGA_IMAGE")
        .ok()
        .filter(|p| std::path::Path::new(p).is_file());
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = match (&image, qemu) {
        (Some(_), true) => return image,
        (None, _) => "OMEGA_IMAGE (an image built from this tree)",
        (Some(_), false) => "qemu-system-x86_64",
    };
    assert!(std::env::var_os("CI").is_none(), "missing {missing}");
    eprintln!("SKIP: missing {missing} (set CI to make this fail)");
    None
}

/// Needs an image and QEMU: `OMEGA_IMAGE=target/omega/omega.bin cargo test -p omega-host
/// --test launcher`.
#[test]
fn full_run_delivers_the_bundle_and_stores_the_log() {
    let Some(image) = image_and_qemu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(bundle.join("hello.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(bundle.join("policy.bin"), b"policy").unwrap();
    std::fs::write(
        bundle.join("manifest.json"),
        omega_bundle::Manifest::json("policy.bin", [("hello", "hello.wasm")]),
    )
    .unwrap();
    let logs = dir.path().join("logs");
    let out = omega()
        .args([
            "run",
            "--image",
            &image,
            "--bundle",
            bundle.to_str().unwrap(),
        ])
        .args([
            "--log-dir",
            logs.to_str().unwrap(),
            "--connect-timeout",
            "60",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("omega: qemu-system-x86_64 -machine microvm"),
        "{stdout}"
    );
    assert!(stderr.contains("bundle sent: 3 files"), "{stderr}");
    assert!(stderr.contains("the image exited cleanly"), "{stderr}");
    assert!(
        std::fs::metadata(logs.join("provenance.log"))
            .unwrap()
            .len()
            > 0
    );
    assert!(
        std::fs::read_to_string(logs.join("log.vkey"))
            .unwrap()
            .contains('+')
    );
    assert!(
        std::fs::metadata(logs.join("checkpoint.note"))
            .unwrap()
            .len()
            > 0
    );
    assert!(!logs.join("omega.sock").exists(), "socket removed");
}
