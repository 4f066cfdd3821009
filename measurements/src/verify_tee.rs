//! `measurements verify-tee`: Intel TDX quotes and AWS Nitro attestation documents, offline,
//! against the same expectations an SNP report meets (see `measurements::tee`).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use measurements::tee::{Expectations, shortfalls};
use omega_tee_verify::{TcbStatus, Verified, nitro, tdx};
use serde_json::json;

use crate::report_args::read;

#[derive(clap::Args, Debug)]
pub struct VerifyTeeArgs {
    /// An Intel TDX DCAP quote (binary); needs --collateral.
    #[arg(
        long,
        value_name = "FILE",
        requires = "collateral",
        conflicts_with = "nitro"
    )]
    pub tdx: Option<PathBuf>,
    /// The PCS collateral for --tdx (JSON: TCB info, QE identity, CRLs, issuer chains).
    #[arg(long, value_name = "FILE", requires = "tdx")]
    pub collateral: Option<PathBuf>,
    /// An AWS Nitro Enclaves attestation document (COSE_Sign1); needs --nitro-root.
    #[arg(long, value_name = "FILE", requires = "nitro_root")]
    pub nitro: Option<PathBuf>,
    /// AWS's Nitro Enclaves root certificate (PEM), as AWS publishes it.
    #[arg(long, value_name = "FILE", requires = "nitro")]
    pub nitro_root: Option<PathBuf>,
    /// Verify as of this time (seconds since the epoch) instead of now: recorded evidence
    /// verifies as of its own time, never as of today once its certificates expire.
    #[arg(long, value_name = "SECS")]
    pub as_of: Option<u64>,
    /// The launch measurement the evidence must carry (96 hex chars: TDX MRTD, Nitro PCR0).
    #[arg(long, value_name = "HEX")]
    pub expect_measurement: Option<String>,
    /// Hex the bound data (TDX REPORTDATA, Nitro user_data) must start with.
    #[arg(long, value_name = "HEX")]
    pub expect_report_data: Option<String>,
    /// Accept a platform whose TCB the vendor rates other than up to date.
    #[arg(long)]
    pub allow_out_of_date: bool,
    /// Accept a debuggable guest (its host can read its memory).
    #[arg(long)]
    pub allow_debug: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &VerifyTeeArgs) -> anyhow::Result<bool> {
    let now = match a.as_of {
        Some(t) => t,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("clock before 1970")?
            .as_secs(),
    };
    let hex_arg = |v: &Option<String>, name: &str| -> anyhow::Result<Option<Vec<u8>>> {
        v.as_deref()
            .map(|h| hex::decode(h.trim()).with_context(|| format!("{name}: not hex")))
            .transpose()
    };
    let want = Expectations {
        measurement: hex_arg(&a.expect_measurement, "--expect-measurement")?,
        report_data_prefix: hex_arg(&a.expect_report_data, "--expect-report-data")?,
        allow_out_of_date: a.allow_out_of_date,
        allow_debug: a.allow_debug,
    };
    let result: Result<Verified, omega_tee_verify::Error> =
        match (&a.tdx, &a.collateral, &a.nitro, &a.nitro_root) {
            (Some(q), Some(c), None, None) => tdx::verify(&read(q)?, &read(c)?, now),
            (None, None, Some(d), Some(root)) => {
                let root = measurements::tee::nitro_root_der(&read(root)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", root.display()))?;
                nitro::verify(&read(d)?, &root, now)
            }
            _ => bail!(
                "give the evidence: --tdx QUOTE --collateral JSON, or --nitro DOC --nitro-root PEM \
             (SNP reports: `measurements verify-report`)"
            ),
        };
    let (verified, problems) = match &result {
        Ok(v) => (Some(v), shortfalls(v, &want)),
        Err(e) => (None, vec![e.to_string()]),
    };
    let ok = verified.is_some() && problems.is_empty();
    if a.json {
        let v = verified.map(|v| {
            json!({
                "tee": v.tee.name(),
                "measurement": hex::encode(&v.measurement),
                "report_data": hex::encode(&v.report_data),
                "registers": v.registers.iter()
                    .map(|(n, r)| (n.clone(), serde_json::Value::String(hex::encode(r))))
                    .collect::<serde_json::Map<_, _>>(),
                "tcb": tcb_text(&v.tcb),
                "debug": v.debug,
                "nitro_module_id": v.nitro.as_ref().map(|n| n.module_id.clone()),
            })
        });
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"verified": ok, "as_of": now, "evidence": v, "problems": problems})
            )?
        );
    } else {
        if let Some(v) = verified {
            println!("tee: {}", v.tee.name());
            println!("measurement: {}", hex::encode(&v.measurement));
            println!("report_data: {}", hex::encode(&v.report_data));
            for (n, r) in &v.registers {
                println!("{n}: {}", hex::encode(r));
            }
            println!("tcb: {}", tcb_text(&v.tcb));
            if let Some(n) = &v.nitro {
                println!(
                    "nitro module: {} (timestamp {} ms)",
                    n.module_id, n.timestamp_ms
                );
            }
        }
        for p in &problems {
            println!("FAIL {p}");
        }
        println!("{}", if ok { "VERIFIED" } else { "NOT VERIFIED" });
    }
    Ok(ok)
}

fn tcb_text(t: &TcbStatus) -> String {
    match t {
        TcbStatus::UpToDate => "up to date".into(),
        TcbStatus::NotApplicable => "not rated by the vendor".into(),
        TcbStatus::OutOfDate { advisories } => format!("out of date ({})", advisories.join(", ")),
        TcbStatus::Other { status, advisories } => format!("{status} ({})", advisories.join(", ")),
    }
}
