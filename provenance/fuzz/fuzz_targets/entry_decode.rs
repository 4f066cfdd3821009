//! Entry stream decoding: never panics; accepted entries re-encode to the exact bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_provenance::entry::{EntryIter, MAX_ENTRY};
use omega_provenance::note::Checkpoint;
use omega_provenance::verify::verify_stream;

fuzz_target!(|data: &[u8]| {
    for item in EntryIter::new(data) {
        let Ok((_, e, bytes)) = item else { break };
        let mut buf = [0u8; MAX_ENTRY];
        let n = e.encode(&mut buf).expect("decoded entries are valid");
        assert_eq!(&buf[..n], bytes, "encoding is canonical");
    }
    let cp = Checkpoint {
        origin: "fuzz".into(),
        size: 3,
        root: [0; 32],
    };
    let _ = verify_stream(data, &cp);
});
