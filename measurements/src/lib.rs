//! Verifier-side tools for Omega on AMD SEV-SNP.
//!
//! * [`digest`]: recompute the SNP launch digest of a firmware image (what a genuine
//!   report's `MEASUREMENT` must be), bit-for-bit equal to `sev-snp-measure --mode snp`.
//! * [`report`]: parse an SNP attestation report (versions 2, 3, 5).
//! * [`verify`]: verify a report against AMD's ARK → ASK → VCEK chain and the verifier's
//!   expectations, one [`Check`] per property.
//! * [`tee`]: every TEE's verified evidence in one shape (SNP here, TDX and Nitro through
//!   `omega-tee-verify`) and the admission expectations checked on it.
//!
//! The API is stable for the other verifier commands (`verify-evidence`):
//!
//! ```no_run
//! use measurements::{digest, verify_report, CertSource, Family, VerifyOptions};
//! # fn f(image: &[u8], report: &[u8], vcek: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let ld = digest::launch_digest(image, 1, digest::VcpuType::EpycMilan, 0x1, &Default::default())?;
//! let opts = VerifyOptions { expect_measurement: Some(ld), ..Default::default() };
//! let outcome = verify_report(report, vcek, CertSource::Family(Family::Milan), &opts);
//! for c in outcome.failures() {
//!     eprintln!("{}: {}", c.name, c.message);
//! }
//! assert!(outcome.verified());
//! # Ok(()) }
//! ```
//!
//! All functions take untrusted bytes: they check every length and offset and return
//! errors (or failed checks); they never panic.
#![forbid(unsafe_code)]

/// The launch digest lives in its own small crate (what `image-build` needs); re-exported
/// here so verifiers find the whole toolbox in one place.
pub use ::launch_digest as digest;
/// The report's fields (one parser with the monitor: `omega-snp-verify`).
pub use omega_snp_verify::report;
pub mod tee;
pub mod verify;

pub use digest::{DigestError, DigestOptions, KernelHashes, Measurer, VcpuType, launch_digest};
pub use report::{AttestationReport, ReportError};
pub use verify::{
    CaChain, CertSource, Check, Family, MinTcb, Vcek, VerifyOptions, VerifyOutcome, verify_report,
};
