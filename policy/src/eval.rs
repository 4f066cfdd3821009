//! The decision procedure. No allocation, no panics, no recursion.

use crate::LabelSet;
pub use crate::format::Effect;
use crate::format::{Constraint, Limit, Lit, Op, Policy, Rule, RuleAction, Subject};

/// A value in a request (a tool argument, the token budget, a read path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Not present.
    Absent,
    Int(i64),
    Str(&'a str),
    Bool(bool),
    /// Present but not an integer, string or boolean (null, array, object, fraction).
    Other,
}

/// A tool argument, flattened: nested objects give dotted paths (`patient.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg<'a> {
    pub path: &'a str,
    pub value: Value<'a>,
}

/// What the agent wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// LLM inference on `model`; `proxy` is the identity the proxy attested;
    /// `gpu_verified`: the proxy's confidential-GPU evidence verified against this model's
    /// GPU requirement (reference measurements) for this session.
    Infer {
        model: &'a str,
        proxy: Option<&'a [u8; 32]>,
        max_tokens: Value<'a>,
        gpu_verified: bool,
    },
    /// MCP tool call; `entry` is the SHA-256 of the tool's current `tools/list` entry.
    Call {
        tool: &'a str,
        entry: Option<&'a [u8; 32]>,
        args: &'a [Arg<'a>],
    },
    /// Read from a data source.
    Read { source: &'a str, path: Value<'a> },
    /// Message to another agent.
    Send { to: &'a str },
}

impl Action<'_> {
    /// The action's kind.
    pub fn kind(&self) -> RuleAction {
        match self {
            Action::Infer { .. } => RuleAction::Infer,
            Action::Call { .. } => RuleAction::Call,
            Action::Read { .. } => RuleAction::Read,
            Action::Send { .. } => RuleAction::Send,
        }
    }
}

/// One request from one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub agent: &'a str,
    /// SHA-256 of the agent's Wasm module as loaded.
    pub agent_hash: Option<&'a [u8; 32]>,
    pub action: Action<'a>,
}

/// The agent's session state the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct State<'s> {
    /// Labels the agent's context carries.
    pub labels: LabelSet,
    /// Allowed actions so far in each limit's current window, by limit index (missing = 0).
    pub counts: &'s [u32],
}

/// Which rule made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRef {
    /// Unknown agent, or its module hash differs from the pinned one: `agent-pin`.
    AgentPin,
    /// The tool, model, source or peer is not declared: `unknown-target`.
    UnknownTarget,
    /// The tool's entry hash or the model's proxy identity differs from the pin: `target-pin`.
    TargetPin,
    /// A user rule, by index.
    Rule(u16),
    /// A rate limit, by index.
    Limit(u16),
    /// The destination is not cleared for this label: `flow:<label>`.
    Flow(u8),
    /// Nothing allowed it: `default-deny`.
    DefaultDeny,
    /// The model requires confidential-GPU evidence and the proxy's did not verify for it:
    /// `gpu-evidence`.
    GpuEvidence,
}

/// A decision: the effect, the rule, and the labels the context carries if it is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub effect: Effect,
    pub rule: RuleRef,
    pub labels: LabelSet,
}

/// A rule's name for logs: a user rule or limit name, or a built-in one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleName<'a> {
    Builtin(&'static str),
    Named(&'a str),
    Flow(&'a str),
}

impl core::fmt::Display for RuleName<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RuleName::Builtin(s) | RuleName::Named(s) => f.write_str(s),
            RuleName::Flow(l) => write!(f, "flow:{l}"),
        }
    }
}

fn mask(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

impl<'p> Policy<'p> {
    /// The name of the rule behind a decision.
    pub fn rule_name(&self, rule: RuleRef) -> RuleName<'p> {
        match rule {
            RuleRef::AgentPin => RuleName::Builtin("agent-pin"),
            RuleRef::UnknownTarget => RuleName::Builtin("unknown-target"),
            RuleRef::TargetPin => RuleName::Builtin("target-pin"),
            RuleRef::DefaultDeny => RuleName::Builtin("default-deny"),
            RuleRef::GpuEvidence => RuleName::Builtin("gpu-evidence"),
            RuleRef::Rule(i) => match self.rules.get(usize::from(i)) {
                Some(r) => RuleName::Named(r.name),
                None => RuleName::Builtin("?"),
            },
            RuleRef::Limit(i) => match self.limits.get(usize::from(i)) {
                Some(l) => RuleName::Named(l.name),
                None => RuleName::Builtin("?"),
            },
            RuleRef::Flow(l) => match self.labels.get(usize::from(l)) {
                Some(name) => RuleName::Flow(name),
                None => RuleName::Builtin("?"),
            },
        }
    }

    /// The labels a message carries when a `send` decided by `decision` is delivered: the
    /// sender's context minus what the deciding rule declassifies. Give them to the
    /// receiver's [`crate::Session::receive`].
    pub fn message_labels(&self, decision: &Decision, sender_ctx: LabelSet) -> LabelSet {
        let declassified = match decision.rule {
            RuleRef::Rule(i) => self.rules.get(usize::from(i)).map_or(0, |r| r.declassify),
            _ => 0,
        };
        sender_ctx & mask(self.labels.len()) & !declassified
    }

    /// Whether a rate limit counts this request (agent, action kind and target match).
    pub fn limit_applies(&self, limit: &Limit<'_>, req: &Request<'_>) -> bool {
        let Some(agent_ix) = self.agents.iter().position(|a| a.name == req.agent) else {
            return false;
        };
        let target_ix = match req.action {
            Action::Infer { model, .. } => self.models.iter().position(|m| m.name == model),
            Action::Call { tool, .. } => self.tools.iter().position(|t| t.name == tool),
            Action::Read { source, .. } => self.sources.iter().position(|s| s.name == source),
            Action::Send { to } => self.agents.iter().position(|a| a.name == to),
        };
        let Some(target_ix) = target_ix else {
            return false;
        };
        limit.action == req.action.kind()
            && limit.target.is_none_or(|t| usize::from(t) == target_ix)
            && limit
                .agents
                .is_none_or(|a| a & (1u64 << (agent_ix & 63)) != 0)
    }

    /// Decides one request. See `docs/policy.md` for the order of the checks.
    pub fn evaluate(&self, req: &Request<'_>, state: &State<'_>) -> Decision {
        let ctx = state.labels & mask(self.labels.len());
        let deny = |rule| Decision {
            effect: Effect::Deny,
            rule,
            labels: ctx,
        };

        // 1. The agent is declared and runs the pinned module.
        let Some(agent_ix) = self.agents.iter().position(|a| a.name == req.agent) else {
            return deny(RuleRef::AgentPin);
        };
        let agent_bit = 1u64 << (agent_ix & 63);
        match (req.agent_hash, self.agents.get(agent_ix)) {
            (Some(h), Some(a)) if *h == a.hash => {}
            _ => return deny(RuleRef::AgentPin),
        }

        // 2. The target is declared; 3. its pin matches (and a model's GPU requirement).
        let kind = req.action.kind();
        let (target_ix, cleared, acquired) = match req.action {
            Action::Infer {
                model,
                proxy,
                gpu_verified,
                ..
            } => {
                let Some(i) = self.models.iter().position(|m| m.name == model) else {
                    return deny(RuleRef::UnknownTarget);
                };
                let Some(m) = self.models.get(i) else {
                    return deny(RuleRef::UnknownTarget);
                };
                if proxy != Some(&m.hash) {
                    return deny(RuleRef::TargetPin);
                }
                // SECURITY: the pinned identity only says what the proxy claims about its
                // GPU; a model that requires GPU evidence needs the monitor's word that the
                // evidence verified against this model's reference values.
                if !gpu_verified && self.gpu_requirement(i).is_some() {
                    return deny(RuleRef::GpuEvidence);
                }
                (i, Some(m.cleared), m.result)
            }
            Action::Call { tool, entry, .. } => {
                let Some(i) = self.tools.iter().position(|t| t.name == tool) else {
                    return deny(RuleRef::UnknownTarget);
                };
                let Some(t) = self.tools.get(i) else {
                    return deny(RuleRef::UnknownTarget);
                };
                if entry != Some(&t.hash) {
                    return deny(RuleRef::TargetPin);
                }
                (i, Some(t.cleared), t.result)
            }
            Action::Read { source, .. } => {
                let Some(i) = self.sources.iter().position(|s| s.name == source) else {
                    return deny(RuleRef::UnknownTarget);
                };
                let Some(s) = self.sources.get(i) else {
                    return deny(RuleRef::UnknownTarget);
                };
                (i, None, s.labels)
            }
            Action::Send { to } => {
                let Some(i) = self.agents.iter().position(|a| a.name == to) else {
                    return deny(RuleRef::UnknownTarget);
                };
                let Some(a) = self.agents.get(i) else {
                    return deny(RuleRef::UnknownTarget);
                };
                (i, Some(a.cleared), 0)
            }
        };
        let scope = |action: RuleAction, target: Option<u16>, agents: Option<u64>| {
            action == kind
                && target.is_none_or(|t| usize::from(t) == target_ix)
                && agents.is_none_or(|a| a & agent_bit != 0)
        };
        let matches = |r: &Rule<'_>| {
            scope(r.action, r.target, r.agents)
                && r.constraints
                    .iter()
                    .all(|c| constraint_holds(c, &req.action))
        };

        // 4. Deny rules, in source order.
        for (i, r) in self.rules.iter().enumerate() {
            if r.effect == Effect::Deny && matches(r) {
                return deny(RuleRef::Rule(i as u16));
            }
        }
        // 5. Rate limits, in source order.
        for (i, l) in self.limits.iter().enumerate() {
            let used = state.counts.get(i).copied().unwrap_or(0);
            if scope(l.action, l.target, l.agents) && used >= l.max {
                return deny(RuleRef::Limit(i as u16));
            }
        }
        // 6. The first allow or confirm rule that matches.
        let Some((rule_ix, rule)) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.effect != Effect::Deny && matches(r))
        else {
            return deny(RuleRef::DefaultDeny);
        };
        // 7. Information flow on egress.
        if let Some(cleared) = cleared {
            let blocked = ctx & !(cleared | rule.declassify);
            if blocked != 0 {
                return deny(RuleRef::Flow(blocked.trailing_zeros() as u8));
            }
        }
        Decision {
            effect: rule.effect,
            rule: RuleRef::Rule(rule_ix as u16),
            labels: ctx | acquired,
        }
    }
}

fn constraint_holds(c: &Constraint<'_>, action: &Action<'_>) -> bool {
    let value = match (&c.subject, action) {
        (Subject::Arg(path), Action::Call { args, .. }) => {
            match args.iter().find(|a| a.path == *path) {
                Some(a) => a.value,
                None => Value::Absent,
            }
        }
        (Subject::MaxTokens, Action::Infer { max_tokens, .. }) => *max_tokens,
        (Subject::Path, Action::Read { path, .. }) => *path,
        _ => Value::Absent,
    };
    match (value, c.op, &c.value) {
        (Value::Int(v), op, Lit::Int(k)) => match op {
            Op::Eq => v == *k,
            Op::Ne => v != *k,
            Op::Lt => v < *k,
            Op::Le => v <= *k,
            Op::Gt => v > *k,
            Op::Ge => v >= *k,
            Op::Prefix | Op::In => false,
        },
        (Value::Str(v), op, Lit::Str(k)) => match op {
            Op::Eq => v == *k,
            Op::Ne => v != *k,
            Op::Prefix => v.starts_with(k),
            _ => false,
        },
        (Value::Bool(v), Op::Eq, Lit::Bool(k)) => v == *k,
        (Value::Bool(v), Op::Ne, Lit::Bool(k)) => v != *k,
        (Value::Int(v), Op::In, Lit::Ints(set)) => set.contains(&v),
        (Value::Str(v), Op::In, Lit::Strs(set)) => set.contains(&v),
        _ => false,
    }
}
