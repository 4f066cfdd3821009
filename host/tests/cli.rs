use std::path::PathBuf;
use std::process::Command;

use omega_host::{QemuConfig, QemuOutcome};

fn cfg() -> QemuConfig {
    QemuConfig {
        qemu: "qemu-system-x86_64".into(),
        image: PathBuf::from("/images/omega.bin"),
        vcpus: 2,
        memory_mib: 256,
        kvm: false,
        sev_snp: false,
        socket: PathBuf::from("/run/omega/omega.sock"),
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
fn sev_snp_command_line() {
    let a = QemuConfig {
        sev_snp: true,
        ..cfg()
    }
    .args();
    let s = a.join(" ");
    assert!(s.starts_with("-machine microvm,confidential-guest-support=sev0,memory-backend=ram0 -accel kvm -smp 2 -m 256M"), "{s}");
    assert!(s.contains("-object memory-backend-memfd,id=ram0,size=256M,share=true"));
    assert!(s.contains("-object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1"));
    assert!(!s.contains("-cpu"));
}

#[test]
fn socket_paths_with_commas_and_spaces_are_escaped() {
    let c = QemuConfig {
        socket: PathBuf::from("/tmp/a,b c/omega.sock"),
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

#[test]
fn exit_status_mapping() {
    use QemuOutcome::*;
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
        "--log-dir",
        "--proxy",
        "--tool-gateway",
        "--echo",
        "Exit status",
    ] {
        assert!(h.contains(opt), "{opt} missing from:\n{h}");
    }
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
    let img = dir.path().join("omega.bin");
    std::fs::write(&img, b"not an image").unwrap();
    let out = omega()
        .args(["run", "--image", img.to_str().unwrap(), "--qemu", "false"])
        .args(["--log-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("QEMU failed with status 1"));
}
