//! Agent bundles: a directory with `manifest.json`, the Wasm modules and a policy file.

use std::path::Path;

use serde::Deserialize;

/// Largest single file the host will send.
pub const MAX_FILE: u64 = 64 * 1024 * 1024;
/// Largest number of agents in one bundle.
pub const MAX_AGENTS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("manifest.json: {0}")]
    Manifest(#[from] serde_json::Error),
    #[error("manifest.json: {0}")]
    Invalid(String),
}

/// `manifest.json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version; must be 1.
    pub version: u32,
    /// File name of the policy (compiled by `policy-compiler`) in the same directory.
    pub policy: String,
    pub agents: Vec<AgentEntry>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    /// Agent name: 1-64 chars of [A-Za-z0-9_.-].
    pub name: String,
    /// File name of the agent's Wasm module in the same directory (ends in `.wasm`).
    pub module: String,
}

/// A bundle read into memory, in sending order.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: Manifest,
    /// (file name, contents): manifest.json first, then the policy, then each module in
    /// manifest order.
    pub files: Vec<(String, Vec<u8>)>,
}

fn valid_file_name(n: &str) -> bool {
    // SECURITY: plain names only, so a manifest cannot reach outside the bundle directory.
    !n.is_empty()
        && n.len() <= 128
        && n != "."
        && n != ".."
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn valid_agent_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Bundle {
    /// Reads and checks a bundle directory.
    pub fn read(dir: &Path) -> Result<Bundle, BundleError> {
        let read = |name: &str| -> Result<Vec<u8>, BundleError> {
            let path = dir.join(name);
            let io = |source| BundleError::Io {
                path: path.display().to_string(),
                source,
            };
            let meta = std::fs::metadata(&path).map_err(io)?;
            if !meta.is_file() {
                return Err(BundleError::Invalid(format!(
                    "{name} is not a regular file"
                )));
            }
            if meta.len() > MAX_FILE {
                return Err(BundleError::Invalid(format!(
                    "{name} is larger than {MAX_FILE} bytes"
                )));
            }
            std::fs::read(&path).map_err(|source| BundleError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        let manifest_bytes = read("manifest.json")?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)?;
        if manifest.version != 1 {
            return Err(BundleError::Invalid(format!(
                "unsupported version {}",
                manifest.version
            )));
        }
        if manifest.agents.is_empty() || manifest.agents.len() > MAX_AGENTS {
            return Err(BundleError::Invalid(format!(
                "1..={MAX_AGENTS} agents required"
            )));
        }
        if !valid_file_name(&manifest.policy) || manifest.policy == "manifest.json" {
            return Err(BundleError::Invalid(format!(
                "bad policy file name {:?}",
                manifest.policy
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut modules = std::collections::BTreeSet::new();
        for a in &manifest.agents {
            if !valid_agent_name(&a.name) {
                return Err(BundleError::Invalid(format!("bad agent name {:?}", a.name)));
            }
            if !names.insert(a.name.clone()) {
                return Err(BundleError::Invalid(format!(
                    "duplicate agent {:?}",
                    a.name
                )));
            }
            if !valid_file_name(&a.module) || !a.module.ends_with(".wasm") {
                return Err(BundleError::Invalid(format!(
                    "bad module file name {:?}",
                    a.module
                )));
            }
            modules.insert(a.module.clone());
        }
        let mut files = vec![("manifest.json".to_string(), manifest_bytes.clone())];
        files.push((manifest.policy.clone(), read(&manifest.policy)?));
        // Each module once, in manifest order (two agents may share one module).
        let mut sent = std::collections::BTreeSet::new();
        for a in &manifest.agents {
            if sent.insert(a.module.clone()) {
                let bytes = read(&a.module)?;
                if !bytes.starts_with(b"\0asm") {
                    return Err(BundleError::Invalid(format!(
                        "{} is not a Wasm module",
                        a.module
                    )));
                }
                files.push((a.module.clone(), bytes));
            }
        }
        Ok(Bundle { manifest, files })
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b.len() as u64).sum()
    }
}
