//! The host end of the channel: handshake, demultiplexing, flow control, stream backends.
//!
//! Threads: one reader (decodes guest frames and hands payloads to per-stream workers; it
//! never blocks on a backend), one worker per served stream (log storage, inference proxy,
//! tool gateway, echo), and senders that wait for the guest's credit. A stream whose backend
//! is slow stops being granted credit, so the guest blocks on that stream only.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use omega_wire::msg::{self, BundleMsg, ControlMsg, ErrorBody, code};
use omega_wire::{
    Credits, Decoder, Encoder, Frame, Hello, HelloAck, INITIAL_WINDOW, Kind, MAX_FRAME,
    MAX_PAYLOAD, Reassembler, SUPPORTED_VERSIONS, Stream, WireError, negotiate,
};
use tracing::{debug, info, warn};

use crate::bundle::Bundle;

pub use omega_wire::msg::echo::{REPLY as ECHO_REPLY, REQUEST as ECHO_REQUEST};
/// Longest line the tool gateway may print (one JSON-RPC message).
pub const MAX_TOOL_LINE: usize = 1024 * 1024;
/// Idle time after which a partial frame at the front of the decoder is given up.
pub const IDLE_RESYNC: Duration = Duration::from_secs(1);
/// Read timeout `connect_unix` sets, so the reader notices idleness.
pub const READ_TICK: Duration = Duration::from_millis(250);
/// Largest reassembled message on Control, Tools and Echo.
pub const MAX_HOST_MESSAGE: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("channel closed")]
    Closed,
    #[error("i/o on the channel: {0}")]
    Io(#[from] io::Error),
    #[error("wire: {0}")]
    Wire(#[from] WireError),
    #[error("timed out")]
    Timeout,
    #[error("version negotiation failed: guest speaks {0:?}, host speaks {SUPPORTED_VERSIONS:?}")]
    NoCommonVersion(Vec<u8>),
    #[error("echo reply does not match the request")]
    EchoMismatch,
}

/// Durable storage for the provenance log stream.
pub trait LogStore: Send {
    /// Appends bytes (not yet durable).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable. Only after it returns Ok does the host Ack.
    fn sync(&mut self) -> io::Result<()>;
    /// Durably replaces a file kept beside the log (`log.vkey`, `checkpoint.note`).
    fn put_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
}

/// `DIR/provenance.log`: the log stream's bytes, appended as they arrive, fsynced before
/// every Ack. The file is exactly the byte stream the guest's `Log::drain` produced.
pub struct FileLogStore {
    file: std::fs::File,
    pub path: PathBuf,
}

impl FileLogStore {
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("provenance.log");
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        if !existed {
            // Make the new directory entry durable too.
            file.sync_all()?;
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(FileLogStore { file, path })
    }
}

impl LogStore for FileLogStore {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn put_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{name}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        // Atomic replace: a reader sees the old file or the new one, never a torn one.
        std::fs::rename(&tmp, dir.join(name))?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// What the host serves.
pub struct SessionConfig {
    /// Inference proxy address (HOST:PORT); None: Inference data is refused with an Error.
    pub proxy: Option<String>,
    /// Tool gateway command line (split like a shell would, run without a shell).
    pub tool_gateway: Option<String>,
    /// Provenance log storage; None: Log data is refused with an Error (and never acked).
    pub log_store: Option<Box<dyn LogStore>>,
    /// Bundle to send after the handshake; None: the Bundle stream is closed at once.
    pub bundle: Option<Bundle>,
    /// Echo the guest's Echo requests.
    pub echo: bool,
    /// Initial credit granted to the guest per stream.
    pub window: u32,
    /// Protocol versions offered.
    pub versions: Vec<u8>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            proxy: None,
            tool_gateway: None,
            log_store: None,
            bundle: None,
            echo: false,
            window: INITIAL_WINDOW,
            versions: SUPPORTED_VERSIONS.to_vec(),
        }
    }
}

/// Things that happened on the channel, in order (also logged with tracing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    Handshake {
        version: u8,
    },
    HandshakeFailed {
        guest_versions: Vec<u8>,
    },
    /// The guest sent an Error frame.
    GuestError {
        stream: Stream,
        code: u16,
        message: String,
    },
    Notice(String),
    /// The guest's provenance-log verifier key (C2SP vkey).
    LogKey(String),
    /// A signed checkpoint (C2SP note) of the guest's provenance log.
    Checkpoint(String),
    Shutdown {
        status: u32,
    },
    /// Malformed or protocol-breaking input from the guest (the host reported it back).
    WireError(String),
    /// Log bytes durably stored and acknowledged up to `seq`, `total` bytes in all.
    LogStored {
        seq: u32,
        total: u64,
    },
    /// The guest's log verifier key was stored (`log.vkey`).
    LogKeyStored,
    /// A signed checkpoint was stored (`checkpoint.note`) after every log byte received
    /// before it was durable.
    CheckpointStored,
    BundleSent {
        files: usize,
        bytes: u64,
    },
    /// The guest closed a stream.
    StreamClosed(Stream),
    /// A backend failed (proxy, tool gateway, log storage).
    BackendError {
        stream: Stream,
        message: String,
    },
    Ended,
}

struct Out {
    w: Box<dyn Write + Send>,
    enc: Encoder,
    buf: Vec<u8>,
}

struct Shared {
    out: Mutex<Out>,
    /// None until the handshake.
    credits: Mutex<Option<Credits>>,
    credit_cv: Condvar,
    /// Held while one message is sent on a stream, so messages never interleave.
    stream_send: [Mutex<()>; 6],
    closed: AtomicBool,
    events: Mutex<Vec<SessionEvent>>,
    events_cv: Condvar,
    echo_replies: Mutex<VecDeque<Vec<u8>>>,
    echo_cv: Condvar,
    echo_lock: Mutex<()>,
    echo_enabled: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn event(&self, e: SessionEvent) {
        lock(&self.events).push(e);
        self.events_cv.notify_all();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.credit_cv.notify_all();
        self.echo_cv.notify_all();
    }

    fn send_with(
        &self,
        f: impl FnOnce(&mut Encoder, &mut [u8]) -> Result<usize, WireError>,
    ) -> Result<(), SessionError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(SessionError::Closed);
        }
        let mut o = lock(&self.out);
        let Out { w, enc, buf } = &mut *o;
        let n = f(enc, buf)?;
        let r = w.write_all(&buf[..n]).and_then(|_| w.flush());
        if let Err(e) = r {
            drop(o);
            self.close();
            return Err(e.into());
        }
        Ok(())
    }

    fn send_error(&self, stream: Stream, c: u16, message: &str) {
        if let Err(e) = self.send_with(|enc, b| enc.error(stream, c, message, b)) {
            debug!("could not send error frame: {e}");
        }
    }

    /// Sends a whole message on `stream`, waiting for credit as needed (never drops data).
    fn send_message(&self, stream: Stream, msg: &[u8]) -> Result<(), SessionError> {
        let _one_at_a_time = lock(&self.stream_send[stream.index()]);
        let mut rest = msg;
        loop {
            let n = {
                let mut cr = lock(&self.credits);
                loop {
                    if self.closed.load(Ordering::SeqCst) {
                        return Err(SessionError::Closed);
                    }
                    if let Some(c) = cr.as_mut() {
                        let n = c.sendable(stream, rest.len());
                        if n > 0 || rest.is_empty() {
                            c.try_send(stream, n)?;
                            break n;
                        }
                    }
                    cr = self
                        .credit_cv
                        .wait_timeout(cr, Duration::from_millis(200))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            };
            let end = n == rest.len();
            self.send_with(|enc, b| enc.data(stream, &rest[..n], end, b))?;
            rest = &rest[n..];
            if end {
                return Ok(());
            }
        }
    }

    /// The host consumed `n` bytes received on `stream`: grant credit back when due.
    fn consumed(&self, stream: Stream, n: usize) {
        let g = lock(&self.credits)
            .as_mut()
            .and_then(|c| c.consumed(stream, n));
        if let Some(g) = g {
            let _ = self.send_with(|enc, b| enc.credit(stream, g, b));
        }
    }
}

/// A running host end of the channel.
pub struct ChannelSession {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    closer: Option<Box<dyn FnOnce() + Send>>,
}

impl ChannelSession {
    /// Starts serving the channel carried by `reader`/`writer` (two halves of one stream).
    /// Returns at once; the guest's Hello is awaited in the background.
    pub fn start<R, W>(reader: R, writer: W, config: SessionConfig) -> ChannelSession
    where
        R: Read + Send + 'static,
        W: Write + Send + 'static,
    {
        let shared = Arc::new(Shared {
            out: Mutex::new(Out {
                w: Box::new(writer),
                enc: Encoder::new(),
                buf: vec![0; MAX_FRAME],
            }),
            credits: Mutex::new(None),
            credit_cv: Condvar::new(),
            stream_send: Default::default(),
            closed: AtomicBool::new(false),
            events: Mutex::new(Vec::new()),
            events_cv: Condvar::new(),
            echo_replies: Mutex::new(VecDeque::new()),
            echo_cv: Condvar::new(),
            echo_lock: Mutex::new(()),
            echo_enabled: config.echo,
        });
        let sh = shared.clone();
        let reader = thread::Builder::new()
            .name("omega-channel-rx".into())
            .spawn(move || Demux::new(sh, config).run(reader))
            .expect("spawn reader thread");
        ChannelSession {
            shared,
            reader: Some(reader),
            closer: None,
        }
    }

    /// Connects to a unix socket (retrying until `deadline`) and starts a session on it.
    pub fn connect_unix(
        path: &Path,
        config: SessionConfig,
        deadline: Instant,
    ) -> Result<ChannelSession, SessionError> {
        let s = loop {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    debug!("waiting for {}: {e}", path.display());
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let r = s.try_clone()?;
        r.set_read_timeout(Some(READ_TICK))?;
        let closer = s.try_clone()?;
        let mut cs = ChannelSession::start(r, s, config);
        cs.closer = Some(Box::new(move || {
            let _ = closer.shutdown(Shutdown::Both);
        }));
        Ok(cs)
    }

    /// Sets what `close` does to the underlying stream (e.g. shut a socket down).
    pub fn set_closer(&mut self, f: impl FnOnce() + Send + 'static) {
        self.closer = Some(Box::new(f));
    }

    /// Waits for the guest's Hello; returns the negotiated version.
    pub fn wait_handshake(&self, timeout: Duration) -> Result<u8, SessionError> {
        let ev = self.wait_event(
            |e| {
                matches!(
                    e,
                    SessionEvent::Handshake { .. }
                        | SessionEvent::HandshakeFailed { .. }
                        | SessionEvent::Ended
                )
            },
            timeout,
        );
        match ev {
            Some(SessionEvent::Handshake { version }) => Ok(version),
            Some(SessionEvent::HandshakeFailed { guest_versions }) => {
                Err(SessionError::NoCommonVersion(guest_versions))
            }
            Some(_) => Err(SessionError::Closed),
            None => Err(SessionError::Timeout),
        }
    }

    /// All events so far.
    pub fn events(&self) -> Vec<SessionEvent> {
        lock(&self.shared.events).clone()
    }

    /// Waits until an event matching `pred` has happened (at any time) and returns it.
    pub fn wait_event(
        &self,
        pred: impl Fn(&SessionEvent) -> bool,
        timeout: Duration,
    ) -> Option<SessionEvent> {
        let deadline = Instant::now() + timeout;
        let mut ev = lock(&self.shared.events);
        loop {
            if let Some(e) = ev.iter().find(|e| pred(e)) {
                return Some(e.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            ev = self
                .shared
                .events_cv
                .wait_timeout(ev, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Sends a message on `stream` (waits for credit).
    pub fn send_message(&self, stream: Stream, msg: &[u8]) -> Result<(), SessionError> {
        self.shared.send_message(stream, msg)
    }

    /// Sends a Control message.
    pub fn send_control(&self, m: &ControlMsg<'_>) -> Result<(), SessionError> {
        let mut b = [0u8; 1024];
        let body = msg::encode(m, &mut b)?;
        self.shared.send_message(Stream::Control, body)
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Closes the channel and waits for the reader thread.
    pub fn close(mut self) -> Vec<SessionEvent> {
        self.shared.close();
        if let Some(c) = self.closer.take() {
            c();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.events()
    }

    /// Waits until the guest side ends the stream (EOF), then returns the events.
    pub fn join(mut self) -> Vec<SessionEvent> {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.events()
    }
}

/// Sends `size` bytes on the Echo stream, waits for the guest to echo them back, and returns
/// the round-trip time. The guest must echo Echo requests (tag `Q`) as replies (tag `R`).
pub fn echo_roundtrip(session: &ChannelSession, size: usize) -> Result<Duration, SessionError> {
    let sh = &session.shared;
    let _one = lock(&sh.echo_lock);
    lock(&sh.echo_replies).clear();
    let mut req = Vec::with_capacity(size + 1);
    req.push(ECHO_REQUEST);
    req.extend((0..size).map(|i| (i as u8).wrapping_mul(251).wrapping_add(size as u8)));
    let t0 = Instant::now();
    sh.send_message(Stream::Echo, &req)?;
    let mut q = lock(&sh.echo_replies);
    let deadline = t0 + Duration::from_secs(60);
    loop {
        if let Some(r) = q.pop_front() {
            let dt = t0.elapsed();
            if r.len() != req.len() || r[1..] != req[1..] {
                return Err(SessionError::EchoMismatch);
            }
            return Ok(dt);
        }
        if sh.closed.load(Ordering::SeqCst) {
            return Err(SessionError::Closed);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(SessionError::Timeout);
        }
        q = sh
            .echo_cv
            .wait_timeout(q, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// A Data frame's payload for a worker that reassembles messages itself (so that it grants
/// credit per fragment while it buffers, and stops granting while its backend is busy).
enum Frag {
    Data(Vec<u8>, bool),
    /// Frames were lost: drop the partial message.
    Reset,
}

/// Worker-side reassembly, bounded.
struct Assembler {
    buf: Vec<u8>,
    discarding: bool,
    max: usize,
}

impl Assembler {
    fn new(max: usize) -> Self {
        Assembler {
            buf: Vec::new(),
            discarding: false,
            max,
        }
    }

    /// Ok(Some(message)) when `end` completes one; Err(()) when the message is too large (the
    /// rest of it is then dropped).
    fn push(&mut self, data: &[u8], end: bool) -> Result<Option<Vec<u8>>, ()> {
        if self.discarding {
            self.discarding = !end;
            return Ok(None);
        }
        // SECURITY: bounded reassembly.
        if self.buf.len() + data.len() > self.max {
            self.buf = Vec::new();
            self.discarding = !end;
            return Err(());
        }
        self.buf.extend_from_slice(data);
        Ok(if end {
            Some(std::mem::take(&mut self.buf))
        } else {
            None
        })
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }
}

enum LogItem {
    Data(u32, Vec<u8>),
    /// (file name, contents, event) stored beside the log, in stream order.
    File(&'static str, Vec<u8>, SessionEvent),
}

enum InferenceEvt {
    Data(Vec<u8>),
    Close,
}

/// The reader side: decodes frames and routes them.
struct Demux {
    sh: Arc<Shared>,
    config: SessionConfig,
    versions: Vec<u8>,
    handshake: Option<u8>,
    failed: bool,
    re: Reassembler,
    expect_seq: [u32; 6],
    log_broken: bool,
    last_error_report: Option<Instant>,
    log_tx: Option<Sender<LogItem>>,
    inference_tx: Option<Sender<InferenceEvt>>,
    tools_tx: Option<Sender<Frag>>,
    echo_tx: Option<Sender<Frag>>,
    workers: Vec<JoinHandle<()>>,
    /// Streams for which an UNAVAILABLE error was already sent.
    refused: [bool; 6],
}

impl Demux {
    fn new(sh: Arc<Shared>, mut config: SessionConfig) -> Self {
        let versions = config.versions.clone();
        let mut d = Demux {
            sh,
            versions,
            handshake: None,
            failed: false,
            re: Reassembler::new(MAX_HOST_MESSAGE),
            expect_seq: [0; 6],
            log_broken: false,
            last_error_report: None,
            log_tx: None,
            inference_tx: None,
            tools_tx: None,
            echo_tx: None,
            workers: Vec::new(),
            refused: [false; 6],
            config: SessionConfig {
                log_store: None,
                bundle: None,
                ..Default::default()
            },
        };
        if let Some(store) = config.log_store.take() {
            let (tx, rx) = mpsc::channel();
            let sh = d.sh.clone();
            d.workers
                .push(thread::spawn(move || log_worker(sh, store, rx)));
            d.log_tx = Some(tx);
        }
        if let Some(proxy) = config.proxy.clone() {
            let (tx, rx) = mpsc::channel();
            let sh = d.sh.clone();
            d.workers
                .push(thread::spawn(move || inference_worker(sh, proxy, rx)));
            d.inference_tx = Some(tx);
        }
        if let Some(cmd) = config.tool_gateway.clone() {
            let (tx, rx) = mpsc::channel();
            let sh = d.sh.clone();
            d.workers
                .push(thread::spawn(move || tools_worker(sh, cmd, rx)));
            d.tools_tx = Some(tx);
        }
        {
            let (tx, rx) = mpsc::channel();
            let sh = d.sh.clone();
            d.workers.push(thread::spawn(move || echo_worker(sh, rx)));
            d.echo_tx = Some(tx);
        }
        d.config = config;
        d
    }

    fn run<R: Read>(mut self, mut reader: R) {
        let mut dec: Box<Decoder> = Box::new(Decoder::new());
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_input = Instant::now();
        'outer: loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A read timeout (set by connect_unix, or by the caller on its stream) is an
                // idle tick.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.sh.closed.load(Ordering::SeqCst) {
                        break;
                    }
                    // SECURITY: a truncated frame whose header claims more bytes than will
                    // come would otherwise hold up the frames behind it until more traffic
                    // arrives: after IDLE_RESYNC without input, give up on it and rescan.
                    if dec.pending() > 0 && last_input.elapsed() >= IDLE_RESYNC {
                        if let Some(e) = dec.resync() {
                            self.on_wire_error(e);
                        }
                        while let Some(r) = dec.next_frame() {
                            match r {
                                Ok(f) => self.on_frame(&f),
                                Err(e) => self.on_wire_error(e),
                            }
                            if self.failed {
                                break 'outer;
                            }
                        }
                        // Still stuck on another partial frame: wait another IDLE_RESYNC.
                        last_input = Instant::now();
                    }
                    continue;
                }
                Err(e) => {
                    if !self.sh.closed.load(Ordering::SeqCst) {
                        warn!("channel read failed: {e}");
                    }
                    break;
                }
            };
            last_input = Instant::now();
            let mut data = &buf[..n];
            while !data.is_empty() {
                let took = dec.push(data);
                data = &data[took..];
                while let Some(r) = dec.next_frame() {
                    match r {
                        Ok(f) => self.on_frame(&f),
                        Err(e) => self.on_wire_error(e),
                    }
                    if self.failed {
                        break 'outer;
                    }
                }
            }
        }
        if let Err(e) = dec.finish() {
            self.on_wire_error(e);
        }
        info!("channel ended");
        self.sh.close();
        // Dropping the senders ends the workers.
        self.log_tx = None;
        self.inference_tx = None;
        self.tools_tx = None;
        self.echo_tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.sh.event(SessionEvent::Ended);
    }

    fn on_wire_error(&mut self, e: WireError) {
        warn!("bad input from the guest: {e}");
        self.sh.event(SessionEvent::WireError(e.to_string()));
        // SECURITY: report back at most 10 per second, so garbage cannot turn the host into
        // an amplifier.
        let now = Instant::now();
        if self
            .last_error_report
            .is_none_or(|t| now - t >= Duration::from_millis(100))
        {
            self.last_error_report = Some(now);
            self.sh
                .send_error(Stream::Control, code::MALFORMED, &e.to_string());
        }
    }

    fn protocol_error(&mut self, stream: Stream, c: u16, m: &str) {
        warn!("guest protocol error on {stream:?}: {m}");
        self.sh.event(SessionEvent::WireError(m.to_string()));
        self.sh.send_error(stream, c, m);
    }

    fn on_frame(&mut self, f: &Frame<'_>) {
        let s = f.stream();
        if self.handshake.is_none() && f.kind() != Kind::Hello {
            self.protocol_error(s, code::PROTOCOL, "Hello must be the first frame");
            return;
        }
        match f.kind() {
            Kind::Hello => self.on_hello(f),
            Kind::HelloAck => self.protocol_error(s, code::PROTOCOL, "unexpected HelloAck"),
            Kind::Credit => {
                let r = lock(&self.sh.credits)
                    .as_mut()
                    .map(|c| c.on_credit(s, f.header.arg));
                self.sh.credit_cv.notify_all();
                if let Some(Err(e)) = r {
                    self.protocol_error(s, code::CREDIT, &e.to_string());
                }
            }
            Kind::Ack => {
                self.protocol_error(s, code::PROTOCOL, "the host stores no log for the guest")
            }
            Kind::Error => {
                let (c, m) = match ErrorBody::decode(f.payload) {
                    Ok(b) => (b.code, b.message.to_string()),
                    Err(_) => (code::INTERNAL, "<malformed error body>".to_string()),
                };
                warn!("guest reported an error on {s:?}: code {c}: {m}");
                self.sh.event(SessionEvent::GuestError {
                    stream: s,
                    code: c,
                    message: m,
                });
            }
            Kind::Close => {
                info!("guest closed stream {s:?}");
                if s == Stream::Inference
                    && let Some(tx) = &self.inference_tx
                {
                    let _ = tx.send(InferenceEvt::Close);
                }
                self.sh.event(SessionEvent::StreamClosed(s));
            }
            Kind::Data => self.on_data(f),
        }
    }

    fn on_hello(&mut self, f: &Frame<'_>) {
        if self.handshake.is_some() {
            self.protocol_error(Stream::Control, code::PROTOCOL, "second Hello");
            return;
        }
        let hello = match Hello::decode(f.payload) {
            Ok(h) => h,
            Err(e) => {
                self.protocol_error(Stream::Control, code::PROTOCOL, &format!("bad Hello: {e}"));
                return;
            }
        };
        let window = self.config.window;
        match negotiate(&self.versions, hello.versions) {
            Ok(v) => {
                *lock(&self.sh.credits) = Some(Credits::new(window, hello.window));
                self.handshake = Some(v);
                let versions = self.versions.clone();
                let ack = HelloAck {
                    version: v,
                    versions: &versions,
                    window,
                };
                if self.sh.send_with(|enc, b| enc.hello_ack(&ack, b)).is_err() {
                    return;
                }
                info!(
                    "guest hello: protocol version {v}, guest window {} bytes",
                    hello.window
                );
                self.sh.event(SessionEvent::Handshake { version: v });
                self.start_bundle();
            }
            Err(_) => {
                let versions = self.versions.clone();
                let ack = HelloAck {
                    version: 0,
                    versions: &versions,
                    window,
                };
                let _ = self.sh.send_with(|enc, b| enc.hello_ack(&ack, b));
                let m = format!(
                    "no common version: guest {:?}, host {:?}",
                    hello.versions, versions
                );
                self.sh
                    .send_error(Stream::Control, code::NO_COMMON_VERSION, &m);
                let _ = self.sh.send_with(|enc, b| enc.close(Stream::Control, b));
                warn!("{m}");
                self.sh.event(SessionEvent::HandshakeFailed {
                    guest_versions: hello.versions.to_vec(),
                });
                self.failed = true;
            }
        }
    }

    fn start_bundle(&mut self) {
        let sh = self.sh.clone();
        let bundle = self.config.bundle.take();
        self.workers.push(thread::spawn(move || {
            let Some(b) = bundle else {
                let _ = sh.send_with(|enc, buf| enc.close(Stream::Bundle, buf));
                return;
            };
            match send_bundle(&sh, &b) {
                Ok(()) => {
                    info!(
                        "bundle sent: {} files, {} bytes",
                        b.files.len(),
                        b.total_bytes()
                    );
                    sh.event(SessionEvent::BundleSent {
                        files: b.files.len(),
                        bytes: b.total_bytes(),
                    });
                }
                Err(e) => warn!("sending the bundle failed: {e}"),
            }
        }));
    }

    fn on_data(&mut self, f: &Frame<'_>) {
        let s = f.stream();
        let n = f.payload.len();
        let r = lock(&self.sh.credits).as_mut().map(|c| c.on_data(s, n));
        if let Some(Err(e)) = r {
            // SECURITY: data beyond the granted credit is dropped and reported, never queued.
            self.protocol_error(s, code::CREDIT, &e.to_string());
            return;
        }
        if s == Stream::Control {
            // Control messages are handled at once: credit comes back per frame, and
            // reassembly is bounded by MAX_HOST_MESSAGE.
            match self.re.push(f) {
                Err(e) => {
                    let c = if matches!(e, WireError::MessageTooLarge(_)) {
                        code::TOO_LARGE
                    } else {
                        code::SEQUENCE
                    };
                    self.protocol_error(s, c, &e.to_string());
                }
                Ok(None) => {}
                Ok(Some((_, m))) => self.on_control(m),
            }
            self.sh.consumed(s, n);
            return;
        }
        let expected = self.expect_seq[s.index()];
        self.expect_seq[s.index()] = f.header.seq.wrapping_add(1);
        let gap = f.header.seq != expected;
        if gap {
            let e = WireError::SeqGap {
                stream: s,
                expected,
                got: f.header.seq,
            };
            self.protocol_error(s, code::SEQUENCE, &e.to_string());
        }
        let end = f.is_end();
        match s {
            Stream::Log => {
                if gap {
                    self.log_broken = true;
                }
                match (&self.log_tx, self.log_broken) {
                    (Some(tx), false) => {
                        let _ = tx.send(LogItem::Data(f.header.seq, f.payload.to_vec()));
                    }
                    (Some(_), true) => {
                        self.sh.send_error(
                            s,
                            code::SEQUENCE,
                            "log frames were lost; nothing more is stored",
                        );
                        self.sh.consumed(s, n);
                    }
                    (None, _) => self.refuse(s, n, end, "no log storage configured (--log-dir)"),
                }
            }
            Stream::Inference => match &self.inference_tx {
                Some(tx) => {
                    let _ = tx.send(InferenceEvt::Data(f.payload.to_vec()));
                }
                None => self.refuse(s, n, end, "no inference proxy configured (--proxy)"),
            },
            Stream::Tools | Stream::Echo => {
                let tx = if s == Stream::Tools {
                    &self.tools_tx
                } else {
                    &self.echo_tx
                };
                match tx {
                    Some(tx) => {
                        if gap {
                            let _ = tx.send(Frag::Reset);
                        }
                        let _ = tx.send(Frag::Data(f.payload.to_vec(), end));
                    }
                    None => self.refuse(s, n, end, "no tool gateway configured (--tool-gateway)"),
                }
            }
            Stream::Bundle => {
                self.protocol_error(s, code::PROTOCOL, "the bundle stream is host-to-guest");
                self.sh.consumed(s, n);
            }
            Stream::Control => unreachable!("handled above"),
        }
    }

    fn send_to_log_worker(&mut self, item: LogItem) {
        match &self.log_tx {
            Some(tx) => {
                let _ = tx.send(item);
            }
            None => self.sh.send_error(
                Stream::Control,
                code::UNAVAILABLE,
                "no log storage configured (--log-dir)",
            ),
        }
    }

    /// Drops data of a stream nobody serves: an Error at the end of each message (and on
    /// the first refused frame), credit returned so the guest is not wedged.
    fn refuse(&mut self, s: Stream, n: usize, end: bool, why: &str) {
        let first = !self.refused[s.index()];
        if first {
            self.refused[s.index()] = true;
            warn!("refusing {s:?} data: {why}");
        }
        if first || end {
            self.sh.send_error(s, code::UNAVAILABLE, why);
        }
        self.sh.consumed(s, n);
    }

    fn on_control(&mut self, m: Vec<u8>) {
        let s = Stream::Control;
        match msg::decode_exact::<ControlMsg>(&m) {
            Ok(ControlMsg::Shutdown { status }) => {
                info!("guest shutting down (status {status})");
                self.sh.event(SessionEvent::Shutdown { status });
            }
            Ok(ControlMsg::Notice { text }) => {
                info!("guest: {text}");
                self.sh.event(SessionEvent::Notice(text.to_string()));
            }
            // Both go through the log worker, so they are stored after every log byte
            // that arrived before them is durable.
            Ok(ControlMsg::LogKey { vkey }) => {
                info!("guest log key: {vkey}");
                self.sh.event(SessionEvent::LogKey(vkey.to_string()));
                let item = LogItem::File(
                    "log.vkey",
                    vkey.as_bytes().to_vec(),
                    SessionEvent::LogKeyStored,
                );
                self.send_to_log_worker(item);
            }
            Ok(ControlMsg::Checkpoint { note }) => {
                info!("guest checkpoint received ({} bytes)", note.len());
                self.sh.event(SessionEvent::Checkpoint(note.to_string()));
                let item = LogItem::File(
                    "checkpoint.note",
                    note.as_bytes().to_vec(),
                    SessionEvent::CheckpointStored,
                );
                self.send_to_log_worker(item);
            }
            Err(e) => self.protocol_error(s, code::PROTOCOL, &format!("bad control message: {e}")),
        }
    }
}

fn send_bundle(sh: &Shared, b: &Bundle) -> Result<(), SessionError> {
    let mut buf = vec![0u8; 1024];
    let begin = BundleMsg::Begin {
        files: b.files.len() as u32,
        total_bytes: b.total_bytes(),
    };
    sh.send_message(Stream::Bundle, msg::encode(&begin, &mut buf)?)?;
    for (name, bytes) in &b.files {
        let m = BundleMsg::File {
            name,
            size: bytes.len() as u64,
        };
        sh.send_message(Stream::Bundle, msg::encode(&m, &mut buf)?)?;
        sh.send_message(Stream::Bundle, bytes)?;
    }
    sh.send_message(Stream::Bundle, msg::encode(&BundleMsg::End, &mut buf)?)?;
    sh.send_with(|enc, o| enc.close(Stream::Bundle, o))
}

fn log_worker(sh: Arc<Shared>, mut store: Box<dyn LogStore>, rx: Receiver<LogItem>) {
    let mut total: u64 = 0;
    let mut failed = false;
    let mut next: Option<LogItem> = None;
    loop {
        let item = match next.take() {
            Some(i) => i,
            None => match rx.recv() {
                Ok(i) => i,
                Err(_) => return,
            },
        };
        match item {
            LogItem::File(name, bytes, ev) => {
                if failed {
                    continue;
                }
                match store.put_file(name, &bytes) {
                    Ok(()) => sh.event(ev),
                    Err(e) => {
                        warn!("storing {name}: {e}");
                        sh.event(SessionEvent::BackendError {
                            stream: Stream::Log,
                            message: e.to_string(),
                        });
                        sh.send_error(
                            Stream::Control,
                            code::BACKEND,
                            &format!("storing {name}: {e}"),
                        );
                    }
                }
            }
            LogItem::Data(seq, first) => {
                // Batch the data that has queued up (stopping at a file item, which must wait
                // for this batch): one fsync covers them all.
                let mut last_seq = seq;
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    match more {
                        LogItem::Data(s, b) => {
                            last_seq = s;
                            batch.push(b);
                        }
                        other => {
                            next = Some(other);
                            break;
                        }
                    }
                }
                let bytes: usize = batch.iter().map(|b| b.len()).sum();
                if failed {
                    sh.send_error(
                        Stream::Log,
                        code::BACKEND,
                        "log storage failed earlier; nothing more is stored",
                    );
                    sh.consumed(Stream::Log, bytes);
                    continue;
                }
                let r = batch
                    .iter()
                    .try_for_each(|b| store.append(b))
                    .and_then(|_| store.sync());
                match r {
                    Ok(()) => {
                        total += bytes as u64;
                        // SECURITY: the Ack goes out only after sync() returned: a host crash
                        // cannot lose anything the guest was told is stored.
                        if sh.send_with(|enc, o| enc.ack(last_seq, total, o)).is_err() {
                            return;
                        }
                        sh.event(SessionEvent::LogStored {
                            seq: last_seq,
                            total,
                        });
                        sh.consumed(Stream::Log, bytes);
                    }
                    Err(e) => {
                        failed = true;
                        warn!("provenance log storage failed: {e}");
                        sh.event(SessionEvent::BackendError {
                            stream: Stream::Log,
                            message: e.to_string(),
                        });
                        sh.send_error(
                            Stream::Log,
                            code::BACKEND,
                            &format!("log storage failed: {e}"),
                        );
                        sh.consumed(Stream::Log, bytes);
                    }
                }
            }
        }
    }
}

fn inference_worker(sh: Arc<Shared>, proxy: String, rx: Receiver<InferenceEvt>) {
    let mut conn: Option<TcpStream> = None;
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    while let Ok(ev) = rx.recv() {
        match ev {
            InferenceEvt::Close => {
                if let Some(c) = conn.take() {
                    let _ = c.shutdown(Shutdown::Write);
                }
            }
            InferenceEvt::Data(bytes) => {
                let n = bytes.len();
                if conn.is_none() {
                    match connect(&proxy) {
                        Ok(c) => {
                            info!("inference proxy connected: {proxy}");
                            if let Ok(rc) = c.try_clone() {
                                let sh2 = sh.clone();
                                readers.push(thread::spawn(move || proxy_to_guest(sh2, rc)));
                            }
                            conn = Some(c);
                        }
                        Err(e) => {
                            let m = format!("inference proxy {proxy}: {e}");
                            warn!("{m}");
                            sh.event(SessionEvent::BackendError {
                                stream: Stream::Inference,
                                message: m.clone(),
                            });
                            sh.send_error(Stream::Inference, code::BACKEND, &m);
                            sh.consumed(Stream::Inference, n);
                            continue;
                        }
                    }
                }
                let c = conn.as_mut().expect("connected above");
                // Credit comes back only once the proxy took the bytes: a stalled proxy
                // stalls the guest's Inference stream (and nothing else).
                if let Err(e) = c.write_all(&bytes) {
                    let m = format!("inference proxy write: {e}");
                    sh.send_error(Stream::Inference, code::BACKEND, &m);
                    conn = None;
                }
                sh.consumed(Stream::Inference, n);
            }
        }
    }
    if let Some(c) = conn {
        let _ = c.shutdown(Shutdown::Both);
    }
    for r in readers {
        let _ = r.join();
    }
}

fn connect(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn proxy_to_guest(sh: Arc<Shared>, mut c: TcpStream) {
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if sh.send_message(Stream::Inference, &buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = sh.send_with(|enc, o| enc.close(Stream::Inference, o));
}

fn tools_worker(sh: Arc<Shared>, cmd: String, rx: Receiver<Frag>) {
    let spawn = || -> io::Result<(Child, ChildStdin)> {
        let argv = shlex::split(&cmd)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "cannot parse the command")
            })?;
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let sh2 = sh.clone();
        thread::spawn(move || gateway_to_guest(sh2, stdout));
        Ok((child, stdin))
    };
    let (mut child, mut stdin) = match spawn() {
        Ok(x) => x,
        Err(e) => {
            let m = format!("tool gateway {cmd:?} failed to start: {e}");
            warn!("{m}");
            sh.event(SessionEvent::BackendError {
                stream: Stream::Tools,
                message: m.clone(),
            });
            while let Ok(f) = rx.recv() {
                if let Frag::Data(d, end) = f {
                    if end {
                        sh.send_error(Stream::Tools, code::BACKEND, &m);
                    }
                    sh.consumed(Stream::Tools, d.len());
                }
            }
            return;
        }
    };
    info!("tool gateway started: {cmd}");
    let mut asm = Assembler::new(MAX_TOOL_LINE);
    while let Ok(f) = rx.recv() {
        let (d, end) = match f {
            Frag::Reset => {
                asm.reset();
                continue;
            }
            Frag::Data(d, end) => (d, end),
        };
        // Buffered (bounded): the credit goes back now; while the gateway is slow to take a
        // message, this loop stops and so do the grants.
        sh.consumed(Stream::Tools, d.len());
        let msg = match asm.push(&d, end) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(()) => {
                sh.send_error(
                    Stream::Tools,
                    code::TOO_LARGE,
                    "tool message longer than MAX_TOOL_LINE",
                );
                continue;
            }
        };
        // One message = one line of JSON; a newline inside would split it.
        if msg.contains(&b'\n') {
            sh.send_error(
                Stream::Tools,
                code::PROTOCOL,
                "tool message contains a newline",
            );
        } else if let Err(e) = stdin
            .write_all(&msg)
            .and_then(|_| stdin.write_all(b"\n"))
            .and_then(|_| stdin.flush())
        {
            sh.send_error(Stream::Tools, code::BACKEND, &format!("tool gateway: {e}"));
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
}

fn gateway_to_guest(sh: Arc<Shared>, stdout: std::process::ChildStdout) {
    let mut r = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        // SECURITY: a line longer than MAX_TOOL_LINE is cut off and reported, not buffered.
        match (&mut r)
            .take(MAX_TOOL_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => break,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                } else if line.len() > MAX_TOOL_LINE {
                    sh.send_error(
                        Stream::Tools,
                        code::TOO_LARGE,
                        "tool gateway line too long; dropped",
                    );
                    // Skip the rest of the line.
                    let mut sink = Vec::new();
                    let _ = r.read_until(b'\n', &mut sink);
                    continue;
                }
                if sh.send_message(Stream::Tools, &line).is_err() {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    let _ = sh.send_with(|enc, o| enc.close(Stream::Tools, o));
}

fn echo_worker(sh: Arc<Shared>, rx: Receiver<Frag>) {
    let mut asm = Assembler::new(MAX_HOST_MESSAGE);
    while let Ok(f) = rx.recv() {
        let (d, end) = match f {
            Frag::Reset => {
                asm.reset();
                continue;
            }
            Frag::Data(d, end) => (d, end),
        };
        sh.consumed(Stream::Echo, d.len());
        let mut m = match asm.push(&d, end) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(()) => {
                sh.send_error(Stream::Echo, code::TOO_LARGE, "echo message too large");
                continue;
            }
        };
        match m.first() {
            Some(&ECHO_REQUEST) if sh.echo_enabled => {
                m[0] = ECHO_REPLY;
                // Waits for the guest's credit; meanwhile this loop takes no more fragments,
                // so no more credit goes back: a guest that stops reading is blocked, not
                // buffered.
                if sh.send_message(Stream::Echo, &m).is_err() {
                    return;
                }
            }
            Some(&ECHO_REQUEST) => {
                sh.send_error(Stream::Echo, code::UNAVAILABLE, "echo is disabled (--echo)")
            }
            Some(&ECHO_REPLY) => {
                lock(&sh.echo_replies).push_back(m);
                sh.echo_cv.notify_all();
            }
            _ => sh.send_error(
                Stream::Echo,
                code::PROTOCOL,
                "echo message without a Q/R tag",
            ),
        }
    }
}
