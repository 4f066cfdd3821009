//! Signed-note / checkpoint / verifier-key / proof-file parsing: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_provenance::note::{Checkpoint, LogKey, VerifierKey};
use omega_provenance::proof_file::{ConsistencyProofFile, InclusionProofFile};

fuzz_target!(|data: &[u8]| {
    let _ = omega_provenance::b64::decode(data);
    let Ok(s) = core::str::from_utf8(data) else {
        return;
    };
    let vk = LogKey::from_seed("fuzz", [1; 32]).unwrap().verifier();
    let _ = Checkpoint::verify(s, &vk);
    let _ = Checkpoint::parse_text(s);
    let _ = VerifierKey::parse(s);
    let _ = InclusionProofFile::parse(s);
    let _ = ConsistencyProofFile::parse(s);
});
