//! The QEMU command line and the meaning of QEMU's exit status.

use std::path::{Path, PathBuf};

use omega_arch::exit::ExitCode;

use crate::shape::VmShape;

/// Everything that shapes the QEMU command line. The launcher and the QEMU tests both build
/// their command lines here.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub qemu: String,
    pub image: PathBuf,
    /// `-smp` without SEV-SNP (with it, the shape's vCPU count is used).
    pub vcpus: u32,
    pub memory_mib: u32,
    pub kvm: bool,
    /// Launch as an SEV-SNP guest of this shape (implies KVM): its `-cpu` model, vCPUs and
    /// policy go on the command line, and [`VmShape::launch_digest`] is its digest.
    pub sev_snp: Option<VmShape>,
    /// Unix socket of the channel chardev (QEMU is the server); None: no channel device.
    pub socket: Option<PathBuf>,
    /// The kernel command line, through fw_cfg `opt/omega/cmdline` (test-hooks images read
    /// `test=...` there).
    pub cmdline: Option<String>,
    /// A QEMU monitor on this unix socket (tests use `pmemsave`).
    pub monitor_socket: Option<PathBuf>,
    /// Appended as they are, last (tests).
    pub extra_args: Vec<String>,
}

impl QemuConfig {
    /// One vCPU, 128 MiB, TCG, no channel.
    pub fn new(qemu: impl Into<String>, image: impl Into<PathBuf>) -> QemuConfig {
        QemuConfig {
            qemu: qemu.into(),
            image: image.into(),
            vcpus: 1,
            memory_mib: 128,
            kvm: false,
            sev_snp: None,
            socket: None,
            cmdline: None,
            monitor_socket: None,
            extra_args: Vec::new(),
        }
    }

    /// The argument vector (without the program name).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &str| a.push(s.to_string());
        // SNP needs KVM: there is no TCG implementation of SEV.
        let kvm = self.kvm || self.sev_snp.is_some();
        push("-machine");
        if self.sev_snp.is_some() {
            push("microvm,confidential-guest-support=sev0,memory-backend=ram0");
        } else {
            push("microvm");
        }
        push("-accel");
        push(if kvm { "kvm" } else { "tcg" });
        if let Some(shape) = &self.sev_snp {
            // SECURITY: the model sets the CPUID signature in every VMSA, so it is part of
            // the launch digest: stated here, from the same shape the digest is computed
            // for, never left to QEMU's default.
            push("-cpu");
            a.push(shape.cpu.to_string());
        } else if !kvm {
            // TCG's `max` model has RDRAND/RDSEED, which the monitor needs for its keys.
            // Under KVM the default model keeps nested setups (where `-cpu host` aborts)
            // working.
            push("-cpu");
            push("max");
        }
        a.push("-smp".into());
        a.push(self.sev_snp.map_or(self.vcpus, |s| s.vcpus).to_string());
        a.push("-m".into());
        a.push(format!("{}M", self.memory_mib));
        if let Some(shape) = &self.sev_snp {
            // As in QEMU's docs/system/i386/amd-memory-encryption.rst: private memory comes
            // from guest_memfd, shared memory from this memfd backend.
            a.push("-object".into());
            a.push(format!(
                "memory-backend-memfd,id=ram0,size={}M,share=true",
                self.memory_mib
            ));
            a.push("-object".into());
            a.push(format!(
                "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy={:#x}",
                shape.policy
            ));
        }
        a.push("-bios".into());
        a.push(self.image.display().to_string());
        for s in [
            "-nographic",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ] {
            a.push(s.into());
        }
        if let Some(c) = &self.cmdline {
            a.push("-fw_cfg".into());
            a.push(format!("name=opt/omega/cmdline,string={}", escape(c)));
        }
        if let Some(socket) = &self.socket {
            a.push("-device".into());
            a.push("virtio-serial-device".into());
            a.push("-chardev".into());
            a.push(format!(
                "socket,id=omega0,path={},server=on,wait=on",
                escape_path(socket)
            ));
            a.push("-device".into());
            // Serial port 1, not a virtconsole: QEMU drops console data when the socket is
            // full, but throttles a serial port, so backpressure reaches the guest
            // (docs/monitor.md).
            a.push("virtserialport,chardev=omega0,nr=1,name=omega.channel".into());
        }
        if let Some(m) = &self.monitor_socket {
            a.push("-monitor".into());
            a.push(format!("unix:{},server=on,wait=off", escape_path(m)));
        }
        a.extend(self.extra_args.iter().cloned());
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

/// Why KVM on this host is unlikely to run the image at native speed, if that can be told
/// from the host alone. Some cloud VMs offer `/dev/kvm` through PVM (the `kvm_pvm` module,
/// KVM without hardware virtualization): a guest that is not PVM-aware (Omega's image, a
/// stock Linux kernel) is then run through KVM's instruction emulator, one exit per
/// instruction, far slower than TCG (docs/host.md, "KVM on nested hosts").
pub fn kvm_caveat() -> Option<String> {
    kvm_caveat_in(Path::new("/sys/module"))
}

fn kvm_caveat_in(modules: &Path) -> Option<String> {
    modules.join("kvm_pvm").exists().then(|| {
        "/dev/kvm here is PVM (module kvm_pvm): it emulates guests that are not PVM-aware \
         instruction by instruction, far slower than TCG; use TCG (the default) on this host"
            .to_string()
    })
}

/// QEMU option values separate properties with ',' and escape a literal ',' as ",,".
fn escape(v: &str) -> String {
    v.replace(',', ",,")
}

fn escape_path(p: &Path) -> String {
    escape(&p.display().to_string())
}

/// QEMU's status when the image ends with `ExitCode::Success` (isa-debug-exit).
pub const EXIT_SUCCESS: i32 = ExitCode::Success.qemu_status();
/// QEMU's status when the image ends with `ExitCode::Failure` (panic, exception, refusal).
pub const EXIT_FAILURE: i32 = ExitCode::Failure.qemu_status();

/// What a QEMU exit status means for an Omega image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuOutcome {
    /// [`EXIT_SUCCESS`] (33): the image finished cleanly.
    CleanExit,
    /// [`EXIT_FAILURE`] (35): the image reported a failure.
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
            (Some(EXIT_SUCCESS), _) => QemuOutcome::CleanExit,
            (Some(EXIT_FAILURE), _) => QemuOutcome::ImageFailure,
            (Some(0), _) => QemuOutcome::ResetOrTripleFault,
            (Some(c), _) => QemuOutcome::QemuError(c),
            (None, Some(s)) => QemuOutcome::Signal(s),
            (None, None) => QemuOutcome::QemuError(-1),
        }
    }

    pub fn message(&self) -> String {
        match self {
            QemuOutcome::CleanExit => {
                format!("the image exited cleanly (QEMU status {EXIT_SUCCESS})")
            }
            QemuOutcome::ImageFailure => format!(
                "the image reported a failure (QEMU status {EXIT_FAILURE}); see the guest output above"
            ),
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
            QemuOutcome::ImageFailure => EXIT_FAILURE,
            QemuOutcome::ResetOrTripleFault => 3,
            QemuOutcome::QemuError(_) => 2,
            QemuOutcome::Signal(_) => 4,
            QemuOutcome::Interrupted => 130,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_is_named_as_the_reason_kvm_is_slow() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(kvm_caveat_in(dir.path()), None);
        std::fs::create_dir(dir.path().join("kvm_intel")).unwrap();
        assert_eq!(kvm_caveat_in(dir.path()), None);
        std::fs::create_dir(dir.path().join("kvm_pvm")).unwrap();
        assert!(kvm_caveat_in(dir.path()).unwrap().contains("PVM"));
    }
}
