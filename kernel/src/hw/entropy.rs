//! RDSEED/RDRAND behind `omega_kernel::entropy::HwRng` (the health checks live there).

use omega_arch::cpu::cpuid;
use omega_kernel::entropy::HwRng;

pub struct CpuRng {
    rdrand: bool,
    rdseed: bool,
}

impl CpuRng {
    pub fn detect() -> CpuRng {
        CpuRng {
            rdrand: cpuid(1, 0).ecx & (1 << 30) != 0,
            rdseed: cpuid(7, 0).ebx & (1 << 18) != 0,
        }
    }

    pub fn describe(&self) -> &'static str {
        match (self.rdseed, self.rdrand) {
            (true, true) => "RDSEED+RDRAND",
            (false, true) => "RDRAND",
            (true, false) => "RDSEED",
            (false, false) => "none",
        }
    }
}

#[target_feature(enable = "rdseed")]
fn rdseed64() -> Option<u64> {
    let mut v = 0;
    (core::arch::x86_64::_rdseed64_step(&mut v) == 1).then_some(v)
}

#[target_feature(enable = "rdrand")]
fn rdrand64() -> Option<u64> {
    let mut v = 0;
    (core::arch::x86_64::_rdrand64_step(&mut v) == 1).then_some(v)
}

impl HwRng for CpuRng {
    fn rdseed(&mut self) -> Option<u64> {
        if self.rdseed {
            // SAFETY: `rdseed64` only needs the RDSEED instruction, which CPUID reported
            // present (`detect`).
            unsafe { rdseed64() }
        } else {
            None
        }
    }
    fn rdrand(&mut self) -> Option<u64> {
        if self.rdrand {
            // SAFETY: `rdrand64` only needs the RDRAND instruction, which CPUID reported
            // present (`detect`).
            unsafe { rdrand64() }
        } else {
            None
        }
    }
}
