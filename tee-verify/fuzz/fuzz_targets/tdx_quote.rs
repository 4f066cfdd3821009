//! A TDX quote or its collateral from an untrusted host: our DCAP verification never panics.
//! The first byte picks what the rest is: 0, a quote checked under the real recorded
//! collateral; anything else, collateral JSON for the real recorded quote. A fuzzer cannot
//! sign for Intel, so only the recorded pair itself may verify.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_tee_verify::tdx;

const QUOTE: &[u8] = include_bytes!("../../../test-support/data/dcap-qvl-0.7.1/tdx_quote");
const COLLATERAL: &[u8] =
    include_bytes!("../../../test-support/data/dcap-qvl-0.7.1/tdx_quote_collateral.json");
/// Inside the recorded collateral's validity window.
const AS_OF: u64 = 1_750_378_563;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let verdict = if which == 0 {
        tdx::verify(rest, COLLATERAL, AS_OF)
    } else {
        tdx::verify(QUOTE, rest, AS_OF)
    };
    if let Ok(v) = verdict {
        // Everything the verdict reports is signed by Intel or the recorded attestation key:
        // whatever the fuzzer changed, an accepted input says exactly what the recording says.
        static RECORDED: std::sync::OnceLock<omega_tee_verify::Verified> = std::sync::OnceLock::new();
        let recorded = RECORDED.get_or_init(|| tdx::verify(QUOTE, COLLATERAL, AS_OF).unwrap());
        assert_eq!(&v, recorded);
    }
});
