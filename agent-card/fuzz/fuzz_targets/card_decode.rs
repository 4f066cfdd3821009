//! Card decoding: never panics; a decoded card's canonical form decodes to the same card,
//! and no input other than the genuine card's canonical form verifies under the fuzz key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_agent_card::{CardKey, SignedCard, json};

fuzz_target!(|data: &[u8]| {
    let _ = json::parse(data, &json::CARD_LIMITS).map(|v| json::to_jcs(&v));
    if let Ok(c) = SignedCard::decode(data) {
        let key = CardKey::from_seed([7; 32]).unwrap();
        if c.verify(&key.public()).is_ok() {
            // Only the monitor's own card (any whitespace or member order) verifies.
            let again = key.sign(&c.body).unwrap();
            let d = SignedCard::decode(again.as_bytes()).unwrap();
            assert_eq!(d, c);
        }
    }
});
