//! Stable-Rust stand-in for the fuzz targets: many random and mutated inputs thrown at every
//! decoder and verifier. Properties: no panic; accepted entries re-encode to the same bytes;
//! a mutated stream never verifies against the original checkpoint.

use omega_provenance::entry::{EntryIter, MAX_ENTRY};
use omega_provenance::merkle::{self, Hash};
use omega_provenance::note::{Checkpoint, LogKey, VerifierKey};
use omega_provenance::proof_file::{ConsistencyProofFile, InclusionProofFile};
use omega_provenance::verify::verify_stream;
use omega_provenance::{Action, Decision, Entry, Log, Record, b64, varint};

use omega_test_support::random::{Rng, mutate};

fn check_stream_decoding(data: &[u8]) {
    for item in EntryIter::new(data) {
        let Ok((_, e, bytes)) = item else { break };
        let mut buf = [0u8; MAX_ENTRY];
        let n = e.encode(&mut buf).expect("decoded entries are valid");
        assert_eq!(&buf[..n], bytes, "non-canonical entry accepted");
    }
}

fn valid_stream(r: &mut Rng, n: usize) -> (Vec<u8>, Checkpoint) {
    let mut log = Log::<65536>::new(0);
    let mut t = 0;
    for i in 0..n {
        t += r.below(1000) as u64;
        let x = r.next_u64();
        let lifecycle = i == 0 || x.is_multiple_of(11);
        log.append(&Record {
            time: t,
            agent: (x >> 8) as u32 % 300,
            action: if lifecycle {
                Action::Lifecycle
            } else {
                Action::from_u8((x % 4) as u8).unwrap()
            },
            target: (x >> 20) as u32 % 70_000,
            decision: Decision::from_u8((x >> 40) as u8),
            // (lifecycle event 0 = LOG_START would have to name the checkpoint origin)
            rule: 1 + (x >> 44) as u32 % 200,
            labels: if x & 1 == 1 { x >> 1 } else { 0 },
            content: (x & 2 == 2).then_some([x as u8; 32]),
            name: lifecycle.then_some(&b"name-of-something"[..(x % 17 + 1) as usize]),
        })
        .unwrap();
    }
    let mut out = vec![0u8; 65536];
    let k = log.drain(&mut out);
    out.truncate(k);
    let cp = Checkpoint {
        origin: "o".into(),
        size: log.size(),
        root: log.root(),
    };
    (out, cp)
}

#[test]
fn random_bytes_never_panic_entry_decoder() {
    let mut r = Rng::new(0x1234_5678_9abc_def1);
    for _ in 0..20_000 {
        let len = r.below(200);
        let data = r.bytes(len);
        check_stream_decoding(&data);
        let _ = varint::decode(&data);
        let _ = Entry::decode(&data);
    }
}

#[test]
fn mutated_streams_never_verify() {
    let mut r = Rng::new(42);
    let mut rejected = 0;
    for round in 0..300 {
        let (stream, cp) = valid_stream(&mut r, 1 + round % 40);
        assert!(verify_stream(&stream, &cp).failures.is_empty());
        for _ in 0..10 {
            let mut m = stream.clone();
            mutate(&mut r, &mut m);
            check_stream_decoding(&m);
            if m != stream {
                assert!(
                    !verify_stream(&m, &cp).failures.is_empty(),
                    "mutated stream verified"
                );
                rejected += 1;
            }
        }
    }
    assert!(rejected > 2500);
}

#[test]
fn varint_roundtrip_and_strictness() {
    let mut r = Rng::new(7);
    let mut buf = [0u8; varint::MAX_LEN];
    for i in 0..100_000u64 {
        let v = match i % 4 {
            0 => i,
            1 => r.next_u64(),
            2 => r.next_u64() >> r.below(64),
            _ => u64::MAX - i,
        };
        let n = varint::encode(v, &mut buf);
        assert_eq!(n, varint::len(v));
        assert_eq!(varint::decode(&buf[..n]), Ok((v, n)));
        assert!(varint::decode(&buf[..n - 1]).is_err());
        if n < varint::MAX_LEN {
            // Overlong (non-canonical) forms are rejected.
            let mut long = buf[..n].to_vec();
            long[n - 1] |= 0x80;
            long.push(0);
            assert!(varint::decode(&long).is_err());
        }
    }
    assert!(varint::decode(&[0xff; 10]).is_err());
    assert!(varint::decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_ok());
    assert!(varint::decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).is_err());
}

#[test]
fn base64_roundtrip_and_random() {
    let mut r = Rng::new(99);
    for len in 0..300 {
        let d = r.bytes(len);
        let e = b64::encode(&d);
        assert_eq!(b64::decode(e.as_bytes()).unwrap(), d);
        let mut m = e.clone().into_bytes();
        mutate(&mut r, &mut m);
        if let Some(x) = b64::decode(&m) {
            // Strict decoding: the accepted text is the canonical encoding of what it decodes to.
            assert_eq!(b64::encode(&x).as_bytes(), &m[..]);
        }
    }
}

#[test]
fn random_notes_keys_and_proof_files_never_panic() {
    let mut r = Rng::new(2024);
    let key = LogKey::from_seed("omega.test/log", [1; 32]).unwrap();
    let vk = key.verifier();
    let note = Checkpoint {
        origin: "omega.test/log".into(),
        size: 17,
        root: [5; 32],
    }
    .sign(&key);
    let vks = vk.encode();
    let incl = InclusionProofFile {
        index: 3,
        size: 17,
        hashes: vec![[1; 32]; 5],
    }
    .render();
    let cons = ConsistencyProofFile {
        old: 3,
        new: 17,
        hashes: vec![[2; 32]; 5],
    }
    .render();
    for _ in 0..20_000 {
        for base in [&note, &vks, &incl, &cons] {
            let mut m = base.clone().into_bytes();
            mutate(&mut r, &mut m);
            let Ok(s) = String::from_utf8(m) else {
                continue;
            };
            if let Ok(cp) = Checkpoint::verify(&s, &vk) {
                // Only the intact signed text verifies.
                assert_eq!(cp, Checkpoint::verify(&note, &vk).unwrap());
            }
            let _ = Checkpoint::parse_text(&s);
            if let Ok(k) = VerifierKey::parse(&s) {
                assert_eq!(k, vk);
            }
            let _ = InclusionProofFile::parse(&s);
            let _ = ConsistencyProofFile::parse(&s);
        }
    }
}

#[test]
fn random_proofs_never_panic_and_never_verify() {
    let mut r = Rng::new(555);
    for _ in 0..20_000 {
        let a = match r.below(3) {
            0 => r.next_u64(),
            1 => r.below(100) as u64,
            _ => u64::MAX - r.below(3) as u64,
        };
        let b = match r.below(3) {
            0 => r.next_u64(),
            1 => r.below(100) as u64,
            _ => u64::MAX - r.below(3) as u64,
        };
        let h = |r: &mut Rng| -> Hash { r.bytes(32).try_into().unwrap() };
        let proof: Vec<Hash> = (0..r.below(70)).map(|_| h(&mut r)).collect();
        let (x, y) = (h(&mut r), h(&mut r));
        assert!(merkle::verify_inclusion(&x, a, b, &proof, &y).is_err());
        assert!(a == b || merkle::verify_consistency(a, b, &x, &y, &proof).is_err());
    }
}
