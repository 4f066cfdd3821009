//! Proxy-controlled bytes (the evidence's `gpu_evidence`) into the guest's GPU evidence
//! verifier. Invariants: no panic; a bundle that decodes re-encodes to the same bytes; a
//! report that parses is exactly its signed part plus the signature; nothing verifies
//! against NVIDIA's root without NVIDIA's signatures (random input never carries them).
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use omega_gpu_evidence::{self as gpu, GpuEvidence, Policy, ReferenceValue, Report, chain, spdm};

static REFERENCE: LazyLock<[ReferenceValue; 1]> = LazyLock::new(|| {
    [ReferenceValue {
        index: 1,
        allowed: vec![vec![0; 48]],
    }]
});
static POLICY: LazyLock<Policy<'static>> =
    LazyLock::new(|| Policy::nvidia(&*REFERENCE).expect("the pinned root parses"));

fuzz_target!(|data: &[u8]| {
    let policy = &*POLICY;
    if let Ok(ev) = GpuEvidence::decode(data) {
        assert_eq!(ev.encode().expect("a decoded bundle re-encodes"), data);
    }
    assert!(gpu::verify(data, &[0; 32], policy).is_err());
    // The parts on their own, so the fuzzer need not find the bundle framing first.
    if let Ok(r) = Report::parse(data) {
        assert_eq!(r.signed.len() + spdm::SIGNATURE_LEN, data.len());
        assert!(r.measurements.windows(2).all(|w| w[0].index < w[1].index));
    }
    if let Ok(certs) = chain::parse_pem_chain(data) {
        let _ = chain::verify_chain(&certs, &policy.root_der, Some(0));
        let _ = chain::leaf_fwid(&certs[0]);
    }
});
