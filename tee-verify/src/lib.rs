//! Verifiers for the TEE evidence an Omega fleet admits besides its own SNP guests: Intel TDX
//! DCAP quotes ([`tdx`]) and AWS Nitro Enclaves attestation documents ([`nitro`]), each mapped
//! onto one [`Verified`] shape so the coordinator's admission policy is written once.
//! SNP reports are verified by `measurements` (it owns the AMD chain and TCB pins) and map onto
//! the same shape there.
//!
//! Everything is offline: roots are pinned by the caller (Nitro) or by `dcap-qvl` (Intel's SGX
//! root CA), collateral is supplied, and "now" is the caller's, so recorded evidence verifies
//! as of its own time.
#![no_std]

extern crate alloc;

use alloc::{string::String, vec::Vec};

pub mod cbor;
pub mod dcap;
pub mod nitro;
pub mod tdx;

/// Which TEE produced the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tee {
    SevSnp,
    Tdx,
    Nitro,
}

impl Tee {
    pub fn name(self) -> &'static str {
        match self {
            Tee::SevSnp => "sev-snp",
            Tee::Tdx => "tdx",
            Tee::Nitro => "nitro",
        }
    }
}

/// The platform's security version as its vendor's collateral rates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcbStatus {
    UpToDate,
    /// A newer TCB exists; the advisories name what the platform lacks.
    OutOfDate {
        advisories: Vec<String>,
    },
    /// Any other vendor status (e.g. TDX `SWHardeningNeeded`, `ConfigurationNeeded`).
    Other {
        status: String,
        advisories: Vec<String>,
    },
    /// Nitro has no TCB rating in its document.
    NotApplicable,
}

/// What verified evidence says, whatever TEE produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub tee: Tee,
    /// The launch measurement a fleet policy pins: SNP MEASUREMENT, TDX MRTD, Nitro PCR0.
    pub measurement: Vec<u8>,
    /// The other measurement registers, by name (TDX RTMRs and MR fields, Nitro PCRs).
    pub registers: Vec<(String, Vec<u8>)>,
    /// The 64 bytes the guest bound (SNP REPORT_DATA, TDX REPORTDATA) or Nitro's `user_data`.
    pub report_data: Vec<u8>,
    pub tcb: TcbStatus,
    /// The TEE lets its host read the guest (SNP policy DEBUG, TDX DEBUG attribute, Nitro debug mode).
    pub debug: bool,
    /// Nitro's own fields (module id, timestamp, nonce, public key), when `tee` is Nitro.
    pub nitro: Option<nitro::NitroDocument>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("malformed CBOR: {0}")]
    Cbor(#[from] cbor::CborError),
    #[error("Nitro attestation document refused: {0}")]
    Nitro(&'static str),
    #[error(
        "TDX platform TCB is below every level in Intel's TCB info (out of date, not supported)"
    )]
    TdxTcbNotListed,
    #[error("TDX quote refused: {0}")]
    Tdx(String),
}
