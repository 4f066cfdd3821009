use alloc::string::String;

use crate::limits::{MAX_AGENTS, MAX_DATA, MAX_FILES, MAX_INSTANCES, MAX_NAME, MAX_TOTAL_BYTES};

/// Why a bundle is refused (by the launcher before sending, or by the monitor on arrival).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("malformed bundle message")]
    BadMessage,
    #[error("unexpected bundle message: {0}")]
    UnexpectedMessage(&'static str),
    #[error("{0} files (limit {MAX_FILES})")]
    TooManyFiles(u32),
    #[error("{0} bytes (limit {MAX_TOTAL_BYTES})")]
    TooLarge(u64),
    #[error("bad file name {0:?}: 1..={MAX_NAME} of [A-Za-z0-9._-], not starting with '.'")]
    BadName(String),
    #[error("two files named {0:?}")]
    DuplicateName(String),
    #[error("file declared {declared} bytes, sent {got}")]
    SizeMismatch { declared: u64, got: u64 },
    #[error("content message of {got} bytes, expected {expected}")]
    ChunkSize { expected: u64, got: u64 },
    #[error("bundle declared {declared} files, sent {got}")]
    CountMismatch { declared: u32, got: u32 },
    #[error("{MANIFEST}: {0}", MANIFEST = crate::MANIFEST)]
    Manifest(#[from] ManifestError),
    #[error("file {position} is {got:?}, the manifest says {expected:?}")]
    WrongFile {
        position: usize,
        expected: String,
        got: String,
    },
    #[error("{0} is not a Wasm module")]
    NotWasm(String),
    #[error("a bundle was already delivered: one bundle per boot")]
    AlreadyDelivered,
}

/// A `manifest.json` that breaks the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Json(String),
    #[error("unsupported version {0}")]
    Version(u32),
    #[error("{0} agents (1..={MAX_AGENTS} required)")]
    AgentCount(usize),
    #[error("bad agent name {0:?}: 1..={MAX_NAME} of [A-Za-z0-9._-]")]
    BadAgentName(String),
    #[error("duplicate agent {0:?}")]
    DuplicateAgent(String),
    #[error("{0} agents with their instances (at most {MAX_INSTANCES})")]
    InstanceCount(u64),
    #[error("bad policy file name {0:?}")]
    BadPolicyName(String),
    #[error("bad module file name {0:?} (a file name ending in .wasm)")]
    BadModuleName(String),
    #[error(
        "fleet: an id of 1..={MAX_NAME} of [A-Za-z0-9._-] and either a coordinator key or an owner key of 64 lowercase hex digits"
    )]
    BadFleet,
    #[error("coordinator: an owner key of 64 lowercase hex digits")]
    BadCoordinator,
    #[error("{0} data files (at most {MAX_DATA})")]
    DataCount(usize),
    #[error("agent {agent:?}: {what}")]
    BadLimit { agent: String, what: &'static str },
    #[error("agent {agent:?}: skills: {why}")]
    BadSkills { agent: String, why: String },
    #[error("bad data item {0:?}/{1:?} (names of [A-Za-z0-9._-], each item once)")]
    BadData(String, String),
    #[error(
        "bad data file name {0:?} (a file name used once, not the manifest, policy or a module)"
    )]
    BadDataFile(String),
}
