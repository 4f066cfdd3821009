//! `cargo +nightly fuzz run decode` (from policy/): the decoder must never panic, and any
//! policy it accepts must evaluate without panicking and re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omega_policy::{decode, encode, Action, Arg, Request, State, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = decode(data) else { return };
    let again = encode(&policy).expect("decoded policies encode");
    assert_eq!(again, data, "only the canonical encoding decodes");
    let args = [Arg { path: "a", value: Value::Int(1) }, Arg { path: "b", value: Value::Str("x") }];
    for agent in policy.agents.iter().take(4) {
        let mut actions = vec![Action::Send { to: agent.name }];
        for t in policy.tools.iter().take(4) {
            actions.push(Action::Call { tool: t.name, entry: Some(&t.hash), args: &args });
        }
        for m in policy.models.iter().take(4) {
            for gpu_verified in [false, true] {
                actions.push(Action::Infer { model: m.name, proxy: Some(&m.hash), max_tokens: Value::Int(10), gpu_verified });
            }
        }
        for s in policy.sources.iter().take(4) {
            actions.push(Action::Read { source: s.name, path: Value::Str("/x") });
        }
        for action in actions {
            let req = Request { agent: agent.name, agent_hash: Some(&agent.hash), action };
            for labels in [0, u64::MAX] {
                let d = policy.evaluate(&req, &State { labels, counts: &[0, u32::MAX] });
                let _ = policy.rule_name(d.rule);
            }
        }
    }
});
