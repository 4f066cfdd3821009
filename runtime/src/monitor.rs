//! What the runtime needs from the monitor: time, entropy, the provenance log, the way out
//! (inference proxy, tool gateway), data sources and the operator's view of agent events.
//! The kernel implements [`Monitor`]; tests implement it with vectors and counters.

use alloc::string::String;
use alloc::vec::Vec;

use omega_agent_abi::Level;
use omega_policy::{LabelSet, RuleName};
use omega_provenance::{Action, Decision};

/// Identifies an egress the monitor answers later with [`crate::Runtime::deliver`].
pub type Ticket = u64;

/// One provenance record, with names (the monitor interns them into log ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// A policy decision on a host call, appended before anything leaves the agent.
    Decision {
        agent: &'a str,
        action: Action,
        /// Model, tool, data source or receiving agent.
        target: &'a str,
        decision: Decision,
        rule: RuleName<'a>,
        /// The agent's context labels after the action (the policy decision's labels).
        labels: LabelSet,
        /// `omega_provenance::entry::content_digest(request, b"")` over the request bytes.
        content: [u8; 32],
    },
    /// The agent started (first start and every restart).
    Start {
        agent: &'a str,
        module_hash: [u8; 32],
    },
    /// The agent ended: exited, trapped, or was stopped.
    Exit { agent: &'a str },
}

/// The provenance outbox is full: nothing was recorded and the call must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backpressure;

/// An allowed call that leaves the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress<'a> {
    /// A prompt to a model through the inference proxy.
    Infer {
        model: &'a str,
        prompt: &'a str,
        max_tokens: u32,
        /// The agent asked for the answer as it is generated (`infer_stream`): the monitor
        /// delivers [`Answer::InferPart`]s by ticket (or one whole [`Answer::Infer`]).
        stream: bool,
    },
    /// An MCP tool call through the tool gateway; `arguments` is a JSON object text.
    Tool { tool: &'a str, arguments: &'a str },
    /// A message to an agent of another image (`node/agent`, docs/fleet.md), allowed by
    /// this image's policy: the monitor sends it over its peer channel and answers
    /// [`Answer::Sent`], [`Answer::Denied`] (the other image's gate) or
    /// [`Answer::Unavailable`] (no session, it broke, or no outcome in time).
    Message {
        /// `node/agent`.
        to: &'a str,
        /// SHA-256 of the sending agent's module (the receiving policy pins it).
        module: &'a [u8; 32],
        /// The postcard `Message` as the agent sent it.
        message: &'a [u8],
        /// The labels it carries, by name (the sender's context minus what the deciding
        /// rule declassifies).
        labels: &'a [&'a str],
    },
}

/// An egress the policy decided `confirm`: it waits for the operator
/// ([`Monitor::confirm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirm<'a> {
    pub agent: &'a str,
    pub egress: Egress<'a>,
    /// The rule that asked for confirmation.
    pub rule: RuleName<'a>,
    /// The content digest of the `confirm` decision record (already appended).
    pub content: [u8; 32],
}

/// How the monitor takes an egress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressReply {
    /// Answered at once.
    Answer(Answer),
    /// Sent out; the answer comes later through [`crate::Runtime::deliver`] with this ticket.
    /// The agent is parked until then.
    Pending(Ticket),
}

/// The answer to an egress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Infer {
        text: String,
    },
    /// Part of a streamed answer: text that arrived; `end` (with the proxy's completion
    /// token count, if any) on the last part. Delivered any number of times per ticket.
    InferPart {
        text: String,
        end: Option<Option<u32>>,
    },
    Tool {
        is_error: bool,
        content: String,
    },
    /// The service does not exist yet or is not reachable (never a made-up answer).
    Unavailable(String),
    /// The service failed.
    Failed(String),
    /// The operator refused a `confirm` action.
    Refused,
    /// A message to another image ([`Egress::Message`]) was delivered there.
    Sent,
    /// A message to another image was refused by that image's gate, with this rule
    /// (`node:rule`).
    Denied(String),
}

/// Why a data read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    /// No such item in the source.
    NotFound,
    /// The source is declared by the policy but not shipped in the bundle.
    Unavailable,
}

/// Something happened to an agent that the operator should see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentEvent<'a> {
    Started,
    /// `run` returned (code 0) or the agent called `exit(code)`.
    Exited {
        code: i32,
    },
    /// The agent trapped or broke a rule of the sandbox and was stopped.
    Trapped {
        reason: &'a str,
    },
    /// Restarted after a trap (attempt `n` of the manifest's maximum).
    Restarted {
        attempt: u32,
    },
}

/// The monitor's services, as the runtime sees them.
pub trait Monitor {
    /// Monotonic time in milliseconds since the monitor started.
    fn now_ms(&mut self) -> u64;
    /// Fills `buf` from the monitor's entropy source.
    fn random(&mut self, buf: &mut [u8]);
    /// Appends to the provenance log. `Err(Backpressure)` means nothing was recorded; the
    /// runtime parks the call and retries after [`crate::Runtime::records_drained`].
    fn append_record(&mut self, record: &Record<'_>) -> Result<(), Backpressure>;
    /// Identity the policy pins for a target: the inference proxy's attested identity for a
    /// model, the SHA-256 of the tool's current `tools/list` entry for a tool.
    fn model_identity(&mut self, model: &str) -> Option<[u8; 32]>;
    fn tool_entry(&mut self, tool: &str) -> Option<[u8; 32]>;
    /// Whether the inference proxy's confidential-GPU evidence verified against `model`'s
    /// GPU requirement (its reference measurements) in the live session; the policy denies
    /// a model that requires GPU evidence without it (`gpu-evidence`). The default: never
    /// (a monitor that does not verify GPU evidence).
    fn model_gpu_verified(&mut self, _model: &str) -> bool {
        false
    }
    /// Checks a tool call's arguments (a JSON object) against the input schema of the
    /// tool's current entry, the one [`Monitor::tool_entry`] pins; `Err(why)` refuses the
    /// call as a bad request before the policy is asked. The default accepts everything (a
    /// monitor without a tool catalogue; its calls are denied by the pin check anyway).
    fn check_tool_arguments(
        &mut self,
        _tool: &str,
        _arguments: &serde_json::Value,
    ) -> Result<(), String> {
        Ok(())
    }
    /// Sends an allowed egress out. `confirm` is set when the policy's decision was
    /// `confirm`: the operator must approve before it leaves (or answer [`Answer::Refused`]).
    fn egress(&mut self, agent: &str, egress: Egress<'_>, confirm: bool) -> EgressReply;
    /// Puts an egress the policy decided `confirm` before the operator; the `confirm`
    /// record is in the log already. The answer comes later ([`EgressReply::Pending`]):
    /// the call goes out if approved, or the agent gets [`Answer::Refused`]. The default
    /// hands it to [`Monitor::egress`] with the flag set.
    fn confirm(&mut self, call: &Confirm<'_>) -> EgressReply {
        self.egress(call.agent, call.egress, true)
    }
    /// The tool catalogue is being listed again (after a change was announced): tool calls
    /// wait (parked like a call waiting for the log, retried after
    /// [`crate::Runtime::records_drained`]) instead of being decided on a catalogue that
    /// is about to change. The monitor bounds the wait. The default: never.
    fn tool_catalogue_stale(&mut self) -> bool {
        false
    }
    /// Reads up to `max_len` bytes at `offset` of item `path` of data source `source`;
    /// returns the whole item's length.
    fn read_data(
        &mut self,
        source: &str,
        path: &str,
        offset: u64,
        max_len: u32,
        out: &mut Vec<u8>,
    ) -> Result<u64, DataError>;
    /// A log line from an agent (only agents whose context carries no label may log).
    fn log(&mut self, agent: &str, level: Level, text: &str);
    /// An agent's lifecycle event, for the operator.
    fn event(&mut self, agent: &str, event: AgentEvent<'_>);
}
