//! Guest-side SEV-SNP protocol logic for the Omega monitor (issue 6).
//!
//! Pure logic: every instruction (`wrmsr`/`rdmsr` of the GHCB MSR, `VMGEXIT`, `PVALIDATE`)
//! and every access to shared memory is behind a trait the kernel implements. This crate has
//! no `unsafe`, no allocation and no global state, and is unit-tested on the host.
//!
//! Modules (spec references are to the AMD "SEV-ES Guest-Hypervisor Communication Block
//! Standardization" spec, rev 2.x, #56421, and the "SEV Secure Nested Paging Firmware ABI
//! Specification", #56860):
//!
//! - [`features`]: the SEV_STATUS check at boot (which hypervisor-enabled features the
//!   monitor implements, which it refuses, which the policy requires).
//! - [`msr_protocol`]: the GHCB MSR protocol (GHCB spec section 2.3.1).
//! - [`ghcb`]: a typed, bounds-checked view of the 4 KiB GHCB page and the NAEs the monitor uses.
//! - [`psc`]: the page state change descriptor (GHCB spec section 4.1.6) and its response checks.
//! - [`pvalidate`]: PVALIDATE policy (2 MiB with 4 KiB fallback, "no change" is an attack) and
//!   the ordering of private<->shared conversions.
//! - [`secrets`]: the SNP secrets page (ABI spec, PAGE_TYPE_SECRETS).
//! - [`cpuid_page`]: the SNP CPUID page and CPUID emulation from it; the C-bit check.
//! - [`vc`]: #VC handling: decoding and emulating CPUID, `IN`/`OUT` and MMIO `MOV`s.
//! - [`report`]: the attestation report's size and field offsets (its one home).
//! - [`guest_msg`]: SNP guest messages (ABI spec chapter "Guest Messages"), AES-256-GCM with
//!   VMPCK0, sequence numbers, attestation reports and derived keys.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod cpuid_page;
pub mod features;
pub mod ghcb;
pub mod guest_msg;
pub mod lab;
pub mod msr_protocol;
pub mod psc;
pub mod pvalidate;
pub mod report;
pub mod secrets;
pub mod vc;

pub use cpuid_page::{CpuState, CpuidError, CpuidTable};
pub use ghcb::{Ghcb, GhcbError, GhcbPlatform};
pub use guest_msg::{
    DerivedKey, DerivedKeyRequest, GuestMessenger, GuestMsgError, GuestRequestTransport, KeySel,
    ReportRequest,
};
pub use msr_protocol::{GhcbMsr, MsrError, SevInfo, TerminationReason};
pub use psc::{GhcbPageStateChange, MsrPageStateChange, PageStateChange, PscDescriptor, PscError};
pub use pvalidate::{MemRange, Pvalidate, PvalidateError, PvalidateResult};
pub use secrets::{SecretsError, SecretsPage, Vmpck};
pub use vc::{Regs, VcEnv, VcError};

/// Size of a small (4 KiB) page.
pub const PAGE_SIZE_4K: u64 = 0x1000;
/// Size of a large (2 MiB) page.
pub const PAGE_SIZE_2M: u64 = 0x20_0000;

/// Page size operand of PVALIDATE and of page state change entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB.
    Size4K,
    /// 2 MiB.
    Size2M,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => PAGE_SIZE_4K,
            PageSize::Size2M => PAGE_SIZE_2M,
        }
    }
}

/// Page state requested from the host (GHCB spec 2.3.1 "SNP Page State Change", and the
/// `operation` field of PSC entries, section 4.1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// Page assignment, private (operation 1).
    Private,
    /// Page assignment, shared (operation 2).
    Shared,
}

impl PageState {
    /// The 4-bit operation code of the spec.
    pub const fn op(self) -> u64 {
        match self {
            PageState::Private => 1,
            PageState::Shared => 2,
        }
    }
}

/// The GHCB protocol versions this crate implements (GHCB spec 2.x; version 2 adds SNP).
pub const GHCB_PROTOCOL_MIN: u16 = 2;
/// See [`GHCB_PROTOCOL_MIN`].
pub const GHCB_PROTOCOL_MAX: u16 = 2;
