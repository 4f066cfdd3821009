//! Per-principal claims and their salted leaf encoding.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::EvidenceError;

/// Leaf format version (2: platform names its TEE and boot id, the log key its boot id,
/// and the bundle claim exists; 3: a tool server claim names the server's identity).
pub const LEAF_VERSION: u8 = 3;
/// Longest [`ToolIdentity::command`] (the command line as a JSON array).
pub const MAX_COMMAND: usize = 2048;
/// The values a [`Claim::Platform`] `tee` may take.
pub const TEES: [&str; 3] = [TEE_SEV_SNP, TEE_SIMULATED, TEE_NONE];
/// Real AMD SEV-SNP hardware.
pub const TEE_SEV_SNP: &str = "sev-snp";
/// The software PSP of the tests (`omega-sim-psp`), with its lab certificate chain.
pub const TEE_SIMULATED: &str = "simulated";
/// No TEE (plain QEMU): the evidence is unattested.
pub const TEE_NONE: &str = "none";
/// The prefix of a [`Claim::ToolServer`] principal (`tools:<server>`).
pub const TOOLS_PREFIX: &str = "tools:";
/// The principal of the [`Claim::CardKey`] claim.
pub const CARD_PRINCIPAL: &str = "card";
/// The principal of the [`Claim::PeerKey`] claim.
pub const PEER_PRINCIPAL: &str = "peer";
/// The principal of the [`Claim::Coordinator`] claim.
pub const COORDINATOR_PRINCIPAL: &str = "coordinator";
/// Longest principal-specific name (agent, model, tool).
pub const MAX_NAME: usize = 128;
/// Largest encoded leaf accepted.
pub const MAX_LEAF: usize = 4096;

/// What one principal vouches for. Hashes are SHA-256 unless noted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Claim {
    /// The platform the monitor booted on (one of [`TEES`]) and this boot's random id.
    /// The expected launch digest is the verifier's input, compared with the report's
    /// MEASUREMENT, not a claim.
    Platform { tee: String, boot_id: [u8; 16] },
    /// A Wasm agent: module hash and publisher.
    Agent {
        name: String,
        module_hash: [u8; 32],
        publisher: String,
    },
    /// The compiled policy.
    Policy { digest: [u8; 32] },
    /// The model / inference proxy: proxy identity (key/measurement digest), model file
    /// digest and, when the proxy runs on a GPU in CC mode, the GPU evidence digest.
    Model {
        name: String,
        proxy_identity: [u8; 32],
        model_digest: [u8; 32],
        gpu_evidence_digest: Option<[u8; 32]>,
    },
    /// A tool: its pinned identity (hash of its MCP `tools/list` entry).
    Tool { name: String, pinned: [u8; 32] },
    /// The provenance log's Ed25519 public key and the boot it signs for (checkpoint
    /// origin `omega-monitor/<hex boot_id>`).
    LogKey { public: [u8; 32], boot_id: [u8; 16] },
    /// The active bundle: SHA-256 digest of its manifest (one bundle per boot).
    Bundle { manifest_digest: [u8; 32] },
    /// The monitor's A2A agent-card signing key (Ed25519, used for nothing else) and the
    /// boot whose cards it signs (`omega-agent-card`; `measurements verify-card`).
    CardKey { public: [u8; 32], boot_id: [u8; 16] },
    /// A tool server as the monitor enforces it: the namespace of its tools (`server` in
    /// `server.tool`), how many of its tools the policy pins, and [`pins_digest`] of those
    /// pins. The monitor calls a tool of this server only while the entry the server lists
    /// hashes to its pin. `identity`: the server's command line, package and version as
    /// the bundle's tools file states them (so they are covered by the bundle's manifest
    /// digest); `None` when the bundle names no tools file or not this server. The
    /// monitor cannot see what the host runs: the identity says what the bundle asked for,
    /// and an honest gateway refuses to start anything else.
    ToolServer {
        server: String,
        tools: u32,
        pins_digest: [u8; 32],
        identity: Option<ToolIdentity>,
    },
    /// The monitor's peer-channel key (Ed25519, drawn at boot, used for nothing else): it
    /// signs this monitor's side of every channel handshake with another image
    /// (`omega-peer-channel`), and the fleet coordinator's credentials bind it.
    PeerKey { public: [u8; 32], boot_id: [u8; 16] },
    /// This monitor is its fleet's coordinator (the bundle's `coordinator` entry): the
    /// credential key it drew at boot (Ed25519, never leaves the monitor; it signs
    /// placements and node credentials), the owner whose signed policies it applies, and
    /// the lowest policy version it takes. What a node's bundle (`fleet.coordinator`) and a
    /// fleet client check first.
    Coordinator {
        public: [u8; 32],
        owner: [u8; 32],
        min_policy_version: u64,
        boot_id: [u8; 16],
    },
}

/// A tool server's identity as a bundle states it (`omega_tool_protocol::identity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolIdentity {
    /// The command and its arguments as a JSON array of strings.
    pub command: String,
    pub package: String,
    pub version: String,
}

/// SHA-256 of a server's pins as a pins file holds them (`policy-compiler pin`, the
/// gateway's `pins = …`): one line `<server.tool> sha256:<64 lowercase hex>\n` per tool,
/// lines sorted bytewise. A tool provider recomputes it from its own server's `tools/list`.
pub fn pins_digest<'a>(pins: impl IntoIterator<Item = (&'a str, &'a [u8; 32])>) -> [u8; 32] {
    use core::fmt::Write as _;
    use sha2::{Digest, Sha256};
    let mut lines: Vec<String> = pins
        .into_iter()
        .map(|(name, pin)| {
            let mut l = format!("{name} sha256:");
            for b in pin {
                let _ = write!(l, "{b:02x}");
            }
            l.push('\n');
            l
        })
        .collect();
    lines.sort();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
    }
    h.finalize().into()
}

impl Claim {
    /// The principal's name: `platform`, `agent:<name>`, `policy`, `model:<name>`,
    /// `tool:<name>`, `log`, `bundle`, `card`, `tools:<server>`, `peer`, `coordinator`.
    pub fn principal(&self) -> String {
        match self {
            Claim::Platform { .. } => "platform".into(),
            Claim::Agent { name, .. } => format!("agent:{name}"),
            Claim::Policy { .. } => "policy".into(),
            Claim::Model { name, .. } => format!("model:{name}"),
            Claim::Tool { name, .. } => format!("tool:{name}"),
            Claim::LogKey { .. } => "log".into(),
            Claim::Bundle { .. } => "bundle".into(),
            Claim::CardKey { .. } => CARD_PRINCIPAL.into(),
            Claim::ToolServer { server, .. } => format!("{TOOLS_PREFIX}{server}"),
            Claim::PeerKey { .. } => PEER_PRINCIPAL.into(),
            Claim::Coordinator { .. } => COORDINATOR_PRINCIPAL.into(),
        }
    }

    /// Structural checks (the decoder runs them on untrusted leaves).
    pub fn validate(&self) -> Result<(), EvidenceError> {
        let name_ok =
            |n: &str| !n.is_empty() && n.len() <= MAX_NAME && !n.chars().any(char::is_control);
        match self {
            Claim::Platform { tee, .. } if !TEES.contains(&tee.as_str()) => Err(
                EvidenceError::Invalid("platform tee must be sev-snp, simulated or none"),
            ),
            Claim::Agent {
                name, publisher, ..
            } if !name_ok(name) || !name_ok(publisher) => {
                Err(EvidenceError::Invalid("agent name/publisher"))
            }
            Claim::Model { name, .. } | Claim::Tool { name, .. } if !name_ok(name) => {
                Err(EvidenceError::Invalid("model/tool name"))
            }
            Claim::ToolServer { server, .. } if !name_ok(server) || server.contains('.') => {
                Err(EvidenceError::Invalid("tool server name"))
            }
            Claim::ToolServer {
                identity: Some(i), ..
            } if i.command.is_empty()
                || i.command.len() > MAX_COMMAND
                || i.command.chars().any(char::is_control)
                || !name_ok(&i.package)
                || !name_ok(&i.version) =>
            {
                Err(EvidenceError::Invalid("tool server identity"))
            }
            _ => Ok(()),
        }
    }
}

/// A claim with its per-principal salt: the leaf data of the evidence tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaltedLeaf {
    pub version: u8,
    /// 32 random bytes, unique per principal: siblings' hashes reveal nothing about
    /// their claims (no dictionary attack on small claim spaces).
    pub salt: [u8; 32],
    pub claim: Claim,
}

impl SaltedLeaf {
    pub fn encode(&self) -> Result<Vec<u8>, EvidenceError> {
        self.claim.validate()?;
        postcard::to_allocvec(self).map_err(|_| EvidenceError::Invalid("leaf encoding"))
    }

    /// Strict decode: size cap, no trailing bytes, known version, valid claim.
    pub fn decode(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() > MAX_LEAF {
            return Err(EvidenceError::TooLarge("leaf"));
        }
        let (leaf, rest): (SaltedLeaf, _) =
            postcard::take_from_bytes(bytes).map_err(|_| EvidenceError::Decode("leaf"))?;
        if !rest.is_empty() {
            return Err(EvidenceError::Decode("trailing bytes after leaf"));
        }
        if leaf.version != LEAF_VERSION {
            return Err(EvidenceError::Invalid("unknown leaf version"));
        }
        leaf.claim.validate()?;
        Ok(leaf)
    }
}
