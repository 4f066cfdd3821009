//! The relay as the attacker: every attack the channel claims to refuse is performed here
//! and shown refused, each ending the session (the owner sees one clear error).

use omega_peer_channel::{
    AuthorityError, Channel, Deframer, Event, Identity, Kind, Message, PeerAuthority, PeerError,
    PeerName, PinnedAuthority, Responder,
};
use omega_test_support::random::{Rng, mutate, seed};

/// A small coordinator stand-in: credentials are `name_len u8 ‖ name ‖ key ‖ not_after u64
/// ‖ Ed25519(root, all before)`. Real credentials are the fleet coordinator's.
struct TestAuthority {
    root: ed25519_compact::KeyPair,
}

impl TestAuthority {
    fn new(seed: u8) -> Self {
        TestAuthority {
            root: ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32])),
        }
    }

    fn issue(&self, name: &str, key: &[u8; 32], not_after: u64) -> Vec<u8> {
        let mut c = vec![name.len() as u8];
        c.extend_from_slice(name.as_bytes());
        c.extend_from_slice(key);
        c.extend_from_slice(&not_after.to_be_bytes());
        let sig = self.root.sk.sign(&c, None);
        c.extend_from_slice(&*sig);
        c
    }
}

impl PeerAuthority for TestAuthority {
    fn check(&self, c: &[u8], peer_key: &[u8; 32], now_s: u64) -> Result<PeerName, AuthorityError> {
        let bad = AuthorityError::Malformed("test credential");
        let (&n, rest) = c.split_first().ok_or(bad.clone())?;
        let n = usize::from(n);
        if rest.len() != n + 32 + 8 + 64 {
            return Err(bad);
        }
        let signed = &c[..1 + n + 40];
        let sig =
            ed25519_compact::Signature::from_slice(&c[1 + n + 40..]).map_err(|_| bad.clone())?;
        self.root
            .pk
            .verify(signed, &sig)
            .map_err(|_| AuthorityError::Signature)?;
        if &rest[n..n + 32] != peer_key {
            return Err(AuthorityError::WrongKey);
        }
        let not_after = u64::from_be_bytes(rest[n + 32..n + 40].try_into().unwrap());
        if now_s > not_after {
            return Err(AuthorityError::Expired);
        }
        PeerName::new(std::str::from_utf8(&rest[..n]).map_err(|_| bad.clone())?).ok_or(bad)
    }
}

const NOW: u64 = 1_000;

fn node(auth: &TestAuthority, name: &str, seed: u8) -> Identity {
    let id = Identity::from_seed([seed; 32], vec![]).unwrap();
    let cred = auth.issue(name, &id.public(), NOW + 60);
    Identity::from_seed([seed; 32], cred).unwrap()
}

fn name(n: &str) -> PeerName {
    PeerName::new(n).unwrap()
}

/// Ephemeral seeds: distinct per call, never zero (the tests' stand-in for entropy).
fn eph(n: u8) -> [u8; 32] {
    [n.wrapping_add(100); 32]
}

type Ch = Channel<TestAuthority>;

/// Both ends over an in-memory relay that records every byte it carries.
struct Pair {
    i: Ch,
    r: Ch,
    /// Every byte the relay carried, both directions.
    seen: Vec<u8>,
    /// Messages initiator → responder and back, as carried.
    i2r: Vec<Vec<u8>>,
    r2i: Vec<Vec<u8>>,
}

impl Pair {
    fn new(e: u8) -> Pair {
        let a = TestAuthority::new(1);
        let i = Ch::initiator(
            node(&a, "alpha", 11),
            TestAuthority::new(1),
            eph(e),
            Some(name("beta")),
        )
        .unwrap();
        let r = Ch::responder(node(&a, "beta", 12), TestAuthority::new(1), eph(e + 1)).unwrap();
        Pair {
            i,
            r,
            seen: vec![],
            i2r: vec![],
            r2i: vec![],
        }
    }

    /// Moves bytes both ways until quiet.
    fn pump(&mut self) -> Result<(), PeerError> {
        loop {
            let a = self.i.take_output();
            let b = self.r.take_output();
            if a.is_empty() && b.is_empty() {
                return Ok(());
            }
            self.seen.extend_from_slice(&a);
            self.seen.extend_from_slice(&b);
            if !a.is_empty() {
                self.i2r.extend(split(&a));
                self.r.feed(&a, NOW)?;
            }
            if !b.is_empty() {
                self.r2i.extend(split(&b));
                self.i.feed(&b, NOW)?;
            }
        }
    }

    fn established(e: u8) -> Pair {
        let mut p = Pair::new(e);
        p.pump().unwrap();
        assert!(p.i.is_open() && p.r.is_open());
        p
    }
}

fn split(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut d = Deframer::new();
    d.push(bytes).unwrap();
    let mut v = vec![];
    while let Some(m) = d.next_message().unwrap() {
        v.push(m.encode());
    }
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn events(c: &mut Ch) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

#[test]
fn both_ends_agree_and_the_relay_sees_no_cleartext() {
    let mut p = Pair::established(1);
    let ei = events(&mut p.i);
    let er = events(&mut p.r);
    let (Event::Established(pi), Event::Established(pr)) = (&ei[0], &er[0]) else {
        panic!("{ei:?} {er:?}")
    };
    assert_eq!(pi.name.as_str(), "beta");
    assert_eq!(pr.name.as_str(), "alpha");
    assert_eq!(pi.session_id, pr.session_id, "one session id at both ends");
    assert_eq!(pi.key, p.r.identity().public());

    let secret = b"alpha/triage -> beta/summariser: the quarterly figures";
    p.i.send(secret).unwrap();
    p.r.send(b"ack from beta").unwrap();
    p.pump().unwrap();
    assert_eq!(events(&mut p.r), [Event::Message(secret.to_vec())]);
    assert_eq!(
        events(&mut p.i),
        [Event::Message(b"ack from beta".to_vec())]
    );

    // SECURITY: what the relay saw: no payload, no peer key, no credential, no name.
    assert!(!contains(&p.seen, secret));
    assert!(!contains(&p.seen, b"ack from beta"));
    for who in [&p.i, &p.r] {
        assert!(!contains(&p.seen, &who.identity().public()));
    }
    assert!(!contains(&p.seen, b"alpha") && !contains(&p.seen, b"beta"));

    // Clean close both ways; the end of the stream is then no truncation.
    p.i.close().unwrap();
    p.pump().unwrap();
    assert_eq!(events(&mut p.r), [Event::Closed]);
    assert_eq!(events(&mut p.i), [Event::Closed]);
    assert_eq!(p.i.transport_ended(), Ok(()));
    assert_eq!(p.r.transport_ended(), Ok(()));
    assert_eq!(p.i.send(b"late"), Err(PeerError::Closed));
}

#[test]
fn sessions_differ_every_time() {
    let a = Pair::established(1);
    let b = Pair::established(3);
    assert_ne!(
        a.i.peer().unwrap().session_id,
        b.i.peer().unwrap().session_id
    );
    assert_ne!(a.i2r[0], b.i2r[0]);
}

#[test]
fn mitm_with_its_own_key_and_credential_is_the_wrong_peer() {
    // Mallory is an admitted node with a valid credential of her own; she answers alpha's
    // Init meant for beta.
    let a = TestAuthority::new(1);
    let mut i = Ch::initiator(
        node(&a, "alpha", 11),
        TestAuthority::new(1),
        eph(1),
        Some(name("beta")),
    )
    .unwrap();
    let mut m = Ch::responder(node(&a, "mallory", 66), TestAuthority::new(1), eph(2)).unwrap();
    m.feed(&i.take_output(), NOW).unwrap();
    let err = i.feed(&m.take_output(), NOW).unwrap_err();
    assert_eq!(
        err,
        PeerError::WrongPeer {
            expected: name("beta"),
            got: name("mallory")
        }
    );
    assert!(
        i.is_failed() && i.take_output().is_empty(),
        "no Finish sent to Mallory"
    );
}

#[test]
fn mitm_with_its_own_key_and_anothers_credential_is_refused() {
    // Mallory signs with her own key but presents beta's credential (it is not secret to a
    // node that once talked to beta).
    let a = TestAuthority::new(1);
    let beta_cred = a.issue("beta", &node(&a, "beta", 12).public(), NOW + 60);
    let mallory = Identity::from_seed([66; 32], beta_cred).unwrap();
    let mut i = Ch::initiator(node(&a, "alpha", 11), TestAuthority::new(1), eph(1), None).unwrap();
    let mut m = Ch::responder(mallory, TestAuthority::new(1), eph(2)).unwrap();
    m.feed(&i.take_output(), NOW).unwrap();
    assert_eq!(
        i.feed(&m.take_output(), NOW),
        Err(PeerError::Credential(AuthorityError::WrongKey))
    );
    // The same toward a responder: Mallory as initiator with alpha's credential.
    let alpha_cred = a.issue("alpha", &node(&a, "alpha", 11).public(), NOW + 60);
    let mallory = Identity::from_seed([66; 32], alpha_cred).unwrap();
    let mut m = Ch::initiator(mallory, TestAuthority::new(1), eph(3), None).unwrap();
    let mut r = Ch::responder(node(&a, "beta", 12), TestAuthority::new(1), eph(4)).unwrap();
    r.feed(&m.take_output(), NOW).unwrap();
    m.feed(&r.take_output(), NOW).unwrap();
    assert_eq!(
        r.feed(&m.take_output(), NOW),
        Err(PeerError::Credential(AuthorityError::WrongKey))
    );
    assert!(r.is_failed());
}

#[test]
fn credentials_for_another_key_expired_or_from_another_root_are_refused() {
    let a = TestAuthority::new(1);
    let other_root = TestAuthority::new(2);
    let beta_key = Identity::from_seed([12; 32], vec![]).unwrap().public();
    let cases = [
        (
            a.issue("beta", &[0x42; 32], NOW + 60),
            AuthorityError::WrongKey,
        ),
        (a.issue("beta", &beta_key, NOW - 1), AuthorityError::Expired),
        (
            other_root.issue("beta", &beta_key, NOW + 60),
            AuthorityError::Signature,
        ),
    ];
    for (cred, want) in cases {
        let beta = Identity::from_seed([12; 32], cred).unwrap();
        let mut i =
            Ch::initiator(node(&a, "alpha", 11), TestAuthority::new(1), eph(1), None).unwrap();
        let mut r = Ch::responder(beta, TestAuthority::new(1), eph(2)).unwrap();
        r.feed(&i.take_output(), NOW).unwrap();
        assert_eq!(
            i.feed(&r.take_output(), NOW),
            Err(PeerError::Credential(want))
        );
    }
}

#[test]
fn a_replayed_handshake_goes_nowhere() {
    // A full session recorded by the relay...
    let mut old = Pair::established(1);
    old.i.send(b"once").unwrap();
    old.pump().unwrap();
    let (init, finish, record) = (old.i2r[0].clone(), old.i2r[1].clone(), old.i2r[2].clone());
    let resp = old.r2i[0].clone();

    // ...replayed to beta later: beta answers the Init with a fresh ephemeral key, and the
    // recorded Finish does not decrypt under it.
    let a = TestAuthority::new(1);
    let mut r = Ch::responder(node(&a, "beta", 12), TestAuthority::new(1), eph(9)).unwrap();
    r.feed(&init, NOW).unwrap();
    assert_ne!(r.take_output(), resp, "a fresh Resp");
    assert_eq!(r.feed(&finish, NOW), Err(PeerError::HandshakeDecrypt));
    assert_eq!(r.feed(&record, NOW), Err(PeerError::Failed));

    // ...and the recorded Resp replayed to alpha's next attempt does not decrypt either.
    let mut i = Ch::initiator(node(&a, "alpha", 11), TestAuthority::new(1), eph(7), None).unwrap();
    assert_eq!(i.feed(&resp, NOW), Err(PeerError::HandshakeDecrypt));

    // Old records into a new session: another session's keys.
    let mut new = Pair::established(5);
    assert_eq!(new.r.feed(&record, NOW), Err(PeerError::RecordDecrypt));
}

#[test]
fn mitm_substituting_ephemeral_keys_cannot_complete() {
    // Mallory relays alpha's Init to beta unchanged but answers alpha herself with beta's
    // Resp re-based on her own ephemeral key: she can build the bytes, not beta's signature.
    // A Resp whose e_R alone is replaced must fail to decrypt (keys bound to e_R).
    let mut p = Pair::new(1);
    let init = p.i.take_output();
    p.r.feed(&init, NOW).unwrap();
    let resp = p.r.take_output();
    let mut forged = resp.clone();
    forged[3..35].copy_from_slice(&x25519_public(eph(50)));
    assert_eq!(p.i.feed(&forged, NOW), Err(PeerError::HandshakeDecrypt));
}

fn x25519_public(seed: [u8; 32]) -> [u8; 32] {
    // The public key a Channel would send for this seed, read back from its Init.
    let a = TestAuthority::new(1);
    let mut c = Ch::initiator(node(&a, "alpha", 11), TestAuthority::new(1), seed, None).unwrap();
    let init = Message::decode(&c.take_output()).unwrap();
    init.body[1..33].try_into().unwrap()
}

#[test]
fn flipped_bytes_in_a_record_end_the_session_cleanly() {
    let mut p = Pair::established(1);
    p.i.send(b"payload under test").unwrap();
    let rec = p.i.take_output();
    // Every byte position, each in a fresh session's copy of the same record position.
    for at in 0..rec.len() {
        let mut q = Pair::established(1);
        events(&mut q.r);
        q.i.send(b"payload under test").unwrap();
        let mut bad = q.i.take_output();
        assert_eq!(bad, rec, "deterministic sessions for a fixed seed");
        bad[at] ^= 0x01;
        let err = match q.r.feed(&bad, NOW) {
            // A longer length in the header: the responder waits for bytes that never come,
            // and the end of the stream is a truncation.
            Ok(()) => {
                assert!(at == 1 || at == 2, "byte {at} accepted");
                q.r.transport_ended().unwrap_err()
            }
            Err(e) => e,
        };
        assert!(
            matches!(
                err,
                PeerError::RecordDecrypt
                    | PeerError::OutOfOrder { .. }
                    | PeerError::Malformed(_)
                    | PeerError::TooLarge(_)
                    | PeerError::Truncated
            ),
            "byte {at}: {err:?}"
        );
        assert!(q.r.is_failed());
        assert!(events(&mut q.r).is_empty(), "nothing delivered");
        // Then even the genuine record is refused: the session is over.
        assert_eq!(q.r.feed(&rec, NOW), Err(PeerError::Failed));
        assert_eq!(q.r.transport_ended(), Err(PeerError::Failed));
    }
}

#[test]
fn replayed_reordered_and_dropped_records_are_refused() {
    let mut p = Pair::established(1);
    let recs: Vec<Vec<u8>> = (0..3u8)
        .map(|n| {
            p.i.send(&[n; 4]).unwrap();
            p.i.take_output()
        })
        .collect();
    p.r.feed(&recs[0], NOW).unwrap();
    assert_eq!(
        p.r.feed(&recs[0], NOW),
        Err(PeerError::Replayed {
            expected: 1,
            got: 0
        })
    );

    let mut p = Pair::established(1);
    let recs: Vec<Vec<u8>> = (0..3u8)
        .map(|n| {
            p.i.send(&[n; 4]).unwrap();
            p.i.take_output()
        })
        .collect();
    p.r.feed(&recs[0], NOW).unwrap();
    // Reordered (2 before 1) or 1 dropped: the same refusal.
    assert_eq!(
        p.r.feed(&recs[2], NOW),
        Err(PeerError::OutOfOrder {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(events(&mut p.r).len(), 2, "Established and record 0 only");
}

#[test]
fn reflected_messages_are_refused() {
    // Records bounced back to their sender: the other direction's key.
    let mut p = Pair::established(1);
    p.i.send(b"to beta").unwrap();
    let rec = p.i.take_output();
    assert_eq!(p.i.feed(&rec, NOW), Err(PeerError::RecordDecrypt));

    // Handshake messages bounced back: the wrong message for the state.
    let mut p = Pair::new(1);
    let init = p.i.take_output();
    assert!(matches!(
        p.i.feed(&init, NOW),
        Err(PeerError::Unexpected {
            got: Kind::Init,
            ..
        })
    ));
    let mut p = Pair::new(1);
    p.r.feed(&p.i.take_output(), NOW).unwrap();
    let resp = p.r.take_output();
    assert!(matches!(
        p.r.feed(&resp, NOW),
        Err(PeerError::Unexpected {
            got: Kind::Resp,
            ..
        })
    ));

    // alpha's Init relayed to another session of alpha herself (same peer key): alpha
    // refuses to accept her own key as the peer's.
    let a = TestAuthority::new(1);
    let mut i = Ch::initiator(node(&a, "alpha", 11), TestAuthority::new(1), eph(1), None).unwrap();
    let mut also_alpha =
        Ch::responder(node(&a, "alpha", 11), TestAuthority::new(1), eph(2)).unwrap();
    also_alpha.feed(&i.take_output(), NOW).unwrap();
    assert_eq!(
        i.feed(&also_alpha.take_output(), NOW),
        Err(PeerError::Reflection)
    );
}

#[test]
fn a_cut_stream_is_a_truncation_and_a_close_cannot_be_forged() {
    let mut p = Pair::established(1);
    p.i.send(b"first half").unwrap();
    p.pump().unwrap();
    assert_eq!(p.r.transport_ended(), Err(PeerError::Truncated));

    let mut p = Pair::established(1);
    p.i.close().unwrap();
    let mut close = p.i.take_output();
    let last = close.len() - 1;
    close[last] ^= 0x80;
    assert_eq!(p.r.feed(&close, NOW), Err(PeerError::RecordDecrypt));
    assert!(events(&mut p.r).iter().all(|e| *e != Event::Closed));
}

#[test]
fn low_order_keys_versions_and_bounds() {
    let a = TestAuthority::new(1);
    let beta = node(&a, "beta", 12);
    // An Init with a low-order (all-zero) ephemeral key: no shared secret.
    let mut init = vec![Kind::Init as u8, 0, 33, 1];
    init.extend_from_slice(&[0; 32]);
    let m = Message::decode(&init).unwrap();
    assert_eq!(
        Responder::on_init(&beta, eph(1), &m).err(),
        Some(PeerError::WeakKey)
    );
    init[3] = 2;
    let m = Message::decode(&init).unwrap();
    assert_eq!(
        Responder::on_init(&beta, eph(1), &m).err(),
        Some(PeerError::Version(2))
    );
    // Zero seeds (a failed entropy source) are refused.
    assert_eq!(
        Identity::from_seed([0; 32], vec![]).err(),
        Some(PeerError::BadLocalKey)
    );
    assert!(Ch::responder(node(&a, "beta", 12), TestAuthority::new(1), [0; 32]).is_err());
    // Bounds.
    assert!(Identity::from_seed([1; 32], vec![0; omega_peer_channel::MAX_CREDENTIAL + 1]).is_err());
    let mut p = Pair::established(1);
    assert_eq!(
        p.i.send(&vec![0; omega_peer_channel::MAX_PLAINTEXT + 1]),
        Err(PeerError::TooLarge("record payload"))
    );
    p.i.send(&vec![7; omega_peer_channel::MAX_PLAINTEXT])
        .unwrap();
    p.pump().unwrap();
}

#[test]
fn pinned_authority_works_end_to_end() {
    let alpha = Identity::from_seed([11; 32], b"alpha".to_vec()).unwrap();
    let beta = Identity::from_seed([12; 32], b"beta".to_vec()).unwrap();
    let mut pins = PinnedAuthority::new();
    pins.pin(name("alpha"), alpha.public());
    pins.pin(name("beta"), beta.public());
    let mut i = Channel::initiator(alpha, pins.clone(), eph(1), Some(name("beta"))).unwrap();
    let mut r = Channel::responder(beta, pins, eph(2)).unwrap();
    r.feed(&i.take_output(), NOW).unwrap();
    i.feed(&r.take_output(), NOW).unwrap();
    r.feed(&i.take_output(), NOW).unwrap();
    assert!(i.is_open() && r.is_open());
    // A node whose key is not pinned under the name it claims.
    let mut pins = PinnedAuthority::new();
    pins.pin(name("beta"), [9; 32]);
    let alpha = Identity::from_seed([11; 32], b"alpha".to_vec()).unwrap();
    let beta = Identity::from_seed([12; 32], b"beta".to_vec()).unwrap();
    let mut i = Channel::initiator(alpha, pins.clone(), eph(1), None).unwrap();
    let mut r = Channel::responder(beta, pins, eph(2)).unwrap();
    r.feed(&i.take_output(), NOW).unwrap();
    assert_eq!(
        i.feed(&r.take_output(), NOW),
        Err(PeerError::Credential(AuthorityError::WrongKey))
    );
}

#[test]
fn mutated_relay_bytes_never_panic_and_never_deliver() {
    let mut rng = Rng::new(seed(0x9ee7));
    let base = Pair::established(1);
    let (init, finish) = (base.i2r[0].clone(), base.i2r[1].clone());
    let resp = base.r2i[0].clone();
    for round in 0..600 {
        let mut p = Pair::new(1);
        let which = round % 4;
        let mut bytes = [&init, &resp, &finish, &init][which].clone();
        mutate(&mut rng, &mut bytes);
        let r = match which {
            0 => p.r.feed(&bytes, NOW),
            1 => {
                p.i.take_output();
                p.i.feed(&bytes, NOW)
            }
            2 => {
                p.r.feed(&p.i.take_output(), NOW).unwrap();
                p.r.take_output();
                p.r.feed(&bytes, NOW)
            }
            _ => {
                // Bytes in small random pieces.
                let mut at = 0;
                let mut r = Ok(());
                while at < bytes.len() && r.is_ok() {
                    let n = rng.in_range(1..8).min(bytes.len() - at);
                    r = p.r.feed(&bytes[at..at + n], NOW);
                    at += n;
                }
                r
            }
        };
        // A mutation may leave bytes unchanged or only cut them; it never opens a session
        // whose peer is not the one that signed.
        if r.is_ok() {
            assert!(!p.i.is_open() || bytes == resp);
        }
        // Finishing with altered bytes never establishes the responder.
        if which == 2 && bytes != finish {
            assert!(!p.r.is_open(), "round {round}");
        }
    }
}

#[test]
fn an_agent_message_crosses_and_its_outcome_comes_back() {
    use omega_peer_channel::{AgentAddr, Frame};
    let mut p = Pair::established(1);
    events(&mut p.i);
    events(&mut p.r);
    let to = AgentAddr::parse("beta/summariser").unwrap();
    assert_eq!(
        &to.node,
        &p.i.peer().unwrap().name,
        "the node is the channel's peer"
    );
    let deliver = Frame::Deliver {
        id: 1,
        from: "triage".into(),
        from_module: [0x3A; 32],
        to: to.agent.clone(),
        message: b"urgent: bed 4".to_vec(),
        labels: vec!["phi".into()],
    };
    p.i.send(&deliver.encode().unwrap()).unwrap();
    p.pump().unwrap();
    let [Event::Message(m)] = &events(&mut p.r)[..] else {
        panic!()
    };
    assert_eq!(Frame::decode(m).unwrap(), deliver);
    let outcome = Frame::Outcome {
        id: 1,
        delivered: false,
        reason: "rule 2 (deny send)".into(),
    };
    p.r.send(&outcome.encode().unwrap()).unwrap();
    p.pump().unwrap();
    let [Event::Message(m)] = &events(&mut p.i)[..] else {
        panic!()
    };
    assert_eq!(Frame::decode(m).unwrap(), outcome);
    for needle in [&b"summariser"[..], b"triage", b"urgent", b"deny send"] {
        assert!(!contains(&p.seen, needle));
    }
}
