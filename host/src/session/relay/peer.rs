//! Peer stream: the guest's peer-channel bytes (`omega-peer-channel`, encrypted end to end
//! between two monitors) relayed over one TCP connection to another launcher, which relays
//! them into its own guest. A plain byte pipe: this host sees only ciphertext and decides
//! nothing; whatever it does to the bytes, the monitors notice (docs/fleet.md).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use omega_wire::{MAX_PAYLOAD, Stream, msg::code};
use tracing::{info, warn};

use super::{Inbox, Input, Relay};
use crate::session::send::Shared;

/// How long a launcher waits for the other one (its listener, or its connection).
pub const PEER_WAIT: Duration = Duration::from_secs(120);

/// How this launcher reaches the other image's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerLink {
    /// Accept one connection on HOST:PORT (`--peer-listen`).
    Listen(String),
    /// Connect to HOST:PORT, retrying until the other launcher listens (`--peer-connect`).
    Connect(String),
}

pub(crate) struct PeerRelay {
    link: PeerLink,
    /// The write half of the connection, from the link thread once it is made.
    pending: Option<Receiver<io::Result<TcpStream>>>,
    conn: Option<TcpStream>,
    /// Makes the connection, then relays the other launcher's bytes into the guest.
    link_thread: Option<JoinHandle<()>>,
}

impl PeerRelay {
    /// Starts linking at once (a listener binds now, so a bind error shows at start). The
    /// link thread relays the other side's bytes as soon as the connection is up: a
    /// responder's guest hears the initiator's first message without sending anything.
    pub(crate) fn start(sh: &Arc<Shared>, link: PeerLink) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let listener = match &link {
            PeerLink::Listen(addr) => {
                let l = TcpListener::bind(addr.as_str())?;
                info!("peer link: listening on {}", l.local_addr()?);
                Some(l)
            }
            PeerLink::Connect(_) => None,
        };
        let target = link.clone();
        let sh = Arc::clone(sh);
        let link_thread = thread::Builder::new()
            .name("omega-peer-link".into())
            .spawn(move || {
                let made = match (listener, target) {
                    (Some(l), _) => l.accept().map(|(s, from)| {
                        info!("peer link: connection from {from}");
                        s
                    }),
                    (None, PeerLink::Connect(addr)) => connect_retrying(&addr, PEER_WAIT),
                    (None, PeerLink::Listen(_)) => Err(io::Error::other("no listener")),
                };
                match made.and_then(|c| {
                    let _ = c.set_nodelay(true);
                    Ok((c.try_clone()?, c))
                }) {
                    Ok((write_half, read_half)) => {
                        let _ = tx.send(Ok(write_half));
                        peer_to_guest(&sh, read_half);
                    }
                    Err(e) => {
                        warn!("peer link: {e}");
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        Ok(PeerRelay {
            link,
            pending: Some(rx),
            conn: None,
            link_thread: Some(link_thread),
        })
    }

    /// The connection, waiting for it (at most [`PEER_WAIT`]) when the guest sends first:
    /// credit goes back only once its bytes are written, so only the Peer stream waits.
    fn connection(&mut self) -> io::Result<&mut TcpStream> {
        if let Some(rx) = self.pending.take() {
            let c = rx
                .recv_timeout(PEER_WAIT)
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no peer connection"))??;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "peer link closed"))
    }
}

impl Relay for PeerRelay {
    const STREAM: Stream = Stream::Peer;

    fn on_input(&mut self, sh: &Shared, input: Input, _: &mut Inbox) -> ControlFlow<()> {
        let bytes = match input {
            Input::Data { payload, .. } => payload,
            Input::Close => {
                if let Some(c) = self.conn.take() {
                    let _ = c.shutdown(Shutdown::Write);
                }
                return ControlFlow::Continue(());
            }
            Input::File(..) => return ControlFlow::Continue(()),
        };
        match self.connection() {
            Ok(c) => {
                if let Err(e) = c.write_all(&bytes) {
                    let m = format!("peer link write: {e}");
                    sh.send_error(Stream::Peer, code::BACKEND, &m);
                    self.conn = None;
                }
            }
            Err(e) => {
                let m = format!("peer link {:?}: {e}", self.link);
                warn!("{m}");
                sh.backend_error(Stream::Peer, m.clone());
                sh.send_error(Stream::Peer, code::BACKEND, &m);
            }
        }
        sh.consumed(Stream::Peer, bytes.len());
        ControlFlow::Continue(())
    }

    fn finish(self, _: &Shared) {
        if let Some(c) = self.conn {
            let _ = c.shutdown(Shutdown::Both);
        }
        // A link thread still waiting for the other launcher is left to end with the
        // process; one that is relaying ends when the connection does.
        if let Some(t) = self.link_thread
            && t.is_finished()
        {
            let _ = t.join();
        }
    }
}

fn connect_retrying(addr: &str, wait: Duration) -> io::Result<TcpStream> {
    let start = Instant::now();
    loop {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
                Ok(s) => {
                    info!("peer link: connected to {addr}");
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        if start.elapsed() >= wait {
            return Err(last);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The other launcher's bytes into this guest's Peer stream, as they come; its end of the
/// connection closes the stream (the monitor tells a clean close from a cut by the
/// channel's own close record).
fn peer_to_guest(sh: &Shared, mut c: TcpStream) {
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if sh.send_message(Stream::Peer, &buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    sh.send_close(Stream::Peer);
}
