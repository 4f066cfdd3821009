//! The admission check on real recorded TDX evidence (dcap-qvl's samples), mapped by
//! `attest::from_verified`, and the policy's JSON source form.

use omega_fleet::signed::SigningKey;
use omega_fleet::{Coordinator, Tee};
use omega_fleet_host::attest::from_verified;
use omega_fleet_host::source::PolicySource;
use omega_test_support::tee::TDX;
use serde_json::json;

fn source(measurement: &str) -> serde_json::Value {
    json!({
        "fleet_id": "lab", "version": 1,
        "images": [{ "name": "td", "tee": "tdx", "measurement": measurement,
                     "vcpus": 2, "vcpu_type": "tdx", "memory_mib": 2048, "roles": ["worker"] }],
        "agents": [{ "name": "alpha", "publisher": "acme", "module_hash": format!("sha256:{}", "ab".repeat(32)) }],
        "routes": [{ "from": "worker/alpha", "to": "worker/*" }],
        "credential_lifetime_s": 600, "challenge_lifetime_s": 60,
    })
}

fn coordinator(src: serde_json::Value) -> Coordinator {
    let owner = SigningKey::from_seed([1; 32]).unwrap();
    let policy: PolicySource = serde_json::from_value(src).unwrap();
    let mut c = Coordinator::new(SigningKey::from_seed([2; 32]).unwrap(), owner.public(), 0);
    c.update_policy(&policy.compile().unwrap().sign(&owner).unwrap())
        .unwrap();
    c
}

#[test]
fn real_tdx_evidence_meets_the_admission_rules() {
    for v in &TDX {
        let verified = omega_tee_verify::tdx::verify(v.quote, v.collateral, v.as_of);
        let Ok(verified) = verified else {
            // The out-of-date sample is refused by the verifier itself (TdxTcbNotListed).
            assert_eq!(v.name, "tdx_quote_outdated");
            continue;
        };
        let a = from_verified(&verified, [7; 32]);
        assert_eq!((a.tee, a.debug), (Tee::Tdx, false));
        let now = v.as_of;
        // Its MRTD allowed: what refuses it is the binding (a recorded quote cannot commit
        // to our key and fresh nonce).
        let mut c = coordinator(source(&hex::encode(&a.measurement)));
        c.place("w", "td-1", "worker", [0; 32], &[], [9; 32], now)
            .unwrap();
        assert_eq!(c.admit(&[9; 32], &a, now).unwrap_err().rule(), "binding");
        // Another MRTD pinned: refused by the measurement rule.
        let mut c = coordinator(source(&"00".repeat(48)));
        c.place("w", "td-1", "worker", [0; 32], &[], [9; 32], now)
            .unwrap();
        assert_eq!(
            c.admit(&[9; 32], &a, now).unwrap_err().rule(),
            "measurement"
        );
    }
}

#[test]
fn the_source_form_refuses_typos_and_bad_values() {
    let ok = source(&"00".repeat(48));
    let p: PolicySource = serde_json::from_value(ok.clone()).unwrap();
    let compiled = p.compile().unwrap();
    assert_eq!(compiled.routes[0].to.agent, "*");
    let mut typo = ok.clone();
    typo["alow_simulated"] = json!(true);
    assert!(serde_json::from_value::<PolicySource>(typo).is_err());
    for (field, value) in [
        ("tee", json!("sgx")),
        ("measurement", json!("00")),
        ("roles", json!([])),
    ] {
        let mut bad = ok.clone();
        bad["images"][0][field] = value;
        let p: PolicySource = serde_json::from_value(bad).unwrap();
        assert!(p.compile().is_err(), "{field}");
    }
    let mut bad = ok.clone();
    bad["routes"][0]["from"] = json!("worker");
    assert!(
        serde_json::from_value::<PolicySource>(bad)
            .unwrap()
            .compile()
            .is_err()
    );
    let mut sim = ok;
    sim["images"][0]["tee"] = json!("simulated");
    let p: PolicySource = serde_json::from_value(sim.clone()).unwrap();
    assert!(p.compile().is_err(), "simulated without allow_simulated");
    sim["allow_simulated"] = json!(true);
    let p: PolicySource = serde_json::from_value(sim).unwrap();
    p.compile().unwrap();
}
