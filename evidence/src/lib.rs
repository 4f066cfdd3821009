//! Differential attestation evidence for Omega: a Merkle tree of salted per-principal claims
//! (platform, agents, policy, model/proxy, tools, log key) whose root is bound to the SEV-SNP
//! report through REPORT_DATA; later principals arrive by monitor-signed root updates.
//!
//! A principal receives a [`Bundle`] with only its own salted leaf, its inclusion proof,
//! the attested root, the root-update chain, the monitor key and the platform binding.
//! Formats are documented for third-party verifiers in `docs/evidence.md`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod bundle;
pub mod claim;
pub mod issuer;
#[cfg(feature = "std")]
pub mod json;
pub mod verify;

pub use bundle::{Binding, Bundle, Head, RootUpdate, report_data};
pub use claim::{
    CARD_PRINCIPAL, COORDINATOR_PRINCIPAL, Claim, PEER_PRINCIPAL, SaltedLeaf, TEE_NONE,
    TEE_SEV_SNP, TEE_SIMULATED, TEES, TOOLS_PREFIX, ToolIdentity, pins_digest,
};
pub use issuer::Issuer;
pub use verify::{Check, Options, Outcome, verify};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("cannot decode {0}")]
    Decode(&'static str),
    #[error("{0} too large")]
    TooLarge(&'static str),
    #[error("invalid: {0}")]
    Invalid(&'static str),
    #[error("unknown principal")]
    UnknownPrincipal,
}
