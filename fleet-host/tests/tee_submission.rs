//! Guests that are not Omega images (TDX, Nitro) through the coordinator stand-in on a real
//! etcd, no VMs: a placement is signed for the guest's node, its evidence is submitted with
//! `omega-fleet submit-tee` (`Submission::tee`), and the same admission as for Omega nodes
//! runs. Both go to the coordinator as submitted (`Request::AdmitTdx`, `Request::AdmitNitro`),
//! which verifies them at its own time (anchored by the policy's `issued_at`): a TDX quote to
//! Intel's root pinned in the DCAP verification, a Nitro document under the policy's root.
//!
//! Recorded evidence cannot bind this key and a fresh nonce, so what is shown is the path
//! up to that check: under a policy issued at its collateral's time a real TDX quote is
//! refused by `binding`; under one issued now, its collateral has expired (`evidence`).
//! Under a policy issued at the Nitro document's time with AWS's root in it, the real
//! document (a debug-mode enclave's) is refused by `debug`; under a policy without a Nitro
//! root, by `evidence`. No credential is issued for any of them. The Nitro cases need
//! `../shared/testdata/nitro` (a failure under CI, skipped otherwise).
//!
//! `omega-fleet policy --nitro-root PEM` puts the certificate (DER) into the signed policy.

use std::path::Path;
use std::time::Duration;

use omega_fleet::policy::{FleetPolicy, ImageRule, POLICY_FORMAT, Shape, SnpTcb};
use omega_fleet::signed::SigningKey;
use omega_fleet_host::backend::Local;
use omega_fleet_host::coordinator::{Config, Host, Mode, start_local};
use omega_fleet_host::source::bundle_pins;
use omega_fleet_host::store::{Proposal, Status, Store, Submission, TeeSubmission};
use omega_test_support::etcd::Etcd;
use omega_test_support::tee::{TDX, nitro};

const FLEET: &str = "lab";

/// An image rule for a guest of `tee` whose launch measurement is `measurement`.
fn image(tee: omega_fleet::Tee, measurement: Vec<u8>) -> ImageRule {
    ImageRule {
        tee,
        measurement,
        name: format!("{}-guest", tee.name()),
        shape: Shape {
            vcpus: 2,
            vcpu_type: tee.name().into(),
            memory_mib: 2048,
        },
        roles: vec!["worker".into()],
    }
}

struct Lab {
    dir: tempfile::TempDir,
    endpoints: Vec<String>,
    owner: SigningKey,
    bundle: String,
    images: Vec<ImageRule>,
}

impl Lab {
    /// A coordinator applying a policy that allows `images`, issued at `issued_at` (the
    /// coordinator's time, at which it checks evidence) with `nitro_root` (DER; empty: none).
    async fn coordinator(&self, issued_at: u64, nitro_root: Vec<u8>) -> Host<Local> {
        let (_, pins) = bundle_pins(Path::new(&self.bundle)).unwrap();
        let mut p = FleetPolicy {
            format: POLICY_FORMAT,
            fleet_id: FLEET.into(),
            version: 1,
            issued_at,
            allow_simulated: false,
            images: self.images.clone(),
            min_snp_tcb: SnpTcb::default(),
            allow_tdx_out_of_date: false,
            agents: pins,
            routes: vec![],
            credential_lifetime_s: 600,
            challenge_lifetime_s: 600,
            nitro_root,
        };
        p.canonicalize();
        let signed = self.dir.path().join("policy.signed");
        std::fs::write(&signed, p.sign(&self.owner).unwrap()).unwrap();
        start_local(&Config {
            etcd: self.endpoints.clone(),
            fleet: FLEET.into(),
            owner: self.owner.public(),
            policy: signed,
            lab_root: true,
            endorsement: None,
            audit: None,
            poll: Duration::from_millis(50),
            mode: Mode::Local {
                key_seed: [9; 32],
                // Each coordinator of this test is a new one (a restart would refuse the
                // same policy version again).
                state: tempfile::NamedTempFile::new_in(self.dir.path())
                    .unwrap()
                    .into_temp_path()
                    .keep()
                    .unwrap(),
                min_policy_version: 0,
            },
        })
        .await
        .unwrap()
    }
}

/// Places workload `w` on `node`, submits the guest's evidence for the placement's nonce
/// with `omega-fleet submit-tee` (`tee`: its kind, evidence and collateral, written to
/// files) and returns the coordinator's verdict (`status/<w>`). The keys are removed again
/// afterwards.
async fn submit(
    c: &mut Host<Local>,
    store: &mut Store,
    lab: &Lab,
    w: &str,
    node: &str,
    tee: &TeeSubmission,
) -> Status {
    let p = Proposal {
        node: node.into(),
        bundle: lab.bundle.clone(),
        role: "worker".into(),
        epoch: 1,
        peer: None,
    };
    store.put_json("proposals", w, &p).await.unwrap();
    c.tick().await.unwrap();
    let file = |name: &str, hex_bytes: &str| {
        let f = lab.dir.path().join(format!("{w}.{name}"));
        std::fs::write(&f, hex::decode(hex_bytes).unwrap()).unwrap();
        f.display().to_string()
    };
    let mut args = vec![
        "submit-tee".to_string(),
        "--etcd".into(),
        lab.endpoints[0].clone(),
        "--fleet".into(),
        FLEET.into(),
        "--workload".into(),
        w.into(),
        "--node".into(),
        node.into(),
        "--coordinator".into(),
        hex::encode(c.public()),
        "--node-key".into(),
        tee.node_key.clone(),
    ];
    match tee.kind.as_str() {
        "tdx" => args.extend([
            "--tdx".into(),
            file("quote", &tee.evidence),
            "--collateral".into(),
            file("collateral", &tee.collateral),
        ]),
        _ => args.extend(["--nitro".into(), file("document", &tee.evidence)]),
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_omega-fleet"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sub: Submission =
        serde_json::from_slice(&store.get("evidence", w).await.unwrap().unwrap()).unwrap();
    assert_eq!(sub.tee.as_ref(), Some(tee), "what submit-tee wrote");
    c.tick().await.unwrap();
    let status: Status =
        serde_json::from_slice(&store.get("status", w).await.unwrap().unwrap()).unwrap();
    assert!(
        store.get("credentials", node).await.unwrap().is_none(),
        "{w}: no credential"
    );
    for kind in ["proposals", "evidence", "placements", "status"] {
        store.delete(kind, w).await.unwrap();
    }
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn tdx_and_nitro_guests_reach_the_admission_check() {
    let dir = tempfile::tempdir().unwrap();
    let Some(etcd) = Etcd::start(dir.path()) else {
        return;
    };
    let b = dir.path().join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join(omega_bundle::MANIFEST),
        omega_bundle::Manifest::json("policy.bin", [("alpha", "alpha.wasm")]),
    )
    .unwrap();
    std::fs::write(b.join("policy.bin"), b"policy").unwrap();
    std::fs::write(b.join("alpha.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let tdx = &TDX[0];
    let mrtd = omega_tee_verify::tdx::verify(tdx.quote, tdx.collateral, tdx.as_of)
        .unwrap()
        .measurement;
    let nitro = nitro("the Nitro cases are skipped");
    let nitro_root = nitro
        .as_ref()
        .map(|n| measurements::tee::nitro_root_der(&n.root_pem).unwrap());
    let mut images = vec![image(omega_fleet::Tee::Tdx, mrtd)];
    if let (Some(n), Some(root)) = (&nitro, &nitro_root) {
        let v = omega_tee_verify::nitro::verify(&n.document, root, n.as_of).unwrap();
        images.push(image(omega_fleet::Tee::Nitro, v.measurement));
    }
    let lab = Lab {
        endpoints: vec![etcd.endpoint()],
        owner: SigningKey::from_seed([7; 32]).unwrap(),
        bundle: b.display().to_string(),
        images,
        dir,
    };
    let mut store = Store::new(&lab.endpoints, FLEET);
    let key = hex::encode([0x42; 32]);
    let tdx_sub = TeeSubmission {
        kind: "tdx".into(),
        evidence: hex::encode(tdx.quote),
        collateral: hex::encode(tdx.collateral),
        node_key: key.clone(),
    };

    // A policy issued at the quote's own time (the coordinator checks the collateral at its
    // time): verified by the coordinator, allowed by the policy's MRTD, refused because it
    // does not bind this key and nonce.
    let mut c = lab.coordinator(tdx.as_of, Vec::new()).await;
    let s = submit(&mut c, &mut store, &lab, "w-td", "td-1", &tdx_sub).await;
    assert_eq!(
        (s.state.as_str(), s.rule.as_str()),
        ("refused", "binding"),
        "{s:?}"
    );
    // Issued now: the collateral has expired.
    let mut c = lab.coordinator(omega_fleet_host::now(), Vec::new()).await;
    let s = submit(&mut c, &mut store, &lab, "w-td-now", "td-2", &tdx_sub).await;
    assert_eq!(
        (s.state.as_str(), s.rule.as_str()),
        ("refused", "evidence"),
        "{s:?}"
    );
    assert!(s.detail.contains("tdx evidence refused"), "{s:?}");

    let Some(n) = nitro else {
        return;
    };
    let nitro_sub = TeeSubmission {
        kind: "nitro".into(),
        evidence: hex::encode(&n.document),
        collateral: String::new(),
        node_key: key,
    };
    // The coordinator's time is the policy's `issued_at` (plus the seconds since): the
    // document's own time, when its certificates were valid. The recorded document is a
    // debug-mode enclave's (PCR0 all zeros): verified under the policy's root, allowed by
    // its PCR0, refused because its host can read it, before the binding is looked at.
    let root = nitro_root.unwrap();
    let mut c = lab.coordinator(n.as_of, root).await;
    let s = submit(&mut c, &mut store, &lab, "w-nitro", "nitro-1", &nitro_sub).await;
    assert_eq!(
        (s.state.as_str(), s.rule.as_str()),
        ("refused", "debug"),
        "{s:?}"
    );
    // A policy without a Nitro root: refused by the coordinator, whatever the document.
    let mut c = lab.coordinator(n.as_of, Vec::new()).await;
    let s = submit(&mut c, &mut store, &lab, "w-nitro-2", "nitro-2", &nitro_sub).await;
    assert_eq!(
        (s.state.as_str(), s.rule.as_str()),
        ("refused", "evidence"),
        "{s:?}"
    );
    assert!(s.detail.contains("no Nitro root"), "{s:?}");
}

/// `omega-fleet policy --nitro-root PEM`: the certificate's DER in the signed policy (any
/// certificate shows the conversion; AWS's root when `../shared/testdata/nitro` is here, an
/// AMD ARK otherwise); without the flag the policy has no Nitro root; a file that is not a
/// PEM certificate is refused, and so is a `nitro_root` field in the JSON source (the flag is
/// the one way).
#[test]
fn the_policy_command_signs_the_nitro_root_into_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let owner_seed = [7u8; 32];
    std::fs::write(
        d.join("owner.key"),
        format!("{}\n", hex::encode(owner_seed)),
    )
    .unwrap();
    let owner = SigningKey::from_seed(owner_seed).unwrap().public();
    let mut source = serde_json::json!({
        "fleet_id": FLEET, "version": 1,
        "images": [{ "name": "enclave", "tee": "nitro", "measurement": "00".repeat(48),
                     "vcpus": 2, "vcpu_type": "nitro", "memory_mib": 2048, "roles": ["worker"] }],
        "credential_lifetime_s": 600, "challenge_lifetime_s": 60,
    });
    std::fs::write(d.join("policy.json"), source.to_string()).unwrap();
    let pem = match nitro("AWS's root in the policy command (an AMD ARK stands in)") {
        Some(n) => n.root_pem,
        None => measurements::Family::Milan.ark_pem().to_vec(),
    };
    std::fs::write(d.join("root.pem"), &pem).unwrap();
    std::fs::write(d.join("bogus.pem"), b"not a certificate").unwrap();
    let policy = |out: &str, extra: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_omega-fleet"))
            .current_dir(d)
            .args([
                "policy",
                "--source",
                "policy.json",
                "--owner-key",
                "owner.key",
                "--out",
                out,
            ])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        o.status
            .success()
            .then(|| {
                let signed = std::fs::read(d.join(out)).unwrap();
                let mut store = omega_fleet::policy::PolicyStore::new(owner, 0);
                store.apply(&signed).unwrap().clone()
            })
            .ok_or(err)
    };
    let with = policy("with.signed", &["--nitro-root", "root.pem"]).unwrap();
    assert_eq!(
        with.nitro_root,
        measurements::tee::nitro_root_der(&pem).unwrap()
    );
    assert!(!with.nitro_root.is_empty());
    let without = policy("without.signed", &[]).unwrap();
    assert!(without.nitro_root.is_empty());
    let e = policy("bogus.signed", &["--nitro-root", "bogus.pem"]).unwrap_err();
    assert!(e.contains("not a PEM certificate"), "{e}");
    source["nitro_root"] = serde_json::json!("root.pem");
    std::fs::write(d.join("policy.json"), source.to_string()).unwrap();
    let e = policy("field.signed", &[]).unwrap_err();
    assert!(e.contains("unknown field"), "{e}");
}
