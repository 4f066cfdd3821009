//! `manifest.json`: which agents run which module under which policy.

use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::error::ManifestError;
use crate::limits::{MANIFEST, MAX_AGENTS, valid_agent_name, valid_file_name};

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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    /// Agent name: see [`valid_agent_name`].
    pub name: String,
    /// File name of the agent's Wasm module in the same directory (ends in `.wasm`).
    pub module: String,
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
                .map(|(name, module)| AgentEntry {
                    name: name.to_string(),
                    module: module.to_string(),
                })
                .collect(),
        };
        serde_json::to_vec(&m).expect("a manifest always serializes")
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
        }
        Ok(())
    }

    /// The bundle's files in sending order: the manifest, the policy, then each module once
    /// in manifest order (agents may share a module).
    pub fn files(&self) -> Vec<&str> {
        let mut files = alloc::vec![MANIFEST, self.policy.as_str()];
        for a in &self.agents {
            if !files[2..].contains(&a.module.as_str()) {
                files.push(&a.module);
            }
        }
        files
    }
}
