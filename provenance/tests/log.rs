//! Log, checkpoint and tamper-detection tests.

use omega_provenance::entry::{EntryIter, MAX_ENTRY, lifecycle};
use omega_provenance::merkle::{self, Tree};
use omega_provenance::note::{Checkpoint, LogKey, VerifierKey};
use omega_provenance::proof_file::{ConsistencyProofFile, InclusionProofFile};
use omega_provenance::verify::verify_stream;
use omega_provenance::{AckError, Action, AppendError, Decision, Entry, Log, Record};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn key() -> LogKey {
    LogKey::from_seed("omega.test/log", [7; 32]).unwrap()
}

fn record(r: &mut Rng, time: u64) -> Record<'static> {
    let x = r.next();
    Record {
        time,
        agent: (x % 5) as u32,
        action: Action::from_u8((x >> 8) as u8 % 4).unwrap(),
        target: ((x >> 16) % 20) as u32,
        decision: Decision::from_u8((x >> 24) as u8),
        rule: ((x >> 32) % 30) as u32,
        labels: (x >> 40) & 0b101,
        content: if x & (1 << 60) != 0 {
            Some([(x >> 3) as u8; 32])
        } else {
            None
        },
        name: None,
    }
}

/// Builds a log of `n` entries (starting with dictionary entries), draining into a Vec.
fn build(n: usize, seed: u64) -> (Vec<u8>, Log<4096>) {
    let mut log = Log::<4096>::new(0);
    let mut out = Vec::new();
    let mut rng = Rng(seed | 1);
    let mut t = 0;
    let mut buf = [0u8; 1000];
    let defs: [(u32, u32, &[u8]); 3] = [
        (lifecycle::LOG_START, 0, b"omega.test/log"),
        (lifecycle::DEFINE_AGENT, 0, b"triage-agent"),
        (lifecycle::DEFINE_TARGET, 3, b"tool:ehr.lookup"),
    ];
    for (ev, target, name) in defs {
        log.append(&Record {
            time: t,
            agent: 0,
            action: Action::Lifecycle,
            target,
            decision: Decision::Allow,
            rule: ev,
            labels: 0,
            content: None,
            name: Some(name),
        })
        .unwrap();
    }
    while (log.size() as usize) < n {
        t += rng.next() % 50;
        match log.append(&record(&mut rng, t)) {
            Ok(_) => {}
            Err(AppendError::OutboxFull) => {
                let k = log.drain(&mut buf);
                out.extend_from_slice(&buf[..k]);
            }
            Err(e) => panic!("{e}"),
        }
    }
    loop {
        let k = log.drain(&mut buf);
        if k == 0 {
            break;
        }
        out.extend_from_slice(&buf[..k]);
    }
    (out, log)
}

fn cp_of(log: &mut Log<4096>) -> Checkpoint {
    let k = key();
    let note = log.checkpoint(&k);
    Checkpoint::verify(&note, &k.verifier()).unwrap()
}

#[test]
fn intact_log_verifies_and_matches_frontier() {
    for n in [3usize, 4, 17, 300, 1000] {
        let (stream, mut log) = build(n, n as u64);
        let cp = cp_of(&mut log);
        assert_eq!(cp.size, n as u64);
        let rep = verify_stream(&stream, &cp);
        assert!(rep.failures.is_empty(), "{:?}", rep.failures);
        assert_eq!(rep.entries, n as u64);
        assert_eq!(rep.tree.root(), log.root());
        // Every entry is re-encoded byte-identically (canonical encoding).
        for item in EntryIter::new(&stream) {
            let (_, e, bytes) = item.unwrap();
            let mut b = [0u8; MAX_ENTRY];
            let l = e.encode(&mut b).unwrap();
            assert_eq!(&b[..l], bytes);
        }
    }
}

fn entries(stream: &[u8]) -> Vec<Vec<u8>> {
    EntryIter::new(stream)
        .map(|i| i.unwrap().2.to_vec())
        .collect()
}

fn fails(stream: &[u8], cp: &Checkpoint) -> bool {
    !verify_stream(stream, cp).failures.is_empty()
}

#[test]
fn every_kind_of_tampering_is_detected() {
    let (stream, mut log) = build(200, 99);
    let cp = cp_of(&mut log);
    let es = entries(&stream);
    assert_eq!(es.len(), 200);
    // Dropped entries (each position).
    for i in 0..es.len() {
        let mut v = es.clone();
        v.remove(i);
        assert!(fails(&v.concat(), &cp), "drop {i} undetected");
    }
    // Reordered (adjacent swaps, and a far swap).
    for i in 0..es.len() - 1 {
        let mut v = es.clone();
        if v[i] == v[i + 1] {
            continue;
        }
        v.swap(i, i + 1);
        assert!(fails(&v.concat(), &cp), "swap {i} undetected");
    }
    // Duplicated entry.
    let mut v = es.clone();
    v.insert(50, es[50].clone());
    assert!(fails(&v.concat(), &cp));
    // Appended entry (well-formed, correct next seq) beyond the checkpoint.
    let mut extra = Entry::decode(&es[199]).unwrap().0;
    extra.seq = 200;
    let mut b = [0u8; MAX_ENTRY];
    let l = extra.encode(&mut b).unwrap();
    let mut appended = stream.clone();
    appended.extend_from_slice(&b[..l]);
    assert!(fails(&appended, &cp));
    // Truncated stream (whole entries removed from the end, and a partial entry).
    assert!(fails(&es[..199].concat(), &cp));
    assert!(fails(&stream[..stream.len() - 1], &cp));
    // Every single-bit flip anywhere in a (smaller) stream.
    let (small, mut small_log) = build(60, 7);
    let small_cp = cp_of(&mut small_log);
    assert!(!fails(&small, &small_cp));
    for pos in 0..small.len() {
        for bit in 0..8u8 {
            let mut s = small.clone();
            s[pos] ^= 1 << bit;
            assert!(fails(&s, &small_cp), "flip at {pos} bit {bit} undetected");
        }
    }
    // The same entries under another origin (a different log) are refused.
    let mut c1 = cp.clone();
    c1.origin = "omega.test/other-log".into();
    assert!(fails(&stream, &c1));
    // A checkpoint with the wrong size or root does not match the intact stream.
    let mut c2 = cp.clone();
    c2.size -= 1;
    assert!(fails(&stream, &c2));
    let mut c3 = cp.clone();
    c3.root[0] ^= 1;
    assert!(fails(&stream, &c3));
}

#[test]
fn backpressure_refuses_instead_of_dropping() {
    let mut log = Log::<256>::new(0);
    let mut rng = Rng(5);
    let mut accepted = 0u64;
    let mut refused = 0u64;
    let mut out = Vec::new();
    let mut buf = [0u8; 37]; // small, odd-sized drains split entries across reads
    for t in 0..2000u64 {
        let r = record(&mut rng, t);
        loop {
            let before = (log.size(), log.root(), log.pending());
            match log.append(&r) {
                Ok(a) => {
                    assert_eq!(a.seq, accepted);
                    accepted += 1;
                    break;
                }
                Err(AppendError::OutboxFull) => {
                    refused += 1;
                    // Nothing changed.
                    assert_eq!(before, (log.size(), log.root(), log.pending()));
                    let k = log.drain(&mut buf);
                    assert!(k > 0);
                    out.extend_from_slice(&buf[..k]);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    loop {
        let k = log.drain(&mut buf);
        if k == 0 {
            break;
        }
        out.extend_from_slice(&buf[..k]);
    }
    assert!(refused > 0);
    assert_eq!(log.size(), 2000);
    let cp = Checkpoint {
        origin: "x".into(),
        size: log.size(),
        root: log.root(),
    };
    let rep = verify_stream(&out, &cp);
    assert!(rep.failures.is_empty(), "{:?}", rep.failures);
    assert_eq!(rep.entries, 2000);
    // Time going backwards is refused.
    assert_eq!(
        log.append(&Record {
            time: 0,
            ..record(&mut rng, 0)
        }),
        Err(AppendError::TimeWentBackwards)
    );
}

/// Entries leave the outbox only when acknowledged: a host that withholds acks fills it
/// and the producer is refused (never dropped); an ack beyond what was sent, or going
/// backwards, is refused and changes nothing; after a reconnect the log is sent again from
/// the first byte the new host lacks, and the stored stream verifies.
#[test]
fn entries_stay_until_acknowledged_and_resume_after_a_reconnect() {
    let mut log = Log::<512>::new(0);
    let mut rng = Rng(11);
    let mut stored = Vec::new(); // what the (first) host durably holds
    let mut in_flight = Vec::new(); // sent, not acknowledged
    let mut buf = [0u8; 29];
    let mut t = 0;
    // 1. The host stores nothing and acknowledges nothing: the outbox fills, nothing lost.
    loop {
        let r = record(&mut rng, t);
        match log.append(&r) {
            Ok(_) => t += 1,
            Err(AppendError::OutboxFull) => {
                let k = log.take_unsent(&mut buf);
                if k == 0 {
                    break; // everything sent, nothing acknowledged: the producer blocks
                }
                in_flight.extend_from_slice(&buf[..k]);
            }
            Err(e) => panic!("{e}"),
        }
    }
    let held = log.pending();
    assert!(held > 512 - MAX_ENTRY, "{held}");
    assert_eq!(log.sent(), held as u64);
    assert_eq!(log.unsent(), 0);
    // 2. Lies are refused and change nothing.
    let before = (log.pending(), log.acked(), log.sent());
    assert_eq!(
        log.acknowledge(held as u64 + 1),
        Err(AckError::BeyondSent {
            acked: held as u64 + 1,
            sent: held as u64
        })
    );
    assert_eq!(before, (log.pending(), log.acked(), log.sent()));
    // 3. A partial ack releases the whole entries it covers; the entry it ends inside
    //    stays held until all of it is acknowledged.
    let part = in_flight.len() / 3;
    let whole = entry_ends(&in_flight)
        .into_iter()
        .filter(|e| *e <= part)
        .max()
        .unwrap();
    assert!(whole < part, "the test wants an ack inside an entry");
    assert_eq!(log.acknowledge(part as u64), Ok(whole));
    stored.extend_from_slice(&in_flight[..whole]);
    assert_eq!(log.pending(), held - whole);
    assert_eq!(log.acked(), whole as u64);
    assert_eq!(
        log.acknowledge(part as u64 - 1),
        Err(AckError::Backwards {
            acked: part as u64 - 1,
            earlier: part as u64
        })
    );
    assert_eq!(
        log.acknowledge(part as u64),
        Ok(0),
        "a repeated ack is harmless"
    );
    // 4. A new host: lies about what it holds are refused and change nothing: more than
    //    was ever sent, less than what was released, or a cut inside an entry.
    let before = (log.pending(), log.acked(), log.sent(), log.unsent());
    assert!(matches!(
        log.resend_from(log.sent() + 1),
        Err(AckError::BeyondSent { .. })
    ));
    assert!(matches!(
        log.resend_from(whole as u64 - 1),
        Err(AckError::Backwards { .. })
    ));
    let next = entry_ends(&in_flight)
        .into_iter()
        .find(|e| *e > whole)
        .unwrap();
    assert_eq!(
        log.resend_from(whole as u64 + 1),
        Err(AckError::MidEntry {
            at: whole as u64 + 1,
            before: whole as u64,
            after: next as u64
        })
    );
    assert_eq!(
        before,
        (log.pending(), log.acked(), log.sent(), log.unsent())
    );
    //    The host restarts holding the whole entries it had (the torn one cut, the rest it
    //    received lost with it): the log resends from there.
    log.resend_from(whole as u64).unwrap();
    assert_eq!(log.unsent(), held - whole);
    for t in t..t + 200 {
        let r = record(&mut rng, t);
        loop {
            match log.append(&r) {
                Ok(_) => break,
                Err(AppendError::OutboxFull) => {
                    let k = log.take_unsent(&mut buf);
                    stored.extend_from_slice(&buf[..k]);
                    log.acknowledge(stored.len() as u64).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    loop {
        let k = log.take_unsent(&mut buf);
        if k == 0 {
            break;
        }
        stored.extend_from_slice(&buf[..k]);
    }
    log.acknowledge(stored.len() as u64).unwrap();
    assert_eq!(log.pending(), 0);
    let cp = Checkpoint {
        origin: "x".into(),
        size: log.size(),
        root: log.root(),
    };
    let rep = verify_stream(&stored, &cp);
    assert!(rep.failures.is_empty(), "{:?}", rep.failures);
    assert_eq!(rep.entries, log.size());
}

/// Where each entry of a stream of whole entries (and a partial last one) ends.
fn entry_ends(stream: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while let Ok((_, n)) = omega_provenance::entry::Entry::decode(&stream[at..]) {
        at += n;
        ends.push(at);
    }
    ends
}

#[test]
fn checkpoint_due_every_n() {
    let mut log = Log::<1024>::new(10);
    let mut rng = Rng(77);
    let mut dues = Vec::new();
    let mut sink = [0u8; 1024];
    for t in 0..35 {
        let a = log.append(&record(&mut rng, t)).unwrap();
        if a.checkpoint_due {
            dues.push(a.seq);
            let _ = log.checkpoint(&key());
        }
        log.drain(&mut sink);
    }
    assert_eq!(dues, vec![9, 19, 29]);
}

#[test]
fn signed_checkpoint_roundtrip_and_rejections() {
    let k = key();
    let cp = Checkpoint {
        origin: "omega.test/log".into(),
        size: 12345,
        root: [9; 32],
    };
    let note = cp.sign(&k);
    assert!(note.starts_with("omega.test/log\n12345\n"));
    let vk = VerifierKey::parse(&k.verifier().encode()).unwrap();
    assert_eq!(Checkpoint::verify(&note, &vk).unwrap(), cp);
    // Wrong key.
    let other = LogKey::from_seed("omega.test/log", [8; 32]).unwrap();
    assert!(Checkpoint::verify(&note, &other.verifier()).is_err());
    // Altered body.
    let altered = note.replacen("12345", "12346", 1);
    assert!(Checkpoint::verify(&altered, &vk).is_err());
    // Any byte flip of the note fails (or is a different, unsigned note).
    for i in 0..note.len() {
        let mut b = note.clone().into_bytes();
        b[i] ^= 0x01;
        if let Ok(s) = String::from_utf8(b) {
            assert!(Checkpoint::verify(&s, &vk).is_err(), "flip at {i}");
        }
    }
    // Key string hash mismatch.
    let enc = vk.encode();
    let mut parts: Vec<&str> = enc.split('+').collect();
    parts[1] = "00000000";
    assert!(VerifierKey::parse(&parts.join("+")).is_err());
}

#[test]
fn verifier_keys_roundtrip_for_many_keys() {
    // Base64 keys often contain '+', the field separator: parsing must still work.
    let mut with_plus = 0;
    assert!(
        LogKey::from_seed("omega.test/log", [0; 32]).is_none(),
        "all-zero seed must be refused"
    );
    assert!(LogKey::from_seed("bad name", [1; 32]).is_none());
    for seed in 1..=200u8 {
        let k = LogKey::from_seed("omega.test/log", [seed; 32]).unwrap();
        let enc = k.verifier().encode();
        if enc.matches('+').count() > 2 {
            with_plus += 1;
        }
        let vk = VerifierKey::parse(&enc).unwrap();
        assert_eq!(vk, k.verifier());
        let note = Checkpoint {
            origin: "o".into(),
            size: u64::from(seed),
            root: [seed; 32],
        }
        .sign(&k);
        assert_eq!(
            Checkpoint::verify(&note, &vk).unwrap().size,
            u64::from(seed)
        );
    }
    assert!(with_plus > 10);
}

#[test]
fn proof_files_roundtrip_and_verify() {
    let (stream, mut log) = build(123, 3);
    let cp = cp_of(&mut log);
    let rep = verify_stream(&stream, &cp);
    let tree: &Tree = &rep.tree;
    let p = InclusionProofFile {
        index: 77,
        size: 123,
        hashes: tree.inclusion_proof(77, 123).unwrap(),
    };
    let q = InclusionProofFile::parse(&p.render()).unwrap();
    assert_eq!(p, q);
    let es = entries(&stream);
    merkle::verify_inclusion(
        &merkle::leaf_hash(&es[77]),
        q.index,
        q.size,
        &q.hashes,
        &cp.root,
    )
    .unwrap();
    assert!(
        merkle::verify_inclusion(
            &merkle::leaf_hash(&es[78]),
            q.index,
            q.size,
            &q.hashes,
            &cp.root
        )
        .is_err()
    );
    let c = ConsistencyProofFile {
        old: 50,
        new: 123,
        hashes: tree.consistency_proof(50, 123).unwrap(),
    };
    let d = ConsistencyProofFile::parse(&c.render()).unwrap();
    assert_eq!(c, d);
    merkle::verify_consistency(50, 123, &tree.root_at(50).unwrap(), &cp.root, &d.hashes).unwrap();
}

#[test]
fn bytes_per_entry_within_goals() {
    // Realistic metadata-only workload: 100k entries, few agents/targets/rules, ms time.
    let mut log = Log::<65536>::new(0);
    let mut rng = Rng(11);
    let mut sink = vec![0u8; 65536];
    let mut total = 0usize;
    let n = 100_000u64;
    let mut t = 0;
    for _ in 0..n {
        t += rng.next() % 40;
        let mut r = record(&mut rng, t);
        r.content = None;
        let a = log.append(&r).unwrap();
        total += a.encoded_len;
        if log.free() < MAX_ENTRY {
            log.drain(&mut sink);
        }
    }
    let per = total as f64 / n as f64;
    assert!(per <= 12.0, "metadata-only {per} B/entry");
    let mut log = Log::<65536>::new(0);
    let mut total = 0usize;
    for i in 0..n {
        let mut r = record(&mut rng, t + i);
        r.content = Some([1; 32]);
        total += log.append(&r).unwrap().encoded_len;
        if log.free() < MAX_ENTRY {
            log.drain(&mut sink);
        }
    }
    let per = total as f64 / n as f64;
    assert!(per <= 48.0, "with content digest {per} B/entry");
}
