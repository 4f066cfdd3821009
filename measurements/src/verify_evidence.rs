//! `measurements verify-evidence`: one principal checks its own claim in an Omega evidence
//! bundle (issue 5): its salted leaf and inclusion proof, the monitor-signed root-update chain,
//! the nonce, and the binding of the attested root to the SEV-SNP report (whose AMD signature
//! chain is checked with `measurements::verify_report`), or to a clearly marked unattested
//! platform (refused unless `--allow-unattested`).
//!
//! Formats: docs/evidence.md. Prints one `FAIL` line per failed check; true = verified.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use measurements::verify::{CertSource, Family, VerifyOptions, VerifyOutcome, verify_report};
use omega_evidence::{Bundle, Options};

#[derive(clap::Args, Debug)]
pub struct VerifyEvidenceArgs {
    /// Evidence bundle (postcard binary, see docs/evidence.md).
    #[arg(long, value_name = "FILE")]
    pub evidence: PathBuf,
    /// The principal verifying its own claim: platform, policy, log, agent:NAME, model:NAME,
    /// tool:NAME.
    #[arg(long, value_name = "NAME")]
    pub principal: String,
    /// The verifier's 32-byte nonce (64 hex chars). Without it freshness is not checked.
    #[arg(long, value_name = "HEX")]
    pub nonce: Option<String>,
    /// Raw SNP report to use instead of the one embedded in the bundle.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// The chip's VCEK certificate (DER); required whenever an SNP report is checked.
    #[arg(long, value_name = "FILE")]
    pub vcek: Option<PathBuf>,
    /// Builtin AMD ARK/ASK of this generation (milan, genoa, turin); default: try each.
    #[arg(long, value_name = "FAMILY", conflicts_with_all = ["ark", "ask"])]
    pub family: Option<Family>,
    /// AMD root certificate (PEM); needs --ask.
    #[arg(long, value_name = "FILE", requires = "ask")]
    pub ark: Option<PathBuf>,
    /// AMD signing certificate (PEM); needs --ark.
    #[arg(long, value_name = "FILE", requires = "ark")]
    pub ask: Option<PathBuf>,
    /// Accept a platform without SEV-SNP (the bundle's UNATTESTED marker).
    #[arg(long)]
    pub allow_unattested: bool,
    /// Accept a report whose guest policy allows debugging.
    #[arg(long)]
    pub allow_debug: bool,
    /// Print the bundle's JSON view and the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn parse_nonce(s: &str) -> anyhow::Result<[u8; 32]> {
    let v = hex::decode(s.trim().trim_start_matches("0x")).context("--nonce is not hex")?;
    v.try_into().map_err(|v: Vec<u8>| {
        anyhow::anyhow!("--nonce must be 32 bytes (64 hex chars), got {}", v.len())
    })
}

/// Verifies the report's AMD chain and signature, and that it carries `report_data`.
fn check_report(
    args: &VerifyEvidenceArgs,
    report: &[u8],
    report_data: [u8; 64],
) -> anyhow::Result<VerifyOutcome> {
    let vcek_path = args
        .vcek
        .as_ref()
        .context("an SNP report must be checked against its VCEK: give --vcek (or --allow-unattested for no SNP)")?;
    let vcek = read(vcek_path)?;
    let opts = VerifyOptions {
        expect_report_data: Some(report_data),
        allow_debug: args.allow_debug,
        ..Default::default()
    };
    Ok(match (&args.ark, &args.ask, args.family) {
        (Some(ark), Some(ask), _) => {
            let (ark, ask) = (read(ark)?, read(ask)?);
            verify_report(
                report,
                &vcek,
                CertSource::Pem {
                    ark: &ark,
                    ask: &ask,
                },
                &opts,
            )
        }
        (_, _, Some(f)) => verify_report(report, &vcek, CertSource::Family(f), &opts),
        _ => {
            // Try each generation's builtin roots; keep a verified outcome, else the one with
            // the fewest failures.
            let mut best: Option<VerifyOutcome> = None;
            for f in Family::ALL {
                let o = verify_report(report, &vcek, CertSource::Family(f), &opts);
                if o.verified() {
                    return Ok(o);
                }
                if best
                    .as_ref()
                    .is_none_or(|b| o.failures().count() < b.failures().count())
                {
                    best = Some(o);
                }
            }
            best.context("no AMD family")?
        }
    })
}

pub fn run(args: &VerifyEvidenceArgs) -> anyhow::Result<bool> {
    let bytes = read(&args.evidence)?;
    let bundle =
        Bundle::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", args.evidence.display()))?;
    let nonce = args.nonce.as_deref().map(parse_nonce).transpose()?;
    let report_file = args.report.as_deref().map(read).transpose()?;
    let opts = Options {
        principal: &args.principal,
        nonce,
        allow_unattested: args.allow_unattested,
        report: report_file.as_deref(),
    };
    let outcome = omega_evidence::verify(&bundle, &opts);

    // Hardware: a report whose REPORT_DATA matched must also be genuine.
    let mut lines: Vec<(bool, String, String)> = outcome
        .checks
        .iter()
        .map(|c| (c.passed, c.name.to_string(), c.message.clone()))
        .collect();
    if let Some(report) = &outcome.report {
        match check_report(args, report, outcome.expected_report_data) {
            Ok(o) => {
                for c in &o.checks {
                    lines.push((c.passed, c.name.to_string(), c.message.clone()));
                }
                if o.checks.is_empty() {
                    lines.push((false, "report".into(), "no report checks ran".into()));
                }
            }
            Err(e) => lines.push((false, "report".into(), format!("{e:#}"))),
        }
    } else if args.vcek.is_some() && !outcome.unattested {
        // The binding failed before the signature could matter; say so explicitly.
        lines.push((
            false,
            "report".into(),
            "report signature not checked: REPORT_DATA does not bind".into(),
        ));
    }
    let verified = lines.iter().all(|l| l.0) && !lines.is_empty();

    if args.json {
        let v = serde_json::json!({
            "verified": verified,
            "principal": args.principal,
            "checks": lines.iter().map(|(p, n, m)| serde_json::json!({"name": n, "passed": p, "message": m})).collect::<Vec<_>>(),
            "warnings": outcome.warnings,
            "expected_report_data": hex::encode(outcome.expected_report_data),
            "evidence": omega_evidence::json::to_json(&bundle),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(verified);
    }
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    for (passed, name, msg) in &lines {
        if !passed {
            println!("FAIL {name}: {msg}");
        }
    }
    if verified {
        for (_, name, msg) in &lines {
            println!("PASS {name}: {msg}");
        }
        if outcome.unattested {
            println!("VERIFIED (UNATTESTED PLATFORM) claim of {}", args.principal);
        } else {
            println!("VERIFIED claim of {}", args.principal);
        }
    } else if lines.is_empty() {
        bail!("no checks ran");
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_evidence::{Claim, Issuer};

    use omega_test_support::snp;

    /// Writes `v`'s report and VCEK into `dir`; returns their paths.
    fn write_vector(dir: &Path, v: &snp::Vector) -> (PathBuf, PathBuf) {
        let (report, vcek) = (
            dir.join(format!("{}.report.bin", v.name)),
            dir.join(format!("{}.vcek.der", v.name)),
        );
        std::fs::write(&report, &v.report).unwrap();
        std::fs::write(&vcek, &v.vcek).unwrap();
        (report, vcek)
    }

    fn setup(tag: &str) -> (PathBuf, Issuer, [u8; 32]) {
        let dir =
            std::env::temp_dir().join(format!("omega-verify-ev-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut iss = Issuer::new([5; 32]).unwrap();
        iss.add(
            Claim::Platform {
                launch_digest: vec![1; 48],
            },
            [1; 32],
        )
        .unwrap();
        iss.add(
            Claim::Agent {
                name: "triage".into(),
                module_hash: [2; 32],
                publisher: "acme".into(),
            },
            [2; 32],
        )
        .unwrap();
        iss.add(Claim::Policy { digest: [3; 32] }, [3; 32]).unwrap();
        let nonce = [0x42; 32];
        iss.attest(nonce).unwrap();
        (dir, iss, nonce)
    }

    fn args(dir: &Path, principal: &str, nonce: Option<[u8; 32]>) -> VerifyEvidenceArgs {
        VerifyEvidenceArgs {
            evidence: dir.join("ev.bin"),
            principal: principal.into(),
            nonce: nonce.map(hex::encode),
            report: None,
            vcek: None,
            family: None,
            ark: None,
            ask: None,
            allow_unattested: false,
            allow_debug: false,
            json: false,
        }
    }

    #[test]
    fn unattested_needs_flag() {
        let (dir, iss, nonce) = setup("unatt");
        std::fs::write(
            dir.join("ev.bin"),
            iss.bundle("agent:triage", None, None)
                .unwrap()
                .encode()
                .unwrap(),
        )
        .unwrap();
        let mut a = args(&dir, "agent:triage", Some(nonce));
        assert!(!run(&a).unwrap());
        a.allow_unattested = true;
        assert!(run(&a).unwrap());
        a.json = true;
        assert!(run(&a).unwrap());
        a.json = false;
        a.principal = "policy".into();
        assert!(!run(&a).unwrap());
        a.principal = "agent:triage".into();
        a.nonce = Some(hex::encode([0x43; 32]));
        assert!(!run(&a).unwrap());
        // Undecodable evidence is an input error.
        std::fs::write(dir.join("ev.bin"), b"garbage").unwrap();
        assert!(run(&a).is_err());
    }

    #[test]
    fn swapped_real_report_fails_binding_and_signature_not_trusted() {
        let (dir, iss, nonce) = setup("swap");
        for v in snp::real_vectors() {
            let (report, vcek) = write_vector(&dir, &v);
            std::fs::write(
                dir.join("ev.bin"),
                iss.bundle("policy", Some(v.report.clone()), None)
                    .unwrap()
                    .encode()
                    .unwrap(),
            )
            .unwrap();
            let mut a = args(&dir, "policy", Some(nonce));
            a.vcek = Some(vcek.clone());
            assert!(!run(&a).unwrap(), "{}", v.name);
            // Even with --allow-unattested, a swapped report does not pass.
            a.allow_unattested = true;
            assert!(!run(&a).unwrap(), "{}", v.name);
            // A report given on the command line is checked the same way.
            std::fs::write(
                dir.join("ev.bin"),
                iss.bundle("policy", None, None).unwrap().encode().unwrap(),
            )
            .unwrap();
            let mut a = args(&dir, "policy", Some(nonce));
            a.report = Some(report);
            a.vcek = Some(vcek);
            assert!(!run(&a).unwrap(), "{}", v.name);
        }
    }

    #[test]
    fn forged_report_with_matching_report_data_is_refused() {
        let (dir, iss, nonce) = setup("forged");
        // Recompute REPORT_DATA for this tree and splice it into a genuine report: the binding
        // check passes, the AMD signature over the report must then fail.
        let mut iss2 = Issuer::new([5; 32]).unwrap();
        iss2.add(
            Claim::Platform {
                launch_digest: vec![1; 48],
            },
            [1; 32],
        )
        .unwrap();
        iss2.add(
            Claim::Agent {
                name: "triage".into(),
                module_hash: [2; 32],
                publisher: "acme".into(),
            },
            [2; 32],
        )
        .unwrap();
        iss2.add(Claim::Policy { digest: [3; 32] }, [3; 32])
            .unwrap();
        let rd = iss2.attest(nonce).unwrap();
        // A genuine Milan report whose policy does not allow debugging (not go-sev-guest's).
        let genuine = snp::real_vectors()
            .into_iter()
            .rfind(|v| v.family() == "milan")
            .unwrap();
        let (_, vcek) = write_vector(&dir, &genuine);
        let mut forged = genuine.report;
        forged[sev_snp::report::REPORT_DATA].copy_from_slice(&rd);
        let b = iss.bundle("policy", Some(forged), None).unwrap();
        assert_eq!(
            omega_evidence::verify(
                &b,
                &Options {
                    principal: "policy",
                    nonce: Some(nonce),
                    ..Default::default()
                }
            )
            .failures()
            .count(),
            0
        );
        std::fs::write(dir.join("ev.bin"), b.encode().unwrap()).unwrap();
        let mut a = args(&dir, "policy", Some(nonce));
        // Without a VCEK the report cannot be trusted.
        assert!(!run(&a).unwrap());
        a.vcek = Some(vcek);
        assert!(!run(&a).unwrap());
        a.family = Some(Family::Milan);
        assert!(!run(&a).unwrap());
    }
}
