//! Agents' messages across images (docs/fleet.md): the two gates a message to or from an
//! agent of another image (`node/agent`) passes, one in each monitor, each under its own
//! policy, with the same checks as a message between two local agents.
//!
//! * **Sending gate** ([`Runtime::send_remote`], on `send` to `node/agent`): the policy
//!   decides `send` to the remote agent as it decides any send (its `agent node/agent`
//!   declaration is the destination: its `cleared` labels are the flow check's, a rule's
//!   `declassify` applies), the decision is logged like a local send's, and only an allowed
//!   message leaves, through [`Monitor::egress`] ([`Egress::Message`]) with the labels it
//!   carries by name. The agent stays parked until the monitor answers: delivered
//!   ([`Answer::Sent`], the call returns as a local send does), refused by the other image's
//!   gate ([`Answer::Denied`], `Denied { rule: "node:rule" }`), or unreachable
//!   ([`Answer::Unavailable`]); the monitor bounds the wait.
//! * **Receiving gate** ([`Runtime::receive_remote`], for each message the peer channel
//!   delivers): the policy decides `send` from `node/agent` (with the module hash its own
//!   monitor names) to the local agent, the message's labels being the sender's context;
//!   labels this policy does not know refuse the message (fail closed). A delivered message
//!   gives the receiver those labels, less what the deciding rule declassifies, as a local
//!   one does. Nothing is logged here: the monitor logs the verdict (`PEER_MESSAGE`) before
//!   the receiver can run.

use alloc::string::String;
use alloc::vec::Vec;

use omega_agent_abi::{self as abi, HostError};
use omega_policy::{Action, Effect, LabelSet};
use wasmi::Val;

use crate::gate::{Outcome, name_ok};
use crate::host::HostCall;
use crate::monitor::{Egress, EgressReply, Monitor};
use crate::{Inbound, Runtime, Wait};

/// A message from an agent of another image, as the peer channel delivered it.
#[derive(Debug, Clone, Copy)]
pub struct RemoteMessage<'a> {
    /// `node/agent`. SECURITY: the caller builds it from the peer channel's authenticated
    /// node name and the agent name in the frame, never from the frame alone.
    pub from: &'a str,
    /// SHA-256 of the sender's module, as the sending monitor names it.
    pub module: &'a [u8; 32],
    /// The local agent it is for.
    pub to: &'a str,
    /// Labels it carries, by name (the sending policy's names).
    pub labels: &'a [&'a str],
    /// The postcard `Message`.
    pub message: &'a [u8],
}

/// The receiving gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteVerdict {
    /// Handed to the agent's inbox.
    pub delivered: bool,
    /// The rule that decided (`default-deny`, `flow:phi`, a rule's name), or the
    /// monitor's reason: `bad-message`, `label:<name>` (a label this policy does not
    /// know), `no-agent` (no such agent runs), `inbox-full`.
    pub rule: String,
}

impl RemoteVerdict {
    fn refused(rule: &str) -> Self {
        RemoteVerdict {
            delivered: false,
            rule: rule.into(),
        }
    }
}

impl<M: Monitor> Runtime<'_, M> {
    /// The sending gate, for a `send` whose target is `node/agent`; gives the call back
    /// when the target is local (or the request does not decode: the local path refuses it).
    pub(crate) fn send_remote(&mut self, id: usize, call: HostCall) -> Result<Outcome, HostCall> {
        let remote = abi::decode::<abi::SendRequest<'_>>(&call.args)
            .is_ok_and(|req| omega_policy::is_remote(req.to));
        if !remote {
            return Err(call);
        }
        let parsed = abi::decode::<abi::SendRequest<'_>>(&call.args)
            .ok()
            .filter(|req| name_ok(req.to) && name_ok(req.message.message_id))
            .map(|req| (String::from(req.to), crate::encode_owned(&req.message)));
        let Some((to, message)) = parsed else {
            return Ok(self.respond(id, &call, Err(HostError::BadRequest)));
        };
        if message.len() > abi::MAX_MESSAGE {
            let e = HostError::TooLarge {
                limit: abi::MAX_MESSAGE as u32,
            };
            return Ok(self.respond(id, &call, Err(e)));
        }
        let decision = match self.decide_as(id, Action::Send { to: &to }, &call.args, None) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(Outcome::Park(Wait::Record(call))),
            Err(e) => return Ok(self.respond(id, &call, Err(e.as_host()))),
        };
        // As for local sends: `confirm` waits for nobody and is refused under its rule.
        if decision.effect != Effect::Allow {
            let e = self.denied(decision.rule);
            return Ok(self.respond(id, &call, Err(e.as_host())));
        }
        let carried = self.policy.message_labels(&decision, self.labels(id));
        let names = label_names(self.policy.labels.as_slice(), carried);
        let Some(module) = self.agents.get(id).map(|a| a.checked.hash) else {
            return Ok(self.respond(id, &call, Err(HostError::BadRequest)));
        };
        let name = self.agent_name(id);
        let egress = Egress::Message {
            to: &to,
            module: &module,
            message: &message,
            labels: &names,
        };
        Ok(match self.monitor.egress(&name, egress, false) {
            EgressReply::Answer(answer) => Outcome::Return(Val::I32(self.answer(
                id,
                call.out_ptr,
                call.out_cap,
                &answer,
            ))),
            EgressReply::Pending(ticket) => Outcome::Park(Wait::Egress {
                ticket,
                out_ptr: call.out_ptr,
                out_cap: call.out_cap,
            }),
        })
    }

    /// The receiving gate: decides `m` under this image's policy and, if allowed, queues it
    /// for the local agent (waking it if it waits in `recv`).
    pub fn receive_remote(&mut self, m: &RemoteMessage<'_>) -> RemoteVerdict {
        let policy = self.policy;
        // SECURITY: only `node/agent` senders and local receivers: a frame cannot make a
        // remote message pass for a local agent's, nor route one on to a third image.
        if !omega_policy::is_remote(m.from)
            || omega_policy::is_remote(m.to)
            || !name_ok(m.from)
            || !name_ok(m.to)
            || m.message.len() > abi::MAX_MESSAGE
            || abi::decode::<abi::Message<'_>>(m.message).is_err()
        {
            return RemoteVerdict::refused("bad-message");
        }
        let mut carried: LabelSet = 0;
        for name in m.labels {
            match policy.labels.iter().position(|l| l == name) {
                Some(bit) if bit < 64 => carried |= 1u64 << bit,
                _ => return RemoteVerdict::refused(&alloc::format!("label:{name}")),
            }
        }
        let to = String::from(self.policy_name_of(m.to));
        let req = omega_policy::Request {
            agent: m.from,
            agent_hash: Some(m.module),
            action: Action::Send { to: &to },
        };
        // A remote sender's context is the labels it carries; its counts are this image's
        // (SECURITY: a peer whose own policy sends without limit still meets this one's
        // `limit`s, per sender `node/agent`).
        let secs = self.monitor.now_ms() / 1000;
        let mut fresh = omega_policy::Session::new();
        let session = self.remote_sessions.get_mut(m.from).unwrap_or(&mut fresh);
        let state = omega_policy::State {
            labels: carried,
            counts: session.state(policy, secs).counts,
        };
        let decision = policy.evaluate(&req, &state);
        let rule = alloc::format!("{}", policy.rule_name(decision.rule));
        // As for local sends: only `allow` delivers.
        if decision.effect != Effect::Allow {
            return RemoteVerdict::refused(&rule);
        }
        let Some(receiver) = self.find_live(m.to) else {
            return RemoteVerdict::refused("no-agent");
        };
        let labels = policy.message_labels(&decision, carried);
        let Some(r) = self.agents.get_mut(receiver) else {
            return RemoteVerdict::refused("no-agent");
        };
        if r.inbox.len() >= abi::MAX_INBOX {
            return RemoteVerdict::refused("inbox-full");
        }
        // Counted once delivered; only allowed (so declared, pinned) senders get a session.
        self.remote_sessions
            .entry(String::from(m.from))
            .or_default()
            .record(policy, &req, &decision, secs);
        r.inbox.push_back(Inbound {
            from: receiver,
            remote: Some(String::from(m.from)),
            labels,
            message: m.message.to_vec(),
        });
        self.wake_receiver(receiver);
        RemoteVerdict {
            delivered: true,
            rule,
        }
    }
}

/// The names of the labels in `set`, in declaration order.
fn label_names<'p>(labels: &[&'p str], set: LabelSet) -> Vec<&'p str> {
    labels
        .iter()
        .enumerate()
        .filter(|(bit, _)| *bit < 64 && set & (1u64 << bit) != 0)
        .map(|(_, l)| *l)
        .collect()
}
