//! The guest end of the host channel: `omega-wire` frames over the virtio console.
//!
//! Everything the host sends is checked by the wire decoder (sync marker, header and frame
//! CRCs, bounds) and the credit tracker; anything bad becomes an [`Event::Malformed`] the
//! monitor reports, after which the decoder resynchronises and the channel keeps running.
//! Outgoing data waits for credit: a host that stops reading blocks the sender, and
//! nothing is dropped.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use omega_wire::{
    Credits, Decoder, Encoder, Hello, HelloAck, INITIAL_WINDOW, Kind, MAX_FRAME, Reassembler,
    SUPPORTED_VERSIONS, Stream, WireError, msg, negotiate,
};

use crate::virtio::{Console, ConsoleError};

/// Largest message the monitor reassembles (the bundle's files come as one message each).
pub const MAX_MESSAGE: usize = 32 << 20;

#[derive(Debug)]
pub enum Event {
    Message(Stream, Vec<u8>),
    LogAck {
        stored: u64,
    },
    PeerError {
        stream: Stream,
        code: u16,
        message: String,
    },
    Malformed(WireError),
    Closed(Stream),
}

#[derive(Debug)]
pub enum ChannelError {
    Console(ConsoleError),
    Wire(WireError),
    /// The host did not answer the Hello in time.
    NoHello,
    NoCommonVersion,
}

impl From<ConsoleError> for ChannelError {
    fn from(e: ConsoleError) -> Self {
        ChannelError::Console(e)
    }
}

impl From<WireError> for ChannelError {
    fn from(e: WireError) -> Self {
        ChannelError::Wire(e)
    }
}

impl core::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChannelError::Console(e) => write!(f, "{e}"),
            ChannelError::Wire(e) => write!(f, "{e}"),
            ChannelError::NoHello => write!(f, "the host did not answer the Hello"),
            ChannelError::NoCommonVersion => {
                write!(f, "the host speaks no common protocol version")
            }
        }
    }
}

pub struct Channel {
    console: Console,
    dec: Box<Decoder>,
    enc: Encoder,
    credits: Credits,
    reasm: Reassembler,
    frame: Vec<u8>,
    rx: Vec<u8>,
    /// Bytes read from the console that the decoder had no room for yet.
    backlog: Vec<u8>,
    events: VecDeque<Event>,
    pub version: u8,
    pub malformed: u64,
    /// Polls in a row that brought no bytes (for the idle resync).
    idle_polls: u64,
}

/// Polls without input after which a partial frame is given up on: a host that sent half a
/// frame and stopped must not wedge the decoder until it sends more.
const IDLE_RESYNC_POLLS: u64 = 2_000_000;

impl Channel {
    /// Says Hello and waits (`spins` polls at most) for the host's HelloAck.
    pub fn connect(console: Console, spins: u64) -> Result<Channel, ChannelError> {
        let mut ch = Channel {
            console,
            dec: Box::new(Decoder::new()),
            enc: Encoder::new(),
            credits: Credits::new(INITIAL_WINDOW, 1),
            reasm: Reassembler::new(MAX_MESSAGE),
            frame: vec![0u8; MAX_FRAME],
            rx: vec![0u8; 16 * 1024],
            backlog: Vec::new(),
            events: VecDeque::new(),
            version: 0,
            malformed: 0,
            idle_polls: 0,
        };
        let n = ch.enc.hello(
            &Hello {
                versions: SUPPORTED_VERSIONS,
                window: INITIAL_WINDOW,
            },
            &mut ch.frame,
        )?;
        ch.console.send(&ch.frame[..n])?;
        for _ in 0..spins {
            let got = ch.console.recv(&mut ch.rx)?;
            if got == 0 {
                core::hint::spin_loop();
                continue;
            }
            ch.backlog.extend_from_slice(&ch.rx[..got]);
            ch.feed();
            while let Some(item) = ch.dec.next_frame() {
                let Ok(frame) = item else { continue };
                if frame.kind() != Kind::HelloAck {
                    continue;
                }
                let ack = HelloAck::decode(frame.payload)?;
                let version = negotiate(SUPPORTED_VERSIONS, ack.versions)
                    .map_err(|_| ChannelError::NoCommonVersion)?;
                if ack.version != version {
                    return Err(ChannelError::NoCommonVersion);
                }
                ch.version = version;
                ch.credits = Credits::new(INITIAL_WINDOW, ack.window);
                return Ok(ch);
            }
        }
        Err(ChannelError::NoHello)
    }

    /// Moves backlog bytes into the decoder as far as it has room.
    fn feed(&mut self) {
        let n = self.dec.push(&self.backlog);
        self.backlog.drain(..n);
    }

    fn send_frame(&mut self, n: usize) -> Result<(), ChannelError> {
        self.console.send(&self.frame[..n])?;
        Ok(())
    }

    /// Reads what the console has and turns complete frames into events.
    fn pump(&mut self) -> Result<bool, ChannelError> {
        let got = self.console.recv(&mut self.rx)?;
        self.backlog.extend_from_slice(&self.rx[..got]);
        let mut progress = got > 0;
        let mut grants: Vec<(Stream, u32)> = Vec::new();
        let mut report = false;
        self.idle_polls = if got > 0 { 0 } else { self.idle_polls + 1 };
        if self.idle_polls > IDLE_RESYNC_POLLS && self.backlog.is_empty() {
            self.idle_polls = 0;
            if let Some(e) = self.dec.resync() {
                self.malformed += 1;
                self.events.push_back(Event::Malformed(e));
                report = true;
            }
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
                    self.malformed += 1;
                    self.events.push_back(Event::Malformed(e));
                    report = true;
                    continue;
                }
            };
            let stream = frame.stream();
            match frame.kind() {
                Kind::Data => {
                    if let Err(e) = self.credits.on_data(stream, frame.payload.len()) {
                        self.malformed += 1;
                        self.events.push_back(Event::Malformed(e));
                        report = true;
                        continue;
                    }
                    let len = frame.payload.len();
                    match self.reasm.push(&frame) {
                        Ok(Some((s, m))) => self.events.push_back(Event::Message(s, m)),
                        Ok(None) => {}
                        Err(e) => {
                            self.malformed += 1;
                            self.events.push_back(Event::Malformed(e));
                            report = true;
                        }
                    }
                    // The bytes are ours now (buffered in the reassembler or the event
                    // queue, both bounded); give the host its credit back.
                    if let Some(g) = self.credits.consumed(stream, len) {
                        grants.push((stream, g));
                    }
                }
                Kind::Credit => {
                    if let Err(e) = self.credits.on_credit(stream, frame.header.arg) {
                        self.malformed += 1;
                        self.events.push_back(Event::Malformed(e));
                        report = true;
                    }
                }
                Kind::Ack => self.events.push_back(Event::LogAck {
                    stored: frame.header.arg,
                }),
                Kind::Error => match msg::ErrorBody::decode(frame.payload) {
                    Ok(b) => self.events.push_back(Event::PeerError {
                        stream,
                        code: b.code,
                        message: String::from(b.message),
                    }),
                    Err(e) => self.events.push_back(Event::Malformed(e)),
                },
                Kind::Close => self.events.push_back(Event::Closed(stream)),
                Kind::Hello | Kind::HelloAck => {
                    self.malformed += 1;
                    self.events.push_back(Event::Malformed(WireError::Protocol(
                        "handshake frame after the handshake",
                    )));
                    report = true;
                }
            }
        }
        for (s, g) in grants {
            let n = self.enc.credit(s, g, &mut self.frame)?;
            self.send_frame(n)?;
        }
        if report {
            // One Error frame per batch of bad input, so garbage cannot make us flood the host.
            let n = self.enc.error(
                Stream::Control,
                msg::code::MALFORMED,
                "malformed input from the host",
                &mut self.frame,
            )?;
            self.send_frame(n)?;
        }
        Ok(progress)
    }

    /// The next event, if any (polls the console once).
    pub fn poll(&mut self) -> Result<Option<Event>, ChannelError> {
        if self.events.is_empty() {
            self.pump()?;
        }
        Ok(self.events.pop_front())
    }

    /// Sends `message` on `stream`, split into frames as credit allows; waits for credit
    /// (processing incoming frames meanwhile) rather than dropping anything.
    pub fn send(&mut self, stream: Stream, message: &[u8]) -> Result<(), ChannelError> {
        let mut rest = message;
        loop {
            match self
                .enc
                .data_with_credit(&mut self.credits, stream, rest, &mut self.frame)
            {
                Ok((taken, n)) => {
                    self.send_frame(n)?;
                    rest = &rest[taken..];
                    if rest.is_empty() && taken > 0 || message.is_empty() {
                        return Ok(());
                    }
                }
                Err(WireError::WouldBlock(_)) => {
                    if !self.pump()? {
                        core::hint::spin_loop();
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
    ) -> Result<(), ChannelError> {
        let n = self.enc.error(stream, code, message, &mut self.frame)?;
        self.send_frame(n)
    }
}
