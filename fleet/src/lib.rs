//! The fleet's trusted logic (issue 17), pure and no_std so that the coordinator can move into
//! an Omega image and monitors can check credentials themselves:
//!
//! * [`policy`]: the fleet policy (allowed launch digests per TEE and VM shape, minimum TCB,
//!   agent pins, cross-image routes), its canonical postcard form and owner-signed updates
//!   whose version only grows.
//! * [`admission`]: challenges (one use, expiring) and the admission check of a node's
//!   verified evidence: measurement, TCB, debug, and the binding of its key to the nonce.
//! * [`attest`]: an Omega node's evidence verified into that input (evidence tree, SNP
//!   report chain under the roots given, leaves of the same tree).
//! * [`credential`]: the short-lived credential the coordinator signs for an admitted node's
//!   attested key; `decode` + `verify` for monitors.
//! * [`endorsement`]: the owner's endorsement of a coordinator key, so nodes' bundles can
//!   name the owner ([`endorsement::Root`]) and survive the coordinator's restarts.
//! * [`placement`]: a coordinator-signed placement (bundle on node, with the challenge nonce):
//!   the only form in which a scheduler's decision counts.
//! * [`peer`]: [`peer::CredentialAuthority`], the credential as the peer channel's
//!   `PeerAuthority` (who a proven peer key belongs to).
//! * [`route`]: which `role/agent` may message which across images.
//! * [`coordinator`]: the above put together, with the coordinator's key and state.
//! * [`service`]: the coordinator as requests and answers over a byte stream (the in-image
//!   coordinator's Fleet stream), with its clock anchored by the owner-signed policy.
//!
//! Design principles: nothing here trusts its input (every decoder is bounded, strict and
//! fuzzed); every signature covers a domain tag, so no signed object can pass for another;
//! every refusal names the rule that refused.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod admission;
pub mod attest;
pub mod coordinator;
pub mod credential;
pub mod endorsement;
pub mod peer;
pub mod placement;
pub mod policy;
pub mod route;
pub mod service;
pub mod signed;

use alloc::string::String;
use serde::{Deserialize, Serialize};

pub use admission::{Attested, Binding, Challenges, Refusal, Tcb, TcbRating};
pub use coordinator::Coordinator;
pub use credential::Credential;
pub use placement::Placement;
pub use policy::{FleetPolicy, PolicyStore};
pub use route::{Decision, Rule, authorize};

/// The TEE that produced a node's evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tee {
    SevSnp,
    Tdx,
    Nitro,
    /// The simulated PSP of the lab tests (`omega-sim-psp`): no hardware behind it. A policy
    /// admits it only with `allow_simulated`.
    Simulated,
}

impl Tee {
    pub fn name(self) -> &'static str {
        match self {
            Tee::SevSnp => "sev-snp",
            Tee::Tdx => "tdx",
            Tee::Nitro => "nitro",
            Tee::Simulated => "simulated",
        }
    }

    pub fn from_name(s: &str) -> Option<Tee> {
        [Tee::SevSnp, Tee::Tdx, Tee::Nitro, Tee::Simulated]
            .into_iter()
            .find(|t| t.name() == s)
    }
}

/// Longest fleet, node, role, agent, publisher or image name.
pub const MAX_NAME: usize = 64;
/// Bytes of a launch measurement (SNP MEASUREMENT, TDX MRTD, Nitro PCR0: all SHA-384).
pub const MEASUREMENT_LEN: usize = 48;

/// A name in the fleet's vocabulary: 1..=64 bytes of `[A-Za-z0-9._-]` (no `/`, so
/// `role/agent` is unambiguous, and no `*`, the route wildcard).
pub fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Seconds since the Unix epoch, as the caller's clock says.
pub type Time = u64;

/// Errors decoding or checking a signed object (policy, credential, placement).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} larger than its limit")]
    TooLarge(&'static str),
    #[error("{0} does not decode")]
    Malformed(&'static str),
    #[error("trailing bytes after {0}")]
    Trailing(&'static str),
    #[error("{0} signature does not verify under the expected key")]
    BadSignature(&'static str),
    #[error("{what}: {why}")]
    Invalid { what: &'static str, why: String },
}

#[cfg(test)]
mod tests;
