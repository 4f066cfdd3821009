//! From evidence to the admission input. An Omega node's evidence is checked by the no_std
//! `omega_fleet::attest` (what an in-image coordinator runs too) under the roots chosen here;
//! a Nitro guest's document too, by the coordinator (`omega_fleet::attest::nitro_node`, under
//! the policy's Nitro root) and a TDX guest's quote (`omega_fleet::attest::tdx_node`, to
//! Intel's root pinned in `omega-tee-verify`'s DCAP verification). The admission decision (measurement, TCB, debug, binding, nonce) is
//! the no_std `omega_fleet::admission::check`, which recomputes the binding itself.

use anyhow::anyhow;
use omega_fleet::attest::SnpChain;
use omega_fleet::{Attested, Tee};

pub use omega_fleet::attest::platform_boot_id;

/// Which roots an Omega node's SNP report is checked under.
#[derive(Debug, Clone)]
pub enum SnpRoots {
    /// The simulated PSP's lab chain (tests): evidence maps to [`Tee::Simulated`].
    Lab,
    /// AMD's builtin roots of a family and the chip's VCEK (DER).
    Amd {
        family: measurements::Family,
        vcek: Vec<u8>,
    },
}

impl SnpRoots {
    /// The chain `omega_fleet::attest` checks a report under (the roots as `measurements`
    /// picks them); `amd` from `measurements::verify::amd_arks`.
    fn chain<'a>(&'a self, amd: &'a [(&'static str, &'static [u8])]) -> SnpChain<'a> {
        match self {
            SnpRoots::Lab => SnpChain {
                roots: measurements::CertSource::Lab.roots(amd),
                vcek: omega_sim_psp::LAB_VCEK_DER,
                tee: Tee::Simulated,
            },
            SnpRoots::Amd { family, vcek } => SnpChain {
                roots: measurements::CertSource::Family(*family).roots(amd),
                vcek,
                tee: Tee::SevSnp,
            },
        }
    }
}

/// An Omega node's `platform` and `bundle` evidence verified for the coordinator's `nonce`
/// under `roots` (`omega_fleet::attest::omega_node`).
pub fn omega_node(
    platform: &[u8],
    bundle_evidence: &[u8],
    nonce: &[u8; 32],
    roots: &SnpRoots,
) -> anyhow::Result<Attested> {
    let amd = measurements::verify::amd_arks();
    omega_fleet::attest::omega_node(platform, bundle_evidence, nonce, &roots.chain(&amd))
        .map_err(|e| anyhow!(e))
}

/// An Omega node's `peer` evidence in the same attested tree (`omega_fleet::attest::omega_peer`).
pub fn omega_peer(a: &mut Attested, peer_evidence: &[u8], nonce: &[u8; 32]) -> anyhow::Result<()> {
    omega_fleet::attest::omega_peer(a, peer_evidence, nonce).map_err(|e| anyhow!(e))
}

pub use omega_fleet::attest::from_verified;
