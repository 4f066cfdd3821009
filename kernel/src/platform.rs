//! The platform abstraction: what differs between a plain VM and an SEV-SNP guest sits
//! behind [`Platform`], so both run one boot flow (as Oak's stage0 does with its platforms).
//!
//! | operation | [`NoTee`] (plain QEMU) | SEV-SNP |
//! |---|---|---|
//! | accept RAM not validated at launch | nothing to do | PVALIDATE (2 MiB, 4 KiB fallback) |
//! | share pages with the host (DMA) | nothing to do: the host sees all memory | page-state change + rescind validation |
//! | page-table bits for private memory | none | the C-bit |
//! | attestation report | refused: unattested | SNP guest request MSG_REPORT_REQ |
//! | sealing key | refused: unattested | SNP guest request MSG_KEY_REQ (bound to the measurement) |

use omega_boot_info::{PhysRange, Tee};

/// Size of an SNP attestation report.
pub const REPORT_LEN: usize = 1184;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformError {
    /// This platform has no hardware root of trust; evidence must say `tee: none`.
    Unattested,
    /// The operation exists on this platform but is not implemented yet.
    NotImplemented(&'static str),
    /// The host or firmware refused or failed the request.
    Host(&'static str),
}

impl core::fmt::Display for PlatformError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PlatformError::Unattested => write!(f, "no TEE: this platform cannot attest"),
            PlatformError::NotImplemented(what) => {
                write!(f, "{what} is not implemented on this platform yet")
            }
            PlatformError::Host(why) => write!(f, "host or firmware error: {why}"),
        }
    }
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

/// A VM without a TEE: everything is visible to the host and nothing can be attested.
#[derive(Debug, Default)]
pub struct NoTee;

impl Platform for NoTee {
    fn tee(&self) -> Tee {
        Tee::None
    }
    fn accept_memory(&mut self, _range: PhysRange) -> Result<(), PlatformError> {
        Ok(())
    }
    fn share(&mut self, _range: PhysRange) -> Result<(), PlatformError> {
        Ok(())
    }
    fn unshare(&mut self, _range: PhysRange) -> Result<(), PlatformError> {
        Ok(())
    }
    fn private_pte_bits(&self) -> u64 {
        0
    }
    fn attestation_report(
        &mut self,
        _report_data: &[u8; 64],
    ) -> Result<[u8; REPORT_LEN], PlatformError> {
        // SECURITY: never fabricate evidence; callers must mark the run unattested.
        Err(PlatformError::Unattested)
    }
    fn sealing_key(&mut self) -> Result<[u8; 32], PlatformError> {
        // SECURITY: a key the host could reproduce would seal nothing.
        Err(PlatformError::Unattested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_tee_refuses_to_attest() {
        let mut p = NoTee;
        assert_eq!(p.tee(), Tee::None);
        assert_eq!(
            p.attestation_report(&[0; 64]),
            Err(PlatformError::Unattested)
        );
        assert_eq!(p.sealing_key(), Err(PlatformError::Unattested));
        assert_eq!(p.private_pte_bits(), 0);
        assert!(
            p.share(PhysRange {
                start: 0,
                end: 4096
            })
            .is_ok()
        );
    }
}
