//! The shape of the SEV-SNP VM the launcher starts: everything that goes into its launch
//! digest (vCPU model and count, VMSA features) and its guest policy. One [`VmShape`] value
//! builds the QEMU command line ([`crate::QemuConfig`]) and computes the digest printed for
//! it, so the two cannot disagree.

use std::fmt;

pub use launch_digest::{VcpuType, cpu_sig};

/// The VMSA `SEV_FEATURES` of every vCPU: SNP active only. QEMU 10's `sev-snp-guest` has no
/// property for the others (KVM starts the guest with none), so no other value can be
/// launched, and a shape asking for one is refused.
pub const QEMU_GUEST_FEATURES: u64 = 0x1;
/// The vCPU model when none is asked for (what `image-build` prints the digest for).
pub const DEFAULT_CPU: VcpuType = VcpuType::EpycV4;
/// Guest policy: SMT allowed (bit 16), the must-be-one bit 17, ABI 0.0; no debug, no
/// migration agent (QEMU's default too, but stated on the command line).
pub const DEFAULT_POLICY: u64 = 0x30000;

/// SNP guest policy bits (SEV-SNP ABI, `GUEST_POLICY`).
mod policy {
    pub const RESERVED_MBO: u64 = 1 << 17;
    pub const MIGRATE_MA: u64 = 1 << 18;
    pub const DEBUG: u64 = 1 << 19;
    /// Bits 0..=24 are defined (ABI version, SMT, MBO, MIGRATE_MA, DEBUG, SINGLE_SOCKET,
    /// CXL_ALLOW, MEM_AES_256_XTS, RAPL_DIS, CIPHERTEXT_HIDING).
    pub const DEFINED: u64 = (1 << 25) - 1;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("SNP needs at least one vCPU")]
    NoVcpus,
    #[error(
        "vCPU signature {0:#x} has no QEMU -cpu model: the launcher launches named models only"
    )]
    RawSignature(u32),
    #[error(
        "guest features {0:#x} cannot be launched: QEMU's sev-snp-guest sets {QEMU_GUEST_FEATURES:#x} only"
    )]
    GuestFeatures(u64),
    #[error("guest policy {policy:#x} refused: {why}")]
    Policy { policy: u64, why: &'static str },
    #[error("the image cannot be measured for this shape: {0}")]
    Digest(String),
}

/// An SEV-SNP VM as launched: `-cpu cpu -smp vcpus`, VMSA features `guest_features`,
/// `sev-snp-guest,policy=policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmShape {
    pub cpu: VcpuType,
    pub vcpus: u32,
    pub guest_features: u64,
    pub policy: u64,
}

impl VmShape {
    /// `vcpus` of the default model, features and policy.
    pub fn new(vcpus: u32) -> VmShape {
        VmShape {
            cpu: DEFAULT_CPU,
            vcpus,
            guest_features: QEMU_GUEST_FEATURES,
            policy: DEFAULT_POLICY,
        }
    }

    /// Whether QEMU can launch this shape and its digest can be computed.
    pub fn check(&self) -> Result<(), ShapeError> {
        if self.vcpus == 0 {
            return Err(ShapeError::NoVcpus);
        }
        if self.cpu.name().is_none() {
            return Err(ShapeError::RawSignature(self.cpu.signature()));
        }
        if self.guest_features != QEMU_GUEST_FEATURES {
            return Err(ShapeError::GuestFeatures(self.guest_features));
        }
        let refuse = |why| {
            Err(ShapeError::Policy {
                policy: self.policy,
                why,
            })
        };
        if self.policy & !policy::DEFINED != 0 {
            return refuse("undefined bits set");
        }
        if self.policy & policy::RESERVED_MBO == 0 {
            return refuse("bit 17 must be set");
        }
        // SECURITY: a debug guest's memory can be read and written by the host; a migration
        // agent can export it. Verifiers refuse both by default, so the launcher does not
        // start such a guest.
        if self.policy & policy::DEBUG != 0 {
            return refuse("DEBUG lets the host read and write guest memory");
        }
        if self.policy & policy::MIGRATE_MA != 0 {
            return refuse("a migration agent can export guest memory");
        }
        Ok(())
    }

    /// The `-cpu` model name.
    pub fn qemu_cpu(&self) -> Result<&'static str, ShapeError> {
        self.cpu
            .name()
            .ok_or(ShapeError::RawSignature(self.cpu.signature()))
    }

    /// The SNP launch digest of `image` launched in this shape (what the report's
    /// MEASUREMENT must be).
    pub fn launch_digest(&self, image: &[u8]) -> Result<[u8; 48], ShapeError> {
        self.check()?;
        launch_digest::launch_digest(
            image,
            self.vcpus,
            self.cpu,
            self.guest_features,
            &Default::default(),
        )
        .map_err(|e| ShapeError::Digest(e.to_string()))
    }
}

impl fmt::Display for VmShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} vCPU{} {}, guest features {:#x}, policy {:#x}",
            self.vcpus,
            if self.vcpus == 1 { "" } else { "s" },
            self.cpu,
            self.guest_features,
            self.policy
        )
    }
}

/// 48 bytes as 96 lowercase hex characters (as `measurements digest` prints them).
pub fn hex(d: &[u8; 48]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}
