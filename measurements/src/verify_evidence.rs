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
            | Claim::PeerKey { boot_id, .. }
            | Claim::Coordinator { boot_id, .. },
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
        // What a fleet coordinator's credential binds (docs/fleet.md): the monitor key
        // (REPORT_DATA's) and, for the `peer` principal, the channel key.
        println!("monitor_key: {}", hex::encode(r.bundle.monitor_key));
        if let Some(Claim::PeerKey { public, .. }) = &r.claim {
            println!("peer_key: {}", hex::encode(public));
        }
        // A fleet coordinator's identity (docs/fleet.md): the key nodes' bundles name
        // (`fleet.coordinator`), the owner it obeys and its policy floor.
        if let Some(Claim::Coordinator {
            public,
            owner,
            min_policy_version,
            ..
        }) = &r.claim
        {
            println!("coordinator_key: {}", hex::encode(public));
            println!("owner: {}", hex::encode(owner));
            println!("min_policy_version: {min_policy_version}");
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
    /// A coordinator's credential key and its owner.
    pub const COORDINATOR_KEY: [u8; 32] = [0xC0; 32];
    pub const OWNER_KEY: [u8; 32] = [0x0E; 32];

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
            Claim::Coordinator {
                public: COORDINATOR_KEY,
                owner: OWNER_KEY,
                min_policy_version: 4,
                boot_id: BOOT_ID,
            },
        ];
        for (i, c) in claims.into_iter().enumerate() {
            iss.add(c, [i as u8 + 1; 32]).unwrap();
        }
        let rd = iss.attest(NONCE).unwrap();
        let report = psp.map(|p| p.report(rd, 0).to_vec());
        for p in [
            "platform",
            "log",
            "policy",
            "card",
            "agent:triage",
            "peer",
            "coordinator",
        ] {
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
mod tests;
