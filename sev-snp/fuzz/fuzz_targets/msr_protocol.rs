//! Hypervisor answers in the GHCB MSR protocol (the loader's first exchanges under SNP,
//! before any GHCB page): SEV information and protocol negotiation, CPUID, GHCB
//! registration, hypervisor features, page state changes. A fake MSR answers every request
//! with the fuzzer's next u64. Invariants: no panic; an answer that decodes is exactly the
//! canonical encoding of what it decoded to (no reserved bit, no other code, the echoed
//! register checked); a negotiated version lies in the guest's range and only with the
//! pinned C-bit; a page state change succeeds only on the one success answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_snp::msr_protocol::{self as msr, CpuidReg};
use sev_snp::{GHCB_PROTOCOL_MAX, GHCB_PROTOCOL_MIN, GhcbMsr, MsrError, PageState};

struct Host<'a>(&'a [u8]);

impl GhcbMsr for Host<'_> {
    fn exchange(&mut self, _request: u64) -> u64 {
        let mut b = [0u8; 8];
        let n = self.0.len().min(8);
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        u64::from_le_bytes(b)
    }
}

const REGS: [CpuidReg; 4] = [CpuidReg::Eax, CpuidReg::Ebx, CpuidReg::Ecx, CpuidReg::Edx];

fuzz_target!(|data: &[u8]| {
    let Some((&pinned, answers)) = data.split_first() else {
        return;
    };
    // Each decoder on the first answer.
    let v = Host(answers).exchange(0);
    if let Ok(info) = msr::decode_sev_info(v) {
        assert_eq!(msr::encode_sev_info(info), v);
        assert!(info.min_protocol <= info.max_protocol);
    }
    for reg in REGS {
        if let Ok(x) = msr::decode_cpuid_response(v, reg) {
            assert_eq!(msr::encode_cpuid_response(x, reg), v);
        }
    }
    match msr::decode_psc_response(v) {
        Ok(()) => assert_eq!(v, msr::encode_psc_response(0)),
        Err(MsrError::PscFailed(e)) => assert_eq!(v, msr::encode_psc_response(e)),
        Err(_) => {}
    }
    let _ = msr::decode_hv_features(v);
    let gpa = u64::from(pinned) << 12;
    let _ = msr::decode_register_ghcb_response(v, gpa);
    // The exchanges, each over the rest of the answers.
    let pinned_c_bit = pinned % 64;
    if let Ok(version) = msr::negotiate_protocol(&mut Host(answers), pinned_c_bit) {
        assert!((GHCB_PROTOCOL_MIN..=GHCB_PROTOCOL_MAX).contains(&version));
        let info = msr::decode_sev_info(v).expect("negotiated on a valid answer");
        assert_eq!(info.c_bit, pinned_c_bit);
    }
    let _ = msr::cpuid(&mut Host(answers), u32::from(pinned) << 24);
    let _ = msr::register_ghcb(&mut Host(answers), gpa);
    let _ = msr::require_snp_features(&mut Host(answers));
    let state = if pinned & 1 == 0 {
        PageState::Private
    } else {
        PageState::Shared
    };
    if msr::page_state_change(&mut Host(answers), u64::from(pinned), state).is_ok() {
        assert_eq!(v, msr::encode_psc_response(0));
    }
});
