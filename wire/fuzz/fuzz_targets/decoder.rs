//! Host-controlled bytes into the guest's decoder. The first byte picks the slicing; the
//! rest is the stream. Invariants: no panic, progress on every push, exact byte accounting,
//! every payload within MAX_PAYLOAD, every decoded message payload parser total.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_wire::{Decoder, Hello, HelloAck, Kind, MAX_PAYLOAD, Reassembler, msg};

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else { return };
    let step = (step as usize % 64) * 97 + 1;
    let mut dec: Box<Decoder> = Box::new(Decoder::new());
    let mut re = Reassembler::new(1 << 20);
    let mut framed = 0u64;
    let mut rest = input;
    while !rest.is_empty() {
        let take = step.min(rest.len());
        let n = dec.push(&rest[..take]);
        rest = &rest[n..];
        let mut any = false;
        while let Some(r) = dec.next_frame() {
            any = true;
            if let Ok(f) = r {
                assert!(f.payload.len() <= MAX_PAYLOAD);
                framed += 1;
                match f.kind() {
                    Kind::Hello => { let _ = Hello::decode(f.payload); }
                    Kind::HelloAck => { let _ = HelloAck::decode(f.payload); }
                    Kind::Error => { let _ = msg::ErrorBody::decode(f.payload); }
                    Kind::Data => {
                        if let Ok(Some((_, m))) = re.push(&f) {
                            let _ = msg::decode_exact::<msg::ControlMsg>(&m);
                        }
                    }
                    _ => {}
                }
            }
        }
        assert!(n > 0 || any, "decoder wedged");
    }
    let _ = framed;
    while dec.pending() > 0 {
        dec.resync();
        while dec.next_frame().is_some() {}
    }
});
