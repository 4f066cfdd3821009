//! Intel DCAP quote verification for TDX, our own and no_std, so the in-image fleet
//! coordinator runs it (the `dcap-qvl` crate is its test oracle: its library also builds as a
//! `cdylib`, which cannot link for a monitor's bare-metal target).
//!
//! Following Intel's quote verification library, in trust order:
//! 1. the CRLs: the root CA's under Intel's pinned SGX root key, the PCK CA's under its chain;
//! 2. the TCB info and QE identity: issuer chain to the root, not revoked, Intel's signature
//!    over the document's exact bytes, `now` within `issueDate..nextUpdate`;
//! 3. the quote's PCK chain (in its certification data) to the root, not revoked;
//! 4. the QE report signed by the PCK key, binding SHA-256(attestation key ‖ QE auth data);
//! 5. the QE report against the QE identity (signer, product, masked attributes), its TCB level;
//! 6. the quote body signed by the attestation key;
//! 7. the platform's TCB (the PCK's FMSPC, PCE ID, SGX components and PCE SVN, the TD's
//!    TEE_TCB_SVN) against the TCB levels, the TDX module's identity and its own level;
//! 8. the statuses converged (Intel's rules); Revoked is refused outright.

use alloc::{format, string::String, vec::Vec};

use sha2::{Digest, Sha256};

mod collateral;
mod pck;
mod quote;

pub use collateral::{Collateral, INTEL_SGX_ROOT_KEY, unix_time};
pub use pck::PlatformTcb;
pub use quote::{QeReport, TdReport};

use collateral::{
    Crls, IsvLevel, QeIdentity, TcbInfo, check_raw_signature, check_signed, hex, pem_chain,
};

/// Why a quote or its collateral was refused (a fixed text: nothing the host sent is echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// Intel's TCB statuses, in the order its collateral names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    UpToDate,
    SwHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSwHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
    /// TD 1.5: launched on an out-of-date TCB, running on a current one.
    TdRelaunchAdvised,
    TdRelaunchAdvisedConfigurationNeeded,
}

impl Status {
    fn parse(s: &str) -> Result<Self, Refused> {
        Ok(match s {
            "UpToDate" => Status::UpToDate,
            "SWHardeningNeeded" => Status::SwHardeningNeeded,
            "ConfigurationNeeded" => Status::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => Status::ConfigurationAndSwHardeningNeeded,
            "OutOfDate" => Status::OutOfDate,
            "OutOfDateConfigurationNeeded" => Status::OutOfDateConfigurationNeeded,
            "Revoked" => Status::Revoked,
            _ => return Err(Refused("collateral names an unknown TCB status")),
        })
    }

    /// Intel's name for the status.
    pub fn name(self) -> &'static str {
        match self {
            Status::UpToDate => "UpToDate",
            Status::SwHardeningNeeded => "SWHardeningNeeded",
            Status::ConfigurationNeeded => "ConfigurationNeeded",
            Status::ConfigurationAndSwHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Status::OutOfDate => "OutOfDate",
            Status::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            Status::Revoked => "Revoked",
            Status::TdRelaunchAdvised => "TDRelaunchAdvised",
            Status::TdRelaunchAdvisedConfigurationNeeded => "TDRelaunchAdvisedConfigurationNeeded",
        }
    }

    /// A component's status (the QE's, the TDX module's) folded into the platform's.
    fn converge(self, component: Status) -> Status {
        use Status::*;
        match (component, self) {
            (Revoked, _) => Revoked,
            (OutOfDate, UpToDate | SwHardeningNeeded) => OutOfDate,
            (OutOfDate, ConfigurationNeeded | ConfigurationAndSwHardeningNeeded) => {
                OutOfDateConfigurationNeeded
            }
            _ => self,
        }
    }
}

/// A verified quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub report: TdReport,
    pub status: Status,
    pub advisories: Vec<String>,
    pub platform: PlatformTcb,
}

/// Why verification failed: refused, or verified but the platform is older than every level
/// Intel's TCB info lists (Intel: TCB_NOT_SUPPORTED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Refused(Refused),
    TcbNotListed,
}

impl From<Refused> for Failure {
    fn from(r: Refused) -> Self {
        Failure::Refused(r)
    }
}

fn add_advisories(to: &mut Vec<String>, from: &[String]) {
    for a in from {
        if !to.contains(a) {
            to.push(a.clone());
        }
    }
}

/// The first TCB level the platform meets: every SGX component and the PCE SVN at least the
/// level's, and every TDX component (after the module's two, when a module identity rates
/// them) at least the level's.
fn platform_level<'a>(
    info: &'a TcbInfo,
    p: &PlatformTcb,
    tee_tcb_svn: &[u8; 16],
) -> Result<&'a collateral::TcbLevel, Failure> {
    let skip = if tee_tcb_svn[1] > 0 { 2 } else { 0 };
    for level in &info.tcb_levels {
        let t = &level.tcb;
        if t.sgxtcbcomponents.len() != 16 || t.tdxtcbcomponents.len() != 16 {
            return Err(Refused("TCB level does not list 16 SGX and 16 TDX components").into());
        }
        let sgx = t
            .sgxtcbcomponents
            .iter()
            .zip(&p.components)
            .all(|(l, &have)| have >= l.svn);
        let tdx = t
            .tdxtcbcomponents
            .iter()
            .zip(tee_tcb_svn)
            .skip(skip)
            .all(|(l, &have)| have >= l.svn);
        if sgx && tdx && p.pce_svn >= t.pcesvn {
            return Ok(level);
        }
    }
    Err(Failure::TcbNotListed)
}

fn isv_level<'a>(
    levels: &'a [IsvLevel],
    isv_svn: u16,
    none: &'static str,
) -> Result<&'a IsvLevel, Refused> {
    levels
        .iter()
        .find(|l| isv_svn >= l.tcb.isvsvn)
        .ok_or(Refused(none))
}

fn masked_equal(have: &[u8], want: &[u8], mask: &[u8]) -> bool {
    have.len() == want.len()
        && have.len() == mask.len()
        && have
            .iter()
            .zip(want)
            .zip(mask)
            .all(|((h, w), m)| h & m == w & m)
}

/// The platform's status for one TEE_TCB_SVN (the launch one, or TD 1.5's current one):
/// the platform level converged with the TDX module identity's level.
fn tdx_status(
    info: &TcbInfo,
    platform: &PlatformTcb,
    report: &TdReport,
    tee_tcb_svn: &[u8; 16],
) -> Result<(Status, Vec<String>), Failure> {
    let level = platform_level(info, platform, tee_tcb_svn)?;
    let mut status = Status::parse(&level.tcb_status)?;
    let mut advisories = level.advisory_ids.clone();
    let base = info
        .tdx_module
        .as_ref()
        .ok_or(Refused("TDX TCB info has no tdxModule"))?;
    let (mut signer, mut attributes, mut mask) =
        (&base.mrsigner, &base.attributes, &base.attributes_mask);
    // TEE_TCB_SVN[1] is the module's major version; from 1 on, a module identity rates it.
    if tee_tcb_svn[1] > 0 {
        let id = format!("TDX_{:02X}", tee_tcb_svn[1]);
        let identity = info
            .tdx_module_identities
            .iter()
            .find(|m| m.id.eq_ignore_ascii_case(&id))
            .ok_or(Refused(
                "TCB info has no identity for this TDX module version",
            ))?;
        let module = isv_level(
            &identity.tcb_levels,
            tee_tcb_svn[0] as u16,
            "TDX module SVN is below every level",
        )?;
        let module_status = Status::parse(&module.tcb_status)?;
        if !matches!(
            module_status,
            Status::UpToDate | Status::OutOfDate | Status::Revoked
        ) {
            return Err(Refused("TDX module level has a status modules cannot have").into());
        }
        status = status.converge(module_status);
        add_advisories(&mut advisories, &module.advisory_ids);
        (signer, attributes, mask) = (
            &identity.mrsigner,
            &identity.attributes,
            &identity.attributes_mask,
        );
    }
    // SECURITY: a TDX module Intel did not sign is a host's own code reading every TD.
    if report.mr_signer_seam != hex::<48>(signer)? {
        return Err(Refused("TDX module signer is not the one Intel's TCB info names").into());
    }
    let (attributes, mask) = (hex::<8>(attributes)?, hex::<8>(mask)?);
    let seam = &report.seam_attributes;
    if !masked_equal(seam, &attributes, &mask) || seam.iter().zip(&mask).any(|(s, m)| s & !m != 0) {
        return Err(Refused("TDX module attributes do not match Intel's TCB info").into());
    }
    Ok((status, advisories))
}

/// Verifies a TDX `quote` under `collateral` as of `now` (Unix seconds).
pub fn verify(quote: &[u8], collateral: &Collateral, now: u64) -> Result<Verified, Failure> {
    // The host's bytes are parsed before any signature work: garbage costs nothing.
    let q = quote::parse(quote)?;
    // 1-2. CRLs, then the signed collateral.
    let crls = Crls::check(collateral, now)?;
    let info: TcbInfo = check_signed(
        &collateral.tcb_info,
        &collateral.tcb_info_signature,
        &collateral.tcb_info_issuer_chain,
        &crls,
        now,
        |i: &TcbInfo| (&i.issue_date, &i.next_update),
    )?;
    if info.id != "TDX" || info.version < 3 {
        return Err(Refused("TCB info is not TDX TCB info (v3)").into());
    }
    let qe: QeIdentity = check_signed(
        &collateral.qe_identity,
        &collateral.qe_identity_signature,
        &collateral.qe_identity_issuer_chain,
        &crls,
        now,
        |q: &QeIdentity| (&q.issue_date, &q.next_update),
    )?;
    if qe.id != "TD_QE" || !(2..=3).contains(&qe.version) {
        return Err(Refused("QE identity is not the TD quoting enclave's").into());
    }

    // 3. The quote's PCK chain.
    let chain = pem_chain(q.pck_chain_pem)?;
    if chain.len() != 3 {
        return Err(Refused("PCK chain is not PCK, PCK CA, root").into());
    }
    let pck_key = crls.check_chain(&chain, now)?;
    let platform = pck::platform_tcb(&chain[0])?;

    // 4. The QE report, signed by the PCK, binds the attestation key.
    check_raw_signature(&pck_key, q.qe_report_raw, &q.qe_report_signature)
        .map_err(|_| Refused("QE report signature does not verify under the PCK key"))?;
    let mut bound = Sha256::new();
    bound.update(q.attestation_key);
    bound.update(q.qe_auth_data);
    let r = &q.qe_report;
    if r.report_data[..32] != bound.finalize()[..] || r.report_data[32..] != [0; 32] {
        return Err(Refused("QE report does not bind the attestation key").into());
    }

    // 5. The QE is Intel's TD quoting enclave at a rated SVN.
    if r.mr_signer != hex::<32>(&qe.mrsigner)?
        || r.isv_prod_id != qe.isvprodid
        || !masked_equal(
            &r.misc_select.to_le_bytes(),
            &hex::<4>(&qe.miscselect)?,
            &hex::<4>(&qe.miscselect_mask)?,
        )
        || !masked_equal(
            &r.attributes,
            &hex::<16>(&qe.attributes)?,
            &hex::<16>(&qe.attributes_mask)?,
        )
    {
        return Err(Refused("quoting enclave does not match Intel's QE identity").into());
    }
    let qe_level = isv_level(
        &qe.tcb_levels,
        r.isv_svn,
        "quoting enclave SVN is below every level",
    )?;
    let qe_status = Status::parse(&qe_level.tcb_status)?;

    // 6. The quote body, signed by the attestation key.
    let mut key = [0x04; 65];
    key[1..].copy_from_slice(&q.attestation_key);
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key)
        .map_err(|_| Refused("attestation key is not a P-256 point"))?;
    check_raw_signature(&key, q.signed, &q.signature)
        .map_err(|_| Refused("quote signature does not verify under the attestation key"))?;

    // 7. The platform's TCB.
    let fmspc = hex::<6>(&info.fmspc)?;
    let pce_id = hex::<2>(&info.pce_id)?;
    if platform.fmspc != fmspc || platform.pce_id != pce_id {
        return Err(Refused("TCB info is for another platform (FMSPC or PCE ID)").into());
    }
    let report = q.report;
    let (status, mut advisories) = tdx_status(&info, &platform, &report, &report.tee_tcb_svn)?;
    // 8. Converge with the QE's level; TD 1.5 also rates the TCB it runs on now.
    let mut status = status.converge(qe_status);
    add_advisories(&mut advisories, &qe_level.advisory_ids);
    if let Some((current_svn, _)) = &report.td15 {
        let (current, _) = tdx_status(&info, &platform, &report, current_svn)?;
        let current = current.converge(qe_status);
        if current == Status::Revoked {
            status = Status::Revoked;
        } else if matches!(
            status,
            Status::OutOfDate | Status::OutOfDateConfigurationNeeded
        ) && !matches!(
            current,
            Status::OutOfDate | Status::OutOfDateConfigurationNeeded
        ) {
            status = if matches!(
                current,
                Status::ConfigurationNeeded | Status::ConfigurationAndSwHardeningNeeded
            ) || status == Status::OutOfDateConfigurationNeeded
            {
                Status::TdRelaunchAdvisedConfigurationNeeded
            } else {
                Status::TdRelaunchAdvised
            };
        }
    }
    // SECURITY: Revoked means Intel withdrew the platform's keys.
    if status == Status::Revoked {
        return Err(Refused("Intel rates this platform's TCB Revoked").into());
    }
    Ok(Verified {
        report,
        status,
        advisories,
        platform,
    })
}
