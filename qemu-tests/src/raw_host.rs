//! A minimal host end of the channel built straight on `omega-wire`, for tests that need
//! to do what the real launcher never does: send garbage, truncated or oversized frames,
//! and exchange data on every stream.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use omega_wire::{
    Credits, Decoder, Encoder, HelloAck, Kind, MAX_FRAME, PerStream, Reassembler,
    SUPPORTED_VERSIONS, Stream, msg, negotiate,
};

/// What the guest sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestEvent {
    Message(Stream, Vec<u8>),
    Error {
        stream: Stream,
        code: u16,
        message: String,
    },
    Closed(Stream),
}

pub struct RawHost {
    sock: UnixStream,
    dec: Box<Decoder>,
    enc: Encoder,
    credits: Credits,
    reasm: Reassembler,
    frame: Vec<u8>,
    events: VecDeque<GuestEvent>,
    /// Frames the guest sent that failed to decode.
    pub bad_frames: u64,
    /// Grant the guest no credit back (tests that make the guest wait for it) until
    /// [`RawHost::release_credit`].
    pub withhold_credit: bool,
    withheld: PerStream<usize>,
}

const OUR_WINDOW: u32 = 4 << 20;

impl RawHost {
    /// Connects to QEMU's chardev socket (retrying until it exists) and answers the guest's
    /// Hello.
    pub fn connect(path: &Path, timeout: Duration) -> Result<RawHost> {
        Self::connect_with_window(path, timeout, OUR_WINDOW)
    }

    /// As [`RawHost::connect`], granting the guest `window` bytes per stream.
    pub fn connect_with_window(path: &Path, timeout: Duration, window: u32) -> Result<RawHost> {
        let deadline = Instant::now() + timeout;
        let sock = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(e).context("connecting to the channel socket"),
            }
        };
        sock.set_read_timeout(Some(Duration::from_millis(20)))?;
        let mut h = RawHost {
            sock,
            dec: Box::new(Decoder::new()),
            enc: Encoder::new(),
            credits: Credits::new(OUR_WINDOW, 1),
            reasm: Reassembler::new(64 << 20),
            frame: vec![0u8; MAX_FRAME],
            events: VecDeque::new(),
            bad_frames: 0,
            withhold_credit: false,
            withheld: PerStream::default(),
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if Instant::now() > deadline {
                bail!("no Hello from the guest");
            }
            let n = match h.sock.read(&mut buf) {
                Ok(0) => bail!("channel closed before the Hello"),
                Ok(n) => n,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            h.dec.push(&buf[..n]);
            while let Some(item) = h.dec.next_frame() {
                let f = item?;
                if f.kind() == Kind::Hello {
                    let hello = omega_wire::Hello::decode(f.payload)?;
                    let version = negotiate(SUPPORTED_VERSIONS, hello.versions)?;
                    h.credits = Credits::new(window, hello.window);
                    let ack = HelloAck {
                        version,
                        versions: SUPPORTED_VERSIONS,
                        window,
                        log_stored: 0,
                    };
                    let n = h.enc.hello_ack(&ack, &mut h.frame)?;
                    let frame = h.frame[..n].to_vec();
                    h.send_raw(&frame)?;
                    return Ok(h);
                }
            }
        }
    }

    /// Writes bytes as they are, framed or not.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.sock.write_all(bytes)?;
        Ok(())
    }

    /// One encoded Data frame, for tests that tamper with it before sending.
    pub fn encode_data(&mut self, stream: Stream, payload: &[u8], end: bool) -> Result<Vec<u8>> {
        self.credits.try_send(stream, payload.len())?;
        let n = self.enc.data(stream, payload, end, &mut self.frame)?;
        Ok(self.frame[..n].to_vec())
    }

    /// Sends a message on `stream`, as credit allows.
    pub fn send(&mut self, stream: Stream, message: &[u8]) -> Result<()> {
        let mut rest = message;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self
                .enc
                .data_with_credit(&mut self.credits, stream, rest, &mut self.frame)
            {
                Ok((taken, n)) => {
                    let f = self.frame[..n].to_vec();
                    self.send_raw(&f)?;
                    rest = &rest[taken..];
                    if rest.is_empty() {
                        return Ok(());
                    }
                }
                Err(omega_wire::WireError::WouldBlock(_)) => {
                    if Instant::now() > deadline {
                        bail!("the guest granted no credit on {stream:?} for 60 s");
                    }
                    self.pump()?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads what the guest sent so far into events.
    fn pump(&mut self) -> Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        let n = match self.sock.read(&mut buf) {
            Ok(0) => bail!("channel closed"),
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let mut off = 0;
        let mut grants = Vec::new();
        while off < n {
            off += self.dec.push(&buf[off..n]);
            while let Some(item) = self.dec.next_frame() {
                let f = match item {
                    Ok(f) => f,
                    Err(_) => {
                        self.bad_frames += 1;
                        continue;
                    }
                };
                let s = f.stream();
                match f.kind() {
                    Kind::Data => {
                        self.credits.on_data(s, f.payload.len())?;
                        if self.withhold_credit {
                            self.withheld[s] += f.payload.len();
                        } else if let Some(g) = self.credits.consumed(s, f.payload.len()) {
                            grants.push((s, g));
                        }
                        if let Some((s, m)) = self.reasm.push(&f)? {
                            self.events.push_back(GuestEvent::Message(s, m));
                        }
                    }
                    Kind::Credit => self.credits.on_credit(s, f.header.arg)?,
                    Kind::Error => {
                        let b = msg::ErrorBody::decode(f.payload)?;
                        self.events.push_back(GuestEvent::Error {
                            stream: s,
                            code: b.code,
                            message: b.message.to_string(),
                        });
                    }
                    Kind::Close => self.events.push_back(GuestEvent::Closed(s)),
                    _ => {}
                }
            }
        }
        for (s, g) in grants {
            self.grant(s, g)?;
        }
        Ok(())
    }

    /// Stops withholding credit and grants back everything withheld.
    pub fn release_credit(&mut self) -> Result<()> {
        self.withhold_credit = false;
        for s in Stream::ALL {
            let n = std::mem::take(&mut self.withheld[s]);
            let consumed = self.credits.consumed(s, n);
            for g in consumed.into_iter().chain(self.credits.flush_grant(s)) {
                self.grant(s, g)?;
            }
        }
        Ok(())
    }

    fn grant(&mut self, stream: Stream, bytes: u32) -> Result<()> {
        let n = self.enc.credit(stream, bytes, &mut self.frame)?;
        let f = self.frame[..n].to_vec();
        self.send_raw(&f)
    }

    /// Acknowledges `stored` bytes of the guest's Log stream as durably stored.
    pub fn ack(&mut self, stored: u64) -> Result<()> {
        let n = self.enc.ack(0, stored, &mut self.frame)?;
        let f = self.frame[..n].to_vec();
        self.send_raw(&f)
    }

    /// Reads what the guest sent so far (without waiting).
    pub fn read_available(&mut self) -> Result<()> {
        self.pump()
    }

    /// The next event within `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<GuestEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            self.pump()?;
        }
    }

    /// Waits for a message on `stream`, keeping other events for later.
    pub fn expect_message(&mut self, stream: Stream, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut others = Vec::new();
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left)? {
                Some(GuestEvent::Message(s, m)) if s == stream => break Some(m),
                Some(other) => others.push(other),
                None => break None,
            }
        };
        for o in others.into_iter().rev() {
            self.events.push_front(o);
        }
        found.with_context(|| format!("no message on {stream:?} within {timeout:?}"))
    }

    /// Events received so far that no `expect_message` took.
    pub fn drain_events(&mut self) -> Vec<GuestEvent> {
        let _ = self.pump();
        self.events.drain(..).collect()
    }
}
