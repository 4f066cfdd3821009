//! A simulated guest built from omega-wire, driving a ChannelSession over a socket pair.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use omega_host::{ChannelSession, SessionConfig};
use omega_wire::*;

#[derive(Debug, Clone)]
pub struct Owned {
    pub header: Header,
    pub payload: Vec<u8>,
}

pub struct SimGuest {
    pub sock: UnixStream,
    pub dec: Box<Decoder>,
    pub enc: Encoder,
    pub credits: Option<Credits>,
    pub window: u32,
    pub re: Reassembler,
    pub inbox: VecDeque<Owned>,
    pub errors: Vec<WireError>,
    buf: Vec<u8>,
    /// Grant credit automatically for Data frames as they arrive (the guest buffers them).
    pub auto_grant: bool,
    ungranted: Vec<(Stream, usize)>,
}

pub fn start(config: SessionConfig) -> (SimGuest, ChannelSession) {
    let (g, h) = UnixStream::pair().unwrap();
    let hr = h.try_clone().unwrap();
    hr.set_read_timeout(Some(omega_host::session::READ_TICK))
        .unwrap();
    let closer = h.try_clone().unwrap();
    let session = ChannelSession::start(hr, h, config);
    session.set_closer(move || {
        let _ = closer.shutdown(std::net::Shutdown::Both);
    });
    g.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let guest = SimGuest {
        sock: g,
        dec: Box::new(Decoder::new()),
        enc: Encoder::new(),
        credits: None,
        window: INITIAL_WINDOW,
        re: Reassembler::default(),
        inbox: VecDeque::new(),
        errors: Vec::new(),
        buf: vec![0u8; MAX_FRAME],
        auto_grant: true,
        ungranted: Vec::new(),
    };
    (guest, session)
}

/// Starts a session and completes the handshake with `window` as the guest's window.
pub fn start_ready(config: SessionConfig, window: u32) -> (SimGuest, ChannelSession) {
    let (mut g, s) = start(config);
    g.window = window;
    g.hello(&[1], window);
    let ack = g.expect_kind(Kind::HelloAck, Duration::from_secs(5));
    let a = HelloAck::decode(&ack.payload).unwrap();
    assert_eq!(a.version, 1);
    assert!(g.credits.is_some());
    (g, s)
}

impl SimGuest {
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).unwrap();
    }

    pub fn frame(&mut self, f: impl FnOnce(&mut Encoder, &mut [u8]) -> Result<usize, WireError>) {
        let mut b = std::mem::take(&mut self.buf);
        let n = f(&mut self.enc, &mut b).unwrap();
        self.send_raw(&b[..n]);
        self.buf = b;
    }

    pub fn hello(&mut self, versions: &[u8], window: u32) {
        let h = Hello { versions, window };
        self.frame(|e, b| e.hello(&h, b));
    }

    /// Reads what is available (up to ~20 ms) into the inbox; Credit frames update credits.
    pub fn pump(&mut self) -> bool {
        let mut b = [0u8; 65536];
        let n = match self.sock.read(&mut b) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return true;
            }
            Err(_) => return false,
        };
        let mut data = &b[..n];
        while !data.is_empty() {
            let t = self.dec.push(data);
            data = &data[t..];
            while let Some(r) = self.dec.next_frame() {
                match r {
                    Ok(f) => {
                        if f.kind() == Kind::Credit {
                            if let Some(c) = self.credits.as_mut() {
                                c.on_credit(f.stream(), f.header.arg).unwrap();
                            }
                            continue;
                        }
                        if f.kind() == Kind::HelloAck
                            && self.credits.is_none()
                            && let Ok(a) = HelloAck::decode(f.payload)
                        {
                            self.credits = Some(Credits::new(self.window, a.window));
                        }
                        let o = Owned {
                            header: f.header,
                            payload: f.payload.to_vec(),
                        };
                        if o.header.kind == Kind::Data {
                            if let Some(c) = self.credits.as_mut() {
                                c.on_data(o.header.stream, o.payload.len())
                                    .expect("host respects our credit");
                            }
                            if self.auto_grant {
                                self.grant(o.header.stream, o.payload.len());
                            } else {
                                self.ungranted.push((o.header.stream, o.payload.len()));
                            }
                        }
                        self.inbox.push_back(o);
                    }
                    Err(e) => self.errors.push(e),
                }
            }
        }
        true
    }

    /// Next frame (any kind but Credit), granting credit for Data if auto_grant.
    pub fn next(&mut self, timeout: Duration) -> Option<Owned> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.inbox.pop_front() {
                return Some(f);
            }
            if Instant::now() >= deadline || !self.pump() {
                return None;
            }
        }
    }

    /// Turns automatic granting on or off; turning it on grants what arrived meanwhile.
    pub fn set_auto_grant(&mut self, on: bool) {
        self.auto_grant = on;
        if on {
            for (s, n) in std::mem::take(&mut self.ungranted) {
                self.grant(s, n);
            }
        }
    }

    pub fn grant(&mut self, stream: Stream, n: usize) {
        if let Some(g) = self.credits.as_mut().and_then(|c| c.consumed(stream, n)) {
            self.frame(|e, b| e.credit(stream, g, b));
        }
    }

    pub fn expect_kind(&mut self, kind: Kind, timeout: Duration) -> Owned {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(f) = self.next(deadline - Instant::now())
                && f.header.kind == kind
            {
                return f;
            }
        }
        panic!("no {kind:?} frame within {timeout:?}");
    }

    /// Next complete message on `stream` (other frames are dropped).
    pub fn recv_message(&mut self, stream: Stream, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(f) = self.next(deadline - Instant::now())
                && f.header.stream == stream
                && f.header.kind == Kind::Data
            {
                let fr = Frame {
                    header: f.header,
                    payload: &f.payload,
                };
                if let Some((_, m)) = self.re.push(&fr).unwrap() {
                    return Some(m);
                }
            }
        }
        None
    }

    /// Next Error frame: (stream, code, message).
    pub fn recv_error(&mut self, timeout: Duration) -> Option<(Stream, u16, String)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(f) = self.next(deadline - Instant::now())
                && f.header.kind == Kind::Error
            {
                let b = msg::ErrorBody::decode(&f.payload).unwrap();
                return Some((f.header.stream, b.code, b.message.to_string()));
            }
        }
        None
    }

    /// Tries to send a message without waiting: sends as much as credit allows.
    /// Returns bytes sent; stops at the first WouldBlock.
    pub fn try_send(&mut self, stream: Stream, msg: &[u8]) -> usize {
        let mut rest = msg;
        let mut sent = 0;
        loop {
            let mut c = self.credits.take().unwrap();
            let mut b = std::mem::take(&mut self.buf);
            let r = self.enc.data_with_credit(&mut c, stream, rest, &mut b);
            self.credits = Some(c);
            match r {
                Ok((n, w)) => {
                    self.sock.write_all(&b[..w]).unwrap();
                    self.buf = b;
                    sent += n;
                    rest = &rest[n..];
                    if rest.is_empty() {
                        return sent;
                    }
                }
                Err(WireError::WouldBlock(_)) => {
                    self.buf = b;
                    return sent;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Sends a whole message, pumping input (and thus credit) while blocked.
    pub fn send_message(&mut self, stream: Stream, msg: &[u8], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut rest = msg;
        loop {
            let n = self.try_send(stream, rest);
            rest = &rest[n..];
            if rest.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "blocked on credit for {timeout:?}"
            );
            self.pump();
        }
    }
}
