//! Test fixtures: a recording monitor, a policy built around the test agents, and agents
//! written as WAT scripts of host calls.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use omega_agent_abi as abi;
use omega_policy::{
    Agent, Constraint, Effect, Lit, Op, Policy, Rule, RuleAction, Source, Subject, Target,
};
use omega_runtime::{
    AgentEvent, AgentLimits, AgentSpec, Answer, Backpressure, DataError, Egress, EgressReply,
    Monitor, Record, RestartPolicy, Runtime, RuntimeConfig, Ticket,
};
use sha2::{Digest, Sha256};

/// Label bits of the test policy.
pub const PHI: u64 = 1 << 0;
pub const UNTRUSTED: u64 = 1 << 2;

pub const MODEL_ID: [u8; 32] = [7; 32];
pub const MAIL_PIN: [u8; 32] = [8; 32];
pub const EHR_TOOL_PIN: [u8; 32] = [9; 32];
pub const PUBLISH_PIN: [u8; 32] = [10; 32];

/// A decision record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub agent: String,
    pub target: String,
    pub decision: omega_provenance::Decision,
    pub rule: String,
    pub labels: u64,
}

/// How the test monitor answers egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressMode {
    /// Answer at once with a canned answer.
    Immediate,
    /// Hand out tickets; the test delivers.
    Tickets,
}

/// Fills a `random` buffer.
pub type RandomSource = Box<dyn FnMut(&mut [u8])>;

pub struct TestMonitor {
    pub time: u64,
    pub decisions: Vec<Decided>,
    pub lifecycle: Vec<String>,
    pub egress: Vec<(String, String)>,
    pub events: Vec<(String, String)>,
    pub logs: Vec<(String, String)>,
    pub mode: EgressMode,
    pub next_ticket: Ticket,
    pub tickets: Vec<Ticket>,
    pub data: BTreeMap<(String, String), Vec<u8>>,
    /// Refuse the next N appends with backpressure.
    pub refuse_appends: usize,
    /// Where `random` bytes come from (the robustness test feeds requests through it).
    pub random_source: Option<RandomSource>,
    pub random_calls: usize,
    /// `confirm` calls handed to the monitor: (agent, rule, content digest).
    pub confirms: Vec<(String, String, [u8; 32])>,
    /// The tool catalogue is being re-listed.
    pub stale: bool,
}

impl Default for TestMonitor {
    fn default() -> Self {
        let mut data = BTreeMap::new();
        data.insert(
            ("ehr".to_string(), "/patients/42".to_string()),
            b"Jane Doe, diabetes".to_vec(),
        );
        data.insert(
            ("public".to_string(), "/news".to_string()),
            b"sunny".to_vec(),
        );
        TestMonitor {
            time: 1_000,
            decisions: Vec::new(),
            lifecycle: Vec::new(),
            egress: Vec::new(),
            events: Vec::new(),
            logs: Vec::new(),
            mode: EgressMode::Immediate,
            next_ticket: 1,
            tickets: Vec::new(),
            data,
            refuse_appends: 0,
            random_source: None,
            random_calls: 0,
            confirms: Vec::new(),
            stale: false,
        }
    }
}

impl TestMonitor {
    pub fn events_of(&self, agent: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|(a, _)| a == agent)
            .map(|(_, e)| e.clone())
            .collect()
    }
    pub fn decisions_of(&self, agent: &str) -> Vec<Decided> {
        self.decisions
            .iter()
            .filter(|d| d.agent == agent)
            .cloned()
            .collect()
    }
}

impl Monitor for TestMonitor {
    fn now_ms(&mut self) -> u64 {
        self.time += 1;
        self.time
    }
    fn random(&mut self, buf: &mut [u8]) {
        self.random_calls += 1;
        match self.random_source.as_mut() {
            Some(source) => source(buf),
            None => buf.fill(0x5a),
        }
    }
    fn append_record(&mut self, record: &Record<'_>) -> Result<(), Backpressure> {
        if self.refuse_appends > 0 {
            self.refuse_appends -= 1;
            return Err(Backpressure);
        }
        match record {
            Record::Decision {
                agent,
                target,
                decision,
                rule,
                labels,
                ..
            } => self.decisions.push(Decided {
                agent: agent.to_string(),
                target: target.to_string(),
                decision: *decision,
                rule: rule.to_string(),
                labels: *labels,
            }),
            Record::Start { agent, .. } => self.lifecycle.push(format!("start {agent}")),
            Record::Exit { agent } => self.lifecycle.push(format!("exit {agent}")),
        }
        Ok(())
    }
    fn model_identity(&mut self, model: &str) -> Option<[u8; 32]> {
        (model == "llm").then_some(MODEL_ID)
    }
    fn tool_entry(&mut self, tool: &str) -> Option<[u8; 32]> {
        match tool {
            "mail.send" => Some(MAIL_PIN),
            "ehr.lookup" => Some(EHR_TOOL_PIN),
            "deid.publish" => Some(PUBLISH_PIN),
            _ => None,
        }
    }
    /// `mail.send`'s pinned schema types `to` as a string.
    fn check_tool_arguments(
        &mut self,
        tool: &str,
        arguments: &serde_json::Value,
    ) -> Result<(), String> {
        match arguments.get("to") {
            Some(to) if tool == "mail.send" && !to.is_string() => Err("to: not a string".into()),
            _ => Ok(()),
        }
    }
    fn confirm(&mut self, call: &omega_runtime::Confirm<'_>) -> EgressReply {
        self.confirms
            .push((call.agent.to_string(), call.rule.to_string(), call.content));
        self.egress(call.agent, call.egress, true)
    }
    fn tool_catalogue_stale(&mut self) -> bool {
        self.stale
    }
    fn egress(&mut self, agent: &str, egress: Egress<'_>, confirm: bool) -> EgressReply {
        let held = if confirm {
            "held for the operator: "
        } else {
            ""
        };
        let what = match egress {
            Egress::Infer { model, prompt, .. } => format!("infer {model}: {prompt}"),
            Egress::Tool { tool, arguments } => format!("{held}call {tool} {arguments}"),
            Egress::Message { to, labels, .. } => format!("message {to} {labels:?}"),
        };
        self.egress.push((agent.to_string(), what));
        match self.mode {
            EgressMode::Immediate => {
                EgressReply::Answer(Answer::Unavailable("no inference proxy in tests".into()))
            }
            EgressMode::Tickets => {
                let t = self.next_ticket;
                self.next_ticket += 1;
                self.tickets.push(t);
                EgressReply::Pending(t)
            }
        }
    }
    fn read_data(
        &mut self,
        source: &str,
        path: &str,
        offset: u64,
        max_len: u32,
        out: &mut Vec<u8>,
    ) -> Result<u64, DataError> {
        let item = self
            .data
            .get(&(source.to_string(), path.to_string()))
            .ok_or(DataError::NotFound)?;
        let start = (offset as usize).min(item.len());
        let end = start.saturating_add(max_len as usize).min(item.len());
        out.extend_from_slice(&item[start..end]);
        Ok(item.len() as u64)
    }
    fn log(&mut self, agent: &str, _level: abi::Level, text: &str) {
        self.logs.push((agent.to_string(), text.to_string()));
    }
    fn event(&mut self, agent: &str, event: AgentEvent<'_>) {
        let e = match event {
            AgentEvent::Started => "started".to_string(),
            AgentEvent::Exited { code } => format!("exited {code}"),
            AgentEvent::Trapped { reason } => format!("trapped: {reason}"),
            AgentEvent::Restarted { attempt } => format!("restarted {attempt}"),
        };
        self.events.push((agent.to_string(), e));
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// One agent of the test policy.
pub struct Declared {
    pub name: &'static str,
    pub module: Vec<u8>,
    pub cleared: u64,
}

/// The test policy: labels phi, secret, untrusted; model `llm` (cleared phi, result
/// untrusted); tools `mail.send` (cleared nothing), `ehr.lookup` (denied by `no_ehr_tool`)
/// and `deid.publish` (cleared phi); sources `ehr` (phi) and `public`; agents as given.
/// Rules, in order: `no_ehr_tool` (deny call ehr.lookup), `big_infer` (deny infer when
/// max_tokens > 1000), `infer_ok`, `mail_ok`, `publish_confirm` (confirm call
/// deid.publish), `read_ok`, `send_ok` (every agent except `loner`).
pub fn policy(agents: &[Declared]) -> &'static Policy<'static> {
    let agent_list: Vec<Agent<'static>> = agents
        .iter()
        .map(|a| Agent {
            name: leak(a.name),
            hash: sha256(&a.module),
            cleared: a.cleared,
        })
        .collect();
    let senders = agents
        .iter()
        .enumerate()
        .filter(|(_, a)| a.name != "loner")
        .fold(0u64, |m, (i, _)| m | (1 << i));
    let rule =
        |name: &'static str, effect, action, target: Option<u16>, agents: Option<u64>| Rule {
            name,
            effect,
            action,
            target,
            agents,
            constraints: vec![],
            declassify: 0,
        };
    let mut big_infer = rule("big_infer", Effect::Deny, RuleAction::Infer, None, None);
    big_infer.constraints.push(Constraint {
        subject: Subject::MaxTokens,
        op: Op::Gt,
        value: Lit::Int(1000),
    });
    let p = Policy {
        name: "runtime-tests",
        labels: vec!["phi", "secret", "untrusted"],
        agents: agent_list,
        tools: vec![
            Target {
                name: "mail.send",
                hash: MAIL_PIN,
                cleared: 0,
                result: 0,
            },
            Target {
                name: "ehr.lookup",
                hash: EHR_TOOL_PIN,
                cleared: PHI,
                result: PHI,
            },
            Target {
                name: "deid.publish",
                hash: PUBLISH_PIN,
                cleared: PHI,
                result: 0,
            },
        ],
        models: vec![Target {
            name: "llm",
            hash: MODEL_ID,
            cleared: PHI,
            result: UNTRUSTED,
        }],
        sources: vec![
            Source {
                name: "ehr",
                labels: PHI,
            },
            Source {
                name: "public",
                labels: 0,
            },
        ],
        rules: vec![
            rule("no_ehr_tool", Effect::Deny, RuleAction::Call, Some(1), None),
            big_infer,
            rule("infer_ok", Effect::Allow, RuleAction::Infer, None, None),
            rule("mail_ok", Effect::Allow, RuleAction::Call, Some(0), None),
            rule(
                "publish_confirm",
                Effect::Confirm,
                RuleAction::Call,
                Some(2),
                None,
            ),
            rule("read_ok", Effect::Allow, RuleAction::Read, None, None),
            rule(
                "send_ok",
                Effect::Allow,
                RuleAction::Send,
                None,
                Some(senders),
            ),
        ],
        limits: vec![],
        gpu: vec![],
    };
    p.validate().expect("test policy is valid");
    Box::leak(Box::new(p))
}

pub fn spec<'a>(name: &'a str, module: &'a [u8]) -> AgentSpec<'a> {
    AgentSpec {
        name,
        module,
        limits: AgentLimits::default(),
        restart: RestartPolicy::Never,
    }
}

/// Loads every declared agent with default limits, in order.
pub fn load_all(
    rt: &mut Runtime<'static, TestMonitor>,
    agents: &[Declared],
) -> Vec<omega_runtime::AgentId> {
    agents
        .iter()
        .map(|a| rt.load(&spec(a.name, &a.module)).unwrap())
        .collect()
}

pub fn runtime(agents: &[Declared]) -> Runtime<'static, TestMonitor> {
    Runtime::new(
        policy(agents),
        TestMonitor::default(),
        RuntimeConfig::default(),
    )
}

/// Where a script agent keeps things in its memory.
pub const RETS: u32 = 0x100; // i32 return value of step i at RETS + 4 i
pub const OUT: u32 = 0x8000; // response buffer
pub const OUT_CAP: u32 = 0x4000;
const DATA: u32 = 0x1000; // request bytes

/// One host call of a script agent.
pub enum Step {
    /// `func(args) -> out`, for the request/response calls.
    Call(&'static str, Vec<u8>),
    /// A call with explicit (possibly hostile) pointer arguments.
    Raw(&'static str, [i32; 4]),
    /// `random(OUT, n)`.
    Random(i32),
    Now,
    /// `result_take(OUT, cap)`.
    Take(i32),
}

/// A WAT agent that makes the calls in order, stores each return value at `RETS + 4 i`,
/// and exits with the last return value (so tests read outcomes from exit codes).
pub fn script(steps: &[Step]) -> String {
    let mut data = String::new();
    let mut body = String::new();
    let mut at = DATA;
    for (i, step) in steps.iter().enumerate() {
        let ret_addr = RETS + 4 * i as u32;
        let call = match step {
            Step::Call(f, args) => {
                let esc = escape(args);
                writeln!(data, "  (data (i32.const {at}) \"{esc}\")").unwrap();
                let c = format!(
                    "(call ${f} (i32.const {at}) (i32.const {}) (i32.const {OUT}) (i32.const {OUT_CAP}))",
                    args.len()
                );
                at += args.len() as u32 + 8;
                c
            }
            Step::Raw(f, [a, b, c, d]) => format!(
                "(call ${f} (i32.const {a}) (i32.const {b}) (i32.const {c}) (i32.const {d}))"
            ),
            Step::Random(n) => format!("(call $random (i32.const {OUT}) (i32.const {n}))"),
            Step::Now => "(i32.wrap_i64 (call $now))".to_string(),
            Step::Take(cap) => format!("(call $result_take (i32.const {OUT}) (i32.const {cap}))"),
        };
        writeln!(body, "    (local.set $r {call})").unwrap();
        writeln!(
            body,
            "    (i32.store (i32.const {ret_addr}) (local.get $r))"
        )
        .unwrap();
    }
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
{data}  (func (export "run") (local $r i32)
{body}    (call $exit (local.get $r)))
)"#,
        imports = all_imports()
    )
}

/// Every ABI import, declared as the ABI crate lists them.
pub fn all_imports() -> String {
    let mut s = String::new();
    for imp in abi::IMPORTS {
        let ty = |ts: &[abi::ValType]| {
            ts.iter()
                .map(|t| match t {
                    abi::ValType::I32 => " i32",
                    abi::ValType::I64 => " i64",
                })
                .collect::<String>()
        };
        write!(
            s,
            "(import \"{}\" \"{}\" (func ${} (param{}) (result{})))\n  ",
            abi::MODULE,
            imp.name,
            imp.name,
            ty(imp.params),
            ty(imp.results)
        )
        .unwrap();
    }
    s
}

pub fn wasm(wat_text: &str) -> Vec<u8> {
    wat::parse_str(wat_text).expect("test WAT parses")
}

pub fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap()
}

pub fn send_req(to: &str, text: &str) -> Vec<u8> {
    let mut parts = abi::heapless::Vec::new();
    parts.push(abi::Part::Text { text }).unwrap();
    enc(&abi::SendRequest {
        to,
        message: abi::Message {
            message_id: "m1",
            context_id: Some("ctx"),
            role: abi::Role::Agent,
            parts,
        },
    })
}

pub fn read_req(source: &str, path: &str, max_len: u32) -> Vec<u8> {
    enc(&abi::DataReadRequest {
        source,
        path,
        offset: 0,
        max_len,
    })
}

pub fn recv_req(wait: bool) -> Vec<u8> {
    enc(&abi::RecvRequest { wait })
}

/// The i32 return values a script agent stored.
pub fn rets(rt: &Runtime<'static, TestMonitor>, id: omega_runtime::AgentId, n: usize) -> Vec<i32> {
    let mem = rt.agent_memory(id).unwrap();
    (0..n)
        .map(|i| {
            let at = RETS as usize + 4 * i;
            i32::from_le_bytes(mem[at..at + 4].try_into().unwrap())
        })
        .collect()
}

/// The response bytes a script agent received last.
pub fn out(rt: &Runtime<'static, TestMonitor>, id: omega_runtime::AgentId, len: usize) -> Vec<u8> {
    rt.agent_memory(id).unwrap()[OUT as usize..OUT as usize + len].to_vec()
}

pub const SPINNER: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "run") (loop $l (br $l))))"#;

/// Counts to `n` in a loop, then returns.
pub fn counter(n: u32) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "run") (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const {n}))))))"#
    )
}

pub fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// An agent that waits for a message forever: what an idle agent looks like.
pub fn idle_agent(pages: u32) -> String {
    let recv = recv_req(true);
    format!(
        r#"(module {imports}
  (memory (export "memory") {pages})
  (data (i32.const 16) "{req}")
  (func (export "run")
    (loop $l
      (drop (call $recv (i32.const 16) (i32.const {len}) (i32.const 1024) (i32.const 1024)))
      (br $l))))"#,
        imports = all_imports(),
        req = escape(&recv),
        len = recv.len()
    )
}

/// Sends to `peer` and waits for the answer, `rounds` times (`first`), or the other way
/// round.
pub fn ping_pong_agent(peer: &str, rounds: u32, first: bool, payload: &str) -> String {
    let send = send_req(peer, payload);
    let recv = recv_req(true);
    let send_call = format!(
        "(drop (call $send (i32.const 4096) (i32.const {}) (i32.const 0) (i32.const 0)))",
        send.len()
    );
    let recv_call = format!(
        "(drop (call $recv (i32.const 2048) (i32.const {}) (i32.const 8192) (i32.const 8192)))",
        recv.len()
    );
    let (a, b) = if first {
        (&send_call, &recv_call)
    } else {
        (&recv_call, &send_call)
    };
    format!(
        r#"(module {imports}
  (memory (export "memory") 1)
  (data (i32.const 2048) "{recv}")
  (data (i32.const 4096) "{send}")
  (func (export "run") (local $i i32)
    (loop $l
      {a}
      {b}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const {rounds}))))))"#,
        imports = all_imports(),
        recv = escape(&recv),
        send = escape(&send),
    )
}

/// Each round: ask `random` for a 256-byte plan, then call the function it names with the
/// arguments it holds. Plan: [0] function, [1] raw-pointer mode, [2..4] request length,
/// [4..6] response capacity, [8..24] four raw i32 arguments, [32..] the request.
pub fn fuzz_agent(rounds: u32) -> String {
    let mut dispatch = String::new();
    for (i, f) in ["infer", "tool_call", "send", "recv", "data_read", "log"]
        .iter()
        .enumerate()
    {
        dispatch.push_str(&format!(
            "(if (i32.eq (local.get $sel) (i32.const {i})) (then (drop (call ${f} (local.get $a) (local.get $b) (local.get $c) (local.get $d)))))\n"
        ));
    }
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (func (export "run") (local $i i32) (local $sel i32) (local $a i32) (local $b i32) (local $c i32) (local $d i32)
    (loop $l
      (drop (call $random (i32.const 0x1000) (i32.const 256)))
      (local.set $sel (i32.rem_u (i32.load8_u (i32.const 0x1000)) (i32.const 8)))
      (if (i32.load8_u (i32.const 0x1001))
        (then
          (local.set $a (i32.load (i32.const 0x1008)))
          (local.set $b (i32.load (i32.const 0x100c)))
          (local.set $c (i32.load (i32.const 0x1010)))
          (local.set $d (i32.load (i32.const 0x1014))))
        (else
          (local.set $a (i32.const 0x1020))
          (local.set $b (i32.load16_u (i32.const 0x1002)))
          (local.set $c (i32.const {OUT}))
          (local.set $d (i32.load16_u (i32.const 0x1004)))))
      {dispatch}
      (if (i32.eq (local.get $sel) (i32.const 6)) (then (drop (call $result_take (local.get $c) (local.get $d)))))
      (if (i32.eq (local.get $sel) (i32.const 7)) (then (drop (call $now))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const {rounds})))))
)"#,
        imports = all_imports()
    )
}
