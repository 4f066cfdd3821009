//! The real example agents, built to wasm32, run in `omega-runtime` on the host under the
//! demo policy (agents/demo/demo.policy pinned to these builds): the triage pair and the tool
//! user do their jobs, and each hostile agent is contained while the pair's decisions stay
//! exactly what they are when it runs alone.

use std::path::PathBuf;
use std::sync::OnceLock;

use omega_agent_abi::Level;
use omega_agents_build::{Built, DEMO_AGENTS, DEMO_DATA, demo_policy, write_demo_bundle};
use omega_policy::Policy;
use omega_provenance::Decision;
use omega_runtime::{
    AgentEvent, AgentId, AgentLimits, AgentSpec, Answer, Backpressure, DataError, Egress,
    EgressReply, LoadError, Monitor, Record, RestartPolicy, Runtime, RuntimeConfig, Status,
};

fn repo() -> PathBuf {
    omega_test_support::workspace_root()
}

/// The agents, built once for every test here (cargo's target directory keeps them).
fn agents() -> &'static [Built] {
    omega_agents_build::built_for_tests(&repo())
}

fn wasm(name: &str) -> &'static [u8] {
    &agents().iter().find(|b| b.name == name).unwrap().wasm
}

fn policy() -> &'static Policy<'static> {
    static POLICY: OnceLock<Policy<'static>> = OnceLock::new();
    POLICY.get_or_init(|| {
        let bytes: &'static [u8] = Vec::leak(demo_policy(&repo(), agents()).unwrap());
        omega_policy::decode(bytes).unwrap()
    })
}

/// One policy decision, owned: (agent, what, decision, rule).
type Decided = (String, String, Decision, String);

/// The monitor's side for the test: data from agents/demo/data, the proxy and gateway
/// standing in with the identities the policy pins, and everything recorded.
struct DemoMonitor {
    model_answers: bool,
    time: u64,
    decisions: Vec<Decided>,
    egress: Vec<(String, String)>,
    logs: Vec<(String, String)>,
    events: Vec<(String, String)>,
}

impl DemoMonitor {
    fn new(model_answers: bool) -> Self {
        DemoMonitor {
            model_answers,
            time: 0,
            decisions: Vec::new(),
            egress: Vec::new(),
            logs: Vec::new(),
            events: Vec::new(),
        }
    }

    fn decisions_of(&self, agent: &str) -> Vec<Decided> {
        self.decisions
            .iter()
            .filter(|d| d.0 == agent)
            .cloned()
            .collect()
    }

    fn logs_of(&self, agent: &str) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|l| l.0 == agent)
            .map(|l| l.1.as_str())
            .collect()
    }
}

impl Monitor for DemoMonitor {
    fn now_ms(&mut self) -> u64 {
        self.time += 1;
        self.time
    }
    fn random(&mut self, buf: &mut [u8]) {
        buf.fill(0x42);
    }
    fn append_record(&mut self, record: &Record<'_>) -> Result<(), Backpressure> {
        if let Record::Decision {
            agent,
            action,
            target,
            decision,
            rule,
            ..
        } = record
        {
            let what = format!("{action:?} {target}");
            let entry = (agent.to_string(), what, *decision, rule.to_string());
            self.decisions.push(entry);
        }
        Ok(())
    }
    fn model_identity(&mut self, model: &str) -> Option<[u8; 32]> {
        policy()
            .models
            .iter()
            .find(|m| m.name == model)
            .map(|m| m.hash)
    }
    fn tool_entry(&mut self, tool: &str) -> Option<[u8; 32]> {
        policy()
            .tools
            .iter()
            .find(|t| t.name == tool)
            .map(|t| t.hash)
    }
    fn egress(&mut self, agent: &str, egress: Egress<'_>, _confirm: bool) -> EgressReply {
        let (what, answer) = match egress {
            Egress::Infer { model, .. } if self.model_answers => (
                format!("infer {model}"),
                Answer::Infer {
                    text: "urgency 2: see a clinician today".into(),
                },
            ),
            Egress::Infer { model, .. } => (
                format!("infer {model}"),
                Answer::Unavailable("no inference proxy in this test".into()),
            ),
            Egress::Message { to, .. } => (
                format!("message {to}"),
                Answer::Unavailable("no peer channel in this test".into()),
            ),
            Egress::Tool { tool, arguments } => {
                let content = match tool {
                    "fhir.search_patients" => r#"{"patients":[{"id":"pt-7"}]}"#,
                    _ => r#"{"ok":true}"#,
                };
                let answer = Answer::Tool {
                    is_error: false,
                    content: content.into(),
                };
                (format!("call {tool} {arguments}"), answer)
            }
        };
        self.egress.push((agent.to_string(), what));
        EgressReply::Answer(answer)
    }
    fn read_data(
        &mut self,
        source: &str,
        path: &str,
        offset: u64,
        max_len: u32,
        out: &mut Vec<u8>,
    ) -> Result<u64, DataError> {
        let file = repo()
            .join(DEMO_DATA)
            .join(source)
            .join(path.trim_start_matches('/'));
        let item = std::fs::read(file).map_err(|_| DataError::NotFound)?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(item.len());
        let end = start.saturating_add(max_len as usize).min(item.len());
        out.extend_from_slice(&item[start..end]);
        Ok(item.len() as u64)
    }
    fn log(&mut self, agent: &str, _level: Level, text: &str) {
        self.logs.push((agent.to_string(), text.to_string()));
    }
    fn event(&mut self, agent: &str, event: AgentEvent<'_>) {
        self.events.push((agent.to_string(), format!("{event:?}")));
    }
}

fn runtime(model_answers: bool) -> Runtime<'static, DemoMonitor> {
    Runtime::new(
        policy(),
        DemoMonitor::new(model_answers),
        RuntimeConfig::default(),
    )
}

fn spec(name: &'static str, module: &'static [u8], limits: AgentLimits) -> AgentSpec<'static> {
    let restart = match name {
        "trap-loop" => RestartPolicy::OnTrap { max: 2 },
        _ => RestartPolicy::Never,
    };
    AgentSpec {
        name,
        module,
        limits,
        restart,
    }
}

/// Loads agent `name` with its own module (trap-loop: restarted at most twice).
fn load(rt: &mut Runtime<'static, DemoMonitor>, name: &'static str) -> AgentId {
    load_with(rt, name, AgentLimits::default())
}

fn load_with(
    rt: &mut Runtime<'static, DemoMonitor>,
    name: &'static str,
    limits: AgentLimits,
) -> AgentId {
    rt.load(&spec(name, wasm(name), limits))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Slices enough for the pair to finish many times over, and bounded when a spinner runs.
const SLICES: usize = 3_000;

/// The pair alone: the decisions the hostile run must leave unchanged.
fn pair_alone() -> (Vec<Decided>, Vec<Decided>) {
    let mut rt = runtime(true);
    load(&mut rt, "triage");
    load(&mut rt, "summariser");
    rt.run_until_idle(SLICES);
    let m = rt.monitor();
    (m.decisions_of("triage"), m.decisions_of("summariser"))
}

#[test]
fn the_triage_pair_works_under_policy_with_and_without_a_model() {
    for model_answers in [true, false] {
        let mut rt = runtime(model_answers);
        let triage = load(&mut rt, "triage");
        let summariser = load(&mut rt, "summariser");
        rt.run_until_idle(SLICES);
        // Triage exits 0 only once the summariser's answer to its round came back; the
        // summariser stops when triage ends the session, so the monitor can finish.
        assert_eq!(rt.status(triage), Some(&Status::Exited(0)));
        assert_eq!(rt.status(summariser), Some(&Status::Exited(0)));
        // After a whole round, the summariser holds two 64 KiB pages: the SDK's small stack
        // and reused heap keep an agent far below the 512 KiB goal.
        let idle = rt.agent_memory(summariser).unwrap().len();
        eprintln!("idle summariser: {idle} bytes of linear memory");
        assert!(idle <= 2 * 65536, "{idle}");

        let m = rt.monitor();
        let rules =
            |agent| -> Vec<String> { m.decisions_of(agent).into_iter().map(|d| d.3).collect() };
        let triage_rules = rules("triage");
        // The index and three records; one general question before any record, then three
        // prompts; the request and the session's end.
        assert_eq!(
            triage_rules.iter().filter(|r| *r == "ehr_readers").count(),
            4
        );
        assert_eq!(
            triage_rules
                .iter()
                .filter(|r| *r == "clinical_infer")
                .count(),
            4
        );
        assert_eq!(triage_rules.last().unwrap(), "triage_asks_summariser");
        assert_eq!(
            rules("summariser"),
            ["clinical_infer", "summariser_answers_triage"]
        );
        assert!(
            m.decisions.iter().all(|d| d.2 == Decision::Allow),
            "{:?}",
            m.decisions
        );
        // Every prompt went to the model cleared for phi: triage's four, the summariser's one.
        assert_eq!(m.egress.len(), 5);
        assert!(m.egress.iter().all(|e| e.1 == "infer local_llm"));
        // Each logged before it held phi, and never after.
        // (the model's answer to the general question, then the triage line)
        assert_eq!(m.logs_of("triage").len(), 2);
        assert_eq!(m.logs_of("summariser"), ["serving summaries"]);
    }
}

#[test]
fn the_scheduler_books_through_the_tool_gateway() {
    let mut rt = runtime(true);
    let scheduler = load(&mut rt, "scheduler");
    rt.run_until_idle(SLICES);
    assert_eq!(rt.status(scheduler), Some(&Status::Exited(0)));
    let m = rt.monitor();
    let rules: Vec<String> = m.decisions.iter().map(|d| d.3.clone()).collect();
    assert_eq!(rules, ["scheduler_search", "scheduler_book"]);
    assert_eq!(
        m.egress[1].1,
        r#"call calendar.book {"patient_id":"pt-7","slot":42,"urgent":false}"#
    );
}

#[test]
fn hostile_agents_are_contained_and_the_pair_is_unchanged() {
    let (alone_triage, alone_summariser) = pair_alone();

    let mut rt = runtime(true);
    let triage = load(&mut rt, "triage");
    let summariser = load(&mut rt, "summariser");
    let spinner = load(&mut rt, "spinner");
    let small = AgentLimits {
        memory_bytes: 1 << 20,
        ..AgentLimits::default()
    };
    let bomb = load_with(&mut rt, "memory-bomb", small);
    let bad_pointer = load(&mut rt, "bad-pointer");
    let exfiltrator = load(&mut rt, "exfiltrator");
    let trap_loop = load(&mut rt, "trap-loop");
    let refused = rt.load(&spec(
        "forbidden-import",
        wasm("forbidden-import"),
        AgentLimits::default(),
    ));
    assert!(
        matches!(&refused, Err(LoadError::ForeignImport { module, name, .. })
            if module == "wasi_snapshot_preview1" && name == "fd_write"),
        "{refused:?}"
    );

    rt.run_until_idle(SLICES);
    let m = rt.monitor();

    // The pair: same result, same decisions, as alone.
    assert_eq!(rt.status(triage), Some(&Status::Exited(0)));
    assert_eq!(rt.status(summariser), Some(&Status::Exited(0)));
    assert_eq!(m.decisions_of("triage"), alone_triage);
    assert_eq!(m.decisions_of("summariser"), alone_summariser);

    // The spinner is still spinning: it got slices and stopped nobody.
    assert_eq!(rt.status(spinner), Some(&Status::Ready));
    assert!(rt.fuel_used(spinner) > 0);

    // The memory bomb hit its limit and was stopped there.
    assert!(
        matches!(rt.status(bomb), Some(Status::Trapped(_))),
        "{:?}",
        rt.status(bomb)
    );
    assert!(rt.agent_memory(bomb).unwrap().len() <= 1 << 20);

    // The wild pointer trapped its agent before the call did anything.
    assert!(matches!(rt.status(bad_pointer), Some(Status::Trapped(_))));
    let bad_logs = m.logs_of("bad-pointer");
    assert_eq!(bad_logs.len(), 1, "{bad_logs:?}");
    assert!(bad_logs[0].starts_with("calling log with ptr"));

    // Every way out for the record was denied by the label flow, and nothing left.
    assert_eq!(rt.status(exfiltrator), Some(&Status::Exited(0)));
    let tries: Vec<Decided> = m
        .decisions_of("exfiltrator")
        .into_iter()
        .filter(|d| d.2 == Decision::Deny)
        .collect();
    assert_eq!(tries.len(), 3, "{tries:?}");
    assert!(tries.iter().all(|d| d.3.starts_with("flow:")), "{tries:?}");
    assert!(m.egress.iter().all(|e| e.0 != "exfiltrator"));

    // The trap loop ran three times (start and two restarts), then stayed stopped.
    assert_eq!(rt.restarts(trap_loop), 2);
    assert!(matches!(rt.status(trap_loop), Some(Status::Trapped(_))));
    assert_eq!(m.logs_of("trap-loop").len(), 3);
}

#[test]
fn a_module_under_another_agents_pin_is_refused() {
    let mut rt = runtime(true);
    let swapped = rt.load(&spec("summariser", wasm("triage"), AgentLimits::default()));
    assert!(
        matches!(&swapped, Err(LoadError::HashMismatch { agent, .. }) if agent == "summariser"),
        "{swapped:?}"
    );
}

#[test]
fn the_demo_bundle_passes_the_launchers_check_and_its_agents_load_under_its_policy() {
    let dir = tempfile::tempdir().unwrap();
    write_demo_bundle(&repo(), agents(), dir.path()).unwrap();
    let bundle = omega_host::bundle::Bundle::read(dir.path()).unwrap();
    let names: Vec<&str> = bundle
        .manifest
        .agents
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, DEMO_AGENTS);
    // The data items are declared in the manifest, so the monitor serves them.
    let index = bundle
        .manifest
        .data
        .iter()
        .find(|d| d.source == "ehr" && d.path == "/patients/index.txt")
        .expect("the patient index in the manifest");
    assert!(bundle.files.iter().any(|f| f.0 == index.file));

    let file = |name: &str| -> &'static [u8] {
        let bytes = &bundle.files.iter().find(|f| f.0 == name).unwrap().1;
        Vec::leak(bytes.clone())
    };
    let policy: &'static Policy<'static> =
        Box::leak(Box::new(omega_policy::decode(file("policy.bin")).unwrap()));
    let mut rt = Runtime::new(policy, DemoMonitor::new(true), RuntimeConfig::default());
    for agent in &bundle.manifest.agents {
        let name: &'static str = String::leak(agent.name.clone());
        rt.load(&spec(name, file(&agent.module), AgentLimits::default()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
