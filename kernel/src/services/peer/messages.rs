//! Agents' messages over the peer session (docs/fleet.md): the frames of
//! `omega_peer_channel::envelope`, one per record.
//!
//! Out: an agent's `send` to `node/agent` that this image's policy allowed (the runtime's
//! sending gate) becomes a `Deliver` with a fresh id; it waits here until the session is up,
//! and its `Outcome` (or the session's end, or [`OUTCOME_MS`] without one) becomes a
//! [`Note::Outcome`] for the agents' loop, which logs it (`PEER_MESSAGE`) and answers the
//! parked agent. In: each `Deliver` becomes a [`Note::Inbound`]; the agents' loop runs the
//! receiving gate (`Runtime::receive_remote`), logs the verdict and answers it
//! ([`PeerService::reply`]).
//!
//! SECURITY: the sender of an inbound message is `peer/agent` where `peer` is the node name
//! the session authenticated (the handshake's signed identity, checked by the authority);
//! a frame names only the agent, and an agent name with a `/` does not decode, so no frame
//! can claim another node.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use omega_arch::serial_println;
use omega_peer_channel::envelope::MAX_REASON;
use omega_peer_channel::{AgentAddr, Frame, PeerName};
use omega_runtime::Answer;
use sha2::{Digest, Sha256};

use super::{PeerService, State};
use crate::services::HostChannel;

/// How long a sent message waits for its outcome (the other image may still be booting
/// and attesting under TCG) before the agent is told it is unreachable.
pub const OUTCOME_MS: u64 = 150_000;
/// Inbound messages waiting for the agents' loop; more are refused (`busy`).
const MAX_INBOUND: usize = 32;
/// Messages sent or waiting for the session at once; more are refused at once.
const MAX_IN_FLIGHT: usize = 64;

/// A message out, waiting for the session or for its outcome.
struct Out {
    ticket: u64,
    agent: String,
    to: String,
    frame: Vec<u8>,
    digest: [u8; 32],
    deadline: u64,
}

/// What the agents' loop takes from the peer service.
pub enum Note {
    /// The end of a message out: `delivered` is the other gate's verdict (`None`:
    /// unreachable), `reason` its rule or why it is unreachable.
    Outcome {
        ticket: u64,
        agent: String,
        to: String,
        digest: [u8; 32],
        delivered: Option<bool>,
        reason: String,
    },
    /// A message in, for the receiving gate.
    Inbound {
        id: u32,
        /// `peer/agent`, the peer being the session's authenticated node.
        from: String,
        module: [u8; 32],
        to: String,
        labels: Vec<String>,
        message: Vec<u8>,
        digest: [u8; 32],
    },
}

#[derive(Default)]
pub struct Messages {
    next_id: u32,
    /// Not sent yet: the session is not up.
    waiting: Vec<(u32, Out)>,
    in_flight: BTreeMap<u32, Out>,
    notes: VecDeque<Note>,
    inbound: usize,
}

impl Messages {
    fn busy(&self) -> usize {
        self.waiting.len() + self.in_flight.len()
    }

    /// Every message out ends unreachable (the session ended, broke or never came).
    pub(super) fn fail_all(&mut self, why: &str) {
        let outs = core::mem::take(&mut self.waiting)
            .into_iter()
            .chain(core::mem::take(&mut self.in_flight));
        for (_, o) in outs {
            self.notes.push_back(unreachable(o, why));
        }
    }

    /// Whether nothing waits for the session or an outcome.
    pub(super) fn idle(&self) -> bool {
        self.busy() == 0
    }
}

fn unreachable(o: Out, why: &str) -> Note {
    Note::Outcome {
        ticket: o.ticket,
        agent: o.agent,
        to: o.to,
        digest: o.digest,
        delivered: None,
        reason: why.into(),
    }
}

/// A reason fit for an `Outcome` frame: no control characters, at most [`MAX_REASON`].
fn reason(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).collect();
    let mut end = out.len().min(MAX_REASON);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

/// A message the agents' loop hands over: an allowed send to `node/agent`.
pub struct Send<'a> {
    pub ticket: u64,
    pub agent: &'a str,
    pub module: &'a [u8; 32],
    pub to: &'a str,
    pub message: &'a [u8],
    pub labels: &'a [String],
}

impl PeerService {
    /// Sends (or queues until the session is up) an allowed message; `Err` answers the
    /// agent at once (no session to that node, too large, too many waiting).
    pub fn submit(
        &mut self,
        ch: &mut HostChannel,
        now_ms: u64,
        s: &Send<'_>,
    ) -> Result<(), Answer> {
        let Some(addr) = AgentAddr::parse(s.to) else {
            return Err(Answer::Unavailable(format!(
                "{} is no node/agent address",
                s.to
            )));
        };
        let peer: Option<&PeerName> = match &self.state {
            State::Waiting { peer, .. } | State::Running { peer, .. } => Some(peer),
            State::Off | State::Ended => None,
        };
        match peer {
            None if matches!(self.state, State::Off) => {
                return Err(Answer::Unavailable("no peer channel configured".into()));
            }
            None => return Err(Answer::Unavailable("the peer session has ended".into())),
            Some(p) if *p != addr.node => {
                return Err(Answer::Unavailable(format!(
                    "no channel to node {} (this monitor's peer is {p})",
                    addr.node
                )));
            }
            Some(_) => {}
        }
        if self.msgs.busy() >= MAX_IN_FLIGHT {
            return Err(Answer::Unavailable("too many messages in flight".into()));
        }
        let id = self.msgs.next_id;
        self.msgs.next_id = id.wrapping_add(1);
        let frame = Frame::Deliver {
            id,
            from: s.agent.into(),
            from_module: *s.module,
            to: addr.agent.clone(),
            message: s.message.to_vec(),
            labels: s.labels.to_vec(),
        }
        .encode()
        .map_err(|e| Answer::Unavailable(format!("the message cannot cross: {e}")))?;
        let out = Out {
            ticket: s.ticket,
            agent: s.agent.into(),
            to: s.to.into(),
            digest: Sha256::digest(&frame).into(),
            frame,
            deadline: now_ms.saturating_add(OUTCOME_MS),
        };
        self.msgs.waiting.push((id, out));
        self.send_waiting(ch);
        Ok(())
    }

    /// Sends what waited for the session, once it is up.
    pub(super) fn send_waiting(&mut self, ch: &mut HostChannel) {
        let State::Running {
            ch: c, up: true, ..
        } = &mut self.state
        else {
            return;
        };
        for (id, out) in core::mem::take(&mut self.msgs.waiting) {
            match c.send(&out.frame) {
                Ok(()) => {
                    self.msgs.in_flight.insert(id, out);
                }
                Err(e) => self
                    .msgs
                    .notes
                    .push_back(unreachable(out, &format!("the session refused it: {e}"))),
            }
        }
        self.flush(ch);
    }

    /// A record's payload from the peer: a `Deliver` or an `Outcome`.
    pub(super) fn on_frame(&mut self, peer: &PeerName, payload: &[u8]) -> Option<Frame> {
        let frame = match Frame::decode(payload) {
            Ok(f) => f,
            Err(e) => {
                serial_println!("omega: peer: a frame from {peer} refused: {e}");
                return None;
            }
        };
        let digest: [u8; 32] = Sha256::digest(payload).into();
        match frame {
            Frame::Outcome {
                id,
                delivered,
                reason,
            } => match self.msgs.in_flight.remove(&id) {
                Some(o) => self.msgs.notes.push_back(Note::Outcome {
                    ticket: o.ticket,
                    agent: o.agent,
                    to: o.to,
                    digest: o.digest,
                    delivered: Some(delivered),
                    reason,
                }),
                None => {
                    serial_println!("omega: peer: an outcome from {peer} for no message ({id})")
                }
            },
            Frame::Deliver {
                id,
                from,
                from_module,
                to,
                message,
                labels,
            } => {
                if self.msgs.inbound >= MAX_INBOUND {
                    // Answered at once; the agents' loop never sees it.
                    return Some(Frame::Outcome {
                        id,
                        delivered: false,
                        reason: "busy".into(),
                    });
                }
                self.msgs.inbound += 1;
                self.msgs.notes.push_back(Note::Inbound {
                    id,
                    // SECURITY: the node is the session's authenticated peer, never the frame's.
                    from: format!("{peer}/{from}"),
                    module: from_module,
                    to,
                    labels,
                    message,
                    digest,
                });
            }
        }
        None
    }

    /// Answers an inbound message (the receiving gate's verdict).
    pub fn reply(&mut self, ch: &mut HostChannel, id: u32, delivered: bool, why: &str) {
        self.msgs.inbound = self.msgs.inbound.saturating_sub(1);
        self.send_frame(
            ch,
            &Frame::Outcome {
                id,
                delivered,
                reason: reason(why),
            },
        );
    }

    pub(super) fn send_frame(&mut self, ch: &mut HostChannel, frame: &Frame) {
        let State::Running {
            ch: c, up: true, ..
        } = &mut self.state
        else {
            return;
        };
        let sent = frame.encode().and_then(|b| c.send(&b));
        if let Err(e) = sent {
            serial_println!("omega: peer: an outcome could not be sent: {e}");
        }
        self.flush(ch);
    }

    /// What the agents' loop has to do: outcomes and inbound messages. Expires messages
    /// past [`OUTCOME_MS`] and ends every message out once the session is over.
    pub fn take_notes(&mut self, now_ms: u64) -> Vec<Note> {
        if matches!(self.state, State::Off | State::Ended) && !self.msgs.idle() {
            self.msgs.fail_all("the peer session ended");
        }
        let expired = |o: &Out| o.deadline <= now_ms;
        let late: Vec<u32> = self
            .msgs
            .in_flight
            .iter()
            .filter(|(_, o)| expired(o))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(o) = self.msgs.in_flight.remove(&id) {
                let why = format!("no outcome within {} s", OUTCOME_MS / 1000);
                self.msgs.notes.push_back(unreachable(o, &why));
            }
        }
        let (late, keep): (Vec<_>, Vec<_>) = core::mem::take(&mut self.msgs.waiting)
            .into_iter()
            .partition(|(_, o)| expired(o));
        self.msgs.waiting = keep;
        for (_, o) in late {
            let why = format!("no peer session within {} s", OUTCOME_MS / 1000);
            self.msgs.notes.push_back(unreachable(o, &why));
        }
        self.msgs.notes.drain(..).collect()
    }
}

impl Note {
    /// The answer a parked sender gets for an [`Note::Outcome`]; `node` prefixes the rule
    /// of a refusal (`node-b:no_vault`).
    pub fn answer(delivered: Option<bool>, to: &str, reason: &str) -> Answer {
        let node = to.split_once('/').map_or(to, |(n, _)| n);
        match delivered {
            Some(true) => Answer::Sent,
            Some(false) => Answer::Denied(format!("{node}:{reason}")),
            None => Answer::Unavailable(format!("{node} unreachable: {reason}")),
        }
    }
}

impl core::fmt::Debug for Note {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Note::Outcome { to, delivered, .. } => write!(f, "outcome({to}, {delivered:?})"),
            Note::Inbound { from, to, .. } => write!(f, "inbound({from} -> {to})"),
        }
    }
}
