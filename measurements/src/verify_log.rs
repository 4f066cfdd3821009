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
mod tests {
    use super::*;
    use crate::verify_evidence::fixture;
    use omega_provenance::entry::MAX_ENTRY;
    use omega_provenance::note::LogKey;
    use omega_provenance::{Log, Record};
    use omega_sim_psp::SimPsp;

    struct Fixture {
        dir: PathBuf,
        key: String,
        stream: Vec<u8>,
    }

    fn fixture(tag: &str) -> Fixture {
        let dir =
            std::env::temp_dir().join(format!("omega-verify-log-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = LogKey::from_seed("omega.test/log", [3; 32]).unwrap();
        let mut log = Log::<8192>::new(0);
        let mut stream = Vec::new();
        let mut buf = [0u8; 8192];
        log.append(&Record {
            time: 0,
            agent: 0,
            action: Action::Lifecycle,
            target: 0,
            decision: Decision::Allow,
            rule: lifecycle::DEFINE_AGENT,
            labels: 0,
            content: None,
            name: Some(b"triage"),
        })
        .unwrap();
        for i in 1..50u64 {
            log.append(&Record {
                time: i * 3,
                agent: 0,
                action: Action::Tool,
                target: (i % 3) as u32,
                decision: if i % 7 == 0 {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
                rule: (i % 4) as u32,
                labels: i & 1,
                content: (i % 5 == 0).then_some([i as u8; 32]),
                name: None,
            })
            .unwrap();
            if i == 20 {
                let n = log.drain(&mut buf);
                stream.extend_from_slice(&buf[..n]);
                std::fs::write(dir.join("old.cp"), log.checkpoint(&key)).unwrap();
            }
        }
        let n = log.drain(&mut buf);
        stream.extend_from_slice(&buf[..n]);
        std::fs::write(dir.join("log.cp"), log.checkpoint(&key)).unwrap();
        std::fs::write(dir.join("entries.bin"), &stream).unwrap();
        Fixture {
            dir,
            key: key.verifier().encode(),
            stream,
        }
    }

    fn args(f: &Fixture) -> VerifyLogArgs {
        VerifyLogArgs {
            checkpoint: f.dir.join("log.cp"),
            key: Some(f.key.clone()),
            unattested_key: true,
            entries: Some(f.dir.join("entries.bin")),
            ..Default::default()
        }
    }

    #[test]
    fn full_log_verifies_and_tampering_fails() {
        let f = fixture("full");
        assert!(run(&args(&f)).unwrap());
        // Altered byte in an entry.
        let mut s = f.stream.clone();
        s[40] ^= 0x04;
        std::fs::write(f.dir.join("bad.bin"), &s).unwrap();
        let mut a = args(&f);
        a.entries = Some(f.dir.join("bad.bin"));
        assert!(!run(&a).unwrap());
        // Wrong key.
        let mut a = args(&f);
        a.key = Some(
            LogKey::from_seed("omega.test/log", [4; 32])
                .unwrap()
                .verifier()
                .encode(),
        );
        assert!(!run(&a).unwrap());
        // Old checkpoint is a prefix; swapped order fails.
        let mut a = args(&f);
        a.old_checkpoint = Some(f.dir.join("old.cp"));
        assert!(run(&a).unwrap());
        let mut a = args(&f);
        a.checkpoint = f.dir.join("old.cp");
        assert!(
            !run(&a).unwrap(),
            "entries beyond the checkpoint must be reported"
        );
    }

    #[test]
    fn emitted_proofs_verify_without_entries() {
        let f = fixture("proofs");
        let mut a = args(&f);
        a.emit_inclusion_proof = Some(33);
        a.out = Some(f.dir.join("incl.txt"));
        assert!(run(&a).unwrap());
        let mut a = args(&f);
        a.old_checkpoint = Some(f.dir.join("old.cp"));
        a.emit_consistency_proof = true;
        a.out = Some(f.dir.join("cons.txt"));
        assert!(run(&a).unwrap());

        let entries: Vec<Vec<u8>> = omega_provenance::entry::EntryIter::new(&f.stream)
            .map(|i| i.unwrap().2.to_vec())
            .collect();
        let mut a = args(&f);
        a.entries = None;
        a.entry_hex = Some(hex(&entries[33]));
        a.inclusion_proof = Some(f.dir.join("incl.txt"));
        assert!(run(&a).unwrap());
        a.entry_hex = Some(hex(&entries[34]));
        assert!(!run(&a).unwrap());
        let mut altered = entries[33].clone();
        altered[1 + 2] ^= 1;
        assert!(altered.len() <= MAX_ENTRY);
        a.entry_hex = Some(hex(&altered));
        assert!(!run(&a).unwrap());

        let mut a = args(&f);
        a.entries = None;
        a.old_checkpoint = Some(f.dir.join("old.cp"));
        a.consistency_proof = Some(f.dir.join("cons.txt"));
        assert!(run(&a).unwrap());
        // Reversed checkpoints do not verify with that proof.
        a.checkpoint = f.dir.join("old.cp");
        a.old_checkpoint = Some(f.dir.join("log.cp"));
        assert!(!run(&a).unwrap());
    }

    /// An `EVIDENCE` lifecycle entry: (decision, content, name).
    type EvidenceEntry<'a> = (Decision, Option<[u8; 32]>, &'a [u8]);

    /// The attested root of the evidence in `dir` (`log.ev`).
    fn attested_root(dir: &Path) -> [u8; 32] {
        let b = omega_evidence::Bundle::decode(&std::fs::read(dir.join("log.ev")).unwrap());
        b.unwrap().base_root
    }

    /// The entry the monitor logs once its evidence for `dir` is out.
    fn issued(dir: &Path) -> EvidenceEntry<'static> {
        (Decision::Allow, Some(attested_root(dir)), b"evidence")
    }

    /// A log of this boot (`fixture::BOOT_ID`) holding the evidence entry of the evidence
    /// in `dir`: entries and a checkpoint signed by `key` with `origin`, in `dir`.
    fn write_log(dir: &Path, key: &LogKey, origin: &str) {
        let entry = issued(dir);
        write_log_with(dir, key, origin, &[entry]);
    }

    /// As [`write_log`], with these `EVIDENCE` entries among the others.
    fn write_log_with(dir: &Path, key: &LogKey, origin: &str, evidence: &[EvidenceEntry<'_>]) {
        let mut log = Log::<8192>::new(0);
        let mut evidence = evidence.iter();
        for i in 0..10u64 {
            let e = (i % 3 == 1).then(|| evidence.next()).flatten();
            log.append(&Record {
                time: i,
                agent: 0,
                action: if e.is_some() {
                    Action::Lifecycle
                } else {
                    Action::Tool
                },
                target: 0,
                decision: e.map_or(Decision::Allow, |e| e.0),
                rule: if e.is_some() { lifecycle::EVIDENCE } else { 0 },
                labels: 0,
                content: e.and_then(|e| e.1),
                name: e.map(|e| e.2),
            })
            .unwrap();
        }
        assert!(evidence.next().is_none(), "at most 3 evidence entries");
        let mut buf = [0u8; 8192];
        let n = log.drain(&mut buf);
        std::fs::write(dir.join("entries.bin"), &buf[..n]).unwrap();
        let cp = Checkpoint {
            origin: origin.into(),
            size: log.size(),
            root: log.root(),
        };
        std::fs::write(dir.join("log.cp"), cp.sign(key)).unwrap();
    }

    fn origin() -> String {
        format!("{LOG_KEY_NAME}/{}", hex(&fixture::BOOT_ID))
    }

    fn evidence_args(dir: &Path) -> VerifyLogArgs {
        VerifyLogArgs {
            checkpoint: dir.join("log.cp"),
            evidence: Some(dir.join("log.ev")),
            attest: fixture::lab_args(),
            entries: Some(dir.join("entries.bin")),
            ..Default::default()
        }
    }

    #[test]
    fn key_from_evidence_verifies_a_simulated_run() {
        let dir = fixture::simulated("log-ok");
        write_log(&dir, &fixture::log_key(), &origin());
        let a = evidence_args(&dir);
        assert!(run(&a).unwrap());
        let source = log_key(&a, &mut Vec::new()).unwrap().unwrap();
        assert!(matches!(source.trust, KeyTrust::Simulated));
        // --origin, when given as well, must agree.
        let mut b = evidence_args(&dir);
        b.origin = Some("omega-monitor".into());
        assert!(!run(&b).unwrap());
    }

    #[test]
    fn host_signed_log_is_refused_via_evidence() {
        let dir = fixture::simulated("log-host");
        // The host's own key, named like the monitor's, over a log it wrote.
        let host = LogKey::from_seed(LOG_KEY_NAME, [0x66; 32]).unwrap();
        write_log(&dir, &host, &origin());
        assert!(!run(&evidence_args(&dir)).unwrap());
        // With the host's key file, it "verifies" only as UNATTESTED, and only on request.
        let mut a = evidence_args(&dir);
        a.evidence = None;
        a.key = Some(host.verifier().encode());
        assert!(run(&a).is_err(), "a bare key needs --unattested-key");
        a.unattested_key = true;
        assert!(run(&a).unwrap());
        let source = log_key(&a, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(
            source.trust.result_line(),
            "VERIFIED (UNATTESTED key: the host could have signed this log)"
        );
    }

    #[test]
    fn checkpoint_of_another_boot_is_refused() {
        let dir = fixture::simulated("log-boot");
        let other = format!("{LOG_KEY_NAME}/{}", hex(&[0xB1; 16]));
        write_log(&dir, &fixture::log_key(), &other);
        assert!(!run(&evidence_args(&dir)).unwrap());
        // The bare key name as origin (the old format) is another boot too.
        write_log(&dir, &fixture::log_key(), LOG_KEY_NAME);
        assert!(!run(&evidence_args(&dir)).unwrap());
    }

    /// The log must record this evidence: exactly one `EVIDENCE` entry (allow, named
    /// `evidence`) with the attested root, no "none issued" entry. Each pairing of a log
    /// with evidence it does not record is refused, although its checkpoint is valid.
    #[test]
    fn the_log_must_record_exactly_this_evidence() {
        let dir = fixture::simulated("log-evidence-entry");
        let (key, origin) = (fixture::log_key(), origin());
        let root = attested_root(&dir);
        let ok = issued(&dir);
        let refused_challenge: EvidenceEntry<'_> =
            (Decision::Deny, None, b"challenge refused: not the first");
        let verifies = |entries: &[EvidenceEntry<'_>]| {
            write_log_with(&dir, &key, &origin, entries);
            run(&evidence_args(&dir)).unwrap()
        };
        assert!(verifies(&[ok]));
        // A second challenge refused (and logged) does not disturb it.
        assert!(verifies(&[refused_challenge, ok, refused_challenge]));
        // The entry dropped (by a host that rewrote the log and holds the key).
        assert!(!verifies(&[]));
        assert!(!verifies(&[refused_challenge]));
        // Another boot's evidence root: the log belongs to other evidence.
        assert!(!verifies(&[(
            Decision::Allow,
            Some([0xEE; 32]),
            b"evidence"
        )]));
        assert!(!verifies(&[(Decision::Allow, None, b"evidence")]));
        // Issued twice.
        assert!(!verifies(&[ok, ok]));
        // Right root, wrong name or decision.
        assert!(!verifies(&[(Decision::Allow, Some(root), b"evidencE")]));
        assert!(!verifies(&[(Decision::Deny, Some(root), b"evidence")]));
        // The log says the evidence failed, yet evidence is presented.
        assert!(!verifies(&[
            ok,
            (Decision::Error, None, b"simulated PSP: no response")
        ]));
        // The check's own messages.
        write_log_with(&dir, &key, &origin, &[]);
        let stream = std::fs::read(dir.join("entries.bin")).unwrap();
        let e = evidence_entry(&stream, 10, &root).unwrap_err();
        assert!(e.contains("no EVIDENCE entry"), "{e}");
        write_log_with(&dir, &key, &origin, &[ok]);
        let stream = std::fs::read(dir.join("entries.bin")).unwrap();
        assert!(evidence_entry(&stream, 10, &root).is_ok());
        // Only the entries the checkpoint covers count.
        assert!(evidence_entry(&stream, 1, &root).is_err());
        let e = evidence_entry(&stream, 10, &[0xEE; 32]).unwrap_err();
        assert!(e.contains("of different boots"), "{e}");
        // Without --entries nothing can be checked, and the output says so.
        let mut a = evidence_args(&dir);
        a.entries = None;
        assert!(run(&a).unwrap());
    }

    #[test]
    fn evidence_that_does_not_verify_gives_no_key() {
        let dir = fixture::simulated("log-ev");
        write_log(&dir, &fixture::log_key(), &origin());
        // Another measurement.
        let mut a = evidence_args(&dir);
        a.attest.pin.expect_measurement = Some(hex(&[0x4E; 48]));
        assert!(!run(&a).unwrap());
        // No measurement, no root: usage errors.
        let mut a = evidence_args(&dir);
        a.attest.pin.expect_measurement = None;
        assert!(run(&a).is_err());
        let mut a = evidence_args(&dir);
        a.attest.pin.lab_root = false;
        assert!(run(&a).is_err());
        // The lab chain as --ark/--ask files.
        std::fs::write(dir.join("ark.pem"), omega_sim_psp::LAB_ARK_PEM).unwrap();
        std::fs::write(dir.join("ask.pem"), omega_sim_psp::LAB_ASK_PEM).unwrap();
        std::fs::write(dir.join("vcek.der"), omega_sim_psp::LAB_VCEK_DER).unwrap();
        let mut a = evidence_args(&dir);
        a.attest.pin.lab_root = false;
        a.attest.pin.ark = Some(dir.join("ark.pem"));
        a.attest.pin.ask = Some(dir.join("ask.pem"));
        a.attest.pin.vcek = Some(dir.join("vcek.der"));
        assert!(!run(&a).unwrap());
        // Another principal's evidence (it carries no log key).
        let mut a = evidence_args(&dir);
        a.evidence = Some(dir.join("policy.ev"));
        assert!(!run(&a).unwrap());
    }

    #[test]
    fn debug_or_migration_agent_policy_refused() {
        use measurements::report::Policy;
        for bit in [Policy::DEBUG, Policy::MIGRATE_MA] {
            let psp = SimPsp::with_policy(fixture::MEASUREMENT, omega_sim_psp::LAB_POLICY | bit);
            let dir = fixture::write(&format!("log-policy-{bit:x}"), "simulated", Some(psp));
            write_log(&dir, &fixture::log_key(), &origin());
            let mut a = evidence_args(&dir);
            assert!(!run(&a).unwrap());
            a.attest.pin.allow_debug = bit == Policy::DEBUG;
            a.attest.pin.allow_migration_agent = bit == Policy::MIGRATE_MA;
            assert!(run(&a).unwrap());
        }
    }

    #[test]
    fn unattested_platform_needs_its_flag() {
        let dir = fixture::write("log-none", "none", None);
        write_log(&dir, &fixture::log_key(), &origin());
        let mut a = evidence_args(&dir);
        a.attest.pin = Default::default();
        assert!(!run(&a).unwrap());
        a.attest.allow_unattested = true;
        assert!(run(&a).unwrap());
        let source = log_key(&a, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(
            source.trust.result_line(),
            "VERIFIED (UNATTESTED platform: no TEE)"
        );
    }
}
