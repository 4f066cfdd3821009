//! Bytes from the untrusted relay of an in-image coordinator (the Fleet stream): the
//! framing and the request decoder never panic, whatever the cuts; every message gets an
//! answer that encodes and decodes back; with no policy signed by the owner (a key whose
//! secret nobody holds here) nothing is ever granted.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_fleet::service::{
    Deframer, MAX_REQUEST, Response, Service, TrustedRoots, decode_response, encode,
};
use omega_fleet::signed::SigningKey;

const ROOTS: TrustedRoots = TrustedRoots {
    lab: None,
    amd: &[],
    amd_arks: &[],
};

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_seed([7; 32]).expect("seed");
    let mut s = Service::new(key, [0x5a; 32], 0, ROOTS);
    // The first byte cuts the rest into pushes of that many bytes (1..=256).
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let mut d = Deframer::new(MAX_REQUEST);
    for chunk in rest.chunks(usize::from(cut) + 1) {
        d.push(chunk);
        while let Some(m) = d.next_message() {
            let Ok(body) = m else { continue };
            let h = s.handle(&body, 0, [1; 32]);
            assert!(!h.record.granted, "granted without an owner-signed policy");
            assert!(matches!(h.response, Response::Refused { .. }));
            assert_eq!(decode_response(&encode(&h.response)).ok(), Some(h.response));
        }
    }
    // The request decoder on the raw bytes too.
    let h = s.handle(rest, 0, [1; 32]);
    assert!(!h.record.granted);
});
