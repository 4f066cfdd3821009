//! Agents in the real image ask the real model through the confidential-inference path:
//! agent → monitor (policy, provenance) → the monitor's proxy session (evidence checked
//! against the policy's pin, then TLS 1.3 pinned to the evidence's key) → the channel's
//! Inference stream → the launcher's relay (`omega run --proxy`) → a relay of this test
//! (records, or flips one byte) → the real `omega-proxy` serving the default model.
//!
//! Three boots: (1) the prompt reaches the model and the answer comes back equal to the
//! proxy's plain-port answer, the wire carries no prompt in cleartext, a model pinned to
//! another proxy is denied `target-pin` and a `phi`-labelled prompt to the `tee: none` proxy
//! is denied `flow:phi`; (2) a relay that flips one byte of the answer breaks the session:
//! the agent gets an error, later calls are denied, the monitor runs on and logs it;
//! (3) a proxy whose identity is not the pinned one (another model digest) is refused after
//! the 40-byte evidence request, before any prompt.
//!
//! Needs QEMU and the default model (`scripts/fetch-model.sh`): missing, a failure under
//! `CI`, else a loud skip.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omega_agent_abi as abi;
use omega_bundle::{AgentEntry, DataEntry, MANIFEST, Manifest};
use omega_host::session::SessionEvent;
use omega_host::{Bundle, FileLogStore, SessionConfig};
use omega_provenance::entry::{EntryIter, lifecycle};
use omega_provenance::{Action, Decision};
use qemu_tests::{Boot, EXIT_SUCCESS, Outcome, image};
use sha2::{Digest, Sha256};

const DENIED: i32 = -2;
const FAILED: i32 = -8;

const PROMPT: &str = "Name one colour of the sky. Secret marker 5c1e.";
const MAX_TOKENS: u32 = 12;

// ---------------------------------------------------------------------------------------
// The proxy, a relay, the direct answer

fn prerequisites() -> Option<PathBuf> {
    let qemu = std::env::var("OMEGA_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
    let found = Command::new(&qemu)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    omega_test_support::require(found.then_some(()), format!("{qemu} (scripts/setup.sh)"))?;
    let model = std::env::var_os("OMEGA_MODEL")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| Path::new(&h).join(".cache/omega/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
        });
    omega_test_support::require(
        model.filter(|m| m.is_file()),
        "the default model (run scripts/fetch-model.sh, or set OMEGA_MODEL)",
    )
}

/// `omega-proxy serve` on free ports.
struct Proxy {
    child: Child,
    plain: SocketAddr,
    tls: SocketAddr,
    /// The model id it serves and the identity it logged (hex).
    id: String,
    identity: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `omega-proxy` as built for this test profile, or `OMEGA_PROXY_BIN` (a binary built
/// earlier: building llama.cpp again takes minutes).
fn start_proxy(model: &Path) -> Proxy {
    let exe = std::env::var_os("OMEGA_PROXY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| qemu_tests::workspace_bin("omega-proxy", "omega-proxy"));
    let mut child = Command::new(exe)
        .args(["serve", "--model"])
        .arg(model)
        .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut plain, mut tls, mut id, mut identity) = (None, None, None, None);
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("serving ").nth(1)
                && let Some((i, a)) = rest.split_once(" on http://")
            {
                id = Some(i.to_string());
                plain = a.trim().parse::<SocketAddr>().ok();
            }
            if let Some(a) = line.split("evidence-bound TLS ").nth(1) {
                tls = a.trim().parse::<SocketAddr>().ok();
            }
            if let Some(i) = line.split("proxy \"sha256:").nth(1) {
                identity = i.get(..64).map(str::to_string);
            }
            if let (Some(p), Some(t), Some(i), Some(d)) = (plain, tls, &id, &identity) {
                let _ = tx.send((p, t, i.clone(), d.clone()));
                (plain, tls, id, identity) = (None, None, None, None);
            }
        }
    });
    let (plain, tls, id, identity) = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("omega-proxy printed its addresses and identity");
    Proxy {
        child,
        plain,
        tls,
        id,
        identity,
    }
}

/// The answer of the proxy's plain port to the request the monitor makes (greedy).
fn direct_answer(p: &Proxy, prompt: &str, max_tokens: u32) -> String {
    let body = serde_json::json!({
        "model": p.id, "messages": [{"role": "user", "content": prompt}],
        "stream": false, "max_tokens": max_tokens, "temperature": 0.0,
    })
    .to_string();
    let mut s = TcpStream::connect(p.plain).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (_, json) = resp.split_once("\r\n\r\n").unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The proxy's `/health` counter of completed requests.
fn completed(p: &Proxy) -> u64 {
    let mut s = TcpStream::connect(p.plain).unwrap();
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (_, json) = resp.split_once("\r\n\r\n").unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["completed"].as_u64().unwrap()
}

/// A TCP relay between the launcher and the proxy: records both directions; with `flip`,
/// flips the last byte of the first proxy→guest read after the guest sent a piece of at
/// least `flip` bytes (the chat request: the prompt is padded to be the largest).
struct Relay {
    addr: SocketAddr,
    to_proxy: Arc<Mutex<Vec<u8>>>,
    flipped: Arc<AtomicBool>,
}

fn relay(proxy: SocketAddr, flip: Option<usize>) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let to_proxy = Arc::new(Mutex::new(Vec::new()));
    let flipped = Arc::new(AtomicBool::new(false));
    let armed = Arc::new(AtomicBool::new(false));
    let (rec, fl) = (to_proxy.clone(), flipped.clone());
    std::thread::spawn(move || {
        let Ok((guest, _)) = listener.accept() else {
            return;
        };
        let upstream = TcpStream::connect(proxy).unwrap();
        let (mut g_in, mut g_out) = (guest.try_clone().unwrap(), guest);
        let (mut p_in, mut p_out) = (upstream.try_clone().unwrap(), upstream);
        let arm = armed.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = g_in.read(&mut buf) {
                if n == 0 {
                    break;
                }
                rec.lock().unwrap().extend_from_slice(&buf[..n]);
                if flip.is_some_and(|f| n >= f) {
                    arm.store(true, Ordering::SeqCst);
                }
                if p_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = p_out.shutdown(std::net::Shutdown::Write);
        });
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = p_in.read(&mut buf) {
            if n == 0 {
                break;
            }
            if armed.load(Ordering::SeqCst) && !fl.swap(true, Ordering::SeqCst) {
                buf[n - 1] ^= 0x01;
            }
            if g_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = g_out.shutdown(std::net::Shutdown::Write);
    });
    Relay {
        addr,
        to_proxy,
        flipped,
    }
}

// ---------------------------------------------------------------------------------------
// Agents: WAT scripts of host calls, each with the return it must see

enum Expect {
    Bytes(Vec<u8>),
    Code(i32),
    Positive,
}

struct Call {
    func: &'static str,
    request: Vec<u8>,
    expect: Expect,
}

const OUT: u32 = 0x20000;
const OUT_CAP: u32 = 0x10000;

/// An agent that makes `calls` in order and exits 0 if each returned what it must, else
/// with the failing call's number (+100 for a wrong length, +200 for wrong bytes).
fn script(calls: &[Call]) -> Vec<u8> {
    let mut data = String::new();
    let mut body = String::new();
    let mut at = 1024u32;
    let mut place = |bytes: &[u8], data: &mut String| {
        let start = at;
        let hex: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
        writeln!(data, "  (data (i32.const {start}) \"{hex}\")").unwrap();
        at += (bytes.len() as u32).div_ceil(16) * 16 + 16;
        assert!(at < OUT, "script data too large");
        start
    };
    for (i, c) in calls.iter().enumerate() {
        let n = i + 1;
        let req = place(&c.request, &mut data);
        writeln!(
            body,
            "    (local.set $r (call ${} (i32.const {req}) (i32.const {}) (i32.const {OUT}) (i32.const {OUT_CAP})))",
            c.func,
            c.request.len()
        )
        .unwrap();
        match &c.expect {
            Expect::Code(code) => writeln!(
                body,
                "    (if (i32.ne (local.get $r) (i32.const {code})) (then (call $exit (i32.const {n}))))"
            ),
            Expect::Positive => writeln!(
                body,
                "    (if (i32.le_s (local.get $r) (i32.const 0)) (then (call $exit (i32.const {n}))))"
            ),
            Expect::Bytes(b) => {
                let exp = place(b, &mut data);
                writeln!(
                    body,
                    "    (if (i32.ne (local.get $r) (i32.const {len})) (then (call $exit (i32.const {l}))))\n    (if (i32.eqz (call $eq (i32.const {OUT}) (i32.const {exp}) (i32.const {len}))) (then (call $exit (i32.const {w}))))",
                    len = b.len(),
                    l = 100 + n,
                    w = 200 + n
                )
            }
        }
        .unwrap();
    }
    let m = abi::MODULE;
    let wat = format!(
        r#"(module
  (import "{m}" "infer" (func $infer (param i32 i32 i32 i32) (result i32)))
  (import "{m}" "data_read" (func $data_read (param i32 i32 i32 i32) (result i32)))
  (import "{m}" "exit" (func $exit (param i32)))
  (memory (export "memory") 3)
{data}
  (func $eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $no
      (loop $l
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $no (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (i32.const 0))
  (func (export "run") (local $r i32)
{body}
    (call $exit (i32.const 0))))"#
    );
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
}

fn postcard<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut buf = vec![0u8; abi::MAX_RESPONSE + 64];
    abi::encode(v, &mut buf).unwrap().to_vec()
}

fn infer(model: &str, prompt: &str, expect: Expect) -> Call {
    Call {
        func: "infer",
        request: postcard(&abi::InferRequest {
            model,
            prompt,
            max_tokens: MAX_TOKENS,
        }),
        expect,
    }
}

fn read_record() -> Call {
    Call {
        func: "data_read",
        request: postcard(&abi::DataReadRequest {
            source: "ehr",
            path: "/patients/1",
            offset: 0,
            max_len: 1024,
        }),
        expect: Expect::Positive,
    }
}

// ---------------------------------------------------------------------------------------
// A boot and its verified log

#[derive(Debug)]
struct Logged {
    agent: u32,
    action: Action,
    target: u32,
    decision: Decision,
    rule: u32,
    content: Option<[u8; 32]>,
    name: Vec<u8>,
}

struct Run {
    out: Outcome,
    entries: Vec<Logged>,
}

impl Run {
    fn defined(&self, kind: u32, name: &str) -> Option<u32> {
        self.entries
            .iter()
            .find(|e| e.action == Action::Lifecycle && e.rule == kind && e.name == name.as_bytes())
            .map(|e| e.target)
    }

    fn assert_passed(&self, agent: &str) {
        let prefix = format!("omega: agent summary: {agent} ");
        let s = self
            .out
            .serial
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no summary for {agent}\n{}", self.out));
        assert!(s.contains("status=exited 0 "), "{s}\n{}", self.out);
    }

    /// The infer decisions of `agent` on `model`: (decision, rule name).
    fn infer_decisions(&self, agent: &str, model: &str) -> Vec<(Decision, String)> {
        let (Some(a), Some(t)) = (
            self.defined(lifecycle::DEFINE_AGENT, agent),
            self.defined(lifecycle::DEFINE_TARGET, model),
        ) else {
            return Vec::new();
        };
        self.entries
            .iter()
            .filter(|e| e.action == Action::Infer && e.agent == a && e.target == t)
            .map(|e| {
                let rule = self
                    .entries
                    .iter()
                    .find(|d| {
                        d.action == Action::Lifecycle
                            && d.rule == lifecycle::DEFINE_RULE
                            && d.target == e.rule
                    })
                    .map(|d| String::from_utf8_lossy(&d.name).into_owned())
                    .unwrap_or_default();
                (e.decision, rule)
            })
            .collect()
    }

    /// The `PROXY_SESSION` entries: (decision, content, name).
    fn proxy_sessions(&self) -> Vec<(Decision, Option<[u8; 32]>, String)> {
        self.entries
            .iter()
            .filter(|e| e.action == Action::Lifecycle && e.rule == lifecycle::PROXY_SESSION)
            .map(|e| {
                (
                    e.decision,
                    e.content,
                    String::from_utf8_lossy(&e.name).into_owned(),
                )
            })
            .collect()
    }
}

/// Boots the production image with `agents` under `policy` (plus one `phi` record as data
/// source `ehr`), the launcher relaying the Inference stream to `proxy`.
fn boot(policy: &str, agents: &[(&str, Vec<u8>)], proxy: SocketAddr) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_compiler::compile("inference.policy", policy, Path::new("."))
        .unwrap_or_else(|d| panic!("{}\n{policy}", d.render()))
        .to_bytes();
    let manifest = Manifest {
        tools: None,
        version: omega_bundle::MANIFEST_VERSION,
        policy: "policy.bin".into(),
        agents: agents
            .iter()
            .map(|(n, _)| AgentEntry::new(n, &format!("{n}.wasm")))
            .collect(),
        data: vec![DataEntry {
            source: "ehr".into(),
            path: "/patients/1".into(),
            file: "patient-1.txt".into(),
        }],
    };
    let bundle_dir = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle_dir).unwrap();
    std::fs::write(bundle_dir.join(MANIFEST), manifest.to_json()).unwrap();
    std::fs::write(bundle_dir.join("policy.bin"), policy).unwrap();
    std::fs::write(
        bundle_dir.join("patient-1.txt"),
        "id: P-1\ncomplaint: chest pain\n",
    )
    .unwrap();
    for (n, m) in agents {
        std::fs::write(bundle_dir.join(format!("{n}.wasm")), m).unwrap();
    }
    let log_dir = dir.path().join("run");
    std::fs::create_dir_all(&log_dir).unwrap();
    let config = SessionConfig {
        log_store: Some(Box::new(FileLogStore::open(&log_dir).unwrap())),
        bundle: Some(Bundle::read(&bundle_dir).unwrap()),
        challenge: Some(qemu_tests::fresh_challenge()),
        proxy: Some(proxy.to_string()),
        ..Default::default()
    };
    let boot = Boot::new(image()).timeout(Duration::from_secs(400));
    let (vm, session) =
        qemu_tests::boot_with_session(boot, &log_dir.join("channel.sock"), config).unwrap();
    let out = vm.finish().unwrap();
    let events = session.close();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::Shutdown { status: 0 })),
        "{events:?}"
    );
    assert!(!out.serial.contains("panic"), "{out}");
    let (cp, stored) = qemu_tests::verify_stored_log(&events, &log_dir);
    let mut entries = Vec::new();
    for e in EntryIter::new(&stored) {
        let (_, entry, _) = e.unwrap();
        entries.push(Logged {
            agent: entry.agent,
            action: entry.action,
            target: entry.target,
            decision: entry.decision,
            rule: entry.rule,
            content: entry.content,
            name: entry.name.unwrap_or_default().to_vec(),
        });
    }
    assert_eq!(entries.len() as u64, cp.size, "{out}");
    Run { out, entries }
}

fn agent_decl(name: &str, module: &[u8]) -> String {
    format!(
        "agent {name} {{ hash \"sha256:{:x}\" cleared [] }}\n",
        Sha256::digest(module)
    )
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// An identity the proxy does not have: same binary, another model digest.
const OTHER_IDENTITY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn policy(agents: &str, identity: &str) -> String {
    format!(
        "policy \"inference-test\"\n{agents}\
         model llm {{ proxy \"sha256:{identity}\" cleared [phi] }}\n\
         model other_llm {{ proxy \"sha256:{OTHER_IDENTITY}\" cleared [] }}\n\
         source ehr {{ labels [phi] }}\n\
         rule ask {{ allow infer llm when max_tokens <= 64 }}\n\
         rule ask_other {{ allow infer other_llm }}\n\
         rule read {{ allow read ehr }}\n"
    )
}

// ---------------------------------------------------------------------------------------
// The tests

/// Boot 1: the answer through agent → monitor → channel → TLS → proxy is the proxy's own
/// greedy answer; the relay saw no prompt; the session is in the log with the identity the
/// proxy logged; another model's pin is denied `target-pin`; a `phi` prompt is denied
/// `flow:phi` (the proxy says `tee: none`); the proxy completed exactly the one request.
#[test]
fn a_prompt_reaches_the_model_and_labelled_data_does_not() {
    let Some(model) = prerequisites() else {
        return;
    };
    let proxy = start_proxy(&model);
    let expected = direct_answer(&proxy, PROMPT, MAX_TOKENS);
    let before = completed(&proxy);
    let asker = script(&[
        infer(
            "llm",
            PROMPT,
            Expect::Bytes(postcard(&abi::InferResponse { text: &expected })),
        ),
        infer("other_llm", PROMPT, Expect::Code(DENIED)),
    ]);
    let reader = script(&[
        read_record(),
        infer("llm", "rate P-1", Expect::Code(DENIED)),
    ]);
    let src = policy(
        &(agent_decl("asker", &asker) + &agent_decl("reader", &reader)),
        &proxy.identity,
    );
    let r = relay(proxy.tls, None);
    let run = boot(&src, &[("asker", asker), ("reader", reader)], r.addr);
    run.assert_passed("asker");
    run.assert_passed("reader");
    assert!(
        run.out.serial.contains("omega: inference: proxy verified"),
        "{}",
        run.out
    );
    let sessions = run.proxy_sessions();
    assert_eq!(
        sessions[0],
        (
            Decision::Allow,
            Some(hex32(&proxy.identity)),
            "identity".into()
        ),
        "{sessions:?}"
    );
    assert_eq!(sessions[1].2, "evidence");
    assert_eq!(
        run.infer_decisions("asker", "llm"),
        [(Decision::Allow, "ask".into())]
    );
    assert_eq!(
        run.infer_decisions("asker", "other_llm"),
        [(Decision::Deny, "target-pin".into())]
    );
    assert_eq!(
        run.infer_decisions("reader", "llm"),
        [(Decision::Deny, "flow:phi".into())]
    );
    let wire = r.to_proxy.lock().unwrap().clone();
    // Evidence request, handshake, the model listing and the prompt went through.
    assert!(wire.len() > 400, "{}", wire.len());
    assert!(!wire.windows(16).any(|w| w == &PROMPT.as_bytes()[..16]));
    assert!(!wire.windows(3).any(|w| w == b"P-1"));
    assert_eq!(completed(&proxy), before + 1);
}

/// Boot 2: one flipped byte in the answer's ciphertext breaks the session: the waiting agent
/// gets `Failed`; its next call is denied `target-pin` (no live session proves the pinned
/// identity any more); the monitor runs on, shuts down cleanly and logs the break
/// (`PROXY_SESSION`, error).
#[test]
fn a_relay_flipping_a_byte_breaks_the_session_cleanly() {
    let Some(model) = prerequisites() else {
        return;
    };
    let proxy = start_proxy(&model);
    // Padded so the chat request is the guest's one large send (what arms the flip).
    let long = format!("{PROMPT} {}", "Please answer briefly. ".repeat(60));
    let asker = script(&[
        infer("llm", &long, Expect::Code(FAILED)),
        infer("llm", PROMPT, Expect::Code(DENIED)),
    ]);
    let src = policy(&agent_decl("asker", &asker), &proxy.identity);
    let r = relay(proxy.tls, Some(1200));
    let run = boot(&src, &[("asker", asker)], r.addr);
    assert!(r.flipped.load(Ordering::SeqCst), "nothing flipped");
    run.assert_passed("asker");
    let sessions = run.proxy_sessions();
    assert_eq!(sessions[0].0, Decision::Allow, "{sessions:?}");
    let broken = sessions.last().unwrap();
    assert_eq!(broken.0, Decision::Error, "{sessions:?}");
    assert!(broken.2.starts_with("broken: "), "{sessions:?}");
    assert_eq!(
        run.infer_decisions("asker", "llm"),
        [
            (Decision::Allow, "ask".into()),
            (Decision::Deny, "target-pin".into())
        ]
    );
    assert!(
        run.out
            .serial
            .contains("omega: inference: proxy session broken"),
        "{}",
        run.out
    );
}

/// Boot 3: the policy pins another identity (another model digest): the evidence is refused
/// after the 40-byte request, nothing else leaves, the agent is denied `target-pin`, the
/// refusal is logged (`PROXY_SESSION`, deny).
#[test]
fn a_proxy_that_is_not_the_pinned_one_is_refused_before_any_prompt() {
    let Some(model) = prerequisites() else {
        return;
    };
    let proxy = start_proxy(&model);
    let before = completed(&proxy);
    let asker = script(&[infer("llm", PROMPT, Expect::Code(DENIED))]);
    let src = policy(&agent_decl("asker", &asker), OTHER_IDENTITY);
    let r = relay(proxy.tls, None);
    let run = boot(&src, &[("asker", asker)], r.addr);
    run.assert_passed("asker");
    assert_eq!(r.to_proxy.lock().unwrap().len(), 40);
    let sessions = run.proxy_sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].0, Decision::Deny);
    assert!(sessions[0].2.starts_with("refused: "), "{sessions:?}");
    assert_eq!(
        run.infer_decisions("asker", "llm"),
        [(Decision::Deny, "target-pin".into())]
    );
    assert_eq!(completed(&proxy), before);
}
