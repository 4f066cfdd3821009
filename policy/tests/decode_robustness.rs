//! Throws random and mutated blobs at the decoder on stable Rust (CI runs this; the
//! cargo-fuzz target under policy/fuzz/ does the same with coverage guidance). Decoding must
//! never panic; whatever decodes must validate, evaluate without panicking, and round-trip.

use omega_policy::*;
use omega_test_support::random::{Rng, mutate, seed};

fn sample() -> Policy<'static> {
    Policy {
        name: "sample",
        labels: vec!["phi", "secret", "untrusted", "pii"],
        agents: vec![
            Agent {
                name: "a",
                hash: [1; 32],
                cleared: 0b1001,
            },
            Agent {
                name: "b",
                hash: [2; 32],
                cleared: 0,
            },
        ],
        tools: vec![Target {
            name: "srv.t",
            hash: [3; 32],
            cleared: 0b1,
            result: 0b100,
        }],
        models: vec![Target {
            name: "m",
            hash: [4; 32],
            cleared: 0b1111,
            result: 0,
        }],
        sources: vec![Source {
            name: "s",
            labels: 0b1,
        }],
        rules: vec![
            Rule {
                name: "d",
                effect: Effect::Deny,
                action: RuleAction::Call,
                target: Some(0),
                agents: None,
                constraints: vec![Constraint {
                    subject: Subject::Arg("x.y"),
                    op: Op::Eq,
                    value: Lit::Str("bad"),
                }],
                declassify: 0,
            },
            Rule {
                name: "c",
                effect: Effect::Allow,
                action: RuleAction::Call,
                target: Some(0),
                agents: Some(0b11),
                constraints: vec![
                    Constraint {
                        subject: Subject::Arg("n"),
                        op: Op::Le,
                        value: Lit::Int(50),
                    },
                    Constraint {
                        subject: Subject::Arg("k"),
                        op: Op::In,
                        value: Lit::Strs(vec!["p", "q"]),
                    },
                    Constraint {
                        subject: Subject::Arg("i"),
                        op: Op::In,
                        value: Lit::Ints(vec![1, 2]),
                    },
                    Constraint {
                        subject: Subject::Arg("b"),
                        op: Op::Ne,
                        value: Lit::Bool(true),
                    },
                ],
                declassify: 0b1000,
            },
            Rule {
                name: "i",
                effect: Effect::Confirm,
                action: RuleAction::Infer,
                target: None,
                agents: None,
                constraints: vec![Constraint {
                    subject: Subject::MaxTokens,
                    op: Op::Lt,
                    value: Lit::Int(100),
                }],
                declassify: 0,
            },
            Rule {
                name: "r",
                effect: Effect::Allow,
                action: RuleAction::Read,
                target: Some(0),
                agents: None,
                constraints: vec![Constraint {
                    subject: Subject::Path,
                    op: Op::Prefix,
                    value: Lit::Str("/ok/"),
                }],
                declassify: 0,
            },
            Rule {
                name: "s",
                effect: Effect::Allow,
                action: RuleAction::Send,
                target: Some(1),
                agents: None,
                constraints: vec![],
                declassify: 0,
            },
        ],
        limits: vec![Limit {
            name: "l",
            action: RuleAction::Call,
            target: None,
            agents: None,
            max: 3,
            window_secs: 60,
        }],
        gpu: vec![],
    }
}

fn requests() -> Vec<Request<'static>> {
    static ARGS: [Arg<'static>; 4] = [
        Arg {
            path: "n",
            value: Value::Int(50),
        },
        Arg {
            path: "k",
            value: Value::Str("p"),
        },
        Arg {
            path: "i",
            value: Value::Int(2),
        },
        Arg {
            path: "b",
            value: Value::Bool(false),
        },
    ];
    vec![
        Request {
            agent: "a",
            agent_hash: Some(&[1; 32]),
            action: Action::Call {
                tool: "srv.t",
                entry: Some(&[3; 32]),
                args: &ARGS,
            },
        },
        Request {
            agent: "b",
            agent_hash: Some(&[2; 32]),
            action: Action::Infer {
                model: "m",
                proxy: Some(&[4; 32]),
                max_tokens: Value::Int(5),
                gpu_verified: false,
            },
        },
        Request {
            agent: "a",
            agent_hash: Some(&[1; 32]),
            action: Action::Read {
                source: "s",
                path: Value::Str("/ok/1"),
            },
        },
        Request {
            agent: "a",
            agent_hash: Some(&[1; 32]),
            action: Action::Send { to: "b" },
        },
    ]
}

fn exercise(bytes: &[u8]) {
    let Ok(p) = decode(bytes) else { return };
    p.validate().expect("decode only returns valid policies");
    let again = encode(&p).expect("a decoded policy encodes");
    assert_eq!(again, bytes, "only canonical encodings decode");
    for req in requests() {
        for labels in [0, u64::MAX, 0b1010] {
            let d = p.evaluate(
                &req,
                &State {
                    labels,
                    counts: &[0, 5, u32::MAX],
                },
            );
            let _ = p.rule_name(d.rule).to_string();
            assert_eq!(d.labels & !mask(p.labels.len()), 0);
        }
    }
}

fn mask(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1 << n) - 1 }
}

#[test]
fn sample_round_trips_and_decides() {
    let bytes = encode(&sample()).unwrap();
    assert_eq!(&bytes[..4], b"OMPL");
    assert_eq!(decode(&bytes).unwrap(), sample());
    let p = decode(&bytes).unwrap();
    let r = requests();
    let st = State {
        labels: 0,
        counts: &[],
    };
    assert_eq!(p.evaluate(&r[0], &st).effect, Effect::Allow);
    assert_eq!(p.rule_name(p.evaluate(&r[0], &st).rule).to_string(), "c");
    assert_eq!(
        p.evaluate(&r[0], &st).labels,
        0b100,
        "tool result label picked up"
    );
    // Over the limit.
    let d = p.evaluate(
        &r[0],
        &State {
            labels: 0,
            counts: &[3],
        },
    );
    assert_eq!(p.rule_name(d.rule).to_string(), "l");
    // phi is cleared for the tool; secret is not; pii is declassified by the rule.
    assert_eq!(
        p.evaluate(
            &r[0],
            &State {
                labels: 0b1001,
                counts: &[]
            }
        )
        .effect,
        Effect::Allow
    );
    let d = p.evaluate(
        &r[0],
        &State {
            labels: 0b0010,
            counts: &[],
        },
    );
    assert_eq!(
        (d.effect, p.rule_name(d.rule).to_string()),
        (Effect::Deny, "flow:secret".into())
    );
    assert_eq!(p.evaluate(&r[1], &st).effect, Effect::Confirm);
    assert_eq!(p.evaluate(&r[2], &st).labels, 0b1);
    exercise(&bytes);
}

#[test]
fn header_is_checked() {
    let bytes = encode(&sample()).unwrap();
    assert_eq!(decode(&[]), Err(DecodeError::BadMagic));
    assert_eq!(decode(b"OMP"), Err(DecodeError::BadMagic));
    assert_eq!(decode(b"OMPL\x01"), Err(DecodeError::BadMagic));
    let mut v = bytes.clone();
    v[0] = b'X';
    assert_eq!(decode(&v), Err(DecodeError::BadMagic));
    let mut v = bytes.clone();
    v[4] = 3;
    assert_eq!(decode(&v), Err(DecodeError::Version(3)));
    // Version 2 needs its sections after the version-1 body.
    v[4] = 2;
    assert_eq!(decode(&v), Err(DecodeError::Body));
    let mut v = bytes.clone();
    v.push(0);
    assert_eq!(decode(&v), Err(DecodeError::TrailingBytes));
    assert_eq!(decode(&bytes[..bytes.len() - 1]), Err(DecodeError::Body));
}

#[test]
fn overlong_varints_are_rejected() {
    // The body starts with the name's length (a varint): 6 as 0x86 0x00 is the same number,
    // over-long.
    let bytes = encode(&sample()).unwrap();
    assert_eq!(bytes[6], 6);
    let mut v = bytes[..6].to_vec();
    v.extend_from_slice(&[0x86, 0x00]);
    v.extend_from_slice(&bytes[7..]);
    assert_eq!(
        decode(&v),
        Err(DecodeError::Invalid("non-canonical encoding"))
    );
}

#[test]
fn inconsistent_bodies_are_rejected() {
    let mut p = sample();
    p.rules[1].target = Some(7);
    assert!(matches!(encode(&p), Err(DecodeError::Invalid(_))));
    let mut p = sample();
    p.agents[0].cleared = 1 << 40;
    assert!(matches!(encode(&p), Err(DecodeError::Invalid(_))));
    let mut p = sample();
    p.rules[0].constraints[0].op = Op::Lt;
    assert!(matches!(encode(&p), Err(DecodeError::Invalid(_))));
    let mut p = sample();
    p.rules[2].constraints[0].subject = Subject::Path;
    assert!(matches!(encode(&p), Err(DecodeError::Invalid(_))));
    let mut p = sample();
    p.limits[0].window_secs = 0;
    assert!(matches!(encode(&p), Err(DecodeError::Invalid(_))));
    let mut p = sample();
    p.rules[4].agents = Some(1 << 5);
    assert!(matches!(encode(&p), Err(DecodeError::Invalid(_))));
}

#[test]
fn random_and_mutated_blobs_never_panic() {
    let good = encode(&sample()).unwrap();
    let mut rng = Rng::new(seed(0xdec0de));
    let mut decoded_mutants = 0;
    for round in 0..200_000u32 {
        let mut v = if round % 8 == 0 {
            // Pure noise, sometimes behind a valid header.
            let n = rng.below(256);
            let mut v = rng.bytes(n);
            if rng.one_in(2) {
                let mut h = b"OMPL\x01\x00".to_vec();
                h.append(&mut v);
                v = h;
            }
            v
        } else {
            good.clone()
        };
        mutate(&mut rng, &mut v);
        if decode(&v).is_ok() {
            decoded_mutants += 1;
        }
        exercise(&v);
    }
    // Some mutants (e.g. a changed hash byte) are still valid policies; many are not.
    assert!(
        decoded_mutants > 100,
        "mutations never produced a valid policy: {decoded_mutants}"
    );
    assert!(
        decoded_mutants < 150_000,
        "the decoder accepts nearly everything: {decoded_mutants}"
    );
}
