//! The Peer stream: one peer channel (`omega-peer-channel`) to another monitor, relayed by
//! the two launchers, driven from the service loop (sans-IO: the relay's bytes in, the
//! channel's bytes out on `Stream::Peer`).
//!
//! The host configures it on Control: `PeerConfig` (this node's name, the peer's, the
//! role: `--peer-connect` initiates) before the bundle, then `PeerPin` (the peer's key,
//! taken from its verified `peer` evidence) once the other image has attested itself. The
//! handshake starts with the pin; relay bytes that come earlier wait here (bounded).
//! SECURITY: the pin is a test-only trust root, given by the untrusted host, until the
//! fleet coordinator's credentials are wired (docs/fleet.md): a host that pins a key of
//! its own gets a channel to itself, never a message of another node's.
//!
//! Logged (`PEER_SESSION`): allow when the session is up (content = SHA-256(session id ‖
//! peer key), name = the peer's node name), deny when a handshake is refused, error when an
//! established session breaks (name = the `PeerError`).
//!
//! Agents' messages (`Deliver`/`Outcome`) over the session: [`messages`].

use alloc::boxed::Box;
use alloc::string::ToString;
use alloc::vec::Vec;

use omega_arch::serial_println;
use omega_kernel::channel::HostText;
use omega_peer_channel::{Channel, Event, Identity, MAX_BUFFERED, PeerName, PinnedAuthority};
use omega_provenance::Decision;
use omega_provenance::entry::lifecycle;
use omega_wire::Stream;
use omega_wire::msg::ControlMsg;
use sha2::{Digest, Sha256};

use super::log::LogService;
use super::{HostChannel, report_send_failure};

mod messages;
pub use messages::{Note, Send as PeerSend};

/// How long the monitor waits, once its agents are done, for the session to come up and
/// close (the other image may boot and attest later under TCG).
pub const WIND_DOWN_MS: u64 = 180_000;

enum State {
    /// No `PeerConfig`: the Peer stream is not served.
    Off,
    /// Configured, waiting for the pin; relay bytes kept until then.
    Waiting {
        initiator: bool,
        node: PeerName,
        peer: PeerName,
        early: Vec<u8>,
    },
    Running {
        ch: Box<Channel<PinnedAuthority>>,
        peer: PeerName,
        up: bool,
        closing: bool,
    },
    /// Closed by both ends, refused or broken: nothing more is accepted.
    Ended,
}

pub struct PeerService {
    seed: Option<[u8; 32]>,
    state: State,
    /// When the agents were done and the wind-down started.
    wind_down_since: Option<u64>,
    /// Host messages refused so far (the first 20 and every 1000th are reported).
    refused: u64,
    /// Agents' messages out and in.
    msgs: messages::Messages,
}

/// A log entry's name: at most `MAX_NAME` bytes, cut at a character boundary.
pub(super) fn entry_name(s: &str) -> &[u8] {
    let mut end = s.len().min(omega_provenance::entry::MAX_NAME);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

impl PeerService {
    /// `seed`: `BootKeys::peer_key` (none without entropy: the channel cannot start).
    pub fn new(seed: Option<&[u8; 32]>) -> Self {
        PeerService {
            seed: seed.copied(),
            state: State::Off,
            wind_down_since: None,
            refused: 0,
            msgs: messages::Messages::default(),
        }
    }

    /// Whether the host configured a peer link.
    pub fn configured(&self) -> bool {
        !matches!(self.state, State::Off)
    }

    /// `ControlMsg::PeerConfig`: the first one counts.
    pub fn on_config(&mut self, initiator: bool, node: &str, peer: &str) {
        if self.configured() {
            if self.refuse() {
                serial_println!("omega: peer: a second PeerConfig from the host refused");
            }
            return;
        }
        let (Some(node), Some(peer)) = (PeerName::new(node), PeerName::new(peer)) else {
            serial_println!(
                "omega: peer: PeerConfig refused: bad node names \"{}\" / \"{}\"",
                HostText(node),
                HostText(peer)
            );
            return;
        };
        serial_println!(
            "omega: peer: this node is {node}, its peer {peer} ({}); waiting for the peer's pinned key",
            if initiator { "initiator" } else { "responder" }
        );
        self.state = State::Waiting {
            initiator,
            node,
            peer,
            early: Vec::new(),
        };
    }

    /// `ControlMsg::PeerPin`: starts the handshake.
    pub fn on_pin(
        &mut self,
        ch: &mut HostChannel,
        log: &mut LogService<'_>,
        peer_name: &str,
        key: [u8; 32],
    ) {
        let State::Waiting { peer, .. } = &self.state else {
            if self.refuse() {
                serial_println!("omega: peer: PeerPin refused (not configured, or already pinned)");
            }
            return;
        };
        if peer.as_str() != peer_name {
            serial_println!(
                "omega: peer: PeerPin for {} refused: the configured peer is {peer}",
                HostText(peer_name)
            );
            return;
        }
        let State::Waiting {
            initiator,
            node,
            peer,
            early,
        } = core::mem::replace(&mut self.state, State::Ended)
        else {
            return;
        };
        let Some(seed) = self.seed else {
            serial_println!("omega: peer: no peer key (no entropy at boot); no session");
            return;
        };
        let mut authority = PinnedAuthority::new();
        authority.pin(peer.clone(), key);
        let mut eph = [0u8; 32];
        let mut rng = crate::hw::entropy::CpuRng::detect();
        if let Err(e) = omega_kernel::entropy::fill(&mut rng, &mut eph) {
            crate::monitor::fatal("entropy for a peer handshake", e)
        }
        let made = Identity::from_seed(seed, node.as_str().as_bytes().to_vec()).and_then(|id| {
            if initiator {
                Channel::initiator(id, authority, eph, Some(peer.clone()))
            } else {
                Channel::responder(id, authority, eph)
            }
        });
        let c = match made {
            Ok(c) => c,
            Err(e) => {
                serial_println!("omega: peer: the channel cannot start: {e}");
                return;
            }
        };
        serial_println!("omega: peer: {peer} pinned; handshake starts");
        self.state = State::Running {
            ch: Box::new(c),
            peer,
            up: false,
            closing: false,
        };
        if !early.is_empty() {
            self.on_message(ch, log, &early);
        }
        self.flush(ch);
    }

    /// A `PeerConfig` or `PeerPin` from the host (Control).
    pub fn on_control(&mut self, ch: &mut HostChannel, log: &mut LogService<'_>, body: &[u8]) {
        match omega_wire::msg::decode_exact::<ControlMsg<'_>>(body) {
            Ok(ControlMsg::PeerConfig {
                initiator,
                node,
                peer,
            }) => self.on_config(initiator, node, peer),
            Ok(ControlMsg::PeerPin { peer, key }) => self.on_pin(ch, log, peer, key),
            _ => {}
        }
    }

    /// Counts a refused host message; whether to report it (bounded console output).
    fn refuse(&mut self) -> bool {
        self.refused = self.refused.saturating_add(1);
        super::worth_reporting(self.refused)
    }

    /// Relay bytes from the other image.
    pub fn on_message(&mut self, ch: &mut HostChannel, log: &mut LogService<'_>, body: &[u8]) {
        let now_s = log.now_ms() / 1000;
        match &mut self.state {
            State::Off | State::Ended => {
                if self.refuse() {
                    serial_println!(
                        "omega: peer: {} relay bytes with no session, dropped ({} refused so far)",
                        body.len(),
                        self.refused
                    );
                }
            }
            State::Waiting { early, .. } => {
                // SECURITY: bounded; a host flooding before the pin ends the link.
                if early.len().saturating_add(body.len()) > MAX_BUFFERED {
                    serial_println!("omega: peer: too many relay bytes before the pin; no session");
                    self.state = State::Ended;
                } else {
                    early.extend_from_slice(body);
                }
            }
            State::Running { ch: c, .. } => {
                let r = c.feed(body, now_s);
                self.after(ch, log, r);
            }
        }
    }

    /// The host closed the Peer stream (the relay ended).
    pub fn on_closed(&mut self, ch: &mut HostChannel, log: &mut LogService<'_>) {
        if let State::Running { ch: c, .. } = &mut self.state {
            let r = c.transport_ended();
            self.after(ch, log, r);
            if matches!(self.state, State::Running { .. }) {
                self.state = State::Ended;
            }
        } else if matches!(self.state, State::Waiting { .. }) {
            serial_println!("omega: peer: the relay ended before the pin; no session");
            self.state = State::Ended;
        }
    }

    /// Takes the channel's events after a feed and logs them; a failure ends it.
    fn after(
        &mut self,
        ch: &mut HostChannel,
        log: &mut LogService<'_>,
        r: Result<(), omega_peer_channel::PeerError>,
    ) {
        let State::Running {
            ch: c, peer, up, ..
        } = &mut self.state
        else {
            return;
        };
        let mut ended = false;
        let mut frames = Vec::new();
        while let Some(ev) = c.poll_event() {
            match ev {
                Event::Established(info) => {
                    *up = true;
                    let mut h = Sha256::new();
                    h.update(info.session_id);
                    h.update(info.key);
                    let content: [u8; 32] = h.finalize().into();
                    serial_println!(
                        "omega: peer: session with {} established (session {:02x?})",
                        info.name,
                        &info.session_id[..4]
                    );
                    log.lifecycle(
                        ch,
                        lifecycle::PEER_SESSION,
                        0,
                        Decision::Allow,
                        Some(content),
                        Some(info.name.as_str().as_bytes()),
                    );
                }
                Event::Message(m) => frames.push(m),
                Event::Closed => {
                    serial_println!("omega: peer: {peer} closed the session");
                    ended = true;
                }
            }
        }
        let peer = peer.clone();
        for m in frames {
            if let Some(answer) = self.on_frame(&peer, &m) {
                self.send_frame(ch, &answer);
            }
        }
        self.send_waiting(ch);
        if let Err(e) = r {
            let why = e.to_string();
            let up = matches!(self.state, State::Running { up: true, .. });
            let decision = if up { Decision::Error } else { Decision::Deny };
            serial_println!(
                "omega: peer: session with {peer} {}: {why}",
                if up { "broken" } else { "refused" }
            );
            log.lifecycle(
                ch,
                lifecycle::PEER_SESSION,
                0,
                decision,
                None,
                Some(entry_name(&why)),
            );
            self.state = State::Ended;
            self.msgs.fail_all(&why);
            return;
        }
        self.flush(ch);
        if ended {
            self.state = State::Ended;
        }
    }

    /// Sends what the channel has for the relay.
    fn flush(&mut self, ch: &mut HostChannel) {
        if let State::Running { ch: c, .. } = &mut self.state
            && c.has_output()
        {
            let out = c.take_output();
            if let Err(e) = ch.send(Stream::Peer, &out) {
                report_send_failure("peer-channel bytes", &e);
            }
        }
    }

    /// Once the agents are done: closes an established session and says whether the
    /// monitor may shut down (no link, the session ended, or [`WIND_DOWN_MS`] passed).
    pub fn wound_down(&mut self, ch: &mut HostChannel, now_ms: u64) -> bool {
        let since = *self.wind_down_since.get_or_insert(now_ms);
        match &mut self.state {
            State::Off | State::Ended => return true,
            State::Running {
                ch: c,
                up: true,
                closing,
                ..
            } if !*closing && self.msgs.idle() => {
                *closing = true;
                if let Err(e) = c.close() {
                    serial_println!("omega: peer: closing the session failed: {e}");
                }
                self.flush(ch);
            }
            _ => {}
        }
        if now_ms.saturating_sub(since) > WIND_DOWN_MS {
            serial_println!(
                "omega: peer: no session end within {WIND_DOWN_MS} ms; shutting down without it"
            );
            self.state = State::Ended;
            return true;
        }
        false
    }
}
