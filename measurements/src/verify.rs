//! Verification of an SEV-SNP attestation report: the checks are `omega-snp-verify`'s
//! (no_std, shared with the monitor; its `chain` module lists them, by stable name); this
//! module supplies the roots a verifier picks ([`CertSource`]): AMD's published ARK and ASK
//! of a generation (from the `sev` crate), explicit PEM files, or the simulated PSP's lab
//! root.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub use omega_snp_verify::chain::{Check, MinTcb, Vcek, VerifyOptions, VerifyOutcome};

/// An AMD EPYC generation whose ARK/ASK ship with this tool (`omega_snp_verify::amd`: the
/// `sev` crate's `src/certs/snp/builtin/`, the certificates AMD publishes at
/// kdsintf.amd.com).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Milan,
    Genoa,
    Turin,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Milan, Family::Genoa, Family::Turin];

    /// This generation's (name, ARK, ASK) in `omega_snp_verify::amd` (the `sev` crate's
    /// copies, shared with the monitor).
    fn roots(self) -> (&'static str, &'static [u8], &'static [u8]) {
        omega_snp_verify::amd::FAMILIES[self as usize]
    }

    /// AMD's root key certificate (PEM).
    pub fn ark_pem(self) -> &'static [u8] {
        self.roots().1
    }

    /// AMD's signing key certificate (PEM).
    pub fn ask_pem(self) -> &'static [u8] {
        self.roots().2
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Milan => "milan",
            Family::Genoa => "genoa",
            Family::Turin => "turin",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Family {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Family::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown family {s:?} (milan, genoa, turin)"))
    }
}

/// Where the ARK and ASK come from.
#[derive(Debug, Clone, Copy)]
pub enum CertSource<'a> {
    /// The builtin AMD certificates of a generation.
    Family(Family),
    /// Explicit PEM certificates (e.g. fetched from AMD's KDS).
    Pem { ark: &'a [u8], ask: &'a [u8] },
    /// The simulated PSP's lab ARK and ASK (`omega-sim-psp`): no hardware behind them.
    /// The only way the lab root passes `ark.amd_root`; its outcome is `tee: simulated`.
    Lab,
}

impl CertSource<'_> {
    /// The evidence `tee` a report verified under these roots stands for.
    pub fn tee(&self) -> &'static str {
        match self {
            CertSource::Lab => omega_evidence::TEE_SIMULATED,
            CertSource::Family(_) | CertSource::Pem { .. } => omega_evidence::TEE_SEV_SNP,
        }
    }
}

/// AMD's published ARKs, by generation name: what `ark.amd_root` accepts.
pub fn amd_arks() -> [(&'static str, &'static [u8]); 3] {
    Family::ALL.map(|f| (f.name(), f.ark_pem()))
}

impl<'a> CertSource<'a> {
    /// The ARK and ASK to check a chain under (no_std `omega-snp-verify`), and what the ARK
    /// may be; `amd` from [`amd_arks`].
    pub fn roots(&self, amd: &'a [(&'static str, &'static [u8])]) -> omega_snp_verify::Roots<'a> {
        let (ark, ask) = match *self {
            CertSource::Family(f) => (f.ark_pem(), f.ask_pem()),
            CertSource::Pem { ark, ask } => (ark, ask),
            CertSource::Lab => (omega_sim_psp::LAB_ARK_PEM, omega_sim_psp::LAB_ASK_PEM),
        };
        omega_snp_verify::Roots {
            ark,
            ask,
            amd_arks: amd,
            lab: matches!(self, CertSource::Lab),
        }
    }
}

/// AMD's ARK and ASK, checked once ([`omega_snp_verify::CaChain`] under a [`CertSource`]).
#[derive(Debug, Clone)]
pub struct CaChain(omega_snp_verify::CaChain);

impl CaChain {
    /// Checks `ca.parse`, `ark.amd_root`, `ark.self_signed`, `ask.signed_by_ark`.
    pub fn new(certs: CertSource<'_>, opts: &VerifyOptions) -> Self {
        let amd = amd_arks();
        CaChain(omega_snp_verify::CaChain::new(&certs.roots(&amd), opts))
    }

    /// The checks run so far.
    pub fn checks(&self) -> &[Check] {
        self.0.checks()
    }

    /// Whether every CA check passed.
    pub fn trusted(&self) -> bool {
        self.0.trusted()
    }

    /// Checks `vcek.parse` and `vcek.signed_by_ask` for a chip's VCEK (DER).
    pub fn vcek(&self, vcek_der: &[u8]) -> Vcek {
        self.0.vcek(vcek_der)
    }
}

/// Verifies `report` (raw 1184 bytes) with the chip's VCEK (`vcek_der`) under the ARK/ASK
/// of `certs`, and the expectations of `opts`. Never panics, whatever the bytes.
pub fn verify_report(
    report: &[u8],
    vcek_der: &[u8],
    certs: CertSource<'_>,
    opts: &VerifyOptions,
) -> VerifyOutcome {
    CaChain::new(certs, opts)
        .vcek(vcek_der)
        .verify_report(report, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_tcb_parses() {
        let m: MinTcb = "bl=3, tee=0,snp=8,ucode=115".parse().unwrap();
        assert_eq!(
            m,
            MinTcb {
                fmc: None,
                bootloader: Some(3),
                tee: Some(0),
                snp: Some(8),
                microcode: Some(115)
            }
        );
        assert_eq!("".parse::<MinTcb>(), Ok(MinTcb::default()));
        assert!("bl=256".parse::<MinTcb>().is_err());
        assert!("foo=1".parse::<MinTcb>().is_err());
        assert!("bl".parse::<MinTcb>().is_err());
    }

    #[test]
    fn family_names() {
        for f in Family::ALL {
            assert_eq!(f.name().parse::<Family>(), Ok(f));
            assert!(CaChain::new(CertSource::Family(f), &VerifyOptions::default()).trusted());
        }
        assert!("naples".parse::<Family>().is_err());
    }

    #[test]
    fn garbage_never_verifies() {
        let o = verify_report(
            &[],
            &[],
            CertSource::Pem { ark: b"", ask: b"" },
            &VerifyOptions::default(),
        );
        assert!(!o.verified());
        assert!(o.failures().count() >= 3);
    }

    /// The roots of each generation are the ones `omega_snp_verify::amd` names for it (the
    /// table is indexed by the enum's order) and are the `sev` crate's.
    #[test]
    fn each_family_takes_its_own_roots() {
        for f in Family::ALL {
            assert_eq!(f.roots().0, f.name());
        }
        assert_eq!(
            Family::Milan.ark_pem(),
            sev::certs::snp::builtin::milan::ARK
        );
        assert_eq!(
            Family::Genoa.ask_pem(),
            sev::certs::snp::builtin::genoa::ASK
        );
        assert_eq!(
            Family::Turin.ark_pem(),
            sev::certs::snp::builtin::turin::ARK
        );
    }
}
