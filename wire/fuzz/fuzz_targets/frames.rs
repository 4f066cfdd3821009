//! Encoder → decoder round trip: the fuzzer writes a script of frames (fuzz/script.rs, CRCs
//! correct), the decoder reads it in fuzzer-chosen slices. Invariants: no panic; a clean
//! script (only well-formed frames) decodes to exactly the frames sent, in order, with no
//! error, and every frame re-encodes to the same bytes; the reassembler joins each stream's
//! Data frames into exactly the messages sent. Any script: progress on every push and every
//! byte accounted for.
#![no_main]

#[path = "../script.rs"]
mod script;

use libfuzzer_sys::fuzz_target;
use omega_wire::{Decoder, Encoder, Kind, MAX_PAYLOAD, Reassembler, Stream, msg};

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = (usize::from(step) % 64) * 331 + 1;
    let s = script::build(data, &mut Encoder::new());
    let mut dec: Box<Decoder> = Box::new(Decoder::new());
    let mut re = Reassembler::new(2 * script::MAX_SCRIPT_BYTES);
    let mut got = Vec::new();
    let mut messages: Vec<(Stream, Vec<u8>)> = Vec::new();
    let mut errors = 0usize;
    let mut rest = &s.bytes[..];
    loop {
        let take = step.min(rest.len());
        let n = dec.push(&rest[..take]);
        rest = &rest[n..];
        let mut any = false;
        while let Some(r) = dec.next_frame() {
            any = true;
            match r {
                Ok(f) => {
                    assert!(f.payload.len() <= MAX_PAYLOAD);
                    match f.kind() {
                        Kind::Error => {
                            let b =
                                msg::ErrorBody::decode(f.payload).expect("own Error frames decode");
                            assert!(b.message.len() <= msg::MAX_ERROR_MESSAGE);
                        }
                        Kind::Data => {
                            if let Ok(Some(m)) = re.push(&f) {
                                messages.push(m);
                            }
                        }
                        _ => {}
                    }
                    got.push(script::Sent {
                        header: f.header,
                        payload: f.payload.to_vec(),
                    });
                }
                Err(_) => errors += 1,
            }
        }
        if rest.is_empty() {
            break;
        }
        assert!(n > 0 || any, "decoder wedged");
    }
    if !s.clean {
        return;
    }
    assert_eq!(errors, 0, "a clean script decodes without errors");
    assert_eq!(dec.pending(), 0, "a clean script leaves no partial frame");
    assert_eq!(got, s.frames, "frames decode as sent");
    let mut reencoded = Vec::new();
    for f in &got {
        reencoded.extend_from_slice(&script::reencode(f));
    }
    assert_eq!(reencoded, s.bytes, "frames re-encode to the same bytes");
    // The messages: each stream's Data payloads joined up to each END.
    let mut partial: [Vec<u8>; omega_wire::STREAM_COUNT] = Default::default();
    let mut expected = Vec::new();
    for f in s.frames.iter().filter(|f| f.header.kind == Kind::Data) {
        let i = f.header.stream.index();
        partial[i].extend_from_slice(&f.payload);
        if f.header.is_end() {
            expected.push((f.header.stream, core::mem::take(&mut partial[i])));
        }
    }
    assert_eq!(messages, expected, "messages reassemble as sent");
});
