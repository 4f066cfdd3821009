//! `measurements verify-log`: verify an Omega provenance log offline (issue 5).
//!
//! * The key: `--evidence FILE` (the `log` principal's evidence, checked as `verify-evidence`
//!   does, with the same flags): its `LogKey` claim gives the key (named `omega-monitor`) and
//!   the boot id, and the checkpoint origin must be `omega-monitor/<hex boot id>`. With
//!   `--entries`, the log must also hold exactly one `EVIDENCE` entry (decision allow, name
//!   `evidence`) recording the evidence's attested root, and no entry saying none was
//!   issued: the log and the evidence name each other. A bare
//!   `--key PUB` is a key the host handed over: refused unless `--unattested-key`, and then
//!   the result says UNATTESTED.
//! * `--entries FILE --checkpoint FILE`: every entry against the signed checkpoint
//!   (detects dropped, reordered, duplicated, altered, truncated and appended entries).
//! * `--entry FILE --inclusion-proof FILE`: one entry against the checkpoint.
//! * `--old-checkpoint FILE [--consistency-proof FILE]`: the new checkpoint extends the old.
//! * `--emit-inclusion-proof N` / `--emit-consistency-proof` (with `--entries`, `--out`):
//!   produce proofs for third parties (the host-storage role).
//!
//! Formats: docs/provenance.md. Prints one `FAIL` line per failed check; true = verified.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use omega_evidence::{Claim, TEE_NONE, TEE_SIMULATED};
use omega_provenance::entry::{Action, Decision, Entry, lifecycle};
use omega_provenance::merkle::{self, leaf_hash};
use omega_provenance::note::{Checkpoint, VerifierKey};
use omega_provenance::proof_file::{ConsistencyProofFile, InclusionProofFile, hex, unhex};
use omega_provenance::verify::verify_stream;

use crate::report_args::read;
use crate::verify_evidence::{self, EvidenceCheckArgs};

/// The log key's name in checkpoint signatures (the monitor's `attest::LOG_KEY_NAME`).
pub const LOG_KEY_NAME: &str = "omega-monitor";

#[derive(clap::Args, Debug, Default)]
pub struct VerifyLogArgs {
    /// The signed checkpoint (C2SP signed note).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// The `log` principal's evidence bundle: the attested log key and boot id.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "key",
        required_unless_present = "key"
    )]
    pub evidence: Option<PathBuf>,
    /// How the evidence is checked (the same flags as verify-evidence).
    #[command(flatten)]
    pub attest: EvidenceCheckArgs,
    /// A verifier key `<name>+<hash>+<base64>` (C2SP vkey), or a file containing it, instead
    /// of --evidence: refused unless --unattested-key.
    #[arg(long, value_name = "PUB")]
    pub key: Option<String>,
    /// Accept --key although nothing attests it (the host could have signed the log).
    #[arg(long, requires = "key")]
    pub unattested_key: bool,
    /// The at-rest entry stream (concatenated entries) to check against the checkpoint.
    #[arg(long, value_name = "FILE")]
    pub entries: Option<PathBuf>,
    /// Expected checkpoint origin (default: any).
    #[arg(long, value_name = "NAME")]
    pub origin: Option<String>,
    /// A single encoded entry (binary file) to check with --inclusion-proof.
    #[arg(
        long,
        value_name = "FILE",
        requires = "inclusion_proof",
        conflicts_with = "entry_hex"
    )]
    pub entry: Option<PathBuf>,
    /// A single encoded entry as hex, instead of --entry.
    #[arg(long, value_name = "HEX", requires = "inclusion_proof")]
    pub entry_hex: Option<String>,
    /// Inclusion proof file for --entry / --entry-hex.
    #[arg(long, value_name = "FILE")]
    pub inclusion_proof: Option<PathBuf>,
    /// An earlier signed checkpoint that the checkpoint must extend.
    #[arg(long, value_name = "FILE")]
    pub old_checkpoint: Option<PathBuf>,
    /// Consistency proof from --old-checkpoint to --checkpoint (not needed with --entries).
    #[arg(long, value_name = "FILE", requires = "old_checkpoint")]
    pub consistency_proof: Option<PathBuf>,
    /// Write the inclusion proof of entry N (in the checkpoint's tree) to --out.
    #[arg(long, value_name = "N", requires_all = ["entries", "out"])]
    pub emit_inclusion_proof: Option<u64>,
    /// Write the consistency proof from --old-checkpoint to --checkpoint to --out.
    #[arg(long, requires_all = ["entries", "out", "old_checkpoint"])]
    pub emit_consistency_proof: bool,
    /// Output file for --emit-*.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print every entry (ids resolved through the log's dictionary entries).
    #[arg(long, requires = "entries")]
    pub dump: bool,
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    String::from_utf8(read(path)?).with_context(|| format!("{} is not UTF-8", path.display()))
}

fn load_key(s: &str) -> anyhow::Result<VerifierKey> {
    let text = if Path::new(s).is_file() {
        read_text(Path::new(s))?
    } else {
        s.to_string()
    };
    VerifierKey::parse(text.trim()).map_err(|e| anyhow::anyhow!("--key: {e}"))
}

/// Verifies the signed checkpoint; a bad signature is a failed check, not a usage error.
fn load_checkpoint(
    path: &Path,
    key: &VerifierKey,
    fails: &mut Vec<String>,
) -> anyhow::Result<Option<Checkpoint>> {
    let note = read_text(path)?;
    match Checkpoint::verify(&note, key) {
        Ok(cp) => Ok(Some(cp)),
        Err(e) => {
            fails.push(format!("checkpoint {}: {e}", path.display()));
            Ok(None)
        }
    }
}

fn describe(e: &Entry<'_>, names: &std::collections::HashMap<(u32, u32), String>) -> String {
    let name = |kind: u32, id: u32| {
        names
            .get(&(kind, id))
            .cloned()
            .unwrap_or_else(|| format!("#{id}"))
    };
    let mut s = format!(
        "{:>8} +{:<6} {:<9} agent={} target={} {} ",
        e.seq,
        e.dt,
        e.action.name(),
        name(lifecycle::DEFINE_AGENT, e.agent),
        name(lifecycle::DEFINE_TARGET, e.target),
        e.decision.name(),
    );
    if e.action == Action::Lifecycle {
        let _ = write!(s, "event={}", e.rule);
    } else {
        let _ = write!(s, "rule={}", name(lifecycle::DEFINE_RULE, e.rule));
    }
    if e.labels != 0 {
        let labels: Vec<String> = (0..64)
            .filter(|b| e.labels & (1u64 << b) != 0)
            .map(|b| name(lifecycle::DEFINE_LABEL, b))
            .collect();
        let _ = write!(s, " labels={}", labels.join(","));
    }
    if let Some(c) = &e.content {
        let _ = write!(s, " content={}", hex(c));
    }
    if let Some(n) = e.name {
        let _ = write!(s, " name={:?}", String::from_utf8_lossy(n));
    }
    s
}

/// Where the key came from, which decides the result line.
enum KeyTrust {
    /// From evidence verified under AMD's roots.
    Attested,
    /// From evidence verified under the simulated PSP's lab root.
    Simulated,
    /// From evidence on a platform without a TEE (accepted by --allow-unattested).
    UnattestedPlatform,
    /// From --key (accepted by --unattested-key).
    UnattestedKey,
}

impl KeyTrust {
    fn result_line(&self) -> &'static str {
        match self {
            KeyTrust::Attested => "VERIFIED",
            KeyTrust::Simulated => "VERIFIED (SIMULATED platform: lab PSP, no hardware)",
            KeyTrust::UnattestedPlatform => "VERIFIED (UNATTESTED platform: no TEE)",
            KeyTrust::UnattestedKey => {
                "VERIFIED (UNATTESTED key: the host could have signed this log)"
            }
        }
    }
}

/// The key to check the log with, and what else the log must agree with.
struct LogKeySource {
    key: VerifierKey,
    /// The checkpoint origin the evidence names (`omega-monitor/<boot id>`).
    origin: Option<String>,
    /// The evidence's attested root, which the log's `EVIDENCE` entry must record.
    evidence_root: Option<[u8; 32]>,
    trust: KeyTrust,
}

/// The log key and the origin its checkpoints must carry: from the `log` principal's
/// verified evidence, or (on request) a bare key. `None` when the evidence did not verify
/// (its failures are printed).
fn log_key(args: &VerifyLogArgs, passes: &mut Vec<String>) -> anyhow::Result<Option<LogKeySource>> {
    match (&args.evidence, &args.key) {
        (Some(evidence), None) => {
            let r = verify_evidence::check(evidence, "log", &args.attest)?;
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            if !r.verified() {
                for (passed, name, msg) in &r.lines {
                    if !passed {
                        println!("FAIL evidence {name}: {msg}");
                    }
                }
                return Ok(None);
            }
            let Some(Claim::LogKey { public, boot_id }) = r.claim else {
                bail!("the evidence's verified claim is not a log key");
            };
            passes.extend(
                r.lines
                    .iter()
                    .map(|(_, name, msg)| format!("evidence {name}: {msg}")),
            );
            let origin = format!("{LOG_KEY_NAME}/{}", hex(&boot_id));
            passes.push(format!(
                "log key {} attested by evidence (tee {}, boot id {})",
                hex(&public),
                r.tee,
                hex(&boot_id)
            ));
            let trust = match r.tee {
                TEE_NONE => KeyTrust::UnattestedPlatform,
                TEE_SIMULATED => KeyTrust::Simulated,
                _ => KeyTrust::Attested,
            };
            let key = VerifierKey {
                name: LOG_KEY_NAME.into(),
                public,
            };
            Ok(Some(LogKeySource {
                key,
                origin: Some(origin),
                evidence_root: Some(r.bundle.base_root),
                trust,
            }))
        }
        (None, Some(key)) if args.unattested_key => {
            println!("UNATTESTED");
            passes.push(
                "log key from --key, not from verified evidence: the host could have signed this log"
                    .into(),
            );
            Ok(Some(LogKeySource {
                key: load_key(key)?,
                origin: None,
                evidence_root: None,
                trust: KeyTrust::UnattestedKey,
            }))
        }
        // SECURITY: a key file next to the log is whatever the host wrote; checking a log
        // against it proves only that the host was consistent.
        (None, Some(_)) => bail!(
            "--key is a key the host handed you, not an attested one: verify with --evidence \
             (the log principal's evidence), or add --unattested-key to accept it anyway"
        ),
        _ => bail!(
            "give --evidence FILE (the log principal's evidence), or --key with --unattested-key"
        ),
    }
}

/// Checks that the first `size` entries of `stream` (those the checkpoint covers) record
/// the evidence with attested root `root`: exactly one `EVIDENCE` entry with decision
/// allow, name `evidence` and content `root`, and none with decision error ("no evidence
/// was issued"). Refused challenges (decision deny) may come and go. The pass line, or
/// the failure.
///
/// SECURITY: the evidence names the log (key and boot id), and this makes the log name the
/// evidence: a log of another boot, one whose `EVIDENCE` entry was dropped or changed, or
/// one that says the evidence failed does not pass with this evidence. (Forging entries
/// under a valid checkpoint needs the log key; the point is that neither file can be
/// paired with the other boot's.)
fn evidence_entry(stream: &[u8], size: u64, root: &[u8; 32]) -> Result<String, String> {
    let mut issued = Vec::new();
    let mut failed = Vec::new();
    let mut refused = 0usize;
    let entries = omega_provenance::entry::EntryIter::new(stream).map_while(Result::ok);
    for (_, e, _) in entries.take(usize::try_from(size).unwrap_or(usize::MAX)) {
        if e.action != Action::Lifecycle || e.rule != lifecycle::EVIDENCE {
            continue;
        }
        match e.decision {
            Decision::Allow => issued.push((e.seq, e.content, e.name.map(<[u8]>::to_vec))),
            Decision::Deny => refused += 1,
            // Error: the monitor could not make its evidence (confirm is meaningless here).
            _ => failed.push((
                e.seq,
                e.decision.name(),
                String::from_utf8_lossy(e.name.unwrap_or_default()).into_owned(),
            )),
        }
    }
    let root_hex = hex(root);
    if let Some((seq, decision, reason)) = failed.first() {
        return Err(format!(
            "the log's EVIDENCE entry {seq} (decision {decision}, {reason:?}) says no evidence \
             was issued, yet this evidence (root {root_hex}) claims to be of this log"
        ));
    }
    let [(seq, content, name)] = issued.as_slice() else {
        return Err(match issued.len() {
            0 => format!(
                "the log has no EVIDENCE entry (evidence root {root_hex}): a log of another \
                 boot, or the entry was dropped"
            ),
            n => format!("the log has {n} EVIDENCE entries; a boot issues its evidence once"),
        });
    };
    if content.as_ref() != Some(root) {
        return Err(format!(
            "the log's EVIDENCE entry {seq} records root {}, the evidence attests {root_hex}: \
             the log and the evidence are of different boots",
            content.map_or_else(|| "(none)".to_string(), |c| hex(&c))
        ));
    }
    if name.as_deref() != Some(b"evidence".as_slice()) {
        return Err(format!(
            "the log's EVIDENCE entry {seq} is named {:?}, not \"evidence\"",
            String::from_utf8_lossy(name.as_deref().unwrap_or_default())
        ));
    }
    Ok(format!(
        "the log's EVIDENCE entry {seq} records this evidence's root {root_hex}{}",
        match refused {
            0 => String::new(),
            n => format!(" ({n} refused challenge(s) logged)"),
        }
    ))
}

pub fn run(args: &VerifyLogArgs) -> anyhow::Result<bool> {
    let mut fails: Vec<String> = Vec::new();
    let mut passes: Vec<String> = Vec::new();
    let Some(LogKeySource {
        key,
        origin: attested_origin,
        evidence_root,
        trust,
    }) = log_key(args, &mut passes)?
    else {
        return Ok(false);
    };

    let Some(cp) = load_checkpoint(&args.checkpoint, &key, &mut fails)? else {
        for f in &fails {
            println!("FAIL {f}");
        }
        return Ok(false);
    };
    passes.push(format!(
        "checkpoint signed by {}: origin {:?}, size {}",
        key.name, cp.origin, cp.size
    ));
    // SECURITY: the origin names the boot; a checkpoint of another boot's log (signed by
    // that boot's attested key) is not this evidence's log.
    for o in [&attested_origin, &args.origin].into_iter().flatten() {
        if &cp.origin != o {
            fails.push(format!(
                "checkpoint origin is {:?}, expected {o:?}",
                cp.origin
            ));
        }
    }
    let old = match &args.old_checkpoint {
        Some(p) => load_checkpoint(p, &key, &mut fails)?,
        None => None,
    };
    if let Some(o) = &old
        && o.origin != cp.origin
    {
        fails.push(format!(
            "old checkpoint origin {:?} differs from {:?}",
            o.origin, cp.origin
        ));
    }

    // Full stream.
    let mut tree = None;
    if let Some(path) = &args.entries {
        let stream = read(path)?;
        let rep = verify_stream(&stream, &cp);
        if args.dump {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let mut names = std::collections::HashMap::new();
            for (_, e, _) in omega_provenance::entry::EntryIter::new(&stream).flatten() {
                if let (Action::Lifecycle, Some(n)) = (e.action, e.name) {
                    names.insert((e.rule, e.target), String::from_utf8_lossy(n).into_owned());
                }
                // A closed pipe (`| head`) ends the dump quietly.
                if writeln!(out, "{}", describe(&e, &names)).is_err() {
                    break;
                }
            }
        }
        if rep.failures.is_empty() {
            passes.push(format!(
                "{} entries ({} bytes, {:.1} B/entry) match the checkpoint",
                rep.entries,
                rep.bytes,
                rep.bytes as f64 / rep.entries.max(1) as f64
            ));
        }
        fails.extend(rep.failures);
        tree = Some(rep.tree);
        if let Some(root) = &evidence_root {
            match evidence_entry(&stream, cp.size, root) {
                Ok(pass) => passes.push(pass),
                Err(fail) => fails.push(fail),
            }
        }
    } else if evidence_root.is_some() {
        passes.push(
            "the log's EVIDENCE entry was not checked (give --entries to check the log)".into(),
        );
    }

    // Single entry + inclusion proof.
    if let Some(pf) = &args.inclusion_proof {
        let bytes = match (&args.entry, &args.entry_hex) {
            (Some(p), _) => read(p)?,
            (None, Some(h)) => unhex(h.trim()).context("--entry-hex is not hex")?,
            (None, None) => bail!("--inclusion-proof needs --entry or --entry-hex"),
        };
        let proof = InclusionProofFile::parse(&read_text(pf)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", pf.display()))?;
        match Entry::decode(&bytes) {
            Ok((e, n)) if n == bytes.len() => {
                if e.seq != proof.index {
                    fails.push(format!(
                        "entry carries seq {} but the proof is for index {}",
                        e.seq, proof.index
                    ));
                }
            }
            Ok(_) => fails.push("entry file has trailing bytes after one entry".into()),
            Err(e) => fails.push(format!("entry does not decode: {e}")),
        }
        if proof.size != cp.size {
            fails.push(format!(
                "inclusion proof is for tree size {}, checkpoint has {}",
                proof.size, cp.size
            ));
        } else {
            match merkle::verify_inclusion(
                &leaf_hash(&bytes),
                proof.index,
                proof.size,
                &proof.hashes,
                &cp.root,
            ) {
                Ok(()) => passes.push(format!(
                    "entry {} is included in the checkpoint",
                    proof.index
                )),
                Err(e) => fails.push(format!("inclusion proof for entry {}: {e}", proof.index)),
            }
        }
    }

    // Consistency between two checkpoints.
    if let Some(o) = &old {
        if let Some(t) = &tree {
            match t.root_at(o.size) {
                Some(r) if merkle::ct_eq(&r, &o.root) => passes.push(format!(
                    "old checkpoint (size {}) is a prefix of the entries",
                    o.size
                )),
                _ => fails.push(format!(
                    "old checkpoint (size {}) is not a prefix of these entries: history rewritten",
                    o.size
                )),
            }
        }
        if let Some(pf) = &args.consistency_proof {
            let proof = ConsistencyProofFile::parse(&read_text(pf)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", pf.display()))?;
            if proof.old != o.size || proof.new != cp.size {
                fails.push(format!(
                    "consistency proof is for sizes {}→{}, checkpoints are {}→{}",
                    proof.old, proof.new, o.size, cp.size
                ));
            } else {
                match merkle::verify_consistency(o.size, cp.size, &o.root, &cp.root, &proof.hashes)
                {
                    Ok(()) => passes.push(format!(
                        "checkpoint {} extends checkpoint {}",
                        cp.size, o.size
                    )),
                    Err(e) => fails.push(format!("consistency proof {}→{}: {e}", o.size, cp.size)),
                }
            }
        } else if tree.is_none() {
            bail!("--old-checkpoint needs --entries or --consistency-proof");
        }
    } else if args.old_checkpoint.is_some() && args.emit_consistency_proof {
        bail!("cannot emit a consistency proof: the old checkpoint does not verify");
    }

    // Proof emission (only from a stream that verified).
    if args.emit_inclusion_proof.is_some() || args.emit_consistency_proof {
        let (Some(t), Some(out)) = (&tree, &args.out) else {
            bail!("--emit-* needs --entries and --out")
        };
        if !fails.is_empty() {
            for f in &fails {
                println!("FAIL {f}");
            }
            bail!("not emitting a proof from a log that does not verify");
        }
        let text = if let Some(i) = args.emit_inclusion_proof {
            let hashes = t
                .inclusion_proof(i, cp.size)
                .map_err(|e| anyhow::anyhow!("entry {i}: {e}"))?;
            InclusionProofFile {
                index: i,
                size: cp.size,
                hashes,
            }
            .render()
        } else {
            let o = old.as_ref().context("old checkpoint")?;
            let hashes = t
                .consistency_proof(o.size, cp.size)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ConsistencyProofFile {
                old: o.size,
                new: cp.size,
                hashes,
            }
            .render()
        };
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
        passes.push(format!("wrote {}", out.display()));
    }

    if args.entries.is_none()
        && args.inclusion_proof.is_none()
        && old.is_none()
        && args.old_checkpoint.is_none()
    {
        passes.push(
            "only the checkpoint signature was checked (give --entries to check the log)".into(),
        );
    }

    for f in &fails {
        println!("FAIL {f}");
    }
    if fails.is_empty() {
        for p in &passes {
            println!("PASS {p}");
        }
        println!("{}", trust.result_line());
    }
    Ok(fails.is_empty())
}

#[cfg(test)]
mod tests;
