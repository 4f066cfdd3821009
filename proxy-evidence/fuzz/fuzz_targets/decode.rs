//! Relay-controlled bytes into the guest's decoder of the proxy's evidence. Invariants: no
//! panic; a value that decodes passes every structural check and re-encodes to exactly the
//! same bytes (one encoding per value); and any value that encodes decodes back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_proxy_evidence as ev;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = ev::decode(data) {
        assert_eq!(e.check(), Ok(()));
        assert_eq!(ev::encode(&e).expect("a decoded value re-encodes"), data);
    }
    // The same bytes with report_data made to match: random input rarely hits a SHA-512, and
    // this reaches the checks after the binding and the canonical-encoding comparison.
    if data.len() <= ev::MAX_ENCODED
        && let Ok((mut e, _)) = postcard::take_from_bytes::<ev::ProxyEvidence>(data)
    {
        e.report_data = ev::report_data(&e.tls_spki, e.gpu_evidence.as_deref(), &e.nonce);
        if let Ok(bytes) = ev::encode(&e) {
            assert_eq!(ev::decode(&bytes), Ok(e));
        }
    }
});
