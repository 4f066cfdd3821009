//! Peer stream: the guest's peer-channel bytes (`omega-peer-channel`, encrypted end to end
//! between two monitors) relayed over one TCP connection to another launcher, which relays
//! them into its own guest. A plain byte pipe: this host sees only ciphertext and decides
//! nothing; whatever it does to the bytes, the monitors notice (docs/fleet.md).

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
    pipe: TcpPipe,
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
                        // The other launcher's bytes into this guest's Peer stream, as
                        // they come; its end of the connection closes the stream (the
                        // monitor tells a clean close from a cut by the channel's own
                        // close record).
                        tcp_to_guest(&sh, Stream::Peer, read_half);
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
            pipe: TcpPipe::new(Stream::Peer, "peer link"),
            link_thread: Some(link_thread),
        })
    }
}

impl Relay for PeerRelay {
    const STREAM: Stream = Stream::Peer;

    fn on_input(&mut self, sh: &Shared, input: Input, _: &mut Inbox) -> ControlFlow<()> {
        // The connection, waiting for it (at most [`PEER_WAIT`]) when the guest sends
        // first: credit goes back only once its bytes are written, so only the Peer
        // stream waits. Once it is gone (a write error), the link stays closed.
        self.pipe.on_input(sh, input, || {
            let made = match self.pending.take() {
                Some(rx) => rx
                    .recv_timeout(PEER_WAIT)
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no peer connection"))
                    .and_then(|c| c),
                None => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "peer link closed",
                )),
            };
            made.map_err(|e| format!("peer link {:?}: {e}", self.link))
        })
    }

    fn finish(self, _: &Shared) {
        self.pipe.finish();
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

/// Who this node is on the peer channel and whom it talks to (`omega run --peer-node`,
/// `--peer`, `--peer-credential`): sent to the monitor as `ControlMsg::PeerConfig` before
/// the bundle, then `ControlMsg::PeerCredential` once the fleet coordinator has issued this
/// node's credential. SECURITY: this host only carries the credential; the monitor checks
/// it under the coordinator key its measured bundle names (docs/fleet.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSetup {
    /// This node's name (the one its credential names).
    pub node: String,
    /// The peer's node name.
    pub peer: String,
    /// This node's signed credential: a file that appears once the coordinator admitted the
    /// node (it attests itself only once it runs), waited for at most [`PEER_WAIT`].
    pub credential: std::path::PathBuf,
}

/// Sends `PeerConfig` now (called before the bundle), then `PeerCredential` from its own
/// thread once the credential file is there.
pub(crate) fn send_setup(sh: &Arc<Shared>, setup: PeerSetup, initiator: bool) {
    let config = omega_wire::msg::ControlMsg::PeerConfig {
        initiator,
        node: &setup.node,
        peer: &setup.peer,
    };
    if let Err(e) = send_control(sh, &config) {
        warn!("sending the peer configuration failed: {e}");
        return;
    }
    info!(
        "peer link: this node is {}, its peer {} ({})",
        setup.node,
        setup.peer,
        if initiator { "initiator" } else { "responder" }
    );
    let sh = Arc::clone(sh);
    let spawned = thread::Builder::new()
        .name("omega-peer-credential".into())
        .spawn(
            move || match wait_for_credential(&setup.credential, PEER_WAIT) {
                Ok(bytes) => {
                    let m = omega_wire::msg::ControlMsg::PeerCredential { credential: &bytes };
                    match send_control(&sh, &m) {
                        Ok(()) => info!(
                            "peer link: credential for {} sent ({} bytes)",
                            setup.node,
                            bytes.len()
                        ),
                        Err(e) => warn!("sending the peer credential failed: {e}"),
                    }
                }
                Err(e) => warn!("peer link: no credential for {}: {e}", setup.node),
            },
        );
    if let Err(e) = spawned {
        warn!("peer link: cannot start the credential thread: {e}");
    }
}

fn send_control(sh: &Shared, m: &omega_wire::msg::ControlMsg<'_>) -> Result<(), String> {
    let mut b = [0u8; 2 * omega_wire::msg::MAX_PEER_CREDENTIAL];
    let body = omega_wire::msg::encode(m, &mut b).map_err(|e| e.to_string())?;
    sh.send_message(Stream::Control, body)
        .map_err(|e| e.to_string())
}

/// The credential file's bytes once it exists, is not empty and reads the same twice
/// 100 ms apart (a file still being written is waited past: the monitor takes the first
/// credential it is sent, good or bad).
fn wait_for_credential(path: &std::path::Path, wait: Duration) -> io::Result<Vec<u8>> {
    let start = Instant::now();
    let mut last: Option<Vec<u8>> = None;
    loop {
        let now = std::fs::read(path).ok().filter(|b| !b.is_empty());
        if let Some(b) = &now
            && b.len() > omega_wire::msg::MAX_PEER_CREDENTIAL
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds {} bytes, more than a credential ({} at most)",
                    path.display(),
                    b.len(),
                    omega_wire::msg::MAX_PEER_CREDENTIAL
                ),
            ));
        }
        if now.is_some() && now == last {
            return Ok(now.unwrap_or_default());
        }
        if start.elapsed() >= wait {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not appear", path.display()),
            ));
        }
        last = now;
        thread::sleep(Duration::from_millis(100));
    }
}
