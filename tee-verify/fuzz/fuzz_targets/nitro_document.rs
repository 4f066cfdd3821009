//! A Nitro attestation document from an untrusted node: the strict CBOR reader and the whole
//! document check never panic, and nothing verifies under a root the fuzzer cannot sign for.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_tee_verify::{cbor, nitro};

/// Not a certificate at all: no input can chain to it.
const ROOT: &[u8] = b"not the AWS root";

fuzz_target!(|data: &[u8]| {
    if let Ok(cbor::Item::Map(m) | cbor::Item::Array(m)) = cbor::decode(data) {
        // Walking an accepted sequence yields exactly its declared number of items.
        let n = m.items().count() as u64;
        assert!(n == m.len || n == m.len * 2);
    }
    assert!(nitro::verify(data, ROOT, 1_694_102_161).is_err());
});
