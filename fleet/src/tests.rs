//! Host tests of the fleet logic: every refusal a hostile host or scheduler can cause is
//! performed here and shown refused by the rule that should refuse it.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::admission::{Pending, direct_binding};
use crate::coordinator::PlaceError;
use crate::credential::CredentialError;
use crate::policy::{AgentPin, Endpoint, ImageRule, PolicyError, Route, Shape, SnpTcb};
use crate::signed::{CREDENTIAL_TAG, PLACEMENT_TAG, SigningKey};
use crate::*;

const SNP_DIGEST: [u8; 48] = [0x11; 48];
const TDX_DIGEST: [u8; 48] = [0x22; 48];
const SIM_DIGEST: [u8; 48] = [0x33; 48];
const NOW: Time = 1_800_000_000;

fn key(b: u8) -> SigningKey {
    SigningKey::from_seed([b; 32]).unwrap()
}

fn shape() -> Shape {
    Shape {
        vcpus: 1,
        vcpu_type: "EPYC-v4".into(),
        memory_mib: 512,
    }
}

fn pin(name: &str) -> AgentPin {
    AgentPin {
        name: name.into(),
        publisher: "acme".into(),
        module_hash: [name.len() as u8; 32],
    }
}

fn ep(role: &str, agent: &str) -> Endpoint {
    Endpoint {
        role: role.into(),
        agent: agent.into(),
    }
}

fn policy(version: u64) -> FleetPolicy {
    let mut p = FleetPolicy {
        format: policy::POLICY_FORMAT,
        fleet_id: "lab".into(),
        version,
        issued_at: 1_700_000_000,
        allow_simulated: true,
        images: vec![
            ImageRule {
                tee: Tee::SevSnp,
                measurement: SNP_DIGEST.to_vec(),
                name: "omega-snp".into(),
                shape: shape(),
                roles: vec!["worker".into(), "gateway".into()],
            },
            ImageRule {
                tee: Tee::Tdx,
                measurement: TDX_DIGEST.to_vec(),
                name: "tdx-td".into(),
                shape: shape(),
                roles: vec!["worker".into()],
            },
            ImageRule {
                tee: Tee::Simulated,
                measurement: SIM_DIGEST.to_vec(),
                name: "omega-lab".into(),
                shape: shape(),
                roles: vec!["worker".into()],
            },
        ],
        min_snp_tcb: SnpTcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None,
        },
        allow_tdx_out_of_date: false,
        agents: vec![pin("triage"), pin("alpha"), pin("summariser")],
        routes: vec![
            Route {
                from: ep("gateway", "triage"),
                to: ep("worker", "summariser"),
            },
            Route {
                from: ep("worker", "*"),
                to: ep("gateway", "triage"),
            },
        ],
        credential_lifetime_s: 600,
        challenge_lifetime_s: 120,
        nitro_root: Vec::new(),
    };
    p.canonicalize();
    p
}

const OWNER: u8 = 7;
const COORD: u8 = 9;

fn coordinator() -> Coordinator {
    let mut c = Coordinator::new(key(COORD), key(OWNER).public(), 0);
    c.update_policy(&policy(1).sign(&key(OWNER)).unwrap())
        .unwrap();
    c
}

fn good_tcb() -> Tcb {
    Tcb::Snp(SnpTcb {
        bootloader: 3,
        tee: 0,
        snp: 9,
        microcode: 200,
        fmc: None,
    })
}

const NODE_KEY: [u8; 32] = [0xAB; 32];
/// The `PeerKey` claim of the same evidence tree (the channel's signing key).
const PEER_KEY: [u8; 32] = [0xCD; 32];
const ROOT: [u8; 32] = [0xCD; 32];
/// The manifest digest every test placement names.
const BUNDLE: [u8; 32] = [5; 32];

/// SNP evidence from an Omega monitor answering `nonce` with its monitor key.
fn snp(nonce: &[u8; 32]) -> Attested {
    Attested {
        tee: Tee::SevSnp,
        measurement: SNP_DIGEST.to_vec(),
        report_data: omega_evidence::report_data(nonce, &ROOT, &NODE_KEY).to_vec(),
        tcb: good_tcb(),
        debug: false,
        node_key: NODE_KEY,
        binding: Binding::OmegaEvidence { root: ROOT },
        bundle: Some(BUNDLE),
        peer_key: Some(PEER_KEY),
    }
}

fn place(c: &mut Coordinator, node: &str, role: &str, nonce: [u8; 32]) -> Vec<u8> {
    c.place("wl-1", node, role, BUNDLE, &[pin("triage")], nonce, NOW)
        .unwrap()
}

fn refusal(c: &mut Coordinator, nonce: [u8; 32], a: &Attested) -> &'static str {
    c.admit(&nonce, a, NOW + 1).unwrap_err().rule()
}

#[test]
fn an_attested_node_is_admitted_and_its_credential_verifies() {
    let mut c = coordinator();
    let signed = place(&mut c, "node-1", "gateway", [1; 32]);
    let p = Placement::verify(&signed, &c.public()).unwrap();
    assert_eq!((p.node_id.as_str(), p.nonce), ("node-1", [1; 32]));
    let a = c.admit(&[1; 32], &snp(&[1; 32]), NOW + 1).unwrap();
    assert_eq!(a.image, "omega-snp");
    let cred = Credential::verify(&a.signed, &c.public(), NOW + 2).unwrap();
    assert_eq!(cred, a.credential);
    assert_eq!(
        (cred.node_id.as_str(), cred.role.as_str(), cred.node_key),
        ("node-1", "gateway", NODE_KEY)
    );
    assert_eq!(
        (cred.tee, cred.policy_version, cred.serial),
        (Tee::SevSnp, 1, 1)
    );
    assert_eq!(cred.launch_digest, SNP_DIGEST.to_vec());
    // Short-lived: refused once expired, and before it starts.
    assert!(matches!(
        Credential::verify(&a.signed, &c.public(), NOW + 1 + 600),
        Err(CredentialError::Expired { .. })
    ));
    assert!(matches!(
        Credential::verify(&a.signed, &c.public(), NOW),
        Err(CredentialError::NotYetValid { .. })
    ));
    // Under another coordinator's key, nothing.
    assert!(Credential::verify(&a.signed, &key(1).public(), NOW + 2).is_err());
}

#[test]
fn tdx_and_nitro_style_direct_binding() {
    let mut c = coordinator();
    place(&mut c, "td-1", "worker", [2; 32]);
    let a = Attested {
        tee: Tee::Tdx,
        measurement: TDX_DIGEST.to_vec(),
        report_data: direct_binding(&NODE_KEY, &[2; 32]).to_vec(),
        tcb: Tcb::Rated(TcbRating::UpToDate),
        debug: false,
        node_key: NODE_KEY,
        binding: Binding::Direct,
        bundle: None,
        peer_key: None,
    };
    c.admit(&[2; 32], &a, NOW + 1).unwrap();
    // Out of date TDX is refused by this policy.
    place(&mut c, "td-2", "worker", [3; 32]);
    let old = Attested {
        tcb: Tcb::Rated(TcbRating::OutOfDate),
        report_data: direct_binding(&NODE_KEY, &[3; 32]).to_vec(),
        ..a
    };
    assert_eq!(refusal(&mut c, [3; 32], &old), "tcb");
}

#[test]
fn each_admission_attack_is_refused_by_its_rule() {
    let mut c = coordinator();
    // Replay: the same evidence and nonce twice.
    place(&mut c, "n1", "worker", [1; 32]);
    c.admit(&[1; 32], &snp(&[1; 32]), NOW + 1).unwrap();
    assert_eq!(refusal(&mut c, [1; 32], &snp(&[1; 32])), "nonce-replayed");
    // A nonce the coordinator never issued (a forged placement's).
    assert_eq!(
        refusal(&mut c, [0xEE; 32], &snp(&[0xEE; 32])),
        "nonce-unknown"
    );
    // Expired challenge.
    place(&mut c, "n2", "worker", [2; 32]);
    assert_eq!(
        c.admit(&[2; 32], &snp(&[2; 32]), NOW + 120)
            .unwrap_err()
            .rule(),
        "nonce-expired"
    );
    // Evidence for another nonce presented against this challenge.
    place(&mut c, "n3", "worker", [3; 32]);
    assert_eq!(refusal(&mut c, [3; 32], &snp(&[4; 32])), "binding");
    // The node key swapped for the host's own (an unattested key).
    place(&mut c, "n4", "worker", [4; 32]);
    let swapped = Attested {
        node_key: [0x99; 32],
        ..snp(&[4; 32])
    };
    assert_eq!(refusal(&mut c, [4; 32], &swapped), "binding");
    // Another evidence root (a different monitor's tree).
    place(&mut c, "n5", "worker", [5; 32]);
    let other_root = Attested {
        binding: Binding::OmegaEvidence { root: [0; 32] },
        ..snp(&[5; 32])
    };
    assert_eq!(refusal(&mut c, [5; 32], &other_root), "binding");
    // Wrong launch digest, debug, low TCB, role the image may not take.
    for (i, (a, rule, role)) in [
        (
            Attested {
                measurement: vec![0x12; 48],
                ..snp(&[10; 32])
            },
            "measurement",
            "worker",
        ),
        (
            Attested {
                debug: true,
                ..snp(&[11; 32])
            },
            "debug",
            "worker",
        ),
        (
            Attested {
                tcb: Tcb::Snp(SnpTcb {
                    snp: 7,
                    ..SnpTcb::default()
                }),
                ..snp(&[12; 32])
            },
            "tcb",
            "worker",
        ),
        (
            Attested {
                tee: Tee::Simulated,
                measurement: SIM_DIGEST.to_vec(),
                ..snp(&[13; 32])
            },
            "role",
            "gateway",
        ),
        (
            Attested {
                tcb: Tcb::NotApplicable,
                ..snp(&[14; 32])
            },
            "tcb",
            "worker",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let nonce = [10 + i as u8; 32];
        place(&mut c, "n6", role, nonce);
        assert_eq!(refusal(&mut c, nonce, &a), rule, "case {i}");
    }
    // The host booted another bundle with the placement's nonce, or one attesting none.
    place(&mut c, "n8", "worker", [21; 32]);
    let other_bundle = Attested {
        bundle: Some([6; 32]),
        ..snp(&[21; 32])
    };
    assert_eq!(refusal(&mut c, [21; 32], &other_bundle), "bundle");
    place(&mut c, "n9", "worker", [22; 32]);
    let no_bundle = Attested {
        bundle: None,
        ..snp(&[22; 32])
    };
    assert_eq!(refusal(&mut c, [22; 32], &no_bundle), "bundle");
    // The SNP digest presented as TDX (same bytes, other TEE) matches no rule.
    place(&mut c, "n7", "worker", [20; 32]);
    let as_tdx = Attested {
        tee: Tee::Tdx,
        ..snp(&[20; 32])
    };
    assert_eq!(refusal(&mut c, [20; 32], &as_tdx), "measurement");
}

#[test]
fn simulated_evidence_needs_the_explicit_flag() {
    let mut p = policy(2);
    p.allow_simulated = false;
    // A policy naming a simulated image without the flag does not even encode.
    assert!(p.encode().is_err());
    p.images.retain(|i| i.tee != Tee::Simulated);
    let mut c = coordinator();
    c.update_policy(&p.sign(&key(OWNER)).unwrap()).unwrap();
    place(&mut c, "lab", "worker", [1; 32]);
    let a = Attested {
        tee: Tee::Simulated,
        measurement: SIM_DIGEST.to_vec(),
        ..snp(&[1; 32])
    };
    assert_eq!(refusal(&mut c, [1; 32], &a), "simulated-not-allowed");
}

#[test]
fn policy_updates_are_owner_signed_and_only_move_forward() {
    let mut c = coordinator();
    // Not the owner's signature.
    assert!(matches!(
        c.update_policy(&policy(2).sign(&key(COORD)).unwrap()),
        Err(PolicyError::Decode(DecodeError::BadSignature(_)))
    ));
    // Replayed (same version) and older.
    let v1 = policy(1).sign(&key(OWNER)).unwrap();
    assert!(matches!(
        c.update_policy(&v1),
        Err(PolicyError::NotNewer {
            offered: 1,
            current: 1
        })
    ));
    c.update_policy(&policy(3).sign(&key(OWNER)).unwrap())
        .unwrap();
    assert!(matches!(
        c.update_policy(&policy(2).sign(&key(OWNER)).unwrap()),
        Err(PolicyError::NotNewer {
            offered: 2,
            current: 3
        })
    ));
    // A restarted coordinator remembers the highest version it applied.
    let mut again = Coordinator::new(key(COORD), key(OWNER).public(), c.policy_seen());
    assert!(again.update_policy(&v1).is_err());
    // Another fleet's policy.
    let mut other = policy(4);
    other.fleet_id = "other".into();
    assert!(matches!(
        c.update_policy(&other.sign(&key(OWNER)).unwrap()),
        Err(PolicyError::OtherFleet { .. })
    ));
    // A credential signed by the coordinator is not a policy even if the owner key were the
    // coordinator's (domain tags differ).
    let mut confused = Coordinator::new(key(COORD), key(COORD).public(), 0);
    let body = policy(9).encode().unwrap();
    assert!(
        confused
            .update_policy(&key(COORD).seal(CREDENTIAL_TAG, body.clone()))
            .is_err()
    );
    assert!(
        confused
            .update_policy(&key(COORD).seal(PLACEMENT_TAG, body))
            .is_err()
    );
}

#[test]
fn policy_encoding_is_canonical() {
    let p = policy(1);
    let bytes = p.encode().unwrap();
    assert_eq!(FleetPolicy::decode(&bytes).unwrap(), p);
    // Out of order lists do not encode, and a non-canonical encoding does not decode.
    let mut shuffled = p.clone();
    shuffled.routes.reverse();
    assert!(shuffled.encode().is_err());
    let raw = postcard::to_allocvec(&shuffled).unwrap();
    assert!(FleetPolicy::decode(&raw).is_err());
    let mut dup = p.clone();
    dup.agents.push(pin("zzz"));
    dup.agents.push(AgentPin {
        publisher: "evil".into(),
        ..pin("zzz")
    });
    dup.agents.sort();
    assert!(dup.encode().is_err(), "two pins for one agent name");
    // Trailing bytes, truncation, oversize.
    let mut t = bytes.clone();
    t.push(0);
    assert!(FleetPolicy::decode(&t).is_err());
    assert!(FleetPolicy::decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(FleetPolicy::decode(&vec![0; policy::MAX_POLICY + 1]).is_err());
    // Bad names and measurement lengths.
    let mut bad = p.clone();
    bad.images[0].measurement.pop();
    assert!(bad.encode().is_err());
    let mut bad = p;
    bad.routes[0].from.role = "a/b".into();
    assert!(bad.encode().is_err());
}

#[test]
fn placements_pin_agents_roles_and_only_the_coordinator_signs_them() {
    let mut c = coordinator();
    let unpinned = AgentPin {
        module_hash: [0; 32],
        ..pin("triage")
    };
    assert!(matches!(
        c.place("wl", "n", "worker", [0; 32], &[unpinned], [1; 32], NOW),
        Err(PlaceError::Agent(a)) if a == "triage"
    ));
    assert!(matches!(
        c.place("wl", "n", "admin", [0; 32], &[], [1; 32], NOW),
        Err(PlaceError::Role(_))
    ));
    assert!(matches!(
        c.place("wl", "a/b", "worker", [0; 32], &[], [1; 32], NOW),
        Err(PlaceError::Name(_))
    ));
    let signed = place(&mut c, "n", "worker", [1; 32]);
    // A second placement reusing an outstanding nonce is refused.
    assert!(
        c.place("wl", "n", "worker", [0; 32], &[], [1; 32], NOW)
            .is_err()
    );
    // Forged: signed by the scheduler's own key, or altered.
    let forged = Placement::verify(&signed, &c.public()).unwrap();
    let by_scheduler = forged.sign(&key(3)).unwrap();
    assert!(matches!(
        Placement::verify(&by_scheduler, &c.public()),
        Err(DecodeError::BadSignature(_))
    ));
    for i in 0..signed.len() {
        let mut b = signed.clone();
        b[i] ^= 0x40;
        assert!(Placement::verify(&b, &c.public()).is_err(), "byte {i}");
    }
}

#[test]
fn credential_bytes_are_checked_strictly() {
    let mut c = coordinator();
    place(&mut c, "n1", "worker", [1; 32]);
    let a = c.admit(&[1; 32], &snp(&[1; 32]), NOW + 1).unwrap();
    for i in 0..a.signed.len() {
        let mut b = a.signed.clone();
        b[i] ^= 0x01;
        assert!(
            Credential::verify(&b, &c.public(), NOW + 2).is_err(),
            "byte {i}"
        );
    }
    for n in 0..a.signed.len() {
        assert!(Credential::verify(&a.signed[..n], &c.public(), NOW + 2).is_err());
    }
    let mut t = a.signed.clone();
    t.push(0);
    assert!(Credential::verify(&t, &c.public(), NOW + 2).is_err());
    // A placement is not a credential.
    let p = place(&mut c, "n2", "worker", [2; 32]);
    assert!(Credential::verify(&p, &c.public(), NOW + 2).is_err());
}

fn cred(c: &mut Coordinator, node: &str, role: &str, nonce: u8) -> Vec<u8> {
    place(c, node, role, [nonce; 32]);
    c.admit(&[nonce; 32], &snp(&[nonce; 32]), NOW + 1)
        .unwrap()
        .signed
}

#[test]
fn routes_default_deny_and_name_their_rule() {
    let mut c = coordinator();
    let gw = cred(&mut c, "gw", "gateway", 1);
    let w = cred(&mut c, "w", "worker", 2);
    let d = |f: &[u8], fa: &str, t: &[u8], ta: &str| c.authorize(f, fa, t, ta, NOW + 2).unwrap();
    let p = policy(1);
    let idx = |from: Endpoint, to: Endpoint| {
        p.routes
            .iter()
            .position(|r| r.from == from && r.to == to)
            .unwrap()
    };
    assert_eq!(
        d(&gw, "triage", &w, "summariser"),
        Decision {
            allowed: true,
            rule: Rule::Route(idx(ep("gateway", "triage"), ep("worker", "summariser")))
        }
    );
    // Wildcard sender agent.
    assert_eq!(
        d(&w, "alpha", &gw, "triage").rule,
        Rule::Route(idx(ep("worker", "*"), ep("gateway", "triage")))
    );
    // Reverse direction and other agents: default deny.
    assert_eq!(
        d(&w, "summariser", &gw, "alpha"),
        Decision {
            allowed: false,
            rule: Rule::DefaultDeny
        }
    );
    assert_eq!(d(&gw, "triage", &w, "alpha").rule, Rule::DefaultDeny);
    // An agent the policy does not pin, even where a wildcard would match.
    assert_eq!(d(&w, "mallory", &gw, "triage").rule, Rule::UnpinnedAgent);
    // A credential of another coordinator does not verify at all.
    let mut other = Coordinator::new(key(42), key(OWNER).public(), 0);
    other
        .update_policy(&policy(1).sign(&key(OWNER)).unwrap())
        .unwrap();
    let foreign = cred(&mut other, "gw", "gateway", 1);
    assert!(
        c.authorize(&foreign, "triage", &w, "summariser", NOW + 2)
            .is_err()
    );
    // Another fleet's credential under the same key: refused by fleet.
    let mut cr = Credential::verify(&gw, &c.public(), NOW + 2).unwrap();
    cr.fleet_id = "other".into();
    let wc = Credential::verify(&w, &c.public(), NOW + 2).unwrap();
    assert_eq!(
        authorize(&policy(1), &cr, "triage", &wc, "summariser").rule,
        Rule::OtherFleet
    );
}

#[test]
fn challenges_are_bounded_and_expire() {
    let mut ch = Challenges::default();
    let pending = |n: u32, exp: Time| Pending {
        nonce: {
            let mut b = [0; 32];
            b[..4].copy_from_slice(&n.to_le_bytes());
            b
        },
        node_id: "n".to_string(),
        role: "worker".into(),
        bundle_digest: [0; 32],
        expires_at: exp,
    };
    for i in 0..admission::MAX_PENDING as u32 {
        ch.issue(pending(i, 100), 0).unwrap();
    }
    assert_eq!(ch.issue(pending(u32::MAX, 100), 0), Err(Refusal::Busy));
    // Expired ones are purged when new ones come.
    ch.issue(pending(u32::MAX, 300), 200).unwrap();
    assert_eq!(ch.outstanding(), 1);
}

#[test]
fn names_are_checked() {
    for ok in ["a", "node-1", "x.y_z"] {
        assert!(name_ok(ok));
    }
    let long: String = core::iter::repeat_n('a', MAX_NAME + 1).collect();
    for bad in ["", "a/b", "*", "a b", "é", long.as_str()] {
        assert!(!name_ok(bad), "{bad:?}");
    }
    assert_eq!(Tee::from_name("tdx"), Some(Tee::Tdx));
    assert_eq!(Tee::from_name("TDX"), None);
    assert!(SigningKey::from_seed([0; 32]).is_none());
}

/// The fuzz seeds (`fuzz/seeds/decoders/`): a canonical policy, a credential body and a
/// placement body. `OMEGA_WRITE_FUZZ_SEEDS=1` rewrites them; otherwise each must still
/// decode, so the fuzzer starts from inputs that reach past the first checks.
#[test]
fn fuzz_seeds_decode() {
    extern crate std;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/decoders");
    let mut c = coordinator();
    let placement = place(&mut c, "n1", "worker", [1; 32]);
    let a = c.admit(&[1; 32], &snp(&[1; 32]), NOW + 1).unwrap();
    let body = |signed: &[u8]| {
        postcard::from_bytes::<signed::Envelope>(signed)
            .unwrap()
            .body
    };
    let seeds = [
        ("policy.bin", policy(1).encode().unwrap()),
        ("credential.bin", body(&a.signed)),
        ("placement.bin", body(&placement)),
    ];
    if std::env::var_os("OMEGA_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    FleetPolicy::decode(&read("policy.bin")).unwrap();
    Credential::from_body(&read("credential.bin")).unwrap();
    Placement::from_body(&read("placement.bin")).unwrap();
}

// The credential as the peer channel's authority (`peer::CredentialAuthority`): two nodes
// admitted by one coordinator open a channel; each refusal a relay or a stranger can cause
// is performed and shown refused.

use crate::peer::CredentialAuthority;
use omega_peer_channel::{AuthorityError, Channel, Event, Identity, PeerError, PeerInfo, PeerName};

type Ch = Channel<CredentialAuthority>;

/// The monitor's peer identity (`BootKeys::peer_key` stand-in) for `seed`.
fn peer_public(seed: u8) -> [u8; 32] {
    Identity::from_seed([seed; 32], vec![]).unwrap().public()
}

/// Admits an Omega node whose `peer` evidence names the key of `seed`: its signed credential.
fn admit_peer(c: &mut Coordinator, node: &str, role: &str, nonce: u8, seed: u8) -> Vec<u8> {
    place(c, node, role, [nonce; 32]);
    let a = Attested {
        peer_key: Some(peer_public(seed)),
        ..snp(&[nonce; 32])
    };
    c.admit(&[nonce; 32], &a, NOW + 1).unwrap().signed
}

fn lab_authority(c: &Coordinator) -> CredentialAuthority {
    CredentialAuthority::new(c.public(), "lab")
}

/// Moves bytes both ways until quiet; the first error either end raises.
fn pump(i: &mut Ch, r: &mut Ch, now: Time) -> Result<(), PeerError> {
    loop {
        let a = i.take_output();
        let b = r.take_output();
        if a.is_empty() && b.is_empty() {
            return Ok(());
        }
        if !a.is_empty() {
            r.feed(&a, now)?;
        }
        if !b.is_empty() {
            i.feed(&b, now)?;
        }
    }
}

fn established(ch: &mut Ch) -> PeerInfo {
    match ch.poll_event() {
        Some(Event::Established(p)) => p,
        other => panic!("expected Established, got {other:?}"),
    }
}

#[test]
fn admitted_nodes_open_a_channel_with_their_credentials_and_route_by_role() {
    let mut c = coordinator();
    let gw = admit_peer(&mut c, "gw", "gateway", 1, 11);
    let w = admit_peer(&mut c, "w", "worker", 2, 12);
    let mut i = Ch::initiator(
        Identity::from_seed([11; 32], gw.clone()).unwrap(),
        lab_authority(&c),
        [101; 32],
        Some(PeerName::new("w").unwrap()),
    )
    .unwrap();
    let mut r = Ch::responder(
        Identity::from_seed([12; 32], w.clone()).unwrap(),
        lab_authority(&c),
        [102; 32],
    )
    .unwrap();
    pump(&mut i, &mut r, NOW + 2).unwrap();
    assert!(i.is_open() && r.is_open());
    let (at_i, at_r) = (established(&mut i), established(&mut r));
    assert_eq!((at_i.name.as_str(), at_r.name.as_str()), ("w", "gw"));
    assert_eq!((at_i.key, at_r.key), (peer_public(12), peer_public(11)));
    assert_eq!(at_i.session_id, at_r.session_id);
    assert_eq!((&at_i.credential, &at_r.credential), (&w, &gw));

    // A message crosses; the receiving end decides it by the roles the credentials name.
    i.send(b"triage -> summariser").unwrap();
    pump(&mut i, &mut r, NOW + 2).unwrap();
    assert_eq!(
        r.poll_event(),
        Some(Event::Message(b"triage -> summariser".to_vec()))
    );
    let from = lab_authority(&c)
        .credential(&at_r.credential, &at_r.key, NOW + 2)
        .unwrap();
    let own = Credential::verify(&w, &c.public(), NOW + 2).unwrap();
    let p = c.policy().unwrap();
    let d = authorize(p, &from, "triage", &own, "summariser");
    assert!(d.allowed, "{d:?}");
    assert!(matches!(d.rule, Rule::Route(_)));
    // The coordinator's view of the same pair agrees; another pair of agents: default deny.
    assert_eq!(c.authorize(&gw, "triage", &w, "summariser", NOW + 2), Ok(d));
    assert_eq!(
        authorize(p, &from, "triage", &own, "alpha").rule,
        Rule::DefaultDeny
    );
}

#[test]
fn channel_refuses_expired_foreign_wrong_key_and_other_fleet_credentials() {
    let mut c = coordinator();
    let gw = admit_peer(&mut c, "gw", "gateway", 1, 11);
    let w = admit_peer(&mut c, "w", "worker", 2, 12);
    // Another coordinator (own key, same policy).
    let mut foreign = Coordinator::new(key(42), key(OWNER).public(), 0);
    foreign
        .update_policy(&policy(1).sign(&key(OWNER)).unwrap())
        .unwrap();
    let foreign_w = admit_peer(&mut foreign, "w", "worker", 3, 12);
    // The same coordinator key serving another fleet.
    let mut other_fleet = Coordinator::new(key(COORD), key(OWNER).public(), 0);
    let mut op = policy(1);
    op.fleet_id = "other".into();
    other_fleet
        .update_policy(&op.sign(&key(OWNER)).unwrap())
        .unwrap();
    let other_w = admit_peer(&mut other_fleet, "w", "worker", 4, 12);
    // Admitted without `peer` evidence: the credential names no channel key.
    place(&mut c, "w2", "worker", [5; 32]);
    let without = Attested {
        peer_key: None,
        ..snp(&[5; 32])
    };
    let no_peer = c.admit(&[5; 32], &without, NOW + 1).unwrap();
    assert_eq!(no_peer.credential.peer_key, None);
    // A node id that is a fleet name but not a peer name.
    let upper = admit_peer(&mut c, "W", "worker", 6, 12);

    let expiry = NOW + 1 + 600;
    let cases: [(&str, Vec<u8>, u8, Time, AuthorityError); 6] = [
        ("expired", w.clone(), 12, expiry, AuthorityError::Expired),
        (
            "other coordinator",
            foreign_w,
            12,
            NOW + 2,
            AuthorityError::Signature,
        ),
        // The credential is w's, the handshake is signed with another key (seed 13).
        (
            "another key",
            w.clone(),
            13,
            NOW + 2,
            AuthorityError::WrongKey,
        ),
        (
            "other fleet",
            other_w,
            12,
            NOW + 2,
            AuthorityError::NotAdmitted,
        ),
        (
            "no peer evidence",
            no_peer.signed,
            12,
            NOW + 2,
            AuthorityError::WrongKey,
        ),
        (
            "not a peer name",
            upper,
            12,
            NOW + 2,
            AuthorityError::Malformed("node id is not a peer name (lowercase)"),
        ),
    ];
    for (what, cred, seed, now, want) in cases {
        // The initiator's own credential is valid at `now` except in the expiry case, where
        // the responder's is checked first (the initiator hears Resp first).
        let mut i = Ch::initiator(
            Identity::from_seed([11; 32], gw.clone()).unwrap(),
            lab_authority(&c),
            [101; 32],
            None,
        )
        .unwrap();
        let mut r = Ch::responder(
            Identity::from_seed([seed; 32], cred).unwrap(),
            lab_authority(&c),
            [102; 32],
        )
        .unwrap();
        r.feed(&i.take_output(), now).unwrap();
        assert_eq!(
            i.feed(&r.take_output(), now),
            Err(PeerError::Credential(want)),
            "{what}"
        );
        assert!(i.is_failed(), "{what}");
    }
    // The responder refuses an initiator of another fleet the same way.
    let other_gw = admit_peer(&mut other_fleet, "gw", "gateway", 7, 11);
    let mut i = Ch::initiator(
        Identity::from_seed([11; 32], other_gw).unwrap(),
        CredentialAuthority::new(c.public(), "other"),
        [101; 32],
        None,
    )
    .unwrap();
    let mut r = Ch::responder(
        Identity::from_seed([12; 32], w).unwrap(),
        lab_authority(&c),
        [102; 32],
    )
    .unwrap();
    assert_eq!(
        pump(&mut i, &mut r, NOW + 2),
        Err(PeerError::Credential(AuthorityError::NotAdmitted))
    );
}

/// A TDX/Nitro-style guest binds one key: its credential names it as the channel key.
#[test]
fn direct_binding_guests_channel_key_is_their_bound_key() {
    let mut c = coordinator();
    place(&mut c, "td-1", "worker", [2; 32]);
    let a = Attested {
        tee: Tee::Tdx,
        measurement: TDX_DIGEST.to_vec(),
        report_data: direct_binding(&NODE_KEY, &[2; 32]).to_vec(),
        tcb: Tcb::Rated(TcbRating::UpToDate),
        debug: false,
        node_key: NODE_KEY,
        binding: Binding::Direct,
        bundle: None,
        // Ignored for a direct binding: the guest attested one key only.
        peer_key: Some([0x99; 32]),
    };
    let cred = c.admit(&[2; 32], &a, NOW + 1).unwrap().credential;
    assert_eq!(cred.peer_key, Some(NODE_KEY));
}

// The owner's endorsement (`endorsement`): credentials under a coordinator key the owner
// endorsed count for an owner-rooted monitor; everything a host could swap is refused.

use crate::endorsement::{Endorsement, Presented, PresentedError, Root, verify_presented};

fn endorse(owner: u8, fleet: &str, coordinator: [u8; 32], window: (Time, Time)) -> Vec<u8> {
    Endorsement {
        format: crate::endorsement::ENDORSEMENT_FORMAT,
        fleet_id: fleet.into(),
        coordinator,
        boot_id: [0xb0; 16],
        not_before: window.0,
        not_after: window.1,
    }
    .sign(&key(owner))
    .unwrap()
}

fn presented(endorsement: Vec<u8>, credential: Vec<u8>) -> Vec<u8> {
    Presented {
        endorsement,
        credential,
    }
    .encode()
}

#[test]
fn credentials_count_under_a_coordinator_key_the_owner_endorsed() {
    let mut c = coordinator();
    let cred = admit_peer(&mut c, "w", "worker", 3, 13);
    let window = (NOW, NOW + 3600);
    let good = presented(endorse(OWNER, "lab", c.public(), window), cred.clone());
    let root = Root::Owner(key(OWNER).public());
    let got = verify_presented(&good, &root, "lab", NOW + 2).unwrap();
    assert_eq!(got.node_id, "w");
    // The same bytes under a coordinator root, and the bare credential under the owner's.
    assert!(verify_presented(&good, &Root::Coordinator(c.public()), "lab", NOW + 2).is_err());
    assert!(verify_presented(&cred, &root, "lab", NOW + 2).is_err());
    // Another owner's endorsement; one of another coordinator key (a swapped credential
    // signer); one for another fleet; expired; not yet valid.
    let cases: [(Vec<u8>, &str); 5] = [
        (
            presented(endorse(OWNER + 1, "lab", c.public(), window), cred.clone()),
            "signature",
        ),
        (
            presented(
                endorse(OWNER, "lab", key(COORD + 1).public(), window),
                cred.clone(),
            ),
            "signature",
        ),
        (
            presented(endorse(OWNER, "other", c.public(), window), cred.clone()),
            "fleet",
        ),
        (
            presented(
                endorse(OWNER, "lab", c.public(), (NOW - 10, NOW + 1)),
                cred.clone(),
            ),
            "expired",
        ),
        (
            presented(
                endorse(OWNER, "lab", c.public(), (NOW + 100, NOW + 200)),
                cred.clone(),
            ),
            "expired",
        ),
    ];
    for (i, (bytes, why)) in cases.iter().enumerate() {
        let e = verify_presented(bytes, &root, "lab", NOW + 2).unwrap_err();
        let ok = match *why {
            "signature" => matches!(
                e,
                PresentedError::Endorsement(DecodeError::BadSignature(_))
                    | PresentedError::Credential(CredentialError::Decode(
                        DecodeError::BadSignature(_)
                    ))
            ),
            "fleet" => matches!(e, PresentedError::OtherFleet(_)),
            _ => matches!(e, PresentedError::EndorsementExpired(_)),
        };
        assert!(ok, "case {i}: {e:?}");
    }
    // Every byte flipped, truncations and oversize.
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 0x01;
        assert!(
            verify_presented(&b, &root, "lab", NOW + 2).is_err(),
            "byte {i}"
        );
    }
    for n in 0..good.len() {
        assert!(verify_presented(&good[..n], &root, "lab", NOW + 2).is_err());
    }
    assert!(verify_presented(&[0u8; 2048], &root, "lab", NOW + 2).is_err());
    // The endorsement's domain tag: a credential envelope does not pass for one.
    assert!(Endorsement::decode(&cred, &c.public()).is_err());
}

#[test]
fn owner_rooted_monitors_open_a_channel_with_endorsed_credentials() {
    let mut c = coordinator();
    let e = endorse(OWNER, "lab", c.public(), (NOW, NOW + 3600));
    let gw = presented(e.clone(), admit_peer(&mut c, "gw", "gateway", 4, 14));
    let w = presented(e, admit_peer(&mut c, "w", "worker", 5, 15));
    let authority = || CredentialAuthority::rooted(Root::Owner(key(OWNER).public()), "lab");
    let mut i = Ch::initiator(
        Identity::from_seed([14; 32], gw).unwrap(),
        authority(),
        [104; 32],
        Some(PeerName::new("w").unwrap()),
    )
    .unwrap();
    let mut r = Ch::responder(
        Identity::from_seed([15; 32], w).unwrap(),
        authority(),
        [105; 32],
    )
    .unwrap();
    pump(&mut i, &mut r, NOW + 2).unwrap();
    assert!(i.is_open() && r.is_open());
    // A coordinator-rooted monitor of the same fleet does not take the owner-rooted form.
    let mut c2 = coordinator();
    let gw = presented(
        endorse(OWNER, "lab", c2.public(), (NOW, NOW + 3600)),
        admit_peer(&mut c2, "gw", "gateway", 6, 16),
    );
    let mut i = Ch::initiator(
        Identity::from_seed([16; 32], gw).unwrap(),
        authority(),
        [106; 32],
        Some(PeerName::new("w").unwrap()),
    )
    .unwrap();
    let plain = admit_peer(&mut c2, "w", "worker", 7, 17);
    let mut r = Ch::responder(
        Identity::from_seed([17; 32], plain).unwrap(),
        lab_authority(&c2),
        [107; 32],
    )
    .unwrap();
    assert!(pump(&mut i, &mut r, NOW + 2).is_err());
}
