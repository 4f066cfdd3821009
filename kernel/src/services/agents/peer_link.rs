//! The agents' side of the peer link (docs/fleet.md): allowed sends to `node/agent` go to
//! the peer service, outcomes come back to the parked senders, inbound messages pass the
//! receiving gate; every one of them is logged at this end (`PEER_MESSAGE`, 17): agent =
//! the local agent, target = the remote `node/agent`, decision = the receiving gate's
//! (allow, deny; error: unreachable), content = SHA-256 of the `Deliver` frame (the same
//! in both logs), name = the rule that decided, or why it is unreachable.

use alloc::string::String;
use alloc::vec::Vec;
use core::convert::Infallible;

use omega_arch::serial_println;
use omega_provenance::Decision;
use omega_provenance::entry::lifecycle;
use omega_runtime::{Answer, EgressReply, RemoteMessage, Runtime, Ticket};

use super::Host;
use crate::services::peer::{Note, PeerSend, PeerService};

/// An allowed message for another image, until the loop hands it to the peer service.
pub(super) struct PeerOut {
    ticket: Ticket,
    agent: String,
    module: [u8; 32],
    to: String,
    message: Vec<u8>,
    labels: Vec<String>,
}

impl Host<'_> {
    /// `Egress::Message`: parked until the outcome (or answered at once without a link).
    pub(super) fn send_to_peer(
        &mut self,
        agent: &str,
        to: &str,
        module: &[u8; 32],
        message: &[u8],
        labels: &[&str],
    ) -> EgressReply {
        if !self.peer_on {
            return EgressReply::Answer(Answer::Unavailable("no peer channel configured".into()));
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.peer_out.push(PeerOut {
            ticket,
            agent: agent.into(),
            module: *module,
            to: to.into(),
            message: message.to_vec(),
            labels: labels.iter().map(|l| String::from(*l)).collect(),
        });
        EgressReply::Pending(ticket)
    }

    /// One `PEER_MESSAGE` entry (see the module doc).
    fn log_peer_message(
        &mut self,
        agent: &str,
        remote: &str,
        decision: Decision,
        digest: [u8; 32],
        rule: &str,
    ) {
        let Ok(agent) = self.intern_agent(agent, |log, ch, r| {
            log.append(ch, r);
            Ok::<(), Infallible>(())
        });
        // The sending gate's record defined the remote name already; an inbound one is
        // defined here (0 only when the outbox is full at this moment).
        let target = self.target_id(remote).unwrap_or(0);
        let r = self.log.lifecycle_record(
            agent,
            lifecycle::PEER_MESSAGE,
            target,
            decision,
            Some(digest),
            Some(super::super::peer::entry_name(rule)),
        );
        self.log.append(&mut self.ch, &r);
    }
}

/// One turn while the agents run: sends out, outcomes back, inbound messages through the
/// receiving gate.
pub(super) fn turn(rt: &mut Runtime<'static, &mut Host<'_>>, peer: &mut PeerService) {
    let now = rt.monitor_mut().log.now_ms();
    for out in core::mem::take(&mut rt.monitor_mut().peer_out) {
        let h = rt.monitor_mut();
        let send = PeerSend {
            ticket: out.ticket,
            agent: &out.agent,
            module: &out.module,
            to: &out.to,
            message: &out.message,
            labels: &out.labels,
        };
        if let Err(answer) = peer.submit(&mut h.ch, now, &send) {
            let why = match &answer {
                Answer::Unavailable(why) => why.as_str(),
                _ => "refused",
            };
            h.log_peer_message(&out.agent, &out.to, Decision::Error, [0; 32], why);
            rt.deliver(out.ticket, &answer);
        }
    }
    for note in peer.take_notes(now) {
        match note {
            Note::Outcome {
                ticket,
                agent,
                to,
                digest,
                delivered,
                reason,
            } => {
                let decision = match delivered {
                    Some(true) => Decision::Allow,
                    Some(false) => Decision::Deny,
                    None => Decision::Error,
                };
                serial_println!(
                    "omega: peer: {agent} -> {to}: {decision:?} ({})",
                    omega_kernel::channel::HostText(&reason)
                );
                rt.monitor_mut()
                    .log_peer_message(&agent, &to, decision, digest, &reason);
                rt.deliver(ticket, &Note::answer(delivered, &to, &reason));
            }
            Note::Inbound {
                id,
                from,
                module,
                to,
                labels,
                message,
                digest,
            } => {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                let verdict = rt.receive_remote(&RemoteMessage {
                    from: &from,
                    module: &module,
                    to: &to,
                    labels: &labels,
                    message: &message,
                });
                let decision = if verdict.delivered {
                    Decision::Allow
                } else {
                    Decision::Deny
                };
                serial_println!(
                    "omega: peer: {from} -> {to}: {decision:?} ({})",
                    verdict.rule
                );
                let h = rt.monitor_mut();
                h.log_peer_message(&to, &from, decision, digest, &verdict.rule);
                peer.reply(&mut h.ch, id, verdict.delivered, &verdict.rule);
            }
        }
    }
}

/// Once the agents are done (or none ran): inbound messages are refused (`no-agent`),
/// logged like any verdict.
pub(super) fn refuse_all(h: &mut Host<'_>, peer: &mut PeerService) {
    let now = h.log.now_ms();
    for note in peer.take_notes(now) {
        if let Note::Inbound {
            id,
            from,
            to,
            digest,
            ..
        } = note
        {
            h.log_peer_message(&to, &from, Decision::Deny, digest, "no-agent");
            peer.reply(&mut h.ch, id, false, "no-agent");
        }
    }
}
