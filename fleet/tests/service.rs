//! The coordinator service as an untrusted relay drives it: every request goes through the
//! framing and the strict decoder; what a hostile relay sends (another owner's policy, one
//! below the floor, a bundle with an unpinned or swapped module, evidence for a nonce never
//! issued or already spent, garbage, an oversized length) is refused by its rule.

use omega_fleet::policy::{AgentPin, FleetPolicy, ImageRule, POLICY_FORMAT, Shape, SnpTcb};
use omega_fleet::service::{
    BundleFile, Chain, Deframer, FrameError, Kind, Request, Response, Service, TrustedRoots,
    decode_response, encode, frame,
};
use omega_fleet::signed::SigningKey;
use omega_fleet::{Placement, Tee};
use sha2::{Digest, Sha256};

const OWNER: u8 = 7;
const ISSUED_AT: u64 = 1_800_000_000;
const MODULE: &[u8] = b"\0asm\x01\0\0\0courier";

fn key(b: u8) -> SigningKey {
    SigningKey::from_seed([b; 32]).unwrap()
}

fn policy(version: u64, issued_at: u64, module: &[u8]) -> Vec<u8> {
    policy_body(version, issued_at, module)
        .sign(&key(OWNER))
        .unwrap()
}

fn policy_body(version: u64, issued_at: u64, module: &[u8]) -> FleetPolicy {
    let mut p = FleetPolicy {
        format: POLICY_FORMAT,
        fleet_id: "lab".into(),
        version,
        issued_at,
        allow_simulated: true,
        images: vec![ImageRule {
            tee: Tee::Simulated,
            measurement: vec![0x33; 48],
            name: "omega-lab".into(),
            shape: Shape {
                vcpus: 1,
                vcpu_type: "EPYC-v4".into(),
                memory_mib: 512,
            },
            roles: vec!["worker".into()],
        }],
        min_snp_tcb: SnpTcb::default(),
        allow_tdx_out_of_date: false,
        agents: vec![AgentPin {
            name: "courier".into(),
            publisher: "acme".into(),
            module_hash: Sha256::digest(module).into(),
        }],
        routes: vec![],
        credential_lifetime_s: 600,
        challenge_lifetime_s: 120,
        nitro_root: Vec::new(),
    };
    p.canonicalize();
    p
}

const LAB: TrustedRoots = TrustedRoots {
    lab: Some((
        omega_sim_psp::LAB_ARK_PEM,
        omega_sim_psp::LAB_ASK_PEM,
        omega_sim_psp::LAB_VCEK_DER,
    )),
    amd: &omega_snp_verify::amd::FAMILIES,
    amd_arks: &omega_snp_verify::amd::ARKS,
};

fn service(floor: u64) -> Service {
    Service::new(key(9), key(OWNER).public(), floor, LAB)
}

/// Sends `r` through the framing, as the relay does, and returns the answer.
fn call(s: &mut Service, r: &Request, uptime_ms: u64) -> (Response, Kind, bool) {
    let mut d = Deframer::new(omega_fleet::service::MAX_REQUEST);
    let bytes = frame(&encode(r));
    // Cut the stream anywhere: one byte at a time.
    let mut body = None;
    for b in bytes.chunks(1) {
        d.push(b);
        if let Some(m) = d.next_message() {
            body = Some(m.unwrap());
        }
    }
    // A fresh nonce per request, as the monitor draws one.
    let id = r.id();
    let h = s.handle(&body.unwrap(), uptime_ms, [id as u8; 32]);
    // The answer survives its own framing.
    let answer = decode_response(&encode(&h.response)).unwrap();
    assert_eq!(answer, h.response);
    (answer, h.record.kind, h.record.granted)
}

fn bundle(module: &[u8], publisher: &str) -> Vec<BundleFile> {
    let manifest = format!(
        r#"{{"version":1,"policy":"policy.bin","agents":[{{"name":"courier","module":"courier.wasm","publisher":"{publisher}"}}]}}"#
    );
    vec![
        BundleFile {
            name: "manifest.json".into(),
            bytes: manifest.into_bytes(),
        },
        BundleFile {
            name: "policy.bin".into(),
            bytes: b"compiled policy".to_vec(),
        },
        BundleFile {
            name: "courier.wasm".into(),
            bytes: module.to_vec(),
        },
    ]
}

fn place(id: u64, files: Vec<BundleFile>) -> Request {
    Request::Place {
        id,
        workload: "w1".into(),
        node: "n1".into(),
        role: "worker".into(),
        files,
    }
}

fn refused_rule(r: &Response) -> &str {
    match r {
        Response::Refused { rule, .. } => rule,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn policies_count_only_under_the_owner_and_at_or_above_the_floor() {
    let mut s = service(3);
    // Nothing placed before a policy (no time anchor either).
    let (r, ..) = call(&mut s, &place(1, bundle(MODULE, "acme")), 0);
    assert_eq!(refused_rule(&r), "placement");
    assert_eq!(s.now(0), None);
    // Another owner's policy.
    let mut foreign = policy(5, ISSUED_AT, MODULE);
    let forged = policy_body(5, ISSUED_AT, MODULE).sign(&key(8)).unwrap();
    let (r, kind, granted) = call(
        &mut s,
        &Request::Policy {
            id: 2,
            signed: forged,
        },
        0,
    );
    assert_eq!(
        (refused_rule(&r), kind, granted),
        ("policy", Kind::Policy, false)
    );
    // Below the floor the measured bundle set (a fresh boot fed an old policy).
    let (r, ..) = call(
        &mut s,
        &Request::Policy {
            id: 3,
            signed: policy(2, ISSUED_AT, MODULE),
        },
        0,
    );
    assert_eq!(refused_rule(&r), "policy");
    // A flipped byte anywhere in the signed policy.
    foreign[20] ^= 1;
    let (r, ..) = call(
        &mut s,
        &Request::Policy {
            id: 4,
            signed: foreign,
        },
        0,
    );
    assert_eq!(refused_rule(&r), "policy");
    // At the floor: applied, and the clock anchored at its issue time.
    let (r, kind, granted) = call(
        &mut s,
        &Request::Policy {
            id: 5,
            signed: policy(3, ISSUED_AT, MODULE),
        },
        10_000,
    );
    assert_eq!(
        r,
        Response::PolicyApplied {
            id: 5,
            fleet: "lab".into(),
            version: 3
        }
    );
    assert!(granted && kind == Kind::Policy);
    assert_eq!(s.now(10_000), Some(ISSUED_AT));
    assert_eq!(s.now(70_500), Some(ISSUED_AT + 60));
    // The same version again (replayed) is refused; a newer one signed earlier does not
    // set the clock back, one signed later moves it forward.
    let (r, ..) = call(
        &mut s,
        &Request::Policy {
            id: 6,
            signed: policy(3, ISSUED_AT, MODULE),
        },
        0,
    );
    assert_eq!(refused_rule(&r), "policy");
    call(
        &mut s,
        &Request::Policy {
            id: 7,
            signed: policy(4, ISSUED_AT - 1000, MODULE),
        },
        70_500,
    );
    assert_eq!(s.now(70_500), Some(ISSUED_AT + 60));
    call(
        &mut s,
        &Request::Policy {
            id: 8,
            signed: policy(5, ISSUED_AT + 5000, MODULE),
        },
        71_000,
    );
    assert_eq!(s.now(72_000), Some(ISSUED_AT + 5001));
}

#[test]
fn the_coordinator_hashes_the_bundle_itself() {
    let mut s = service(0);
    call(
        &mut s,
        &Request::Policy {
            id: 1,
            signed: policy(1, ISSUED_AT, MODULE),
        },
        0,
    );
    let files = bundle(MODULE, "acme");
    let (r, kind, granted) = call(&mut s, &place(2, files.clone()), 1000);
    assert!(granted && kind == Kind::Place);
    let Response::Placed {
        id: 2,
        nonce,
        placement,
    } = r
    else {
        panic!("{r:?}")
    };
    let p = Placement::verify(&placement, &s.public()).unwrap();
    assert_eq!(p.nonce, nonce);
    assert_eq!(
        p.bundle_digest,
        <[u8; 32]>::from(Sha256::digest(&files[0].bytes))
    );
    assert_eq!((p.workload.as_str(), p.node_id.as_str()), ("w1", "n1"));
    assert_eq!(p.issued_at, ISSUED_AT + 1);
    // A module swapped under the same manifest, another publisher, a bundle that does not
    // validate (no module), an unknown role: refused, nothing signed.
    let (r, ..) = call(&mut s, &place(3, bundle(b"\0asm\x01\0\0\0evil", "acme")), 0);
    assert_eq!(refused_rule(&r), "placement");
    let (r, ..) = call(&mut s, &place(4, bundle(MODULE, "mallory")), 0);
    assert_eq!(refused_rule(&r), "placement");
    let (r, ..) = call(&mut s, &place(5, files[..2].to_vec()), 0);
    assert_eq!(refused_rule(&r), "placement");
    let mut other_role = place(6, files);
    if let Request::Place { role, .. } = &mut other_role {
        *role = "gateway".into();
    }
    let (r, ..) = call(&mut s, &other_role, 0);
    assert_eq!(refused_rule(&r), "placement");
}

#[test]
fn evidence_answers_only_a_challenge_issued_here_and_only_once() {
    let mut s = service(0);
    call(
        &mut s,
        &Request::Policy {
            id: 1,
            signed: policy(1, ISSUED_AT, MODULE),
        },
        0,
    );
    let admit = |id, nonce| Request::Admit {
        id,
        nonce,
        chain: Chain::Lab,
        platform: vec![1, 2, 3],
        bundle: vec![],
        peer: vec![],
    };
    // Garbage evidence for a nonce never issued (a forged placement's).
    let (r, kind, granted) = call(&mut s, &admit(1, [0x77; 32]), 0);
    assert_eq!(
        (refused_rule(&r), kind, granted),
        ("nonce-unknown", Kind::Admit, false)
    );
    // For a real challenge: refused on the evidence, and the challenge is spent.
    let (r, ..) = call(&mut s, &place(2, bundle(MODULE, "acme")), 0);
    let Response::Placed { nonce, .. } = r else {
        panic!("{r:?}")
    };
    let (r, ..) = call(&mut s, &admit(3, nonce), 0);
    assert_eq!(refused_rule(&r), "evidence");
    let (r, ..) = call(&mut s, &admit(4, nonce), 0);
    assert_eq!(refused_rule(&r), "nonce-replayed");
    // Under AMD's roots, a VCEK AMD did not sign (the lab's) is refused by the chain check;
    // a generation the coordinator holds no roots for, before anything is parsed.
    let amd = |id, nonce, family: &str| Request::Admit {
        id,
        nonce,
        chain: Chain::Amd {
            family: family.into(),
            vcek: omega_sim_psp::LAB_VCEK_DER.to_vec(),
        },
        platform: vec![],
        bundle: vec![],
        peer: vec![],
    };
    for (id, family, why) in [(5, "milan", "evidence"), (7, "bergamo", "no AMD roots")] {
        let (r, ..) = call(&mut s, &place(id, bundle(MODULE, "acme")), 0);
        let Response::Placed { nonce, .. } = r else {
            panic!("{r:?}")
        };
        let (r, ..) = call(&mut s, &amd(id + 1, nonce, family), 0);
        let Response::Refused { rule, reason, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(rule, "evidence");
        assert!(reason.contains(why), "{reason}");
    }
}

#[test]
fn garbage_and_oversized_frames_are_refused() {
    let mut s = service(0);
    let h = s.handle(&[0xff, 0xff, 0xff], 0, [0; 32]);
    assert_eq!(refused_rule(&h.response), "malformed");
    assert_eq!(h.record.kind, Kind::Malformed);
    // Trailing bytes after a whole request.
    let mut body = encode(&Request::Policy {
        id: 1,
        signed: vec![],
    });
    body.push(0);
    assert_eq!(
        refused_rule(&s.handle(&body, 0, [0; 32]).response),
        "malformed"
    );
    // A length over the limit: refused before anything is held for it.
    let mut d = Deframer::new(1024);
    d.push(&u32::MAX.to_be_bytes());
    assert_eq!(
        d.next_message(),
        Some(Err(FrameError::TooLarge(u64::from(u32::MAX))))
    );
    assert_eq!(d.buffered(), 0);
    // Two messages in one push, and a partial third.
    let mut bytes = frame(b"one");
    bytes.extend(frame(b"two"));
    bytes.extend(&frame(b"three")[..5]);
    d.push(&bytes);
    assert_eq!(d.next_message(), Some(Ok(b"one".to_vec())));
    assert_eq!(d.next_message(), Some(Ok(b"two".to_vec())));
    assert_eq!(d.next_message(), None);
    // Random bytes never panic the decoder.
    let mut x: u64 = 0x1234_5678;
    for len in 0..2000 {
        let body: Vec<u8> = (0..len % 97)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = s.handle(&body, 0, [0; 32]);
    }
}

/// A fresh coordinator under `p` (signed by the owner) places the test bundle, then is asked
/// `admit(nonce)`: the refusal it answers, (rule, reason). Admission must not be granted.
fn refused_admission(p: &FleetPolicy, admit: impl FnOnce([u8; 32]) -> Request) -> (String, String) {
    let mut s = service(0);
    let (r, ..) = call(
        &mut s,
        &Request::Policy {
            id: 1,
            signed: p.sign(&key(OWNER)).unwrap(),
        },
        0,
    );
    assert!(matches!(r, Response::PolicyApplied { .. }), "{r:?}");
    let (r, ..) = call(&mut s, &place(2, bundle(MODULE, "acme")), 0);
    let Response::Placed { nonce, .. } = r else {
        panic!("{r:?}")
    };
    let (r, kind, granted) = call(&mut s, &admit(nonce), 0);
    assert!(kind == Kind::Admit && !granted);
    let Response::Refused { rule, reason, .. } = r else {
        panic!("{r:?}")
    };
    (rule, reason)
}

/// A real Nitro document (`../shared/testdata/nitro`, from a debug-mode enclave) through the
/// service: verified under the root the owner put in the policy, as of its own time (the
/// policy's `issued_at`), it reaches the admission and is refused there by `debug`; with a
/// flipped byte, or under a policy without a Nitro root, by `evidence`.
#[test]
fn nitro_documents_verify_under_the_policys_root() {
    let Some(v) = omega_test_support::tee::nitro("the Nitro admission through the service") else {
        return;
    };
    let root = omega_tee_verify::nitro::root_der(&v.root_pem).unwrap();
    let mut cases = vec![
        (root.clone(), v.document.clone(), "debug", ""),
        (
            Vec::new(),
            v.document.clone(),
            "evidence",
            "names no Nitro root",
        ),
    ];
    let mut flipped = v.document.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x20;
    cases.push((root, flipped, "evidence", "nitro evidence refused"));
    for (i, (root, document, rule, why)) in cases.into_iter().enumerate() {
        let mut p = policy_body(1, v.as_of, MODULE);
        p.nitro_root = root;
        let (got, reason) = refused_admission(&p, |nonce| Request::AdmitNitro {
            id: 3,
            nonce,
            document,
            node_key: [0x4e; 32],
        });
        assert_eq!(got, rule, "case {i}: {reason}");
        assert!(reason.contains(why), "case {i}: {reason}");
    }
}

/// The owner's endorsement of the coordinator's key: taken only when the owner signed it,
/// for this key and this fleet, valid at the coordinator's time.
#[test]
fn the_coordinator_takes_only_the_owners_endorsement_of_its_own_key() {
    use omega_fleet::endorsement::{ENDORSEMENT_FORMAT, Endorsement};
    let mut s = service(0);
    let e = |owner: u8, fleet: &str, coordinator: [u8; 32], window: (u64, u64)| {
        Endorsement {
            format: ENDORSEMENT_FORMAT,
            fleet_id: fleet.into(),
            coordinator,
            boot_id: [1; 16],
            not_before: window.0,
            not_after: window.1,
        }
        .sign(&key(owner))
        .unwrap()
    };
    let me = s.public();
    let window = (ISSUED_AT - 10, ISSUED_AT + 3600);
    let endorse = |id, signed| Request::Endorse { id, signed };
    let (r, kind, _) = call(&mut s, &endorse(1, e(OWNER, "lab", me, window)), 0);
    assert_eq!((refused_rule(&r), kind), ("endorsement", Kind::Endorse));
    call(
        &mut s,
        &Request::Policy {
            id: 2,
            signed: policy(1, ISSUED_AT, MODULE),
        },
        0,
    );
    for (id, signed) in [
        (3, e(OWNER + 1, "lab", me, window)),
        (4, e(OWNER, "lab", key(10).public(), window)),
        (5, e(OWNER, "other", me, window)),
        (6, e(OWNER, "lab", me, (ISSUED_AT - 100, ISSUED_AT - 1))),
        (7, vec![0; 40]),
    ] {
        let (r, ..) = call(&mut s, &endorse(id, signed), 0);
        assert_eq!(refused_rule(&r), "endorsement", "{id}: {r:?}");
    }
    let (r, kind, granted) = call(&mut s, &endorse(8, e(OWNER, "lab", me, window)), 0);
    assert_eq!(
        r,
        Response::Endorsed {
            id: 8,
            not_after: ISSUED_AT + 3600
        }
    );
    assert!(granted && kind == Kind::Endorse);
}

/// A TDX guest's quote and collateral go to the coordinator as the relay fetched them
/// (`Request::AdmitTdx`) and are verified there to Intel's pinned root at the coordinator's
/// time. The real recorded quote, under a policy issued at its collateral's time that allows
/// its MRTD, is verified and reaches the binding check (recorded evidence cannot bind this
/// nonce: `binding`); under a policy issued a year later its collateral has expired; a
/// flipped MRTD byte, the out-of-date platform, an oversized quote and collateral that is not
/// PCS JSON are refused by `evidence`. No credential for any.
#[test]
fn tdx_quotes_verify_in_the_coordinator() {
    let [fresh, outdated] = &omega_test_support::tee::TDX;
    let mrtd = omega_tee_verify::tdx::verify(fresh.quote, fresh.collateral, fresh.as_of)
        .unwrap()
        .measurement;
    let mut flipped = fresh.quote.to_vec();
    flipped[48 + 136 + 10] ^= 1; // inside MRTD
    let year = 365 * 86_400;
    // (policy issued at, quote, collateral, rule, reason contains)
    type Case<'a> = (u64, Vec<u8>, &'a [u8], &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            fresh.as_of,
            fresh.quote.to_vec(),
            fresh.collateral,
            "binding",
            "",
        ),
        (
            fresh.as_of + year,
            fresh.quote.to_vec(),
            fresh.collateral,
            "evidence",
            "not current at the verification time",
        ),
        (
            fresh.as_of,
            flipped,
            fresh.collateral,
            "evidence",
            "quote signature",
        ),
        (
            outdated.as_of,
            outdated.quote.to_vec(),
            outdated.collateral,
            "evidence",
            "below every level",
        ),
        (
            fresh.as_of,
            vec![0; 20_000],
            fresh.collateral,
            "evidence",
            "larger than the bound",
        ),
        (
            fresh.as_of,
            fresh.quote.to_vec(),
            b"{}",
            "evidence",
            "not PCS JSON",
        ),
    ];
    for (i, (issued_at, quote, collateral, rule, why)) in cases.into_iter().enumerate() {
        let mut p = policy_body(1, issued_at, MODULE);
        let mut td = p.images[0].clone();
        (td.tee, td.measurement, td.name) = (Tee::Tdx, mrtd.clone(), "td".into());
        p.images.push(td);
        p.canonicalize();
        let (got, reason) = refused_admission(&p, |nonce| Request::AdmitTdx {
            id: 3,
            nonce,
            quote,
            collateral: collateral.to_vec(),
            node_key: [0x7d; 32],
        });
        assert_eq!(got, rule, "case {i}: {reason}");
        assert!(reason.contains(why), "case {i}: {reason}");
    }
}
