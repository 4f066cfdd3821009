//! Stable-Rust fuzzing of the ABI boundary: agents call every host function with random and
//! mutated requests, random buffer sizes and random pointers. Nothing may panic; hostile
//! pointers trap only the agent that passed them; the others keep going.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::*;
use omega_agent_abi as abi;
use omega_runtime::{RestartPolicy, Status};
use omega_test_support::random::{self, Rng};

const ROUNDS: u32 = 3000;
const AGENTS: usize = 6;
const RESTARTS: u32 = 100;

fn pick(rng: &mut Rng, items: &[&'static str]) -> &'static str {
    items[rng.below(items.len())]
}

fn valid_request(rng: &mut Rng, sel: u8) -> Vec<u8> {
    let to = pick(rng, &["f0", "f1", "f2", "nobody", ""]);
    match sel {
        0 => enc(&abi::InferRequest {
            model: pick(rng, &["llm", "x"]),
            prompt: "p",
            max_tokens: rng.next_u64() as u32 % 2000,
        }),
        1 => enc(&abi::ToolCallRequest {
            tool: pick(rng, &["mail.send", "ehr.lookup"]),
            arguments: pick(
                rng,
                &[r#"{"a": {"b": [1, 2.5, null]}, "c": "d"}"#, "{}", "[]", "{"],
            ),
        }),
        2 => send_req(to, "hello"),
        3 => recv_req(false),
        4 => enc(&abi::DataReadRequest {
            source: pick(rng, &["ehr", "public", "none"]),
            path: pick(rng, &["/patients/42", "/news", "/../x", "a//b"]),
            offset: rng.next_u64() % 40,
            max_len: rng.next_u64() as u32 % 100_000,
        }),
        _ => enc(&abi::LogRequest {
            level: abi::Level::Info,
            text: "t",
        }),
    }
}

fn plan(rng: &mut Rng, buf: &mut [u8]) {
    buf.fill(0);
    let sel = rng.byte() % 8;
    buf[0] = sel;
    let raw = rng.one_in(100);
    buf[1] = raw as u8;
    for i in 0..4 {
        let v: i32 = match rng.below(4) {
            0 => rng.next_u64() as i32,
            1 => rng.in_range(0..70_000) as i32,
            2 => -(rng.below(16) as i32),
            _ => 0x1020,
        };
        buf[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    let mut req = if rng.one_in(4) {
        let n = rng.below(64);
        rng.bytes(n)
    } else {
        let mut r = valid_request(rng, sel.min(5));
        if rng.one_in(2) {
            random::mutate(rng, &mut r);
        }
        r
    };
    // A waiting recv would park the agent for good: the plan never asks for one.
    if sel == 3 && abi::decode::<abi::RecvRequest>(&req) == Ok(abi::RecvRequest { wait: true }) {
        req = recv_req(false);
    }
    req.truncate(buf.len() - 32);
    buf[2..4].copy_from_slice(&(req.len() as u16).to_le_bytes());
    let cap = if rng.one_in(3) { rng.below(16) } else { 0x4000 } as u16;
    buf[4..6].copy_from_slice(&cap.to_le_bytes());
    buf[32..32 + req.len()].copy_from_slice(&req);
}

#[test]
fn random_abi_arguments_never_panic_and_trap_only_their_agent() {
    let module = wasm(&fuzz_agent(ROUNDS));
    let agents: Vec<Declared> = (0..AGENTS)
        .map(|i| Declared {
            name: Box::leak(format!("f{i}").into_boxed_str()),
            module: module.clone(),
            cleared: PHI,
        })
        .collect();
    let mut rt = runtime(&agents);
    let rng = Rc::new(RefCell::new(Rng::new(random::seed(0x0a61))));
    let source = rng.clone();
    rt.monitor_mut().random_source = Some(Box::new(move |buf: &mut [u8]| {
        let mut rng = source.borrow_mut();
        if buf.len() == 256 {
            plan(&mut rng, buf);
        } else {
            rng.fill(buf);
        }
    }));
    let ids: Vec<_> = agents
        .iter()
        .map(|a| {
            let mut s = spec(a.name, &a.module);
            s.restart = RestartPolicy::OnTrap { max: RESTARTS };
            rt.load(&s).unwrap()
        })
        .collect();
    rt.run_until_idle(1_000_000);
    let mut traps = 0;
    for id in &ids {
        traps += rt.restarts(*id);
        let ended_well = match rt.status(*id) {
            Some(Status::Exited(0)) | Some(Status::Parked) => true,
            Some(Status::Trapped(reason)) => {
                rt.restarts(*id) == RESTARTS && reason.contains("outside the agent's memory")
            }
            _ => false,
        };
        assert!(ended_well, "{:?}", rt.status(*id));
    }
    let calls = rt.monitor().random_calls;
    eprintln!(
        "{calls} plans, {traps} traps, {} decisions, {} egress",
        rt.monitor().decisions.len(),
        rt.monitor().egress.len()
    );
    assert!(calls >= AGENTS * ROUNDS as usize / 2, "{calls}");
    assert!(traps > 0, "hostile pointers were tried");
    assert!(
        rt.monitor().decisions.len() > 1000,
        "requests reached the policy"
    );
}
