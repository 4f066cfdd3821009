//! Proof verification with arbitrary sizes, indices and hashes: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_provenance::merkle::{Hash, verify_consistency, verify_inclusion};

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 + 64 {
        return;
    }
    let a = u64::from_le_bytes(data[0..8].try_into().unwrap());
    let b = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let r1: Hash = data[16..48].try_into().unwrap();
    let r2: Hash = data[48..80].try_into().unwrap();
    let proof: Vec<Hash> = data[80..]
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap())
        .collect();
    let _ = verify_inclusion(&r1, a, b, &proof, &r2);
    let _ = verify_consistency(a, b, &r1, &r2, &proof);
});
