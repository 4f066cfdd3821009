//! Evidence bundle decoding and verification: never panics on any input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_evidence::{Bundle, Options, verify};

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Bundle::decode(data) {
        for p in ["platform", "policy", "log", "bundle", "agent:a"] {
            let o = Options {
                principal: p,
                nonce: Some([0; 32]),
                ..Default::default()
            };
            let _ = verify(&b, &o);
            let o = Options {
                principal: p,
                allow_unattested: true,
                ..Default::default()
            };
            let _ = verify(&b, &o);
        }
        let _ = omega_evidence::json::to_json(&b);
        // Decoded bundles re-encode and decode to the same value.
        let again = Bundle::decode(&b.encode().unwrap()).unwrap();
        assert_eq!(again, b);
    }
});
