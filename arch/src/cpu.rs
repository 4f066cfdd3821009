//! CPU identification and TEE detection.

use core::arch::x86_64::{__cpuid_count, CpuidResult};

/// The SEV_STATUS MSR (AMD APM vol. 2, 15.34.10).
pub const MSR_SEV_STATUS: u32 = 0xc001_0131;

pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    // Under SNP this raises #VC, answered from the CPUID page (`crate::sev`); the reset
    // code refuses SEV-ES without SNP.
    __cpuid_count(leaf, subleaf)
}

/// What CPUID and (only where CPUID allows) the SEV_STATUS MSR say about SEV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevInfo {
    /// CPUID 0x8000001F EAX bit 1.
    pub sev_supported: bool,
    /// The C-bit position (CPUID 0x8000001F EBX bits 5..0), when SEV is supported.
    pub c_bit: Option<u8>,
    /// SEV_STATUS, or 0 when SEV is not supported (the MSR is then never read).
    pub sev_status: u64,
}

impl SevInfo {
    pub fn sev_active(&self) -> bool {
        self.sev_status & 1 != 0
    }
    pub fn es_active(&self) -> bool {
        self.sev_status & 2 != 0
    }
    pub fn snp_active(&self) -> bool {
        self.sev_status & 4 != 0
    }
}

/// Detects SEV the way DESIGN.md demands: CPUID 0x8000001F first, and the SEV_STATUS
/// MSR only when CPUID says SEV exists. SECURITY: reading the MSR unconditionally faults
/// on Intel hosts and under TCG.
pub fn detect_sev() -> SevInfo {
    let max_ext = cpuid(0x8000_0000, 0).eax;
    if max_ext < 0x8000_001f {
        return SevInfo {
            sev_supported: false,
            c_bit: None,
            sev_status: 0,
        };
    }
    let leaf = cpuid(0x8000_001f, 0);
    if leaf.eax & 0b10 == 0 {
        return SevInfo {
            sev_supported: false,
            c_bit: None,
            sev_status: 0,
        };
    }
    // SAFETY: CPUID reported SEV support, so the SEV_STATUS MSR exists; reading it has no
    // side effects.
    let sev_status = unsafe { x86_64::registers::model_specific::Msr::new(MSR_SEV_STATUS).read() };
    SevInfo {
        sev_supported: true,
        c_bit: Some((leaf.ebx & 0x3f) as u8),
        sev_status,
    }
}

/// CPU vendor string from CPUID leaf 0.
pub fn vendor() -> [u8; 12] {
    let r = cpuid(0, 0);
    let mut v = [0u8; 12];
    v[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&r.edx.to_le_bytes());
    v[8..12].copy_from_slice(&r.ecx.to_le_bytes());
    v
}
