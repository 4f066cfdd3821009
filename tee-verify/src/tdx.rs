//! Intel TDX: a DCAP quote (v4 or v5, ECDSA P-256) with the PCS collateral it was issued under.
//!
//! The cryptography is the `dcap-qvl` crate's (pure Rust, offline, no_std): quote signature by
//! the attestation key, the QE report signed by the PCK, the PCK chain to Intel's SGX root CA
//! (pinned in that crate), the CRLs, TCB info and QE identity signatures and validity as of the
//! caller's time, and the TCB level matched against the platform's SVNs. Debug TDs are refused.
//! What it reports is mapped onto the one [`Verified`] shape; the TCB status is kept, never
//! folded into success.

use alloc::{format, string::String, vec::Vec};

use dcap_qvl::QuoteCollateralV3;

use crate::{Error, TcbStatus, Tee, Verified};

/// SECURITY: a quote with its certification data is ~5 KiB and collateral ~20 KiB; larger input
/// from the host is refused before parsing.
pub const MAX_QUOTE: usize = 16 * 1024;
pub const MAX_COLLATERAL: usize = 128 * 1024;

/// Verifies a TDX `quote` with its PCS `collateral` (the JSON form Intel's PCCS and
/// `dcap-qvl` use) as of `now_secs`.
pub fn verify(quote: &[u8], collateral_json: &[u8], now_secs: u64) -> Result<Verified, Error> {
    if quote.len() > MAX_QUOTE || collateral_json.len() > MAX_COLLATERAL {
        return Err(Error::Tdx(String::from(
            "quote or collateral larger than the bound",
        )));
    }
    let collateral: QuoteCollateralV3 = serde_json::from_slice(collateral_json)
        .map_err(|e| Error::Tdx(format!("collateral is not PCS JSON: {e}")))?;
    let report = dcap_qvl::verify::verify(quote, &collateral, now_secs).map_err(|e| {
        let text = format!("{e:#}");
        // Intel's QVL calls this TCB_NOT_SUPPORTED: the platform is older than anything the
        // collateral rates, which is a status to report, not a parse failure.
        if text.contains("No matching TCB level") {
            Error::TdxTcbNotListed
        } else {
            Error::Tdx(text)
        }
    })?;
    let td = report
        .report
        .as_td10()
        .ok_or_else(|| Error::Tdx(String::from("quote is SGX, not TDX")))?;
    let registers: Vec<(String, Vec<u8>)> = [
        ("RTMR0", &td.rt_mr0[..]),
        ("RTMR1", &td.rt_mr1[..]),
        ("RTMR2", &td.rt_mr2[..]),
        ("RTMR3", &td.rt_mr3[..]),
        ("MRCONFIGID", &td.mr_config_id[..]),
        ("MROWNER", &td.mr_owner[..]),
        ("MROWNERCONFIG", &td.mr_owner_config[..]),
        ("MRSEAM", &td.mr_seam[..]),
    ]
    .into_iter()
    .map(|(n, v)| (String::from(n), v.to_vec()))
    .collect();
    let tcb = match report.status.as_str() {
        "UpToDate" => TcbStatus::UpToDate,
        "OutOfDate" => TcbStatus::OutOfDate {
            advisories: report.advisory_ids.clone(),
        },
        other => TcbStatus::Other {
            status: String::from(other),
            advisories: report.advisory_ids.clone(),
        },
    };
    Ok(Verified {
        tee: Tee::Tdx,
        measurement: td.mr_td.to_vec(),
        registers,
        report_data: td.report_data.to_vec(),
        tcb,
        // TDATTRIBUTES bit 0: the TD is debuggable (its memory readable by the host).
        debug: td.td_attributes[0] & 1 != 0,
        nitro: None,
    })
}
