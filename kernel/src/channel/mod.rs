//! The guest end of the host channel: `omega-wire` frames over any byte [`Transport`] (the
//! binary's virtio serial port; an in-memory fake in the tests).
//!
//! Everything the host sends is checked by the wire decoder (sync marker, header and frame
//! CRCs, bounds), the credit tracker and the reassembler; anything bad becomes an
//! [`Event::Malformed`] (or [`Event::TransportFault`] when the transport itself got an
//! impossible answer from the host), one `Error` frame per batch tells the host, the decoder
//! resynchronises, and the channel keeps running. Outgoing data waits for credit: a host
//! that stops reading blocks the sender, and nothing is dropped.
//!
//! # Memory: what the host can make the channel hold
//!
//! The channel never stops reading the transport (credit grants and acknowledgements must
//! get through while the monitor waits for them), so everything it holds is bounded as it
//! arrives:
//!
//! - *Message bytes*, by credit: a stream's partial message is bounded by `max_message`;
//!   while a whole message of a stream waits in the queue, the credit its later frames use
//!   is not returned (it is *deferred* until the queue has handed the stream's messages to
//!   the monitor), so the host can add at most one window more. Per stream at most
//!   `max_message` + the window: 6 × (2 MiB + 64 KiB) in all.
//! - *Messages*, by count: at most [`MAX_QUEUED_MESSAGES`]; one more (empty messages need
//!   no credit) is refused with an `Error(TOO_LARGE)` on its stream, once per batch.
//! - *Everything else*, by coalescing: one pending `Ack` (the latest valid one), one
//!   `Close` per stream, at most [`MAX_QUEUED_PEER_ERRORS`] host errors and
//!   [`MAX_QUEUED_BAD_INPUT`] bad-input reports, the rest counted.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use omega_wire::{
    Credits, Decoder, Encoder, Hello, HelloAck, INITIAL_WINDOW, Kind, MAX_FRAME, PerStream,
    RESUME_VERSION, Reassembler, SUPPORTED_VERSIONS, Stream, WireError, msg, negotiate,
};

mod host_text;
#[cfg(test)]
mod tests;

pub use host_text::HostText;

/// The agreed (version, host window, log bytes the host holds) of a HelloAck, or `None`
/// when it names no version both sides speak.
fn agreed(payload: &[u8]) -> Result<Option<(u8, u32, u64)>, WireError> {
    let ack = HelloAck::decode(payload)?;
    Ok(negotiate(SUPPORTED_VERSIONS, ack.versions)
        .ok()
        .filter(|v| *v == ack.version)
        .map(|v| {
            let stored = if v >= RESUME_VERSION {
                ack.log_stored
            } else {
                0
            };
            (v, ack.window, stored)
        }))
}

/// A byte pipe to the host.
pub trait Transport {
    type Error: core::fmt::Display + core::fmt::Debug;
    /// Copies bytes that have arrived into `buf`; returns how many, 0 when nothing is
    /// pending. Never waits.
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;
    /// Sends all of `data`; may wait while the host is not reading (backpressure).
    fn send(&mut self, data: &[u8]) -> Result<(), Self::Error>;
    /// Monotonic nanoseconds, which time the idle resync; `None` without a clock (the
    /// resync then counts polls, `Config::idle_resync_polls`).
    fn now_ns(&mut self) -> Option<u64> {
        None
    }
    /// Waits until input may have arrived: called when a poll found none and the channel's
    /// user (or the channel itself, waiting for credit) has nothing else to do. May return
    /// at once; the caller polls again. The default spins once.
    fn idle(&mut self) {
        core::hint::spin_loop();
    }
    /// True once after the host's end of the pipe closed and opened again (a new launcher
    /// attached): whatever was in flight either way is lost, and the channel starts a new
    /// handshake. The default never reconnects.
    fn reconnected(&mut self) -> bool {
        false
    }
}

impl<T: Transport + ?Sized> Transport for &mut T {
    type Error = T::Error;
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        (**self).recv(buf)
    }
    fn send(&mut self, data: &[u8]) -> Result<(), Self::Error> {
        (**self).send(data)
    }
    fn now_ns(&mut self) -> Option<u64> {
        (**self).now_ns()
    }
    fn idle(&mut self) {
        (**self).idle()
    }
    fn reconnected(&mut self) -> bool {
        (**self).reconnected()
    }
}

/// How long the channel waits, and how much it buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Polls to wait for the host's HelloAck.
    pub hello_polls: u64,
    /// Time without input after which a partial frame is given up on: a host that sent
    /// half a frame and stopped must not wedge the decoder until it sends more.
    pub idle_resync_ns: u64,
    /// The same in polls, for a transport without a clock (`Transport::now_ns` is `None`),
    /// which must then not sleep between polls for long.
    pub idle_resync_polls: u64,
    /// Largest message reassembled on one stream.
    pub max_message: usize,
}

const _: () = assert!(omega_bundle::MAX_CHUNK < Config::MONITOR.max_message);

impl Config {
    /// The monitor's settings: about a few seconds for the HelloAck under TCG.
    pub const MONITOR: Config = Config {
        hello_polls: 20_000_000,
        // As the host side's IDLE_RESYNC: no frame half-sent for a second is still coming.
        idle_resync_ns: 1_000_000_000,
        idle_resync_polls: 2_000_000,
        // SECURITY: bounds what the host can make the monitor buffer per stream. At least a
        // bundle content message (`omega_bundle::MAX_CHUNK`, 1 MiB) and the Echo benchmark's
        // 1 MiB plus its tag; see the heap arithmetic in `omega_bundle::limits`.
        max_message: 2 << 20,
    };
}

/// What the host did.
#[derive(Debug)]
pub enum Event<E> {
    /// A whole message on a stream.
    Message(Stream, Vec<u8>),
    /// The host has durably stored this many Log stream bytes.
    LogAck { stored: u64 },
    /// The host reports an error on a stream.
    PeerError {
        stream: Stream,
        code: u16,
        message: String,
    },
    /// Bad input from the host, skipped (already reported to the host).
    Malformed(WireError),
    /// The transport got an impossible answer from the host (already reported to it).
    TransportFault(E),
    /// The host closed a stream.
    Closed(Stream),
    /// A new host connection (protocol v2) holds the first `stored` bytes of the log: the
    /// log service checks the claim and answers [`Channel::resume_accepted`] or
    /// [`Channel::resume_refused`]; until then nothing is sent on Log.
    LogResume { stored: u64 },
    /// The host reconnected: messages in flight either way are lost (requests waiting for
    /// an answer will get none). Queued once per reconnect, before its `LogResume`.
    Reconnected,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError<E> {
    #[error("{0}")]
    Transport(E),
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The host did not answer the Hello in time.
    #[error("the host did not answer the Hello")]
    NoHello,
    #[error("the host speaks no common protocol version")]
    NoCommonVersion,
    /// The host reconnected while the message was being sent: the rest of it was not sent.
    #[error("the host reconnected; the message was cut off")]
    Reconnected,
    /// Nothing goes on the Log stream until a new host's resume is accepted.
    #[error("the log is held until the host resumes it")]
    LogHeld,
}

/// Bytes read from the transport per poll.
const RX_CHUNK: usize = 16 * 1024;
/// Bad-input events queued at most; past this they are only counted. Bounds the memory a
/// flood of garbage can take before the monitor gets to poll (during the handshake).
pub const MAX_QUEUED_BAD_INPUT: usize = 64;
/// Whole messages queued at most (all streams); one more is refused.
pub const MAX_QUEUED_MESSAGES: usize = 1024;
/// Host `Error` reports queued at most; past this they are only counted.
pub const MAX_QUEUED_PEER_ERRORS: usize = 16;

pub struct Channel<T: Transport> {
    transport: T,
    config: Config,
    dec: Box<Decoder>,
    enc: Encoder,
    credits: Credits,
    reasm: Reassembler,
    frame: Vec<u8>,
    rx: Vec<u8>,
    /// Bytes read from the transport that the decoder had no room for yet.
    backlog: Vec<u8>,
    events: VecDeque<Event<T::Error>>,
    /// Whole messages in `events`, per stream.
    queued: PerStream<usize>,
    /// Bytes consumed on a stream while it had messages queued: credit returned once they
    /// are handed out.
    deferred: PerStream<usize>,
    /// Streams on which a message was refused since the last batch was reported.
    refused: PerStream<bool>,
    /// The latest valid `Ack` not yet handed out (acks coalesce: each says "all up to here").
    ack: Option<u64>,
    /// Highest valid acknowledgement so far.
    acked: u64,
    /// Payload bytes sent on the Log stream (what an `Ack` may acknowledge at most).
    log_sent: u64,
    /// Host `Error`s in `events`, and those not queued because too many were.
    queued_peer_errors: usize,
    pub unshown_peer_errors: u64,
    /// Streams with a `Closed` in `events` (a repeated Close is not queued again).
    close_queued: PerStream<bool>,
    /// Bad input noticed since the last Error frame went to the host.
    unreported: bool,
    /// The last `recv` failed: a fault that persists is reported once, not once per poll.
    recv_faulting: bool,
    pub version: u8,
    /// Pieces of bad input from the host so far (malformed frames and transport faults).
    pub malformed: u64,
    /// Host connections after the first (reconnects noticed).
    pub reconnects: u64,
    /// A new Hello went out after a reconnect; its HelloAck has not come.
    handshaking: bool,
    /// Nothing is sent on Log and no Ack is believed: from a reconnect until the log
    /// service accepts the new host's resume.
    log_held: bool,
    /// Polls in a row that brought no bytes, and the time of the last that did (for the
    /// idle resync).
    idle_polls: u64,
    idle_since_ns: Option<u64>,
}

impl<T: Transport> Channel<T> {
    /// Says Hello and waits (`config.hello_polls` polls at most) for the host's HelloAck.
    /// Bad frames before it are counted and skipped; a HelloAck with no common version is
    /// answered with an `Error(NO_COMMON_VERSION)`.
    pub fn connect(transport: T, config: Config) -> Result<Self, ChannelError<T::Error>> {
        let mut ch = Channel {
            transport,
            config,
            dec: Box::new(Decoder::new()),
            enc: Encoder::new(),
            credits: Credits::new(INITIAL_WINDOW, 1),
            reasm: Reassembler::new(config.max_message),
            frame: vec![0u8; MAX_FRAME],
            rx: vec![0u8; RX_CHUNK],
            backlog: Vec::new(),
            events: VecDeque::new(),
            queued: PerStream::default(),
            deferred: PerStream::default(),
            refused: PerStream::default(),
            ack: None,
            acked: 0,
            log_sent: 0,
            queued_peer_errors: 0,
            unshown_peer_errors: 0,
            close_queued: PerStream::default(),
            unreported: false,
            recv_faulting: false,
            version: 0,
            malformed: 0,
            reconnects: 0,
            handshaking: false,
            log_held: false,
            idle_polls: 0,
            idle_since_ns: None,
        };
        let n = ch.enc.hello(
            &Hello {
                versions: SUPPORTED_VERSIONS,
                window: INITIAL_WINDOW,
            },
            &mut ch.frame,
        )?;
        ch.send_frame(n)?;
        for _ in 0..config.hello_polls {
            let got = ch.recv();
            if got == 0 {
                core::hint::spin_loop();
                continue;
            }
            ch.backlog.extend_from_slice(&ch.rx[..got]);
            if let Some(agreed) = ch.next_hello_ack() {
                let Some((version, window, log_stored)) = agreed else {
                    ch.send_error(
                        Stream::Control,
                        msg::code::NO_COMMON_VERSION,
                        "no common protocol version",
                    )?;
                    return Err(ChannelError::NoCommonVersion);
                };
                ch.version = version;
                ch.credits = Credits::new(INITIAL_WINDOW, window);
                if log_stored != 0 {
                    // SECURITY: nothing of the log was sent yet; the claim is ignored.
                    ch.note_bad_input(Event::Malformed(WireError::Protocol(
                        "HelloAck claims log bytes before any were sent",
                    )));
                }
                // What went wrong before the handshake is reported with the first poll.
                return Ok(ch);
            }
        }
        Err(ChannelError::NoHello)
    }

    /// The next decodable HelloAck in the input, as the agreed (version, host window, log
    /// bytes the host holds), or `Some(None)` when it names no version both sides speak.
    /// Everything before it is skipped and counted as malformed.
    fn next_hello_ack(&mut self) -> Option<Option<(u8, u32, u64)>> {
        loop {
            self.feed();
            let item = self.dec.next_frame()?;
            let bad = match item {
                Ok(frame) if frame.kind() == Kind::HelloAck => match agreed(frame.payload) {
                    Ok(agreed) => return Some(agreed),
                    Err(e) => e,
                },
                Ok(_) => WireError::Protocol("frame before the handshake"),
                Err(e) => e,
            };
            self.note_bad_input(Event::Malformed(bad));
        }
    }

    /// The transport, for what the channel does not wrap (diagnostics, tests).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    fn note_bad_input(&mut self, event: Event<T::Error>) {
        self.malformed += 1;
        self.unreported = true;
        let queued_bad = self
            .events
            .iter()
            .filter(|e| matches!(e, Event::Malformed(_) | Event::TransportFault(_)))
            .count();
        if queued_bad < MAX_QUEUED_BAD_INPUT {
            self.events.push_back(event);
        }
    }

    /// Reads what the transport has into `rx`; a failed read counts as bad input (reported
    /// once per run of failures) and reads nothing.
    fn recv(&mut self) -> usize {
        match self.transport.recv(&mut self.rx) {
            Ok(n) => {
                self.recv_faulting = false;
                n
            }
            Err(e) if self.recv_faulting => {
                drop(e);
                self.malformed += 1;
                0
            }
            Err(e) => {
                self.recv_faulting = true;
                self.note_bad_input(Event::TransportFault(e));
                0
            }
        }
    }

    /// Notes a read of `got` bytes; true once the transport has been without input for the
    /// idle resync's time (or polls, without a clock) and `may_resync` (the count then
    /// starts again).
    fn resync_due(&mut self, got: usize, may_resync: bool) -> bool {
        let now = self.transport.now_ns();
        if got > 0 {
            self.idle_polls = 0;
            self.idle_since_ns = now;
            return false;
        }
        self.idle_polls += 1;
        let idle = match (now, self.idle_since_ns) {
            (Some(now), Some(since)) => now.saturating_sub(since) >= self.config.idle_resync_ns,
            // No clock, or it just appeared: count polls (and start timing).
            _ => {
                self.idle_since_ns = self.idle_since_ns.or(now);
                self.idle_polls > self.config.idle_resync_polls
            }
        };
        let due = idle && may_resync;
        if due {
            self.idle_polls = 0;
            self.idle_since_ns = now;
        }
        due
    }

    /// Waits until input may have arrived ([`Transport::idle`]): for a caller whose
    /// `poll` or `receive` found nothing and that has nothing else to do.
    pub fn idle(&mut self) {
        self.transport.idle();
    }

    /// Moves backlog bytes into the decoder as far as it has room.
    fn feed(&mut self) {
        let n = self.dec.push(&self.backlog);
        self.backlog.drain(..n);
    }

    fn send_frame(&mut self, n: usize) -> Result<(), ChannelError<T::Error>> {
        self.transport
            .send(&self.frame[..n])
            .map_err(ChannelError::Transport)
    }

    /// The host's end of the pipe was closed and opened again (a new launcher attached):
    /// every piece of wire state starts again, partial messages either way are dropped,
    /// the log is held, and a new Hello goes out. Whole messages already queued stay.
    fn on_reconnect(&mut self) -> Result<(), ChannelError<T::Error>> {
        self.reconnects += 1;
        self.dec.reset();
        self.backlog.clear();
        self.reasm = Reassembler::new(self.config.max_message);
        self.enc = Encoder::new();
        // No credit until the new HelloAck: `send` waits for it.
        self.credits = Credits::new(INITIAL_WINDOW, 1);
        self.deferred = PerStream::default();
        self.ack = None;
        // A claim of the connection before is void.
        self.events
            .retain(|e| !matches!(e, Event::LogResume { .. }));
        self.log_held = true;
        self.handshaking = true;
        self.idle_polls = 0;
        self.idle_since_ns = None;
        self.events.push_back(Event::Reconnected);
        let n = self.enc.hello(
            &Hello {
                versions: SUPPORTED_VERSIONS,
                window: INITIAL_WINDOW,
            },
            &mut self.frame,
        )?;
        self.send_frame(n)
    }

    /// A HelloAck after a reconnect: the new connection's version and window, and its
    /// claim of log bytes held for the log service.
    fn on_hello_ack(&mut self, payload: &[u8]) -> Result<(), ChannelError<T::Error>> {
        match agreed(payload) {
            Ok(Some((version, window, log_stored))) => {
                self.version = version;
                self.credits = Credits::new(INITIAL_WINDOW, window);
                self.handshaking = false;
                // A version-1 host states nothing: it holds nothing.
                self.events
                    .push_back(Event::LogResume { stored: log_stored });
            }
            Ok(None) => {
                // Stays handshaking: usable again only after another reconnect.
                self.send_error(
                    Stream::Control,
                    msg::code::NO_COMMON_VERSION,
                    "no common protocol version",
                )?;
            }
            Err(e) => self.note_bad_input(Event::Malformed(e)),
        }
        Ok(())
    }

    /// A new host's claim of log bytes held, taken out of the queue (where `poll` would
    /// hand it out as [`Event::LogResume`]): for a caller waiting on the log.
    pub fn take_resume(&mut self) -> Option<u64> {
        let i = self
            .events
            .iter()
            .position(|e| matches!(e, Event::LogResume { .. }))?;
        match self.events.remove(i) {
            Some(Event::LogResume { stored }) => Some(stored),
            _ => None,
        }
    }

    /// The log service checked the new host's claim: the host holds the first `stored`
    /// bytes of the log. Log data flows again, and `Ack`s count from the log's first byte.
    pub fn resume_accepted(&mut self, stored: u64) {
        self.log_sent = stored;
        self.acked = stored;
        self.log_held = false;
    }

    /// The log service refused the new host's claim: the host is told, and the log stays
    /// held until another host resumes it correctly.
    pub fn resume_refused(&mut self, why: &str) -> Result<(), ChannelError<T::Error>> {
        self.log_held = true;
        self.send_error(Stream::Log, msg::code::PROTOCOL, why)
    }

    /// Whether the Log stream is held (after a reconnect, until a resume is accepted).
    pub fn log_held(&self) -> bool {
        self.log_held
    }

    /// Reads what the transport has and turns complete frames into events. Returns
    /// whether anything arrived.
    fn pump(&mut self) -> Result<bool, ChannelError<T::Error>> {
        self.return_deferred_credit()?;
        let got = self.recv();
        if self.transport.reconnected() {
            // Bytes read with the news: nothing of the new host's counts before its
            // HelloAck, and the old host's last bytes died with it.
            self.on_reconnect()?;
            return Ok(true);
        }
        self.backlog.extend_from_slice(&self.rx[..got]);
        let mut progress = got > 0;
        let mut grants: Vec<(Stream, u32)> = Vec::new();
        // Only with nothing left to feed: the decoder may just be full.
        let may_resync = self.backlog.is_empty();
        if self.resync_due(got, may_resync)
            && let Some(e) = self.dec.resync()
        {
            self.note_bad_input(Event::Malformed(e));
        }
        loop {
            self.feed();
            let Some(item) = self.dec.next_frame() else {
                break;
            };
            progress = true;
            let frame = match item {
                Ok(f) => f,
                Err(e) => {
                    self.note_bad_input(Event::Malformed(e));
                    continue;
                }
            };
            let stream = frame.stream();
            if self.handshaking {
                // As before the first handshake: nothing but the HelloAck counts.
                if frame.kind() == Kind::HelloAck {
                    let payload = frame.payload.to_vec();
                    self.on_hello_ack(&payload)?;
                } else {
                    self.note_bad_input(Event::Malformed(WireError::Protocol(
                        "frame before the handshake",
                    )));
                }
                continue;
            }
            let event = match frame.kind() {
                Kind::Data => {
                    if let Err(e) = self.credits.on_data(stream, frame.payload.len()) {
                        self.note_bad_input(Event::Malformed(e));
                        continue;
                    }
                    let len = frame.payload.len();
                    // SECURITY: the bytes are ours now (in the bounded reassembler, or in a
                    // message about to be queued). While the stream already has a message
                    // waiting, its credit is held back: a host cannot queue messages without
                    // bound while the monitor is busy (e.g. waiting for credit itself).
                    if self.queued[stream] > 0 {
                        self.deferred[stream] += len;
                    } else if let Some(g) = self.credits.consumed(stream, len) {
                        grants.push((stream, g));
                    }
                    match self.reasm.push(&frame) {
                        Ok(Some((s, m))) => self.queue_message(s, m),
                        Ok(None) => {}
                        Err(e) => self.note_bad_input(Event::Malformed(e)),
                    }
                    None
                }
                Kind::Credit => {
                    if let Err(e) = self.credits.on_credit(stream, frame.header.arg) {
                        self.note_bad_input(Event::Malformed(e));
                    }
                    None
                }
                Kind::Ack => {
                    let stored = frame.header.arg;
                    self.on_ack(stored);
                    None
                }
                Kind::Error => match msg::ErrorBody::decode(frame.payload) {
                    Ok(_) if self.queued_peer_errors >= MAX_QUEUED_PEER_ERRORS => {
                        self.unshown_peer_errors += 1;
                        None
                    }
                    Ok(b) => {
                        self.queued_peer_errors += 1;
                        Some(Event::PeerError {
                            stream,
                            code: b.code,
                            message: String::from(b.message),
                        })
                    }
                    // Reported to the monitor's console, not back to the host: an Error
                    // about an Error could ping-pong.
                    Err(e) => Some(Event::Malformed(e)),
                },
                Kind::Close => {
                    let already = core::mem::replace(&mut self.close_queued[stream], true);
                    (!already).then_some(Event::Closed(stream))
                }
                Kind::Hello | Kind::HelloAck => {
                    self.note_bad_input(Event::Malformed(WireError::Protocol(
                        "handshake frame after the handshake",
                    )));
                    None
                }
            };
            if let Some(e) = event {
                self.events.push_back(e);
            }
        }
        for (s, g) in grants {
            self.send_credit(s, g)?;
        }
        for s in Stream::ALL {
            if core::mem::take(&mut self.refused[s]) {
                self.send_error(
                    s,
                    msg::code::TOO_LARGE,
                    "monitor busy: too many messages queued, message refused",
                )?;
            }
        }
        if core::mem::take(&mut self.unreported) {
            // One Error frame per batch of bad input, so garbage cannot make us flood the host.
            self.send_error(
                Stream::Control,
                msg::code::MALFORMED,
                "malformed input from the host",
            )?;
        }
        Ok(progress)
    }

    fn send_credit(&mut self, s: Stream, grant: u32) -> Result<(), ChannelError<T::Error>> {
        let n = self.enc.credit(s, grant, &mut self.frame)?;
        self.send_frame(n)
    }

    /// Queues a whole message, or refuses it when too many are queued already.
    fn queue_message(&mut self, s: Stream, m: Vec<u8>) {
        let queued: usize = Stream::ALL.iter().map(|s| self.queued[*s]).sum();
        if queued >= MAX_QUEUED_MESSAGES {
            // SECURITY: empty messages need no credit; their number is bounded here.
            self.refused[s] = true;
            self.note_bad_input(Event::Malformed(WireError::Protocol(
                "too many messages queued: message refused",
            )));
            return;
        }
        self.queued[s] += 1;
        self.events.push_back(Event::Message(s, m));
    }

    /// An `Ack` from the host: every Log byte up to `stored` is durably stored.
    fn on_ack(&mut self, stored: u64) {
        // SECURITY: an acknowledgement of bytes never sent (or going backwards) would let
        // the monitor release log entries nobody stored; it is refused and ignored. So is
        // one from a new host before its resume was accepted.
        if self.log_held {
            self.note_bad_input(Event::Malformed(WireError::Protocol(
                "Ack before the log resumed",
            )));
        } else if stored > self.log_sent {
            self.note_bad_input(Event::Malformed(WireError::Protocol(
                "Ack beyond the log bytes sent",
            )));
        } else if stored < self.acked {
            self.note_bad_input(Event::Malformed(WireError::Protocol("Ack went backwards")));
        } else {
            self.acked = stored;
            self.ack = Some(stored);
        }
    }

    /// The latest valid `Ack` not yet handed out, if any (it is also handed out by `poll`).
    pub fn take_log_ack(&mut self) -> Option<u64> {
        self.ack.take()
    }

    /// Reads what the transport has and queues what it brought (credit, acks, messages),
    /// without handing anything out: for a caller that waits for credit or an ack.
    /// Returns whether anything arrived.
    pub fn receive(&mut self) -> Result<bool, ChannelError<T::Error>> {
        self.pump()
    }

    /// The next event, if any (polls the transport once). An error here is a failure to
    /// send (a credit grant or an error report); the channel stays usable.
    pub fn poll(&mut self) -> Result<Option<Event<T::Error>>, ChannelError<T::Error>> {
        self.return_deferred_credit()?;
        if let Some(stored) = self.ack.take() {
            return Ok(Some(Event::LogAck { stored }));
        }
        if self.events.is_empty() {
            self.pump()?;
            if let Some(stored) = self.ack.take() {
                return Ok(Some(Event::LogAck { stored }));
            }
        }
        let event = self.events.pop_front();
        match &event {
            Some(Event::Message(s, _)) => self.queued[*s] -= 1,
            Some(Event::PeerError { .. }) => self.queued_peer_errors -= 1,
            Some(Event::Closed(s)) => self.close_queued[*s] = false,
            _ => {}
        }
        Ok(event)
    }

    /// Takes the first queued message on `stream` that `wanted` accepts out of the queue,
    /// leaving everything else queued in order (for a caller waiting for one answer: the
    /// simulated PSP's response). Does not read the transport: call [`Channel::receive`].
    pub fn take_message(
        &mut self,
        stream: Stream,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let i = self
            .events
            .iter()
            .position(|e| matches!(e, Event::Message(s, m) if *s == stream && wanted(m)))?;
        match self.events.remove(i) {
            Some(Event::Message(s, m)) => {
                self.queued[s] -= 1;
                Some(m)
            }
            // `position` found a message at `i`.
            _ => None,
        }
    }

    /// Streams whose queued messages have all been handed out get their held-back credit.
    fn return_deferred_credit(&mut self) -> Result<(), ChannelError<T::Error>> {
        for s in Stream::ALL {
            if self.queued[s] == 0 && self.deferred[s] > 0 {
                let held = core::mem::take(&mut self.deferred[s]);
                if let Some(g) = self.credits.consumed(s, held) {
                    self.send_credit(s, g)?;
                }
            }
        }
        Ok(())
    }

    /// Sends `message` on `stream`, split into frames as credit allows; waits for credit
    /// (processing incoming frames meanwhile, within the bounds in the module docs) rather
    /// than dropping anything.
    pub fn send(&mut self, stream: Stream, message: &[u8]) -> Result<(), ChannelError<T::Error>> {
        let mut rest = message;
        let connection = self.reconnects;
        loop {
            if self.reconnects != connection {
                // SECURITY: the rest of a message must not reach the new host without its
                // start (on Log it would splice bytes into the stored log).
                return Err(ChannelError::Reconnected);
            }
            if stream == Stream::Log && self.log_held {
                return Err(ChannelError::LogHeld);
            }
            if self.handshaking {
                if !self.pump()? {
                    self.transport.idle();
                }
                continue;
            }
            match self
                .enc
                .data_with_credit(&mut self.credits, stream, rest, &mut self.frame)
            {
                Ok((taken, n)) => {
                    self.send_frame(n)?;
                    if stream == Stream::Log {
                        self.log_sent += taken as u64;
                    }
                    rest = &rest[taken..];
                    if rest.is_empty() && taken > 0 || message.is_empty() {
                        return Ok(());
                    }
                }
                Err(WireError::WouldBlock(_)) => {
                    if !self.pump()? {
                        self.transport.idle();
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reports a problem with `stream` to the host.
    pub fn send_error(
        &mut self,
        stream: Stream,
        code: u16,
        message: &str,
    ) -> Result<(), ChannelError<T::Error>> {
        let n = self.enc.error(stream, code, message, &mut self.frame)?;
        self.send_frame(n)
    }
}
