//! Host-controlled bytes into the monitor's channel (`omega_kernel::channel`, the code the
//! monitor runs over its virtio port): a script of frames with correct CRCs and bad input
//! (wire/fuzz/script.rs) read in fuzzer-chosen slices, with transport faults. Invariants:
//! no panic; the channel never wedges (each poll makes progress until the input is
//! exhausted); every message handed out is within `max_message` and, for a clean script,
//! the messages of each stream are a subsequence of those the host sent (nothing invented
//! or altered, only refused or dropped); everything the monitor writes back decodes as
//! well-formed frames (one Hello, then only Credit and Error frames), and for a clean script
//! it never grants more credit on a stream than the payload bytes it received there.
#![no_main]

#[path = "../../../wire/fuzz/script.rs"]
mod script;

use libfuzzer_sys::fuzz_target;
use omega_kernel::channel::{Channel, Config, Event, Transport};
use omega_wire::{Decoder, Encoder, HelloAck, Kind, MAX_WINDOW, Stream, msg};

struct Hostile {
    inbound: Vec<u8>,
    pos: usize,
    max_read: usize,
    /// Every `fault_every`-th recv fails while input remains (0: never). (A transport that
    /// keeps failing keeps producing fault events: the run would not end.)
    fault_every: usize,
    recvs: usize,
    out: Vec<u8>,
}

impl Transport for Hostile {
    type Error = &'static str;
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, &'static str> {
        self.recvs += 1;
        if self.fault_every > 0
            && self.recvs % self.fault_every == 0
            && self.pos < self.inbound.len()
        {
            return Err("injected transport fault");
        }
        let n = self
            .max_read
            .min(buf.len())
            .min(self.inbound.len() - self.pos);
        buf[..n].copy_from_slice(&self.inbound[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
    fn send(&mut self, data: &[u8]) -> Result<(), &'static str> {
        self.out.extend_from_slice(data);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, rest @ ..] = data else { return };
    let mut enc = Encoder::new();
    let mut inbound = Vec::new();
    // Usually a valid HelloAck first, so that the fuzzer spends its time after the handshake.
    if a & 1 == 0 {
        let ack = HelloAck {
            version: 1,
            versions: &[1],
            window: 1 + u32::from(*c) * 4099,
            log_stored: 0,
        };
        let mut f = vec![0u8; 256];
        let n = enc.hello_ack(&ack, &mut f).expect("hello ack");
        inbound.extend_from_slice(&f[..n]);
    }
    let s = script::build(rest, &mut enc);
    inbound.extend_from_slice(&s.bytes);
    let len = inbound.len();
    let t = Hostile {
        inbound,
        pos: 0,
        max_read: usize::from(a >> 1) * 257 + 1,
        fault_every: usize::from(b % 8),
        recvs: 0,
        out: Vec::new(),
    };
    let config = Config {
        hello_polls: len as u64 + 16,
        idle_resync_ns: 0,
        idle_resync_polls: 2,
        max_message: Config::MONITOR.max_message,
    };
    let mut delivered: [Vec<Vec<u8>>; omega_wire::STREAM_COUNT] = Default::default();
    let out = match Channel::connect(t, config) {
        Err(_) => return,
        Ok(mut ch) => {
            let mut empty = 0;
            let mut polls = 0usize;
            loop {
                polls += 1;
                assert!(polls <= 4 * len + 10_000, "channel wedged");
                match ch.poll().expect("sending to the host never fails here") {
                    Some(Event::Message(s, m)) => {
                        assert!(m.len() <= config.max_message);
                        delivered[s.index()].push(m);
                        empty = 0;
                    }
                    Some(Event::PeerError { message, .. }) => {
                        assert!(message.len() <= msg::MAX_ERROR_MESSAGE);
                        empty = 0;
                    }
                    Some(_) => empty = 0,
                    None => {
                        let t = ch.transport_mut();
                        if t.pos == t.inbound.len() {
                            empty += 1;
                            if empty > 8 {
                                break;
                            }
                        }
                    }
                }
            }
            core::mem::take(&mut ch.transport_mut().out)
        }
    };
    // The monitor's output, as the host decodes it.
    let mut dec: Box<Decoder> = Box::new(Decoder::new());
    let mut granted = [0u64; omega_wire::STREAM_COUNT];
    let mut first = true;
    let mut rest = &out[..];
    while !rest.is_empty() || dec.pending() > 0 {
        let n = dec.push(rest);
        rest = &rest[n..];
        let mut any = false;
        while let Some(f) = dec.next_frame() {
            any = true;
            let f = f.expect("the monitor sends well-formed frames");
            match f.kind() {
                Kind::Hello => assert!(first, "one Hello, first"),
                Kind::Credit => {
                    assert!(!first);
                    assert!((1..=u64::from(MAX_WINDOW)).contains(&f.header.arg));
                    granted[f.stream().index()] += f.header.arg;
                }
                Kind::Error => {
                    msg::ErrorBody::decode(f.payload).expect("its Error bodies decode");
                }
                k => panic!("the monitor sent a {k:?} frame without being asked to"),
            }
            first = false;
        }
        assert!(n > 0 || any, "monitor output does not decode");
    }
    if !s.clean {
        return;
    }
    let mut received = [0u64; omega_wire::STREAM_COUNT];
    let mut expected: [Vec<Vec<u8>>; omega_wire::STREAM_COUNT] = Default::default();
    let mut partial: [Vec<u8>; omega_wire::STREAM_COUNT] = Default::default();
    for f in s.frames.iter().filter(|f| f.header.kind == Kind::Data) {
        let i = f.header.stream.index();
        received[i] += f.payload.len() as u64;
        partial[i].extend_from_slice(&f.payload);
        if f.header.is_end() {
            expected[i].push(core::mem::take(&mut partial[i]));
        }
    }
    for s in Stream::ALL {
        let i = s.index();
        assert!(
            granted[i] <= received[i],
            "{s:?}: credit for bytes never received"
        );
        let mut want = expected[i].iter();
        for m in &delivered[i] {
            assert!(want.any(|w| w == m), "{s:?}: a message the host never sent");
        }
    }
});
