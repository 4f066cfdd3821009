//! The fleet coordinator inside an Omega image (docs/fleet.md, "The in-image coordinator"):
//! the test-hooks image boots a bundle whose manifest makes it its fleet's coordinator
//! (`coordinator { owner, min_policy_version }`), and this test is its relay, the untrusted
//! host that carries requests on the Fleet stream (`omega run --fleet-connect`). Three boots:
//!
//! 1. The coordinator. Its evidence claims its key, its owner and its floor (principal
//!    `coordinator`, verified with `measurements verify-evidence`); that key is the only
//!    one the test then believes. As a hostile relay the test sends a policy below the
//!    floor, one signed by another key, and garbage: each refused. An Intel TDX guest:
//!    under the owner's policy issued at the recorded quote's collateral time, the real
//!    quote verifies to Intel's root inside the image (our DCAP verification) and is refused
//!    only by `binding` (recorded evidence cannot bind this nonce). The owner's next policy,
//!    issued now, is applied (the coordinator's clock moves forward to it); a node bundle is
//!    placed, hashed by the coordinator itself.
//! 2. A node booted with the placement's nonce. Its evidence goes to the coordinator, which
//!    admits it: the credential verifies under the attested coordinator key and binds the
//!    node's attested monitor and peer keys. Replayed, it is refused (`nonce-replayed`), as
//!    is evidence for a nonce the coordinator never issued (`nonce-unknown`), and the
//!    report of a second node (n2, booted for its own placement) presented under AMD's
//!    roots, which the image holds, with a VCEK AMD did not sign (`evidence`:
//!    `vcek.signed_by_ask`).
//!
//! Closing the relay stops the coordinator; its log verifies and records every request
//! (`FLEET_REQUEST`), granted or refused, in order.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use omega_fleet::policy::{AgentPin, FleetPolicy, ImageRule, POLICY_FORMAT, Shape, SnpTcb};
use omega_fleet::service::{
    BundleFile, Chain, Request, Response, Service, TrustedRoots, decode_response, encode, frame,
};
use omega_fleet::signed::SigningKey;
use omega_fleet::{Credential, Placement, Tee};
use omega_provenance::entry::{EntryIter, lifecycle};
use omega_provenance::{Action, Decision};
use qemu_tests::{
    measurements, qemu_present, run_with_simulated_psp, test_hooks_image, workspace_bin,
};
use sha2::{Digest, Sha256};

const FLOOR: u64 = 2;

/// The launcher, stopped when the test ends however it ends: asked first (SIGTERM: it
/// stops its QEMU), killed if it has not gone within 10 s (a SIGKILLed launcher would leave
/// its QEMU running).
struct Launcher(Child);

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The relay's side of the Fleet stream.
struct Relay {
    conn: TcpStream,
    next_id: u64,
}

impl Relay {
    fn send_raw(&mut self, body: &[u8]) -> Response {
        self.conn.write_all(&frame(body)).unwrap();
        let mut len = [0u8; 4];
        self.conn
            .read_exact(&mut len)
            .expect("an answer from the coordinator");
        let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
        self.conn.read_exact(&mut answer).unwrap();
        decode_response(&answer).expect("a well-formed answer")
    }

    fn call(&mut self, make: impl FnOnce(u64) -> Request) -> Response {
        self.next_id += 1;
        let id = self.next_id;
        let r = self.send_raw(&encode(&make(id)));
        assert_eq!(r.id(), id, "{r:?}");
        r
    }
}

fn refusal(r: &Response) -> (&str, &str) {
    match r {
        Response::Refused { rule, reason, .. } => (rule, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn bundle_files(files: &common::Files) -> Vec<BundleFile> {
    files
        .iter()
        .map(|(name, bytes)| BundleFile {
            name: name.clone(),
            bytes: bytes.clone(),
        })
        .collect()
}

fn write_bundle(dir: &Path, files: &common::Files) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// `files` with the manifest edited by `f`.
fn with_manifest(
    mut files: common::Files,
    f: impl FnOnce(&mut omega_bundle::Manifest),
) -> common::Files {
    let mut m = omega_bundle::Manifest::parse(&files[0].1).unwrap();
    f(&mut m);
    files[0].1 = m.to_json();
    files
}

fn hex_line<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in\n{out}"))
        .trim()
}

fn policy(version: u64, image_digest: &[u8], node_files: &common::Files) -> FleetPolicy {
    let manifest = omega_bundle::Manifest::parse(&node_files[0].1).unwrap();
    let agents = manifest
        .agents
        .iter()
        .map(|a| AgentPin {
            name: a.name.clone(),
            publisher: a.claimed_publisher().into(),
            module_hash: Sha256::digest(&node_files.iter().find(|f| f.0 == a.module).unwrap().1)
                .into(),
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut p = FleetPolicy {
        format: POLICY_FORMAT,
        fleet_id: "lab".into(),
        version,
        issued_at: now,
        allow_simulated: true,
        images: vec![ImageRule {
            tee: Tee::Simulated,
            measurement: image_digest.to_vec(),
            name: "omega-test-hooks".into(),
            shape: Shape {
                vcpus: 1,
                vcpu_type: "EPYC-v4".into(),
                memory_mib: 512,
            },
            roles: vec!["worker".into()],
        }],
        min_snp_tcb: SnpTcb::default(),
        allow_tdx_out_of_date: false,
        agents,
        routes: vec![],
        credential_lifetime_s: 600,
        challenge_lifetime_s: 600,
        nitro_root: Vec::new(),
    };
    p.canonicalize();
    p
}

#[test]
fn a_coordinator_in_an_image_admits_a_node_and_refuses_a_hostile_relay() {
    if !qemu_present() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let image = test_hooks_image().display().to_string();
    let digest = {
        let o = measurements([
            "digest",
            "--image",
            &image,
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-v4",
        ]);
        assert!(o.status.success());
        hex::decode(String::from_utf8_lossy(&o.stdout).trim()).unwrap()
    };
    let owner = SigningKey::from_seed([0x0e; 32]).unwrap();

    // 1. The coordinator's boot, its relay connected.
    let coord_files = with_manifest(common::agent_bundle("coordinator", &["clerk"]), |m| {
        m.coordinator = Some(omega_bundle::CoordinatorEntry {
            owner: hex::encode(owner.public()),
            min_policy_version: FLOOR,
        });
    });
    write_bundle(&d.path().join("coordinator"), &coord_files);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let log_dir = d.path().join("coordinator-log");
    let out = std::fs::File::create(d.path().join("coordinator.out")).unwrap();
    let coord_nonce = hex::encode(qemu_tests::random_nonce());
    let launcher = Launcher(
        Command::new(workspace_bin("omega-host", "omega"))
            .arg("run")
            .args([
                "--image",
                &image,
                "--simulated-psp",
                "--connect-timeout",
                "60",
            ])
            .arg("--bundle")
            .arg(d.path().join("coordinator"))
            .arg("--log-dir")
            .arg(&log_dir)
            .args(["--nonce", &coord_nonce, "--fleet-connect", &addr])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("starting omega run"),
    );
    let (conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(180)))
        .unwrap();
    let mut relay = Relay { conn, next_id: 0 };
    let coordinator_out =
        || std::fs::read_to_string(d.path().join("coordinator.out")).unwrap_or_default();

    // Its evidence first: the key it claims is the only one believed from here on.
    let evidence = log_dir.join("evidence/coordinator.bin");
    let until = Instant::now() + Duration::from_secs(180);
    while !evidence.exists() {
        assert!(
            Instant::now() < until,
            "no coordinator evidence\n{}",
            coordinator_out()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(300));
    let verified = qemu_tests::verify_lab_evidence(&evidence, "coordinator", &coord_nonce);
    let coord_key: [u8; 32] = hex::decode(hex_line(&verified, "coordinator_key:"))
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(hex_line(&verified, "owner:"), hex::encode(owner.public()));
    assert_eq!(
        hex_line(&verified, "min_policy_version:"),
        FLOOR.to_string()
    );

    // The node's bundle names that coordinator.
    let node_files = with_manifest(common::agent_bundle("node", &["quick"]), |m| {
        m.fleet = Some(omega_bundle::FleetEntry {
            id: "lab".into(),
            coordinator: hex::encode(coord_key),
            owner: None,
        });
    });
    write_bundle(&d.path().join("node"), &node_files);

    // A hostile relay: a policy below the floor, one signed by another key, garbage.
    let below = policy(FLOOR - 1, &digest, &node_files)
        .sign(&owner)
        .unwrap();
    let r = relay.call(|id| Request::Policy { id, signed: below });
    assert_eq!(refusal(&r).0, "policy", "{r:?}");
    let forged = policy(FLOOR, &digest, &node_files)
        .sign(&SigningKey::from_seed([0x66; 32]).unwrap())
        .unwrap();
    let r = relay.call(|id| Request::Policy { id, signed: forged });
    assert_eq!(refusal(&r).0, "policy", "{r:?}");
    let r = relay.send_raw(b"\x02garbage");
    assert_eq!(refusal(&r).0, "malformed", "{r:?}");
    // A placement before any policy: refused.
    let r = relay.call(|id| Request::Place {
        id,
        workload: "w1".into(),
        node: "n1".into(),
        role: "worker".into(),
        files: bundle_files(&node_files),
    });
    assert_eq!(refusal(&r).0, "placement", "{r:?}");

    // An Intel TDX guest, checked by the DCAP verification inside the image: the owner's
    // policy at the floor, issued at the recorded quote's collateral time (the coordinator
    // checks collateral at its own time, which the policy anchors) and allowing its MRTD. The
    // real quote verifies to Intel's root, passes the image rule, TCB and debug checks and is
    // refused only because recorded evidence cannot bind this coordinator's nonce.
    let tdx = &omega_test_support::tee::TDX[0];
    let mrtd = omega_tee_verify::tdx::verify(tdx.quote, tdx.collateral, tdx.as_of)
        .unwrap()
        .measurement;
    let mut at_tdx_time = policy(FLOOR, &digest, &node_files);
    at_tdx_time.issued_at = tdx.as_of;
    let mut td = at_tdx_time.images[0].clone();
    (td.tee, td.measurement, td.name) = (Tee::Tdx, mrtd, "td".into());
    at_tdx_time.images.push(td);
    at_tdx_time.canonicalize();
    let signed = at_tdx_time.sign(&owner).unwrap();
    let r = relay.call(|id| Request::Policy { id, signed });
    assert!(
        matches!(r, Response::PolicyApplied { version: FLOOR, .. }),
        "{r:?}"
    );
    let r = relay.call(|id| Request::Place {
        id,
        workload: "w-td".into(),
        node: "td".into(),
        role: "worker".into(),
        files: bundle_files(&node_files),
    });
    let Response::Placed {
        nonce: td_nonce, ..
    } = r
    else {
        panic!("{r:?}")
    };
    let r = relay.call(|id| Request::AdmitTdx {
        id,
        nonce: td_nonce,
        quote: tdx.quote.to_vec(),
        collateral: tdx.collateral.to_vec(),
        node_key: [0x7d; 32],
    });
    assert_eq!(refusal(&r).0, "binding", "{r:?}");

    // The owner's next policy, issued now (the coordinator's clock moves forward to it).
    let good = policy(FLOOR + 1, &digest, &node_files)
        .sign(&owner)
        .unwrap();
    let r = relay.call(|id| Request::Policy {
        id,
        signed: good.clone(),
    });
    assert!(
        matches!(r, Response::PolicyApplied { version, .. } if version == FLOOR + 1),
        "{r:?}"
    );
    // A module swapped under the node's manifest: refused; the real bundle: placed.
    let mut swapped = node_files.clone();
    swapped.last_mut().unwrap().1 =
        wat::parse_str(r#"(module (memory (export "memory") 9) (func (export "run")))"#).unwrap();
    let r = relay.call(|id| Request::Place {
        id,
        workload: "w1".into(),
        node: "n1".into(),
        role: "worker".into(),
        files: bundle_files(&swapped),
    });
    assert_eq!(refusal(&r).0, "placement", "{r:?}");
    let place = |relay: &mut Relay, node: &str| {
        let r = relay.call(|id| Request::Place {
            id,
            workload: format!("w-{node}"),
            node: node.into(),
            role: "worker".into(),
            files: bundle_files(&node_files),
        });
        let Response::Placed {
            nonce, placement, ..
        } = r
        else {
            panic!("{r:?}\n{}", coordinator_out())
        };
        let p = Placement::verify(&placement, &coord_key).expect("signed by the attested key");
        assert_eq!(p.nonce, nonce);
        assert_eq!(
            p.bundle_digest,
            <[u8; 32]>::from(Sha256::digest(&node_files[0].1))
        );
        nonce
    };
    let nonce = place(&mut relay, "n1");

    // 2. The node boots with the placement's nonce; its evidence goes to the coordinator.
    let boot_node = |name: &str, nonce: [u8; 32]| {
        let node_log = d.path().join(format!("{name}-log"));
        let o = run_with_simulated_psp(&d.path().join("node"), &node_log, &hex::encode(nonce));
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        node_log
    };
    let node_log = boot_node("n1", nonce);
    let evidence_of = |log: &Path, n: &str| std::fs::read(log.join("evidence").join(n)).unwrap();
    let admit = |id, nonce, chain, log: &Path| Request::Admit {
        id,
        nonce,
        chain,
        platform: evidence_of(log, "platform.bin"),
        bundle: evidence_of(log, "bundle.bin"),
        peer: evidence_of(log, "peer.bin"),
    };
    let started = Instant::now();
    let r = relay.call(|id| admit(id, nonce, Chain::Lab, &node_log));
    let in_image = started.elapsed();
    // The same admission, from the same bytes, by the same service on the host (a
    // coordinator that issued the same nonce): what the image's admission costs over it.
    let on_host = {
        let mut local = Service::new(
            SigningKey::from_seed([9; 32]).unwrap(),
            owner.public(),
            FLOOR,
            TrustedRoots {
                lab: Some((
                    omega_sim_psp::LAB_ARK_PEM,
                    omega_sim_psp::LAB_ASK_PEM,
                    omega_sim_psp::LAB_VCEK_DER,
                )),
                amd: &omega_snp_verify::amd::FAMILIES,
                amd_arks: &omega_snp_verify::amd::ARKS,
            },
        );
        let policy = encode(&Request::Policy {
            id: 1,
            signed: good,
        });
        assert!(local.handle(&policy, 0, [0; 32]).record.granted);
        let placed = encode(&Request::Place {
            id: 2,
            workload: "w-n1".into(),
            node: "n1".into(),
            role: "worker".into(),
            files: bundle_files(&node_files),
        });
        assert!(local.handle(&placed, 0, nonce).record.granted);
        let body = encode(&admit(3, nonce, Chain::Lab, &node_log));
        let started = Instant::now();
        assert!(local.handle(&body, 0, [0; 32]).record.granted);
        started.elapsed()
    };
    println!(
        "fleet_coordinator: admission (evidence verified, credential signed): {:.1} ms in the image under TCG (relay round trip), {:.1} ms by the same service on the host",
        in_image.as_secs_f64() * 1e3,
        on_host.as_secs_f64() * 1e3
    );
    let Response::Admitted {
        credential,
        image: rule,
        boot_id,
        ..
    } = &r
    else {
        panic!("{r:?}\n{}", coordinator_out())
    };
    assert_eq!(rule, "omega-test-hooks");
    assert!(boot_id.is_some());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let c = Credential::verify(credential, &coord_key, now)
        .expect("the credential verifies under the attested key");
    assert_eq!(
        (c.fleet_id.as_str(), c.node_id.as_str(), c.role.as_str()),
        ("lab", "n1", "worker")
    );
    assert_eq!(c.tee, Tee::Simulated);
    assert_eq!(c.launch_digest, digest);
    let node_keys = |principal: &str, label: &str| {
        let out = qemu_tests::verify_lab_evidence(
            &node_log.join("evidence").join(format!("{principal}.bin")),
            principal,
            &hex::encode(nonce),
        );
        hex_line(&out, label).to_string()
    };
    assert_eq!(
        hex::encode(c.node_key),
        node_keys("platform", "monitor_key:")
    );
    assert_eq!(
        c.peer_key.map(hex::encode),
        Some(node_keys("peer", "peer_key:"))
    );

    // Replayed; for a nonce never issued; under AMD's roots with a VCEK AMD did not sign.
    let r = relay.call(|id| admit(id, nonce, Chain::Lab, &node_log));
    assert_eq!(refusal(&r).0, "nonce-replayed", "{r:?}");
    let r = relay.call(|id| admit(id, [0x77; 32], Chain::Lab, &node_log));
    assert_eq!(refusal(&r).0, "nonce-unknown", "{r:?}");
    let second = place(&mut relay, "n2");
    let n2_log = boot_node("n2", second);
    let r = relay.call(|id| {
        admit(
            id,
            second,
            Chain::Amd {
                family: "milan".into(),
                vcek: omega_sim_psp::LAB_VCEK_DER.to_vec(),
            },
            &n2_log,
        )
    });
    let (rule, reason) = refusal(&r);
    assert_eq!(rule, "evidence");
    assert!(reason.contains("vcek.signed_by_ask"), "{reason}");

    // Closing the relay stops the coordinator; its log records every request in order.
    drop(relay);
    let until = Instant::now() + Duration::from_secs(120);
    while !coordinator_out().contains("omega: verify: measurements verify-log") {
        assert!(
            Instant::now() < until,
            "the coordinator did not stop\n{}",
            coordinator_out()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(launcher);
    let cmd = qemu_tests::printed_verifier_commands(&coordinator_out())
        .into_iter()
        .find(|c| c[0] == "verify-log")
        .unwrap();
    let o = measurements(&cmd);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let entries = std::fs::read(log_dir.join("provenance.log")).unwrap();
    let requests: Vec<(u32, Decision, String)> = EntryIter::new(&entries)
        .map(|e| e.unwrap().1)
        .filter(|e| e.action == Action::Lifecycle && e.rule == lifecycle::FLEET_REQUEST)
        .map(|e| {
            (
                e.target,
                e.decision,
                String::from_utf8_lossy(e.name.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    let expect = [
        (1, Decision::Deny, "policy".to_string()),
        (1, Decision::Deny, "policy".into()),
        (0, Decision::Deny, "malformed".into()),
        (2, Decision::Deny, "placement".into()),
        (1, Decision::Allow, format!("lab v{FLOOR}")),
        (2, Decision::Allow, "w-td on td".into()),
        (3, Decision::Deny, "binding".into()),
        (1, Decision::Allow, format!("lab v{}", FLOOR + 1)),
        (2, Decision::Deny, "placement".into()),
        (2, Decision::Allow, "w-n1 on n1".into()),
        (3, Decision::Allow, format!("n1/worker #{}", c.serial)),
        (3, Decision::Deny, "nonce-replayed".into()),
        (3, Decision::Deny, "nonce-unknown".into()),
        (2, Decision::Allow, "w-n2 on n2".into()),
        (3, Decision::Deny, "evidence".into()),
    ];
    assert_eq!(requests, expect);
}
