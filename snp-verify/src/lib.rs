//! SEV-SNP attestation reports: parsing ([`report`]) and verification against AMD's
//! certificate chain and a verifier's expectations ([`chain`]), without std, so that the
//! `measurements` CLI and a monitor (the fleet's in-image coordinator, docs/fleet.md) run
//! the same checks. Which ARK/ASK to trust is the caller's to supply ([`Roots`]): AMD's
//! published roots are in [`amd`] (from the `sev` crate, at build time), the simulated
//! PSP's lab chain in [`lab`].

#![no_std]

extern crate alloc;

pub mod amd;
pub mod chain;
pub mod lab;
pub mod report;

pub use chain::{CaChain, Check, MinTcb, Roots, Vcek, VerifyOptions, VerifyOutcome, verify_report};
pub use report::{AttestationReport, ReportError};

/// Lowercase hex of `b`.
pub(crate) fn hex(b: &[u8]) -> alloc::string::String {
    use core::fmt::Write as _;
    let mut s = alloc::string::String::with_capacity(2 * b.len());
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}
