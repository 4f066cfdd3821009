use std::path::PathBuf;
use std::process::{Command, Output};

use omega_host::shape::VcpuType;
use omega_host::{QemuConfig, QemuOutcome, VmShape};

fn cfg() -> QemuConfig {
    QemuConfig {
        vcpus: 2,
        memory_mib: 256,
        socket: Some(PathBuf::from("/run/omega/omega.sock")),
        ..QemuConfig::new("qemu-system-x86_64", "/images/omega.bin")
    }
}

#[test]
fn tcg_command_line() {
    assert_eq!(
        cfg().command_line(),
        "qemu-system-x86_64 -machine microvm -accel tcg -cpu max -smp 2 -m 256M -bios /images/omega.bin \
         -nographic -no-reboot -device 'isa-debug-exit,iobase=0xf4,iosize=0x04' -device virtio-serial-device \
         -chardev 'socket,id=omega0,path=/run/omega/omega.sock,server=on,wait=on' -device 'virtserialport,chardev=omega0,nr=1,name=omega.channel'"
    );
}

#[test]
fn kvm_command_line_has_no_cpu_max() {
    let a = QemuConfig { kvm: true, ..cfg() }.args();
    let s = a.join(" ");
    assert!(s.contains("-accel kvm"));
    assert!(!s.contains("-cpu"));
    assert!(!s.contains("tcg"));
}

#[test]
fn sev_snp_command_line_states_the_whole_shape() {
    let shape = VmShape {
        cpu: VcpuType::EpycMilan,
        ..VmShape::new(2)
    };
    let a = QemuConfig {
        sev_snp: Some(shape),
        ..cfg()
    }
    .args();
    let s = a.join(" ");
    assert!(s.starts_with("-machine microvm,confidential-guest-support=sev0,memory-backend=ram0 -accel kvm -cpu EPYC-Milan -smp 2 -m 256M"), "{s}");
    assert!(s.contains("-object memory-backend-memfd,id=ram0,size=256M,share=true"));
    assert!(
        s.contains("-object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000")
    );
    // The shape's vCPU count is the one launched.
    let four = QemuConfig {
        sev_snp: Some(VmShape::new(4)),
        ..cfg()
    };
    assert!(four.args().join(" ").contains("-cpu EPYC-v4 -smp 4 "));
}

#[test]
fn shapes_that_cannot_be_launched_or_measured_are_refused() {
    use omega_host::shape::ShapeError;
    assert_eq!(VmShape::new(1).check(), Ok(()));
    let bad = |s: VmShape| s.check().unwrap_err();
    assert_eq!(bad(VmShape::new(0)), ShapeError::NoVcpus);
    assert!(matches!(
        bad(VmShape {
            cpu: VcpuType::Signature(0xa00f11),
            ..VmShape::new(1)
        }),
        ShapeError::RawSignature(0xa00f11)
    ));
    assert_eq!(
        bad(VmShape {
            guest_features: 0x5,
            ..VmShape::new(1)
        }),
        ShapeError::GuestFeatures(0x5)
    );
    for policy in [
        0x10000,
        0x30000 | 1 << 19,
        0x30000 | 1 << 18,
        0x30000 | 1 << 30,
    ] {
        assert!(
            matches!(
                bad(VmShape {
                    policy,
                    ..VmShape::new(1)
                }),
                ShapeError::Policy { .. }
            ),
            "{policy:#x}"
        );
    }
    // A file that is not an image has no digest.
    assert!(matches!(
        VmShape::new(1).launch_digest(b"not an image"),
        Err(ShapeError::Digest(_))
    ));
}

#[test]
fn print_command_refuses_unknown_models_and_unmeasurable_images() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("omega.bin");
    std::fs::write(&img, b"not an image").unwrap();
    let run = |extra: &[&str]| {
        omega()
            .args([
                "print-command",
                "--image",
                img.to_str().unwrap(),
                "--sev-snp",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let host = run(&["--cpu", "host"]);
    assert_ne!(host.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&host.stderr).contains("unknown vCPU type"));
    let debug = run(&["--snp-policy", "0xb0000"]);
    assert_eq!(debug.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&debug.stderr).contains("DEBUG"));
    let unmeasurable = run(&[]);
    assert_eq!(unmeasurable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unmeasurable.stderr).contains("cannot be measured"));
    // --cpu without --sev-snp is a usage error.
    let out = omega()
        .args(["print-command", "--image", "x", "--cpu", "EPYC-v4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn socket_paths_with_commas_and_spaces_are_escaped() {
    let c = QemuConfig {
        socket: Some(PathBuf::from("/tmp/a,b c/omega.sock")),
        ..cfg()
    };
    assert!(
        c.args().contains(
            &"socket,id=omega0,path=/tmp/a,,b c/omega.sock,server=on,wait=on".to_string()
        )
    );
    assert!(
        c.command_line()
            .contains("'socket,id=omega0,path=/tmp/a,,b c/omega.sock,server=on,wait=on'")
    );
}

/// The options the QEMU tests add: kernel command line, monitor socket, no channel.
#[test]
fn test_options_are_escaped_and_the_channel_is_optional() {
    let c = QemuConfig {
        cmdline: Some("test=a,b".into()),
        monitor_socket: Some(PathBuf::from("/tmp/m,1.sock")),
        extra_args: vec!["-cpu".into(), "qemu64".into()],
        ..QemuConfig::new("qemu-system-x86_64", "/images/omega.bin")
    };
    let a = c.args();
    let s = a.join(" ");
    assert!(
        s.contains("-fw_cfg name=opt/omega/cmdline,string=test=a,,b"),
        "{s}"
    );
    assert!(
        s.contains("-monitor unix:/tmp/m,,1.sock,server=on,wait=off"),
        "{s}"
    );
    assert!(s.ends_with("-cpu qemu64"), "{s}");
    assert!(!s.contains("virtio-serial"), "{s}");
    assert!(s.contains("-smp 1 -m 128M"), "{s}");
}

#[test]
fn exit_status_mapping() {
    use QemuOutcome::*;
    // isa-debug-exit turns the image's code v into (v << 1) | 1.
    assert_eq!(omega_host::qemu::EXIT_SUCCESS, 33);
    assert_eq!(omega_host::qemu::EXIT_FAILURE, 35);
    assert_eq!(QemuOutcome::from_status(Some(33), None), CleanExit);
    assert_eq!(QemuOutcome::from_status(Some(35), None), ImageFailure);
    assert_eq!(QemuOutcome::from_status(Some(0), None), ResetOrTripleFault);
    assert_eq!(QemuOutcome::from_status(Some(1), None), QemuError(1));
    assert_eq!(QemuOutcome::from_status(None, Some(9)), Signal(9));
    assert_eq!(CleanExit.exit_code(), 0);
    for o in [
        ImageFailure,
        ResetOrTripleFault,
        QemuError(1),
        Signal(9),
        Interrupted,
    ] {
        assert_ne!(o.exit_code(), 0, "{o:?}");
    }
    assert!(ResetOrTripleFault.message().contains("triple"));
}

fn omega() -> Command {
    Command::new(env!("CARGO_BIN_EXE_omega"))
}

#[test]
fn help_documents_every_option() {
    let out = omega().args(["run", "--help"]).output().unwrap();
    assert!(out.status.success());
    let h = String::from_utf8(out.stdout).unwrap();
    for opt in [
        "--image",
        "--bundle",
        "--vcpus",
        "--memory",
        "--kvm",
        "--sev-snp",
        "--cpu",
        "--snp-policy",
        "--log-dir",
        "--proxy",
        "--tool-gateway",
        "--echo",
        "--peer-listen",
        "--peer-connect",
        "--fleet-connect",
        "signed or verified inside the monitor",
        "--nonce",
        "--simulated-psp",
        "TESTS ONLY",
        "Exit status",
    ] {
        assert!(h.contains(opt), "{opt} missing from:\n{h}");
    }
    // The tests-only simulated PSP is left out of the short help.
    let out = omega().args(["run", "-h"]).output().unwrap();
    let short = String::from_utf8(out.stdout).unwrap();
    assert!(
        short.contains("--nonce") && !short.contains("--simulated-psp"),
        "{short}"
    );
}

/// The nonce is 32 bytes of hex; the simulated PSP never goes with a real SNP launch.
#[test]
fn bad_nonces_and_a_simulated_psp_under_snp_are_refused() {
    for bad in ["", "00", &"0".repeat(63), &"0".repeat(65), &"g".repeat(64)] {
        let out = omega()
            .args(["run", "--image", "/nonexistent", "--nonce", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains("64 hex digits"), "{bad:?}: {err}");
    }
    let out = omega()
        .args([
            "run",
            "--image",
            "/nonexistent",
            "--sev-snp",
            "--simulated-psp",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

/// `omega run` of a file that is not an image with a "QEMU" that fails at once (exit 2),
/// into the log directory `logs`, with `extra` arguments.
fn run_failing_qemu(dir: &std::path::Path, logs: &std::path::Path, extra: &[&str]) -> Output {
    let img = dir.join("omega.bin");
    std::fs::write(&img, b"not an image").unwrap();
    omega()
        .args(["run", "--image", img.to_str().unwrap(), "--qemu", "false"])
        .args(["--log-dir", logs.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

/// The nonce reaches the log directory before QEMU starts.
#[test]
fn the_nonce_is_written_to_the_log_directory() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let nonce = "0123456789abcdef".repeat(4);
    let out = run_failing_qemu(dir.path(), &logs, &["--nonce", &nonce]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("omega: verifier nonce {nonce}")),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(logs.join("nonce.hex")).unwrap(),
        format!("{nonce}\n")
    );
    // Without --nonce: 32 fresh random bytes each run.
    let drawn = |logs: &std::path::Path| {
        run_failing_qemu(dir.path(), logs, &[]);
        std::fs::read_to_string(logs.join("nonce.hex")).unwrap()
    };
    let (a, b) = (drawn(&dir.path().join("a")), drawn(&dir.path().join("b")));
    assert_eq!(a.trim().len(), 64);
    assert_ne!(a, b);
}

#[test]
fn print_command_matches_the_library() {
    let out = omega()
        .args([
            "print-command",
            "--image",
            "/images/omega.bin",
            "--vcpus",
            "2",
            "--memory",
            "256",
        ])
        .args(["--socket", "/run/omega/omega.sock"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        cfg().command_line()
    );
}

#[test]
fn missing_image_fails_with_a_message() {
    let out = omega()
        .args(["run", "--image", "/nonexistent/omega.bin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn qemu_errors_map_to_status_2() {
    // A "QEMU" that fails at once: the launcher reports a QEMU error, not an image failure.
    let dir = tempfile::tempdir().unwrap();
    let out = run_failing_qemu(dir.path(), dir.path(), &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("QEMU failed with status 1"));
}

/// A bundle over the monitor's limits is refused before QEMU starts: exit 1 with the
/// contract's reason, and the stand-in QEMU (which would leave a marker) never runs.
#[test]
fn an_oversized_bundle_is_refused_before_qemu_starts() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("omega.bin");
    std::fs::write(&img, b"not an image").unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(
        bundle.join("manifest.json"),
        omega_bundle::Manifest::json("policy.bin", [("a", "a.wasm")]),
    )
    .unwrap();
    std::fs::write(bundle.join("policy.bin"), b"OMPL").unwrap();
    let mut module = b"\0asm".to_vec();
    module.resize(omega_bundle::MAX_TOTAL_BYTES as usize, 0);
    std::fs::write(bundle.join("a.wasm"), &module).unwrap();
    let marker = dir.path().join("qemu-ran");
    let qemu = dir.path().join("qemu.sh");
    std::fs::write(&qemu, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = omega()
        .args(["run", "--image", img.to_str().unwrap()])
        .args(["--bundle", bundle.to_str().unwrap()])
        .args(["--qemu", qemu.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("(limit {})", omega_bundle::MAX_TOTAL_BYTES)),
        "{err}"
    );
    assert!(!marker.exists(), "QEMU was started");
}
