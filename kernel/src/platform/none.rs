//! A VM without a TEE: plain QEMU.

use omega_boot_info::{PhysRange, Tee};
use sev_snp::report::REPORT_LEN;

use super::{Platform, PlatformError};

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
