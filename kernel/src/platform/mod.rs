//! The platform abstraction: what differs between a plain VM and an SEV-SNP guest sits
//! behind [`Platform`], so both run one boot flow (as Oak's stage0 does with its platforms).
//! The kernel picks the implementation at run time from the boot info:
//!
//! - [`NoTee`] (`none.rs`, here): plain QEMU, pure logic.
//! - `SevSnp` (the binary's `hw/snp.rs`): all hardware (secrets page, GHCB, PVALIDATE,
//!   page-table edits), so it lives with the rest of the `unsafe` glue.
//!
//! | operation | [`NoTee`] (plain QEMU) | SEV-SNP |
//! |---|---|---|
//! | accept RAM not validated at launch | nothing to do | PVALIDATE (2 MiB, 4 KiB fallback) |
//! | share pages with the host (DMA) | nothing to do: the host sees all memory | page-state change + rescind validation |
//! | page-table bits for private memory | none | the C-bit |
//! | attestation report | refused: unattested | SNP guest request MSG_REPORT_REQ |
//! | sealing key | refused: unattested | SNP guest request MSG_KEY_REQ (bound to the measurement) |

mod none;

use omega_boot_info::{PhysRange, Tee};
use sev_snp::report::REPORT_LEN;

pub use none::NoTee;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// This platform has no hardware root of trust; evidence must say `tee: none`.
    #[error("no TEE: this platform cannot attest")]
    Unattested,
    /// The operation exists on this platform but is not implemented yet.
    #[error("{0} is not implemented on this platform yet")]
    NotImplemented(&'static str),
    /// The host or firmware refused or failed the request.
    #[error("host or firmware error: {0}")]
    Host(&'static str),
}

pub trait Platform {
    fn tee(&self) -> Tee;
    /// Makes RAM that the launch did not validate usable.
    fn accept_memory(&mut self, range: PhysRange) -> Result<(), PlatformError>;
    /// Turns pages into shared memory the host may read and write (DMA buffers).
    fn share(&mut self, range: PhysRange) -> Result<(), PlatformError>;
    /// Takes shared pages back into private memory.
    fn unshare(&mut self, range: PhysRange) -> Result<(), PlatformError>;
    /// Page-table bits that mark a mapping private (encrypted).
    fn private_pte_bits(&self) -> u64;
    /// An attestation report binding `report_data`.
    fn attestation_report(
        &mut self,
        report_data: &[u8; 64],
    ) -> Result<[u8; REPORT_LEN], PlatformError>;
    /// A 32-byte key only this image (same launch measurement) on this chip can derive.
    fn sealing_key(&mut self) -> Result<[u8; 32], PlatformError>;
}
