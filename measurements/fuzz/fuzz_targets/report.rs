//! Attestation report parser and verifier on arbitrary bytes: never panics; nothing but the
//! genuine report verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use measurements::report::{AttestationReport, REPORT_LEN, SIGNED_LEN};
use measurements::verify::{CaChain, CertSource, Family, VerifyOptions, verify_report};
use std::sync::OnceLock;

const REPORT_HEX: &str = include_str!("../../../test-support/data/virtee-sev-8.0.0/report_milan.hex");
const VCEK: &[u8] = include_bytes!("../../../test-support/data/virtee-sev-8.0.0/vcek_milan.der");

fn genuine() -> &'static Vec<u8> {
    static R: OnceLock<Vec<u8>> = OnceLock::new();
    R.get_or_init(|| hex_decode(REPORT_HEX.trim()))
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = AttestationReport::parse(data) {
        let _ = r.to_string();
    }
    let opts = VerifyOptions::default();
    // Arbitrary bytes as the report, with the genuine chain.
    if data.len() == REPORT_LEN {
        static VCEK_CHAIN: OnceLock<measurements::Vcek> = OnceLock::new();
        let vcek = VCEK_CHAIN.get_or_init(|| CaChain::new(CertSource::Family(Family::Milan), &opts).vcek(VCEK));
        let o = vcek.verify_report(data, &opts);
        // Bytes after the signature (0x330..) are reserved and unsigned.
        let signed = SIGNED_LEN + 144;
        assert_eq!(o.verified(), data[..signed] == genuine()[..signed]);
    }
    // Arbitrary bytes as the VCEK and as the ASK PEM.
    let o = verify_report(genuine(), data, CertSource::Family(Family::Milan), &opts);
    assert!(!o.verified() || data == VCEK);
    let o = verify_report(genuine(), VCEK, CertSource::Pem { ark: Family::Milan.ark_pem(), ask: data }, &opts);
    let _ = o.verified();
});
