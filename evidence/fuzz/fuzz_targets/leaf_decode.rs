//! Salted-leaf decoding: never panics; decoded leaves re-encode.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_evidence::SaltedLeaf;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = SaltedLeaf::decode(data) {
        let again = SaltedLeaf::decode(&l.encode().unwrap()).unwrap();
        assert_eq!(again, l);
    }
});
