//! Bytes from an untrusted scheduler, host or peer: the fleet policy, credential and
//! placement decoders (signed envelopes and bodies) never panic, an accepted policy body is
//! canonical, and nothing verifies under a key the fuzzer cannot sign for.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_fleet::{Credential, FleetPolicy, Placement, PolicyStore};

/// An Ed25519 public key whose secret nobody holds here.
const KEY: [u8; 32] = [0x5a; 32];

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = FleetPolicy::decode(data) {
        assert_eq!(p.encode().as_deref(), Ok(data), "accepted policy is canonical");
    }
    let _ = Credential::from_body(data);
    let _ = Placement::from_body(data);
    assert!(Credential::verify(data, &KEY, 1_800_000_000).is_err());
    assert!(Placement::verify(data, &KEY).is_err());
    assert!(PolicyStore::new(KEY, 0).apply(data).is_err());
});
