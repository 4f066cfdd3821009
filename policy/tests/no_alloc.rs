//! The decision path does not allocate: a counting global allocator sees no allocation
//! during `Policy::evaluate`, `Session::state` and `Session::record`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use omega_policy::*;

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts calls while armed.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::SeqCst) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn evaluate_and_session_do_not_allocate() {
    let policy = Policy {
        name: "p",
        labels: vec!["phi", "secret", "untrusted"],
        agents: vec![Agent {
            name: "a",
            hash: [1; 32],
            cleared: 0,
        }],
        tools: vec![Target {
            name: "s.t",
            hash: [2; 32],
            cleared: 0b101,
            result: 0b100,
        }],
        models: vec![],
        sources: vec![],
        rules: vec![Rule {
            name: "r",
            effect: Effect::Allow,
            action: RuleAction::Call,
            target: Some(0),
            agents: None,
            constraints: vec![
                Constraint {
                    subject: Subject::Arg("q.n"),
                    op: Op::Le,
                    value: Lit::Int(9),
                },
                Constraint {
                    subject: Subject::Arg("k"),
                    op: Op::In,
                    value: Lit::Strs(vec!["x", "y"]),
                },
            ],
            declassify: 0,
        }],
        limits: vec![Limit {
            name: "l",
            action: RuleAction::Call,
            target: None,
            agents: None,
            max: 2,
            window_secs: 10,
        }],
        gpu: vec![],
    };
    let bytes = encode(&policy).unwrap();
    let policy = decode(&bytes).unwrap();
    let args = [
        Arg {
            path: "q.n",
            value: Value::Int(3),
        },
        Arg {
            path: "k",
            value: Value::Str("y"),
        },
    ];
    let req = Request {
        agent: "a",
        agent_hash: Some(&[1; 32]),
        action: Action::Call {
            tool: "s.t",
            entry: Some(&[2; 32]),
            args: &args,
        },
    };
    let mut session = Session::new();
    let mut effects = Vec::with_capacity(8);

    // The counter works: one allocation while armed is seen.
    ARMED.store(true, Ordering::SeqCst);
    let probe = std::hint::black_box(vec![1u8; 3]);
    ARMED.store(false, Ordering::SeqCst);
    drop(probe);
    assert_eq!(ALLOCS.swap(0, Ordering::SeqCst), 1);

    ARMED.store(true, Ordering::SeqCst);
    for now in [0, 1, 2, 11] {
        let state = session.state(&policy, now);
        let d = policy.evaluate(&req, &state);
        session.record(&policy, &req, &d, now);
        effects.push((d.effect, d.rule));
    }
    ARMED.store(false, Ordering::SeqCst);

    assert_eq!(
        ALLOCS.load(Ordering::SeqCst),
        0,
        "the decision path allocated"
    );
    assert_eq!(
        effects,
        vec![
            (Effect::Allow, RuleRef::Rule(0)),
            (Effect::Allow, RuleRef::Rule(0)),
            (Effect::Deny, RuleRef::Limit(0)),
            (Effect::Allow, RuleRef::Rule(0)), // a new window
        ]
    );
    assert_eq!(session.labels(), 0b100);
}
