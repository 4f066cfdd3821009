//! Relay bytes into every state of a channel: the responder awaiting Init, the initiator
//! awaiting Resp, the responder awaiting Finish, an open session awaiting records. The
//! first input byte picks the state; the rest is fed in pieces the second byte sizes.
//! Nothing may panic, and nothing forged may open a session or deliver a message.
//! A fifth mode decodes the rest as an envelope frame (what a peer monitor sends inside
//! records): a frame that decodes re-encodes to exactly the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omega_peer_channel::{Channel, Event, Frame, Identity, PeerName, PinnedAuthority};

fn ends() -> (Channel<PinnedAuthority>, Channel<PinnedAuthority>) {
    let a = Identity::from_seed([11; 32], b"alpha".to_vec()).unwrap();
    let b = Identity::from_seed([12; 32], b"beta".to_vec()).unwrap();
    let mut pins = PinnedAuthority::new();
    pins.pin(PeerName::new("alpha").unwrap(), a.public());
    pins.pin(PeerName::new("beta").unwrap(), b.public());
    let i = Channel::initiator(a, pins.clone(), [1; 32], None).unwrap();
    let r = Channel::responder(b, pins, [2; 32]).unwrap();
    (i, r)
}

fuzz_target!(|data: &[u8]| {
    let [mode, piece, rest @ ..] = data else {
        return;
    };
    if mode % 5 == 4 {
        if let Ok(f) = Frame::decode(rest) {
            assert_eq!(f.encode().as_deref(), Ok(rest), "one encoding per frame");
        }
        return;
    }
    let (mut i, mut r) = ends();
    let target = match mode % 5 {
        0 => &mut r,
        1 => &mut i,
        2 => {
            r.feed(&i.take_output(), 0).unwrap();
            &mut r
        }
        _ => {
            r.feed(&i.take_output(), 0).unwrap();
            i.feed(&r.take_output(), 0).unwrap();
            r.feed(&i.take_output(), 0).unwrap();
            while r.poll_event().is_some() {}
            &mut r
        }
    };
    let was_open = target.is_open();
    let piece = usize::from(*piece).max(1);
    for chunk in rest.chunks(piece) {
        if target.feed(chunk, 0).is_err() {
            assert!(target.is_failed());
            break;
        }
    }
    // SECURITY: the fuzzer holds no key: it cannot finish a handshake or forge a record.
    if !was_open {
        assert!(!target.is_open(), "a handshake finished without a key");
    }
    while let Some(e) = target.poll_event() {
        assert!(!matches!(e, Event::Message(_) | Event::Closed), "forged record accepted");
    }
});
