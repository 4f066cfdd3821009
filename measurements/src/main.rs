//! `measurements`: the verifier's command-line tool. See docs/measurements.md.
//!
//! Exit status: 0 when the command succeeded (for `verify-*`: verified), 1 when a
//! verification failed, 2 on usage or input errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use measurements::digest::{DigestOptions, KernelHashes, Measurer, VcpuType};
use measurements::report::AttestationReport;
use report_args::{ReportArgs, parse_hex_bytes, parse_hex_u64, parse_vcpu_type, read};
use serde_json::json;

mod report_args;
mod verify_card;
mod verify_evidence;
mod verify_log;
mod verify_tee;

#[derive(Parser, Debug)]
#[command(
    name = "measurements",
    version,
    about = "Verifier tools for Omega on AMD SEV-SNP: launch digests, attestation reports, evidence and logs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Recompute the SNP launch digest (the report's MEASUREMENT) of a firmware image.
    ///
    /// Prints 96 hex characters, the same as `sev-snp-measure --mode snp` (VMM type QEMU).
    Digest(DigestArgs),
    /// Print the fields of a raw SNP attestation report.
    ShowReport(ShowReportArgs),
    /// Verify an SNP attestation report: AMD chain, signature, VCEK binding, policy, expectations.
    ///
    /// Prints one line per check (PASS/FAIL) and exits 0 only if all pass.
    VerifyReport(VerifyReportArgs),
    /// Verify a provenance log.
    VerifyLog(Box<verify_log::VerifyLogArgs>),
    /// Verify an Omega evidence bundle.
    VerifyEvidence(Box<verify_evidence::VerifyEvidenceArgs>),
    /// Verify an Omega agent's signed A2A card against the monitor's evidence.
    ///
    /// The card key comes from the verified `card` evidence, the module hash from the
    /// verified `agent:NAME` evidence; both are checked with the same pins as verify-evidence.
    VerifyCard(Box<verify_card::VerifyCardArgs>),
    /// Verify an Intel TDX quote (with its PCS collateral) or an AWS Nitro attestation document.
    ///
    /// Offline: Intel's SGX root CA is built in, AWS's Nitro root is given. Prints the launch
    /// measurement, bound data, registers and TCB status in the same shape for both, checks
    /// the expectations given, and exits 0 only if everything holds.
    VerifyTee(Box<verify_tee::VerifyTeeArgs>),
}

fn parse_hex_u32(s: &str) -> Result<u32, String> {
    let v = parse_hex_u64(s)?;
    u32::try_from(v).map_err(|_| format!("{s:?} does not fit in 32 bits"))
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("vcpu").required(true).args(["vcpu_type", "vcpu_sig"])))]
struct DigestArgs {
    /// Firmware image (the file given to QEMU as `-bios` / OVMF).
    #[arg(long, value_name = "PATH")]
    image: PathBuf,
    /// Number of vCPUs (QEMU `-smp`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    vcpus: u32,
    /// QEMU vCPU model: EPYC, EPYC-v1..v4, EPYC-IBPB, EPYC-Rome[-v1..v3], EPYC-Milan[-v1..v2],
    /// EPYC-Genoa[-v1], EPYC-Turin[-v1..v2].
    #[arg(long, value_name = "TYPE", value_parser = parse_vcpu_type)]
    vcpu_type: Option<VcpuType>,
    /// Raw CPUID(1).EAX signature instead of a model, in hex (e.g. 0xa00f11).
    #[arg(long, value_name = "HEX", value_parser = parse_hex_u32)]
    vcpu_sig: Option<u32>,
    /// VMSA SEV_FEATURES in hex; 0x1 (SNP active) is QEMU's default.
    #[arg(long, value_name = "HEX", value_parser = parse_hex_u64, default_value = "0x1")]
    guest_features: u64,
    /// Linux kernel for QEMU direct boot with kernel-hashes=on.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// initrd (needs --kernel).
    #[arg(long, value_name = "PATH", requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Kernel command line (needs --kernel).
    #[arg(long, value_name = "CMDLINE", requires = "kernel")]
    append: Option<String>,
    /// Print JSON with the inputs and what was found in the image.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct ShowReportArgs {
    /// Raw 1184-byte report.
    report: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct VerifyReportArgs {
    /// Raw 1184-byte report.
    #[arg(long, value_name = "PATH")]
    report: PathBuf,
    /// REPORT_DATA the report must carry (up to 128 hex chars; shorter is zero-padded to 64 bytes).
    #[arg(long, value_name = "HEX")]
    expect_report_data: Option<String>,
    /// Root of trust, expected measurement, minimum TCB, policy exceptions (all required
    /// but the last two).
    #[command(flatten)]
    pin: ReportArgs,
    /// Print JSON: {verified, tee, checks: [{name, passed, message}], report}.
    #[arg(long)]
    json: bool,
}

fn cmd_digest(a: &DigestArgs) -> anyhow::Result<bool> {
    let image = read(&a.image)?;
    let vcpu_type = match (a.vcpu_type, a.vcpu_sig) {
        (Some(t), None) => t,
        (None, Some(s)) => VcpuType::Signature(s),
        _ => bail!("give exactly one of --vcpu-type and --vcpu-sig"),
    };
    let kernel_hashes = match &a.kernel {
        Some(k) => {
            let kernel = read(k)?;
            let initrd = a.initrd.as_deref().map(read).transpose()?;
            Some(KernelHashes::new(
                &kernel,
                initrd.as_deref(),
                a.append.as_deref(),
            ))
        }
        None => None,
    };
    let measurer = Measurer::new(&image).with_context(|| format!("{}", a.image.display()))?;
    let info = measurer.info().clone();
    if !info.has_sev_metadata {
        tracing::warn!(
            "{} has no SEV metadata: measured as ROM pages and VMSAs only (as sev-snp-measure does); \
             such an image cannot launch under SEV-SNP",
            a.image.display()
        );
    }
    let opts = DigestOptions { kernel_hashes };
    let ld = measurer
        .launch_digest(a.vcpus, vcpu_type, a.guest_features, &opts)
        .with_context(|| format!("{}", a.image.display()))?;
    let ld_hex = hex::encode(ld);
    if a.json {
        let v = json!({
            "launch_digest": ld_hex,
            "image": a.image.display().to_string(),
            "vcpus": a.vcpus,
            "vcpu_type": vcpu_type.name(),
            "vcpu_sig": format!("{:#x}", vcpu_type.signature()),
            "guest_features": format!("{:#x}", a.guest_features),
            "vmm_type": "QEMU",
            "kernel": a.kernel.as_ref().map(|p| p.display().to_string()),
            "initrd": a.initrd.as_ref().map(|p| p.display().to_string()),
            "append": a.append,
            "kernel_hashes": opts.kernel_hashes.map(|k| json!({
                "kernel_sha256": hex::encode(k.kernel),
                "initrd_sha256": hex::encode(k.initrd),
                "cmdline_sha256": hex::encode(k.cmdline),
            })),
            "image_info": info,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{ld_hex}");
    }
    Ok(true)
}

fn cmd_show_report(a: &ShowReportArgs) -> anyhow::Result<bool> {
    let bytes = read(&a.report)?;
    let r = AttestationReport::parse(&bytes).with_context(|| format!("{}", a.report.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{r}");
    }
    Ok(true)
}

fn cmd_verify_report(a: &VerifyReportArgs) -> anyhow::Result<bool> {
    let report = read(&a.report)?;
    let pinned = a.pin.pin()?;
    let report_data = a
        .expect_report_data
        .as_deref()
        .map(|s| parse_hex_bytes::<64>(s, true))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--expect-report-data: {e}"))?;
    let outcome = pinned.verify(&report, report_data);
    if a.json {
        let v = json!({
            "verified": outcome.verified(),
            "tee": pinned.tee(),
            "checks": outcome.checks,
            "report": outcome.report,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for c in &outcome.checks {
            println!(
                "{} {}: {}",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.message
            );
        }
        let failed = outcome.failures().count();
        println!("tee: {}", pinned.tee());
        if outcome.verified() {
            println!("VERIFIED: all {} checks passed", outcome.checks.len());
        } else {
            println!(
                "NOT VERIFIED: {failed} of {} checks failed",
                outcome.checks.len()
            );
        }
    }
    Ok(outcome.verified())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Digest(a) => cmd_digest(a),
        Command::ShowReport(a) => cmd_show_report(a),
        Command::VerifyReport(a) => cmd_verify_report(a),
        Command::VerifyLog(a) => verify_log::run(a),
        Command::VerifyEvidence(a) => verify_evidence::run(a),
        Command::VerifyCard(a) => verify_card::run(a),
        Command::VerifyTee(a) => verify_tee::run(a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
