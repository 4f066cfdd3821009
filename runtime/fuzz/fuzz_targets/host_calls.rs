//! Fuzzer-chosen host calls from agents into the whole runtime: each 256-byte chunk of the
//! input is one plan for the test fixtures' fuzz agent (function, raw or in-memory
//! pointers, request bytes, response capacity; layout in `fuzz_agent`). Three agents run
//! the plans interleaved by fuel slices. Invariants: nothing panics, every agent ends
//! exited, parked (a waiting `recv` parks for good) or trapped (never stuck runnable), and a trap is only ever the agent's
//! own bad pointer.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::OnceLock;

use common::*;
use libfuzzer_sys::fuzz_target;
use omega_runtime::{RestartPolicy, Status};

const AGENTS: usize = 3;
const ROUNDS: u32 = 24;
const PLAN: usize = 256;

struct Fixture {
    module: Vec<u8>,
    agents: Vec<Declared>,
    policy: &'static omega_policy::Policy<'static>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let module = wasm(&fuzz_agent(ROUNDS));
        let agents: Vec<Declared> = ["f0", "f1", "f2"]
            .into_iter()
            .take(AGENTS)
            .map(|name| Declared {
                name,
                module: module.clone(),
                cleared: PHI,
            })
            .collect();
        let policy = policy(&agents);
        Fixture {
            module,
            agents,
            policy,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut rt = omega_runtime::Runtime::new(
        f.policy,
        TestMonitor::default(),
        omega_runtime::RuntimeConfig::default(),
    );
    let input = Rc::new(RefCell::new(data.to_vec()));
    let source = input.clone();
    rt.monitor_mut().random_source = Some(Box::new(move |buf: &mut [u8]| {
        let mut rest = source.borrow_mut();
        if buf.len() == PLAN {
            let n = rest.len().min(PLAN);
            buf.fill(0);
            buf[..n].copy_from_slice(&rest[..n]);
            rest.drain(..n);
            // Plans past the input's end ask for the time (selector 7): cheap, harmless.
            if n == 0 {
                buf[0] = 7;
            }
        } else {
            buf.fill(0x5a);
        }
    }));
    let ids: Vec<_> = f
        .agents
        .iter()
        .map(|a| {
            let mut s = spec(a.name, &f.module);
            s.restart = RestartPolicy::OnTrap { max: 2 };
            rt.load(&s).expect("the fixture agent loads")
        })
        .collect();
    rt.run_until_idle(100_000);
    for id in ids {
        match rt.status(id) {
            Some(Status::Exited(_)) | Some(Status::Parked) => {}
            Some(Status::Trapped(reason)) => assert!(
                reason.contains("outside the agent's memory") || reason.contains("fuel"),
                "unexpected trap: {reason}"
            ),
            other => panic!("agent left in state {other:?}"),
        }
    }
});
