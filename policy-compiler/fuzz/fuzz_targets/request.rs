//! A JSON policy request (the Rego `input`, as `policy-compiler eval` and the decision
//! benchmarks take it) against the healthcare example policy, through both of the compiler's request
//! decoders: the streaming one (`request::decide`) and the one over a parsed JSON value
//! (`request::eval_json`). Invariants: no panic; both accept the same requests and reach
//! the same decision.
#![no_main]
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use omega_policy::Policy;
use policy_compiler::{Compiled, request};

const DEMO: &str = include_str!("../../examples/healthcare.policy");

fn demo() -> &'static (Compiled, Policy<'static>) {
    static P: OnceLock<(Compiled, Policy<'static>)> = OnceLock::new();
    P.get_or_init(|| {
        let c = policy_compiler::compile(
            "healthcare.policy",
            DEMO,
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples")),
        )
        .expect("the example policy compiles");
        let bytes: &'static [u8] = Box::leak(c.to_bytes().into_boxed_slice());
        let p = omega_policy::decode(bytes).expect("decodes");
        (c, p)
    })
}

fuzz_target!(|data: &[u8]| {
    let (compiled, policy) = demo();
    let streamed = request::decide(policy, data);
    let valued = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .map(|v| request::eval_json(compiled, policy, &v));
    if let Ok(d) = &streamed {
        let json = request::decision_json(policy, compiled, d);
        match valued {
            Some(Ok(v)) => assert_eq!(v, json, "the two request decoders decide differently"),
            other => panic!("decide accepted what eval_json refuses: {other:?}"),
        }
    } else if let Some(Ok(v)) = valued {
        panic!("eval_json accepted ({v}) what decide refuses: {streamed:?}");
    }
});
