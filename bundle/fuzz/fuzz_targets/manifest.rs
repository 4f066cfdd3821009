//! Host-supplied manifest.json bytes, parsed by the monitor. Invariants: no panic; a
//! manifest that parses and validates serialises to JSON that parses to the same manifest.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_bundle::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        if m.validate().is_ok() {
            let again = Manifest::parse(&m.to_json()).expect("own JSON parses");
            assert_eq!(again, m);
        }
    }
});
