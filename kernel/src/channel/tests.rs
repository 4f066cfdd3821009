//! The channel's state machine against an in-memory transport, with the host side played
//! by `omega-wire`'s encoder, decoder and reassembler: no QEMU.
extern crate std;

use std::collections::VecDeque;
use std::vec::Vec;

use omega_wire::{
    Decoder, Encoder, Hello, HelloAck, INITIAL_WINDOW, Kind, Reassembler, SUPPORTED_VERSIONS,
    Stream, VERSION, WireError, msg,
};

use super::*;

#[derive(Debug, thiserror::Error)]
#[error("fake transport fault: {0}")]
struct Fault(&'static str);

/// Host-to-guest bytes waiting to be read, guest-to-host bytes written.
#[derive(Default)]
struct Fake {
    inbound: VecDeque<u8>,
    outbound: Vec<u8>,
    /// Most bytes one `recv` returns (0: as many as fit), to split frames across reads.
    max_read: usize,
    /// Faults the next `recv`s report before any data.
    faults: VecDeque<&'static str>,
    /// The fake clock (`None`: no clock, the idle resync counts polls).
    clock_ns: Option<u64>,
    /// Calls to `idle`, and bytes the host sends while the guest idles.
    idles: usize,
    inbound_on_idle: Vec<u8>,
    /// The host's end reopened (a new launcher attached): reported once by `reconnected`;
    /// `reconnect_on_idle` makes the next `idle` do it.
    reconnect: bool,
    reconnect_on_idle: bool,
}

impl Transport for Fake {
    type Error = Fault;

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Fault> {
        if let Some(f) = self.faults.pop_front() {
            return Err(Fault(f));
        }
        let limit = if self.max_read == 0 {
            buf.len()
        } else {
            self.max_read.min(buf.len())
        };
        let n = limit.min(self.inbound.len());
        for (b, v) in buf.iter_mut().zip(self.inbound.drain(..n)) {
            *b = v;
        }
        Ok(n)
    }

    fn send(&mut self, data: &[u8]) -> Result<(), Fault> {
        self.outbound.extend_from_slice(data);
        Ok(())
    }

    fn now_ns(&mut self) -> Option<u64> {
        self.clock_ns
    }

    fn idle(&mut self) {
        self.idles += 1;
        self.inbound.extend(self.inbound_on_idle.drain(..));
        self.reconnect |= core::mem::take(&mut self.reconnect_on_idle);
    }

    fn reconnected(&mut self) -> bool {
        core::mem::take(&mut self.reconnect)
    }
}

/// What the guest sent, as the host sees it.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Hello { versions: Vec<u8>, window: u32 },
    Message(Stream, Vec<u8>),
    Credit(Stream, u64),
    Error(Stream, u16),
}

/// The host end: encodes what it sends, decodes what the guest sent.
struct Host {
    enc: Encoder,
    dec: Decoder,
    reasm: Reassembler,
    /// Guest output already decoded.
    read: usize,
}

impl Host {
    fn new() -> Host {
        Host {
            enc: Encoder::new(),
            dec: Decoder::new(),
            reasm: Reassembler::default(),
            read: 0,
        }
    }

    fn frame(&mut self, f: impl FnOnce(&mut Encoder, &mut [u8]) -> usize) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_FRAME];
        let n = f(&mut self.enc, &mut buf);
        buf.truncate(n);
        buf
    }

    fn hello_ack(&mut self, version: u8, versions: &[u8], window: u32) -> Vec<u8> {
        self.resume_ack(version, versions, window, 0)
    }

    /// A HelloAck that says the host holds `log_stored` bytes of the log (version 2).
    fn resume_ack(
        &mut self,
        version: u8,
        versions: &[u8],
        window: u32,
        log_stored: u64,
    ) -> Vec<u8> {
        let ack = HelloAck {
            version,
            versions,
            window,
            log_stored,
        };
        self.frame(|e, b| e.hello_ack(&ack, b).unwrap())
    }

    /// A whole message as Data frames (ignoring credit: tests decide).
    fn message(&mut self, stream: Stream, m: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (chunk, end) in omega_wire::fragments(m) {
            out.extend(self.frame(|e, b| e.data(stream, chunk, end, b).unwrap()));
        }
        out
    }

    fn credit(&mut self, stream: Stream, grant: u32) -> Vec<u8> {
        self.frame(|e, b| e.credit(stream, grant, b).unwrap())
    }

    fn error(&mut self, stream: Stream, code: u16, text: &str) -> Vec<u8> {
        self.frame(|e, b| e.error(stream, code, text, b).unwrap())
    }

    /// Everything the guest wrote since the last call.
    fn seen(&mut self, out: &[u8]) -> Vec<Seen> {
        let mut seen = Vec::new();
        let mut rest = &out[self.read..];
        self.read = out.len();
        loop {
            let n = self.dec.push(rest);
            rest = &rest[n..];
            while let Some(item) = self.dec.next_frame() {
                let f = item.expect("the guest sends only well-formed frames");
                match f.kind() {
                    Kind::Hello => {
                        let h = Hello::decode(f.payload).unwrap();
                        seen.push(Seen::Hello {
                            versions: h.versions.to_vec(),
                            window: h.window,
                        });
                    }
                    Kind::Data => {
                        if let Some((s, m)) = self.reasm.push(&f).unwrap() {
                            seen.push(Seen::Message(s, m));
                        }
                    }
                    Kind::Credit => seen.push(Seen::Credit(f.stream(), f.header.arg)),
                    Kind::Error => {
                        let b = msg::ErrorBody::decode(f.payload).unwrap();
                        seen.push(Seen::Error(f.stream(), b.code));
                    }
                    other => panic!("unexpected {other:?} from the guest"),
                }
            }
            if rest.is_empty() {
                return seen;
            }
        }
    }
}

const TEST: Config = Config {
    hello_polls: 1000,
    idle_resync_ns: 1_000_000,
    idle_resync_polls: 50,
    max_message: 1 << 20,
};

/// A connected channel (host window `window`) and the host that answered it.
fn connected(window: u32, config: Config) -> (Channel<Fake>, Host) {
    let mut host = Host::new();
    let mut fake = Fake::default();
    fake.inbound
        .extend(host.hello_ack(VERSION, SUPPORTED_VERSIONS, window));
    let mut ch = Channel::connect(fake, config).expect("handshake");
    let out = core::mem::take(&mut ch.transport_mut().outbound);
    assert_eq!(
        host.seen(&out),
        [Seen::Hello {
            versions: SUPPORTED_VERSIONS.to_vec(),
            window: INITIAL_WINDOW
        }]
    );
    host.read = 0;
    (ch, host)
}

fn push(ch: &mut Channel<Fake>, bytes: &[u8]) {
    ch.transport_mut().inbound.extend(bytes.iter().copied());
}

/// Polls until the transport is drained and no event is left; returns the events.
fn drain(ch: &mut Channel<Fake>) -> Vec<Event<Fault>> {
    let mut events = Vec::new();
    for _ in 0..100_000 {
        match ch.poll().unwrap() {
            Some(e) => events.push(e),
            None if ch.transport_mut().inbound.is_empty() => break,
            None => {}
        }
    }
    events
}

fn guest_output(ch: &mut Channel<Fake>, host: &mut Host) -> Vec<Seen> {
    let out = ch.transport_mut().outbound.clone();
    host.seen(&out)
}

fn messages(events: &[Event<Fault>]) -> Vec<(Stream, &[u8])> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(s, m) => Some((*s, &m[..])),
            _ => None,
        })
        .collect()
}

fn malformed(events: &[Event<Fault>]) -> Vec<WireError> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Malformed(w) => Some(*w),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_agrees_on_version_and_window() {
    let (mut ch, mut host) = connected(4096, TEST);
    assert_eq!(ch.version, VERSION);
    assert_eq!(ch.malformed, 0);
    // The host's window is what the guest may send before the first grant.
    assert_eq!(ch.credits.available(Stream::Echo), 4096);
    assert!(drain(&mut ch).is_empty());
    assert!(guest_output(&mut ch, &mut host).is_empty());
}

#[test]
fn handshake_without_an_answer_gives_up() {
    let r = Channel::connect(Fake::default(), TEST);
    let e = r.err();
    assert!(matches!(e, Some(ChannelError::NoHello)), "{e:?}");
}

#[test]
fn handshake_without_a_common_version_is_refused_and_reported() {
    let mut host = Host::new();
    let mut fake = Fake::default();
    fake.inbound.extend(host.hello_ack(7, &[7, 8], 4096));
    let r = Channel::connect(&mut fake, TEST);
    let e = r.err();
    assert!(matches!(e, Some(ChannelError::NoCommonVersion)), "{e:?}");
    let out = fake.outbound.clone();
    assert_eq!(
        host.seen(&out)[1..],
        [Seen::Error(Stream::Control, msg::code::NO_COMMON_VERSION)]
    );
}

#[test]
fn handshake_skips_and_reports_junk_before_the_hello_ack() {
    let mut host = Host::new();
    let mut fake = Fake {
        max_read: 3,
        ..Fake::default()
    };
    fake.inbound.extend([0x55u8; 100]);
    // A HelloAck whose payload does not decode, then a real one.
    fake.inbound.extend(host.frame(|_, b| {
        let header = omega_wire::Header::new(Stream::Control, Kind::HelloAck);
        omega_wire::encode_frame(&header, &[0xff; 3], b).unwrap()
    }));
    fake.inbound
        .extend(host.hello_ack(VERSION, SUPPORTED_VERSIONS, 4096));
    let mut ch = Channel::connect(fake, TEST).expect("handshake after junk");
    assert_eq!(ch.version, VERSION);
    let events = drain(&mut ch);
    let bad = malformed(&events);
    let skipped: usize = bad
        .iter()
        .map(|e| match e {
            WireError::Garbage { skipped } => *skipped,
            _ => 0,
        })
        .sum();
    assert_eq!(skipped, 100, "{bad:?}");
    assert_eq!(bad.last(), Some(&WireError::BadMessage), "{bad:?}");
    // One report for the batch.
    let out = guest_output(&mut ch, &mut host);
    assert_eq!(
        out.iter()
            .filter(|s| **s == Seen::Error(Stream::Control, msg::code::MALFORMED))
            .count(),
        1,
        "{out:?}"
    );
}

#[test]
fn sending_waits_for_credit_and_resumes_on_a_grant() {
    let (mut ch, mut host) = connected(1000, TEST);
    let m: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
    // The grants are already waiting when the send runs out of credit: `send` must read
    // them (it would spin forever otherwise).
    let grants = [
        host.credit(Stream::Echo, 1000),
        host.credit(Stream::Echo, 600),
    ]
    .concat();
    push(&mut ch, &grants);
    ch.send(Stream::Echo, &m).unwrap();
    assert_eq!(ch.credits.available(Stream::Echo), 100);
    let out = guest_output(&mut ch, &mut host);
    assert_eq!(out, [Seen::Message(Stream::Echo, m)]);
    // No frame was larger than the credit the host had granted at the time.
    assert!(ch.transport_mut().outbound.len() < 2500 + 3 * 64);
}

#[test]
fn waiting_for_credit_idles_the_transport_until_the_grant_comes() {
    let (mut ch, mut host) = connected(1000, TEST);
    let m = vec![5u8; 1500];
    // The grant arrives only while the guest idles (the monitor would be halted).
    ch.transport_mut().inbound_on_idle = host.credit(Stream::Echo, 1000);
    ch.send(Stream::Echo, &m).unwrap();
    assert!(ch.transport_mut().idles >= 1);
    let out = guest_output(&mut ch, &mut host);
    assert_eq!(out, [Seen::Message(Stream::Echo, m)]);
}

#[test]
fn a_grant_past_the_maximum_window_is_malformed() {
    let (mut ch, mut host) = connected(1000, TEST);
    push(&mut ch, &host.credit(Stream::Log, omega_wire::MAX_WINDOW));
    let events = drain(&mut ch);
    assert_eq!(malformed(&events), [WireError::CreditOverflow(Stream::Log)]);
    assert_eq!(ch.credits.available(Stream::Log), 1000, "grant ignored");
}

#[test]
fn the_guest_grants_back_the_credit_it_consumed() {
    let (mut ch, mut host) = connected(1000, TEST);
    // Half the window consumed: the guest hands it back.
    let m = vec![7u8; (INITIAL_WINDOW / 2) as usize];
    push(&mut ch, &host.message(Stream::Tools, &m));
    let events = drain(&mut ch);
    assert_eq!(messages(&events), [(Stream::Tools, &m[..])]);
    let out = guest_output(&mut ch, &mut host);
    let granted: u64 = out
        .iter()
        .map(|s| match s {
            Seen::Credit(Stream::Tools, g) => *g,
            other => panic!("unexpected {other:?}"),
        })
        .sum();
    assert_eq!(granted, u64::from(INITIAL_WINDOW / 2));

    // Three windows' worth in one go: the guest's grants as it consumes are what let a
    // message larger than the window through, and it never grants more than it consumed.
    let big = vec![1u8; 3 * INITIAL_WINDOW as usize];
    push(&mut ch, &host.message(Stream::Inference, &big));
    let events = drain(&mut ch);
    let got = messages(&events);
    assert!(
        got.len() == 1 && got[0].1 == &big[..],
        "{} events",
        events.len()
    );
    let granted: u64 = guest_output(&mut ch, &mut host)
        .iter()
        .map(|s| match s {
            Seen::Credit(Stream::Inference, g) => *g,
            other => panic!("unexpected {other:?}"),
        })
        .sum();
    assert!(
        (2 * u64::from(INITIAL_WINDOW)..=3 * u64::from(INITIAL_WINDOW)).contains(&granted),
        "{granted}"
    );
    assert_eq!(ch.malformed, 0);
}

#[test]
fn messages_arrive_whole_from_any_split_of_the_byte_stream() {
    let (mut ch, mut host) = connected(1000, TEST);
    ch.transport_mut().max_read = 7;
    let big: Vec<u8> = (0..40_000u32).map(|i| (i * 31) as u8).collect();
    let bytes = [
        host.message(Stream::Bundle, &big),
        host.message(Stream::Echo, b"Qhello"),
        host.message(Stream::Bundle, b""),
    ]
    .concat();
    push(&mut ch, &bytes);
    let events = drain(&mut ch);
    assert!(
        messages(&events)
            == [
                (Stream::Bundle, &big[..]),
                (Stream::Echo, &b"Qhello"[..]),
                (Stream::Bundle, &b""[..])
            ],
        "{} events",
        events.len()
    );
    assert_eq!(ch.malformed, 0);
}

#[test]
fn garbage_and_broken_frames_are_reported_once_per_batch_then_resynced() {
    let (mut ch, mut host) = connected(1000, TEST);
    let mut corrupt = host.message(Stream::Tools, b"corrupted");
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let bytes = [
        vec![0xaau8; 5000],
        corrupt,
        host.message(Stream::Tools, b"after"),
    ]
    .concat();
    push(&mut ch, &bytes);
    let events = drain(&mut ch);
    let bad = malformed(&events);
    assert!(matches!(bad[0], WireError::Garbage { .. }), "{bad:?}");
    assert!(bad.contains(&WireError::Crc), "{bad:?}");
    // The corrupted frame took sequence number 0, so "after" (seq 1) reveals the gap and,
    // being an END frame, only itself is dropped.
    assert!(
        bad.iter().any(|e| matches!(e, WireError::SeqGap { .. })),
        "{bad:?}"
    );
    let out = guest_output(&mut ch, &mut host);
    assert_eq!(
        out.iter()
            .filter(|s| **s == Seen::Error(Stream::Control, msg::code::MALFORMED))
            .count(),
        1,
        "{out:?}"
    );
    // And the channel still serves.
    push(&mut ch, &host.message(Stream::Tools, b"still here"));
    let events = drain(&mut ch);
    assert_eq!(messages(&events), [(Stream::Tools, &b"still here"[..])]);
    assert_eq!(ch.malformed, bad.len() as u64);
}

/// Polls `polls` times; the bad input reported.
fn poll_malformed(ch: &mut Channel<Fake>, polls: u64) -> Vec<WireError> {
    let mut bad = Vec::new();
    for _ in 0..polls {
        if let Some(Event::Malformed(e)) = ch.poll().unwrap() {
            bad.push(e);
        }
    }
    bad
}

/// After a resync, the frame the host was cut off in is lost and the next whole one gets
/// through (the decoder may eat the first one looking for a sync marker).
fn assert_recovers(ch: &mut Channel<Fake>, host: &mut Host) {
    push(ch, &host.message(Stream::Tools, b"x"));
    push(ch, &host.message(Stream::Tools, b"whole"));
    let events = drain(ch);
    assert_eq!(messages(&events), [(Stream::Tools, &b"whole"[..])]);
}

#[test]
fn a_half_frame_followed_by_silence_is_given_up_after_the_resync_time() {
    let (mut ch, mut host) = connected(1000, TEST);
    ch.transport_mut().clock_ns = Some(7);
    let f = host.message(Stream::Tools, &[9u8; 3000]);
    push(&mut ch, &f[..f.len() / 2]);
    // With a clock, polls do not count (a halted monitor polls seldom): only time does.
    let bad = poll_malformed(&mut ch, 10 * TEST.idle_resync_polls);
    assert_eq!(bad, []);
    ch.transport_mut().clock_ns = Some(7 + TEST.idle_resync_ns - 1);
    assert_eq!(poll_malformed(&mut ch, 1), []);
    ch.transport_mut().clock_ns = Some(7 + TEST.idle_resync_ns);
    let bad = poll_malformed(&mut ch, 1);
    assert!(matches!(bad[..], [WireError::Truncated(_)]), "{bad:?}");
    assert_recovers(&mut ch, &mut host);
}

#[test]
fn input_restarts_the_idle_resync_time() {
    let (mut ch, mut host) = connected(1000, TEST);
    ch.transport_mut().clock_ns = Some(0);
    let f = host.message(Stream::Tools, &[9u8; 3000]);
    let step = TEST.idle_resync_ns * 3 / 4;
    push(&mut ch, &f[..1000]);
    assert_eq!(poll_malformed(&mut ch, 3), []);
    ch.transport_mut().clock_ns = Some(step);
    push(&mut ch, &f[1000..2000]);
    assert_eq!(poll_malformed(&mut ch, 3), []);
    // Longer than the resync time since the frame began, but not since the last input.
    ch.transport_mut().clock_ns = Some(2 * step);
    assert_eq!(poll_malformed(&mut ch, 3), []);
    // A slow host finishes the frame late, and it still counts.
    push(&mut ch, &f[2000..]);
    assert_eq!(
        messages(&drain(&mut ch)),
        [(Stream::Tools, &[9u8; 3000][..])]
    );
}

#[test]
fn without_a_clock_the_idle_resync_counts_polls() {
    let (mut ch, mut host) = connected(1000, TEST);
    let f = host.message(Stream::Tools, &[9u8; 3000]);
    push(&mut ch, &f[..f.len() / 2]);
    let bad = poll_malformed(&mut ch, 2 * TEST.idle_resync_polls);
    assert!(matches!(bad[..], [WireError::Truncated(_), ..]), "{bad:?}");
    assert_recovers(&mut ch, &mut host);
}

#[test]
fn an_oversized_message_is_refused_and_the_stream_recovers() {
    let config = Config {
        max_message: 20_000,
        ..TEST
    };
    let (mut ch, mut host) = connected(1000, config);
    let big = vec![3u8; 30_000];
    push(&mut ch, &host.message(Stream::Bundle, &big));
    let events = drain(&mut ch);
    assert_eq!(
        malformed(&events),
        [WireError::MessageTooLarge(Stream::Bundle)]
    );
    assert!(messages(&events).is_empty());
    push(&mut ch, &host.message(Stream::Bundle, b"next"));
    let events = drain(&mut ch);
    assert_eq!(messages(&events), [(Stream::Bundle, &b"next"[..])]);
    assert_eq!(ch.malformed, 1);
    assert_eq!(
        guest_output(&mut ch, &mut host),
        [Seen::Error(Stream::Control, msg::code::MALFORMED)]
    );
}

#[test]
fn peer_errors_close_and_acks_become_events() {
    let (mut ch, mut host) = connected(1000, TEST);
    let mut ack = vec![0u8; MAX_FRAME];
    let n = host.enc.ack(0, 0, &mut ack).unwrap();
    ack.truncate(n);
    let mut close = vec![0u8; MAX_FRAME];
    let n = host.enc.close(Stream::Tools, &mut close).unwrap();
    close.truncate(n);
    let bytes = [
        host.error(Stream::Inference, msg::code::BACKEND, "model crashed"),
        ack,
        close,
    ]
    .concat();
    push(&mut ch, &bytes);
    let events = drain(&mut ch);
    assert!(
        matches!(
            &events[..],
            [
                Event::LogAck { stored: 0 },
                Event::PeerError { stream: Stream::Inference, code: msg::code::BACKEND, message },
                Event::Closed(Stream::Tools),
            ] if message == "model crashed"
        ),
        "{events:?}"
    );
    // Nothing went back: a peer's error is not answered with one.
    assert!(guest_output(&mut ch, &mut host).is_empty());
    assert_eq!(ch.malformed, 0);
}

#[test]
fn a_second_handshake_is_malformed() {
    let (mut ch, mut host) = connected(1000, TEST);
    push(&mut ch, &host.hello_ack(VERSION, SUPPORTED_VERSIONS, 1));
    let events = drain(&mut ch);
    assert_eq!(
        malformed(&events),
        [WireError::Protocol("handshake frame after the handshake")]
    );
    assert_eq!(ch.credits.available(Stream::Echo), 1000, "window unchanged");
}

fn faults(events: &[Event<Fault>]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TransportFault(Fault(f)) => Some(*f),
            _ => None,
        })
        .collect()
}

#[test]
fn transport_faults_are_reported_and_survived() {
    let (mut ch, mut host) = connected(1000, TEST);
    // Two faults in a row are one report; a fault after a good read is another.
    ch.transport_mut()
        .faults
        .extend(["bad length", "unknown token"]);
    push(&mut ch, &host.message(Stream::Echo, b"Qping"));
    let events = drain(&mut ch);
    assert_eq!(faults(&events), ["bad length"]);
    assert_eq!(messages(&events), [(Stream::Echo, &b"Qping"[..])]);
    ch.transport_mut().faults.push_back("again");
    assert!(matches!(
        ch.poll(),
        Ok(Some(Event::TransportFault(Fault("again"))))
    ));
    assert_eq!(ch.malformed, 3);
    let out = guest_output(&mut ch, &mut host);
    assert!(
        out.contains(&Seen::Error(Stream::Control, msg::code::MALFORMED)),
        "{out:?}"
    );
}

#[test]
fn send_error_reaches_the_host() {
    let (mut ch, mut host) = connected(1000, TEST);
    ch.send_error(Stream::Bundle, msg::code::PROTOCOL, "bundle refused")
        .unwrap();
    assert_eq!(
        guest_output(&mut ch, &mut host),
        [Seen::Error(Stream::Bundle, msg::code::PROTOCOL)]
    );
}

#[test]
fn a_flood_before_the_handshake_is_counted_not_queued() {
    let mut host = Host::new();
    let mut fake = Fake {
        max_read: 1,
        ..Fake::default()
    };
    fake.faults.extend(core::iter::repeat_n("stuck", 5000));
    // Single-byte reads of garbage: one bad stretch per byte.
    for _ in 0..5000 {
        fake.inbound
            .extend(host.message(Stream::Tools, b"x")[..6].iter().copied());
    }
    fake.inbound
        .extend(host.hello_ack(VERSION, SUPPORTED_VERSIONS, 4096));
    let config = Config {
        hello_polls: 1_000_000,
        ..TEST
    };
    let mut ch = Channel::connect(fake, config).expect("handshake after the flood");
    // Far more bad input than the queue holds: every partial frame is reported.
    assert!(
        ch.malformed > 5000 + 10 * MAX_QUEUED_BAD_INPUT as u64,
        "{}",
        ch.malformed
    );
    let events = drain(&mut ch);
    assert!(
        events.len() <= MAX_QUEUED_BAD_INPUT,
        "{} events",
        events.len()
    );
    assert_eq!(faults(&events), ["stuck"]);
}

fn ack(host: &mut Host, stored: u64) -> Vec<u8> {
    host.frame(|e, b| e.ack(0, stored, b).unwrap())
}

fn acks(events: &[Event<Fault>]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::LogAck { stored } => Some(*stored),
            _ => None,
        })
        .collect()
}

/// Attack: the host acknowledges log bytes it was never sent (so that the monitor would
/// release entries nobody stored), or goes backwards. Refused, reported, ignored; acks
/// coalesce to the latest valid one.
#[test]
fn an_ack_beyond_what_was_sent_is_refused() {
    let (mut ch, mut host) = connected(1000, TEST);
    ch.send(Stream::Log, &[1u8; 500]).unwrap();
    let _ = guest_output(&mut ch, &mut host);
    push(&mut ch, &ack(&mut host, 501));
    let events = drain(&mut ch);
    assert!(acks(&events).is_empty(), "{events:?}");
    assert_eq!(
        malformed(&events),
        [WireError::Protocol("Ack beyond the log bytes sent")]
    );
    assert_eq!(
        guest_output(&mut ch, &mut host),
        [Seen::Error(Stream::Control, msg::code::MALFORMED)]
    );
    // Valid acks, several in one batch: the latest is what counts.
    let batch = [ack(&mut host, 100), ack(&mut host, 300)].concat();
    push(&mut ch, &batch);
    assert_eq!(acks(&drain(&mut ch)), [300]);
    push(&mut ch, &ack(&mut host, 200));
    let events = drain(&mut ch);
    assert!(acks(&events).is_empty());
    assert_eq!(
        malformed(&events),
        [WireError::Protocol("Ack went backwards")]
    );
    push(&mut ch, &ack(&mut host, 500));
    assert_eq!(acks(&drain(&mut ch)), [500]);
    // The ack is also there for a producer that waits for it without polling.
    push(&mut ch, &ack(&mut host, 500));
    assert!(ch.receive().unwrap());
    assert_eq!(ch.take_log_ack(), Some(500));
    assert_eq!(ch.take_log_ack(), None);
}

fn tools_queued(events: &[Event<Fault>]) -> usize {
    messages(events)
        .iter()
        .filter(|(s, _)| *s == Stream::Tools)
        .count()
}

/// Bytes of the messages in the queue, and their number.
fn queued(ch: &Channel<Fake>) -> (usize, usize) {
    let sizes = ch.events.iter().filter_map(|e| match e {
        Event::Message(_, m) => Some(m.len()),
        _ => None,
    });
    (sizes.clone().sum(), sizes.count())
}

/// Attack: while the guest waits for credit, the host floods it: far more data than its
/// credit on one stream, thousands of empty messages (which need no credit), errors,
/// closes and acks. The guest's queue stays within its bounds (one window beyond the
/// first whole message per stream, `MAX_QUEUED_MESSAGES` messages, the caps on the rest),
/// the excess is refused and reported, and the send completes when the credit comes.
#[test]
fn a_flood_while_the_guest_waits_for_credit_stays_bounded() {
    let (mut ch, mut host) = connected(1000, TEST);
    ch.send(Stream::Log, &[0u8; 1000]).unwrap(); // uses up the Log credit
    let _ = guest_output(&mut ch, &mut host);
    let mut flood = Vec::new();
    for i in 0..400u32 {
        // 400 KiB on Tools: 6 windows' worth, ignoring credit.
        flood.extend(host.message(Stream::Tools, &[i as u8; 1024]));
    }
    for _ in 0..3000 {
        flood.extend(host.message(Stream::Echo, b""));
    }
    for _ in 0..100 {
        flood.extend(host.error(Stream::Inference, msg::code::BACKEND, "noise"));
        flood.extend(host.frame(|e, b| e.close(Stream::Tools, b).unwrap()));
        flood.extend(ack(&mut host, 10));
    }
    flood.extend(host.credit(Stream::Log, 1000));
    push(&mut ch, &flood);
    ch.send(Stream::Log, &[1u8; 1000]).unwrap();
    assert!(ch.transport_mut().inbound.is_empty());

    let (bytes, count) = queued(&ch);
    let window = INITIAL_WINDOW as usize;
    assert!(bytes <= 1024 + window, "{bytes} bytes queued");
    assert!(count <= MAX_QUEUED_MESSAGES, "{count} messages queued");
    assert!(
        ch.events.len()
            <= MAX_QUEUED_MESSAGES
                + MAX_QUEUED_PEER_ERRORS
                + MAX_QUEUED_BAD_INPUT
                + Stream::ALL.len()
    );
    assert_eq!(ch.unshown_peer_errors, 100 - MAX_QUEUED_PEER_ERRORS as u64);
    // No credit was granted for Tools past the first message while it waited.
    let out = guest_output(&mut ch, &mut host);
    assert!(
        !out.iter()
            .any(|s| matches!(s, Seen::Credit(Stream::Tools, _))),
        "{out:?}"
    );
    assert!(
        out.contains(&Seen::Error(Stream::Echo, msg::code::TOO_LARGE)),
        "{out:?}"
    );
    assert!(out.contains(&Seen::Message(Stream::Log, vec![1u8; 1000])));

    let events = drain(&mut ch);
    let bad = malformed(&events);
    assert!(
        bad.contains(&WireError::CreditExceeded(Stream::Tools)),
        "{bad:?}"
    );
    // 3000 empty messages, the queue holds fewer: the rest were refused (and counted).
    let echoes = messages(&events)
        .iter()
        .filter(|(s, _)| *s == Stream::Echo)
        .count();
    assert!(
        echoes < 3000 && echoes + tools_queued(&events) <= MAX_QUEUED_MESSAGES,
        "{echoes}"
    );
    assert!(ch.malformed >= (3000 - echoes) as u64, "{}", ch.malformed);
    assert_eq!(acks(&events), [10], "acks coalesce");
    let closes = events
        .iter()
        .filter(|e| matches!(e, Event::Closed(_)))
        .count();
    assert_eq!(closes, 1);
    let tools = tools_queued(&events);
    assert!(tools >= 1 && tools <= 1 + window / 1024, "{tools}");
}

/// An honest host that sends exactly its credit while the guest is busy loses nothing: the
/// credit held back while messages waited returns once they are handed out, and the next
/// messages then flow.
#[test]
fn credit_held_back_while_messages_wait_returns_when_they_are_handed_out() {
    let (mut ch, mut host) = connected(1000, TEST);
    let window = INITIAL_WINDOW as usize;
    let m = vec![5u8; 4096];
    let mut batch = Vec::new();
    for _ in 0..window / m.len() {
        batch.extend(host.message(Stream::Inference, &m));
    }
    push(&mut ch, &batch);
    assert!(ch.receive().unwrap());
    let granted = |out: &[Seen]| -> u64 {
        out.iter()
            .map(|s| match s {
                Seen::Credit(Stream::Inference, g) => *g,
                _ => 0,
            })
            .sum()
    };
    // Only the first message's bytes were granted back while the rest wait.
    let before = granted(&guest_output(&mut ch, &mut host));
    assert!(before <= m.len() as u64, "{before}");
    let events = drain(&mut ch);
    assert_eq!(messages(&events).len(), window / m.len());
    let after = granted(&guest_output(&mut ch, &mut host));
    assert_eq!(before + after, window as u64, "the whole window came back");
    assert_eq!(ch.malformed, 0);
}

#[test]
fn one_message_can_be_taken_out_of_the_queue_leaving_the_rest_in_order() {
    let (mut ch, mut host) = connected(1000, TEST);
    let bytes = [
        host.message(Stream::Control, b"notice"),
        host.message(Stream::Echo, b"Qhello"),
        host.message(Stream::Control, b"Rresponse"),
        host.message(Stream::Control, b"Rsecond"),
        host.message(Stream::Tools, b"Rtool"),
    ]
    .concat();
    push(&mut ch, &bytes);
    while !ch.transport_mut().inbound.is_empty() {
        ch.receive().unwrap();
    }
    let is_answer = |m: &[u8]| m.starts_with(b"R");
    assert_eq!(
        ch.take_message(Stream::Control, is_answer).as_deref(),
        Some(&b"Rresponse"[..])
    );
    assert_eq!(ch.take_message(Stream::Echo, is_answer), None);
    let events = drain(&mut ch);
    assert_eq!(
        messages(&events),
        [
            (Stream::Control, &b"notice"[..]),
            (Stream::Echo, &b"Qhello"[..]),
            (Stream::Control, &b"Rsecond"[..]),
            (Stream::Tools, &b"Rtool"[..]),
        ]
    );
    assert_eq!(ch.take_message(Stream::Control, |_| true), None);
    // The counts stay right: nothing queued, no credit left held back.
    assert!(
        Stream::ALL
            .iter()
            .all(|s| ch.queued[*s] == 0 && ch.deferred[*s] == 0)
    );
}

fn resumes(events: &[Event<Fault>]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::LogResume { stored } => Some(*stored),
            _ => None,
        })
        .collect()
}

/// A new launcher attaches while the guest is sending the log: the message cut by the
/// reconnect is not continued on the new connection, the guest says Hello again, and the
/// Log stays held (no data, no ack believed) until the log service accepts the new host's
/// claim; then Log data starts a fresh sequence and acks count from the log's first byte.
#[test]
fn a_reconnect_starts_a_new_handshake_and_holds_the_log_until_resumed() {
    let (mut ch, mut old) = connected(100, TEST);
    ch.transport_mut().reconnect_on_idle = true;
    // 300 bytes against 100 bytes of credit: the send waits, and the host reconnects.
    assert!(matches!(
        ch.send(Stream::Log, &[7u8; 300]),
        Err(ChannelError::Reconnected)
    ));
    assert_eq!(ch.reconnects, 1);
    assert!(ch.log_held());
    // The old host saw the first frame of the message; the new one sees a Hello first.
    let out = ch.transport_mut().outbound.clone();
    let seen = old.seen(&out);
    assert_eq!(
        seen.last(),
        Some(&Seen::Hello {
            versions: SUPPORTED_VERSIONS.to_vec(),
            window: INITIAL_WINDOW
        })
    );
    let mut new = Host::new();
    new.read = out.len();
    // Nothing goes on Log meanwhile.
    assert!(matches!(
        ch.send(Stream::Log, b"x"),
        Err(ChannelError::LogHeld)
    ));
    // An ack before the HelloAck is not believed (a frame before the handshake).
    push(&mut ch, &ack(&mut new, 100));
    let events = drain(&mut ch);
    assert!(acks(&events).is_empty());
    assert_eq!(
        malformed(&events),
        [WireError::Protocol("frame before the handshake")]
    );
    assert!(
        matches!(events.first(), Some(Event::Reconnected)),
        "{events:?}"
    );
    // The HelloAck states what the new host holds: handed to the log service.
    push(&mut ch, &new.resume_ack(2, &[1, 2], 1000, 40));
    let events = drain(&mut ch);
    assert_eq!(resumes(&events), [40]);
    assert_eq!(ch.version, 2);
    // Until the service accepts, acks are refused and Log is held.
    push(&mut ch, &ack(&mut new, 40));
    let events = drain(&mut ch);
    assert!(acks(&events).is_empty());
    assert_eq!(
        malformed(&events),
        [WireError::Protocol("Ack before the log resumed")]
    );
    assert!(matches!(
        ch.send(Stream::Log, b"x"),
        Err(ChannelError::LogHeld)
    ));
    ch.resume_accepted(40);
    ch.send(Stream::Log, &[9u8; 50]).unwrap();
    let seen = guest_output(&mut ch, &mut new);
    assert!(
        seen.contains(&Seen::Message(Stream::Log, vec![9u8; 50])),
        "{seen:?}"
    );
    // Acks count log bytes from the log's first byte: 40 held + 50 sent.
    push(&mut ch, &ack(&mut new, 91));
    let events = drain(&mut ch);
    assert_eq!(
        malformed(&events),
        [WireError::Protocol("Ack beyond the log bytes sent")]
    );
    push(&mut ch, &ack(&mut new, 90));
    assert_eq!(acks(&drain(&mut ch)), [90]);
}

/// A resume the log service refuses is told to the host, and the Log stays held; a
/// version-1 host (no claim) is handed out as holding nothing.
#[test]
fn a_refused_resume_keeps_the_log_held() {
    let (mut ch, _old) = connected(1000, TEST);
    ch.transport_mut().reconnect = true;
    let _ = drain(&mut ch);
    let mut new = Host::new();
    new.read = ch.transport_mut().outbound.len();
    push(&mut ch, &new.resume_ack(1, &[1], 1000, 0));
    assert_eq!(resumes(&drain(&mut ch)), [0]);
    assert_eq!(ch.take_resume(), None);
    ch.resume_refused("resume refused").unwrap();
    assert_eq!(
        guest_output(&mut ch, &mut new),
        [Seen::Error(Stream::Log, msg::code::PROTOCOL)]
    );
    assert!(ch.log_held());
    assert!(matches!(
        ch.send(Stream::Log, b"x"),
        Err(ChannelError::LogHeld)
    ));
    // Another launcher: a new Hello, and its claim can be taken without polling.
    ch.transport_mut().reconnect = true;
    assert!(ch.receive().unwrap());
    let mut third = Host::new();
    let out = ch.transport_mut().outbound.clone();
    third.read = out.len();
    push(&mut ch, &third.resume_ack(2, &[2], 1000, 0));
    assert!(ch.receive().unwrap());
    assert_eq!(ch.take_resume(), Some(0));
    assert!(resumes(&drain(&mut ch)).is_empty());
}
