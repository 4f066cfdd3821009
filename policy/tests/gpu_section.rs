//! The GPU requirement of models (`model … { gpu { measurement … } }`), appended to the
//! binary form as version 2: round trips; version 1 bytes are unchanged for policies without
//! it; every inconsistency is refused; mutated blobs never panic; the evaluator denies
//! `gpu-evidence` unless the monitor says the proxy's GPU evidence verified.

use omega_policy::*;
use omega_test_support::random::{Rng, mutate, seed};

static SHA384: [u8; 48] = [0xab; 48];

fn policy(gpu: Vec<GpuRequirement<'static>>) -> Policy<'static> {
    let model = |name, hash| Target {
        name,
        hash,
        cleared: 0,
        result: 0,
    };
    Policy {
        name: "gpu",
        labels: vec!["phi", "secret", "untrusted"],
        agents: vec![Agent {
            name: "a",
            hash: [1; 32],
            cleared: 0,
        }],
        tools: vec![],
        models: vec![model("plain", [2; 32]), model("big", [3; 32])],
        sources: vec![],
        rules: vec![Rule {
            name: "ask",
            effect: Effect::Allow,
            action: RuleAction::Infer,
            target: None,
            agents: None,
            constraints: vec![],
            declassify: 0,
        }],
        limits: vec![],
        gpu,
    }
}

fn big() -> Vec<GpuRequirement<'static>> {
    vec![GpuRequirement {
        model: 1,
        reference: vec![
            GpuMeasurement {
                index: 1,
                allowed: vec![&SHA384, &[0xcd]],
            },
            GpuMeasurement {
                index: 64,
                allowed: vec![&SHA384],
            },
        ],
    }]
}

fn decide(p: &Policy<'_>, model: &str, proxy: [u8; 32], gpu_verified: bool) -> String {
    let req = Request {
        agent: "a",
        agent_hash: Some(&[1; 32]),
        action: Action::Infer {
            model,
            proxy: Some(&proxy),
            max_tokens: Value::Int(8),
            gpu_verified,
        },
    };
    let d = p.evaluate(
        &req,
        &State {
            labels: 0,
            counts: &[],
        },
    );
    format!("{:?}:{}", d.effect, p.rule_name(d.rule))
}

#[test]
fn version_1_stays_version_1_and_version_2_round_trips() {
    let v1 = encode(&policy(vec![])).unwrap();
    assert_eq!(&v1[4..6], &FORMAT_VERSION.to_le_bytes());
    let v2 = encode(&policy(big())).unwrap();
    assert_eq!(&v2[4..6], &FORMAT_VERSION_SECTIONS.to_le_bytes());
    // The version-1 body is the prefix: the section is appended.
    assert_eq!(&v2[6..v1.len()], &v1[6..]);
    let back = decode(&v2).unwrap();
    assert_eq!(back, policy(big()));
    assert_eq!(back.gpu_requirement(1).unwrap().reference.len(), 2);
    assert!(back.gpu_requirement(0).is_none());
    // Version 1 bytes with version 2 in the header, or with an empty section list, are not
    // canonical: one policy, one encoding.
    let mut relabelled = v1.clone();
    relabelled[4] = 2;
    assert_eq!(decode(&relabelled), Err(DecodeError::Body));
    relabelled.push(0); // an empty list of sections
    assert_eq!(
        decode(&relabelled),
        Err(DecodeError::Invalid("non-canonical encoding"))
    );
    // Trailing bytes after the sections.
    let mut long = v2.clone();
    long.push(0);
    assert_eq!(decode(&long), Err(DecodeError::TrailingBytes));
}

#[test]
fn inconsistent_gpu_requirements_are_refused() {
    let bad = |edit: &dyn Fn(&mut Vec<GpuRequirement<'static>>), why: &'static str| {
        let mut g = big();
        edit(&mut g);
        let p = policy(g);
        assert_eq!(p.validate(), Err(DecodeError::Invalid(why)), "{why}");
        assert_eq!(encode(&p), Err(DecodeError::Invalid(why)), "{why}");
    };
    bad(
        &|g| g[0].model = 2,
        "GPU requirement for a model out of range",
    );
    bad(
        &|g| g.push(g[0].clone()),
        "GPU requirements not by ascending model",
    );
    bad(
        &|g| g[0].reference.clear(),
        "GPU requirement without reference measurements",
    );
    bad(
        &|g| g[0].reference[0].index = 0,
        "GPU measurement indices not ascending in 1..=254",
    );
    bad(
        &|g| g[0].reference[1].index = 1,
        "GPU measurement indices not ascending in 1..=254",
    );
    bad(
        &|g| g[0].reference[1].index = 255,
        "GPU measurement indices not ascending in 1..=254",
    );
    bad(
        &|g| g[0].reference[0].allowed.clear(),
        "GPU measurement without allowed values",
    );
    bad(
        &|g| g[0].reference[0].allowed = vec![&SHA384; MAX_GPU_ALTERNATIVES + 1],
        "GPU measurement without allowed values",
    );
    bad(
        &|g| g[0].reference[0].allowed.push(&[]),
        "GPU measurement value of a bad length",
    );
    static LONG: [u8; MAX_GPU_VALUE + 1] = [0; MAX_GPU_VALUE + 1];
    bad(
        &|g| g[0].reference[0].allowed.push(&LONG),
        "GPU measurement value of a bad length",
    );
}

#[test]
fn the_evaluator_requires_verified_gpu_evidence_for_that_model_only() {
    let bytes = encode(&policy(big())).unwrap();
    let p = decode(&bytes).unwrap();
    assert_eq!(decide(&p, "big", [3; 32], true), "Allow:ask");
    assert_eq!(decide(&p, "big", [3; 32], false), "Deny:gpu-evidence");
    // The pin is checked first: another proxy is `target-pin`, verified GPU or not.
    assert_eq!(decide(&p, "big", [9; 32], true), "Deny:target-pin");
    assert_eq!(decide(&p, "big", [9; 32], false), "Deny:target-pin");
    // A model without the requirement does not care.
    assert_eq!(decide(&p, "plain", [2; 32], false), "Allow:ask");
    assert_eq!(decide(&p, "plain", [2; 32], true), "Allow:ask");
}

#[test]
fn mutated_version_2_blobs_never_panic() {
    let bytes = encode(&policy(big())).unwrap();
    let mut rng = Rng::new(seed(0x6770_0001));
    let mut decoded = 0;
    for _ in 0..50_000 {
        let mut blob = bytes.clone();
        mutate(&mut rng, &mut blob);
        let Ok(p) = decode(&blob) else { continue };
        decoded += 1;
        p.validate().unwrap();
        assert_eq!(encode(&p).unwrap(), blob, "only canonical encodings decode");
        for model in ["plain", "big"] {
            for verified in [false, true] {
                let _ = decide(&p, model, [3; 32], verified);
            }
        }
    }
    assert!(decoded > 0);
}
