//! The monitor's evidence about itself (`omega-evidence`), the pure half: the boot id and
//! the log origin it names, the host's challenge (first one counts), where the report
//! comes from, the claims of a delivered bundle, and the per-principal bundles. The binary's
//! `services/evidence.rs` wires it to the channel, the platform and the log.
//!
//! | claim | principal | from |
//! |---|---|---|
//! | `Platform { tee, boot_id }` | `platform` | the platform the monitor runs on ([`ReportSource::tee`]), this boot's random id |
//! | `LogKey { public, boot_id }` | `log` | the provenance log's Ed25519 key, whose checkpoints name [`log_origin`] |
//! | `CardKey { public, boot_id }` | `card` | the A2A agent-card signing key ([`cards`]), a key of its own |
//! | `PeerKey { public, boot_id }` | `peer` | the peer-channel signing key ([`peer_public`]), a key of its own |
//! | `Model { name, proxy_identity, model_digest, gpu_evidence_digest }` | `model:<name>` | each model whose pin the proxy session proved before the evidence was issued ([`ModelFacts`], [`Facts::with_models`]; last claims) |
//! | `Bundle { manifest_digest }` | `bundle` | SHA-256 of the manifest (what `BUNDLE_ACTIVE` logs) |
//! | `Policy { digest }` | `policy` | SHA-256 of the manifest's policy file |
//! | `Agent { name, module_hash, publisher }` | `agent:<name>` | each manifest agent, its module's SHA-256 |
//!
//! REPORT_DATA = `omega_evidence::report_data(nonce, root, monitor key)`; the monitor key is
//! the evidence issuer's own Ed25519 key (its seed drawn at boot, never the log key).

pub mod cards;
mod psp_link;
#[cfg(test)]
mod tests;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use omega_boot_info::Tee;
use omega_bundle::{BundleFile, Manifest};
use omega_evidence::{Claim, EvidenceError, Issuer};
use sev_snp::report::REPORT_LEN;

use crate::entropy::{self, EntropyError, HwRng};

pub use psp_link::{ChannelPsp, PSP_TIMEOUT_NS, PSP_TIMEOUT_POLLS, PspFailure, PspLink, used_len};

/// The log key's name in its checkpoints' signature lines (unchanged across boots).
pub const LOG_KEY_NAME: &str = "omega-monitor";
/// Bytes of the random boot id.
pub const BOOT_ID_LEN: usize = 16;
/// Publisher named in an agent claim whose manifest entry names none.
pub use omega_bundle::NO_PUBLISHER;

// Every agent name and publisher a bundle may carry fits an evidence claim, so a bundle
// the receiver accepted never leaves the monitor without evidence.
const _: () = assert!(omega_bundle::MAX_NAME <= omega_evidence::claim::MAX_NAME);

/// The log's checkpoint origin for this boot: `omega-monitor/<boot id, 32 lowercase hex>`.
/// A verifier matches it against the boot id of the attested `LogKey` claim, so a log (or
/// checkpoint) from another boot is not mistaken for this one.
pub fn log_origin(boot_id: &[u8; BOOT_ID_LEN]) -> String {
    format!("{LOG_KEY_NAME}/{}", boot_id_hex(boot_id))
}

/// The boot id as 32 lowercase hex digits.
pub fn boot_id_hex(boot_id: &[u8; BOOT_ID_LEN]) -> String {
    boot_id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The host's challenge: the verifier's nonce, and whether the host plays the PSP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: [u8; 32],
    pub simulated_psp: bool,
}

/// Why a challenge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeRefused {
    #[error("a challenge was already accepted; only the first one counts")]
    Repeated,
    #[error("the evidence was already issued; a challenge must come before the bundle")]
    TooLate,
}

/// The challenges of one boot: the first one counts until the evidence is issued.
// SECURITY: a second nonce must not replace the first: a verifier that sent the first
// would otherwise get evidence bound to someone else's nonce.
#[derive(Debug, Default)]
pub struct Challenges {
    accepted: Option<Challenge>,
    closed: bool,
}

impl Challenges {
    /// A challenge from the host: accepted if it is the first and the evidence is not out.
    pub fn offer(&mut self, c: Challenge) -> Result<(), ChallengeRefused> {
        if self.closed {
            Err(ChallengeRefused::TooLate)
        } else if self.accepted.is_some() {
            Err(ChallengeRefused::Repeated)
        } else {
            self.accepted = Some(c);
            Ok(())
        }
    }

    /// The evidence is being issued: the challenge it binds (if any); later ones are late.
    pub fn close(&mut self) -> Option<Challenge> {
        self.closed = true;
        self.accepted
    }
}

/// Where the hardware report comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportSource {
    /// The platform's PSP (SEV-SNP).
    Hardware,
    /// The host's simulated PSP over the channel (test images only).
    Simulated,
    /// None: the evidence is explicitly unattested.
    Unattested,
}

impl ReportSource {
    /// Picks the source for platform `tee`. The simulated PSP only replaces *no* TEE, only
    /// when the host asked for it and the image has it (`simulation_built_in`: test images);
    /// `note` says what was refused or overridden, for the console.
    pub fn choose(
        tee: Tee,
        challenge: Option<&Challenge>,
        simulation_built_in: bool,
    ) -> (Self, Option<&'static str>) {
        let wants_sim = challenge.is_some_and(|c| c.simulated_psp);
        match tee {
            Tee::SevSnp if wants_sim => (
                ReportSource::Hardware,
                Some("the host asked for the simulated PSP; using the real one"),
            ),
            Tee::SevSnp => (ReportSource::Hardware, None),
            _ if wants_sim && simulation_built_in => (ReportSource::Simulated, None),
            // SECURITY: a production image has no simulated PSP; the host cannot make it
            // claim a TEE it lacks.
            _ if wants_sim => (
                ReportSource::Unattested,
                Some("the host asked for the simulated PSP; this production image refuses it"),
            ),
            _ => (ReportSource::Unattested, None),
        }
    }

    /// The `tee` of the platform claim.
    pub fn tee(self) -> &'static str {
        match self {
            ReportSource::Hardware => omega_evidence::TEE_SEV_SNP,
            ReportSource::Simulated => omega_evidence::TEE_SIMULATED,
            ReportSource::Unattested => omega_evidence::TEE_NONE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    #[error("the bundle has no file {0:?} that its manifest names")]
    MissingFile(String),
    #[error("no entropy for the evidence: {0}")]
    Entropy(#[from] EntropyError),
    #[error("evidence: {0}")]
    Evidence(#[from] EvidenceError),
    /// SECURITY: fail closed: a tools file that does not parse names no identity, and no
    /// evidence is issued rather than evidence without it.
    #[error("the bundle's tools file: {0}")]
    ToolsFile(omega_tool_protocol::identity::IdentityError),
}

/// What the monitor attests to, gathered before any agent starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub tee: &'static str,
    pub boot_id: [u8; BOOT_ID_LEN],
    pub log_public: [u8; 32],
    /// The agent-card key ([`cards::CardIssuer::public`]).
    pub card_public: [u8; 32],
    pub manifest_digest: [u8; 32],
    pub policy_digest: [u8; 32],
    pub agents: Vec<AgentFacts>,
    /// Each tool server the policy pins tools of (`tools:<server>` principals).
    pub tool_servers: Vec<ToolServerFacts>,
    /// The peer-channel key ([`peer_public`]; [`Facts::with_peer_key`]).
    pub peer_public: Option<[u8; 32]>,
    /// This image as its fleet's coordinator ([`Facts::with_coordinator`]).
    pub coordinator: Option<CoordinatorFacts>,
    /// The models the inference proxy session proved ([`Facts::with_models`]).
    pub models: Vec<ModelFacts>,
}

/// The coordinator's identity (`services::coordinator`): its credential key, the owner it
/// obeys and its policy floor (both from the bundle's `coordinator` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoordinatorFacts {
    pub public: [u8; 32],
    pub owner: [u8; 32],
    pub min_policy_version: u64,
}

/// A model as the monitor's proxy session proved it (`model:<name>` principal): the policy's
/// model name, the identity the proxy's evidence proved (never the pin itself: equal to it,
/// or there is no claim), the model file digest the evidence names, and the SHA-256 of the
/// GPU evidence when the policy required one and it verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFacts {
    pub name: String,
    pub proxy_identity: [u8; 32],
    pub model_digest: [u8; 32],
    pub gpu_evidence_digest: Option<[u8; 32]>,
}

/// The public half of the peer-channel key drawn as `seed` (`omega-peer-channel`'s
/// [`Identity`](omega_peer_channel::Identity)); `None` for the all-zero seed of a failed
/// entropy source.
pub fn peer_public(seed: [u8; 32]) -> Option<[u8; 32]> {
    omega_peer_channel::Identity::from_seed(seed, Vec::new())
        .ok()
        .map(|i| i.public())
}

/// What the monitor's proxy session proved before the evidence was issued (the evidence
/// passed, TLS to its key is up): the identity, the model file digest its evidence names, and
/// the GPU evidence's SHA-256 when the policy required a GPU and it verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvenProxy {
    pub identity: [u8; 32],
    pub model_digest: [u8; 32],
    pub gpu_evidence_digest: Option<[u8; 32]>,
}

/// Why a model of the policy gets no `model:<name>` claim ([`model_facts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unclaimed {
    /// No proxy session was up when the evidence was issued.
    NoSession,
    /// The session proved another identity than this model's pin.
    OtherPin,
    /// The policy's model name is not a valid claim name (empty, too long, control
    /// characters): the evidence is issued without it rather than not at all.
    BadName,
    /// Another model of the policy has the same name and was claimed (one claim per
    /// principal).
    Duplicate,
}

/// The `model:<name>` claims for the policy's `models` (name, pinned identity), in policy
/// order: one per model whose pin is the identity `proven` proved, none without a proven
/// session. The second list names each model left out and why.
// SECURITY: the claim carries the identity proved in the session, which equals the pin
// (the session's evidence check compared them); a model pinned to another proxy is never
// claimed, so a verifier's `--expect-proxy` compares with what was proved.
pub fn model_facts<'a>(
    models: impl IntoIterator<Item = (&'a str, &'a [u8; 32])>,
    proven: Option<&ProvenProxy>,
) -> (Vec<ModelFacts>, Vec<(String, Unclaimed)>) {
    let mut claimed = Vec::new();
    let mut left = Vec::new();
    for (name, pin) in models {
        let Some(p) = proven else {
            left.push((name.into(), Unclaimed::NoSession));
            continue;
        };
        if *pin != p.identity {
            left.push((name.into(), Unclaimed::OtherPin));
            continue;
        }
        let facts = ModelFacts {
            name: name.into(),
            proxy_identity: p.identity,
            model_digest: p.model_digest,
            gpu_evidence_digest: p.gpu_evidence_digest,
        };
        if facts.claim().validate().is_err() {
            left.push((name.into(), Unclaimed::BadName));
            continue;
        }
        if claimed.iter().any(|c: &ModelFacts| c.name == name) {
            left.push((name.into(), Unclaimed::Duplicate));
            continue;
        }
        claimed.push(facts);
    }
    (claimed, left)
}

impl ModelFacts {
    /// The `Model` claim of these facts.
    pub fn claim(&self) -> Claim {
        Claim::Model {
            name: self.name.clone(),
            proxy_identity: self.proxy_identity,
            model_digest: self.model_digest,
            gpu_evidence_digest: self.gpu_evidence_digest,
        }
    }
}

/// A tool server as the policy pins it: its namespace, how many tools, their pins' digest
/// (`omega_evidence::pins_digest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolServerFacts {
    pub server: String,
    pub tools: u32,
    pub pins_digest: [u8; 32],
    /// What the bundle's tools file says the server is (`None`: no tools file, or it does
    /// not name this server).
    pub identity: Option<omega_evidence::ToolIdentity>,
}

/// The tool servers of the bundle's policy, by namespace (`server` of `server.tool`); none
/// when the policy does not decode (no agent runs then).
fn tool_servers(policy: &[u8]) -> Vec<ToolServerFacts> {
    let Ok(p) = omega_policy::decode(policy) else {
        return Vec::new();
    };
    let mut by_server: alloc::collections::BTreeMap<&str, Vec<(&str, &[u8; 32])>> =
        alloc::collections::BTreeMap::new();
    for t in &p.tools {
        let Some((server, _)) = t.name.split_once('.') else {
            continue;
        };
        by_server.entry(server).or_default().push((t.name, &t.hash));
    }
    by_server
        .into_iter()
        .map(|(server, pins)| ToolServerFacts {
            server: server.into(),
            tools: u32::try_from(pins.len()).unwrap_or(u32::MAX),
            pins_digest: omega_evidence::pins_digest(pins),
            identity: None,
        })
        .collect()
}

/// Gives each tool server the identity the bundle's tools file states for it.
pub fn with_identities(
    tool_servers: &mut [ToolServerFacts],
    tools_file: &[u8],
) -> Result<(), AttestError> {
    let servers =
        omega_tool_protocol::identity::parse(tools_file).map_err(AttestError::ToolsFile)?;
    for t in tool_servers {
        t.identity =
            servers
                .iter()
                .find(|s| s.name == t.server)
                .map(|s| omega_evidence::ToolIdentity {
                    command: s.command_line(),
                    package: s.package.clone(),
                    version: s.version.clone(),
                });
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFacts {
    pub name: String,
    pub module_hash: [u8; 32],
    pub publisher: String,
}

fn file_digest(files: &[BundleFile], name: &str) -> Result<[u8; 32], AttestError> {
    files
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.sha256)
        .ok_or_else(|| AttestError::MissingFile(name.into()))
}

impl Facts {
    /// The facts of a delivered bundle: `files` in sending order (the manifest first), the
    /// digests the receiver computed on arrival.
    pub fn of_bundle(
        tee: &'static str,
        boot_id: [u8; BOOT_ID_LEN],
        log_public: [u8; 32],
        card_public: [u8; 32],
        manifest: &Manifest,
        files: &[BundleFile],
    ) -> Result<Self, AttestError> {
        let manifest_digest = files
            .first()
            .map(|f| f.sha256)
            .ok_or_else(|| AttestError::MissingFile("manifest".into()))?;
        let agents = manifest
            .agents
            .iter()
            .map(|a| {
                Ok(AgentFacts {
                    name: a.name.clone(),
                    module_hash: file_digest(files, &a.module)?,
                    publisher: a.claimed_publisher().into(),
                })
            })
            .collect::<Result<Vec<_>, AttestError>>()?;
        let mut tool_servers = files
            .iter()
            .find(|f| f.name == manifest.policy)
            .map_or_else(Vec::new, |f| tool_servers(&f.bytes));
        if let Some(name) = &manifest.tools {
            let file = files
                .iter()
                .find(|f| f.name == *name)
                .ok_or_else(|| AttestError::MissingFile(name.clone()))?;
            with_identities(&mut tool_servers, &file.bytes)?;
        }
        Ok(Facts {
            tee,
            boot_id,
            log_public,
            card_public,
            manifest_digest,
            policy_digest: file_digest(files, &manifest.policy)?,
            agents,
            tool_servers,
            peer_public: None,
            coordinator: None,
            models: Vec::new(),
        })
    }

    /// Adds the peer-channel key: its `PeerKey` claim comes after the tool servers.
    pub fn with_peer_key(mut self, public: [u8; 32]) -> Self {
        self.peer_public = Some(public);
        self
    }

    /// Adds the coordinator's identity: its `Coordinator` claim comes after the peer key.
    pub fn with_coordinator(mut self, c: Option<CoordinatorFacts>) -> Self {
        self.coordinator = c;
        self
    }

    /// Adds the models the proxy session proved: their `Model` claims come last in the tree.
    pub fn with_models(mut self, models: Vec<ModelFacts>) -> Self {
        self.models = models;
        self
    }

    /// The claims, in tree order.
    pub fn claims(&self) -> Vec<Claim> {
        let mut claims = Vec::with_capacity(5 + self.agents.len());
        claims.push(Claim::Platform {
            tee: self.tee.into(),
            boot_id: self.boot_id,
        });
        claims.push(Claim::LogKey {
            public: self.log_public,
            boot_id: self.boot_id,
        });
        claims.push(Claim::CardKey {
            public: self.card_public,
            boot_id: self.boot_id,
        });
        claims.push(Claim::Bundle {
            manifest_digest: self.manifest_digest,
        });
        claims.push(Claim::Policy {
            digest: self.policy_digest,
        });
        for a in &self.agents {
            claims.push(Claim::Agent {
                name: a.name.clone(),
                module_hash: a.module_hash,
                publisher: a.publisher.clone(),
            });
        }
        for t in &self.tool_servers {
            claims.push(Claim::ToolServer {
                server: t.server.clone(),
                tools: t.tools,
                pins_digest: t.pins_digest,
                identity: t.identity.clone(),
            });
        }
        if let Some(public) = self.peer_public {
            claims.push(Claim::PeerKey {
                public,
                boot_id: self.boot_id,
            });
        }
        if let Some(c) = &self.coordinator {
            claims.push(Claim::Coordinator {
                public: c.public,
                owner: c.owner,
                min_policy_version: c.min_policy_version,
                boot_id: self.boot_id,
            });
        }
        claims.extend(self.models.iter().map(ModelFacts::claim));
        claims
    }
}

/// The evidence of one boot: an issuer holding every claim, attested once.
pub struct MonitorEvidence {
    issuer: Issuer,
    principals: Vec<String>,
}

/// One principal's bundle, encoded (`omega_evidence::Bundle`, postcard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalBundle {
    pub principal: String,
    pub bundle: Vec<u8>,
}

impl MonitorEvidence {
    /// An issuer keyed from `seed` (the monitor's evidence key, never the log key) with
    /// every claim of `facts`, each salted with 32 fresh bytes from `rng`.
    pub fn new(seed: [u8; 32], facts: &Facts, rng: &mut impl HwRng) -> Result<Self, AttestError> {
        let mut issuer = Issuer::new(seed)?;
        let mut principals = Vec::new();
        for claim in facts.claims() {
            let mut salt = [0u8; 32];
            entropy::fill(rng, &mut salt)?;
            principals.push(claim.principal());
            issuer.add(claim, salt)?;
        }
        Ok(MonitorEvidence { issuer, principals })
    }

    /// Freezes the claims under `nonce`; returns REPORT_DATA for the report request.
    pub fn attest(&mut self, nonce: [u8; 32]) -> Result<[u8; 64], AttestError> {
        Ok(self.issuer.attest(nonce)?)
    }

    pub fn principals(&self) -> &[String] {
        &self.principals
    }

    /// Every principal's bundle, bound to `report` (or explicitly unattested with `None`),
    /// and the attested root.
    pub fn bundles(
        &self,
        report: Option<&[u8; REPORT_LEN]>,
    ) -> Result<(Vec<PrincipalBundle>, [u8; 32]), AttestError> {
        let mut out = Vec::with_capacity(self.principals.len());
        let mut root = [0u8; 32];
        for p in &self.principals {
            let b = self.issuer.bundle(p, report.map(|r| r.to_vec()), None)?;
            root = b.base_root;
            out.push(PrincipalBundle {
                principal: p.clone(),
                bundle: b.encode()?,
            });
        }
        Ok((out, root))
    }
}
