//! Provenance log entries and their compact, canonical binary encoding.
//!
//! Layout (all integers LEB128 varints, see docs/provenance.md):
//!
//! ```text
//! header u8   bits 0-2 action, bits 3-4 decision, bit 5 has-content-digest,
//!             bit 6 has-name (lifecycle only), bit 7 reserved (0)
//! seq         varint  (absolute, = leaf index)
//! dt          varint  (monitor ticks since the previous entry)
//! agent       varint  (u32, interned id)
//! target      varint  (u32, interned id)
//! rule        varint  (u32, interned id; for lifecycle entries: the event code)
//! labels      varint  (u64 bitmask of interned label ids)
//! [content    32 bytes SHA-256, if bit 5]
//! [name_len   varint 1..=64, name bytes (UTF-8 not required), if bit 6]
//! ```

use crate::varint::{self, VarintError};

/// Longest name carried by a lifecycle entry (dictionary definitions).
pub const MAX_NAME: usize = 64;
/// Longest encoded entry: header + 6 varints + digest + name.
pub const MAX_ENTRY: usize = 1 + 4 * varint::MAX_LEN + 2 * 5 + 32 + 1 + MAX_NAME;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("entry truncated")]
    Truncated,
    #[error("malformed varint in field {0}")]
    Varint(&'static str),
    #[error("value of field {0} out of range")]
    Range(&'static str),
    #[error("reserved header bit set")]
    Reserved,
    #[error("unknown action {0}")]
    Action(u8),
    #[error("name present on a non-lifecycle entry")]
    NameNotAllowed,
    #[error("name length {0} not in 1..=64")]
    NameLength(u64),
}

/// Kind of mediated interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Action {
    Infer = 0,
    Tool = 1,
    Data = 2,
    Message = 3,
    Lifecycle = 4,
}

impl Action {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Action::Infer,
            1 => Action::Tool,
            2 => Action::Data,
            3 => Action::Message,
            4 => Action::Lifecycle,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Action::Infer => "infer",
            Action::Tool => "tool",
            Action::Data => "data",
            Action::Message => "message",
            Action::Lifecycle => "lifecycle",
        }
    }
}

/// The monitor's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Decision {
    Allow = 0,
    Deny = 1,
    /// Held for human confirmation.
    Confirm = 2,
    /// Failed (e.g. tool error) after being allowed.
    Error = 3,
}

impl Decision {
    pub fn from_u8(v: u8) -> Self {
        match v & 3 {
            0 => Decision::Allow,
            1 => Decision::Deny,
            2 => Decision::Confirm,
            _ => Decision::Error,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Confirm => "confirm",
            Decision::Error => "error",
        }
    }
}

/// Lifecycle event codes (carried in `rule` when `action == Lifecycle`).
pub mod lifecycle {
    /// First entry of a log; name = log origin.
    pub const LOG_START: u32 = 0;
    /// Dictionary: `target` = agent id, name = agent name.
    pub const DEFINE_AGENT: u32 = 1;
    /// Dictionary: `target` = target id, name = tool / model / data / peer name.
    pub const DEFINE_TARGET: u32 = 2;
    /// Dictionary: `target` = rule id, name = policy rule name.
    pub const DEFINE_RULE: u32 = 3;
    /// Dictionary: `target` = label bit (0..64), name = label.
    pub const DEFINE_LABEL: u32 = 4;
    /// Agent `agent` started (content = module hash).
    pub const AGENT_START: u32 = 5;
    /// Agent `agent` exited.
    pub const AGENT_EXIT: u32 = 6;
    /// The bundle now in force: `target` = the manifest's target id, content = the
    /// manifest's SHA-256 (which names the policy and every module by their digests' files).
    pub const BUNDLE_ACTIVE: u32 = 7;
    /// A bundle was refused (decision deny): one bundle per boot, a second `Begin` after
    /// one completed; name = the reason.
    pub const BUNDLE_REFUSED: u32 = 8;
    /// The monitor's evidence about itself (`omega-evidence`): decision allow, content =
    /// the attested evidence root, name `evidence`; decision error: no evidence could be
    /// made (name = the reason); decision deny: a challenge from the host refused (a second
    /// one, or one after the evidence was issued; name = the reason).
    pub const EVIDENCE: u32 = 9;
    /// Agent `agent` was refused at load time (decision deny): content = its module's
    /// SHA-256 (absent when the bundle lacks the module), name = why, one of the monitor's
    /// refusal codes (`hash-pin`, `foreign-import`, …, docs/agents.md; the console says
    /// the rest).
    pub const AGENT_REFUSED: u32 = 10;
    /// The session with the inference proxy (`kernel/src/services/inference.rs`). Decision
    /// allow: the proxy's evidence passed and TLS to its key is up, two entries: content =
    /// the proxy identity (what the policy pins), name `identity`; content = SHA-256 of the
    /// evidence (binary, model, TLS key, nonce), name `evidence`. Decision deny: the evidence
    /// was refused before any prompt left; decision error: the session failed or broke
    /// (name = why, cut to `MAX_NAME`).
    pub const PROXY_SESSION: u32 = 11;
    /// The operator's answer to a `confirm` decision, appended before the monitor acts on
    /// it: `agent` = the agent, `target` = the tool's target id, content = the content
    /// digest of the `confirm` decision record it answers, decision allow (approved, the
    /// call goes out) or deny (it does not); name = `approved`, `denied`, or why the call
    /// was denied without a valid answer (`timeout`, `no-channel`, …; docs/tools.md).
    pub const CONFIRMATION: u32 = 12;
    /// Agent `agent`'s signed A2A card was issued to the host: content = SHA-256 of the
    /// card's bytes as sent (`ControlMsg::AgentCard`), name `card`. One per card, before
    /// it is sent, so every card a verifier holds can be found in the log.
    pub const CARD_ISSUED: u32 = 13;
    /// The peer channel to another monitor (`kernel/src/services/peer.rs`). Decision
    /// allow: the session is established: content = SHA-256(session id ‖ the peer's peer
    /// key), name = the peer's node name. Decision deny: a handshake refused (name = the
    /// `PeerError`, cut to `MAX_NAME`). Decision error: the session broke after it was up
    /// (name = why).
    pub const PEER_SESSION: u32 = 16;
    /// One agent message (`Deliver`) across a peer channel, at each end
    /// (`kernel/src/services/agents/peer_link.rs`): `agent` = the local agent (sender or
    /// receiver), `target` = the remote `node/agent` (a `DEFINE_TARGET` name), decision = the
    /// receiving gate's (allow, deny; error at the sender: unreachable), content = SHA-256 of
    /// the `Deliver` frame (the same in both logs), name = the rule that decided (or why it
    /// is unreachable).
    pub const PEER_MESSAGE: u32 = 17;
    /// This node's own fleet credential, delivered by the host
    /// (`ControlMsg::PeerCredential`; `kernel/src/services/peer.rs`). Decision allow: the
    /// monitor accepted it (signed by the coordinator its bundle names, for this fleet,
    /// this node, its attested monitor and peer keys, not expired) and presents it on the
    /// peer channel: content = SHA-256 of the credential's bytes, name = `node/role #serial`.
    /// Decision deny: refused, name = why; the peer channel does not start.
    pub const PEER_CREDENTIAL: u32 = 14;
    /// A request to this image's fleet coordinator (the bundle's `coordinator` entry;
    /// `kernel/src/services/coordinator.rs`), relayed by the host on the Fleet stream.
    /// `target`: what was asked (1 policy update, 2 placement, 3 admission, 4 the owner's
    /// endorsement of the coordinator key, 0 a message that did not decode). Decision allow: granted; content = SHA-256 of what the
    /// coordinator signed (the placement, the credential) or applied (the signed policy),
    /// name = `fleet vN`, `workload on node` or `node/role #serial`. Decision deny: refused;
    /// content = SHA-256 of the request, name = the rule (`policy`, `placement`,
    /// `evidence`, `nonce-replayed`, `measurement`, …).
    pub const FLEET_REQUEST: u32 = 15;
    /// The inference proxy was refused for one model (decision deny) while the session
    /// serves others (`kernel/src/services/inference.rs`): the proxy has the identity the
    /// model pins but fails the model's further requirements (its confidential-GPU
    /// evidence: `gpu { … }` in the policy). Content = the proxy identity, name =
    /// `model: why` (cut to `MAX_NAME`). Calls to that model are then denied
    /// `gpu-evidence` by the policy, before any prompt leaves.
    pub const PROXY_REFUSED: u32 = 18;
    /// What the monitor's evidence says of each model the policy declares (the proxy as a
    /// principal; `kernel/src/services/proxy_principal.rs`), one entry per model, after the
    /// `EVIDENCE` entry of evidence that was issued. Decision allow: the evidence carries a
    /// `model:<name>` claim; content = the proxy identity the session proved, name = the
    /// model's name. Decision error: no claim for it; name = `<model>: <why>` (no session
    /// when the evidence was issued, and why; pinned to another proxy; a name no claim can
    /// carry), cut to `MAX_NAME`.
    pub const MODEL_CLAIM: u32 = 19;
    /// A new host connection resumed the log (after the launcher restarted): decision
    /// allow, `target` = 0, name = `resumed at N` where N is the log byte the new host said
    /// it holds durably; every entry after it was sent again.
    pub const LOG_RESUMED: u32 = 20;
    /// A new host's resume was refused (decision deny): it claimed more log bytes than the
    /// monitor sent, fewer than an earlier host acknowledged, or a cut inside an entry;
    /// name = why. Nothing is sent on the Log stream until a host resumes correctly.
    pub const RESUME_REFUSED: u32 = 21;
}

/// One provenance record. `name` borrows from the decoded buffer (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub seq: u64,
    pub dt: u64,
    pub agent: u32,
    pub action: Action,
    pub target: u32,
    pub decision: Decision,
    pub rule: u32,
    pub labels: u64,
    /// SHA-256 over the request and response bytes (never the plaintext), see
    /// [`content_digest`].
    pub content: Option<[u8; 32]>,
    pub name: Option<&'a [u8]>,
}

/// SHA-256("omega-prov-content-v1" ‖ u64le(len(request)) ‖ request ‖ response).
pub fn content_digest(request: &[u8], response: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"omega-prov-content-v1");
    h.update((request.len() as u64).to_le_bytes());
    h.update(request);
    h.update(response);
    h.finalize().into()
}

impl<'a> Entry<'a> {
    /// Checks the invariants the decoder enforces (used before encoding).
    pub fn validate(&self) -> Result<(), DecodeError> {
        if let Some(n) = self.name {
            if self.action != Action::Lifecycle {
                return Err(DecodeError::NameNotAllowed);
            }
            if n.is_empty() || n.len() > MAX_NAME {
                return Err(DecodeError::NameLength(n.len() as u64));
            }
        }
        Ok(())
    }

    /// Encodes into `out`; returns the number of bytes. Call [`Entry::validate`] first
    /// (names longer than [`MAX_NAME`] are rejected with `None`).
    pub fn encode(&self, out: &mut [u8; MAX_ENTRY]) -> Option<usize> {
        self.validate().ok()?;
        let mut header = (self.action as u8) | ((self.decision as u8) << 3);
        if self.content.is_some() {
            header |= 1 << 5;
        }
        if self.name.is_some() {
            header |= 1 << 6;
        }
        out[0] = header;
        let mut n = 1;
        let mut tmp = [0u8; varint::MAX_LEN];
        for v in [
            self.seq,
            self.dt,
            u64::from(self.agent),
            u64::from(self.target),
            u64::from(self.rule),
            self.labels,
        ] {
            let l = varint::encode(v, &mut tmp);
            out[n..n + l].copy_from_slice(&tmp[..l]);
            n += l;
        }
        if let Some(c) = &self.content {
            out[n..n + 32].copy_from_slice(c);
            n += 32;
        }
        if let Some(name) = self.name {
            out[n] = name.len() as u8; // <= 64 < 128: one-byte varint
            n += 1;
            out[n..n + name.len()].copy_from_slice(name);
            n += name.len();
        }
        Some(n)
    }

    /// Decodes one entry from the front of `input`; returns it and the bytes consumed.
    /// Never panics; rejects every non-canonical form so that decode∘encode is the identity
    /// on accepted byte strings.
    pub fn decode(input: &'a [u8]) -> Result<(Entry<'a>, usize), DecodeError> {
        let header = *input.first().ok_or(DecodeError::Truncated)?;
        if header & 0x80 != 0 {
            return Err(DecodeError::Reserved);
        }
        let action = Action::from_u8(header & 7).ok_or(DecodeError::Action(header & 7))?;
        let decision = Decision::from_u8((header >> 3) & 3);
        let mut pos = 1;
        let mut field = |name: &'static str| -> Result<u64, DecodeError> {
            let rest = input.get(pos..).ok_or(DecodeError::Truncated)?;
            let (v, l) = varint::decode(rest).map_err(|e| match e {
                VarintError::Truncated => DecodeError::Truncated,
                VarintError::Invalid => DecodeError::Varint(name),
            })?;
            pos += l;
            Ok(v)
        };
        let u32f = |v: u64, name| u32::try_from(v).map_err(|_| DecodeError::Range(name));
        let seq = field("seq")?;
        let dt = field("dt")?;
        let agent = u32f(field("agent")?, "agent")?;
        let target = u32f(field("target")?, "target")?;
        let rule = u32f(field("rule")?, "rule")?;
        let labels = field("labels")?;
        let content = if header & (1 << 5) != 0 {
            let b = input.get(pos..pos + 32).ok_or(DecodeError::Truncated)?;
            pos += 32;
            let mut c = [0u8; 32];
            c.copy_from_slice(b);
            Some(c)
        } else {
            None
        };
        let name = if header & (1 << 6) != 0 {
            if action != Action::Lifecycle {
                return Err(DecodeError::NameNotAllowed);
            }
            let rest = input.get(pos..).ok_or(DecodeError::Truncated)?;
            let (len, l) = varint::decode(rest).map_err(|e| match e {
                VarintError::Truncated => DecodeError::Truncated,
                VarintError::Invalid => DecodeError::Varint("name_len"),
            })?;
            if len == 0 || len > MAX_NAME as u64 {
                return Err(DecodeError::NameLength(len));
            }
            pos += l;
            let b = input
                .get(pos..pos + len as usize)
                .ok_or(DecodeError::Truncated)?;
            pos += len as usize;
            Some(b)
        } else {
            None
        };
        Ok((
            Entry {
                seq,
                dt,
                agent,
                action,
                target,
                decision,
                rule,
                labels,
                content,
                name,
            },
            pos,
        ))
    }
}

/// Iterates over a concatenation of entries (the at-rest stream), yielding each entry with
/// its exact encoded bytes. Stops at the first error.
pub struct EntryIter<'a> {
    rest: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> EntryIter<'a> {
    pub fn new(stream: &'a [u8]) -> Self {
        EntryIter {
            rest: stream,
            offset: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for EntryIter<'a> {
    /// (byte offset, entry, encoded bytes) or (byte offset, error).
    type Item = Result<(usize, Entry<'a>, &'a [u8]), (usize, DecodeError)>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match Entry::decode(self.rest) {
            Ok((e, n)) => {
                let bytes = &self.rest[..n];
                let off = self.offset;
                self.rest = &self.rest[n..];
                self.offset += n;
                Some(Ok((off, e, bytes)))
            }
            Err(err) => {
                self.failed = true;
                Some(Err((self.offset, err)))
            }
        }
    }
}
