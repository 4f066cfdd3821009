use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use omega_evidence::{Binding, Bundle, Options, SaltedLeaf, verify};
use sev_snp::guest_msg::{
    MSG_HDR_SIZE, MSG_PAGE_SIZE, MsgHeader, REPORT_REQ_SIZE, REPORT_RSP_SIZE, msg_type,
    open_message, seal_message,
};
use sev_snp::{GuestMessenger, GuestMsgError, Vmpck};

use super::*;

/// An RNG that counts (never stuck, never repeating).
struct Counter(u64);

impl HwRng for Counter {
    fn rdseed(&mut self) -> Option<u64> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        Some(self.0)
    }
    fn rdrand(&mut self) -> Option<u64> {
        None
    }
}

const BOOT_ID: [u8; 16] = [0xab; 16];

fn file(name: &str, bytes: &[u8]) -> BundleFile {
    use sha2::Digest;
    BundleFile {
        name: name.into(),
        sha256: sha2::Sha256::digest(bytes).into(),
        bytes: bytes.to_vec(),
    }
}

fn bundle() -> (Manifest, Vec<BundleFile>) {
    let json = Manifest::json("policy.bin", [("triage", "a.wasm"), ("summary", "b.wasm")]);
    let mut manifest = Manifest::parse(&json).unwrap();
    manifest.agents[0].publisher = Some("Example Health".into());
    let files = vec![
        file("manifest.json", &json),
        file("policy.bin", b"OMPL"),
        file("a.wasm", b"\0asm a"),
        file("b.wasm", b"\0asm b"),
    ];
    (manifest, files)
}

fn facts(tee: &'static str) -> Facts {
    let (manifest, files) = bundle();
    Facts::of_bundle(tee, BOOT_ID, [7; 32], [8; 32], &manifest, &files).unwrap()
}

#[test]
fn log_origin_names_the_boot_in_lowercase_hex() {
    let id: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
    let o = log_origin(&id);
    assert_eq!(o, "omega-monitor/00112233445566778899aabbccddeeff");
    assert!(o.len() <= omega_provenance::entry::MAX_NAME);
}

fn challenge(nonce: u8, simulated_psp: bool) -> Challenge {
    Challenge {
        nonce: [nonce; 32],
        simulated_psp,
    }
}

#[test]
fn only_the_first_challenge_counts_and_none_after_the_evidence() {
    let first = challenge(1, false);
    let second = challenge(2, true);
    let mut c = Challenges::default();
    assert_eq!(c.offer(first), Ok(()));
    assert_eq!(c.offer(second), Err(ChallengeRefused::Repeated));
    assert_eq!(c.close(), Some(first));
    assert_eq!(c.offer(second), Err(ChallengeRefused::TooLate));
    assert_eq!(c.close(), Some(first));

    let mut none = Challenges::default();
    assert_eq!(none.close(), None);
    assert_eq!(none.offer(first), Err(ChallengeRefused::TooLate));
    assert_eq!(none.close(), None);
}

#[test]
fn the_simulated_psp_only_replaces_no_tee_and_only_in_test_images() {
    let sim = challenge(0, true);
    let plain = challenge(0, false);
    use ReportSource::*;
    let cases = [
        (Tee::None, None, true, Unattested, false),
        (Tee::None, Some(&plain), true, Unattested, false),
        (Tee::None, Some(&sim), true, Simulated, false),
        (Tee::None, Some(&sim), false, Unattested, true),
        (Tee::SevSnp, Some(&sim), true, Hardware, true),
        (Tee::SevSnp, Some(&sim), false, Hardware, true),
        (Tee::SevSnp, None, false, Hardware, false),
    ];
    for (tee, ch, built_in, want, noted) in cases {
        let (got, note) = ReportSource::choose(tee, ch, built_in);
        assert_eq!(
            (got, note.is_some()),
            (want, noted),
            "{tee:?} {ch:?} {built_in}"
        );
    }
    assert_eq!(Hardware.tee(), "sev-snp");
    assert_eq!(Simulated.tee(), "simulated");
    assert_eq!(Unattested.tee(), "none");
}

#[test]
fn facts_come_from_the_delivered_files() {
    let (manifest, files) = bundle();
    let f = facts("none");
    assert_eq!(f.manifest_digest, files[0].sha256);
    assert_eq!(f.policy_digest, files[1].sha256);
    assert_eq!(f.agents.len(), 2);
    assert_eq!(f.agents[0].module_hash, files[2].sha256);
    assert_eq!(f.agents[0].publisher, "Example Health");
    assert_eq!(f.agents[1].module_hash, files[3].sha256);
    assert_eq!(f.agents[1].publisher, NO_PUBLISHER);
    let principals: Vec<String> = f.claims().iter().map(|c| c.principal()).collect();
    assert_eq!(
        principals,
        [
            "platform",
            "log",
            "card",
            "bundle",
            "policy",
            "agent:triage",
            "agent:summary"
        ]
    );
    // A manifest naming a file that is not there (the receiver refuses such bundles).
    let err =
        Facts::of_bundle("none", BOOT_ID, [7; 32], [8; 32], &manifest, &files[..3]).unwrap_err();
    assert_eq!(err, AttestError::MissingFile("b.wasm".into()));
}

fn verify_all(ev: &MonitorEvidence, out: &[PrincipalBundle], nonce: [u8; 32], root: [u8; 32]) {
    assert_eq!(out.len(), ev.principals().len());
    for (pb, principal) in out.iter().zip(ev.principals()) {
        assert_eq!(&pb.principal, principal);
        let b = Bundle::decode(&pb.bundle).unwrap();
        assert_eq!(b.base_root, root);
        let o = verify(
            &b,
            &Options {
                principal,
                nonce: Some(nonce),
                allow_unattested: true,
                report: None,
            },
        );
        assert!(o.verified(), "{principal}: {:?}", o.checks);
    }
}

#[test]
fn unattested_evidence_verifies_for_every_principal_and_says_none() {
    let f = facts("none");
    let mut ev = MonitorEvidence::new([9; 32], &f, &mut Counter(1)).unwrap();
    let nonce = [0x5a; 32];
    ev.attest(nonce).unwrap();
    let (out, root) = ev.bundles(None).unwrap();
    verify_all(&ev, &out, nonce, root);
    let platform = Bundle::decode(&out[0].bundle).unwrap();
    assert!(matches!(platform.binding, Binding::Unattested { .. }));
    let leaf = SaltedLeaf::decode(&platform.leaf).unwrap();
    assert_eq!(
        leaf.claim,
        Claim::Platform {
            tee: "none".into(),
            boot_id: BOOT_ID
        }
    );
    let log = SaltedLeaf::decode(&Bundle::decode(&out[1].bundle).unwrap().leaf).unwrap();
    assert_eq!(
        log.claim,
        Claim::LogKey {
            public: [7; 32],
            boot_id: BOOT_ID
        }
    );
    let card = SaltedLeaf::decode(&Bundle::decode(&out[2].bundle).unwrap().leaf).unwrap();
    assert_eq!(
        card.claim,
        Claim::CardKey {
            public: [8; 32],
            boot_id: BOOT_ID
        }
    );
    // The evidence key is not the log key, and a second attestation is refused.
    assert_ne!(platform.monitor_key, [7; 32]);
    assert!(ev.attest(nonce).is_err());
}

#[test]
fn a_stuck_rng_or_an_all_zero_seed_makes_no_evidence() {
    struct Stuck;
    impl HwRng for Stuck {
        fn rdseed(&mut self) -> Option<u64> {
            Some(0)
        }
        fn rdrand(&mut self) -> Option<u64> {
            Some(0)
        }
    }
    let f = facts("none");
    assert!(matches!(
        MonitorEvidence::new([9; 32], &f, &mut Stuck),
        Err(AttestError::Entropy(_))
    ));
    assert!(matches!(
        MonitorEvidence::new([0; 32], &f, &mut Counter(1)),
        Err(AttestError::Evidence(_))
    ));
}

// --- the channel transport, against a software PSP holding the lab VMPCK0 ---

/// What the fake host does with a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Host {
    /// Answers as the PSP does, after `delay` polls.
    Honest { delay: u32 },
    /// Never answers.
    Silent,
    /// Answers with the response's byte `at` flipped.
    Flip { at: usize },
    /// Answers with `len` zero bytes.
    Garbage { len: usize },
    /// Answers with the correct response, but the request's sequence number (a replay).
    WrongSeqno,
    /// Cannot send.
    Broken,
}

struct FakeLink {
    host: Host,
    /// Bytes of each request as sent on the channel.
    sent: Vec<Vec<u8>>,
    pending: VecDeque<(u32, Vec<u8>)>,
    clock: Option<u64>,
    polls: u64,
}

impl FakeLink {
    fn new(host: Host, clock: Option<u64>) -> Self {
        FakeLink {
            host,
            sent: Vec::new(),
            pending: VecDeque::new(),
            clock,
            polls: 0,
        }
    }
}

/// Plays the PSP for one MSG_REPORT_REQ: the report carries its REPORT_DATA.
fn psp_answer(request: &[u8], seqno_delta: u64) -> Vec<u8> {
    let mut page = [0u8; MSG_PAGE_SIZE];
    page[..request.len()].copy_from_slice(request);
    let req_seqno = u64::from_le_bytes(page[0x20..0x28].try_into().unwrap());
    let expected = MsgHeader {
        seqno: req_seqno,
        msg_type: msg_type::REPORT_REQ,
        msg_version: 1,
        msg_sz: REPORT_REQ_SIZE as u16,
        vmpck: 0,
    };
    let len = open_message(&sev_snp::lab::VMPCK0, &expected, &mut page).unwrap();
    let req = &page[MSG_HDR_SIZE..MSG_HDR_SIZE + len];
    let mut payload = vec![0u8; REPORT_RSP_SIZE];
    payload[4..8].copy_from_slice(&(REPORT_LEN as u32).to_le_bytes());
    let report = &mut payload[0x20..];
    report[0..4].copy_from_slice(&5u32.to_le_bytes());
    report[sev_snp::report::REPORT_DATA].copy_from_slice(&req[..64]);
    report[sev_snp::report::CHIP_ID].copy_from_slice(&sev_snp::lab::CHIP_ID);
    let hdr = MsgHeader {
        seqno: req_seqno + seqno_delta,
        msg_type: msg_type::REPORT_RSP,
        msg_version: 1,
        msg_sz: REPORT_RSP_SIZE as u16,
        vmpck: 0,
    };
    let mut out = [0u8; MSG_PAGE_SIZE];
    seal_message(&sev_snp::lab::VMPCK0, &hdr, &payload, &mut out).unwrap();
    out[..MSG_HDR_SIZE + REPORT_RSP_SIZE].to_vec()
}

impl PspLink for FakeLink {
    type Error = &'static str;
    fn send_request(&mut self, message: &[u8]) -> Result<(), &'static str> {
        if self.host == Host::Broken {
            return Err("transport down");
        }
        self.sent.push(message.to_vec());
        let answer = match self.host {
            Host::Honest { delay } => Some((delay, psp_answer(message, 1))),
            Host::Silent | Host::Broken => None,
            Host::Flip { at } => {
                let mut a = psp_answer(message, 1);
                a[at] ^= 1;
                Some((0, a))
            }
            Host::Garbage { len } => Some((0, vec![0; len])),
            Host::WrongSeqno => Some((0, psp_answer(message, 0))),
        };
        self.pending.extend(answer);
        Ok(())
    }
    fn poll_response(&mut self) -> Option<Vec<u8>> {
        self.polls += 1;
        if let Some(c) = &mut self.clock {
            *c += 1_000_000;
        }
        match self.pending.front_mut() {
            Some((0, _)) => self.pending.pop_front().map(|(_, m)| m),
            Some((d, _)) => {
                *d -= 1;
                None
            }
            None => None,
        }
    }
    fn now_ns(&mut self) -> Option<u64> {
        self.clock
    }
}

fn lab_messenger() -> GuestMessenger {
    GuestMessenger::new(Vmpck::new(sev_snp::lab::VMPCK0, 0).unwrap())
}

#[test]
fn a_report_through_the_channel_binds_the_evidence() {
    let f = facts("simulated");
    let mut ev = MonitorEvidence::new([9; 32], &f, &mut Counter(3)).unwrap();
    let nonce = [0x42; 32];
    let rd = ev.attest(nonce).unwrap();
    let mut psp = ChannelPsp::new(FakeLink::new(Host::Honest { delay: 3 }, Some(0)));
    let mut messenger = lab_messenger();
    let report = messenger.attestation_report(&mut psp, rd).unwrap();
    assert_eq!(&report[sev_snp::report::REPORT_DATA], &rd[..]);
    // Only the used bytes of the page went out: header + MSG_REPORT_REQ payload.
    assert_eq!(psp.link.sent.len(), 1);
    assert_eq!(psp.link.sent[0].len(), MSG_HDR_SIZE + REPORT_REQ_SIZE);
    // The counter advanced as with the real PSP: a second request works too.
    assert!(messenger.attestation_report(&mut psp, rd).is_ok());
    assert_eq!(messenger.last_seqno(), 4);

    let (out, root) = ev.bundles(Some(&report)).unwrap();
    for pb in &out {
        let b = Bundle::decode(&pb.bundle).unwrap();
        assert_eq!(b.base_root, root);
        assert!(matches!(&b.binding, Binding::Snp { report: r } if r[..] == report[..]));
        let o = verify(
            &b,
            &Options {
                principal: &pb.principal,
                nonce: Some(nonce),
                allow_unattested: false,
                report: None,
            },
        );
        assert!(o.verified(), "{}: {:?}", pb.principal, o.checks);
        assert!(!o.unattested);
    }
}

fn failing(host: Host, clock: Option<u64>) -> (GuestMsgError, Option<PspFailure>, GuestMessenger) {
    let mut psp = ChannelPsp::with_timeout(FakeLink::new(host, clock), 5_000_000_000, 1000);
    let mut m = lab_messenger();
    let e = m.attestation_report(&mut psp, [1; 64]).unwrap_err();
    (e, psp.failure().cloned(), m)
}

#[test]
fn a_silent_host_times_out_on_the_clock_and_without_one() {
    // 1 ms per poll on the fake clock: 5000 polls, then the timeout (not the poll count).
    let mut psp = ChannelPsp::with_timeout(
        FakeLink::new(Host::Silent, Some(0)),
        PSP_TIMEOUT_NS,
        u64::MAX,
    );
    let mut m = lab_messenger();
    assert!(matches!(
        m.attestation_report(&mut psp, [1; 64]),
        Err(GuestMsgError::Transport(_))
    ));
    assert_eq!(psp.failure(), Some(&PspFailure::Timeout));
    assert_eq!(psp.link.polls, PSP_TIMEOUT_NS / 1_000_000);
    assert!(!m.is_usable(), "the key is wiped: the host saw the request");

    let (_, failure, _) = failing(Host::Silent, None);
    assert_eq!(failure, Some(PspFailure::Timeout));
}

#[test]
fn bad_responses_fail_and_wipe_the_key() {
    let full = MSG_HDR_SIZE + REPORT_RSP_SIZE;
    let (e, f, m) = failing(
        Host::Garbage {
            len: MSG_PAGE_SIZE + 1,
        },
        Some(0),
    );
    assert!(matches!(e, GuestMsgError::Transport(_)));
    assert_eq!(f, Some(PspFailure::TooLong(MSG_PAGE_SIZE + 1)));
    assert!(!m.is_usable());
    let (_, f, _) = failing(Host::Garbage { len: 10 }, Some(0));
    assert_eq!(f, Some(PspFailure::TooShort(10)));
    let (e, f, _) = failing(Host::Garbage { len: MSG_HDR_SIZE }, Some(0));
    assert_eq!(f, None);
    assert!(matches!(e, GuestMsgError::WrongSeqno { .. }), "{e:?}");
    let (e, _, m) = failing(Host::WrongSeqno, Some(0));
    assert!(matches!(e, GuestMsgError::WrongSeqno { .. }), "{e:?}");
    assert!(!m.is_usable());
    // Any flipped bit of the header or payload is refused (tag, header, AAD, ciphertext).
    for at in (0..full).step_by(7) {
        let (e, f, m) = failing(Host::Flip { at }, Some(0));
        assert_eq!(f, None);
        assert!(
            matches!(
                e,
                GuestMsgError::AuthFailed
                    | GuestMsgError::BadHeader
                    | GuestMsgError::WrongSeqno { .. }
            ),
            "byte {at}: {e:?}"
        );
        assert!(!m.is_usable());
    }
    let (e, f, _) = failing(Host::Broken, Some(0));
    assert!(matches!(e, GuestMsgError::Transport(_)));
    assert_eq!(f, Some(PspFailure::Send("transport down".into())));
}

#[test]
fn used_len_never_passes_the_page() {
    let mut page = [0u8; MSG_PAGE_SIZE];
    assert_eq!(used_len(&page), 0);
    page[sev_snp::guest_msg::HDR_SZ_OFFSET] = 0x60;
    page[sev_snp::guest_msg::MSG_SZ_OFFSET] = 0x60;
    assert_eq!(used_len(&page), 0xC0);
    page[sev_snp::guest_msg::MSG_SZ_OFFSET..sev_snp::guest_msg::MSG_SZ_OFFSET + 2]
        .copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(used_len(&page), MSG_PAGE_SIZE);
}

#[test]
fn cards_say_what_the_manifest_and_the_module_say_and_verify_with_the_attested_key() {
    use omega_agent_card::SignedCard;
    let (mut manifest, files) = bundle();
    manifest.agents[0].description = Some("Ranks records".into());
    manifest.agents[0].skills = vec![omega_agent_card::Skill {
        id: "triage".into(),
        name: "Triage".into(),
        description: "Ranks records by urgency".into(),
        tags: vec!["health".into()],
    }];
    let issuer = cards::CardIssuer::new([3; 32], BOOT_ID).unwrap();
    let f = Facts::of_bundle("none", BOOT_ID, [7; 32], issuer.public(), &manifest, &files).unwrap();
    assert!(f.claims().contains(&Claim::CardKey {
        public: issuer.public(),
        boot_id: BOOT_ID
    }));
    for (entry, facts) in manifest.agents.iter().zip(&f.agents) {
        let card = issuer.card(entry, facts.module_hash).unwrap();
        let c = SignedCard::decode(card.as_bytes()).unwrap();
        c.verify(&issuer.public()).unwrap();
        assert_eq!(c.body.agent, entry.name);
        assert_eq!(c.body.module_hash, facts.module_hash);
        assert_eq!(c.body.boot_id, BOOT_ID);
        assert_eq!(c.body.publisher, facts.publisher);
        assert_eq!(c.body, cards::body(entry, facts.module_hash, BOOT_ID));
    }
    {
        let c = SignedCard::decode(
            issuer
                .card(&manifest.agents[0], f.agents[0].module_hash)
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.body.skills, manifest.agents[0].skills);
        assert_eq!(c.body.description, "Ranks records");
    }
    // Defaults: no description, version or skills in the manifest.
    let b = cards::body(&manifest.agents[1], [0x5a; 32], BOOT_ID);
    assert_eq!(b.description, "Omega agent summary");
    assert_eq!(b.version, "sha256-5a5a5a5a5a5a5a5a");
    assert_eq!(b.publisher, NO_PUBLISHER);
    assert_eq!(
        b.skills,
        omega_agent_card::CardBody::default_skills("summary", "Omega agent summary")
    );
    // The card key is its own: not the log key's public half, and a zero seed is refused.
    assert_ne!(issuer.public(), [7; 32]);
    assert!(cards::CardIssuer::new([0; 32], BOOT_ID).is_err());
}

#[test]
fn the_peer_key_is_claimed_last_and_verifies_as_principal_peer() {
    let public = peer_public([0x44; 32]).unwrap();
    assert_eq!(
        peer_public([0; 32]),
        None,
        "a failed entropy source claims no key"
    );
    let f = facts("none").with_peer_key(public);
    let claims = f.claims();
    assert_eq!(
        claims.last(),
        Some(&Claim::PeerKey {
            public,
            boot_id: BOOT_ID
        })
    );
    // The claims before it are those of evidence without a peer key, in the same order.
    assert_eq!(claims[..claims.len() - 1], facts("none").claims()[..]);
    let mut ev = MonitorEvidence::new([9; 32], &f, &mut Counter(1)).unwrap();
    let nonce = [0x5b; 32];
    ev.attest(nonce).unwrap();
    let (out, root) = ev.bundles(None).unwrap();
    verify_all(&ev, &out, nonce, root);
    let peer = out.iter().find(|b| b.principal == "peer").unwrap();
    let leaf = SaltedLeaf::decode(&Bundle::decode(&peer.bundle).unwrap().leaf).unwrap();
    assert_eq!(leaf.claim, *claims.last().unwrap());
    // The key the channel signs with is the one claimed.
    let id = omega_peer_channel::Identity::from_seed([0x44; 32], Vec::new()).unwrap();
    assert_eq!(id.public(), public);
}

/// A tool server's claim names the identity the bundle's tools file states (command line,
/// package, version); a tools file that does not parse fails closed (no evidence), and one
/// the manifest names but the bundle lacks is a missing file.
#[test]
fn tool_server_claims_name_the_bundles_identity_and_a_bad_tools_file_fails_closed() {
    let mut servers = vec![
        ToolServerFacts {
            server: "fs".into(),
            tools: 1,
            pins_digest: [1; 32],
            identity: None,
        },
        ToolServerFacts {
            server: "mail".into(),
            tools: 1,
            pins_digest: [2; 32],
            identity: None,
        },
    ];
    let tools_json = br#"{"servers":[{"name":"fs","command":"node","args":["/x.js","/data"],"package":"@mcp/fs","version":"1.2.3"}]}"#;
    with_identities(&mut servers, tools_json).unwrap();
    assert_eq!(
        servers[0].identity,
        Some(omega_evidence::ToolIdentity {
            command: r#"["node","/x.js","/data"]"#.into(),
            package: "@mcp/fs".into(),
            version: "1.2.3".into(),
        })
    );
    assert_eq!(
        servers[1].identity, None,
        "not in the tools file: no identity"
    );
    assert!(matches!(
        with_identities(&mut servers, b"{\"servers\": 7}"),
        Err(AttestError::ToolsFile(_))
    ));
    let (mut manifest, files) = bundle();
    manifest.tools = Some("tools.json".into());
    assert!(matches!(
        Facts::of_bundle("none", BOOT_ID, [7; 32], [8; 32], &manifest, &files),
        Err(AttestError::MissingFile(_))
    ));
    let mut with_file = files;
    with_file.push(file("tools.json", b"not json"));
    assert!(matches!(
        Facts::of_bundle("none", BOOT_ID, [7; 32], [8; 32], &manifest, &with_file),
        Err(AttestError::ToolsFile(_))
    ));
}

/// The proxy session's models: one `model:<name>` claim per model whose pin is the proved
/// identity (with the evidence's model digest and the GPU evidence digest), none pinned to
/// another proxy, none without a session, none with a name no claim can carry; the claims
/// come last and verify like every other principal's.
#[test]
fn the_proven_proxy_is_claimed_per_model_it_matches_and_verifies_as_model_name() {
    let (genuine, other) = ([0x61; 32], [0x62; 32]);
    let models = [
        ("llm", &genuine),
        ("other_llm", &other),
        ("bad\nname", &genuine),
        ("llm_alias", &genuine),
        ("llm", &genuine),
    ];
    let proven = ProvenProxy {
        identity: genuine,
        model_digest: [0x63; 32],
        gpu_evidence_digest: Some([0x64; 32]),
    };
    let (claimed, left) = model_facts(models, Some(&proven));
    assert_eq!(
        claimed.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["llm", "llm_alias"]
    );
    assert_eq!(
        left,
        [
            ("other_llm".into(), Unclaimed::OtherPin),
            ("bad\nname".into(), Unclaimed::BadName),
            ("llm".into(), Unclaimed::Duplicate)
        ]
    );
    let (none, left) = model_facts(models, None);
    assert!(none.is_empty());
    assert!(left.iter().all(|(_, why)| *why == Unclaimed::NoSession));
    assert_eq!(left.len(), 5);

    let f = facts("none").with_peer_key([0x44; 32]).with_models(claimed);
    let claims = f.claims();
    assert_eq!(
        claims.last(),
        Some(&Claim::Model {
            name: "llm_alias".into(),
            proxy_identity: genuine,
            model_digest: [0x63; 32],
            gpu_evidence_digest: Some([0x64; 32]),
        })
    );
    // Without models, the same claims in the same order.
    assert_eq!(
        claims[..claims.len() - 2],
        facts("none").with_peer_key([0x44; 32]).claims()[..]
    );
    let mut ev = MonitorEvidence::new([9; 32], &f, &mut Counter(1)).unwrap();
    let nonce = [0x5c; 32];
    ev.attest(nonce).unwrap();
    let (out, root) = ev.bundles(None).unwrap();
    verify_all(&ev, &out, nonce, root);
    let llm = out.iter().find(|b| b.principal == "model:llm").unwrap();
    let leaf = SaltedLeaf::decode(&Bundle::decode(&llm.bundle).unwrap().leaf).unwrap();
    assert_eq!(
        leaf.claim,
        Claim::Model {
            name: "llm".into(),
            proxy_identity: genuine,
            model_digest: [0x63; 32],
            gpu_evidence_digest: Some([0x64; 32]),
        }
    );
    assert!(!out.iter().any(|b| b.principal == "model:other_llm"));
}
