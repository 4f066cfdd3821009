//! The Peer stream: one peer channel (`omega-peer-channel`) to another monitor, relayed by
//! the two launchers, driven from the service loop (sans-IO: the relay's bytes in, the
//! channel's bytes out on `Stream::Peer`).
//!
//! Who is a peer is the fleet coordinator's word, never the host's: the bundle's manifest
//! names the fleet and the coordinator's key (`fleet`, so in the attested `bundle` claim),
//! and the channel's authority is [`CredentialAuthority`] under that key. The host
//! configures the link on Control: `PeerConfig` (this node's name, the peer's, the role:
//! `--peer-connect` initiates) before the bundle, then `PeerCredential`, this node's own
//! credential, once the coordinator admitted the node on its evidence. The monitor checks
//! it (see [`PeerService::on_credential`]), logs the verdict (`PEER_CREDENTIAL`), presents
//! it in the handshake and starts; relay bytes that come earlier wait here (bounded).
//!
//! Time: credential windows are Unix seconds and the host's clock is not to be believed.
//! The node's own credential binds keys drawn at this boot, so the coordinator issued it
//! (its `not_before`) after the VM started: `not_before` + the monitor clock's seconds
//! since the VM started is never earlier than the true time. Peers' credentials are
//! checked at that bound, so an expired one is never taken for valid (one is refused at
//! most the delivery delay early). Without a clock no credential is accepted.
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
use omega_fleet::Credential;
use omega_fleet::endorsement::{PresentedError, Root, open_presented};
use omega_fleet::peer::CredentialAuthority;
use omega_kernel::channel::HostText;
use omega_peer_channel::{Channel, Event, Identity, MAX_BUFFERED, PeerName};
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
    /// Configured, waiting for this node's credential; relay bytes kept until then.
    Waiting {
        initiator: bool,
        node: PeerName,
        peer: PeerName,
        early: Vec<u8>,
    },
    Running {
        ch: Box<Channel<CredentialAuthority>>,
        peer: PeerName,
        up: bool,
        closing: bool,
    },
    /// Closed by both ends, refused or broken: nothing more is accepted.
    Ended,
}

/// The fleet the bundle names: the only source of the channel's authority (one
/// coordinator's key, or the owner whose endorsed coordinators sign credentials).
struct Fleet {
    id: alloc::string::String,
    root: Root,
}

pub struct PeerService {
    seed: Option<[u8; 32]>,
    /// The monitor key (the evidence's): a credential must bind it.
    monitor_key: Option<[u8; 32]>,
    /// From the bundle's manifest, once it is in.
    fleet: Option<Fleet>,
    /// The bundle is in (its `fleet` entry read).
    bundle_in: bool,
    /// The own credential's `not_before`: Unix seconds no later than the VM's start.
    unix_at_start: Option<u64>,
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
    /// `seed`: `BootKeys::peer_key`, `evidence_seed`: `BootKeys::evidence_key` (none
    /// without entropy: the channel cannot start).
    pub fn new(seed: Option<&[u8; 32]>, evidence_seed: Option<&[u8; 32]>) -> Self {
        let monitor_key = evidence_seed
            .and_then(|s| omega_evidence::Issuer::new(*s).ok())
            .map(|i| i.monitor_public());
        PeerService {
            seed: seed.copied(),
            monitor_key,
            fleet: None,
            bundle_in: false,
            unix_at_start: None,
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
            "omega: peer: this node is {node}, its peer {peer} ({}); waiting for its fleet credential",
            if initiator { "initiator" } else { "responder" }
        );
        self.state = State::Waiting {
            initiator,
            node,
            peer,
            early: Vec::new(),
        };
    }

    /// The delivered bundle's `fleet` entry (called once the bundle is in): without one,
    /// no credential is accepted and no peer channel starts.
    pub fn set_fleet(&mut self, fleet: Option<&omega_bundle::FleetEntry>) {
        self.bundle_in = true;
        self.fleet = fleet.and_then(|f| {
            let root = match (f.coordinator_key(), f.owner_key()) {
                (Some(k), None) => Root::Coordinator(k),
                (None, Some(o)) => Root::Owner(o),
                // The bundle check admits exactly one of them.
                _ => return None,
            };
            Some(Fleet {
                id: f.id.clone(),
                root,
            })
        });
    }

    /// Unix seconds no earlier than the true time (module docs), once the own credential
    /// anchored it.
    fn unix_now(&self, now_ms: u64) -> Option<u64> {
        Some(self.unix_at_start?.saturating_add(now_ms.div_ceil(1000)))
    }

    /// Checks this node's own credential: signed by the coordinator the bundle names, for
    /// its fleet and the configured node name, binding this boot's monitor key and peer
    /// key, not expired at the upper bound of the time. Returns it and its identity.
    fn check_own(
        &self,
        bytes: &[u8],
        node: &PeerName,
        clock: bool,
        now_ms: u64,
    ) -> Result<(Credential, Identity), &'static str> {
        let fleet = self.fleet.as_ref().ok_or("the bundle names no fleet")?;
        let (Some(seed), Some(monitor_key)) = (self.seed, self.monitor_key) else {
            return Err("no peer key (no entropy at boot)");
        };
        // SECURITY: the monitor's clock bounds the credential's window; without one an
        // expired credential could never be told from a valid one.
        if !clock {
            return Err("no clock to bound the credential's window");
        }
        let (c, endorsement) =
            open_presented(bytes, &fleet.root, &fleet.id).map_err(|e| match (&fleet.root, e) {
                (_, PresentedError::OtherFleet(_)) => "endorsement of another fleet",
                (Root::Coordinator(_), _) => {
                    "not signed by the bundle's coordinator (or malformed)"
                }
                (Root::Owner(_), _) => {
                    "not under a coordinator key the bundle's owner endorsed (or malformed)"
                }
            })?;
        if c.fleet_id != fleet.id {
            return Err("credential of another fleet");
        }
        if c.node_id != node.as_str() {
            return Err("credential names another node");
        }
        // SECURITY: a credential issued for another boot (or another node) binds other
        // keys: the host replaying or swapping credentials gets nowhere.
        if c.node_key != monitor_key {
            return Err("credential binds another monitor key");
        }
        let id = Identity::from_seed(seed, bytes.to_vec()).map_err(|_| "bad peer key")?;
        if c.peer_key != Some(id.public()) {
            return Err("credential binds another peer key");
        }
        let upper = c.not_before.saturating_add(now_ms.div_ceil(1000));
        if upper >= c.not_after {
            return Err("credential expired");
        }
        if endorsement.is_some_and(|e| !e.valid_at(upper)) {
            return Err("the owner's endorsement of its coordinator expired");
        }
        Ok((c, id))
    }

    /// `ControlMsg::PeerCredential`: this node's credential; the first one (after the
    /// bundle) decides, and an accepted one starts the handshake.
    pub fn on_credential(&mut self, ch: &mut HostChannel, log: &mut LogService<'_>, bytes: &[u8]) {
        let State::Waiting { node, .. } = &self.state else {
            if self.refuse() {
                serial_println!(
                    "omega: peer: PeerCredential refused (not configured, or already given)"
                );
            }
            return;
        };
        // The fleet is known only once the bundle is in; earlier is the host's mistake.
        if !self.bundle_in {
            if self.refuse() {
                serial_println!("omega: peer: PeerCredential before the bundle refused");
            }
            return;
        }
        let now_ms = log.now_ms();
        let checked = self.check_own(bytes, node, log.has_clock(), now_ms);
        let State::Waiting {
            initiator,
            node,
            peer,
            early,
        } = core::mem::replace(&mut self.state, State::Ended)
        else {
            return;
        };
        let (credential, id) = match checked {
            Ok(c) => c,
            Err(why) => {
                serial_println!("omega: peer: own credential refused: {why}; no peer channel");
                log.lifecycle(
                    ch,
                    lifecycle::PEER_CREDENTIAL,
                    0,
                    Decision::Deny,
                    Some(Sha256::digest(bytes).into()),
                    Some(entry_name(why)),
                );
                return;
            }
        };
        let fleet = self.fleet.as_ref().expect("checked above");
        let authority = CredentialAuthority::rooted(fleet.root, &fleet.id);
        self.unix_at_start = Some(credential.not_before);
        let label = alloc::format!(
            "{}/{} #{}",
            credential.node_id,
            credential.role,
            credential.serial
        );
        serial_println!(
            "omega: peer: fleet credential {label} accepted (fleet {}, valid {} s)",
            credential.fleet_id,
            credential.not_after - credential.not_before
        );
        log.lifecycle(
            ch,
            lifecycle::PEER_CREDENTIAL,
            0,
            Decision::Allow,
            Some(Sha256::digest(bytes).into()),
            Some(entry_name(&label)),
        );
        let mut eph = [0u8; 32];
        let mut rng = crate::hw::entropy::CpuRng::detect();
        if let Err(e) = omega_kernel::entropy::fill(&mut rng, &mut eph) {
            crate::monitor::fatal("entropy for a peer handshake", e)
        }
        let made = if initiator {
            Channel::initiator(id, authority, eph, Some(peer.clone()))
        } else {
            Channel::responder(id, authority, eph)
        };
        let c = match made {
            Ok(c) => c,
            Err(e) => {
                serial_println!("omega: peer: the channel cannot start: {e}");
                return;
            }
        };
        serial_println!("omega: peer: {node} handshakes with {peer}");
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

    /// A `PeerConfig` or `PeerCredential` from the host (Control).
    pub fn on_control(&mut self, ch: &mut HostChannel, log: &mut LogService<'_>, body: &[u8]) {
        match omega_wire::msg::decode_exact::<ControlMsg<'_>>(body) {
            Ok(ControlMsg::PeerConfig {
                initiator,
                node,
                peer,
            }) => self.on_config(initiator, node, peer),
            Ok(ControlMsg::PeerCredential { credential }) => {
                self.on_credential(ch, log, credential)
            }
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
        // Anchored before the handshake starts (`on_credential`).
        let now_s = self.unix_now(log.now_ms()).unwrap_or(0);
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
                    serial_println!(
                        "omega: peer: too many relay bytes before the credential; no session"
                    );
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
            serial_println!("omega: peer: the relay ended before the credential; no session");
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

// The wire's bound on a credential is the fleet's.
const _: () =
    assert!(omega_wire::msg::MAX_PEER_CREDENTIAL == omega_fleet::credential::MAX_CREDENTIAL);
