//! Agents in the real image: a bundle of WAT agents (compiled with `wat`) under a policy
//! compiled by `policy-compiler`, delivered by the real launcher session; the monitor runs
//! them, prints a summary per agent, and the host's stored log verifies.

use std::path::Path;
use std::time::Duration;

use omega_agent_abi as abi;
use omega_bundle::{AgentEntry, DataEntry, MANIFEST, Manifest, Restart};
use omega_provenance::entry::lifecycle;
use omega_provenance::{Action, Decision};
use qemu_tests::image;
use qemu_tests::verified_run::{Run, run_bundle};
use sha2::{Digest, Sha256};

/// Where the request bytes and the answer buffer sit in each test agent's memory.
const REQ: u32 = 1024;
const OUT: u32 = 16384;
const OUT_CAP: u32 = 4096;

/// An agent that loops `iterations` times, then makes `call` (an ABI function and its
/// postcard request) and exits with its return value (0 without a call).
fn agent(iterations: u32, call: Option<(&str, Vec<u8>)>) -> Vec<u8> {
    agent_repeating(iterations, call, 1)
}

/// [`agent`] making its call `times` times.
fn agent_repeating(iterations: u32, call: Option<(&str, Vec<u8>)>, times: u32) -> Vec<u8> {
    let (import, data, body) = match &call {
        Some((f, req)) => (
            format!(
                "(import \"{}\" \"{f}\" (func ${f} (param i32 i32 i32 i32) (result i32)))",
                abi::MODULE
            ),
            format!(
                "(data (i32.const {REQ}) \"{}\")",
                req.iter().map(|b| format!("\\{b:02x}")).collect::<String>()
            ),
            format!(
                "(local.set $i (i32.const 0))
    (block $calls
      (loop $c
        (br_if $calls (i32.ge_u (local.get $i) (i32.const {times})))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (local.set $r (call ${f} (i32.const {REQ}) (i32.const {}) (i32.const {OUT}) (i32.const {OUT_CAP})))
        (br $c)))",
                req.len()
            ),
        ),
        None => (String::new(), String::new(), String::new()),
    };
    let wat = format!(
        r#"(module
  {import}
  (import "{m}" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  {data}
  (func (export "run") (local $i i32) (local $r i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (i32.const {iterations})))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    {body}
    (call $exit (local.get $r))))"#,
        m = abi::MODULE
    );
    wat::parse_str(&wat).unwrap()
}

fn postcard<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    abi::encode(v, &mut buf).unwrap().to_vec()
}

fn pin(module: &[u8]) -> String {
    let h: [u8; 32] = Sha256::digest(module).into();
    format!(
        "sha256:{}",
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Compiles a policy declaring `agents` (name, pinned module) with `extra` rules.
fn policy(agents: &[(&str, &[u8])], extra: &str) -> Vec<u8> {
    let mut src = String::from("policy \"qemu-agents\"\n");
    for (name, module) in agents {
        src += &format!("agent {name} {{ hash \"{}\" cleared [] }}\n", pin(module));
    }
    src += extra;
    policy_compiler::compile("qemu-agents.policy", &src, Path::new("."))
        .unwrap_or_else(|d| panic!("{}", d.render()))
        .to_bytes()
}

/// Runs a bundle of `files` to completion; its stored log verified and decoded.
fn run(files: &[(&str, Vec<u8>)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let bundle_dir = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle_dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(bundle_dir.join(name), bytes).unwrap();
    }
    run_bundle(image(), &bundle_dir, dir.path(), Duration::from_secs(300))
}

/// Several agents run at once under fuel slices: workers finish next to a spinner (stopped
/// by its fuel budget), a trapping agent is restarted twice and reported, a denied send and
/// an infer that cannot reach an attested proxy never leave the guest and are in the
/// verified log with their rules; a data item shipped in the bundle is read.
#[test]
fn agents_run_concurrently_contained_and_logged() {
    let workers: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            let log = postcard(&abi::LogRequest {
                level: abi::Level::Info,
                text: "done\x1b[2J",
            });
            (
                format!("worker{i}"),
                agent(200_000 + i * 1000, Some(("log", log))),
            )
        })
        .collect();
    let spinner = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "run") (loop $l (br $l))))"#,
    )
    .unwrap();
    let trapper = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "run") unreachable))"#,
    )
    .unwrap();
    let message = abi::Message {
        message_id: "m1",
        context_id: None,
        role: abi::Role::Agent,
        parts: [abi::Part::Text { text: "secret" }].into_iter().collect(),
    };
    let sender = agent(
        10,
        Some((
            "send",
            postcard(&abi::SendRequest {
                to: "worker0",
                message,
            }),
        )),
    );
    let inferer = agent(
        10,
        Some((
            "infer",
            postcard(&abi::InferRequest {
                model: "llm",
                prompt: "hello",
                max_tokens: 16,
            }),
        )),
    );
    let reader = agent(
        10,
        Some((
            "data_read",
            postcard(&abi::DataReadRequest {
                source: "notes",
                path: "a.txt",
                offset: 0,
                max_len: 100,
            }),
        )),
    );

    let mut modules: Vec<(String, Vec<u8>)> = workers;
    modules.push(("spinner".into(), spinner));
    modules.push(("trapper".into(), trapper));
    modules.push(("sender".into(), sender));
    modules.push(("inferer".into(), inferer));
    modules.push(("reader".into(), reader));
    let declared: Vec<(&str, &[u8])> = modules
        .iter()
        .map(|(n, m)| (n.as_str(), m.as_slice()))
        .collect();
    let policy = policy(
        &declared,
        r#"
model llm {
  proxy "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  cleared []
}
source notes { labels [] }
rule anyone_infers { allow infer llm }
rule reader_reads { allow read notes agents [reader] }
"#,
    );
    let mut manifest = Manifest {
        tools: None,
        fleet: None,
        coordinator: None,
        version: omega_bundle::MANIFEST_VERSION,
        policy: "policy.bin".into(),
        agents: modules
            .iter()
            .map(|(n, _)| AgentEntry::new(n, &format!("{n}.wasm")))
            .collect(),
        data: vec![DataEntry {
            source: "notes".into(),
            path: "a.txt".into(),
            file: "notes-a.txt".into(),
        }],
    };
    for a in &mut manifest.agents {
        match a.name.as_str() {
            "spinner" => a.fuel_budget = Some(30_000_000),
            "trapper" => a.restart = Restart::Trap { max: 2 },
            _ => {}
        }
        a.fuel_slice = 50_000;
    }
    let mut files = vec![(MANIFEST, manifest.to_json()), ("policy.bin", policy)];
    let names: Vec<String> = modules.iter().map(|(n, _)| format!("{n}.wasm")).collect();
    for ((_, m), file) in modules.iter().zip(&names) {
        files.push((file.as_str(), m.clone()));
    }
    files.push(("notes-a.txt", b"twelve bytes".to_vec()));
    let r = run(&files);
    let serial = &r.out.serial;

    // Everyone finished; the workers before the spinner's budget ran out.
    for i in 0..4 {
        let s = r.summary(&format!("worker{i}"));
        assert!(s.contains("status=exited 0"), "{s}");
    }
    let worker_done = serial.rfind("omega: agent worker3: exited").unwrap();
    let spinner_stopped = serial.find("omega: agent spinner: trapped").expect(serial);
    assert!(worker_done < spinner_stopped, "{serial}");
    assert!(r.summary("spinner").contains("status=trapped"), "{serial}");
    // Agent log lines are escaped and marked.
    assert!(
        serial.contains("omega: agent worker0 [info]: \"done\\x1b[2J\""),
        "{serial}"
    );
    assert!(!serial.contains('\x1b'));
    // The trap loop: 3 starts, 2 restarts, then stopped; the others unaffected.
    assert_eq!(serial.matches("omega: agent trapper: trapped").count(), 3);
    assert!(r.summary("trapper").contains("restarts=2"), "{serial}");
    // The denied send (-2 = Denied) and the infer: no attested proxy identity, so the
    // policy's pin does not match (`target-pin`) and nothing is sent.
    assert!(
        r.summary("sender").contains("status=exited -2 fuel="),
        "{serial}"
    );
    assert!(r.summary("sender").contains("denied=1"), "{serial}");
    assert!(
        r.summary("inferer").contains("status=exited -2"),
        "{serial}"
    );
    // The data item was read: a positive return (the response's length), one allowed read.
    let reader = r.summary("reader");
    assert!(
        reader.contains("status=exited ") && !reader.contains("status=exited -"),
        "{serial}"
    );
    assert!(reader.contains("allowed=1 denied=0"), "{serial}");
    let deny = |agent: &str, action: Action, rule: &str| {
        let a = r.defined(lifecycle::DEFINE_AGENT, agent).expect(agent);
        let rule_id = r.defined(lifecycle::DEFINE_RULE, rule).expect(rule);
        assert!(
            r.entries.iter().any(|e| e.agent == a
                && e.action == action
                && e.decision == Decision::Deny
                && e.rule == rule_id),
            "no {action:?} deny by {rule} for {agent}: {:?}",
            r.entries
        );
    };
    deny("sender", Action::Message, "default-deny");
    deny("inferer", Action::Infer, "target-pin");
    assert!(serial.contains("omega: agents: 9 started"), "{serial}");
}

/// A module whose SHA-256 is not its policy pin is refused at load, naming both hashes;
/// nothing runs, the refusal is in the verified log (`AGENT_REFUSED`, deny, `hash-pin`,
/// the refused module's hash) and the monitor shuts down cleanly once the log is stored.
#[test]
fn a_module_whose_hash_differs_from_its_pin_is_refused() {
    let good = agent(10, None);
    let other = agent(11, None);
    let policy = policy(&[("a", &other)], "");
    let files = [
        (MANIFEST, Manifest::json("policy.bin", [("a", "a.wasm")])),
        ("policy.bin", policy),
        ("a.wasm", good.clone()),
    ];
    let r = run(&files);
    let serial = &r.out.serial;
    assert!(
        serial.contains(&format!(
            "omega: agents: refused: agent `a`: module hash {} does not match the policy's pin {}; no agent runs",
            pin(&good),
            pin(&other)
        )),
        "{serial}"
    );
    assert!(!serial.contains("omega: agent a: started"), "{serial}");
    assert!(
        serial.contains("omega: bundle delivered and logged ("),
        "{serial}"
    );
    let a = r
        .defined(lifecycle::DEFINE_AGENT, "a")
        .unwrap_or_else(|| panic!("agent `a` defined in the log: {:?}", r.entries));
    let refusals: Vec<_> = r
        .entries
        .iter()
        .filter(|e| e.action == Action::Lifecycle && e.rule == lifecycle::AGENT_REFUSED)
        .collect();
    assert_eq!(refusals.len(), 1, "{:?}", r.entries);
    let refusal = refusals[0];
    assert_eq!((refusal.agent, refusal.decision), (a, Decision::Deny));
    assert_eq!(refusal.name, b"hash-pin");
    assert_eq!(
        refusal.content,
        Some(Sha256::digest(&good).into()),
        "the refused module"
    );
    assert!(
        !r.entries
            .iter()
            .any(|e| e.action == Action::Lifecycle && e.rule == lifecycle::AGENT_START),
        "nothing started"
    );
}

/// The log never drops a record: 3,000 denied sends (three times what the 64 KiB outbox
/// holds) are all in the verified log, each with its rule; when the outbox fills, the agent
/// waits for the host, not the record.
#[test]
fn every_decision_is_logged_even_past_a_full_outbox() {
    const SENDS: u32 = 3000;
    let message = abi::Message {
        message_id: "m",
        context_id: None,
        role: abi::Role::Agent,
        parts: [abi::Part::Text { text: "x" }].into_iter().collect(),
    };
    let sender = agent_repeating(
        0,
        Some((
            "send",
            postcard(&abi::SendRequest {
                to: "sender",
                message,
            }),
        )),
        SENDS,
    );
    let policy = policy(&[("sender", &sender)], "");
    let files = [
        (
            MANIFEST,
            Manifest::json("policy.bin", [("sender", "sender.wasm")]),
        ),
        ("policy.bin", policy),
        ("sender.wasm", sender),
    ];
    let r = run(&files);
    let s = r.summary("sender");
    assert!(
        s.contains("status=exited -2") && s.contains(&format!("denied={SENDS}")),
        "{s}"
    );
    let agent = r.defined(lifecycle::DEFINE_AGENT, "sender").unwrap();
    let rule = r.defined(lifecycle::DEFINE_RULE, "default-deny").unwrap();
    let denials = r
        .entries
        .iter()
        .filter(|e| {
            e.agent == agent
                && e.action == Action::Message
                && e.decision == Decision::Deny
                && e.rule == rule
        })
        .count();
    assert_eq!(denials, SENDS as usize, "{}", r.out);
}
