//! One verified-evidence shape for every TEE a fleet admits ([`omega_tee_verify::Verified`]):
//! SNP reports verified here, TDX quotes and Nitro documents by `omega-tee-verify`, and the
//! admission expectations (launch measurement, bound data, TCB, debug) checked once for all.

use omega_tee_verify::{TcbStatus, Tee, Verified};

use crate::verify::VerifyOutcome;

pub use omega_tee_verify::nitro::root_der as nitro_root_der;

/// The SNP outcome in the common shape, when every check passed (`None` otherwise).
/// SNP reports carry no vendor TCB rating: the `--min-tcb` pin already checked it, so the
/// status is [`TcbStatus::NotApplicable`].
pub fn from_snp(outcome: &VerifyOutcome) -> Option<Verified> {
    let r = outcome.report.as_ref().filter(|_| outcome.verified())?;
    Some(Verified {
        tee: Tee::SevSnp,
        measurement: r.measurement.to_vec(),
        registers: vec![("HOST_DATA".into(), r.host_data.to_vec())],
        report_data: r.report_data.to_vec(),
        tcb: TcbStatus::NotApplicable,
        debug: r.policy.debug,
        nitro: None,
    })
}

/// What an admitting verifier requires of verified evidence, whatever its TEE.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// The launch measurement (SNP MEASUREMENT, TDX MRTD, Nitro PCR0).
    pub measurement: Option<Vec<u8>>,
    /// A prefix the bound data must start with (e.g. the hash of the node's key).
    pub report_data_prefix: Option<Vec<u8>>,
    /// Accept a TCB the vendor rates other than up to date.
    pub allow_out_of_date: bool,
    pub allow_debug: bool,
}

/// The expectations `v` fails, as readable reasons (empty: admitted).
pub fn shortfalls(v: &Verified, want: &Expectations) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = want.measurement.as_ref().filter(|m| **m != v.measurement) {
        out.push(format!(
            "{} measurement {} is not the expected {}",
            v.tee.name(),
            hex::encode(&v.measurement),
            hex::encode(m)
        ));
    }
    if let Some(p) = want
        .report_data_prefix
        .as_ref()
        .filter(|p| !v.report_data.starts_with(p))
    {
        out.push(format!("bound data does not start with {}", hex::encode(p)));
    }
    match &v.tcb {
        TcbStatus::UpToDate | TcbStatus::NotApplicable => {}
        _ if want.allow_out_of_date => {}
        TcbStatus::OutOfDate { advisories } => out.push(format!(
            "TCB out of date (advisories: {})",
            advisories.join(", ")
        )),
        TcbStatus::Other { status, advisories } => out.push(format!(
            "TCB status {status} (advisories: {})",
            advisories.join(", ")
        )),
    }
    if v.debug && !want.allow_debug {
        out.push(format!(
            "{} guest is debuggable: its host can read it",
            v.tee.name()
        ));
    }
    out
}
