//! The host end of the channel: handshake, demultiplexing, flow control, stream backends.
//!
//! Threads: the `demux` reader (decodes guest frames, handles Control, hands every other
//! stream's data to its relay; it never blocks on a backend), one `relay` per served stream
//! (log storage, inference proxy, tool gateway, echo, peer link, fleet coordinator relay),
//! and senders that wait for the
//! guest's credit (`send`). A stream whose backend is slow stops being granted credit, so
//! the guest blocks on that stream only.
//!
//! * [`log_store`]: where the Log stream goes ([`LogStore`], [`FileLogStore`]).
//! * `send`: what the threads share, the send path and the bundle sender.
//! * `demux`: the reader, the handshake, Control, routing.
//! * `relay`: the generic relay loop and one module per stream (`log`, `inference`,
//!   `tools`, `echo`); `link` relays Peer and Fleet each over one TCP connection, `peer`
//!   configures the monitor's peer session.
//! * [`confirm`]: the operator's answers to the monitor's confirmation requests (terminal,
//!   answers file, or deny).
//! * `psp`: the simulated PSP that answers the guest's `GuestRequest`s (tests only).

pub mod confirm;
mod demux;
pub mod log_store;
mod psp;
mod relay;
pub mod resume;
mod send;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use omega_wire::msg::{self, ControlMsg};
use omega_wire::{INITIAL_WINDOW, SUPPORTED_VERSIONS, Stream, WireError};
use tracing::debug;

use crate::bundle::Bundle;
use demux::Demux;
use send::Shared;

pub use log_store::{FileLogStore, LogStore, card_file_name, evidence_file_name};
pub use relay::echo::echo_roundtrip;
pub use relay::link::{LINK_WAIT, TcpLink};
pub use relay::peer::PeerSetup;
pub use relay::tools::MAX_TOOL_LINE;

/// Idle time after which a partial frame at the front of the decoder is given up.
pub const IDLE_RESYNC: Duration = Duration::from_secs(1);
/// Read timeout `connect_unix` sets, so the reader notices idleness.
pub const READ_TICK: Duration = Duration::from_millis(250);
/// Largest reassembled message on Control and Echo.
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
    /// The verifier's challenge, sent on Control right after the handshake (before the
    /// bundle); None: no Challenge is sent.
    pub challenge: Option<Challenge>,
    /// Who answers the monitor's confirmation requests (default: deny them all).
    pub operator: confirm::Operator,
    /// The other image's launcher, for the Peer stream; None: Peer data is refused.
    pub peer: Option<TcpLink>,
    /// This node's name, its peer's and its credential (with `peer`): `PeerConfig`, then
    /// `PeerCredential`.
    pub peer_setup: Option<PeerSetup>,
    /// The in-image fleet coordinator's untrusted relay (HOST:PORT), for the Fleet stream:
    /// connected to at session start, retrying for up to [`LINK_WAIT`]; None: Fleet data is
    /// refused. The host only carries the requests and answers: the monitor verifies what
    /// comes in and signs what goes out (docs/fleet.md).
    pub fleet: Option<String>,
}

/// What the host asks the monitor to attest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    /// The verifier's nonce, bound into the monitor's evidence.
    pub nonce: [u8; 32],
    /// Tests only: answer the guest's `GuestRequest`s with a simulated PSP whose reports
    /// carry this MEASUREMENT (the launch digest of the image and shape launched). Only
    /// test-hooks images use it; their evidence then says `tee: simulated`. None: every
    /// `GuestRequest` is answered with an Error.
    pub simulated_psp: Option<[u8; 48]>,
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
            challenge: None,
            operator: confirm::Operator::DenyAll,
            peer: None,
            peer_setup: None,
            fleet: None,
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
    /// The Challenge was sent (before the bundle).
    ChallengeSent {
        nonce: [u8; 32],
        simulated_psp: bool,
    },
    /// The monitor sent one principal's evidence.
    Evidence {
        principal: String,
        bundle: Vec<u8>,
    },
    /// That evidence was stored (`evidence/<file>` in the log directory).
    EvidenceStored {
        principal: String,
        file: String,
    },
    /// The monitor sent an agent's signed A2A card (canonical JSON).
    AgentCard {
        agent: String,
        card: String,
    },
    /// That card was stored (`cards/<file>` in the log directory).
    CardStored {
        agent: String,
        file: String,
    },
    /// The simulated PSP answered a guest request (`ok`), or it was refused (error sent).
    GuestRequest {
        ok: bool,
    },
    /// The monitor asks the operator to confirm a call (as received; out-of-bounds
    /// requests are recorded too, then denied).
    ConfirmRequest(confirm::Request),
    /// The answer sent for confirmation request `id`, and who gave it.
    ConfirmAnswered {
        id: u64,
        approve: bool,
        by: String,
    },
    /// The guest closed a stream.
    StreamClosed(Stream),
    /// A backend failed (proxy, tool gateway, log storage).
    BackendError {
        stream: Stream,
        message: String,
    },
    /// Storing the log failed (disk full, I/O error): the log was cut back to its last
    /// whole entry (`kept` bytes) and the session ended. The launcher stops the run.
    LogStorageFailed {
        message: String,
        kept: u64,
    },
    Ended,
}

/// A running host end of the channel.
pub struct ChannelSession {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
}

impl ChannelSession {
    /// Starts serving the channel carried by `reader`/`writer` (two halves of one stream).
    /// Returns at once; the guest's Hello is awaited in the background.
    pub fn start<R, W>(reader: R, writer: W, config: SessionConfig) -> ChannelSession
    where
        R: Read + Send + 'static,
        W: Write + Send + 'static,
    {
        let shared = Arc::new(Shared::new(Box::new(writer), config.echo));
        let sh = shared.clone();
        let reader = thread::Builder::new()
            .name("omega-channel-rx".into())
            .spawn(move || Demux::new(sh, config).run(reader))
            .expect("spawn reader thread");
        ChannelSession {
            shared,
            reader: Some(reader),
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
        let cs = ChannelSession::start(r, s, config);
        cs.set_closer(move || {
            let _ = closer.shutdown(Shutdown::Both);
        });
        Ok(cs)
    }

    /// Attaches to a VM whose earlier launcher went away (`omega attach`): connects to its
    /// channel socket with a fresh `make_config()` and waits up to `hello_wait` for the
    /// monitor's new Hello; without one, closes and connects again, until `deadline`.
    ///
    /// Why again: QEMU drops control messages (such as "host connected") when the guest
    /// has no control buffer posted, so a monitor can miss one open; the next connection's
    /// open reaches it. (A monitor whose send QEMU dropped when the old host died resets
    /// its device first: `kernel/src/hw/virtio.rs`.)
    pub fn attach_unix(
        path: &Path,
        mut make_config: impl FnMut() -> std::io::Result<SessionConfig>,
        hello_wait: Duration,
        deadline: Instant,
    ) -> Result<(ChannelSession, u8), SessionError> {
        loop {
            let s = ChannelSession::connect_unix(path, make_config()?, deadline)?;
            match s.wait_handshake(hello_wait) {
                Ok(v) => return Ok((s, v)),
                Err(SessionError::Timeout) if Instant::now() < deadline => {
                    debug!("no Hello within {hello_wait:?}; connecting again");
                    drop(s.close());
                }
                Err(e) => {
                    drop(s.close());
                    return Err(e);
                }
            }
        }
    }

    /// Sets what closing the session does to the underlying stream (e.g. shut a socket
    /// down): `close`, and the session ending itself after a log storage failure.
    pub fn set_closer(&self, f: impl FnOnce() + Send + 'static) {
        self.shared.set_closer(Box::new(f));
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
        self.shared.events()
    }

    /// Waits until an event matching `pred` has happened (at any time) and returns it.
    pub fn wait_event(
        &self,
        pred: impl Fn(&SessionEvent) -> bool,
        timeout: Duration,
    ) -> Option<SessionEvent> {
        self.shared.wait_event(pred, timeout)
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
        self.shared.is_closed()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Closes the channel and waits for the reader thread.
    pub fn close(mut self) -> Vec<SessionEvent> {
        self.shared.shut_down();
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
