//! The streams relayed over one TCP connection that the session makes at its start: Peer
//! (the monitor's encrypted channel, to the other image's launcher: `--peer-listen` /
//! `--peer-connect`) and Fleet (the in-image fleet coordinator's requests and answers, to
//! its untrusted relay: `--fleet-connect`). One [`LinkRelay`] for both, parameterized by the
//! stream and the name its messages use. A plain byte pipe: the bytes' boundaries carry no
//! meaning, this host reads nothing in them and decides nothing; what matters in them is
//! encrypted, signed or verified inside the monitor (docs/fleet.md).

use std::io;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use omega_wire::Stream;
use tracing::{info, warn};

use super::tcp::{TcpPipe, tcp_to_guest};
use super::{Inbox, Input, Relay, RelayHandle};
use crate::session::send::Shared;

/// How long a launcher waits for what is outside it: the other end of a link (its listener,
/// or its connection), a peer credential file to appear.
pub const LINK_WAIT: Duration = Duration::from_secs(120);

/// How a link's one TCP connection is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpLink {
    /// Accept one connection on HOST:PORT (`--peer-listen`).
    Listen(String),
    /// Connect to HOST:PORT, retrying for up to [`LINK_WAIT`] until the other end listens
    /// (`--peer-connect`, `--fleet-connect`).
    Connect(String),
}

/// Starts relaying `stream` over `link` (see [`LinkRelay::start`]); None when it cannot
/// start (a listener that cannot bind): the stream is then unserved, and the guest's data on
/// it is refused saying why.
pub(crate) fn spawn_link(
    sh: &Arc<Shared>,
    stream: Stream,
    what: &'static str,
    link: TcpLink,
) -> Option<RelayHandle> {
    match LinkRelay::start(sh, stream, what, link.clone()) {
        Ok(relay) => Some(super::spawn(sh, relay)),
        Err(e) => {
            warn!("{what} {link:?}: {e}");
            None
        }
    }
}

/// One stream relayed over one TCP connection.
pub(crate) struct LinkRelay {
    /// What messages call it ("peer link", "fleet coordinator relay").
    what: &'static str,
    link: TcpLink,
    /// The write half of the connection, from the link thread once it is made.
    pending: Option<Receiver<io::Result<TcpStream>>>,
    pipe: TcpPipe,
    /// Makes the connection, then relays the other end's bytes into the guest.
    link_thread: Option<JoinHandle<()>>,
}

impl LinkRelay {
    /// Starts linking at once (a listener binds now, so a bind error shows at start). The
    /// link thread relays the other end's bytes as soon as the connection is up: the guest
    /// hears the other end's first message (a responder the initiator's, a coordinator its
    /// relay's first request) without sending anything.
    fn start(
        sh: &Arc<Shared>,
        stream: Stream,
        what: &'static str,
        link: TcpLink,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let listener = match &link {
            TcpLink::Listen(addr) => {
                let l = TcpListener::bind(addr.as_str())?;
                info!("{what}: listening on {}", l.local_addr()?);
                Some(l)
            }
            TcpLink::Connect(_) => None,
        };
        let target = link.clone();
        let sh = Arc::clone(sh);
        let link_thread = thread::Builder::new()
            .name(format!("omega-{stream:?}-link").to_lowercase())
            .spawn(move || {
                let made = match (listener, target) {
                    (Some(l), _) => l.accept().map(|(s, from)| {
                        info!("{what}: connection from {from}");
                        s
                    }),
                    (None, TcpLink::Connect(addr)) => connect_retrying(what, &addr, LINK_WAIT),
                    (None, TcpLink::Listen(_)) => Err(io::Error::other("no listener")),
                };
                match made.and_then(|c| {
                    let _ = c.set_nodelay(true);
                    Ok((c.try_clone()?, c))
                }) {
                    Ok((write_half, read_half)) => {
                        let _ = tx.send(Ok(write_half));
                        // The other end's bytes into this guest's stream, as they come; its
                        // end of the connection closes the stream (the monitor tells a clean
                        // close from a cut by its own protocol: the peer channel's close
                        // record, a coordinator request cut short).
                        tcp_to_guest(&sh, stream, read_half);
                    }
                    Err(e) => {
                        warn!("{what}: {e}");
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        Ok(LinkRelay {
            what,
            link,
            pending: Some(rx),
            pipe: TcpPipe::new(stream, what),
            link_thread: Some(link_thread),
        })
    }
}

impl Relay for LinkRelay {
    fn stream(&self) -> Stream {
        self.pipe.stream()
    }

    fn on_input(&mut self, sh: &Shared, input: Input, _: &mut Inbox) -> ControlFlow<()> {
        // The connection, waiting for it (at most [`LINK_WAIT`]) when the guest sends
        // first: credit goes back only once its bytes are written, so only this stream
        // waits. Once it is gone (a write error), the link stays closed.
        let (what, link) = (self.what, &self.link);
        let pending = &mut self.pending;
        self.pipe.on_input(sh, input, || {
            let made = match pending.take() {
                Some(rx) => rx
                    .recv_timeout(LINK_WAIT)
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, format!("no {what} connection"))
                    })
                    .and_then(|c| c),
                None => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!("{what} closed"),
                )),
            };
            made.map_err(|e| format!("{what} {link:?}: {e}"))
        })
    }

    fn finish(self, _: &Shared) {
        self.pipe.finish();
        // A link thread still waiting for the other end is left to end with the process;
        // one that is relaying ends when the connection does.
        if let Some(t) = self.link_thread
            && t.is_finished()
        {
            let _ = t.join();
        }
    }
}

fn connect_retrying(what: &str, addr: &str, wait: Duration) -> io::Result<TcpStream> {
    let start = Instant::now();
    loop {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
                Ok(s) => {
                    info!("{what}: connected to {addr}");
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
