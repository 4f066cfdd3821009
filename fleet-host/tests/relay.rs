//! The coordinator's host process over both backends, without QEMU. The in-image
//! coordinator here is the real `omega_fleet::service::Service` in a thread behind a
//! loopback TCP socket, as the monitor serves it on its Fleet stream; only the transport
//! differs (the launcher's relay is a byte pipe). Nodes' evidence is what a monitor under
//! the simulated PSP writes (`omega_evidence::Issuer`, a `SimPsp` report).
//!
//! * The relay client (`relay::RelayClient`): a policy applied (another owner's refused),
//!   a placement signed (the bundle read from its directory in sending order, hashed by the
//!   coordinator), an admission refused and its replay; an answer with another id, of the
//!   wrong kind, malformed, with trailing bytes, with an oversized length, none at all, or
//!   a closed connection is an error and never trusted, and the connection is given up
//!   after it; a request over the coordinator's limit is not sent.
//! * The host loop (`coordinator::Host`) on a real etcd over the relay (`relay::InImage`):
//!   the policy first, the coordinator key read from its evidence file (written to
//!   `coordinator.pub`, logged `started` with `in_image`), a node placed and admitted
//!   (credential, status, boot id in `boots/`), a TDX submission sent to the coordinator
//!   (`Request::AdmitTdx`) and refused there (`evidence`: not a quote), a Nitro submission
//!   for the same challenge (`Request::AdmitNitro`) refused there (`nonce-replayed`, and its
//!   policy names no Nitro root),
//!   and a coordinator that goes away stops the loop (`BackendFailed`). With a policy
//!   issued at the recorded Nitro document's time and AWS's root in it, the real document
//!   (a debug-mode enclave's) is decided by the coordinator: refused `debug` (needs
//!   `../shared/testdata/nitro`: a failure under CI, skipped otherwise). The same placement
//!   and admission over the in-process service (`backend::Local`), and its restart refusing
//!   the same policy version.
//! * `InImage::start` with a stand-in launcher (bash): the `omega run` flags, the key read,
//!   the launcher ended by closing the relay; a launcher that fails at once is reported with
//!   its output; `--key` with `--in-image` is refused.
//! * `omega-fleet bench-admission` on stored evidence.
//! * Owner-rooted (`omega_fleet_host::endorse`, `Host::endorse`, `--endorsement`): attested
//!   `coordinator` evidence verified for its nonce under the lab root and the expected
//!   measurement (another nonce, another measurement refused), an endorsement of its claim
//!   signed (another owner's claim, a zero lifetime refused) and taken by the service from
//!   the polled file (`endorsed`, published in etcd) after another owner's was refused
//!   (`endorsement-refused`); an admission's credential then verifies under the owner root
//!   and not under the coordinator key. `omega-fleet endorse` refuses evidence for another
//!   nonce and a zero lifetime.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use omega_fleet::Placement;
use omega_fleet::endorsement::{ENDORSEMENT_FORMAT, Endorsement, Root, verify_presented};
use omega_fleet::policy::{FleetPolicy, ImageRule, POLICY_FORMAT, Shape, SnpTcb};
use omega_fleet::service::{
    Chain, Deframer, FrameError, MAX_REQUEST, MAX_RESPONSE, Request, Response, Service, encode,
    frame,
};
use omega_fleet::signed::SigningKey;
use omega_fleet_host::backend::trusted_roots;
use omega_fleet_host::coordinator::{BackendFailed, Config, Host, Mode};
use omega_fleet_host::relay::{InImage, InImageConfig, RelayClient, RelayError, evidence_path};
use omega_fleet_host::source::{bundle_files, bundle_pins};
use omega_fleet_host::store::{Proposal, Status, Store, Submission, TeeSubmission};

const FLEET: &str = "lab";
const OWNER: u8 = 7;

fn key(b: u8) -> SigningKey {
    SigningKey::from_seed([b; 32]).unwrap()
}

/// A bundle directory with one agent.
fn bundle(dir: &Path) -> PathBuf {
    let b = dir.join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join(omega_bundle::MANIFEST),
        omega_bundle::Manifest::json("policy.bin", [("alpha", "alpha.wasm")]),
    )
    .unwrap();
    std::fs::write(b.join("policy.bin"), b"policy").unwrap();
    std::fs::write(b.join("alpha.wasm"), b"\0asm\x01\0\0\0alpha").unwrap();
    b
}

/// The owner's policy pinning `bundle`'s agents, signed by `owner`.
fn policy(bundle: &Path, owner: u8) -> Vec<u8> {
    let mut p = policy_body(bundle);
    p.canonicalize();
    p.sign(&key(owner)).unwrap()
}

/// The owner's policy pinning `bundle`'s agents, issued now, admitting the lab image.
fn policy_body(bundle: &Path) -> FleetPolicy {
    let (_, pins) = bundle_pins(bundle).unwrap();
    FleetPolicy {
        format: POLICY_FORMAT,
        fleet_id: FLEET.into(),
        version: 1,
        issued_at: omega_fleet_host::now(),
        allow_simulated: true,
        images: vec![ImageRule {
            tee: omega_fleet::Tee::Simulated,
            measurement: vec![0x33; 48],
            name: "lab".into(),
            shape: Shape {
                vcpus: 1,
                vcpu_type: "EPYC-v4".into(),
                memory_mib: 128,
            },
            roles: vec!["worker".into()],
        }],
        min_snp_tcb: SnpTcb::default(),
        allow_tdx_out_of_date: false,
        agents: pins,
        routes: vec![],
        credential_lifetime_s: 600,
        challenge_lifetime_s: 600,
        nitro_root: Vec::new(),
    }
}

/// How the fake coordinator misbehaves on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hostile {
    /// The service's answer, with another id.
    WrongId,
    /// An answer of a kind that does not answer the request.
    WrongKind,
    /// Bytes that do not decode as an answer.
    Garbage,
    /// The answer with a byte after it, in one frame.
    Trailing,
    /// A length over the answer limit (and some bytes of it).
    Oversized,
    /// No answer.
    Silent,
    /// The connection closed.
    Close,
}

/// The coordinator's key in the fake: `key(9)`.
fn coordinator_public() -> [u8; 32] {
    key(9).public()
}

/// The real service on one accepted connection, answering every request honestly except
/// request number `at` (1-based), answered as `how` says.
fn fake_coordinator(
    listener: TcpListener,
    hostile: Option<(u64, Hostile)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut service = Service::new(key(9), key(OWNER).public(), 0, trusted_roots(true));
        let boot = Instant::now();
        let mut d = Deframer::new(MAX_REQUEST);
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        loop {
            let got = match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(got) => got,
            };
            d.push(&buf[..got]);
            while let Some(m) = d.next_message() {
                let body = m.unwrap();
                n += 1;
                let uptime = boot.elapsed().as_millis() as u64;
                let h = service.handle(&body, uptime, omega_fleet_host::random32().unwrap());
                let answer = match hostile.filter(|(at, _)| *at == n).map(|(_, how)| how) {
                    None => frame(&encode(&h.response)),
                    Some(Hostile::WrongId) => {
                        let mut r = h.response;
                        match &mut r {
                            Response::PolicyApplied { id, .. }
                            | Response::Endorsed { id, .. }
                            | Response::Placed { id, .. }
                            | Response::Admitted { id, .. }
                            | Response::Refused { id, .. } => *id += 1,
                        }
                        frame(&encode(&r))
                    }
                    Some(Hostile::WrongKind) => frame(&encode(&Response::PolicyApplied {
                        id: h.response.id(),
                        fleet: FLEET.into(),
                        version: 9,
                    })),
                    Some(Hostile::Garbage) => frame(&[0xff; 40]),
                    Some(Hostile::Trailing) => {
                        let mut b = encode(&h.response);
                        b.push(0);
                        frame(&b)
                    }
                    Some(Hostile::Oversized) => {
                        let mut b = ((MAX_RESPONSE + 1) as u32).to_be_bytes().to_vec();
                        b.extend_from_slice(&[0u8; 1024]);
                        b
                    }
                    Some(Hostile::Silent) => continue,
                    Some(Hostile::Close) => return,
                };
                if conn.write_all(&answer).is_err() {
                    return;
                }
            }
        }
    })
}

/// A relay client connected to a fake coordinator.
async fn connect(hostile: Option<(u64, Hostile)>) -> (RelayClient, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = fake_coordinator(listener, hostile);
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    (RelayClient::new(stream), server)
}

fn place(id: u64, bundle: &Path) -> Request {
    Request::Place {
        id,
        workload: "w1".into(),
        node: "n1".into(),
        role: "worker".into(),
        files: bundle_files(bundle).unwrap(),
    }
}

#[tokio::test]
async fn the_relay_client_carries_policy_placement_and_admission() {
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path());
    let (mut c, server) = connect(None).await;
    // Another owner's policy: refused by the coordinator, and the answer says so.
    let r = c
        .call(&Request::Policy {
            id: 1,
            signed: policy(&b, 8),
        })
        .await
        .unwrap();
    assert!(
        matches!(&r, Response::Refused { id: 1, rule, .. } if rule == "policy"),
        "{r:?}"
    );
    let r = c
        .call(&Request::Policy {
            id: 2,
            signed: policy(&b, OWNER),
        })
        .await
        .unwrap();
    assert_eq!(
        r,
        Response::PolicyApplied {
            id: 2,
            fleet: FLEET.into(),
            version: 1
        }
    );
    // The placement: the bundle's files in sending order, signed for its manifest digest.
    let files = bundle_files(&b).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["manifest.json", "policy.bin", "alpha.wasm"]);
    let Response::Placed {
        id: 3,
        nonce,
        placement,
    } = c.call(&place(3, &b)).await.unwrap()
    else {
        panic!("not placed")
    };
    let pl = Placement::verify(&placement, &coordinator_public()).unwrap();
    assert_eq!(pl.nonce, nonce);
    assert_eq!((pl.workload.as_str(), pl.node_id.as_str()), ("w1", "n1"));
    assert_eq!(pl.bundle_digest, bundle_pins(&b).unwrap().0);
    // Evidence that is not evidence: refused by the coordinator (the challenge is spent).
    let admit = |id| Request::Admit {
        id,
        nonce,
        chain: Chain::Lab,
        platform: b"not evidence".to_vec(),
        bundle: Vec::new(),
        peer: Vec::new(),
    };
    let r = c.call(&admit(4)).await.unwrap();
    assert!(
        matches!(&r, Response::Refused { id: 4, rule, .. } if rule == "evidence"),
        "{r:?}"
    );
    let r = c.call(&admit(5)).await.unwrap();
    assert!(
        matches!(&r, Response::Refused { id: 5, rule, .. } if rule.starts_with("nonce-")),
        "{r:?}"
    );
    drop(c);
    server.join().unwrap();
}

#[tokio::test]
async fn answers_that_do_not_fit_are_errors_and_end_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path());
    type Expected = fn(&RelayError) -> bool;
    let cases: [(Hostile, Expected); 7] = [
        (Hostile::WrongId, |e| {
            matches!(e, RelayError::WrongId { sent: 2, got: 3 })
        }),
        (Hostile::WrongKind, |e| {
            matches!(
                e,
                RelayError::WrongKind {
                    sent: "place",
                    got: "policy-applied"
                }
            )
        }),
        (Hostile::Garbage, |e| {
            matches!(e, RelayError::Frame(FrameError::Malformed))
        }),
        (Hostile::Trailing, |e| {
            matches!(e, RelayError::Frame(FrameError::Malformed))
        }),
        (
            Hostile::Oversized,
            |e| matches!(e, RelayError::Frame(FrameError::TooLarge(n)) if *n == MAX_RESPONSE as u64 + 1),
        ),
        (Hostile::Silent, |e| {
            matches!(e, RelayError::Timeout { id: 2, .. })
        }),
        (Hostile::Close, |e| matches!(e, RelayError::Closed)),
    ];
    for (how, expected) in cases {
        let (mut c, server) = connect(Some((2, how))).await;
        c.set_timeout(Duration::from_secs(5));
        let r = c
            .call(&Request::Policy {
                id: 1,
                signed: policy(&b, OWNER),
            })
            .await
            .unwrap();
        assert!(
            matches!(r, Response::PolicyApplied { .. }),
            "{how:?}: {r:?}"
        );
        if how == Hostile::Silent {
            c.set_timeout(Duration::from_millis(300));
        }
        let e = c.call(&place(2, &b)).await.unwrap_err();
        assert!(expected(&e), "{how:?}: {e:?}");
        // Given up: nothing more is sent or believed on this connection.
        let again = c.call(&place(3, &b)).await.unwrap_err();
        assert!(matches!(again, RelayError::Broken(_)), "{how:?}: {again:?}");
        drop(c);
        server.join().unwrap();
    }
    // A request larger than the coordinator takes is not sent, and the connection stays.
    let (mut c, server) = connect(None).await;
    let big = Request::Policy {
        id: 1,
        signed: vec![0; MAX_REQUEST],
    };
    assert!(matches!(
        c.call(&big).await.unwrap_err(),
        RelayError::TooLarge(_)
    ));
    let r = c
        .call(&Request::Policy {
            id: 2,
            signed: policy(&b, OWNER),
        })
        .await
        .unwrap();
    assert!(matches!(r, Response::PolicyApplied { id: 2, .. }), "{r:?}");
    drop(c);
    server.join().unwrap();
}

/// The `coordinator` evidence a monitor would write for `public` (unattested here: the
/// host only decodes it; clients verify it).
fn coordinator_evidence(public: [u8; 32]) -> Vec<u8> {
    let mut issuer = omega_evidence::Issuer::new([5; 32]).unwrap();
    issuer
        .add(
            omega_evidence::Claim::Coordinator {
                public,
                owner: key(OWNER).public(),
                min_policy_version: 0,
                boot_id: [0xb0; 16],
            },
            [6; 32],
        )
        .unwrap();
    issuer.attest([4; 32]).unwrap();
    issuer
        .bundle(omega_evidence::COORDINATOR_PRINCIPAL, None, None)
        .unwrap()
        .encode()
        .unwrap()
}

/// An Omega node's `platform` and `bundle` evidence for `nonce`, as a monitor booted under
/// the simulated PSP writes it (report signed by the lab VCEK for the policy's measurement,
/// `[0x33; 48]`): (platform, bundle, monitor key).
fn node_evidence(nonce: [u8; 32], manifest_digest: [u8; 32]) -> (Vec<u8>, Vec<u8>, [u8; 32]) {
    let mut issuer = omega_evidence::Issuer::new(omega_fleet_host::random32().unwrap()).unwrap();
    issuer
        .add(
            omega_evidence::Claim::Platform {
                tee: omega_evidence::TEE_SIMULATED.into(),
                boot_id: BOOT_ID,
            },
            [1; 32],
        )
        .unwrap();
    issuer
        .add(omega_evidence::Claim::Bundle { manifest_digest }, [2; 32])
        .unwrap();
    let rd = issuer.attest(nonce).unwrap();
    let report = omega_sim_psp::SimPsp::new([0x33; 48])
        .report(rd, 0)
        .to_vec();
    let cut = |principal: &str| {
        issuer
            .bundle(principal, Some(report.clone()), None)
            .unwrap()
            .encode()
            .unwrap()
    };
    (cut("platform"), cut("bundle"), issuer.monitor_public())
}

const BOOT_ID: [u8; 16] = [0xb1; 16];

/// Through `host` on etcd: workload `w` placed on `node` (bundle `b`), the node's evidence
/// for the placement's nonce submitted, and admitted: the credential under the coordinator's
/// key for the node's monitor key, the status, the boot recorded with its boot id.
/// Proposes workload `w` on `node` and returns the placement the coordinator signed.
async fn place_workload<B: omega_fleet_host::backend::Backend>(
    host: &mut Host<B>,
    store: &mut Store,
    b: &Path,
    w: &str,
    node: &str,
) -> Placement {
    let p = Proposal {
        node: node.into(),
        bundle: b.display().to_string(),
        role: "worker".into(),
        epoch: 1,
        peer: None,
    };
    store.put_json("proposals", w, &p).await.unwrap();
    host.tick().await.unwrap();
    let signed = store.get("placements", w).await.unwrap().unwrap();
    let pl = Placement::verify(&signed, &host.public()).unwrap();
    assert_eq!((pl.workload.as_str(), pl.node_id.as_str()), (w, node));
    pl
}

/// The in-process coordinator's configuration (`--key`) on `etcd`, with the test bundle
/// written under `dir` and the owner's policy for it; returns it with the bundle.
fn local_config(
    dir: &Path,
    etcd: &omega_test_support::etcd::Etcd,
    lab_root: bool,
) -> (Config, PathBuf) {
    let b = bundle(dir);
    let signed = dir.join("policy.signed");
    std::fs::write(&signed, policy(&b, OWNER)).unwrap();
    let cfg = Config {
        etcd: vec![etcd.endpoint()],
        fleet: FLEET.into(),
        owner: key(OWNER).public(),
        policy: signed,
        lab_root,
        endorsement: None,
        audit: None,
        poll: Duration::from_millis(50),
        mode: Mode::Local {
            key_seed: [9; 32],
            state: dir.join("coordinator.state"),
            min_policy_version: 0,
        },
    };
    (cfg, b)
}

async fn place_and_admit<B: omega_fleet_host::backend::Backend>(
    host: &mut Host<B>,
    store: &mut Store,
    b: &Path,
    w: &str,
    node: &str,
) -> Placement {
    let pl = place_workload(host, store, b, w, node).await;
    let status: Status =
        serde_json::from_slice(&store.get("status", w).await.unwrap().unwrap()).unwrap();
    assert_eq!(
        (status.state.as_str(), status.nonce.clone()),
        ("placed", hex::encode(pl.nonce))
    );
    let (platform, bundle_ev, monitor) = node_evidence(pl.nonce, pl.bundle_digest);
    let sub = Submission {
        node: node.into(),
        nonce: hex::encode(pl.nonce),
        evidence: hex::encode(platform),
        bundle_evidence: hex::encode(bundle_ev),
        peer_evidence: String::new(),
        tee: None,
        amd: None,
    };
    store.put_json("evidence", w, &sub).await.unwrap();
    host.tick().await.unwrap();
    let cred = store.get("credentials", node).await.unwrap().unwrap();
    // Bare under the coordinator's key, or presented under the owner once it endorsed it.
    let root = match host.endorsement() {
        None => Root::Coordinator(host.public()),
        Some(_) => Root::Owner(key(OWNER).public()),
    };
    let c = verify_presented(&cred, &root, FLEET, omega_fleet_host::now()).unwrap();
    assert_eq!((c.node_id.as_str(), c.node_key), (node, monitor));
    let status: Status =
        serde_json::from_slice(&store.get("status", w).await.unwrap().unwrap()).unwrap();
    assert_eq!(
        (status.state.as_str(), status.detail.as_str()),
        ("admitted", "lab")
    );
    let boots: Vec<omega_fleet_host::store::Boot> =
        serde_json::from_slice(&store.get("boots", w).await.unwrap().unwrap()).unwrap();
    assert_eq!(boots.len(), 1);
    assert_eq!(boots[0].boot_id, hex::encode(BOOT_ID));
    assert_eq!(boots[0].node_key, hex::encode(monitor));
    pl
}

fn audit_events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_loop_runs_over_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let Some(etcd) = omega_test_support::etcd::Etcd::start(dir.path()) else {
        return;
    };
    let b = bundle(dir.path());
    let signed = dir.path().join("policy.signed");
    std::fs::write(&signed, policy(&b, OWNER)).unwrap();
    let run_dir = dir.path().join("run");
    let ev = evidence_path(&run_dir);
    std::fs::create_dir_all(ev.parent().unwrap()).unwrap();
    std::fs::write(&ev, coordinator_evidence(coordinator_public())).unwrap();
    let audit = dir.path().join("coordinator.audit");
    let cfg = Config {
        etcd: vec![etcd.endpoint()],
        fleet: FLEET.into(),
        owner: key(OWNER).public(),
        policy: signed,
        lab_root: true,
        endorsement: None,
        audit: Some(audit.clone()),
        poll: Duration::from_millis(50),
        mode: Mode::InImage(InImageConfig {
            omega: "unused".into(),
            image: "unused".into(),
            bundle: b.clone(),
            run_dir: run_dir.clone(),
            simulated_psp: true,
        }),
    };
    // The coordinator answers six requests, then goes away (request 7).
    let (client, server) = connect(Some((7, Hostile::Close))).await;
    let mut host = Host::start(
        &cfg,
        InImage::over(client, run_dir.clone(), key(OWNER).public()),
    )
    .await
    .unwrap();
    assert_eq!(host.public(), coordinator_public());
    assert_eq!(
        std::fs::read_to_string(run_dir.join("coordinator.pub")).unwrap(),
        format!("{}\n", hex::encode(coordinator_public()))
    );
    let events = audit_events(&audit);
    assert_eq!(events[0]["event"], "policy-applied", "{events:?}");
    assert_eq!(events[1]["event"], "started");
    assert_eq!(events[1]["in_image"], true);
    assert_eq!(events[1]["public"], hex::encode(coordinator_public()));

    // A node placed and admitted through the relay (requests 2 and 3).
    let mut store = Store::new(&cfg.etcd, FLEET);
    place_and_admit(&mut host, &mut store, &b, "w1", "n1").await;
    let admitted = audit_events(&audit)
        .into_iter()
        .find(|e| e["event"] == "admitted")
        .unwrap();
    assert_eq!(admitted["boot_id"], hex::encode(BOOT_ID));
    assert!(admitted["verify_us"].as_u64().unwrap() <= admitted["admission_us"].as_u64().unwrap());

    // A TDX guest's evidence, not a quote: the coordinator verifies and refuses it (w2
    // placed: request 4).
    let p = Proposal {
        node: "n2".into(),
        bundle: b.display().to_string(),
        role: "worker".into(),
        epoch: 1,
        peer: None,
    };
    store.put_json("proposals", "w2", &p).await.unwrap();
    host.tick().await.unwrap();
    let pl = Placement::verify(
        &store.get("placements", "w2").await.unwrap().unwrap(),
        &coordinator_public(),
    )
    .unwrap();
    let sub = Submission {
        node: "n2".into(),
        nonce: hex::encode(pl.nonce),
        evidence: String::new(),
        bundle_evidence: String::new(),
        peer_evidence: String::new(),
        tee: Some(TeeSubmission {
            kind: "tdx".into(),
            evidence: "00".into(),
            collateral: "00".into(),
            node_key: hex::encode([0x42; 32]),
        }),
        amd: None,
    };
    store.put_json("evidence", "w2", &sub).await.unwrap();
    host.tick().await.unwrap();
    let refused = audit_events(&audit)
        .into_iter()
        .find(|e| e["event"] == "refused")
        .unwrap();
    assert_eq!(refused["rule"], "evidence");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .starts_with("tdx evidence refused"),
        "{refused}"
    );
    let status: Status =
        serde_json::from_slice(&store.get("status", "w2").await.unwrap().unwrap()).unwrap();
    assert_eq!(
        (status.state.as_str(), status.rule.as_str()),
        ("refused", "evidence")
    );
    assert!(store.get("credentials", "n2").await.unwrap().is_none());

    // A Nitro guest's document for the same challenge: sent to the coordinator (request 6),
    // which verifies it under its policy's Nitro root (this policy has none) and finds the
    // challenge spent by the refused TDX submission: both said.
    let sub = Submission {
        tee: Some(TeeSubmission {
            kind: "nitro".into(),
            evidence: hex::encode(b"not a document"),
            collateral: String::new(),
            node_key: hex::encode([0x42; 32]),
        }),
        ..sub
    };
    store.put_json("evidence", "w2", &sub).await.unwrap();
    host.tick().await.unwrap();
    let refused: Vec<serde_json::Value> = audit_events(&audit)
        .into_iter()
        .filter(|e| e["event"] == "refused")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[1]["rule"], "nonce-replayed");
    assert!(
        refused[1]["reason"]
            .as_str()
            .unwrap()
            .contains("names no Nitro root"),
        "{refused:?}"
    );
    assert!(store.get("credentials", "n2").await.unwrap().is_none());

    // The coordinator goes away at the next request (7): the loop's error says so.
    store
        .put_json(
            "proposals",
            "w3",
            &Proposal {
                node: "n3".into(),
                ..p
            },
        )
        .await
        .unwrap();
    let e = host.tick().await.unwrap_err();
    assert!(e.downcast_ref::<BackendFailed>().is_some(), "{e:#}");
    assert!(format!("{e:#}").contains("closed"), "{e:#}");
    assert!(store.get("placements", "w3").await.unwrap().is_none());
    server.join().unwrap();
}

/// The real Nitro document (a debug-mode enclave's) through the host loop over the relay:
/// sent to the coordinator and decided there, under the Nitro root of its policy, at its
/// time (the policy is issued at the document's own time, when its certificates were
/// valid): allowed by its PCR0, refused `debug`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nitro_guest_is_decided_by_the_in_image_coordinator() {
    let Some(n) = omega_test_support::tee::nitro("the Nitro document through the relay") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(etcd) = omega_test_support::etcd::Etcd::start(dir.path()) else {
        return;
    };
    let b = bundle(dir.path());
    let root = measurements::tee::nitro_root_der(&n.root_pem).unwrap();
    let pcr0 = omega_tee_verify::nitro::verify(&n.document, &root, n.as_of)
        .unwrap()
        .measurement;
    let mut p = policy_body(&b);
    p.issued_at = n.as_of;
    p.nitro_root = root;
    p.images.push(ImageRule {
        tee: omega_fleet::Tee::Nitro,
        measurement: pcr0,
        name: "enclave".into(),
        shape: Shape {
            vcpus: 2,
            vcpu_type: "nitro".into(),
            memory_mib: 2048,
        },
        roles: vec!["worker".into()],
    });
    p.canonicalize();
    let signed = dir.path().join("policy.signed");
    std::fs::write(&signed, p.sign(&key(OWNER)).unwrap()).unwrap();
    let run_dir = dir.path().join("run");
    let ev = evidence_path(&run_dir);
    std::fs::create_dir_all(ev.parent().unwrap()).unwrap();
    std::fs::write(&ev, coordinator_evidence(coordinator_public())).unwrap();
    let audit = dir.path().join("coordinator.audit");
    let cfg = Config {
        etcd: vec![etcd.endpoint()],
        fleet: FLEET.into(),
        owner: key(OWNER).public(),
        policy: signed,
        lab_root: true,
        endorsement: None,
        audit: Some(audit.clone()),
        poll: Duration::from_millis(50),
        mode: Mode::InImage(InImageConfig {
            omega: "unused".into(),
            image: "unused".into(),
            bundle: b.clone(),
            run_dir: run_dir.clone(),
            simulated_psp: true,
        }),
    };
    let (client, server) = connect(None).await;
    let mut host = Host::start(
        &cfg,
        InImage::over(client, run_dir.clone(), key(OWNER).public()),
    )
    .await
    .unwrap();
    let mut store = Store::new(&cfg.etcd, FLEET);
    store
        .put_json(
            "proposals",
            "w-nitro",
            &Proposal {
                node: "enclave-1".into(),
                bundle: b.display().to_string(),
                role: "worker".into(),
                epoch: 1,
                peer: None,
            },
        )
        .await
        .unwrap();
    host.tick().await.unwrap();
    let pl = Placement::verify(
        &store.get("placements", "w-nitro").await.unwrap().unwrap(),
        &coordinator_public(),
    )
    .unwrap();
    let sub = Submission {
        node: "enclave-1".into(),
        nonce: hex::encode(pl.nonce),
        evidence: String::new(),
        bundle_evidence: String::new(),
        peer_evidence: String::new(),
        tee: Some(TeeSubmission {
            kind: "nitro".into(),
            evidence: hex::encode(&n.document),
            collateral: String::new(),
            node_key: hex::encode([0x42; 32]),
        }),
        amd: None,
    };
    store.put_json("evidence", "w-nitro", &sub).await.unwrap();
    host.tick().await.unwrap();
    let status: Status =
        serde_json::from_slice(&store.get("status", "w-nitro").await.unwrap().unwrap()).unwrap();
    assert_eq!(
        (status.state.as_str(), status.rule.as_str()),
        ("refused", "debug"),
        "{status:?}"
    );
    let refused = audit_events(&audit)
        .into_iter()
        .find(|e| e["event"] == "refused")
        .unwrap();
    assert_eq!(refused["rule"], "debug", "{refused:?}");
    assert!(
        store
            .get("credentials", "enclave-1")
            .await
            .unwrap()
            .is_none()
    );
    host.stop().await;
    server.join().unwrap();
}

/// The same loop with the in-process service (`--key`): the same requests, the same
/// results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_loop_runs_over_the_local_service() {
    let dir = tempfile::tempdir().unwrap();
    let Some(etcd) = omega_test_support::etcd::Etcd::start(dir.path()) else {
        return;
    };
    let (cfg, b) = local_config(dir.path(), &etcd, true);
    let state = dir.path().join("coordinator.state");
    let mut host = omega_fleet_host::coordinator::start_local(&cfg)
        .await
        .unwrap();
    assert_eq!(host.public(), coordinator_public());
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "1\n");
    let mut store = Store::new(&cfg.etcd, FLEET);
    place_and_admit(&mut host, &mut store, &b, "w1", "n1").await;
    // Restarted with the same policy: refused (a replay), as before the service.
    drop(host);
    let e = omega_fleet_host::coordinator::start_local(&cfg)
        .await
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("policy"), "{e:#}");
}

/// A node on a real SEV-SNP host submits its chip's VCEK (`Submission::amd`, from
/// `omega-fleet node --vcek --family`); the host sends it as `Chain::Amd` and the service
/// checks it against AMD's roots, its own copies. A coordinator without the lab root
/// (`--lab-root` off): the simulated PSP's evidence with no chain is refused (no lab root);
/// with AMD's real Milan VCEK (virtee/sev's) the VCEK passes AMD's chain and the report, which
/// the lab key signed, fails under it; bytes that are no certificate are refused as a VCEK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_amd_chain_is_checked_by_the_coordinator() {
    use omega_fleet_host::store::AmdChain;
    let dir = tempfile::tempdir().unwrap();
    let Some(etcd) = omega_test_support::etcd::Etcd::start(dir.path()) else {
        return;
    };
    let (cfg, b) = local_config(dir.path(), &etcd, false);
    let mut host = omega_fleet_host::coordinator::start_local(&cfg)
        .await
        .unwrap();
    let mut store = Store::new(&cfg.etcd, FLEET);
    let milan = |vcek: &[u8]| {
        Some(AmdChain {
            family: "milan".into(),
            vcek: hex::encode(vcek),
        })
    };
    let cases = [
        (None, "no lab root"),
        (
            milan(omega_test_support::snp::EMBEDDED_MILAN_VCEK),
            "report",
        ),
        (milan(b"not a certificate"), "vcek"),
    ];
    for (i, (amd, why)) in cases.into_iter().enumerate() {
        let (w, node) = (format!("w-amd-{i}"), format!("n-amd-{i}"));
        let pl = place_workload(&mut host, &mut store, &b, &w, &node).await;
        let (platform, bundle_ev, _) = node_evidence(pl.nonce, pl.bundle_digest);
        let sub = Submission {
            node: node.clone(),
            nonce: hex::encode(pl.nonce),
            evidence: hex::encode(platform),
            bundle_evidence: hex::encode(bundle_ev),
            peer_evidence: String::new(),
            tee: None,
            amd,
        };
        store.put_json("evidence", &w, &sub).await.unwrap();
        host.tick().await.unwrap();
        let status: Status =
            serde_json::from_slice(&store.get("status", &w).await.unwrap().unwrap()).unwrap();
        assert_eq!(
            (status.state.as_str(), status.rule.as_str()),
            ("refused", "evidence"),
            "case {i}: {status:?}"
        );
        assert!(
            status.detail.to_lowercase().contains(why) && !status.detail.contains("signed_by_ask"),
            "case {i}: {status:?}"
        );
        assert!(store.get("credentials", &node).await.unwrap().is_none());
    }
}

/// `omega-fleet bench-admission` on a stored run's evidence (written here as a monitor under
/// the simulated PSP writes it).
#[test]
fn bench_admission_runs_on_a_stored_run() {
    let dir = tempfile::tempdir().unwrap();
    let nonce = [0x5a; 32];
    let (platform, bundle_ev, _) = node_evidence(nonce, [0x44; 32]);
    std::fs::create_dir_all(dir.path().join("evidence")).unwrap();
    std::fs::write(dir.path().join("evidence/platform.bin"), platform).unwrap();
    std::fs::write(dir.path().join("evidence/bundle.bin"), bundle_ev).unwrap();
    std::fs::write(
        dir.path().join("nonce.hex"),
        format!("{}\n", hex::encode(nonce)),
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_omega-fleet"))
        .args(["bench-admission", "--iterations", "3", "--log-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 runs: median"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// `omega-fleet coordinator --in-image` with a launcher that fails at once: the start
/// fails saying so, with the launcher's last output; `--key` (the image's key is its own)
/// is refused with `--in-image`.
#[test]
fn the_cli_reports_a_launcher_that_never_connects() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path());
    let omega = dir.path().join("omega");
    std::fs::write(
        &omega,
        "#!/bin/sh\necho \"omega: error: no image here ($*)\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&omega, std::fs::Permissions::from_mode(0o755)).unwrap();
    let signed = dir.path().join("policy.signed");
    std::fs::write(&signed, policy(&b, OWNER)).unwrap();
    let d = |p: &Path| p.display().to_string();
    let base = [
        "coordinator".to_string(),
        "--etcd".into(),
        "http://127.0.0.1:1".into(),
        "--fleet".into(),
        FLEET.into(),
        "--owner".into(),
        hex::encode(key(OWNER).public()),
        "--policy".into(),
        d(&signed),
        "--lab-root".into(),
        "--in-image".into(),
        "--omega".into(),
        d(&omega),
        "--image".into(),
        d(&dir.path().join("image.bin")),
        "--coordinator-bundle".into(),
        d(&b),
        "--run-dir".into(),
        d(&dir.path().join("run")),
    ];
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_omega-fleet"))
        .args(&base)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("omega run ended"), "{err}");
    assert!(err.contains("no image here"), "{err}");
    // The launcher was given the relay's address and the lab flags.
    assert!(err.contains("--simulated-psp"), "{err}");
    assert!(err.contains("--fleet-connect 127.0.0.1:"), "{err}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_omega-fleet"))
        .args(&base)
        .args(["--key", &d(&dir.path().join("k"))])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `relay::InImage::start` with a stand-in launcher (a bash script): given the relay's
/// address and the lab flags, it connects, answers the policy, writes the `coordinator`
/// evidence where `omega run --log-dir` would, and ends when the relay closes the stream,
/// as a coordinator image's launcher does; stopping the host closes it and waits for it.
#[tokio::test]
async fn the_relay_starts_the_launcher_reads_the_key_and_stops_it() {
    use std::os::unix::fs::PermissionsExt as _;
    if !Path::new("/bin/bash").exists() {
        eprintln!("SKIP: no /bin/bash for the stand-in launcher");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let b = bundle(d);
    std::fs::write(
        d.join("answer.bin"),
        frame(&encode(&Response::PolicyApplied {
            id: 1,
            fleet: FLEET.into(),
            version: 1,
        })),
    )
    .unwrap();
    std::fs::write(
        d.join("evidence.bin"),
        coordinator_evidence(coordinator_public()),
    )
    .unwrap();
    let omega = d.join("omega");
    std::fs::write(
        &omega,
        format!(
            r#"#!/bin/bash
echo "$@" > {d}/args.txt
while [ $# -gt 0 ]; do
  case "$1" in
    --log-dir) log="$2"; shift ;;
    --fleet-connect) addr="$2"; shift ;;
  esac
  shift
done
exec 3<>/dev/tcp/${{addr%:*}}/${{addr##*:}}
cat {d}/answer.bin >&3
mkdir -p "$log/evidence"
cp {d}/evidence.bin "$log/evidence/coordinator.bin"
cat <&3 > {d}/requests.bin
echo "omega: the relay closed the Fleet stream"
"#,
            d = d.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&omega, std::fs::Permissions::from_mode(0o755)).unwrap();
    let signed = d.join("policy.signed");
    std::fs::write(&signed, policy(&b, OWNER)).unwrap();
    let image = InImageConfig {
        omega,
        image: d.join("image.bin"),
        bundle: b.clone(),
        run_dir: d.join("run"),
        simulated_psp: true,
    };
    let cfg = Config {
        etcd: vec!["http://127.0.0.1:1".into()],
        fleet: FLEET.into(),
        owner: key(OWNER).public(),
        policy: signed.clone(),
        lab_root: true,
        endorsement: None,
        audit: None,
        poll: Duration::from_millis(50),
        mode: Mode::InImage(image.clone()),
    };
    let backend = InImage::start(&image, key(OWNER).public()).await.unwrap();
    let host = Host::start(&cfg, backend).await.unwrap();
    assert_eq!(host.public(), coordinator_public());
    assert_eq!(
        std::fs::read_to_string(d.join("run/coordinator.pub")).unwrap(),
        format!("{}\n", hex::encode(coordinator_public()))
    );
    let args = std::fs::read_to_string(d.join("args.txt")).unwrap();
    for want in [
        "run --image".to_string(),
        "--simulated-psp".into(),
        format!("--bundle {}", b.display()),
        format!("--log-dir {}", d.join("run/log").display()),
        "--nonce ".into(),
        "--fleet-connect 127.0.0.1:".into(),
    ] {
        assert!(args.contains(&want), "{want:?} in {args}");
    }
    let stopped = host.stop().await.unwrap();
    assert!(stopped.contains("exit status: 0"), "{stopped}");
    // What the launcher was sent: exactly the policy request, framed.
    let sent = std::fs::read(d.join("requests.bin")).unwrap();
    assert_eq!(
        sent,
        frame(&encode(&Request::Policy {
            id: 1,
            signed: std::fs::read(&signed).unwrap(),
        }))
    );
    let out = std::fs::read_to_string(d.join("run/omega-run.stdout")).unwrap();
    assert!(out.contains("the relay closed"), "{out}");
}

/// The `coordinator` evidence a monitor under the simulated PSP writes for `public` (owner
/// `owner`), attested for `nonce` (report measurement `[0x33; 48]`).
fn attested_coordinator_evidence(public: [u8; 32], owner: [u8; 32], nonce: [u8; 32]) -> Vec<u8> {
    let mut issuer = omega_evidence::Issuer::new(omega_fleet_host::random32().unwrap()).unwrap();
    issuer
        .add(
            omega_evidence::Claim::Coordinator {
                public,
                owner,
                min_policy_version: 0,
                boot_id: [0xc0; 16],
            },
            [6; 32],
        )
        .unwrap();
    let rd = issuer.attest(nonce).unwrap();
    let report = omega_sim_psp::SimPsp::new([0x33; 48])
        .report(rd, 0)
        .to_vec();
    issuer
        .bundle(omega_evidence::COORDINATOR_PRINCIPAL, Some(report), None)
        .unwrap()
        .encode()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_endorsement_roots_the_credentials() {
    use omega_fleet_host::attest::SnpRoots;
    use omega_fleet_host::endorse::{endorse, verify_coordinator};
    let dir = tempfile::tempdir().unwrap();
    let Some(etcd) = omega_test_support::etcd::Etcd::start(dir.path()) else {
        return;
    };
    let b = bundle(dir.path());
    let signed = dir.path().join("policy.signed");
    std::fs::write(&signed, policy(&b, OWNER)).unwrap();
    let audit = dir.path().join("coordinator.audit");
    let file = dir.path().join("endorsement");
    let cfg = Config {
        etcd: vec![etcd.endpoint()],
        fleet: FLEET.into(),
        owner: key(OWNER).public(),
        policy: signed,
        lab_root: true,
        endorsement: Some(file.clone()),
        audit: Some(audit.clone()),
        poll: Duration::from_millis(50),
        mode: Mode::Local {
            key_seed: [9; 32],
            state: dir.path().join("coordinator.state"),
            min_policy_version: 0,
        },
    };
    let mut host = omega_fleet_host::coordinator::start_local(&cfg)
        .await
        .unwrap();

    // The owner verifies the coordinator's evidence for its nonce and measurement.
    let nonce = [0x4e; 32];
    let ev = attested_coordinator_evidence(host.public(), key(OWNER).public(), nonce);
    let m = || Ok([0x33; 48]);
    let claim = verify_coordinator(&ev, &nonce, &SnpRoots::Lab, m).unwrap();
    assert_eq!(claim.public, coordinator_public());
    assert_eq!(claim.boot_id, [0xc0; 16]);
    let e = verify_coordinator(&ev, &[0x4f; 32], &SnpRoots::Lab, m).unwrap_err();
    assert!(format!("{e:#}").contains("refused"), "{e:#}");
    let e = verify_coordinator(&ev, &nonce, &SnpRoots::Lab, || Ok([0x34; 48])).unwrap_err();
    assert!(format!("{e:#}").contains("SNP report refused"), "{e:#}");
    // Under AMD's Milan roots with a real Milan VCEK (the owner endorsing a coordinator on a
    // real SEV-SNP host): the VCEK's chain holds, this lab-signed report does not.
    let amd = SnpRoots::Amd {
        family: "milan".parse().unwrap(),
        vcek: omega_test_support::snp::EMBEDDED_MILAN_VCEK.to_vec(),
    };
    let e = format!(
        "{:#}",
        verify_coordinator(&ev, &nonce, &amd, m).unwrap_err()
    );
    assert!(
        e.contains("report.signature") && !e.contains("signed_by_ask"),
        "{e}"
    );
    // Unattested evidence (no report) is refused.
    assert!(
        verify_coordinator(
            &coordinator_evidence(host.public()),
            &nonce,
            &SnpRoots::Lab,
            m
        )
        .is_err()
    );

    // Signing: another owner's claim and a zero lifetime are refused.
    let now = omega_fleet_host::now();
    assert!(endorse(&key(8), FLEET, &claim, now, 300).is_err());
    assert!(endorse(&key(OWNER), FLEET, &claim, now, 0).is_err());
    let good = endorse(&key(OWNER), FLEET, &claim, now, 300).unwrap();

    // Another owner's endorsement of this key: refused by the service, not fatal.
    let other = Endorsement {
        format: ENDORSEMENT_FORMAT,
        fleet_id: FLEET.into(),
        coordinator: claim.public,
        boot_id: claim.boot_id,
        not_before: now,
        not_after: now + 300,
    }
    .sign(&key(8))
    .unwrap();
    assert!(!host.endorse(other).await.unwrap());
    assert!(host.endorsement().is_none());
    let refused = audit_events(&audit)
        .into_iter()
        .find(|e| e["event"] == "endorsement-refused")
        .unwrap();
    assert_eq!(refused["rule"], "endorsement");

    // The owner's, from the polled file: taken, logged, published.
    std::fs::write(&file, &good).unwrap();
    host.tick().await.unwrap();
    assert_eq!(host.endorsement(), Some(&good[..]));
    let endorsed = audit_events(&audit)
        .into_iter()
        .find(|e| e["event"] == "endorsed")
        .unwrap();
    assert_eq!(endorsed["not_after"], now + 300);
    let mut store = Store::new(&cfg.etcd, FLEET);
    assert_eq!(
        store
            .get("endorsements", "coordinator")
            .await
            .unwrap()
            .unwrap(),
        good
    );

    // An admission's credential now verifies under the owner root only.
    place_and_admit(&mut host, &mut store, &b, "w1", "n1").await;
    let cred = store.get("credentials", "n1").await.unwrap().unwrap();
    let t = omega_fleet_host::now();
    verify_presented(&cred, &Root::Owner(key(OWNER).public()), FLEET, t).unwrap();
    assert!(verify_presented(&cred, &Root::Coordinator(host.public()), FLEET, t).is_err());
    assert!(verify_presented(&cred, &Root::Owner(key(8).public()), FLEET, t).is_err());
    assert!(verify_presented(&cred, &Root::Owner(key(OWNER).public()), "other", t).is_err());
}

/// `omega-fleet endorse` refuses evidence for another nonce, and a zero lifetime.
#[test]
fn the_endorse_command_refuses_evidence_for_another_nonce_and_other_roots() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("coordinator.bin");
    std::fs::write(
        &ev,
        attested_coordinator_evidence(coordinator_public(), key(OWNER).public(), [0x4e; 32]),
    )
    .unwrap();
    let owner_key = dir.path().join("owner.key");
    std::fs::write(&owner_key, format!("{}\n", hex::encode([OWNER; 32]))).unwrap();
    let image = dir.path().join("image.bin");
    std::fs::write(&image, [0u8; 4096]).unwrap();
    let out = dir.path().join("endorsement");
    let vcek = dir.path().join("vcek_milan.der");
    std::fs::write(&vcek, omega_test_support::snp::EMBEDDED_MILAN_VCEK).unwrap();
    let lab = ["--lab-root".to_string()];
    let amd = [
        "--vcek".to_string(),
        vcek.display().to_string(),
        "--family".into(),
        "milan".into(),
    ];
    let run_with = |nonce: [u8; 32], lifetime: &str, roots: &[String]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_omega-fleet"))
            .arg("endorse")
            .arg("--evidence")
            .arg(&ev)
            .args(["--nonce", &hex::encode(nonce), "--fleet", FLEET])
            .args(roots)
            .args(["--lifetime", lifetime])
            .arg("--image")
            .arg(&image)
            .arg("--owner-key")
            .arg(&owner_key)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let run = |nonce: [u8; 32], lifetime: &str| run_with(nonce, lifetime, &lab);
    // AMD's roots by name: an unknown family is refused before anything is read; with no
    // roots named at all, clap refuses (the chain itself: `an_owner_endorsement_roots_the_credentials`).
    let mut bogus = amd.clone();
    bogus[3] = "zen9".into();
    let o = run_with([0x4e; 32], "300", &bogus);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown family"), "{err}");
    let o = run_with([0x4e; 32], "300", &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--lab-root"));
    assert!(!out.exists());
    let o = run([0x4f; 32], "300");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("coordinator evidence refused"), "{err}");
    assert!(!out.exists());
    let o = run([0x4e; 32], "0");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("lifetime"));
    assert!(!out.exists());
}
