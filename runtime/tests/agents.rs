//! The runtime with real Wasm agents (written as WAT): scheduling, containment, load-time
//! checks, and the policy gate.

mod common;

use common::*;
use omega_agent_abi as abi;
use omega_provenance::Decision;
use omega_runtime::{AgentLimits, Answer, LoadError, RestartPolicy, Status};

const DENIED: i32 = -(abi::ErrorCode::Denied as i32);

fn declared(name: &'static str, wat_text: &str) -> Declared {
    Declared {
        name,
        module: wasm(wat_text),
        cleared: 0,
    }
}

#[test]
fn many_agents_run_concurrently_and_finish() {
    let agents: Vec<Declared> = (0..50)
        .map(|i| {
            declared(
                Box::leak(format!("a{i}").into_boxed_str()),
                &counter(20_000 + i),
            )
        })
        .collect();
    let mut rt = runtime(&agents);
    let ids = load_all(&mut rt, &agents);
    // 20 000 iterations take several 100 000-fuel slices, so agents interleave.
    rt.run_until_idle(100_000);
    for id in &ids {
        assert_eq!(rt.status(*id), Some(&Status::Exited(0)));
    }
    assert!(!rt.has_ready());
    let interleaved = rt.fuel_used(ids[0]) > 0;
    assert!(interleaved);
}

#[test]
fn a_spinner_cannot_starve_the_others() {
    let agents = vec![
        declared("spinner", SPINNER),
        declared("worker", &counter(200_000)),
    ];
    let mut rt = runtime(&agents);
    let spinner = rt.load(&spec("spinner", &agents[0].module)).unwrap();
    let worker = rt.load(&spec("worker", &agents[1].module)).unwrap();
    let mut slices = 0;
    while rt.status(worker) != Some(&Status::Exited(0)) {
        rt.run_slice().unwrap();
        slices += 1;
        assert!(slices < 200, "worker starved");
    }
    // The spinner still runs and has had about as many slices as the worker.
    assert_eq!(rt.status(spinner), Some(&Status::Ready));
    let (s, w) = (rt.fuel_used(spinner), rt.fuel_used(worker));
    assert!(s >= w / 2 && s <= w * 2 + 200_000, "spinner {s} worker {w}");
}

#[test]
fn a_memory_bomb_hits_its_limit_and_is_stopped() {
    let bomb = r#"(module
      (memory (export "memory") 1)
      (func (export "run") (loop $l (drop (memory.grow (i32.const 1))) (br $l))))"#;
    let agents = vec![declared("bomb", bomb), declared("worker", &counter(1000))];
    let mut rt = runtime(&agents);
    let mut s = spec("bomb", &agents[0].module);
    s.limits = AgentLimits {
        memory_bytes: 1 << 20,
        ..AgentLimits::default()
    };
    let bomb = rt.load(&s).unwrap();
    let worker = rt.load(&spec("worker", &agents[1].module)).unwrap();
    rt.run_until_idle(1000);
    assert!(matches!(rt.status(bomb), Some(Status::Trapped(_))));
    assert!(rt.agent_memory(bomb).unwrap().len() <= 1 << 20);
    assert_eq!(rt.status(worker), Some(&Status::Exited(0)));
    assert!(
        rt.monitor()
            .events_of("bomb")
            .iter()
            .any(|e| e.starts_with("trapped")),
        "{:?}",
        rt.monitor().events
    );
}

#[test]
fn a_module_declaring_more_memory_than_its_limit_is_refused() {
    let big = r#"(module (memory (export "memory") 64) (func (export "run")))"#;
    let agents = vec![declared("big", big)];
    let mut rt = runtime(&agents);
    let mut s = spec("big", &agents[0].module);
    s.limits.memory_bytes = 1 << 20;
    let err = rt.load(&s).unwrap_err();
    assert!(matches!(err, LoadError::MemoryLimit { declared, .. } if declared == 64 << 16));
}

#[test]
fn forbidden_imports_and_wrong_signatures_are_refused_naming_the_import() {
    let foreign = r#"(module
      (import "env" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1) (func (export "run")))"#;
    let unknown = r#"(module
      (import "omega_v1" "spawn" (func))
      (memory (export "memory") 1) (func (export "run")))"#;
    let wrong_sig = r#"(module
      (import "omega_v1" "infer" (func (param i32) (result i32)))
      (memory (export "memory") 1) (func (export "run")))"#;
    let imported_memory = r#"(module
      (import "omega_v1" "now" (memory 1))
      (func (export "run")))"#;
    let no_run = r#"(module (memory (export "memory") 1))"#;
    let agents = vec![
        declared("foreign", foreign),
        declared("unknown", unknown),
        declared("wrong_sig", wrong_sig),
        declared("imported_memory", imported_memory),
        declared("no_run", no_run),
    ];
    let mut rt = runtime(&agents);
    let msg = |rt: &mut omega_runtime::Runtime<'static, TestMonitor>, a: &Declared| {
        rt.load(&spec(a.name, &a.module)).unwrap_err().to_string()
    };
    let m = msg(&mut rt, &agents[0]);
    assert!(
        m.contains("import `env.fd_write` is not part of the host ABI `omega_v1`"),
        "{m}"
    );
    let m = msg(&mut rt, &agents[1]);
    assert!(m.contains("`omega_v1.spawn`"), "{m}");
    let m = msg(&mut rt, &agents[2]);
    assert!(m.contains("import `omega_v1.infer` has type"), "{m}");
    let m = msg(&mut rt, &agents[3]);
    assert!(
        m.contains("`omega_v1.now`") && m.contains("not a function"),
        "{m}"
    );
    let m = msg(&mut rt, &agents[4]);
    assert!(m.contains("missing export `run`"), "{m}");
    assert!(rt.is_empty());
}

#[test]
fn every_abi_import_with_its_signature_is_accepted() {
    let all = format!(
        r#"(module {} (memory (export "memory") 1) (func (export "run")))"#,
        all_imports()
    );
    let agents = vec![declared("all", &all)];
    let mut rt = runtime(&agents);
    let id = rt.load(&spec("all", &agents[0].module)).unwrap();
    rt.run_until_idle(10);
    assert_eq!(rt.status(id), Some(&Status::Exited(0)));
}

#[test]
fn a_module_whose_hash_differs_from_its_pin_is_refused() {
    let agents = vec![declared("triage", &counter(1))];
    let mut rt = runtime(&agents);
    let swapped = wasm(&counter(2));
    let err = rt.load(&spec("triage", &swapped)).unwrap_err();
    assert!(matches!(err, LoadError::HashMismatch { .. }), "{err}");
    assert!(err.to_string().contains("does not match the policy's pin"));
    let err = rt.load(&spec("stranger", &swapped)).unwrap_err();
    assert_eq!(err, LoadError::UnknownAgent("stranger".into()));
    assert!(rt.is_empty());
}

#[test]
fn an_out_of_bounds_pointer_traps_only_that_agent() {
    let oob = script(&[Step::Raw("log", [0x7fff_fff0, 100, 0, 0])]);
    let wrap = script(&[Step::Raw("send", [100, -1, 0, 16])]);
    let out_oob = script(&[Step::Raw("recv", [0, 1, 65530, 100])]);
    let agents = vec![
        declared("oob", &oob),
        declared("wrap", &wrap),
        declared("out_oob", &out_oob),
        declared("worker", &counter(1000)),
    ];
    let mut rt = runtime(&agents);
    let ids = load_all(&mut rt, &agents);
    rt.run_until_idle(100);
    for id in &ids[..3] {
        match rt.status(*id) {
            Some(Status::Trapped(r)) => assert!(r.contains("outside the agent's memory"), "{r}"),
            s => panic!("{s:?}"),
        }
    }
    assert_eq!(rt.status(ids[3]), Some(&Status::Exited(0)));
    assert!(rt.monitor().decisions.is_empty());
}

#[test]
fn a_trap_loop_is_restarted_at_most_n_times() {
    let trapper = r#"(module (memory (export "memory") 1) (func (export "run") unreachable))"#;
    let agents = vec![
        declared("trapper", trapper),
        declared("worker", &counter(1000)),
    ];
    let mut rt = runtime(&agents);
    let mut s = spec("trapper", &agents[0].module);
    s.restart = RestartPolicy::OnTrap { max: 3 };
    let trapper = rt.load(&s).unwrap();
    let worker = rt.load(&spec("worker", &agents[1].module)).unwrap();
    rt.run_until_idle(1000);
    assert_eq!(rt.restarts(trapper), 3);
    assert!(matches!(rt.status(trapper), Some(Status::Trapped(_))));
    assert_eq!(rt.status(worker), Some(&Status::Exited(0)));
    let events = rt.monitor().events_of("trapper");
    assert_eq!(
        events.iter().filter(|e| e.starts_with("trapped")).count(),
        4
    );
    assert_eq!(
        events.iter().filter(|e| e.starts_with("restarted")).count(),
        3
    );
    let starts = rt
        .monitor()
        .lifecycle
        .iter()
        .filter(|l| *l == "start trapper")
        .count();
    assert_eq!(starts, 4);
}

#[test]
fn a_fuel_budget_stops_an_agent() {
    let agents = vec![declared("spinner", SPINNER)];
    let mut rt = runtime(&agents);
    let mut s = spec("spinner", &agents[0].module);
    s.limits.fuel_total = Some(1_000_000);
    let id = rt.load(&s).unwrap();
    rt.run_until_idle(1000);
    assert_eq!(
        rt.status(id),
        Some(&Status::Trapped("fuel budget exhausted".into()))
    );
    assert!(rt.fuel_used(id) <= 1_000_000);
}

#[test]
fn denied_calls_never_reach_egress_and_are_recorded_with_their_rule() {
    let infer_big = enc(&abi::InferRequest {
        model: "llm",
        prompt: "hi",
        max_tokens: 5000,
    });
    let infer_unknown = enc(&abi::InferRequest {
        model: "gpt-x",
        prompt: "hi",
        max_tokens: 10,
    });
    let tool = enc(&abi::ToolCallRequest {
        tool: "ehr.lookup",
        arguments: r#"{"id": 42}"#,
    });
    let s = script(&[
        Step::Call("infer", infer_big),
        Step::Take(256),
        Step::Call("infer", infer_unknown),
        Step::Call("tool_call", tool),
        Step::Call("send", send_req("peer", "hello")),
    ]);
    let lone = script(&[Step::Call("send", send_req("peer", "hello"))]);
    let agents = vec![
        declared("agent", &s),
        declared("loner", &lone),
        declared("peer", &common::counter(1)),
    ];
    let mut rt = runtime(&agents);
    let a = rt.load(&spec("agent", &agents[0].module)).unwrap();
    let l = rt.load(&spec("loner", &agents[1].module)).unwrap();
    rt.run_until_idle(100);
    assert_eq!(rt.status(l), Some(&Status::Exited(DENIED)));
    // The peer finished, so the agent's own send is allowed but finds nobody: Unavailable.
    let r = rets(&rt, a, 5);
    assert_eq!(r[0], DENIED);
    assert!(r[1] > 0);
    let bytes = out(&rt, a, r[1] as usize);
    let detail: abi::HostError<'_> = abi::decode(&bytes).unwrap();
    assert_eq!(detail, abi::HostError::Denied { rule: "big_infer" });
    assert_eq!(r[2], DENIED);
    assert_eq!(r[3], DENIED);
    assert!(rt.monitor().egress.is_empty(), "{:?}", rt.monitor().egress);
    let rules: Vec<_> = rt
        .monitor()
        .decisions
        .iter()
        .map(|d| (d.agent.as_str(), d.decision, d.rule.as_str()))
        .collect();
    assert!(rules.contains(&("agent", Decision::Deny, "big_infer")));
    assert!(rules.contains(&("agent", Decision::Deny, "unknown-target")));
    assert!(rules.contains(&("agent", Decision::Deny, "no_ehr_tool")));
    assert!(rules.contains(&("loner", Decision::Deny, "default-deny")));
}

#[test]
fn label_taint_from_a_data_read_blocks_egress_to_an_uncleared_destination() {
    let read = read_req("ehr", "/patients/42", 1024);
    let mail = enc(&abi::ToolCallRequest {
        tool: "mail.send",
        arguments: r#"{"to": "x@example.org", "body": "Jane Doe"}"#,
    });
    let log = enc(&abi::LogRequest {
        level: abi::Level::Info,
        text: "leak",
    });
    let s = script(&[
        Step::Call("tool_call", mail.clone()),
        Step::Call("data_read", read),
        Step::Call("tool_call", mail),
        Step::Call("log", log),
        Step::Call("send", send_req("outsider", "Jane Doe has diabetes")),
        Step::Take(256),
    ]);
    let agents = vec![
        declared("reader", &s),
        Declared {
            name: "outsider",
            module: wasm(&script(&[Step::Call("recv", recv_req(true))])),
            cleared: 0,
        },
    ];
    let mut rt = runtime(&agents);
    let r_id = rt.load(&spec("reader", &agents[0].module)).unwrap();
    let o_id = rt.load(&spec("outsider", &agents[1].module)).unwrap();
    rt.run_until_idle(100);
    let r = rets(&rt, r_id, 6);
    // Before the read: mail is allowed (and the proxy-less monitor answers Unavailable).
    assert_eq!(r[0], -(abi::ErrorCode::Unavailable as i32));
    assert!(r[1] > 0, "read {r:?}");
    assert_eq!(r[2], DENIED);
    assert_eq!(r[3], DENIED);
    assert_eq!(r[4], DENIED);
    let bytes = out(&rt, r_id, r[5] as usize);
    let detail: abi::HostError<'_> = abi::decode(&bytes).unwrap();
    assert_eq!(detail, abi::HostError::Denied { rule: "flow:phi" });
    assert_eq!(rt.agent_labels(r_id), PHI);
    assert_eq!(rt.monitor().egress.len(), 1, "only the untainted call left");
    assert!(rt.monitor().logs.is_empty());
    let flows = rt
        .monitor()
        .decisions_of("reader")
        .into_iter()
        .filter(|d| d.rule == "flow:phi")
        .count();
    assert_eq!(flows, 2, "tool call and send");
    // The outsider never got the message.
    assert_eq!(rt.status(o_id), Some(&Status::Parked));
}

#[test]
fn infer_parks_the_agent_until_the_answer_is_delivered() {
    let infer = enc(&abi::InferRequest {
        model: "llm",
        prompt: "summarise",
        max_tokens: 100,
    });
    let s = script(&[Step::Call("infer", infer), Step::Take(OUT_CAP as i32)]);
    let agents = vec![declared("asker", &s), declared("worker", &counter(300_000))];
    let mut rt = runtime(&agents);
    rt.monitor_mut().mode = EgressMode::Tickets;
    let asker = rt.load(&spec("asker", &agents[0].module)).unwrap();
    let worker = rt.load(&spec("worker", &agents[1].module)).unwrap();
    rt.run_until_idle(1000);
    assert_eq!(rt.status(asker), Some(&Status::Parked));
    assert_eq!(rt.status(worker), Some(&Status::Exited(0)), "others go on");
    assert_eq!(
        rt.monitor().egress,
        vec![("asker".into(), "infer llm: summarise".into())]
    );
    let ticket = rt.monitor().tickets[0];
    assert!(!rt.deliver(ticket + 100, &Answer::Refused));
    let text = "x".repeat(300);
    assert!(rt.deliver(ticket, &Answer::Infer { text: text.clone() }));
    assert!(
        !rt.deliver(ticket, &Answer::Refused),
        "a ticket is answered once"
    );
    rt.run_until_idle(10);
    let r = rets(&rt, asker, 2);
    let want = enc(&abi::InferResponse { text: &text });
    assert_eq!(r[0], want.len() as i32);
    // Fitted in the buffer, so nothing was held.
    assert_eq!(r[1], -(abi::ErrorCode::NoResult as i32));
    assert_eq!(out(&rt, asker, want.len()), want);
    // The model's result labels stick to the context.
    assert_eq!(rt.agent_labels(asker), UNTRUSTED);
}

#[test]
fn a_long_response_is_held_for_result_take() {
    let read = read_req("public", "/news", 100);
    let s = script(&[
        Step::Raw("data_read", [0x1000, read.len() as i32, OUT as i32, 2]),
        Step::Take(2),
        Step::Take(64),
        Step::Take(64),
    ]);
    let s = s.replacen(
        "(module",
        &format!("(module (data (i32.const 0x1000) \"{}\")", escape(&read)),
        1,
    );
    let agents = vec![declared("reader", &s)];
    let mut rt = runtime(&agents);
    let id = rt.load(&spec("reader", &agents[0].module)).unwrap();
    rt.run_until_idle(10);
    let r = rets(&rt, id, 4);
    let want = enc(&abi::DataReadResponse {
        data: b"sunny",
        total_len: 5,
    });
    assert_eq!(r[0], want.len() as i32);
    assert_eq!(r[1], want.len() as i32, "still too small: held on");
    assert_eq!(r[2], want.len() as i32);
    assert_eq!(r[3], -(abi::ErrorCode::NoResult as i32));
    assert_eq!(out(&rt, id, want.len()), want);
}

#[test]
fn messages_round_trip_between_two_agents_with_labels() {
    let read = read_req("ehr", "/patients/42", 64);
    let ping = script(&[
        Step::Call("data_read", read),
        Step::Call("send", send_req("pong", "ping")),
        Step::Call("recv", recv_req(true)),
    ]);
    let pong = script(&[
        Step::Call("recv", recv_req(false)),
        Step::Call("recv", recv_req(true)),
        Step::Call("send", send_req("ping", "pong")),
    ]);
    let agents = vec![
        Declared {
            name: "ping",
            module: wasm(&ping),
            cleared: PHI,
        },
        Declared {
            name: "pong",
            module: wasm(&pong),
            cleared: PHI,
        },
    ];
    let mut rt = runtime(&agents);
    // Start pong first so its non-waiting recv finds an empty inbox.
    let pong_id = rt.load(&spec("pong", &agents[1].module)).unwrap();
    let ping_id = rt.load(&spec("ping", &agents[0].module)).unwrap();
    rt.run_until_idle(100);
    assert_eq!(rt.status(pong_id), Some(&Status::Exited(0)));
    let pr = rets(&rt, pong_id, 3);
    assert_eq!(pr[0], -(abi::ErrorCode::WouldBlock as i32));
    // Pong read a message carrying phi, so its context has it now.
    assert_eq!(rt.agent_labels(pong_id), PHI);
    let len = match rt.status(ping_id) {
        Some(Status::Exited(n)) => *n as usize,
        s => panic!("{s:?}"),
    };
    let bytes = out(&rt, ping_id, len);
    let got: abi::Delivered<'_> = abi::decode(&bytes).unwrap();
    assert_eq!(got.from, "pong");
    assert_eq!(got.labels.as_slice(), &["phi"]);
    assert_eq!(got.message.parts[0], abi::Part::Text { text: "pong" });
    assert_eq!(got.message.context_id, Some("ctx"));
    let sends = rt
        .monitor()
        .decisions
        .iter()
        .filter(|d| d.rule == "send_ok" && d.decision == Decision::Allow)
        .count();
    assert_eq!(sends, 2);
}

#[test]
fn a_full_provenance_outbox_parks_the_call_until_drained() {
    let read = read_req("public", "/news", 10);
    let s = script(&[Step::Call("data_read", read)]);
    let agents = vec![declared("reader", &s)];
    let mut rt = runtime(&agents);
    let id = rt.load(&spec("reader", &agents[0].module)).unwrap();
    rt.monitor_mut().refuse_appends = 1;
    rt.run_until_idle(10);
    assert_eq!(rt.status(id), Some(&Status::Parked));
    assert!(rt.monitor().decisions.is_empty());
    rt.records_drained();
    rt.run_until_idle(10);
    assert!(matches!(rt.status(id), Some(Status::Exited(n)) if *n > 0));
    assert_eq!(rt.monitor().decisions.len(), 1);
}

#[test]
fn now_random_and_bad_requests() {
    let s = script(&[
        Step::Now,
        Step::Random(16),
        Step::Random(1000),
        Step::Call("infer", vec![0xff, 0xff, 0xff]),
        Step::Call("data_read", read_req("public", "/a/../news", 10)),
        Step::Take(64),
    ]);
    let agents = vec![declared("misc", &s)];
    let mut rt = runtime(&agents);
    let id = rt.load(&spec("misc", &agents[0].module)).unwrap();
    rt.run_until_idle(10);
    let r = rets(&rt, id, 6);
    assert!(r[0] > 1000);
    assert_eq!(r[1], 16);
    assert_eq!(r[2], -(abi::ErrorCode::TooLarge as i32));
    assert_eq!(r[3], -(abi::ErrorCode::BadRequest as i32));
    assert_eq!(r[4], -(abi::ErrorCode::BadRequest as i32));
    let bytes = out(&rt, id, r[5] as usize);
    let detail: abi::HostError<'_> = abi::decode(&bytes).unwrap();
    assert_eq!(detail, abi::HostError::BadRequest);
    assert!(
        rt.monitor().decisions.is_empty(),
        "nothing malformed reaches the policy"
    );
}

#[test]
fn agents_woken_by_messages_run_ahead_of_spinners_without_starving_them() {
    const ROUNDS: u32 = 2000;
    let agents = vec![
        Declared {
            name: "ping",
            module: wasm(&ping_pong_agent("pong", ROUNDS, true, "hi")),
            cleared: 0,
        },
        Declared {
            name: "pong",
            module: wasm(&ping_pong_agent("ping", ROUNDS, false, "hi")),
            cleared: 0,
        },
        declared("spinner", SPINNER),
    ];
    let mut rt = runtime(&agents);
    let a = rt.load(&spec("ping", &agents[0].module)).unwrap();
    let b = rt.load(&spec("pong", &agents[1].module)).unwrap();
    for _ in 0..20 {
        rt.load(&spec("spinner", &agents[2].module)).unwrap();
    }
    let (mut pair, mut spinners) = (0u32, 0u32);
    while rt.status(a) != Some(&Status::Exited(0)) {
        match rt.run_slice() {
            Some(id) if id == a || id == b => pair += 1,
            Some(_) => spinners += 1,
            None => panic!("nothing ready"),
        }
        assert!(spinners < 1000, "the pair is starved");
    }
    // Two wake-ups per round trip; one spinner slice per `wake_burst` (256) wake-ups.
    let burst = omega_runtime::RuntimeConfig::default().wake_burst as u32;
    assert!(pair >= 2 * ROUNDS, "{pair}");
    assert!(
        spinners >= pair / (burst + 1),
        "spinners starved: {spinners} vs {pair}"
    );
    assert!(
        spinners <= pair / burst + 21,
        "pair queued behind spinners: {spinners}"
    );
}

#[test]
fn large_functions_run_with_short_fuel_slices() {
    // A function body of ~24 KiB: translating it costs more fuel than a 1 000-fuel slice.
    let body: String = (0..4000)
        .map(|i| format!("(local.set $x (i32.add (local.get $x) (i32.const {i})))\n"))
        .collect();
    let big = format!(
        r#"(module (memory (export "memory") 1)
  (func $big (local $x i32) {body})
  (func (export "run") (call $big)))"#
    );
    let agents = vec![declared("big", &big)];
    let mut rt = runtime(&agents);
    let mut s = spec("big", &agents[0].module);
    s.limits.fuel_slice = 1000;
    let id = rt.load(&s).unwrap();
    rt.run_until_idle(1000);
    assert_eq!(rt.status(id), Some(&Status::Exited(0)));
}

#[test]
fn a_confirm_decision_is_held_for_the_operator_and_a_refusal_is_a_denial() {
    let publish = enc(&abi::ToolCallRequest {
        tool: "deid.publish",
        arguments: r#"{"k": 5}"#,
    });
    let s = script(&[Step::Call("tool_call", publish), Step::Take(64)]);
    let agents = vec![declared("publisher", &s)];
    let mut rt = runtime(&agents);
    rt.monitor_mut().mode = EgressMode::Tickets;
    let id = rt.load(&spec("publisher", &agents[0].module)).unwrap();
    rt.run_until_idle(10);
    assert_eq!(
        rt.status(id),
        Some(&Status::Parked),
        "{:?}",
        rt.monitor().decisions
    );
    assert_eq!(
        rt.monitor().egress,
        vec![(
            "publisher".into(),
            r#"held for the operator: call deid.publish {"k": 5}"#.into()
        )]
    );
    let d = &rt.monitor().decisions[0];
    assert_eq!(
        (d.decision, d.rule.as_str()),
        (Decision::Confirm, "publish_confirm")
    );
    // The monitor is told the rule and the content digest of the logged `confirm` record.
    assert_eq!(
        rt.monitor().confirms,
        vec![(
            "publisher".to_string(),
            "publish_confirm".to_string(),
            omega_provenance::entry::content_digest(
                &enc(&abi::ToolCallRequest {
                    tool: "deid.publish",
                    arguments: r#"{"k": 5}"#,
                }),
                &[]
            )
        )]
    );
    let ticket = rt.monitor().tickets[0];
    assert!(rt.deliver(ticket, &Answer::Refused));
    rt.run_until_idle(10);
    let r = rets(&rt, id, 2);
    assert_eq!(r[0], DENIED);
    let bytes = out(&rt, id, r[1] as usize);
    let detail: abi::HostError<'_> = abi::decode(&bytes).unwrap();
    assert_eq!(detail, abi::HostError::Denied { rule: "operator" });
}

/// Arguments of another type than the tool's pinned schema gives them are a bad request:
/// no policy rule decides them and nothing is sent (a `deny` condition on a typed argument
/// would not match a value of another type, and the server might coerce it), and the
/// refusal is logged as a deny with rule `schema`.
#[test]
fn tool_arguments_of_other_types_than_the_pinned_schema_are_bad_requests() {
    let call = |arguments| {
        Step::Call(
            "tool_call",
            enc(&abi::ToolCallRequest {
                tool: "mail.send",
                arguments,
            }),
        )
    };
    let s = script(&[
        call(r#"{"to": 5, "body": "x"}"#),
        call(r#"{"to": "a@b", "body": "x"}"#),
    ]);
    let agents = vec![declared("mailer", &s)];
    let mut rt = runtime(&agents);
    let id = rt.load(&spec("mailer", &agents[0].module)).unwrap();
    rt.run_until_idle(10);
    let r = rets(&rt, id, 2);
    assert_eq!(r[0], -(abi::ErrorCode::BadRequest as i32));
    // The well-typed call is decided (and reaches egress when allowed).
    assert_ne!(r[1], -(abi::ErrorCode::BadRequest as i32));
    let decisions = rt.monitor().decisions_of("mailer");
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert_eq!(
        (
            decisions[0].decision,
            decisions[0].rule.as_str(),
            decisions[0].target.as_str()
        ),
        (Decision::Deny, omega_runtime::SCHEMA_RULE, "mail.send")
    );
    assert_ne!(decisions[1].rule, omega_runtime::SCHEMA_RULE);
    assert!(
        rt.monitor()
            .egress
            .iter()
            .all(|(_, e)| !e.contains("\"to\": 5")),
        "{:?}",
        rt.monitor().egress
    );
}

/// A refusal for arguments that do not match the schema waits for room in the log like
/// any decision: with the outbox full the call parks, and it is refused once logged.
#[test]
fn a_schema_refusal_waits_for_the_log() {
    let s = script(&[Step::Call(
        "tool_call",
        enc(&abi::ToolCallRequest {
            tool: "mail.send",
            arguments: r#"{"to": 5, "body": "x"}"#,
        }),
    )]);
    let agents = vec![declared("mailer", &s)];
    let mut rt = runtime(&agents);
    let id = rt.load(&spec("mailer", &agents[0].module)).unwrap();
    rt.monitor_mut().refuse_appends = 1;
    rt.run_until_idle(10);
    assert_eq!(rt.status(id), Some(&Status::Parked));
    assert!(rt.monitor().decisions.is_empty());
    rt.records_drained();
    rt.run_until_idle(10);
    assert_eq!(rets(&rt, id, 1)[0], -(abi::ErrorCode::BadRequest as i32));
    assert_eq!(rt.monitor().decisions_of("mailer").len(), 1);
}

/// While the monitor re-lists the tool catalogue (after a change was announced) a tool
/// call waits, undecided; once the listing is in (`records_drained`) it is decided.
#[test]
fn tool_calls_wait_while_the_catalogue_is_relisted() {
    let s = script(&[Step::Call(
        "tool_call",
        enc(&abi::ToolCallRequest {
            tool: "mail.send",
            arguments: r#"{"to": "a@b", "body": "x"}"#,
        }),
    )]);
    let agents = vec![declared("mailer", &s)];
    let mut rt = runtime(&agents);
    rt.monitor_mut().stale = true;
    let id = rt.load(&spec("mailer", &agents[0].module)).unwrap();
    rt.run_until_idle(10);
    assert_eq!(rt.status(id), Some(&Status::Parked));
    assert!(rt.monitor().decisions.is_empty());
    // Still stale: retried and parked again, still undecided.
    rt.records_drained();
    rt.run_until_idle(10);
    assert_eq!(rt.status(id), Some(&Status::Parked));
    assert!(rt.monitor().decisions.is_empty());
    rt.monitor_mut().stale = false;
    rt.records_drained();
    rt.run_until_idle(10);
    assert_eq!(rt.monitor().decisions_of("mailer").len(), 1);
    assert_ne!(rt.status(id), Some(&Status::Parked));
}

/// Instances of one policy agent (the manifest's `instances`): each its own store, session
/// and status, decided by the policy under the agent they were checked as, logged under
/// their own names; a send addresses one instance.
#[test]
fn instances_share_a_policy_agent_but_nothing_else() {
    let ping = script(&[
        Step::Call("send", send_req("pong-1", "ping")),
        Step::Call("recv", recv_req(true)),
    ]);
    let pong = script(&[
        Step::Call("recv", recv_req(true)),
        Step::Call("send", send_req("ping", "pong")),
    ]);
    let agents = vec![
        Declared {
            name: "ping",
            module: wasm(&ping),
            cleared: PHI,
        },
        Declared {
            name: "pong",
            module: wasm(&pong),
            cleared: PHI,
        },
    ];
    let mut rt = runtime(&agents);
    let checked = rt.check(&spec("pong", &agents[1].module)).unwrap();
    assert_eq!(checked.instance("pong-0").policy_name(), "pong");
    let p0 = rt.spawn(checked.instance("pong-0")).unwrap();
    let p1 = rt.spawn(checked.instance("pong-1")).unwrap();
    let ping_id = rt.load(&spec("ping", &agents[0].module)).unwrap();
    rt.run_until_idle(100);
    assert_eq!(rt.status(p1), Some(&Status::Exited(0)));
    assert!(matches!(rt.status(ping_id), Some(Status::Exited(n)) if *n > 0));
    // pong-0 got nothing and still waits; its memory is its own.
    assert_eq!(rt.status(p0), Some(&Status::Parked));
    assert_ne!(rets(&rt, p0, 1), rets(&rt, p1, 1));
    let decided = &rt.monitor().decisions;
    assert!(
        decided.iter().any(|d| d.agent == "ping"
            && d.target == "pong-1"
            && d.rule == "send_ok"
            && d.decision == Decision::Allow),
        "{decided:?}"
    );
    assert!(
        decided
            .iter()
            .any(|d| d.agent == "pong-1" && d.target == "ping" && d.rule == "send_ok"),
        "{decided:?}"
    );
    assert!(
        rt.monitor()
            .events_of("pong-0")
            .contains(&"started".to_string())
    );
}

/// Two agents under one name (the runtime allows it; the kernel's manifest does not): once
/// the first has exited, a message to the name reaches the second.
#[test]
fn a_message_reaches_the_live_agent_of_a_name_after_the_first_exited() {
    let pong = script(&[Step::Call("recv", recv_req(true))]);
    let ping = script(&[Step::Call("send", send_req("pong", "hi"))]);
    let agents = vec![declared("ping", &ping), declared("pong", &pong)];
    let mut rt = runtime(&agents);
    let first = rt
        .spawn(rt.check(&spec("pong", &agents[1].module)).unwrap())
        .unwrap();
    let second = rt
        .spawn(rt.check(&spec("pong", &agents[1].module)).unwrap())
        .unwrap();
    rt.run_until_idle(100);
    assert_eq!(rt.status(first), Some(&Status::Parked));
    // The first one receives (and exits); the second still waits.
    let p = rt.load(&spec("ping", &agents[0].module)).unwrap();
    rt.run_until_idle(100);
    assert_eq!(rt.status(p), Some(&Status::Exited(0)));
    assert!(matches!(rt.status(first), Some(Status::Exited(n)) if *n > 0));
    assert_eq!(rt.status(second), Some(&Status::Parked));
    // Now the name's first agent is done: the next message goes to the second.
    let p2 = rt.load(&spec("ping", &agents[0].module)).unwrap();
    rt.run_until_idle(100);
    assert_eq!(rt.status(p2), Some(&Status::Exited(0)));
    assert!(matches!(rt.status(second), Some(Status::Exited(n)) if *n > 0));
}

#[test]
fn a_streamed_answer_reaches_the_agent_in_batches_and_ends_once() {
    let infer = enc(&abi::InferRequest {
        model: "llm",
        prompt: "summarise",
        max_tokens: 100,
    });
    let next = enc(&abi::InferNextRequest { stream: 1 });
    let s = script(&[
        Step::Call("infer_stream", infer.clone()),
        Step::Call("infer_next", next.clone()),
        Step::Call("infer_next", next.clone()),
        Step::Call("infer_next", next.clone()),
        Step::Call("infer_next", next),
    ]);
    let agents = vec![declared("asker", &s)];
    let mut rt = runtime(&agents);
    rt.monitor_mut().mode = EgressMode::Tickets;
    let asker = rt.load(&spec("asker", &agents[0].module)).unwrap();
    rt.run_until_idle(1000);
    // The handle came back at once; the agent waits in its first `infer_next`.
    assert_eq!(rt.status(asker), Some(&Status::Parked));
    assert_eq!(
        rt.monitor().egress,
        vec![("asker".into(), "infer llm: summarise".into())]
    );
    assert_eq!(
        rt.monitor()
            .decisions_of("asker")
            .iter()
            .filter(|d| d.rule == "infer_ok")
            .count(),
        1,
        "decided and logged as infer"
    );
    let ticket = rt.monitor().tickets[0];
    let part = |text: &str, end| Answer::InferPart {
        text: text.into(),
        end,
    };
    // The first part wakes the agent; the two after it arrive before it runs: one batch.
    assert!(rt.deliver(ticket, &part("Bl", None)));
    assert!(rt.deliver(ticket, &part("ue ", None)));
    assert!(rt.deliver(ticket, &part("sky", None)));
    rt.run_until_idle(10);
    assert_eq!(rt.status(asker), Some(&Status::Parked));
    assert!(rt.deliver(ticket, &part("", Some(Some(3)))));
    assert!(!rt.deliver(ticket, &part("late", None)), "the stream ended");
    rt.run_until_idle(10);
    let chunk = |text: &str, done: bool, tokens| {
        enc(&abi::InferChunk {
            text,
            done,
            completion_tokens: tokens,
        })
        .len() as i32
    };
    let r = rets(&rt, asker, 5);
    assert_eq!(r[0], enc(&abi::InferStream { stream: 1 }).len() as i32);
    assert_eq!(r[1], chunk("Bl", false, None));
    assert_eq!(r[2], chunk("ue sky", false, None));
    assert_eq!(r[3], chunk("", true, Some(3)));
    assert_eq!(
        r[4],
        -(abi::ErrorCode::BadRequest as i32),
        "closed after done"
    );
    assert_eq!(rt.status(asker), Some(&Status::Exited(r[4])));
}

#[test]
fn streams_are_bounded_and_a_failure_reaches_the_agent() {
    let infer = enc(&abi::InferRequest {
        model: "llm",
        prompt: "summarise",
        max_tokens: 100,
    });
    let mut steps: Vec<Step> = (0..=abi::MAX_STREAMS)
        .map(|_| Step::Call("infer_stream", infer.clone()))
        .collect();
    steps.push(Step::Call(
        "infer_next",
        enc(&abi::InferNextRequest { stream: 2 }),
    ));
    steps.push(Step::Call(
        "infer_next",
        enc(&abi::InferNextRequest { stream: 1 }),
    ));
    let agents = vec![declared("asker", &script(&steps))];
    // The model's results may flow back to it (cleared `untrusted`): every stream is allowed.
    let mut p = policy(&agents).clone();
    p.models[0].cleared |= UNTRUSTED;
    let mut rt = omega_runtime::Runtime::new(
        Box::leak(Box::new(p)),
        TestMonitor::default(),
        omega_runtime::RuntimeConfig::default(),
    );
    rt.monitor_mut().mode = EgressMode::Tickets;
    let asker = rt.load(&spec("asker", &agents[0].module)).unwrap();
    rt.run_until_idle(1000);
    let tickets = rt.monitor().tickets.clone();
    assert_eq!(tickets.len(), abi::MAX_STREAMS, "one more was not sent");
    // Stream 2 fails (the session broke); stream 1 gets more than one chunk's worth.
    assert!(rt.deliver(tickets[1], &Answer::Failed("broken".into())));
    rt.run_until_idle(10);
    let big = "x".repeat(abi::MAX_STREAM_BUFFER / 2 + 1);
    for _ in 0..2 {
        rt.deliver(
            tickets[0],
            &Answer::InferPart {
                text: big.clone(),
                end: None,
            },
        );
    }
    rt.run_until_idle(10);
    let r = rets(&rt, asker, steps.len());
    let n = abi::MAX_STREAMS;
    assert_eq!(r[n], -(abi::ErrorCode::WouldBlock as i32));
    assert_eq!(r[n + 1], -(abi::ErrorCode::Failed as i32));
    // One call hands over at most MAX_CHUNK (held for result_take: longer than OUT_CAP).
    assert!(r[n + 2] > abi::MAX_CHUNK as i32, "{r:?}");
    assert_eq!(rt.monitor().egress.len(), abi::MAX_STREAMS);
}
