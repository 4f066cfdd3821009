//! Peer-controlled message payloads into every omega-wire payload parser: Control messages
//! (Shutdown, Notice, LogKey, Checkpoint, Challenge, Evidence, GuestRequest, GuestResponse),
//! Hello, HelloAck and Error bodies. The monitor and the host decode these after a frame's
//! CRC passed, which random bytes rarely reach through the frame decoder. Invariants: no
//! panic; what decodes satisfies the parser's limits and survives encode → decode
//! unchanged, and its encoding is no longer than the input (no overlong-but-accepted
//! growth); only whole payloads decode (trailing bytes are refused).
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_wire::{Hello, HelloAck, MAX_VERSIONS, msg};

/// Encodes `v` (a value decoded from `input_len` bytes) and decodes it again with
/// `decode`: the same value, from no more bytes.
macro_rules! round_trip {
    ($v:expr, $input_len:expr, $decode:expr) => {{
        let v = $v;
        let mut buf = vec![0u8; $input_len + 16];
        let bytes = msg::encode(&v, &mut buf).expect("a decoded value encodes");
        assert!(
            bytes.len() <= $input_len,
            "encoding longer than what decoded"
        );
        assert_eq!($decode(&*bytes).ok(), Some(v), "decode(encode(x)) != x");
    }};
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = msg::decode_exact::<msg::ControlMsg<'_>>(data) {
        round_trip!(m, data.len(), msg::decode_exact::<msg::ControlMsg<'_>>);
        // A trailing byte makes it an error: a message has one length.
        let mut longer = data.to_vec();
        longer.push(0);
        assert!(msg::decode_exact::<msg::ControlMsg<'_>>(&longer).is_err());
    }
    if let Ok(h) = Hello::decode(data) {
        assert!(!h.versions.is_empty() && h.versions.len() <= MAX_VERSIONS);
        assert!(!h.versions.contains(&0));
        round_trip!(h, data.len(), Hello::decode);
    }
    if let Ok(h) = HelloAck::decode(data) {
        assert!(!h.versions.is_empty() && h.versions.len() <= MAX_VERSIONS);
        round_trip!(h, data.len(), HelloAck::decode);
    }
    if let Ok(e) = msg::ErrorBody::decode(data) {
        assert!(e.message.len() <= msg::MAX_ERROR_MESSAGE);
        round_trip!(e, data.len(), msg::ErrorBody::decode);
    }
});
