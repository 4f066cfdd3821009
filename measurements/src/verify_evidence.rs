//! `measurements verify-evidence`: one principal checks its own claim in an Omega evidence
//! bundle (issue 5): its salted leaf and inclusion proof, the monitor-signed root-update chain,
//! the nonce, and the binding of the attested root to the SEV-SNP report (whose AMD signature
//! chain, measurement, TCB and policy are checked with `measurements::verify_report` against
//! what the verifier pinned: [`crate::report_args`]), or to a clearly marked unattested
//! platform (refused unless `--allow-unattested`).
//!
//! [`check`] is shared with `verify-log`, which takes the log key from the `log` principal's
//! verified evidence.
//!
//! Formats: docs/evidence.md. Prints one `FAIL` line per failed check; true = verified.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use omega_evidence::{Binding, Bundle, Claim, Options, TEE_NONE, TEE_SIMULATED};

use crate::report_args::{ReportArgs, read};

/// The flags that say how evidence is checked (shared by `verify-evidence` and `verify-log`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EvidenceCheckArgs {
    /// The verifier's 32-byte nonce (64 hex chars). Without it freshness is not checked.
    #[arg(long, value_name = "HEX")]
    pub nonce: Option<String>,
    /// Raw SNP report to use instead of the one embedded in the bundle.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Accept a platform without SEV-SNP (the bundle's UNATTESTED marker).
    #[arg(long)]
    pub allow_unattested: bool,
    /// What the report is checked against (root, measurement; required with a report).
    #[command(flatten)]
    pub pin: ReportArgs,
}

#[derive(clap::Args, Debug)]
pub struct VerifyEvidenceArgs {
    /// Evidence bundle (postcard binary, see docs/evidence.md).
    #[arg(long, value_name = "FILE")]
    pub evidence: PathBuf,
    /// The principal verifying its own claim: platform, log, card, bundle, policy,
    /// agent:NAME, model:NAME, tool:NAME, tools:SERVER.
    #[arg(long, value_name = "NAME")]
    pub principal: String,
    /// With `--principal tools:SERVER`: the tool provider's pins (`server.tool
    /// sha256:<hex>` lines, as `policy-compiler pin` prints them; other servers' lines
    /// are ignored). The claim must pin exactly SERVER's lines.
    #[arg(long, value_name = "FILE")]
    pub expect_pins: Option<PathBuf>,
    /// With `--principal tools:SERVER`: the bundle's tools file (`tools.json`, the file its
    /// manifest's `tools` names). The claim must name SERVER's command line, package and
    /// version exactly as the file does.
    #[arg(long, value_name = "FILE")]
    pub expect_tools: Option<PathBuf>,
    /// With `--principal model:NAME`: the proxy identity the model provider expects
    /// (`sha256:<64 hex>`, what `omega-proxy evidence` prints and a policy pins). The claim
    /// must name exactly this identity: the one the monitor's session with the proxy proved.
    #[arg(long, value_name = "sha256:HEX")]
    pub expect_proxy: Option<String>,
    /// With `--principal model:NAME`: the SHA-256 of the model file (`sha256:<64 hex>`); the
    /// claim's model digest (from the proxy's verified evidence) must equal it.
    #[arg(long, value_name = "sha256:HEX")]
    pub expect_model_digest: Option<String>,
    #[command(flatten)]
    pub check: EvidenceCheckArgs,
    /// Print the bundle's JSON view and the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_nonce(s: &str) -> anyhow::Result<[u8; 32]> {
    let v = hex::decode(s.trim().trim_start_matches("0x")).context("--nonce is not hex")?;
    v.try_into().map_err(|v: Vec<u8>| {
        anyhow::anyhow!("--nonce must be 32 bytes (64 hex chars), got {}", v.len())
    })
}

/// One check line: passed, name, message.
pub type Line = (bool, String, String);

/// What checking one principal's evidence found.
pub struct EvidenceResult {
    pub bundle: Bundle,
    pub lines: Vec<Line>,
    pub warnings: Vec<String>,
    /// The principal's claim when its leaf decoded.
    pub claim: Option<Claim>,
    /// `sev-snp` or `simulated` (from the roots the report verified under), or `none`.
    pub tee: &'static str,
    /// The report's MEASUREMENT, when a report was checked.
    pub measurement: Option<[u8; 48]>,
    pub expected_report_data: [u8; 64],
}

impl EvidenceResult {
    pub fn verified(&self) -> bool {
        !self.lines.is_empty() && self.lines.iter().all(|l| l.0)
    }

    /// `VERIFIED ...` qualifier: empty for hardware, else what the platform is.
    pub fn qualifier(&self) -> &'static str {
        match self.tee {
            TEE_NONE => " (UNATTESTED PLATFORM)",
            TEE_SIMULATED => " (SIMULATED PLATFORM)",
            _ => "",
        }
    }
}

/// Verifies `evidence` for `principal` as `args` say. Input errors (unreadable or
/// undecodable files, a report without a pinned root and measurement) are errors; failed
/// checks are lines of the result.
pub fn check(
    evidence: &Path,
    principal: &str,
    args: &EvidenceCheckArgs,
) -> anyhow::Result<EvidenceResult> {
    let bytes = read(evidence)?;
    let bundle =
        Bundle::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", evidence.display()))?;
    let nonce = args.nonce.as_deref().map(parse_nonce).transpose()?;
    let report_file = args.report.as_deref().map(read).transpose()?;
    // SECURITY: with a report, the root and the expected measurement must be pinned before
    // anything is checked (no defaults, no trying each family).
    let has_report = report_file.is_some() || matches!(bundle.binding, Binding::Snp { .. });
    let pinned = has_report.then(|| args.pin.pin()).transpose()?;
    let opts = Options {
        principal,
        nonce,
        allow_unattested: args.allow_unattested,
        report: report_file.as_deref(),
    };
    let outcome = omega_evidence::verify(&bundle, &opts);

    let mut lines: Vec<Line> = outcome
        .checks
        .iter()
        .map(|c| (c.passed, c.name.to_string(), c.message.clone()))
        .collect();
    let mut tee = TEE_NONE;
    let mut measurement = None;
    match (&pinned, &outcome.report) {
        // Hardware: a report whose REPORT_DATA matched must also be genuine and pinned.
        (Some(pinned), Some(report)) => {
            tee = pinned.tee();
            let o = pinned.verify(report, Some(outcome.expected_report_data));
            lines.extend(
                o.checks
                    .iter()
                    .map(|c| (c.passed, c.name.to_string(), c.message.clone())),
            );
            if o.checks.is_empty() {
                lines.push((false, "report".into(), "no report checks ran".into()));
            }
            measurement = o.report.map(|r| r.measurement);
            if let Some(Claim::Platform { tee: claimed, .. }) = &outcome.claim {
                lines.push(if claimed == tee {
                    (true, "platform.tee".into(), format!("tee {tee}"))
                } else {
                    (
                        false,
                        "platform.tee".into(),
                        format!("platform claims tee {claimed}, the report verified as {tee}"),
                    )
                });
            }
        }
        // The binding failed before the signature could matter; say so explicitly.
        (Some(_), None) => lines.push((
            false,
            "report".into(),
            "report signature not checked: REPORT_DATA does not bind".into(),
        )),
        (None, _) => {}
    }
    Ok(EvidenceResult {
        bundle,
        lines,
        warnings: outcome.warnings,
        claim: outcome.claim,
        tee,
        measurement,
        expected_report_data: outcome.expected_report_data,
    })
}

/// The pins of `server`'s tools in a pins file's text: (count, `pins_digest`).
pub fn server_pins(text: &str, server: &str) -> anyhow::Result<(u32, [u8; 32])> {
    let mut pins: Vec<(String, [u8; 32])> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, pin) = line
            .split_once(char::is_whitespace)
            .and_then(|(n, p)| Some((n, p.trim().strip_prefix("sha256:")?)))
            .with_context(|| format!("pins line {}: expected `server.tool sha256:<hex>`", i + 1))?;
        let pin: [u8; 32] = hex::decode(pin)
            .ok()
            .and_then(|v| v.try_into().ok())
            .with_context(|| format!("pins line {}: not 32 bytes of hex", i + 1))?;
        if name.split_once('.').is_some_and(|(s, _)| s == server) {
            pins.push((name.to_string(), pin));
        }
    }
    let n = u32::try_from(pins.len()).unwrap_or(u32::MAX);
    Ok((
        n,
        omega_evidence::pins_digest(pins.iter().map(|(n, p)| (n.as_str(), p))),
    ))
}

/// The `--expect-pins` check line for a `tools:SERVER` claim.
fn pins_line(claim: Option<&Claim>, file: &Path) -> anyhow::Result<Line> {
    let Some(Claim::ToolServer {
        server,
        tools,
        pins_digest,
        identity,
    }) = claim
    else {
        return Ok((
            false,
            "tools.pins".into(),
            "--expect-pins needs a tools:SERVER claim".into(),
        ));
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (n, digest) = server_pins(&text, server)?;
    Ok(if (n, digest) == (*tools, *pins_digest) {
        (
            true,
            "tools.pins".into(),
            format!(
                "the monitor pins exactly the {n} tools of {server} in {}; {}",
                file.display(),
                identity_text(identity.as_ref())
            ),
        )
    } else {
        (
            false,
            "tools.pins".into(),
            format!(
                "the claim pins {tools} tools of {server} (digest {}), {} has {n} (digest {})",
                hex::encode(pins_digest),
                file.display(),
                hex::encode(digest)
            ),
        )
    })
}

/// A tool server identity as the verifier prints it.
fn identity_text(identity: Option<&omega_evidence::ToolIdentity>) -> String {
    match identity {
        Some(i) => format!(
            "server command {}, package {} version {}",
            i.command, i.package, i.version
        ),
        None => "no server identity claimed (the bundle has no tools file naming it)".into(),
    }
}

/// The `--expect-tools` check line for a `tools:SERVER` claim: its identity is the one the
/// bundle's tools file names.
fn tools_line(claim: Option<&Claim>, file: &Path) -> anyhow::Result<Line> {
    let Some(Claim::ToolServer {
        server, identity, ..
    }) = claim
    else {
        return Ok((
            false,
            "tools.identity".into(),
            "--expect-tools needs a tools:SERVER claim".into(),
        ));
    };
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let named = omega_tool_protocol::identity::parse(&bytes)
        .with_context(|| format!("{}", file.display()))?;
    let expected = named
        .iter()
        .find(|s| s.name == *server)
        .map(|s| omega_evidence::ToolIdentity {
            command: s.command_line(),
            package: s.package.clone(),
            version: s.version.clone(),
        });
    Ok(match (&expected, identity) {
        (Some(e), Some(c)) if e == c => (
            true,
            "tools.identity".into(),
            format!(
                "{server}: {} (as {})",
                identity_text(Some(c)),
                file.display()
            ),
        ),
        (None, _) => (
            false,
            "tools.identity".into(),
            format!("{} names no server {server}", file.display()),
        ),
        (Some(e), c) => (
            false,
            "tools.identity".into(),
            format!(
                "{server}: the claim says {}, {} says {}",
                identity_text(c.as_ref()),
                file.display(),
                identity_text(Some(e))
            ),
        ),
    })
}

/// `sha256:<64 hex>` (the prefix optional) as 32 bytes; `flag` names the flag in errors.
fn parse_sha256(flag: &str, s: &str) -> anyhow::Result<[u8; 32]> {
    let h = s.trim();
    let h = h.strip_prefix("sha256:").unwrap_or(h);
    hex::decode(h)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .with_context(|| format!("{flag} must be sha256:<64 hex digits>, got {s:?}"))
}

/// The `--expect-proxy` / `--expect-model-digest` check lines for a `model:NAME` claim.
/// Without such a claim (evidence of another principal), one failing `model.claim` line.
fn model_lines(
    claim: Option<&Claim>,
    principal: &str,
    proxy: Option<[u8; 32]>,
    model_digest: Option<[u8; 32]>,
) -> Vec<Line> {
    let Some(Claim::Model {
        name,
        proxy_identity,
        model_digest: claimed_model,
        gpu_evidence_digest,
    }) = claim
    else {
        let what = claim.map_or_else(|| "no claim that decodes".into(), Claim::principal);
        return vec![(
            false,
            "model.claim".into(),
            format!(
                "no claim for {principal} in this evidence (it holds {what}); --expect-proxy and --expect-model-digest need a model:NAME claim"
            ),
        )];
    };
    let gpu = gpu_evidence_digest.map_or_else(
        || "no GPU evidence".to_string(),
        |g| format!("GPU evidence sha256:{}", hex::encode(g)),
    );
    let mut lines = Vec::new();
    if let Some(expected) = proxy {
        lines.push(if *proxy_identity == expected {
            (
                true,
                "model.proxy".into(),
                format!(
                    "the monitor's session proved proxy sha256:{} for model {name} (model sha256:{}, {gpu})",
                    hex::encode(proxy_identity),
                    hex::encode(claimed_model)
                ),
            )
        } else {
            (
                false,
                "model.proxy".into(),
                format!(
                    "model {name} was served by proxy sha256:{}, not the expected sha256:{}: another proxy (binary, model, backend, TEE or GPU) answered",
                    hex::encode(proxy_identity),
                    hex::encode(expected)
                ),
            )
        });
    }
    if let Some(expected) = model_digest {
        lines.push(if *claimed_model == expected {
            (
                true,
                "model.digest".into(),
                format!("model {name} is the file sha256:{}", hex::encode(expected)),
            )
        } else {
            (
                false,
                "model.digest".into(),
                format!(
                    "model {name}: the proxy's evidence names model file sha256:{}, not the expected sha256:{}",
                    hex::encode(claimed_model),
                    hex::encode(expected)
                ),
            )
        });
    }
    lines
}

pub fn run(args: &VerifyEvidenceArgs) -> anyhow::Result<bool> {
    let expect_proxy = args
        .expect_proxy
        .as_deref()
        .map(|s| parse_sha256("--expect-proxy", s))
        .transpose()?;
    let expect_model = args
        .expect_model_digest
        .as_deref()
        .map(|s| parse_sha256("--expect-model-digest", s))
        .transpose()?;
    if let Some(model) = args.principal.strip_prefix("model:")
        && !args.evidence.exists()
    {
        bail!(
            "no evidence for model:{model} ({} does not exist): the monitor issued no claim for this principal (no proxy session proved this model's pin when it issued its evidence; the log's MODEL_CLAIM entries say why)",
            args.evidence.display()
        );
    }
    let mut r = check(&args.evidence, &args.principal, &args.check)?;
    if expect_proxy.is_some() || expect_model.is_some() {
        let lines = model_lines(
            r.claim.as_ref(),
            &args.principal,
            expect_proxy,
            expect_model,
        );
        r.lines.extend(lines);
    }
    if let Some(f) = &args.expect_pins {
        let line = pins_line(r.claim.as_ref(), f)?;
        r.lines.push(line);
    }
    if let Some(f) = &args.expect_tools {
        let line = tools_line(r.claim.as_ref(), f)?;
        r.lines.push(line);
    }
    let verified = r.verified();
    let boot_id = match &r.claim {
        Some(
            Claim::Platform { boot_id, .. }
            | Claim::LogKey { boot_id, .. }
            | Claim::CardKey { boot_id, .. }
            | Claim::PeerKey { boot_id, .. },
        ) => Some(hex::encode(boot_id)),
        _ => None,
    };

    if args.json {
        let v = serde_json::json!({
            "verified": verified,
            "principal": args.principal,
            "tee": r.tee,
            "measurement": r.measurement.map(hex::encode),
            "checks": r.lines.iter().map(|(p, n, m)| serde_json::json!({"name": n, "passed": p, "message": m})).collect::<Vec<_>>(),
            "warnings": r.warnings,
            "expected_report_data": hex::encode(r.expected_report_data),
            "evidence": omega_evidence::json::to_json(&r.bundle),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(verified);
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    for (passed, name, msg) in &r.lines {
        if !passed {
            println!("FAIL {name}: {msg}");
        }
    }
    if verified {
        for (_, name, msg) in &r.lines {
            println!("PASS {name}: {msg}");
        }
        println!("tee: {}", r.tee);
        if let Some(m) = r.measurement {
            println!("measurement: {}", hex::encode(m));
        }
        if let Some(b) = boot_id {
            println!("boot_id: {b}");
        }
        // What a launcher pins for the channels between images until the fleet
        // coordinator's credentials stand in (docs/fleet.md).
        if let Some(Claim::PeerKey { public, .. }) = &r.claim {
            println!("peer_key: {}", hex::encode(public));
        }
        // What the monitor's proxy session proved (`--expect-proxy` compares it).
        if let Some(Claim::Model {
            proxy_identity,
            model_digest,
            gpu_evidence_digest,
            ..
        }) = &r.claim
        {
            println!("proxy_identity: sha256:{}", hex::encode(proxy_identity));
            println!("model_digest: sha256:{}", hex::encode(model_digest));
            if let Some(g) = gpu_evidence_digest {
                println!("gpu_evidence_digest: sha256:{}", hex::encode(g));
            }
        }
        println!("VERIFIED{} claim of {}", r.qualifier(), args.principal);
    } else if r.lines.is_empty() {
        bail!("no checks ran");
    }
    Ok(verified)
}

/// Evidence of a simulated-PSP run, for the tests of this module and of `verify-log`.
#[cfg(test)]
pub mod fixture {
    use std::path::PathBuf;

    use omega_evidence::{Claim, Issuer};
    use omega_provenance::note::LogKey;
    use omega_sim_psp::SimPsp;

    use super::EvidenceCheckArgs;
    use crate::report_args::ReportArgs;

    pub const MEASUREMENT: [u8; 48] = [0x4D; 48];
    pub const NONCE: [u8; 32] = [0x42; 32];
    pub const BOOT_ID: [u8; 16] = [0xB0; 16];

    /// The agent `triage`'s module hash.
    pub const MODULE: [u8; 32] = [0x3A; 32];
    /// The monitor's peer-channel key of this boot.
    pub const PEER_KEY: [u8; 32] = [0x9E; 32];

    /// The monitor's agent-card key of this boot.
    pub fn card_key() -> omega_agent_card::CardKey {
        omega_agent_card::CardKey::from_seed([6; 32]).unwrap()
    }

    /// The monitor's log key of this boot.
    pub fn log_key() -> LogKey {
        LogKey::from_seed(super::super::verify_log::LOG_KEY_NAME, [7; 32]).unwrap()
    }

    /// A directory with `platform.ev`, `log.ev`, `policy.ev`, `card.ev`, `agent_triage.ev`
    /// and `peer.ev`: the monitor's evidence
    /// claiming `tee`, bound to a report of `psp` (`None`: the unattested marker).
    pub fn write(tag: &str, tee: &str, psp: Option<SimPsp>) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("omega-ev-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut iss = Issuer::new([5; 32]).unwrap();
        let claims = [
            Claim::Platform {
                tee: tee.into(),
                boot_id: BOOT_ID,
            },
            Claim::LogKey {
                public: log_key().public(),
                boot_id: BOOT_ID,
            },
            Claim::Policy { digest: [3; 32] },
            Claim::CardKey {
                public: card_key().public(),
                boot_id: BOOT_ID,
            },
            Claim::Agent {
                name: "triage".into(),
                module_hash: MODULE,
                publisher: "acme".into(),
            },
            Claim::PeerKey {
                public: PEER_KEY,
                boot_id: BOOT_ID,
            },
        ];
        for (i, c) in claims.into_iter().enumerate() {
            iss.add(c, [i as u8 + 1; 32]).unwrap();
        }
        let rd = iss.attest(NONCE).unwrap();
        let report = psp.map(|p| p.report(rd, 0).to_vec());
        for p in ["platform", "log", "policy", "card", "agent:triage", "peer"] {
            let b = iss.bundle(p, report.clone(), None).unwrap();
            let file = format!("{}.ev", p.replace(':', "_"));
            std::fs::write(dir.join(file), b.encode().unwrap()).unwrap();
        }
        dir
    }

    /// A simulated run's evidence.
    pub fn simulated(tag: &str) -> PathBuf {
        write(tag, "simulated", Some(SimPsp::new(MEASUREMENT)))
    }

    /// The flags of a verifier of a simulated run.
    pub fn lab_args() -> EvidenceCheckArgs {
        EvidenceCheckArgs {
            nonce: Some(hex::encode(NONCE)),
            pin: ReportArgs {
                lab_root: true,
                expect_measurement: Some(hex::encode(MEASUREMENT)),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{self, MEASUREMENT, NONCE};
    use super::*;
    use measurements::verify::Family;
    use omega_evidence::Issuer;
    use omega_sim_psp::{LAB_POLICY, SimPsp};

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

    /// A simulated run's `model:llm` evidence (platform, log, policy and the model claim
    /// naming `proxy`, model file `model`), and its report.
    fn model_evidence(proxy: [u8; 32], model: [u8; 32]) -> (omega_evidence::Bundle, Vec<u8>) {
        let mut iss = Issuer::new([5; 32]).unwrap();
        let claims = [
            Claim::Platform {
                tee: "simulated".into(),
                boot_id: fixture::BOOT_ID,
            },
            Claim::Policy { digest: [3; 32] },
            Claim::Model {
                name: "llm".into(),
                proxy_identity: proxy,
                model_digest: model,
                gpu_evidence_digest: None,
            },
        ];
        for (i, c) in claims.into_iter().enumerate() {
            iss.add(c, [i as u8 + 1; 32]).unwrap();
        }
        let rd = iss.attest(NONCE).unwrap();
        let report = SimPsp::new(MEASUREMENT).report(rd, 0).to_vec();
        let b = iss.bundle("model:llm", Some(report.clone()), None).unwrap();
        (b, report)
    }

    fn setup(tag: &str) -> (PathBuf, Issuer, [u8; 32]) {
        let dir =
            std::env::temp_dir().join(format!("omega-verify-ev-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut iss = Issuer::new([5; 32]).unwrap();
        iss.add(
            Claim::Platform {
                tee: "sev-snp".into(),
                boot_id: [1; 16],
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
            check: EvidenceCheckArgs {
                nonce: nonce.map(hex::encode),
                ..Default::default()
            },
            expect_pins: None,
            expect_tools: None,
            expect_proxy: None,
            expect_model_digest: None,
            json: false,
        }
    }

    /// The names of the failed checks.
    fn failed(r: &EvidenceResult) -> Vec<&str> {
        r.lines
            .iter()
            .filter(|l| !l.0)
            .map(|l| l.1.as_str())
            .collect()
    }

    /// A tool provider checks the monitor pins exactly its server's tools: its pins file
    /// (other servers' lines ignored) against the `tools:SERVER` claim.
    #[test]
    fn a_tool_provider_checks_its_pins() {
        let (dir, mut iss, nonce) = setup("pins");
        let pins = format!(
            "# pins\nfs.read sha256:{}\nfs.write sha256:{}\nother.x sha256:{}\n",
            "11".repeat(32),
            "22".repeat(32),
            "33".repeat(32)
        );
        let (n, digest) = server_pins(&pins, "fs").unwrap();
        assert_eq!(n, 2);
        let claim = Claim::ToolServer {
            server: "fs".into(),
            tools: n,
            pins_digest: digest,
            identity: Some(omega_evidence::ToolIdentity {
                command: r#"["node","/x.js"]"#.into(),
                package: "@mcp/fs".into(),
                version: "1.2.3".into(),
            }),
        };
        iss.add(claim, [9; 32]).unwrap();
        iss.publish_update().unwrap();
        std::fs::write(
            dir.join("ev.bin"),
            iss.bundle("tools:fs", None, Some(nonce))
                .unwrap()
                .encode()
                .unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("pins.txt"), &pins).unwrap();
        let mut a = args(&dir, "tools:fs", Some(nonce));
        a.check.allow_unattested = true;
        a.expect_pins = Some(dir.join("pins.txt"));
        assert!(run(&a).unwrap());
        // One pin changed (a rug pull the provider did not publish): fails.
        std::fs::write(
            dir.join("pins.txt"),
            pins.replace(&"22".repeat(32), &"23".repeat(32)),
        )
        .unwrap();
        assert!(!run(&a).unwrap());
        // A pin missing: fails.
        std::fs::write(dir.join("pins.txt"), pins.replace("fs.write", "fz.write")).unwrap();
        assert!(!run(&a).unwrap());
        // Garbage is an input error; another principal's claim fails the check.
        std::fs::write(dir.join("pins.txt"), "fs.read 1234").unwrap();
        assert!(run(&a).is_err());
        std::fs::write(dir.join("pins.txt"), &pins).unwrap();
        // The server's identity: the bundle's tools file must name what the claim says.
        let tools = r#"{"servers":[{"name":"fs","command":"node","args":["/x.js"],"package":"@mcp/fs","version":"1.2.3"}]}"#;
        std::fs::write(dir.join("tools.json"), tools).unwrap();
        a.expect_tools = Some(dir.join("tools.json"));
        assert!(run(&a).unwrap());
        // A host that swapped the server (another command, package or version in the file
        // the verifier holds than in the claim): fails.
        for (from, to) in [
            ("/x.js", "/evil.js"),
            ("1.2.3", "1.2.4"),
            ("@mcp/fs", "@evil/fs"),
        ] {
            std::fs::write(dir.join("tools.json"), tools.replace(from, to)).unwrap();
            assert!(!run(&a).unwrap(), "{to}");
        }
        std::fs::write(dir.join("tools.json"), tools).unwrap();
        a.principal = "policy".into();
        assert!(!run(&a).unwrap());
    }

    /// The proxy the monitor proved, as a model provider checks it: a simulated run's
    /// evidence with a `model:llm` claim, verified with `--expect-proxy` (and the model
    /// digest); another proxy, another model file, evidence of another principal, a missing
    /// claim, and flags that are not digests all fail, each saying why.
    #[test]
    fn a_model_provider_checks_the_proxy_the_monitor_proved() {
        const GENUINE: [u8; 32] = [0x61; 32];
        const MODEL: [u8; 32] = [0x63; 32];
        let dir = std::env::temp_dir().join(format!("omega-ev-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ev, report) = model_evidence(GENUINE, MODEL);
        std::fs::write(dir.join("model_llm.bin"), ev.encode().unwrap()).unwrap();
        std::fs::write(dir.join("report.bin"), &report).unwrap();
        let mut a = VerifyEvidenceArgs {
            evidence: dir.join("model_llm.bin"),
            principal: "model:llm".into(),
            check: fixture::lab_args(),
            expect_pins: None,
            expect_tools: None,
            expect_proxy: Some(format!("sha256:{}", hex::encode(GENUINE))),
            expect_model_digest: Some(format!("sha256:{}", hex::encode(MODEL))),
            json: false,
        };
        assert!(run(&a).unwrap());
        let lines = |a: &VerifyEvidenceArgs| {
            let r = check(&a.evidence, &a.principal, &a.check).unwrap();
            let mut l = r.lines.clone();
            l.extend(model_lines(
                r.claim.as_ref(),
                &a.principal,
                a.expect_proxy
                    .as_deref()
                    .map(|s| parse_sha256("p", s).unwrap()),
                a.expect_model_digest
                    .as_deref()
                    .map(|s| parse_sha256("m", s).unwrap()),
            ));
            l
        };
        let failed = |l: &[Line]| -> Vec<String> {
            l.iter().filter(|l| !l.0).map(|l| l.1.clone()).collect()
        };
        // Another proxy: the verifier expected one, the monitor proved another.
        a.expect_proxy = Some(format!("sha256:{}", hex::encode([0x62; 32])));
        assert!(!run(&a).unwrap());
        let l = lines(&a);
        assert_eq!(failed(&l), ["model.proxy"]);
        assert!(
            l.iter()
                .any(|x| x.2.contains("another proxy") && x.2.contains(&hex::encode(GENUINE))),
            "{l:?}"
        );
        // Another model file.
        a.expect_proxy = Some(hex::encode(GENUINE));
        a.expect_model_digest = Some(format!("sha256:{}", hex::encode([0x64; 32])));
        assert_eq!(failed(&lines(&a)), ["model.digest"]);
        assert!(!run(&a).unwrap());
        a.expect_model_digest = None;
        assert!(run(&a).unwrap());
        // Not digests: input errors.
        a.expect_proxy = Some("sha256:1234".into());
        assert!(run(&a).is_err());
        a.expect_proxy = Some(format!("sha256:{}", hex::encode(GENUINE)));
        // Evidence of another principal given for the model: no claim for it.
        let fx = fixture::simulated("model-other");
        a.evidence = fx.join("platform.ev");
        let l = lines(&a);
        assert_eq!(failed(&l), ["principal", "model.claim"]);
        assert!(
            l.iter()
                .any(|x| x.2.starts_with("no claim for model:llm in this evidence")),
            "{l:?}"
        );
        assert!(!run(&a).unwrap());
        // No evidence file for the model: the monitor issued no claim; said so.
        a.evidence = dir.join("model_other.bin");
        a.principal = "model:other".into();
        let e = run(&a).unwrap_err().to_string();
        assert!(e.contains("issued no claim for this principal"), "{e}");
    }

    /// Forged and edited model claims: the host (without the monitor's key) issues its own
    /// evidence naming the genuine proxy and hands it over with the genuine run's report,
    /// or edits the claim in the genuine run's evidence file: the verifier expecting the
    /// genuine proxy refuses both (binding, inclusion).
    #[test]
    fn a_forged_or_edited_model_claim_fails_even_with_the_expected_proxy() {
        const GENUINE: [u8; 32] = [0x61; 32];
        const SUBSTITUTE: [u8; 32] = [0x71; 32];
        const MODEL: [u8; 32] = [0x63; 32];
        let dir = std::env::temp_dir().join(format!("omega-ev-forged-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = VerifyEvidenceArgs {
            evidence: dir.join("model_llm.bin"),
            principal: "model:llm".into(),
            check: fixture::lab_args(),
            expect_pins: None,
            expect_tools: None,
            expect_proxy: Some(format!("sha256:{}", hex::encode(GENUINE))),
            expect_model_digest: None,
            json: false,
        };
        // The run really served the substitute (the monitor proved it and said so).
        let (substituted, report) = model_evidence(SUBSTITUTE, MODEL);
        std::fs::write(&a.evidence, substituted.encode().unwrap()).unwrap();
        assert!(!run(&a).unwrap());

        // 1. Edit the claim in the file: the identity bytes replaced by the genuine ones.
        let mut bytes = substituted.encode().unwrap();
        let at = bytes
            .windows(32)
            .position(|w| w == SUBSTITUTE)
            .expect("the identity is in the file");
        bytes[at..at + 32].copy_from_slice(&GENUINE);
        std::fs::write(&a.evidence, &bytes).unwrap();
        let r = check(&a.evidence, &a.principal, &a.check).unwrap();
        assert!(!r.verified());
        assert!(
            r.lines.iter().any(|l| !l.0 && l.1 == "inclusion"),
            "{:?}",
            r.lines
        );
        assert!(!run(&a).unwrap());

        // 2. A forged evidence tree: the host's own issuer claims the genuine proxy, bound
        // to the genuine run's report (the host cannot get another one from a real PSP).
        let mut forger = Issuer::new([0x77; 32]).unwrap();
        forger
            .add(
                Claim::Model {
                    name: "llm".into(),
                    proxy_identity: GENUINE,
                    model_digest: MODEL,
                    gpu_evidence_digest: None,
                },
                [1; 32],
            )
            .unwrap();
        forger.attest(NONCE).unwrap();
        let forged = forger.bundle("model:llm", Some(report), None).unwrap();
        std::fs::write(&a.evidence, forged.encode().unwrap()).unwrap();
        let r = check(&a.evidence, &a.principal, &a.check).unwrap();
        assert!(!r.verified());
        assert!(
            r.lines.iter().any(|l| !l.0 && l.1 == "binding"),
            "{:?}",
            r.lines
        );
        assert!(!run(&a).unwrap());
    }

    /// A node's peer key counts only from its verified `peer` evidence.
    #[test]
    fn the_peer_key_verifies_as_principal_peer() {
        let dir = fixture::simulated("peer");
        let mut a = fixture::lab_args();
        let r = check(&dir.join("peer.ev"), "peer", &a).unwrap();
        assert!(r.verified(), "{:?}", r.lines);
        assert_eq!(
            r.claim,
            Some(Claim::PeerKey {
                public: fixture::PEER_KEY,
                boot_id: fixture::BOOT_ID
            })
        );
        // Another principal's evidence does not stand for it; another nonce fails.
        assert!(!check(&dir.join("card.ev"), "peer", &a).unwrap().verified());
        a.nonce = Some(hex::encode([0x43; 32]));
        assert!(!check(&dir.join("peer.ev"), "peer", &a).unwrap().verified());
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
        a.check.allow_unattested = true;
        assert!(run(&a).unwrap());
        a.json = true;
        assert!(run(&a).unwrap());
        a.json = false;
        a.principal = "policy".into();
        assert!(!run(&a).unwrap());
        a.principal = "agent:triage".into();
        a.check.nonce = Some(hex::encode([0x43; 32]));
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
            let family: Family = v.family().parse().unwrap();
            let measurement = hex::encode(&v.report[sev_snp::report::MEASUREMENT]);
            std::fs::write(
                dir.join("ev.bin"),
                iss.bundle("policy", Some(v.report.clone()), None)
                    .unwrap()
                    .encode()
                    .unwrap(),
            )
            .unwrap();
            let mut a = args(&dir, "policy", Some(nonce));
            // Without a pinned root and measurement a report is not checked at all.
            assert!(run(&a).is_err(), "{}", v.name);
            a.check.pin.vcek = Some(vcek.clone());
            a.check.pin.family = Some(family);
            assert!(run(&a).is_err(), "{}", v.name);
            a.check.pin.expect_measurement = Some(measurement.clone());
            a.check.pin.allow_debug = true;
            assert!(!run(&a).unwrap(), "{}", v.name);
            // Even with --allow-unattested, a swapped report does not pass.
            a.check.allow_unattested = true;
            assert!(!run(&a).unwrap(), "{}", v.name);
            // A report given on the command line is checked the same way.
            std::fs::write(
                dir.join("ev.bin"),
                iss.bundle("policy", None, None).unwrap().encode().unwrap(),
            )
            .unwrap();
            let mut b = args(&dir, "policy", Some(nonce));
            b.check.report = Some(report);
            b.check.pin = a.check.pin.clone();
            assert!(!run(&b).unwrap(), "{}", v.name);
        }
    }

    #[test]
    fn forged_report_with_matching_report_data_is_refused() {
        let (dir, iss, nonce) = setup("forged");
        // Recompute REPORT_DATA for this tree and splice it into a genuine report: the binding
        // check passes, the AMD signature over the report must then fail.
        let Binding::Unattested { report_data: rd } =
            iss.bundle("policy", None, None).unwrap().binding
        else {
            unreachable!("no report given")
        };
        // A genuine Milan report whose policy does not allow debugging (not go-sev-guest's).
        let genuine = snp::real_vectors()
            .into_iter()
            .rfind(|v| v.family() == "milan")
            .unwrap();
        let (_, vcek) = write_vector(&dir, &genuine);
        let measurement = hex::encode(&genuine.report[sev_snp::report::MEASUREMENT]);
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
        a.check.pin.vcek = Some(vcek);
        a.check.pin.family = Some(Family::Milan);
        a.check.pin.expect_measurement = Some(measurement);
        let r = check(&a.evidence, "policy", &a.check).unwrap();
        assert_eq!(failed(&r), ["report.signature"]);
        assert!(!run(&a).unwrap());
    }

    #[test]
    fn simulated_run_verifies_only_with_lab_root() {
        let dir = fixture::simulated("sim");
        for p in ["platform", "log", "policy"] {
            let r = check(&dir.join(format!("{p}.ev")), p, &fixture::lab_args()).unwrap();
            assert!(r.verified(), "{p}: {:?}", failed(&r));
            assert_eq!(r.tee, "simulated");
            assert_eq!(r.measurement, Some(MEASUREMENT));
            assert_eq!(r.qualifier(), " (SIMULATED PLATFORM)");
        }
        let platform = dir.join("platform.ev");
        let mut a = VerifyEvidenceArgs {
            evidence: platform.clone(),
            principal: "platform".into(),
            check: fixture::lab_args(),
            expect_pins: None,
            expect_tools: None,
            expect_proxy: None,
            expect_model_digest: None,
            json: false,
        };
        assert!(run(&a).unwrap());
        a.json = true;
        assert!(run(&a).unwrap());

        // The lab chain given as files: not an AMD root.
        std::fs::write(dir.join("ark.pem"), omega_sim_psp::LAB_ARK_PEM).unwrap();
        std::fs::write(dir.join("ask.pem"), omega_sim_psp::LAB_ASK_PEM).unwrap();
        std::fs::write(dir.join("vcek.der"), omega_sim_psp::LAB_VCEK_DER).unwrap();
        let mut files = fixture::lab_args();
        files.pin.lab_root = false;
        files.pin.ark = Some(dir.join("ark.pem"));
        files.pin.ask = Some(dir.join("ask.pem"));
        files.pin.vcek = Some(dir.join("vcek.der"));
        let r = check(&dir.join("log.ev"), "log", &files).unwrap();
        assert_eq!(failed(&r), ["ark.amd_root", "report.signature"]);
        // The platform's own claim ("simulated") also contradicts AMD roots.
        let r = check(&platform, "platform", &files).unwrap();
        assert_eq!(
            failed(&r),
            ["ark.amd_root", "report.signature", "platform.tee"]
        );
        // With --allow-unknown-ark the chain passes as if it were AMD's, and the platform's
        // own claim ("simulated") then contradicts the roots.
        files.pin.allow_unknown_ark = true;
        let r = check(&platform, "platform", &files).unwrap();
        assert_eq!(failed(&r), ["platform.tee"]);
        assert_eq!(r.tee, "sev-snp");
        // An AMD family does not sign lab reports.
        let mut amd = fixture::lab_args();
        amd.pin.lab_root = false;
        amd.pin.family = Some(Family::Milan);
        amd.pin.vcek = Some(dir.join("vcek.der"));
        let r = check(&platform, "platform", &amd).unwrap();
        assert!(
            failed(&r).contains(&"vcek.signed_by_ask"),
            "{:?}",
            failed(&r)
        );
    }

    #[test]
    fn platform_claiming_hardware_under_the_lab_root_fails() {
        let dir = fixture::write("claims-snp", "sev-snp", Some(SimPsp::new(MEASUREMENT)));
        let r = check(&dir.join("platform.ev"), "platform", &fixture::lab_args()).unwrap();
        assert_eq!(failed(&r), ["platform.tee"]);
        // Other principals do not see the platform claim; their tee is the roots'.
        let r = check(&dir.join("log.ev"), "log", &fixture::lab_args()).unwrap();
        assert!(r.verified());
        assert_eq!(r.tee, "simulated");
    }

    #[test]
    fn measurement_and_root_are_required_and_pinned() {
        let dir = fixture::simulated("pin");
        let log = dir.join("log.ev");
        let mut a = fixture::lab_args();
        a.pin.expect_measurement = None;
        assert!(check(&log, "log", &a).is_err());
        let mut a = fixture::lab_args();
        a.pin.lab_root = false;
        assert!(check(&log, "log", &a).is_err());
        // Evidence for another image.
        let mut a = fixture::lab_args();
        a.pin.expect_measurement = Some(hex::encode([0x4E; 48]));
        assert_eq!(failed(&check(&log, "log", &a).unwrap()), ["measurement"]);
        // Recomputed from an image that is not the one launched.
        let mut a = fixture::lab_args();
        a.pin.expect_measurement = None;
        a.pin.image = Some(PathBuf::from("/nonexistent/omega.bin"));
        a.pin.vcpus = Some(1);
        a.pin.vcpu_type = Some("EPYC-v4".parse().unwrap());
        assert!(check(&log, "log", &a).is_err());
        // The TCB minimum.
        let mut a = fixture::lab_args();
        a.pin.min_tcb = Some("snp=21".parse().unwrap());
        assert_eq!(failed(&check(&log, "log", &a).unwrap()), ["min_tcb"]);
        a.pin.min_tcb = Some("bl=3,tee=0,snp=20,ucode=209".parse().unwrap());
        assert!(check(&log, "log", &a).unwrap().verified());
        // The nonce.
        let mut a = fixture::lab_args();
        a.nonce = Some(hex::encode([0; 32]));
        assert_eq!(failed(&check(&log, "log", &a).unwrap()), ["nonce"]);
        assert_ne!(NONCE, [0; 32]);
    }

    #[test]
    fn debug_and_migration_agent_policies_refused_by_default() {
        use measurements::report::Policy;
        for (bit, check_name) in [
            (Policy::DEBUG, "policy.debug"),
            (Policy::MIGRATE_MA, "policy.migrate_ma"),
        ] {
            let psp = SimPsp::with_policy(MEASUREMENT, LAB_POLICY | bit);
            let dir = fixture::write(check_name, "simulated", Some(psp));
            let log = dir.join("log.ev");
            let mut a = fixture::lab_args();
            assert_eq!(failed(&check(&log, "log", &a).unwrap()), [check_name]);
            if bit == Policy::DEBUG {
                a.pin.allow_debug = true;
            } else {
                a.pin.allow_migration_agent = true;
            }
            assert!(check(&log, "log", &a).unwrap().verified(), "{check_name}");
        }
    }
}
