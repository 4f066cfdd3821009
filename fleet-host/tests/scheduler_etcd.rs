//! The scheduler and the coordinator stand-in on a real etcd (started by the test on free
//! loopback ports), without VMs: the nodes here only hold leases, as node agents do, and no
//! evidence is involved (admission with real boots is qemu-tests/tests/fleet_admission.rs).
//! Checked: every desired workload is placed on its own live node and the coordinator signs
//! each placement; a node that dies is replaced and its workload re-placed with a fresh
//! challenge; etcd killed and restarted under load, and everything converges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use omega_fleet::Placement;
use omega_fleet::policy::{AgentPin, FleetPolicy, ImageRule, POLICY_FORMAT, Shape, SnpTcb};
use omega_fleet::signed::SigningKey;
use omega_fleet_host::audit::Audit;
use omega_fleet_host::backend::Local;
use omega_fleet_host::coordinator::{Config, Host, Mode, start_local};
use omega_fleet_host::node::hold_lease;
use omega_fleet_host::scheduler::Scheduler;
use omega_fleet_host::source::bundle_pins;
use omega_fleet_host::store::{Desired, Proposal, Store};
use omega_test_support::etcd::Etcd;

const FLEET: &str = "lab";

/// A bundle directory with one agent module (its bytes distinct per `tag`).
fn bundle(dir: &Path, tag: &str) -> String {
    let b = dir.join(format!("bundle-{tag}"));
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join(omega_bundle::MANIFEST),
        omega_bundle::Manifest::json("policy.bin", [("alpha", "alpha.wasm")]),
    )
    .unwrap();
    std::fs::write(b.join("policy.bin"), b"policy").unwrap();
    std::fs::write(b.join("alpha.wasm"), b"\0asm\x01\0\0\0").unwrap();
    b.display().to_string()
}

fn policy(pins: Vec<AgentPin>) -> FleetPolicy {
    let mut p = FleetPolicy {
        format: POLICY_FORMAT,
        fleet_id: FLEET.into(),
        version: 1,
        issued_at: 1_700_000_000,
        allow_simulated: true,
        images: vec![ImageRule {
            tee: omega_fleet::Tee::Simulated,
            measurement: vec![0; 48],
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
    };
    p.canonicalize();
    p
}

struct Fleet {
    store: Store,
    scheduler: Scheduler,
    coordinator: Host<Local>,
}

impl Fleet {
    async fn tick(&mut self) {
        // Errors (etcd down past the retry window) are the test's failure to see.
        self.scheduler.tick().await.unwrap();
        self.coordinator.tick().await.unwrap();
    }

    /// Proposals and the placements that verify under the coordinator's key.
    async fn state(&mut self) -> (BTreeMap<String, Proposal>, BTreeMap<String, Placement>) {
        let props = self
            .store
            .list_json::<Proposal>("proposals")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect();
        let key = self.coordinator.public();
        let placements = self
            .store
            .list("placements")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, v, _)| (k, Placement::verify(&v, &key).expect("signed placement")))
            .collect();
        (props, placements)
    }
}

/// Every desired workload placed on a distinct live node, each with a coordinator-signed
/// placement naming that node.
fn converged(
    desired: &BTreeSet<String>,
    live: &BTreeSet<String>,
    props: &BTreeMap<String, Proposal>,
    placements: &BTreeMap<String, Placement>,
) -> bool {
    let nodes: BTreeSet<&String> = desired
        .iter()
        .filter_map(|w| props.get(w).map(|p| &p.node))
        .collect();
    nodes.len() == desired.len()
        && desired.iter().all(|w| {
            props.get(w).is_some_and(|p| {
                live.contains(&p.node)
                    && placements
                        .get(w)
                        .is_some_and(|pl| pl.node_id == p.node && pl.workload == *w)
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_places_restarts_and_survives_an_etcd_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut etcd) = Etcd::start(dir.path()) else {
        return;
    };
    let endpoints = vec![etcd.endpoint()];
    let b = bundle(dir.path(), "a");
    let (_, pins) = bundle_pins(Path::new(&b)).unwrap();
    let owner = SigningKey::from_seed([7; 32]).unwrap();
    let signed = dir.path().join("policy.signed");
    std::fs::write(&signed, policy(pins).sign(&owner).unwrap()).unwrap();
    let cfg = Config {
        etcd: endpoints.clone(),
        fleet: FLEET.into(),
        owner: owner.public(),
        policy: signed,
        lab_root: true,
        endorsement: None,
        audit: Some(dir.path().join("coordinator.audit")),
        poll: Duration::from_millis(50),
        mode: Mode::Local {
            key_seed: [9; 32],
            state: dir.path().join("coordinator.state"),
            min_policy_version: 0,
        },
    };
    let store = Store::new(&endpoints, FLEET);
    let mut fleet = Fleet {
        store: store.clone(),
        scheduler: Scheduler::new(store.clone(), Audit::new("scheduler", None).unwrap()),
        coordinator: start_local(&cfg).await.unwrap(),
    };

    // 12 nodes holding 2-second leases; 10 workloads.
    let mut leases = BTreeMap::new();
    for i in 0..12 {
        let id = format!("n{i:02}");
        let h = hold_lease(store.clone(), id.clone(), 2, Audit::new(&id, None).unwrap())
            .await
            .unwrap();
        leases.insert(id, h);
    }
    let mut desired = BTreeSet::new();
    let mut s = store.clone();
    for i in 0..10 {
        let w = format!("w{i:02}");
        let d = Desired {
            bundle: b.clone(),
            role: "worker".into(),
            peer: None,
        };
        s.put_json("desired", &w, &d).await.unwrap();
        desired.insert(w);
    }
    let live = |l: &BTreeMap<String, tokio::task::JoinHandle<()>>| -> BTreeSet<String> {
        l.keys().cloned().collect()
    };
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        fleet.tick().await;
        let (props, placements) = fleet.state().await;
        if converged(&desired, &live(&leases), &props, &placements) {
            break;
        }
        assert!(Instant::now() < until, "no convergence: {props:?}");
    }
    let (before, placed) = fleet.state().await;
    assert!(before.values().all(|p| p.epoch == 1));

    // A node dies (its agent stops renewing): after the TTL its workload moves, with a new
    // epoch and a fresh challenge signed for the new node.
    let victim_w = "w03".to_string();
    let victim = before[&victim_w].node.clone();
    leases.remove(&victim).unwrap().abort();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        fleet.tick().await;
        let (props, placements) = fleet.state().await;
        if props[&victim_w].node != victim
            && converged(&desired, &live(&leases), &props, &placements)
        {
            assert_eq!(props[&victim_w].epoch, 2);
            assert_ne!(placements[&victim_w].nonce, placed[&victim_w].nonce);
            break;
        }
        assert!(Instant::now() < until, "dead node's workload not re-placed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Under load: 20 more workloads (10 more nodes) arrive while etcd is killed and
    // restarted; the scheduler and coordinator retry through the outage and converge.
    for i in 12..22 {
        let id = format!("n{i:02}");
        let h = hold_lease(
            store.clone(),
            id.clone(),
            10,
            Audit::new(&id, None).unwrap(),
        )
        .await
        .unwrap();
        leases.insert(id, h);
    }
    let outage = Instant::now();
    let mut restarted = false;
    for i in 10..20 {
        let w = format!("w{i:02}");
        let d = Desired {
            bundle: b.clone(),
            role: "worker".into(),
            peer: None,
        };
        s.put_json("desired", &w, &d).await.unwrap();
        desired.insert(w);
        fleet.tick().await;
        if i == 13 {
            etcd.kill();
            // A tick while etcd is down blocks in retries until it is back.
            let restart = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                etcd.restart();
                etcd
            });
            fleet.tick().await;
            etcd = restart.join().unwrap();
            restarted = true;
        }
    }
    assert!(restarted);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        fleet.tick().await;
        let (props, placements) = fleet.state().await;
        if converged(&desired, &live(&leases), &props, &placements) {
            // Every placement answers its own challenge.
            let nonces: BTreeSet<[u8; 32]> = placements.values().map(|p| p.nonce).collect();
            assert_eq!(nonces.len(), placements.len());
            break;
        }
        assert!(
            Instant::now() < until,
            "no convergence after the etcd restart: {props:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "converged {} workloads through an etcd restart in {:.1} s",
        desired.len(),
        outage.elapsed().as_secs_f64()
    );
}
