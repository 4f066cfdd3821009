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
    let dir = std::env::temp_dir().join(format!("omega-verify-log-{tag}-{}", std::process::id()));
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
