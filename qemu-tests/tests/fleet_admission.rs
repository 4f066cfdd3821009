//! The fleet end to end (issue 17) with real processes: etcd (started here on free loopback
//! ports), the coordinator inside an Omega image (`omega-fleet coordinator --in-image`, its
//! key taken from its verified evidence), the untrusted scheduler and node agents of
//! `omega-fleet`, each node booting the test-hooks image with `omega run --simulated-psp`
//! and the coordinator's nonce. The first test boots the coordinator's image, then four
//! nodes:
//!
//! 1-2. nodes n1, n2 (1 vCPU): placed, booted, their evidence verified (lab root), admitted;
//!      each credential names the node's attested monitor key and its attested peer key
//!      (the key a peer channel accepts it for: `omega_fleet::peer::CredentialAuthority`).
//! 3.   node nbad (2 vCPUs: another launch digest): refused by the `measurement` rule.
//! 4.   n1 dies; the scheduler restarts its workload on n3, which is admitted. n1's stored
//!      log still verifies to its last checkpoint; the restart is a new boot; the
//!      coordinator recorded both boots of the workload, in order (etcd `boots/w1`, its log).
//!
//! Between them a hostile scheduler (this test, writing to etcd) replays an admission,
//! forges a placement, and answers a challenge with another node's evidence and with an
//! unattested monitor's: each is refused and logged. The simulated PSP is a lab chain with
//! no hardware behind it: this proves the admission path, not confidentiality.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use omega_fleet::peer::{AuthorityError, CredentialAuthority, PeerAuthority};
use omega_fleet::signed::SigningKey;
use omega_fleet::{Credential, Placement, Tee};
use omega_fleet_host::store::{Boot, Proposal, Store, Submission};
use omega_provenance::entry::{EntryIter, lifecycle};
use omega_provenance::{Action, Decision};
use omega_test_support::etcd::Etcd;
use qemu_tests::{
    measurements, printed_verifier_commands, qemu_present, test_hooks_image, workspace_bin,
};
use serde_json::Value;

const FLEET: &str = "lab";

/// Child processes killed when the test ends, however it ends.
#[derive(Default)]
struct Procs(Vec<(String, Child)>);

impl Procs {
    fn spawn(&mut self, name: &str, cmd: &mut Command) {
        let c = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.0.push((name.into(), c));
    }

    fn kill(&mut self, name: &str) {
        let i = self.0.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut c) = self.0.remove(i);
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The audit lines of `file` (JSON objects).
fn audit(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits for an audit line of `file` with `event` whose fields include `fields`.
#[track_caller]
fn wait_event(file: &Path, event: &str, fields: &[(&str, &str)], secs: u64) -> Value {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = audit(file).into_iter().find(|v| {
            v["event"] == event && fields.iter().all(|(k, want)| v[*k].as_str() == Some(*want))
        }) {
            return v;
        }
        assert!(
            Instant::now() < until,
            "no {event} {fields:?} in {} within {secs} s:\n{}",
            file.display(),
            std::fs::read_to_string(file).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn bundle(dir: &Path, name: &str, agents: &[&str]) -> PathBuf {
    let b = dir.join(name);
    std::fs::create_dir(&b).unwrap();
    for (file, bytes) in common::agent_bundle(name, agents) {
        std::fs::write(b.join(file), bytes).unwrap();
    }
    b
}

fn fleet_cmd(bin: &Path, args: &[&str]) -> String {
    let o = Command::new(bin).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "omega-fleet {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A lab fleet: the binaries, the owner's and the coordinator's keys, and (once started)
/// the coordinator and the scheduler on one etcd; nodes and workloads added by the test.
struct Lab {
    d: PathBuf,
    fleet: PathBuf,
    omega: PathBuf,
    image: String,
    /// The test-hooks image's launch digest for 1 vCPU (EPYC-v4).
    digest: String,
    owner_pub: String,
    coord_pub: String,
    coordinator_key: [u8; 32],
    /// Nodes' bundles name the owner: the owner endorses the coordinator's key (`omega-fleet
    /// endorse`) and node agents check credentials under the owner (`--owner`).
    owner_rooted: bool,
    endpoint: String,
    procs: Procs,
}

impl Lab {
    /// QEMU and etcd (started here, in a new directory) and a lab on them; `None` when one
    /// is missing outside CI (the test then skips, loudly).
    fn up() -> Option<(tempfile::TempDir, Etcd, Lab)> {
        if !qemu_present() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let etcd = Etcd::start(dir.path())?;
        let lab = Lab::new(dir.path(), &etcd);
        Some((dir, etcd, lab))
    }

    /// Keys and binaries; nothing runs yet.
    fn new(d: &Path, etcd: &Etcd) -> Lab {
        let fleet = workspace_bin("omega-fleet-host", "omega-fleet");
        let omega = workspace_bin("omega-host", "omega");
        let image = test_hooks_image().display().to_string();
        let digest_of = |vcpus: &str| {
            let o = measurements([
                "digest",
                "--image",
                &image,
                "--vcpus",
                vcpus,
                "--vcpu-type",
                "EPYC-v4",
            ]);
            assert!(o.status.success());
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        let digest = digest_of("1");
        assert_ne!(digest, digest_of("2"));
        let p = |n: &str| d.join(n).display().to_string();
        let owner_pub = fleet_cmd(&fleet, &["keygen", "--out", &p("owner.key")]);
        Lab {
            d: d.to_path_buf(),
            fleet,
            omega,
            image,
            digest,
            owner_pub,
            // Set from the coordinator's verified evidence once it runs.
            coord_pub: String::new(),
            coordinator_key: [0; 32],
            owner_rooted: false,
            endpoint: etcd.endpoint(),
            procs: Procs::default(),
        }
    }

    fn p(&self, n: &str) -> String {
        self.d.join(n).display().to_string()
    }

    fn etcd_args(&self) -> Vec<String> {
        ["--etcd", &self.endpoint, "--fleet", FLEET, "--poll", "0.2"]
            .map(String::from)
            .to_vec()
    }

    /// Signs the owner's policy ([`Lab::sign_policy`]) and starts the coordinator in an Omega
    /// image (`omega-fleet coordinator --in-image`: its bundle makes the test-hooks image the
    /// fleet's coordinator, the host process only relays) and the scheduler. The
    /// coordinator's key is taken from its evidence, verified here first (`verify-evidence
    /// --principal coordinator`), never from the host's word; nodes are started with it.
    fn start_in_image(&mut self, bundles: &[&Path], routes: Value) {
        self.sign_policy(bundles, routes);
        let bundle = self.d.join("coordinator-bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        for (name, mut bytes) in common::agent_bundle("coordinator", &["clerk"]) {
            if name == omega_bundle::MANIFEST {
                let mut m = omega_bundle::Manifest::parse(&bytes).unwrap();
                m.coordinator = Some(omega_bundle::CoordinatorEntry {
                    owner: self.owner_pub.clone(),
                    min_policy_version: 1,
                });
                bytes = m.to_json();
            }
            std::fs::write(bundle.join(name), bytes).unwrap();
        }
        let run = self.d.join("coordinator-run");
        let mut coordinator = Command::new(&self.fleet);
        coordinator
            .arg("coordinator")
            .args(self.etcd_args())
            .args(["--in-image", "--omega"])
            .arg(&self.omega)
            .args(["--image", &self.image, "--coordinator-bundle"])
            .arg(&bundle)
            .arg("--run-dir")
            .arg(&run)
            .args([
                "--owner",
                &self.owner_pub,
                "--policy",
                &self.p("policy.signed"),
            ])
            .args(["--lab-root", "--audit", &self.p("coordinator.audit")]);
        if self.owner_rooted {
            coordinator.args(["--endorsement", &self.p("endorsement.signed")]);
        }
        self.procs.spawn("coordinator", &mut coordinator);
        wait_event(&self.d.join("coordinator.audit"), "started", &[], 240);
        let nonce = std::fs::read_to_string(run.join("log/nonce.hex")).unwrap();
        let out = qemu_tests::verify_lab_evidence(
            &run.join("log/evidence/coordinator.bin"),
            "coordinator",
            nonce.trim(),
        );
        let key = out
            .lines()
            .find_map(|l| l.strip_prefix("coordinator_key: "))
            .expect("the coordinator's key in its evidence")
            .trim()
            .to_string();
        assert!(out.contains(&format!("owner: {}", self.owner_pub)), "{out}");
        // The host's read (coordinator.pub) agrees with the verified evidence.
        assert_eq!(
            std::fs::read_to_string(run.join("coordinator.pub"))
                .unwrap()
                .trim(),
            key
        );
        self.coordinator_key = hex::decode(&key).unwrap().try_into().unwrap();
        self.coord_pub = key;
        if self.owner_rooted {
            // The owner endorses the key it has just verified; the relay hands it over.
            let evidence = run.join("log/evidence/coordinator.bin");
            let endorsed = fleet_cmd(
                &self.fleet,
                &[
                    "endorse",
                    "--evidence",
                    &evidence.display().to_string(),
                    "--nonce",
                    nonce.trim(),
                    "--image",
                    &self.image,
                    "--lab-root",
                    "--owner-key",
                    &self.p("owner.key"),
                    "--fleet",
                    FLEET,
                    "--lifetime",
                    "3600",
                    "--out",
                    &self.p("endorsement.signed"),
                ],
            );
            assert!(endorsed.contains(&self.coord_pub), "{endorsed}");
            wait_event(&self.d.join("coordinator.audit"), "endorsed", &[], 120);
        }
        self.start_scheduler();
    }

    fn start_scheduler(&mut self) {
        let mut scheduler = Command::new(&self.fleet);
        scheduler
            .arg("scheduler")
            .args(self.etcd_args())
            .args(["--audit", &self.p("scheduler.audit")]);
        self.procs.spawn("scheduler", &mut scheduler);
    }

    /// Compiles and signs (with the CLI) the owner's policy: this image for 1 vCPU under the
    /// simulated PSP, the agents of `bundles` pinned, `routes`.
    fn sign_policy(&mut self, bundles: &[&Path], routes: Value) {
        let agents: Vec<Value> = bundles
            .iter()
            .flat_map(|b| omega_fleet_host::source::bundle_pins(b).unwrap().1)
            .map(|p| {
                serde_json::json!({ "name": p.name, "publisher": p.publisher,
                                    "module_hash": hex::encode(p.module_hash) })
            })
            .collect();
        let source = serde_json::json!({
            "fleet_id": FLEET, "version": 1, "allow_simulated": true,
            "images": [{ "name": "omega-test-hooks", "tee": "simulated", "measurement": self.digest,
                         "vcpus": 1, "vcpu_type": "EPYC-v4", "memory_mib": 128, "roles": ["worker"] }],
            "agents": agents,
            "routes": routes,
            "credential_lifetime_s": 600, "challenge_lifetime_s": 300,
        });
        std::fs::write(self.d.join("policy.json"), source.to_string()).unwrap();
        fleet_cmd(
            &self.fleet,
            &[
                "policy",
                "--source",
                &self.p("policy.json"),
                "--owner-key",
                &self.p("owner.key"),
                "--out",
                &self.p("policy.signed"),
            ],
        );
    }

    /// Starts node agent `id` booting the image with `vcpus`.
    fn node(&mut self, id: &str, vcpus: &str) {
        let mut cmd = Command::new(&self.fleet);
        cmd.arg("node")
            .args(self.etcd_args())
            .args(["--id", id])
            .args(if self.owner_rooted {
                ["--owner", &self.owner_pub]
            } else {
                ["--coordinator", &self.coord_pub]
            })
            .arg("--omega")
            .arg(&self.omega)
            .args(["--image", &self.image, "--vcpus", vcpus, "--ttl", "3"])
            .args(["--work", &self.p(&format!("work-{id}"))])
            .args(["--audit", &self.p(&format!("{id}.audit"))]);
        self.procs.spawn(id, &mut cmd);
    }

    /// Declares workload `w` (role `worker`), linked with workload `peer`.
    fn submit(&self, w: &str, b: &Path, peer: Option<&str>) {
        let mut args: Vec<String> = vec!["submit".into()];
        args.extend(self.etcd_args());
        let b = b.display().to_string();
        args.extend(["--workload", w, "--bundle", &b, "--role", "worker"].map(String::from));
        if let Some(peer) = peer {
            args.extend(["--peer".into(), peer.into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fleet_cmd(&self.fleet, &args);
    }
}

#[test]
fn coordinator_admits_attested_nodes_and_refuses_a_hostile_scheduler() {
    let Some((dir, mut etcd, mut lab)) = Lab::up() else {
        return;
    };
    let d = dir.path();
    let started = Instant::now();
    // The owner's policy: the test-hooks image for 1 vCPU under the simulated PSP, the
    // bundle's two agents pinned; compiled and signed by the CLI.
    let good = bundle(d, "fleet-good", &["alpha", "beta"]);
    let evil = bundle(d, "fleet-evil", &["mallory"]);
    lab.start_in_image(
        &[&good],
        serde_json::json!([{ "from": "worker/alpha", "to": "worker/beta" }]),
    );
    let (fleet, image, digest) = (lab.fleet.clone(), lab.image.clone(), lab.digest.clone());
    let (owner_pub, coordinator_key) = (lab.owner_pub.clone(), lab.coordinator_key);
    let endpoint = etcd.endpoint();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut store = Store::new(std::slice::from_ref(&endpoint), FLEET);
    let credential = |store: &mut Store, node: &str| {
        let bytes = rt
            .block_on(store.get("credentials", node))
            .unwrap()
            .unwrap();
        Credential::verify(&bytes, &coordinator_key, omega_fleet_host::now()).unwrap()
    };
    let coord_audit = d.join("coordinator.audit");

    // 1-2. Two nodes, two workloads: both admitted.
    lab.node("n1", "1");
    lab.node("n2", "1");
    lab.submit("w1", &good, None);
    lab.submit("w2", &good, None);
    let mut admitted = Vec::new();
    for w in ["w1", "w2"] {
        admitted.push(wait_event(
            &coord_audit,
            "admitted",
            &[("workload", w)],
            300,
        ));
    }
    for (a, w) in admitted.iter().zip(["w1", "w2"]) {
        let n = a["node"].as_str().unwrap().to_string();
        let c = credential(&mut store, &n);
        let sub: Submission =
            serde_json::from_slice(&rt.block_on(store.get("evidence", w)).unwrap().unwrap())
                .unwrap();
        let ev = omega_evidence::Bundle::decode(&hex::decode(&sub.evidence).unwrap()).unwrap();
        assert_eq!(
            c.node_key, ev.monitor_key,
            "{w}: the credential names the attested key"
        );
        assert_eq!(
            (c.role.as_str(), c.tee, c.fleet_id.as_str()),
            ("worker", Tee::Simulated, FLEET)
        );
        assert_eq!(hex::encode(&c.launch_digest), digest);
        // The channel key: the `peer` claim of the same evidence tree, never the monitor key.
        let peer = omega_evidence::Bundle::decode(&hex::decode(&sub.peer_evidence).unwrap())
            .expect("the node submitted its peer evidence");
        let o = omega_evidence::verify(
            &peer,
            &omega_evidence::Options {
                principal: "peer",
                nonce: Some(ev.report_nonce),
                allow_unattested: false,
                report: None,
            },
        );
        let Some(omega_evidence::Claim::PeerKey { public, .. }) = o.claim else {
            panic!("{w}: peer evidence claims {:?}", o.claim)
        };
        assert_eq!(
            c.peer_key,
            Some(public),
            "{w}: the credential's channel key"
        );
        let signed = rt.block_on(store.get("credentials", &n)).unwrap().unwrap();
        let auth = CredentialAuthority::new(coordinator_key, FLEET);
        let now = omega_fleet_host::now();
        assert_eq!(auth.check(&signed, &public, now).unwrap().as_str(), n);
        assert_eq!(
            auth.check(&signed, &ev.monitor_key, now),
            Err(AuthorityError::WrongKey)
        );
        wait_event(&d.join(format!("{n}.audit")), "admitted", &[], 30);
        eprintln!(
            "{w} on {n}: admitted, evidence verification {} µs, admission {} µs",
            a["verify_us"], a["admission_us"]
        );
    }
    // The admission figure (docs/fleet.md): the benchmark on n1's run, and that run kept
    // for a release-built benchmark when OMEGA_FLEET_KEEP_RUN names a directory.
    let n1_run = PathBuf::from(
        wait_event(&d.join("n1.audit"), "evidence-submitted", &[], 1)["log_dir"]
            .as_str()
            .unwrap(),
    );
    let bench = fleet_cmd(
        &fleet,
        &[
            "bench-admission",
            "--log-dir",
            &n1_run.display().to_string(),
            "--iterations",
            "20",
        ],
    );
    assert!(
        bench.starts_with("admission (evidence verification + credential)"),
        "{bench}"
    );
    eprintln!("{bench} (this test's debug build)");
    if let Some(keep) = std::env::var_os("OMEGA_FLEET_KEEP_RUN") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(keep.join("evidence")).unwrap();
        for f in ["nonce.hex", "evidence/platform.bin", "evidence/bundle.bin"] {
            std::fs::copy(n1_run.join(f), keep.join(f)).unwrap();
        }
    }

    // The policy's route between the two admitted nodes' agents, and its default deny.
    let (c1, c2) = (credential(&mut store, "n1"), credential(&mut store, "n2"));
    let policy = omega_fleet::FleetPolicy::decode(
        &omega_fleet::signed::open(
            &std::fs::read(d.join("policy.signed")).unwrap(),
            omega_fleet::policy::MAX_POLICY,
            omega_fleet::signed::POLICY_TAG,
            &hex::decode(&owner_pub).unwrap().try_into().unwrap(),
            "policy",
        )
        .unwrap(),
    )
    .unwrap();
    assert!(omega_fleet::authorize(&policy, &c1, "alpha", &c2, "beta").allowed);
    assert!(!omega_fleet::authorize(&policy, &c2, "beta", &c1, "alpha").allowed);

    // 3. A node of another shape (2 vCPUs: another launch digest) is refused.
    lab.node("nbad", "2");
    lab.submit("w3", &good, None);
    let r = wait_event(&coord_audit, "refused", &[("workload", "w3")], 300);
    assert_eq!(r["rule"], "measurement", "{r}");
    rt.block_on(store.delete("desired", "w3")).unwrap();
    assert!(
        rt.block_on(store.get("credentials", "nbad"))
            .unwrap()
            .is_none()
    );

    // Hostile scheduler (a): the admission of w1 replayed, as is and under another workload.
    let w1_sub = rt.block_on(store.get("evidence", "w1")).unwrap().unwrap();
    rt.block_on(store.put("evidence", "w1", w1_sub.clone()))
        .unwrap();
    let r = wait_event(&coord_audit, "refused", &[("workload", "w1")], 30);
    assert_eq!(r["rule"], "nonce-replayed", "{r}");
    rt.block_on(store.put("evidence", "w-replay", w1_sub.clone()))
        .unwrap();
    let r = wait_event(&coord_audit, "refused", &[("workload", "w-replay")], 30);
    assert_eq!(r["rule"], "nonce-replayed", "{r}");

    // (b) A forged placement: the coordinator will not sign a bundle with an unpinned agent,
    // so the scheduler signs one itself; the node refuses to boot it, and evidence for its
    // nonce is refused as a challenge the coordinator never issued.
    let prop = Proposal {
        node: "n2".into(),
        bundle: evil.display().to_string(),
        role: "worker".into(),
        epoch: 1,
        peer: None,
    };
    rt.block_on(store.put_json("proposals", "wf", &prop))
        .unwrap();
    let r = wait_event(&coord_audit, "placement-refused", &[("workload", "wf")], 30);
    assert!(r["reason"].as_str().unwrap().contains("mallory"), "{r}");
    let (evil_digest, _) = omega_fleet_host::source::bundle_pins(&evil).unwrap();
    let forged = Placement {
        format: omega_fleet::placement::PLACEMENT_FORMAT,
        fleet_id: FLEET.into(),
        workload: "wf".into(),
        node_id: "n2".into(),
        role: "worker".into(),
        bundle_digest: evil_digest,
        nonce: [0x66; 32],
        issued_at: omega_fleet_host::now(),
        expires_at: omega_fleet_host::now() + 300,
        policy_version: 1,
    }
    .sign(&SigningKey::from_seed([0x5c; 32]).unwrap())
    .unwrap();
    rt.block_on(store.put("placements", "wf", forged)).unwrap();
    let r = wait_event(
        &d.join("n2.audit"),
        "placement-refused",
        &[("workload", "wf")],
        30,
    );
    assert!(r["reason"].as_str().unwrap().contains("signature"), "{r}");
    let forged_sub = Submission {
        nonce: hex::encode([0x66; 32]),
        ..serde_json::from_slice(&w1_sub).unwrap()
    };
    rt.block_on(store.put_json("evidence", "wf", &forged_sub))
        .unwrap();
    let r = wait_event(&coord_audit, "refused", &[("workload", "wf")], 30);
    assert_eq!(r["rule"], "nonce-unknown", "{r}");
    rt.block_on(store.delete("proposals", "wf")).unwrap();

    // (c) A node swapped: the coordinator's challenge for a placement on "ghost" answered
    // with n1's real (attested, but not for this nonce) evidence, then with an unattested
    // monitor's evidence that does bind the nonce.
    let challenge = |store: &mut Store, w: &str| -> [u8; 32] {
        let prop = Proposal {
            node: "ghost".into(),
            bundle: good.display().to_string(),
            role: "worker".into(),
            epoch: 1,
            peer: None,
        };
        rt.block_on(store.put_json("proposals", w, &prop)).unwrap();
        wait_event(&coord_audit, "placement-signed", &[("workload", w)], 30);
        let signed = rt.block_on(store.get("placements", w)).unwrap().unwrap();
        Placement::verify(&signed, &coordinator_key).unwrap().nonce
    };
    let n = challenge(&mut store, "wg1");
    let swapped = Submission {
        nonce: hex::encode(n),
        ..serde_json::from_slice(&w1_sub).unwrap()
    };
    rt.block_on(store.put_json("evidence", "wg1", &swapped))
        .unwrap();
    let r = wait_event(&coord_audit, "refused", &[("workload", "wg1")], 30);
    assert_eq!(r["rule"], "evidence", "{r}");
    assert!(r["reason"].as_str().unwrap().contains("nonce"), "{r}");
    let n = challenge(&mut store, "wg2");
    let mut issuer = omega_evidence::Issuer::new([0x77; 32]).unwrap();
    issuer
        .add(
            omega_evidence::Claim::Platform {
                tee: "none".into(),
                boot_id: [1; 16],
            },
            [2; 32],
        )
        .unwrap();
    issuer.attest(n).unwrap();
    let unattested = issuer
        .bundle("platform", None, None)
        .unwrap()
        .encode()
        .unwrap();
    let sub = Submission {
        node: "ghost".into(),
        nonce: hex::encode(n),
        evidence: hex::encode(unattested),
        bundle_evidence: String::new(),
        peer_evidence: String::new(),
        tee: None,
        amd: None,
    };
    rt.block_on(store.put_json("evidence", "wg2", &sub))
        .unwrap();
    let r = wait_event(&coord_audit, "refused", &[("workload", "wg2")], 30);
    assert_eq!(r["rule"], "evidence", "{r}");
    assert!(r["reason"].as_str().unwrap().contains("UNATTESTED"), "{r}");
    for w in ["wg1", "wg2"] {
        rt.block_on(store.delete("proposals", w)).unwrap();
    }
    assert!(
        rt.block_on(store.get("credentials", "ghost"))
            .unwrap()
            .is_none()
    );

    // 4. n1 dies: after its lease lapses the scheduler restarts w1 on n3, admitted.
    lab.node("n3", "1");
    wait_event(&d.join("n3.audit"), "registered", &[], 30);
    lab.procs.kill("n1");
    let r = wait_event(
        &d.join("scheduler.audit"),
        "restarted",
        &[("workload", "w1")],
        60,
    );
    assert_eq!(
        (r["from"].as_str(), r["node"].as_str()),
        (Some("n1"), Some("n3")),
        "{r}"
    );
    let a = wait_event(
        &coord_audit,
        "admitted",
        &[("workload", "w1"), ("node", "n3")],
        300,
    );
    let c3 = credential(&mut store, "n3");
    assert_ne!(c3.node_key, c1.node_key, "a new boot, a new attested key");
    assert!(c3.serial > c1.serial.max(c2.serial));
    eprintln!("w1 restarted on n3: {a}");

    // Nothing lost from n1's log: its stored log verifies (`measurements verify-log`, key and
    // boot id from the attested `log` evidence) up to its last checkpoint, every entry the
    // checkpoint covers present and in order. The restart is another boot, and the
    // coordinator recorded w1's boots in order, in etcd and in its own log: a verifier
    // follows the workload from one boot's log to the next.
    let run_of = |node: &str| -> PathBuf {
        let e = wait_event(
            &d.join(format!("{node}.audit")),
            "evidence-submitted",
            &[("workload", "w1")],
            1,
        );
        PathBuf::from(e["log_dir"].as_str().unwrap())
    };
    let verify_run = |run: &Path| -> String {
        let nonce = std::fs::read_to_string(run.join("nonce.hex")).unwrap();
        let f = |n: &str| run.join(n).display().to_string();
        let o = measurements([
            "verify-log",
            "--evidence",
            &f("evidence/log.bin"),
            "--checkpoint",
            &f("checkpoint.note"),
            "--entries",
            &f("provenance.log"),
            "--nonce",
            nonce.trim(),
            "--image",
            &image,
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-v4",
            "--lab-root",
        ]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{}: {out}{}",
            run.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        let id = out.split("boot id ").nth(1).expect("boot id printed");
        id[..32].to_string()
    };
    let (b1, b3) = (verify_run(&run_of("n1")), verify_run(&run_of("n3")));
    assert_ne!(b1, b3, "the restart is a new boot");
    let boots: Vec<Boot> =
        serde_json::from_slice(&rt.block_on(store.get("boots", "w1")).unwrap().unwrap()).unwrap();
    let chain: Vec<(&str, u64, &str)> = boots
        .iter()
        .map(|b| (b.node.as_str(), b.epoch, b.boot_id.as_str()))
        .collect();
    assert_eq!(chain, [("n1", 1, b1.as_str()), ("n3", 2, b3.as_str())]);
    let logged: Vec<String> = audit(&coord_audit)
        .iter()
        .filter(|v| v["event"] == "admitted" && v["workload"] == "w1")
        .map(|v| v["boot_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(logged, [b1.clone(), b3.clone()]);
    eprintln!("w1's boots: n1 {b1} -> n3 {b3}, n1's log verified");

    // Every refusal is in the coordinator's log with its rule.
    let refused: Vec<String> = audit(&coord_audit)
        .iter()
        .filter(|v| v["event"] == "refused")
        .map(|v| {
            format!(
                "{}:{}",
                v["workload"].as_str().unwrap_or(""),
                v["rule"].as_str().unwrap_or("")
            )
        })
        .collect();
    for want in [
        "w3:measurement",
        "w1:nonce-replayed",
        "w-replay:nonce-replayed",
        "wf:nonce-unknown",
        "wg1:evidence",
        "wg2:evidence",
    ] {
        assert!(refused.iter().any(|r| r == want), "{want} in {refused:?}");
    }
    let boots: usize = ["n1", "n2", "nbad", "n3"]
        .iter()
        .map(|n| {
            audit(&d.join(format!("{n}.audit")))
                .iter()
                .filter(|v| v["event"] == "booting")
                .count()
        })
        .sum();
    assert_eq!(boots, 4, "four boots in all");
    etcd.kill();
    eprintln!("fleet test: {:.1} s", started.elapsed().as_secs_f64());
}

/// Waits for the launcher of workload `w`'s run on `node` to end (it prints the verifier
/// commands last) and returns its standard output.
fn run_output(d: &Path, node: &str, w: &str) -> String {
    let e = wait_event(
        &d.join(format!("{node}.audit")),
        "evidence-submitted",
        &[("workload", w)],
        300,
    );
    let stdout = PathBuf::from(e["log_dir"].as_str().unwrap()).with_extension("stdout");
    let until = Instant::now() + Duration::from_secs(240);
    loop {
        let out = std::fs::read_to_string(&stdout).unwrap_or_default();
        if out.contains("omega: verify: measurements verify-log") {
            return out;
        }
        assert!(
            Instant::now() < until,
            "{w} on {node}: the run did not end\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The lifecycle entries `rule` of the log the launcher's printed `verify-log` command
/// verifies (it must verify): (decision, name).
fn verified_lifecycle(out: &str, rule: u32) -> Vec<(Decision, String)> {
    let cmd = printed_verifier_commands(out)
        .into_iter()
        .find(|c| c[0] == "verify-log")
        .unwrap_or_else(|| panic!("no verify-log command\n{out}"));
    let o = measurements(&cmd);
    assert!(
        o.status.success(),
        "the log does not verify: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let entries = cmd
        .iter()
        .position(|a| a == "--entries")
        .map(|i| std::fs::read(&cmd[i + 1]).unwrap())
        .unwrap();
    EntryIter::new(&entries)
        .map(|e| e.unwrap().1)
        .filter(|e| e.action == Action::Lifecycle && e.rule == rule)
        .map(|e| {
            (
                e.decision,
                String::from_utf8_lossy(e.name.unwrap_or_default()).into_owned(),
            )
        })
        .collect()
}

/// The first fleet test, end to end, as an **owner-rooted** fleet with the
/// coordinator inside an Omega image: the nodes' bundles name the owner; the owner verifies
/// the coordinator's evidence and endorses its key (`omega-fleet endorse`), the relay hands
/// the endorsement to the image (`--endorsement`), and the node agents check credentials
/// under the owner (`--owner`). Two node agents boot the cross-image demo
/// (`courier` on node-a, `inbox` on node-b: agents/) as linked workloads. Each bundle's
/// manifest names the fleet and this coordinator's key; each node is admitted on its
/// evidence, and its agent hands the coordinator's credential to the launcher
/// (`--peer-credential`). The monitors check their credentials, open the channel under
/// them, and the courier's messages cross it under both images' policies: one delivered,
/// one refused by node-b's policy, one by node-a's own. Both logs verify and record the
/// credentials (`PEER_CREDENTIAL`) and the session (`PEER_SESSION`).
#[test]
fn admitted_nodes_open_the_channel_with_the_coordinators_credentials() {
    let Some((dir, mut etcd, mut lab)) = Lab::up() else {
        return;
    };
    let d = dir.path();
    let started = Instant::now();
    let courier = d.join("courier");
    let inbox = d.join("inbox");
    common::agents_bundle(&courier, common::POLICY_A, &["courier"]);
    common::agents_bundle(&inbox, common::POLICY_B, &["inbox"]);
    // An owner-rooted fleet: the nodes' bundles name the owner (made before the coordinator
    // exists); the coordinator runs in an image, the owner verifies its evidence and
    // endorses its key, and the node agents check credentials under the owner.
    for b in [&courier, &inbox] {
        let path = b.join(omega_bundle::MANIFEST);
        let mut m = omega_bundle::Manifest::parse(&std::fs::read(&path).unwrap()).unwrap();
        m.fleet = Some(omega_bundle::FleetEntry {
            id: FLEET.into(),
            coordinator: String::new(),
            owner: Some(lab.owner_pub.clone()),
        });
        std::fs::write(path, m.to_json()).unwrap();
    }
    lab.owner_rooted = true;
    lab.start_in_image(
        &[&courier, &inbox],
        serde_json::json!([{ "from": "worker/courier", "to": "worker/inbox" }]),
    );
    // Placed by arrival: node-a is the only node when w-a is declared.
    lab.node("node-a", "1");
    wait_event(&d.join("node-a.audit"), "registered", &[], 30);
    lab.submit("w-a", &courier, Some("w-b"));
    wait_event(
        &d.join("scheduler.audit"),
        "proposed",
        &[("workload", "w-a"), ("node", "node-a")],
        30,
    );
    lab.node("node-b", "1");
    wait_event(&d.join("node-b.audit"), "registered", &[], 30);
    lab.submit("w-b", &inbox, Some("w-a"));
    for w in ["w-a", "w-b"] {
        wait_event(
            &d.join("coordinator.audit"),
            "admitted",
            &[("workload", w)],
            300,
        );
    }
    let a = run_output(d, "node-a", "w-a");
    let b = run_output(d, "node-b", "w-b");
    for (node, out, peer) in [("node-a", &a, "node-b"), ("node-b", &b, "node-a")] {
        let credentials = verified_lifecycle(out, lifecycle::PEER_CREDENTIAL);
        assert!(
            matches!(&credentials[..], [(Decision::Allow, n)] if n.starts_with(&format!("{node}/worker #"))),
            "{node}: {credentials:?}\n{out}"
        );
        assert_eq!(
            verified_lifecycle(out, lifecycle::PEER_SESSION),
            [(Decision::Allow, peer.to_string())],
            "{node}\n{out}"
        );
    }
    for line in [
        "courier: node-b/vault: denied (node-b:no_vault)",
        "courier: node-b/archive: denied (no_archive)",
        "courier: node-b/inbox: delivered",
    ] {
        assert!(a.contains(line), "node-a: no `{line}`\n{a}");
    }
    assert!(
        b.contains("inbox: from node-a/courier: hello from another image"),
        "{b}"
    );
    etcd.kill();
    eprintln!(
        "fleet channel test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
