//! Omega's compiled policy: the binary form and its `no_std` evaluator.
//!
//! The policy compiler (`policy-compiler`) turns the policy language into a [`Policy`] and
//! serialises it with [`encode`]; the monitor loads the bytes with [`decode`] (which checks the
//! header, the postcard body and every index, and never panics) and calls
//! [`Policy::evaluate`] for each external interaction of an agent. Evaluation does not
//! allocate: it borrows the request and a [`State`] (context labels and rate-limit counts),
//! and returns a [`Decision`] that names the rule which made it.
//!
//! [`Session`] keeps the per-agent state (labels, fixed-window counters) without allocating.
//!
//! The precedence of the checks is documented in `docs/policy.md` and implemented in
//! [`Policy::evaluate`]; the Rego emitted by the compiler follows the same order.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod eval;
mod format;
mod session;

pub use eval::{Action, Arg, Decision, Request, RuleName, RuleRef, State, Value};
pub use format::{
    Agent, Constraint, DecodeError, Effect, FORMAT_VERSION, FORMAT_VERSION_SECTIONS,
    GpuMeasurement, GpuRequirement, Limit, Lit, MAGIC, MAX_AGENTS, MAX_GPU_ALTERNATIVES,
    MAX_GPU_INDEX, MAX_GPU_MEASUREMENTS, MAX_GPU_VALUE, MAX_LABELS, MAX_LIMITS, Op, Policy, Rule,
    RuleAction, Section, Source, Subject, Target, decode, encode,
};
pub use session::Session;

/// A set of labels: bit `i` is the policy's label `i` (at most [`MAX_LABELS`]).
pub type LabelSet = u64;

/// Whether an agent name names an agent of another image: `node/agent` (docs/fleet.md).
/// Such an agent is declared like a local one (its hash: the module SHA-256 its own
/// monitor attests and sends along); it only ever sends to this image's agents (the
/// receiving gate) or receives from them (the sending gate), never runs here.
pub fn is_remote(agent: &str) -> bool {
    agent.contains('/')
}

/// Whether `node` may be the node of a remote agent: a peer channel's node name
/// (`omega_peer_channel::PeerName`) without dots: lowercase ASCII letters, digits, `-`, `_`.
pub fn remote_node_ok(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= 64
        && node
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
