//! Operator confirmation and the re-list wait: the monitor's half of a `confirm` decision
//! (docs/tools.md, *Operator confirmation*), and how long tool calls wait for a re-listed
//! catalogue.
//!
//! ```text
//! gate: decision confirm (rule) → record ─▶ Host::confirm: ConfirmRequest{id = ticket} ─▶ host
//!   agent parked on the ticket          (waits ≤ CONFIRM_TIMEOUT_MS)
//! host ─▶ ConfirmAnswer{id, approve} ─▶ table (once, by id) ─▶ CONFIRMATION entry logged
//!   approved: tools/call (id = ticket, the pin decided on) │ otherwise: Answer::Refused
//! ```
//!
//! SECURITY: the host is untrusted, and an approval is only what the host says the
//! operator decided: confirmation is an operator control, not a guarantee against a
//! hostile host. Every answer is logged before the monitor acts on it, so a verifier sees
//! what was approved. Answers fail closed: one per waiting id; a duplicate, unknown or late
//! answer is refused (printed) and changes nothing; another contract version denies the
//! call; silence denies it after the timeout; a tool whose pin changed while the operator
//! thought is not called.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use omega_arch::serial_println;
use omega_kernel::channel::HostText;
use omega_provenance::entry::lifecycle;
use omega_runtime::{Answer, Backpressure, Confirm, Egress, EgressReply, Ticket};
use omega_tool_protocol::confirm::{Confirmations, Verdict};
use omega_wire::msg::{self, ControlMsg, confirm as contract};

use super::Host;
use crate::monitor::DigestPrefix;
use crate::services::{control, report_send_failure, worth_reporting};

/// How long a call waits for the operator.
pub(super) const CONFIRM_TIMEOUT_MS: u64 = omega_tool_protocol::confirm::DEFAULT_TIMEOUT_MS;

/// How long tool calls wait for a re-list after the gateway announced a change; then they
/// are decided on the catalogue as it is (empty: denied `target-pin`).
const RELIST_WAIT_MS: u64 = 30_000;

/// A call waiting for the operator: what carrying it out needs.
pub(super) struct Held {
    agent: String,
    tool: String,
    arguments: String,
    /// The catalogue pin the policy decided on.
    pin: [u8; 32],
    /// The content digest of the `confirm` record.
    content: [u8; 32],
}

/// The confirmation state of the agents' host.
pub(super) struct Confirming {
    table: Confirmations<Held>,
    /// Settled calls whose answer is not logged yet (the log's outbox was full).
    settled: VecDeque<(Ticket, Held, Verdict)>,
    /// Answers refused so far (reported: first 20, then every 1000th).
    refused: u64,
    /// Since when tool calls wait for a re-list (a change was announced), if they do.
    relist_since: Option<u64>,
    /// Parked calls should be retried (the re-list is in, failed, or took too long).
    retry: bool,
    /// A call waiting for this re-list was reported on the console.
    relist_reported: bool,
}

impl Confirming {
    pub(super) fn new() -> Self {
        Confirming {
            table: Confirmations::new(CONFIRM_TIMEOUT_MS),
            settled: VecDeque::new(),
            refused: 0,
            relist_since: None,
            retry: false,
            relist_reported: false,
        }
    }
}

/// What one loop turn leaves for the runtime.
pub(super) struct Turn {
    /// Answers for parked calls (a denial, or a call approved but not sendable).
    pub answers: Vec<(Ticket, Answer)>,
    /// Retry the calls parked on the log or the catalogue (`records_drained`).
    pub retry: bool,
}

impl Host<'_> {
    /// A `confirm` decision: the request goes to the host and the agent waits on a ticket.
    pub(super) fn ask_operator(&mut self, call: &Confirm<'_>) -> EgressReply {
        let Egress::Tool { tool, arguments } = call.egress else {
            // Inference waits for no operator yet: refused as before (the record says
            // `confirm`; nothing left).
            return EgressReply::Answer(Answer::Unavailable(
                "operator confirmation covers tool calls only".into(),
            ));
        };
        let Some(pin) = self.tools.entry(tool) else {
            return EgressReply::Answer(Answer::Unavailable("the tool is not listed".into()));
        };
        let ticket = self.next_ticket;
        let rule = call.rule.to_string();
        let (summary, cut) = contract::cut(arguments, contract::MAX_SUMMARY - 3);
        let summary = if cut {
            format!("{summary}…")
        } else {
            summary.to_string()
        };
        let (rule_sent, _) = contract::cut(&rule, contract::MAX_NAME);
        let request = ControlMsg::ConfirmRequest {
            version: contract::VERSION,
            id: ticket,
            agent: call.agent,
            action: "tool",
            target: tool,
            rule: rule_sent,
            summary: &summary,
            content: call.content,
        };
        let held = Held {
            agent: call.agent.to_string(),
            tool: tool.to_string(),
            arguments: arguments.to_string(),
            pin,
            content: call.content,
        };
        let now = self.log.now_ms();
        if self.confirming.table.ask(ticket, now, held).is_err() {
            return EgressReply::Answer(Answer::Unavailable(
                "too many calls wait for the operator".into(),
            ));
        }
        if let Err(e) = control::try_send(&mut self.ch, &request) {
            report_send_failure("a confirmation request", &e);
            self.confirming.table.cancel(ticket);
            return EgressReply::Answer(Answer::Unavailable(
                "the confirmation request could not be sent".into(),
            ));
        }
        self.next_ticket += 1;
        serial_println!(
            "omega: confirm: agent {} calls {} (rule {}): waiting for the operator (request {ticket}, content {})",
            HostText(call.agent),
            HostText(tool),
            HostText(&rule),
            DigestPrefix(&call.content)
        );
        EgressReply::Pending(ticket)
    }

    /// A `ConfirmAnswer` (or any control message routed here): settles its call once, or
    /// is refused.
    pub(super) fn on_confirm_answer(&mut self, body: &[u8]) {
        let Ok(ControlMsg::ConfirmAnswer {
            version,
            id,
            approve,
        }) = msg::decode_exact::<ControlMsg<'_>>(body)
        else {
            return self.refuse_answer("not a confirmation answer");
        };
        match self.confirming.table.settle(id) {
            Ok(held) => {
                let verdict = if version != contract::VERSION {
                    Verdict::BadVersion
                } else if approve {
                    Verdict::Approved
                } else {
                    Verdict::Denied
                };
                self.confirming.settled.push_back((id, held, verdict));
            }
            Err(_) => self.refuse_answer("no call waits for it (unknown, answered or timed out)"),
        }
    }

    fn refuse_answer(&mut self, why: &str) {
        let c = &mut self.confirming;
        c.refused += 1;
        if worth_reporting(c.refused) {
            serial_println!(
                "omega: confirm: refused an answer from the host ({} so far): {why}",
                c.refused
            );
        }
    }

    /// Once per loop turn: times out calls nobody answered, logs settled answers and acts
    /// on them, and ends the re-list wait when its time is up.
    pub(super) fn turn(&mut self) -> Turn {
        let now = self.log.now_ms();
        while let Some((id, held)) = self.confirming.table.expired(now) {
            self.confirming
                .settled
                .push_back((id, held, Verdict::Timeout));
        }
        let mut answers = Vec::new();
        while let Some((ticket, held, verdict)) = self.confirming.settled.pop_front() {
            // SECURITY: the answer is in the log before anything is carried out; with the
            // outbox full it waits (and so does the agent).
            if self.log_confirmation(&held, verdict).is_err() {
                self.confirming.settled.push_front((ticket, held, verdict));
                break;
            }
            serial_println!(
                "omega: confirm: request {ticket} ({} calls {}): {}",
                HostText(&held.agent),
                HostText(&held.tool),
                verdict.name()
            );
            if let Some(answer) = self.carry_out(ticket, &held, verdict) {
                answers.push((ticket, answer));
            }
        }
        if let Some(since) = self.confirming.relist_since
            && now.saturating_sub(since) >= RELIST_WAIT_MS
        {
            serial_println!(
                "omega: tools: no re-list within {RELIST_WAIT_MS} ms; waiting calls are decided on the catalogue as it is"
            );
            self.relist_done();
        }
        Turn {
            answers,
            retry: core::mem::take(&mut self.confirming.retry),
        }
    }

    fn log_confirmation(&mut self, held: &Held, verdict: Verdict) -> Result<(), Backpressure> {
        let agent = self.agent_id(&held.agent)?;
        let target = self.target_id(&held.tool)?;
        let decision = if verdict.approved() {
            omega_provenance::Decision::Allow
        } else {
            omega_provenance::Decision::Deny
        };
        let r = self.log.lifecycle_record(
            agent,
            lifecycle::CONFIRMATION,
            target,
            decision,
            Some(held.content),
            Some(verdict.name().as_bytes()),
        );
        self.log.try_append(&mut self.ch, &r)
    }

    /// Sends an approved call (under its ticket, with the pin decided on); `Some` answers
    /// the agent at once.
    fn carry_out(&mut self, ticket: Ticket, held: &Held, verdict: Verdict) -> Option<Answer> {
        if !verdict.approved() {
            return Some(Answer::Refused);
        }
        // SECURITY: the policy decided on this entry; if the tool changed while the
        // operator thought, the approval does not carry over to the new one.
        if self.tools.entry(&held.tool) != Some(held.pin) {
            return Some(Answer::Unavailable(
                "the tool changed while waiting for the operator".into(),
            ));
        }
        let line = match self.tools.call_request(ticket, &held.tool, &held.arguments) {
            Ok(line) => line,
            Err(e) => return Some(Answer::Unavailable(e.to_string())),
        };
        if let Err(e) = self.ch.send(omega_wire::Stream::Tools, &line) {
            report_send_failure("an approved tool call", &e);
            self.tools.cancel(ticket);
            return Some(Answer::Unavailable("sending on Tools failed".into()));
        }
        None
    }

    /// The gateway announced a change: tool calls wait for the re-list from now.
    pub(super) fn relist_started(&mut self) {
        if self.confirming.relist_since.is_none() {
            self.confirming.relist_since = Some(self.log.now_ms());
        }
    }

    /// The re-list is in, failed, or took too long: waiting calls are retried.
    pub(super) fn relist_done(&mut self) {
        self.confirming.relist_reported = false;
        if self.confirming.relist_since.take().is_some() {
            self.confirming.retry = true;
        }
    }

    /// Tool calls wait for the re-list now (reported once per re-list).
    pub(super) fn relisting(&mut self) -> bool {
        let c = &mut self.confirming;
        if c.relist_since.is_some() && !c.relist_reported {
            c.relist_reported = true;
            serial_println!("omega: tools: a tool call waits for the re-list");
        }
        c.relist_since.is_some()
    }
}
