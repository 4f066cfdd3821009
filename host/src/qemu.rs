//! The QEMU command line and the meaning of QEMU's exit status.

use std::path::{Path, PathBuf};

/// Everything that shapes the QEMU command line.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub qemu: String,
    pub image: PathBuf,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub kvm: bool,
    pub sev_snp: bool,
    /// Unix socket of the channel chardev (QEMU is the server).
    pub socket: PathBuf,
}

impl QemuConfig {
    /// The argument vector (without the program name).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &str| a.push(s.to_string());
        // SNP needs KVM: there is no TCG implementation of SEV.
        let kvm = self.kvm || self.sev_snp;
        push("-machine");
        if self.sev_snp {
            push("microvm,confidential-guest-support=sev0,memory-backend=ram0");
        } else {
            push("microvm");
        }
        push("-accel");
        push(if kvm { "kvm" } else { "tcg" });
        if !kvm {
            push("-cpu");
            push("max");
        }
        push("-smp");
        a.push(self.vcpus.to_string());
        a.push("-m".into());
        a.push(format!("{}M", self.memory_mib));
        if self.sev_snp {
            // As in QEMU's docs/system/i386/amd-memory-encryption.rst: private memory comes
            // from guest_memfd, shared memory from this memfd backend.
            a.push("-object".into());
            a.push(format!(
                "memory-backend-memfd,id=ram0,size={}M,share=true",
                self.memory_mib
            ));
            a.push("-object".into());
            a.push("sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1".into());
        }
        a.push("-bios".into());
        a.push(self.image.display().to_string());
        for s in [
            "-nographic",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-device",
            "virtio-serial-device",
            "-chardev",
        ] {
            a.push(s.into());
        }
        a.push(format!(
            "socket,id=omega0,path={},server=on,wait=on",
            chardev_escape(&self.socket)
        ));
        a.push("-device".into());
        // Serial port 1, not a virtconsole: QEMU drops console data when the socket is full,
        // but throttles a serial port, so backpressure reaches the guest (docs/monitor.md).
        a.push("virtserialport,chardev=omega0,nr=1,name=omega.channel".into());
        a
    }

    /// The command line as one shell-quoted string, for operators to audit and re-run.
    pub fn command_line(&self) -> String {
        let mut parts = vec![self.qemu.clone()];
        parts.extend(self.args());
        parts
            .iter()
            .map(|p| {
                shlex::try_quote(p)
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| p.clone())
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// QEMU option values separate properties with ',' and escape a literal ',' as ",,".
fn chardev_escape(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// What a QEMU exit status means for an Omega image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuOutcome {
    /// isa-debug-exit with 0x10: (0x10 << 1) | 1 = 33. The image finished cleanly.
    CleanExit,
    /// isa-debug-exit with 0x11: 35. The image reported a failure.
    ImageFailure,
    /// 0: with -no-reboot, QEMU exits 0 on a guest reset, i.e. a triple fault.
    ResetOrTripleFault,
    /// Any other status: QEMU itself failed (bad option, missing KVM, ...).
    QemuError(i32),
    /// Killed by a signal not sent by the launcher.
    Signal(i32),
    /// The launcher was interrupted (Ctrl-C / SIGTERM) and stopped QEMU.
    Interrupted,
}

impl QemuOutcome {
    pub fn from_status(code: Option<i32>, signal: Option<i32>) -> Self {
        match (code, signal) {
            (Some(33), _) => QemuOutcome::CleanExit,
            (Some(35), _) => QemuOutcome::ImageFailure,
            (Some(0), _) => QemuOutcome::ResetOrTripleFault,
            (Some(c), _) => QemuOutcome::QemuError(c),
            (None, Some(s)) => QemuOutcome::Signal(s),
            (None, None) => QemuOutcome::QemuError(-1),
        }
    }

    pub fn message(&self) -> String {
        match self {
            QemuOutcome::CleanExit => "the image exited cleanly (QEMU status 33)".into(),
            QemuOutcome::ImageFailure => {
                "the image reported a failure (QEMU status 35); see the guest output above".into()
            }
            QemuOutcome::ResetOrTripleFault => {
                "the guest reset or triple-faulted (QEMU status 0 under -no-reboot)".into()
            }
            QemuOutcome::QemuError(c) => {
                format!("QEMU failed with status {c} (QEMU error, not the image)")
            }
            QemuOutcome::Signal(s) => format!("QEMU was killed by signal {s}"),
            QemuOutcome::Interrupted => "interrupted: QEMU stopped by the launcher".into(),
        }
    }

    /// Exit code of `omega run`: 0 only for a clean exit.
    pub fn exit_code(&self) -> i32 {
        match self {
            QemuOutcome::CleanExit => 0,
            QemuOutcome::ImageFailure => 35,
            QemuOutcome::ResetOrTripleFault => 3,
            QemuOutcome::QemuError(_) => 2,
            QemuOutcome::Signal(_) => 4,
            QemuOutcome::Interrupted => 130,
        }
    }
}
