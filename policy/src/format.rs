//! The binary form: `MAGIC` (4 bytes) ‖ version (u16, little endian) ‖ postcard([`Policy`]),
//! then, in version 2 only, postcard(`Vec<Section>`): the parts added after version 1, each
//! kind at most once, in the order of [`Section`]'s variants. A policy that uses none of them
//! is written as version 1, so the policies written before keep their bytes and identity.
//!
//! Strings are borrowed from the input bytes, so a decoded policy lives as long as its blob.
//! [`decode`] rejects trailing bytes, unknown versions, and any index, label bit or operator
//! that does not fit the rest of the policy, so the evaluator can trust what it reads.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::LabelSet;

/// First four bytes of every compiled policy.
pub const MAGIC: [u8; 4] = *b"OMPL";
/// Version of the binary form this crate reads and writes for a policy without [`Section`]s.
pub const FORMAT_VERSION: u16 = 1;
/// Version of the binary form with sections after the version-1 body (see the module docs).
pub const FORMAT_VERSION_SECTIONS: u16 = 2;
/// Most labels a policy may declare (they are bits of a `u64`).
pub const MAX_LABELS: usize = 64;
/// Most agents a policy may declare (rule agent sets are bits of a `u64`).
pub const MAX_AGENTS: usize = 64;
/// Most rate limits a policy may declare ([`crate::Session`] keeps a fixed array).
pub const MAX_LIMITS: usize = 64;
/// Most rules, tools, models and sources (each); keeps decode and evaluation bounded.
pub const MAX_ITEMS: usize = 4096;
/// Most constraints in one rule and most members in one `in [...]` set.
pub const MAX_CONSTRAINTS: usize = 256;
/// Most reference measurements one model's GPU requirement lists (an H100 reports 64 blocks).
pub const MAX_GPU_MEASUREMENTS: usize = 128;
/// Most allowed values for one measurement (an NVIDIA RIM's alternatives).
pub const MAX_GPU_ALTERNATIVES: usize = 16;
/// Longest measurement value in bytes (SHA-512; NVIDIA's are SHA-384, 48 bytes).
pub const MAX_GPU_VALUE: usize = 64;
/// Highest SPDM measurement block index (0 and 0xFF are not blocks).
pub const MAX_GPU_INDEX: u8 = 0xFE;

/// A compiled policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy<'a> {
    /// The policy's name (from `policy "name"`).
    pub name: &'a str,
    /// Label names; label `i` is bit `i` of a [`LabelSet`].
    #[serde(borrow, deserialize_with = "bounded::<_, _, MAX_LABELS>")]
    pub labels: Vec<&'a str>,
    /// Agents; index `i` is bit `i` of a rule's agent set.
    #[serde(borrow, deserialize_with = "bounded::<_, _, MAX_AGENTS>")]
    pub agents: Vec<Agent<'a>>,
    /// MCP tools, named `server.tool`.
    #[serde(borrow, deserialize_with = "bounded::<_, _, MAX_ITEMS>")]
    pub tools: Vec<Target<'a>>,
    /// Models behind the inference proxy.
    #[serde(borrow, deserialize_with = "bounded::<_, _, MAX_ITEMS>")]
    pub models: Vec<Target<'a>>,
    /// Data sources.
    #[serde(borrow, deserialize_with = "bounded::<_, _, MAX_ITEMS>")]
    pub sources: Vec<Source<'a>>,
    /// Rules in source order.
    #[serde(borrow, deserialize_with = "bounded::<_, _, MAX_ITEMS>")]
    pub rules: Vec<Rule<'a>>,
    /// Rate limits in source order.
    #[serde(borrow, deserialize_with = "bounded::<_, _, MAX_LIMITS>")]
    pub limits: Vec<Limit<'a>>,
    /// Models that require confidential-GPU evidence, by ascending model index (version 2,
    /// [`Section::Gpu`]; empty in version 1).
    #[serde(skip)]
    pub gpu: Vec<GpuRequirement<'a>>,
}

/// A model whose proxy must present NVIDIA confidential-computing GPU evidence that verifies
/// against these reference measurements (`model … { gpu { measurement … } }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuRequirement<'a> {
    /// Index into [`Policy::models`].
    pub model: u16,
    /// At least one, by strictly ascending SPDM index.
    #[serde(borrow, deserialize_with = "bounded::<_, _, MAX_GPU_MEASUREMENTS>")]
    pub reference: Vec<GpuMeasurement<'a>>,
}

/// One reference measurement: SPDM measurement block `index` (1-based; NVIDIA's RIM index
/// `i` is block `i + 1`) must equal one of `allowed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuMeasurement<'a> {
    pub index: u8,
    /// 1 to [`MAX_GPU_ALTERNATIVES`] values of 1 to [`MAX_GPU_VALUE`] bytes.
    #[serde(borrow, deserialize_with = "bounded::<_, _, MAX_GPU_ALTERNATIVES>")]
    pub allowed: Vec<&'a [u8]>,
}

/// A part of the binary form added after version 1 (appended in version 2). New kinds go at
/// the end; each kind appears at most once, in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Section<'a> {
    /// [`Policy::gpu`], non-empty.
    #[serde(borrow)]
    Gpu(#[serde(deserialize_with = "bounded::<_, _, MAX_ITEMS>")] Vec<GpuRequirement<'a>>),
}

/// Most sections in a version-2 body (one per [`Section`] kind).
const MAX_SECTIONS: usize = 8;

/// An agent: name, Wasm module hash, and the labels messages *to* it may carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent<'a> {
    pub name: &'a str,
    pub hash: [u8; 32],
    pub cleared: LabelSet,
}

/// A tool or a model: name, pinned identity hash, clearance, labels its results carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target<'a> {
    pub name: &'a str,
    /// Tools: SHA-256 of the canonical `tools/list` entry. Models: the proxy identity.
    pub hash: [u8; 32],
    pub cleared: LabelSet,
    pub result: LabelSet,
}

/// A data source and the labels data read from it carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source<'a> {
    pub name: &'a str,
    pub labels: LabelSet,
}

/// What a rule decides when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
    Confirm,
}

/// The kind of action a rule or limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleAction {
    Infer,
    Call,
    Read,
    Send,
}

/// A rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule<'a> {
    pub name: &'a str,
    pub effect: Effect,
    pub action: RuleAction,
    /// Index into tools / models / sources / agents (by `action`); `None` matches any.
    pub target: Option<u16>,
    /// Agents the rule applies to; `None` means every agent.
    pub agents: Option<u64>,
    /// All must hold.
    #[serde(borrow, deserialize_with = "bounded::<_, _, MAX_CONSTRAINTS>")]
    pub constraints: Vec<Constraint<'a>>,
    /// Labels this rule lets out to a destination not cleared for them.
    pub declassify: LabelSet,
}

/// A rate limit: at most `max` allowed matching actions per `window_secs` (fixed window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit<'a> {
    pub name: &'a str,
    pub action: RuleAction,
    pub target: Option<u16>,
    pub agents: Option<u64>,
    pub max: u32,
    pub window_secs: u32,
}

/// What a constraint looks at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Subject<'a> {
    /// A tool argument by dotted path (`patient.id`); only in `call` rules.
    Arg(&'a str),
    /// The requested token budget; only in `infer` rules.
    MaxTokens,
    /// The path read; only in `read` rules.
    Path,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// String prefix.
    Prefix,
    /// Membership in a set literal.
    In,
}

/// A literal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Lit<'a> {
    Int(i64),
    Str(&'a str),
    Bool(bool),
    #[serde(deserialize_with = "bounded::<_, _, MAX_CONSTRAINTS>")]
    Ints(Vec<i64>),
    #[serde(borrow, deserialize_with = "bounded::<_, _, MAX_CONSTRAINTS>")]
    Strs(Vec<&'a str>),
}

/// `subject op value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraint<'a> {
    #[serde(borrow)]
    pub subject: Subject<'a>,
    pub op: Op,
    #[serde(borrow)]
    pub value: Lit<'a>,
}

/// Why a blob is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the header or not starting with [`MAGIC`].
    #[error("not a compiled Omega policy (bad magic)")]
    BadMagic,
    /// A version this evaluator does not read.
    #[error("unsupported policy format version {0}")]
    Version(u16),
    /// The postcard body does not parse.
    #[error("malformed policy body")]
    Body,
    /// Bytes after the body.
    #[error("trailing bytes after policy body")]
    TrailingBytes,
    /// The body parses but is inconsistent; the text says what.
    #[error("invalid policy: {0}")]
    Invalid(&'static str),
}

/// Serialises a policy with its header. Fails only if the policy is invalid.
pub fn encode(policy: &Policy<'_>) -> Result<Vec<u8>, DecodeError> {
    policy.validate()?;
    encode_unchecked(policy)
}

fn encode_unchecked(policy: &Policy<'_>) -> Result<Vec<u8>, DecodeError> {
    let sections = policy.sections();
    let version = if sections.is_empty() {
        FORMAT_VERSION
    } else {
        FORMAT_VERSION_SECTIONS
    };
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    let body = postcard::to_allocvec(policy).map_err(|_| DecodeError::Body)?;
    out.extend_from_slice(&body);
    if !sections.is_empty() {
        let tail = postcard::to_allocvec(&sections).map_err(|_| DecodeError::Body)?;
        out.extend_from_slice(&tail);
    }
    Ok(out)
}

/// Reads a version-2 body's sections into `policy`: each kind at most once, in order.
fn read_sections<'a>(policy: &mut Policy<'a>, bytes: &'a [u8]) -> Result<(), DecodeError> {
    #[derive(Deserialize)]
    struct Sections<'a>(
        #[serde(borrow, deserialize_with = "bounded::<_, _, MAX_SECTIONS>")] Vec<Section<'a>>,
    );
    let (Sections(sections), rest): (Sections<'a>, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|_| DecodeError::Body)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    let mut gpu_seen = false;
    for section in sections {
        match section {
            Section::Gpu(g) => {
                if gpu_seen {
                    return Err(DecodeError::Invalid("section repeats"));
                }
                gpu_seen = true;
                policy.gpu = g;
            }
        }
    }
    Ok(())
}

/// Parses and validates a compiled policy. Never panics. Accepts only the canonical
/// encoding (the bytes [`encode`] writes), so the SHA-256 of the blob identifies the policy.
pub fn decode(bytes: &[u8]) -> Result<Policy<'_>, DecodeError> {
    let (magic, rest) = bytes.split_at_checked(4).ok_or(DecodeError::BadMagic)?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let (version, body) = rest.split_at_checked(2).ok_or(DecodeError::BadMagic)?;
    let version = u16::from_le_bytes([version[0], version[1]]);
    if version != FORMAT_VERSION && version != FORMAT_VERSION_SECTIONS {
        return Err(DecodeError::Version(version));
    }
    let (mut policy, rest): (Policy<'_>, &[u8]) =
        postcard::take_from_bytes(body).map_err(|_| DecodeError::Body)?;
    if version == FORMAT_VERSION_SECTIONS {
        read_sections(&mut policy, rest)?;
    } else if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    policy.validate()?;
    // One policy, one encoding: postcard would also read over-long varints, which would give
    // the same policy two identities, and version 2 with no section is version 1. Re-encode
    // and compare.
    let canonical = encode_unchecked(&policy)?;
    if canonical != bytes {
        return Err(DecodeError::Invalid("non-canonical encoding"));
    }
    Ok(policy)
}

/// Deserializes a sequence of at most `MAX` elements.
///
/// SECURITY: the element count is a varint in the input. serde's `Vec` would reserve for
/// it up front (up to 1 MiB per sequence, nested sequences each again), so a few bytes
/// declaring huge counts could make the monitor allocate megabytes before the input runs
/// out. Here a count over `MAX` is refused before anything is reserved, and the vector grows
/// only as elements actually decode: each takes at least one byte of the remaining input, so
/// what is allocated is bounded by the input's size.
fn bounded<'de, D, T, const MAX: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T, const MAX: usize>(core::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>, const MAX: usize> serde::de::Visitor<'de> for Bounded<T, MAX> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "a sequence of at most {MAX} elements")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            if let Some(n) = seq.size_hint().filter(|n| *n > MAX) {
                return Err(serde::de::Error::invalid_length(n, &self));
            }
            let mut v = Vec::new();
            while let Some(x) = seq.next_element()? {
                if v.len() == MAX {
                    return Err(serde::de::Error::invalid_length(MAX + 1, &self));
                }
                v.push(x);
            }
            Ok(v)
        }
    }

    d.deserialize_seq(Bounded::<T, MAX>(core::marker::PhantomData))
}

fn mask(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

impl<'a> Policy<'a> {
    /// The GPU requirement of model `model` (an index into [`Policy::models`]), if any.
    pub fn gpu_requirement(&self, model: usize) -> Option<&GpuRequirement<'a>> {
        self.gpu.iter().find(|g| usize::from(g.model) == model)
    }

    /// The version-2 sections this policy needs (none: it is written as version 1).
    fn sections(&self) -> Vec<Section<'a>> {
        let mut out = Vec::new();
        if !self.gpu.is_empty() {
            out.push(Section::Gpu(self.gpu.clone()));
        }
        out
    }

    fn targets(&self, action: RuleAction) -> usize {
        match action {
            RuleAction::Infer => self.models.len(),
            RuleAction::Call => self.tools.len(),
            RuleAction::Read => self.sources.len(),
            RuleAction::Send => self.agents.len(),
        }
    }

    /// Checks every index, bit and operator; [`decode`] and [`encode`] call it.
    pub fn validate(&self) -> Result<(), DecodeError> {
        use DecodeError::Invalid;
        if self.labels.len() > MAX_LABELS {
            return Err(Invalid("too many labels"));
        }
        if self.agents.len() > MAX_AGENTS {
            return Err(Invalid("too many agents"));
        }
        if self.limits.len() > MAX_LIMITS {
            return Err(Invalid("too many limits"));
        }
        for n in [
            self.tools.len(),
            self.models.len(),
            self.sources.len(),
            self.rules.len(),
        ] {
            if n > MAX_ITEMS {
                return Err(Invalid("too many items"));
            }
        }
        // Remote agents are `node/agent`: one slash, a node name, an agent name.
        for a in &self.agents {
            if let Some((node, agent)) = a.name.split_once('/')
                && (!crate::remote_node_ok(node) || agent.is_empty() || agent.contains('/'))
            {
                return Err(Invalid("remote agent name is not node/agent"));
            }
        }
        let labels = mask(self.labels.len());
        let agents = mask(self.agents.len());
        let sets = self
            .agents
            .iter()
            .map(|a| a.cleared)
            .chain(
                self.tools
                    .iter()
                    .chain(&self.models)
                    .flat_map(|t| [t.cleared, t.result]),
            )
            .chain(self.sources.iter().map(|s| s.labels))
            .chain(self.rules.iter().map(|r| r.declassify));
        for set in sets {
            if set & !labels != 0 {
                return Err(Invalid("label bit out of range"));
            }
        }
        for rule in &self.rules {
            check_scope(self, rule.action, rule.target, rule.agents, agents)?;
            if rule.constraints.len() > MAX_CONSTRAINTS {
                return Err(Invalid("too many constraints"));
            }
            for c in &rule.constraints {
                check_constraint(rule.action, c)?;
            }
            if rule.effect == Effect::Deny && rule.declassify != 0 {
                return Err(Invalid("deny rule declassifies"));
            }
        }
        for limit in &self.limits {
            check_scope(self, limit.action, limit.target, limit.agents, agents)?;
            if limit.window_secs == 0 {
                return Err(Invalid("zero rate-limit window"));
            }
        }
        check_gpu(self)
    }
}

/// GPU requirements: known models, each once and in order; non-empty, bounded, ordered
/// reference values.
fn check_gpu(p: &Policy<'_>) -> Result<(), DecodeError> {
    use DecodeError::Invalid;
    if p.gpu.len() > MAX_ITEMS {
        return Err(Invalid("too many items"));
    }
    let mut last_model = None;
    for g in &p.gpu {
        if usize::from(g.model) >= p.models.len() {
            return Err(Invalid("GPU requirement for a model out of range"));
        }
        if last_model.is_some_and(|m| m >= g.model) {
            return Err(Invalid("GPU requirements not by ascending model"));
        }
        last_model = Some(g.model);
        if g.reference.is_empty() || g.reference.len() > MAX_GPU_MEASUREMENTS {
            return Err(Invalid("GPU requirement without reference measurements"));
        }
        let mut last_index = 0u8;
        for m in &g.reference {
            if m.index <= last_index || m.index > MAX_GPU_INDEX {
                return Err(Invalid("GPU measurement indices not ascending in 1..=254"));
            }
            last_index = m.index;
            if m.allowed.is_empty() || m.allowed.len() > MAX_GPU_ALTERNATIVES {
                return Err(Invalid("GPU measurement without allowed values"));
            }
            if m.allowed
                .iter()
                .any(|v| v.is_empty() || v.len() > MAX_GPU_VALUE)
            {
                return Err(Invalid("GPU measurement value of a bad length"));
            }
        }
    }
    Ok(())
}

fn check_scope(
    p: &Policy<'_>,
    action: RuleAction,
    target: Option<u16>,
    agents: Option<u64>,
    agent_mask: u64,
) -> Result<(), DecodeError> {
    if let Some(t) = target
        && usize::from(t) >= p.targets(action)
    {
        return Err(DecodeError::Invalid("target index out of range"));
    }
    if let Some(a) = agents
        && a & !agent_mask != 0
    {
        return Err(DecodeError::Invalid("agent bit out of range"));
    }
    Ok(())
}

fn check_constraint(action: RuleAction, c: &Constraint<'_>) -> Result<(), DecodeError> {
    use DecodeError::Invalid;
    match (&c.subject, action) {
        (Subject::Arg(_), RuleAction::Call)
        | (Subject::MaxTokens, RuleAction::Infer)
        | (Subject::Path, RuleAction::Read) => {}
        _ => return Err(Invalid("constraint subject does not fit the rule's action")),
    }
    let ok = match (c.op, &c.value) {
        (Op::Eq | Op::Ne, Lit::Int(_) | Lit::Str(_) | Lit::Bool(_)) => true,
        (Op::Lt | Op::Le | Op::Gt | Op::Ge, Lit::Int(_)) => true,
        (Op::Prefix, Lit::Str(_)) => true,
        (Op::In, Lit::Ints(v)) => v.len() <= MAX_CONSTRAINTS,
        (Op::In, Lit::Strs(v)) => v.len() <= MAX_CONSTRAINTS,
        _ => false,
    };
    if !ok {
        return Err(Invalid("operator does not fit its operand"));
    }
    // max_tokens and path are typed by the language: an integer and a string.
    match (&c.subject, &c.value) {
        (Subject::MaxTokens, Lit::Int(_) | Lit::Ints(_)) => Ok(()),
        (Subject::Path, Lit::Str(_) | Lit::Strs(_)) => Ok(()),
        (Subject::Arg(_), _) => Ok(()),
        _ => Err(Invalid("operand type does not fit the subject")),
    }
}
