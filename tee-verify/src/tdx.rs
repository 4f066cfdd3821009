//! Intel TDX: a DCAP quote (v4 or v5, ECDSA P-256) with the PCS collateral it was issued under,
//! verified by [`crate::dcap`] (ours, no_std: the in-image coordinator runs it) and mapped onto
//! the one [`Verified`] shape. The TCB status is kept, never folded into success.

use alloc::{format, string::String, vec::Vec};

use crate::dcap::{self, Collateral, Failure, Status};
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
    let collateral: Collateral = serde_json::from_slice(collateral_json)
        .map_err(|e| Error::Tdx(format!("collateral is not PCS JSON: {e}")))?;
    let v = dcap::verify(quote, &collateral, now_secs).map_err(|f| match f {
        Failure::TcbNotListed => Error::TdxTcbNotListed,
        Failure::Refused(r) => Error::Tdx(String::from(r.0)),
    })?;
    let td = &v.report;
    let registers: Vec<(String, Vec<u8>)> = [
        ("RTMR0", &td.rt_mr[0][..]),
        ("RTMR1", &td.rt_mr[1][..]),
        ("RTMR2", &td.rt_mr[2][..]),
        ("RTMR3", &td.rt_mr[3][..]),
        ("MRCONFIGID", &td.mr_config_id[..]),
        ("MROWNER", &td.mr_owner[..]),
        ("MROWNERCONFIG", &td.mr_owner_config[..]),
        ("MRSEAM", &td.mr_seam[..]),
    ]
    .into_iter()
    .map(|(n, v)| (String::from(n), v.to_vec()))
    .collect();
    let tcb = match v.status {
        Status::UpToDate => TcbStatus::UpToDate,
        Status::OutOfDate => TcbStatus::OutOfDate {
            advisories: v.advisories.clone(),
        },
        other => TcbStatus::Other {
            status: String::from(other.name()),
            advisories: v.advisories.clone(),
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
