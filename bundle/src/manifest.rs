//! `manifest.json`: which agents run which module under which policy.

use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use omega_agent_card::Skill;
use serde::{Deserialize, Serialize};

use crate::error::ManifestError;
use crate::limits::{
    MANIFEST, MAX_AGENTS, MAX_DATA, MAX_INSTANCES, MAX_NAME, valid_agent_name, valid_file_name,
};

/// The only manifest format version.
pub const MANIFEST_VERSION: u32 = 1;

/// `manifest.json` (unknown fields are refused).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version; must be [`MANIFEST_VERSION`].
    pub version: u32,
    /// File name of the policy (compiled by `policy-compiler`) in the same directory.
    pub policy: String,
    pub agents: Vec<AgentEntry>,
    /// Data files the agents read (`data_read`), each under a source the policy declares.
    /// Sent after the modules, in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<DataEntry>,
    /// File name of the tools file (`omega_tool_protocol::identity`: each tool server's
    /// command, arguments, package and version), sent last. Its digest is logged like
    /// every file's, and its contents become the `tools:<server>` evidence claims'
    /// identity; the gateway refuses to start a server that differs from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<String>,
    /// The fleet this node belongs to and its coordinator's credential key: the only
    /// authority for the monitor's peer channel (docs/fleet.md). In the manifest, so in the
    /// attested `bundle` claim: the host cannot swap the coordinator. Absent: no peer
    /// channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetEntry>,
    /// This image is its fleet's coordinator (docs/fleet.md, "The in-image coordinator"):
    /// the owner whose signed policies it applies and the lowest policy version it takes.
    /// In the manifest, so in the attested `bundle` claim, and claimed again with the
    /// coordinator's key (principal `coordinator`). Absent: the Fleet stream is not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<CoordinatorEntry>,
}

/// `coordinator` in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorEntry {
    /// The fleet owner's Ed25519 key (policy updates verify under it): 64 lowercase hex
    /// digits.
    pub owner: String,
    /// The lowest fleet-policy version this coordinator applies. SECURITY: a coordinator
    /// restarts with no memory of the versions it applied; this floor, in the measured
    /// bundle, is what keeps a host from feeding a fresh boot an old (laxer) policy. The
    /// owner raises it by publishing a new coordinator bundle.
    #[serde(default)]
    pub min_policy_version: u64,
}

/// The publisher an agent claim names for an entry that names none (or an empty one).
pub const NO_PUBLISHER: &str = "unspecified";

impl CoordinatorEntry {
    /// The owner key's bytes (`None` unless 64 lowercase hex digits).
    pub fn owner_key(&self) -> Option<[u8; 32]> {
        hex_key(&self.owner)
    }
}

/// `fleet` in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FleetEntry {
    /// The fleet's id, as its credentials name it (1..=64 of `[A-Za-z0-9._-]`).
    pub id: String,
    /// The coordinator's Ed25519 credential key: 64 lowercase hex digits. Exactly one of
    /// `coordinator` and `owner`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub coordinator: String,
    /// The fleet owner's Ed25519 key (64 lowercase hex digits): credentials count under any
    /// coordinator key the owner endorsed for this fleet, so the bundle outlives the
    /// coordinator's restarts (docs/fleet.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl FleetEntry {
    /// The coordinator key's bytes (`None` unless 64 lowercase hex digits).
    pub fn coordinator_key(&self) -> Option<[u8; 32]> {
        hex_key(&self.coordinator)
    }

    /// The owner key's bytes (`None` when absent or not 64 lowercase hex digits).
    pub fn owner_key(&self) -> Option<[u8; 32]> {
        self.owner.as_deref().and_then(hex_key)
    }

    /// Exactly one of a well-formed coordinator key and a well-formed owner key.
    fn one_root(&self) -> bool {
        match &self.owner {
            None => self.coordinator_key().is_some(),
            Some(_) => self.coordinator.is_empty() && self.owner_key().is_some(),
        }
    }
}

/// An Ed25519 key as 64 lowercase hex digits (`None` for anything else).
fn hex_key(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64
        || !s
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return None;
    }
    let nibble = |b: u8| {
        if b.is_ascii_digit() {
            b - b'0'
        } else {
            b - b'a' + 10
        }
    };
    let mut k = [0u8; 32];
    for (i, out) in k.iter_mut().enumerate() {
        *out = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
    }
    Some(k)
}

/// One data item: item `path` of data source `source` is the bundle file `file`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataEntry {
    /// Source name as the policy declares it (`source NAME …`).
    pub source: String,
    /// Item name inside the source, exactly as agents ask for it: see [`valid_data_path`].
    pub path: String,
    /// Bundle file holding the item.
    pub file: String,
}

/// What happens when an agent traps.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "on", deny_unknown_fields)]
pub enum Restart {
    /// Stay stopped (the default).
    #[default]
    Never,
    /// Start again from `run`, at most `max` times ([`MAX_RESTARTS`]).
    Trap { max: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    /// Agent name: see [`valid_agent_name`].
    pub name: String,
    /// File name of the agent's Wasm module in the same directory (ends in `.wasm`).
    pub module: String,
    /// Who published the module (shown to the operator; free text, at most [`MAX_NAME`]
    /// printable ASCII characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// Most bytes of linear memory: a module declaring more is refused, growing past it
    /// traps the agent. [`PAGE`]..=[`MAX_MEMORY`], a multiple of [`PAGE`].
    #[serde(default = "default_memory", skip_serializing_if = "is_default_memory")]
    pub memory: u64,
    /// Fuel per scheduler slice: [`MIN_FUEL_SLICE`]..=[`MAX_FUEL_SLICE`].
    #[serde(
        default = "default_fuel_slice",
        skip_serializing_if = "is_default_fuel_slice"
    )]
    pub fuel_slice: u64,
    /// Fuel for the agent's whole life (each restart starts afresh); absent: unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_budget: Option<u64>,
    #[serde(default, skip_serializing_if = "is_default_restart")]
    pub restart: Restart,
    /// Run this many copies of the agent (1..=[`MAX_INSTANCES`]), named `NAME-0` ..
    /// `NAME-(N-1)` ([`AgentEntry::instance_name`]); absent: one agent named `NAME`. Each
    /// instance has its own store, memory, fuel, labels, inbox and card; the policy decides
    /// every instance's actions as agent `NAME` (its pin, its rules), and a message to
    /// `NAME-i` as one to `NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// The agent's A2A card: its description (1..=512 bytes; default `Omega agent NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The agent's A2A card: its version (1..=64 bytes; default `sha256-` and the first 16
    /// hex digits of the module hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The agent's A2A card: its skills (`omega_agent_card::Skill`: id, name, description,
    /// tags; at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<Skill>,
}

/// Size of a Wasm page.
pub const PAGE: u64 = 64 * 1024;
/// Default and largest per-agent memory: 4 MiB and 32 MiB. Kept well under the monitor's
/// heap (64 MiB) so one agent cannot take all of it by its manifest alone.
pub const DEFAULT_MEMORY: u64 = 4 << 20;
pub const MAX_MEMORY: u64 = 32 << 20;
/// Default, smallest and largest fuel slice. Too small a slice spends the monitor's time
/// switching; too large lets one agent hold the vCPU (and the channel) for long.
pub const DEFAULT_FUEL_SLICE: u64 = 100_000;
pub const MIN_FUEL_SLICE: u64 = 1_000;
pub const MAX_FUEL_SLICE: u64 = 10_000_000;
/// Most restarts after traps a manifest may ask for.
pub const MAX_RESTARTS: u32 = 100;

/// Longest data item path (the agent ABI's `MAX_PATH`).
pub const MAX_DATA_PATH: usize = 256;

/// A data item path as the runtime accepts one from an agent: normalised (`/a/b` or `a/b`,
/// no empty, `.` or `..` segment), printable ASCII, at most [`MAX_DATA_PATH`] bytes. An item
/// under any other name could never be read.
pub fn valid_data_path(path: &str) -> bool {
    let rel = path.strip_prefix('/').unwrap_or(path);
    path.len() <= MAX_DATA_PATH
        && !rel.is_empty()
        && path.bytes().all(|b| b.is_ascii_graphic())
        && rel
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

fn default_memory() -> u64 {
    DEFAULT_MEMORY
}
fn is_default_memory(m: &u64) -> bool {
    *m == DEFAULT_MEMORY
}
fn default_fuel_slice() -> u64 {
    DEFAULT_FUEL_SLICE
}
fn is_default_fuel_slice(f: &u64) -> bool {
    *f == DEFAULT_FUEL_SLICE
}
fn is_default_restart(r: &Restart) -> bool {
    *r == Restart::Never
}

impl AgentEntry {
    /// The publisher the monitor's `agent:<name>` claim names ([`NO_PUBLISHER`] when the
    /// entry names none): what a fleet policy's agent pin must match.
    pub fn claimed_publisher(&self) -> &str {
        self.publisher
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(NO_PUBLISHER)
    }

    /// An agent with every limit at its default.
    pub fn new(name: &str, module: &str) -> AgentEntry {
        AgentEntry {
            name: name.to_string(),
            module: module.to_string(),
            publisher: None,
            memory: DEFAULT_MEMORY,
            fuel_slice: DEFAULT_FUEL_SLICE,
            fuel_budget: None,
            restart: Restart::Never,
            instances: None,
            description: None,
            version: None,
            skills: Vec::new(),
        }
    }

    /// How many agents this entry runs (1 without `instances`).
    pub fn count(&self) -> u32 {
        self.instances.unwrap_or(1)
    }

    /// The name of instance `i` (`NAME-i`), or `NAME` itself without `instances`.
    pub fn instance_name(&self, i: u32) -> String {
        match self.instances {
            None => self.name.clone(),
            Some(_) => alloc::format!("{}-{i}", self.name),
        }
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let bad = |what: &'static str| ManifestError::BadLimit {
            agent: self.name.clone(),
            what,
        };
        if let Some(p) = &self.publisher
            && (p.len() > MAX_NAME || !p.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        {
            return Err(bad("publisher: at most 64 printable ASCII characters"));
        }
        if !(PAGE..=MAX_MEMORY).contains(&self.memory) || !self.memory.is_multiple_of(PAGE) {
            return Err(bad("memory: 64 KiB..=32 MiB, a multiple of 64 KiB"));
        }
        if !(MIN_FUEL_SLICE..=MAX_FUEL_SLICE).contains(&self.fuel_slice) {
            return Err(bad("fuel_slice: 1000..=10000000"));
        }
        if let Some(n) = self.instances {
            if !(1..=MAX_INSTANCES as u32).contains(&n) {
                return Err(bad("instances: 1..=8192"));
            }
            // The last instance's name is the longest.
            if !valid_agent_name(&self.instance_name(n - 1)) {
                return Err(bad("instances: NAME-N must fit in 64 bytes"));
            }
        }
        if self.fuel_budget == Some(0) {
            return Err(bad("fuel_budget: at least 1 (omit it for no budget)"));
        }
        if let Restart::Trap { max } = self.restart
            && max > MAX_RESTARTS
        {
            return Err(bad("restart: at most 100 restarts"));
        }
        // The card's own rules (omega-agent-card), checked here so that a bundle the
        // launcher accepts always gets its cards.
        let text = omega_agent_card::valid_text;
        if let Some(d) = &self.description
            && !text(d, omega_agent_card::MAX_DESCRIPTION)
        {
            return Err(bad("description: 1..=512 bytes without control characters"));
        }
        if let Some(v) = &self.version
            && !text(v, omega_agent_card::MAX_ID)
        {
            return Err(bad("version: 1..=64 bytes without control characters"));
        }
        omega_agent_card::validate_skills(&self.skills).map_err(|e| ManifestError::BadSkills {
            agent: self.name.clone(),
            why: e.to_string(),
        })?;
        Ok(())
    }
}

impl Manifest {
    /// Parses and checks `manifest.json`.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// A manifest of `agents` (name, module file) with `policy`, as `manifest.json` bytes
    /// (bundle tools and tests write bundles with it).
    pub fn json<'a>(policy: &str, agents: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
        let m = Manifest {
            version: MANIFEST_VERSION,
            policy: policy.to_string(),
            agents: agents
                .into_iter()
                .map(|(name, module)| AgentEntry::new(name, module))
                .collect(),
            data: Vec::new(),
            tools: None,
            fleet: None,
            coordinator: None,
        };
        m.to_json()
    }

    /// This manifest as `manifest.json` bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serializes")
    }

    /// The format's rules beyond its syntax.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::Version(self.version));
        }
        if self.agents.is_empty() || self.agents.len() > MAX_AGENTS {
            return Err(ManifestError::AgentCount(self.agents.len()));
        }
        if !valid_file_name(&self.policy) || self.policy == MANIFEST {
            return Err(ManifestError::BadPolicyName(self.policy.clone()));
        }
        let mut names = BTreeSet::new();
        for a in &self.agents {
            if !valid_agent_name(&a.name) {
                return Err(ManifestError::BadAgentName(a.name.clone()));
            }
            if !names.insert(a.name.as_str()) {
                return Err(ManifestError::DuplicateAgent(a.name.clone()));
            }
            // The policy cannot double as a module: each file is sent once.
            if !valid_file_name(&a.module)
                || !a.module.ends_with(".wasm")
                || a.module == self.policy
            {
                return Err(ManifestError::BadModuleName(a.module.clone()));
            }
            a.validate()?;
        }
        // SECURITY: the expanded count is bounded before anything is expanded, and every
        // running agent's name is unique (`w` with instances and an entry called `w-1`
        // would otherwise be two agents under one name).
        let total: u64 = self.agents.iter().map(|a| u64::from(a.count())).sum();
        if total > MAX_INSTANCES as u64 {
            return Err(ManifestError::InstanceCount(total));
        }
        let mut running = BTreeSet::new();
        for (name, _) in self.running() {
            if running.contains(&name) {
                return Err(ManifestError::DuplicateAgent(name));
            }
            running.insert(name);
        }
        if let Some(f) = &self.fleet
            && (!valid_agent_name(&f.id) || !f.one_root())
        {
            return Err(ManifestError::BadFleet);
        }
        if self
            .coordinator
            .as_ref()
            .is_some_and(|c| c.owner_key().is_none())
        {
            return Err(ManifestError::BadCoordinator);
        }
        if self.data.len() > MAX_DATA {
            return Err(ManifestError::DataCount(self.data.len()));
        }
        let mut items = BTreeSet::new();
        for d in &self.data {
            if !valid_agent_name(&d.source) || !valid_data_path(&d.path) {
                return Err(ManifestError::BadData(d.source.clone(), d.path.clone()));
            }
            if !items.insert((d.source.as_str(), d.path.as_str())) {
                return Err(ManifestError::BadData(d.source.clone(), d.path.clone()));
            }
            // A data file is sent once and is neither the policy nor a module.
            if !valid_file_name(&d.file)
                || d.file == MANIFEST
                || d.file == self.policy
                || self.agents.iter().any(|a| a.module == d.file)
                || self.data.iter().filter(|o| o.file == d.file).count() > 1
            {
                return Err(ManifestError::BadDataFile(d.file.clone()));
            }
        }
        if let Some(t) = &self.tools
            && (!valid_file_name(t)
                || t == MANIFEST
                || *t == self.policy
                || self.agents.iter().any(|a| a.module == *t)
                || self.data.iter().any(|d| d.file == *t))
        {
            return Err(ManifestError::BadDataFile(t.clone()));
        }
        Ok(())
    }

    /// Every agent that runs, in manifest order with each entry's instances in index order:
    /// its name and its entry. At most [`MAX_INSTANCES`] for a validated manifest.
    pub fn running(&self) -> impl Iterator<Item = (String, &AgentEntry)> {
        self.agents
            .iter()
            .flat_map(|a| (0..a.count()).map(move |i| (a.instance_name(i), a)))
    }

    /// The bundle's files in sending order: the manifest, the policy, each module once in
    /// manifest order (agents may share a module), the data files, then the tools file.
    pub fn files(&self) -> Vec<&str> {
        let mut files = alloc::vec![MANIFEST, self.policy.as_str()];
        for a in &self.agents {
            if !files[2..].contains(&a.module.as_str()) {
                files.push(&a.module);
            }
        }
        files.extend(self.data.iter().map(|d| d.file.as_str()));
        files.extend(self.tools.as_deref());
        files
    }
}
