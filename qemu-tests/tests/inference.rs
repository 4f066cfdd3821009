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
//! The session is set up before the monitor issues its evidence, which then claims the
//! proved proxy as the `model:<name>` principal: boot 1 verifies that claim with
//! `measurements verify-evidence --expect-proxy` (and refuses it edited, or for another
//! proxy); boot 3 shows no claim for a refused proxy.
//!
//! Needs QEMU and the default model (`scripts/fetch-model.sh`): missing, a failure under
//! `CI`, else a loud skip.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omega_agent_abi as abi;
use omega_bundle::{AgentEntry, DataEntry, MANIFEST, Manifest};
use omega_host::{Bundle, FileLogStore, SessionConfig};
use omega_provenance::entry::lifecycle;
use omega_provenance::{Action, Decision};
use qemu_tests::script::{EQ_FUNC, Expect, Step, postcard, script};
use qemu_tests::verified_run::{Run, run_session};
use qemu_tests::{Boot, image};
use sha2::{Digest, Sha256};

const DENIED: i32 = -2;
const FAILED: i32 = -8;

const PROMPT: &str = "Name one colour of the sky. Secret marker 5c1e.";
const MAX_TOKENS: u32 = 12;

// ---------------------------------------------------------------------------------------
// The proxy, a relay, the direct answer

fn prerequisites() -> Option<PathBuf> {
    if !qemu_tests::qemu_present() {
        return None;
    }
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
// Agents: WAT scripts of host calls (`qemu_tests::script`), each with the return it must see

fn infer(model: &str, prompt: &str, expect: Expect) -> Step {
    Step::Call {
        func: "infer",
        request: postcard(&abi::InferRequest {
            model,
            prompt,
            max_tokens: MAX_TOKENS,
        }),
        expect,
    }
}

fn read_record() -> Step {
    Step::Call {
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

/// An agent that streams `rounds` answers to `request` (an encoded `InferRequest`) with
/// `infer_stream` / `infer_next`, gathering each answer's text. With `expect`, every answer
/// must equal it (exit 20 + wrong length, 21 wrong bytes); otherwise each round logs
/// `bench round=R ttft_ms=.. total_ms=.. tokens=.. bytes=.. batches=..` measured with the
/// monitor's clock from just before `infer_stream` (the agent's view: policy, log, channel,
/// TLS, proxy, and back). Exits 10-13 on a failed call.
fn stream_agent(request: &[u8], rounds: u32, expect: Option<&str>) -> Vec<u8> {
    const REQ: u32 = 1024;
    const HANDLE: u32 = 512;
    const LOGBUF: u32 = 768;
    const EXP: u32 = 0x8000;
    const OUT: u32 = 0x10000;
    const OUT_CAP: u32 = 0x10000;
    const ACC: u32 = 0x20000;
    const ACC_CAP: u32 = 0x10000;
    let hex = |b: &[u8]| b.iter().map(|b| format!("\\{b:02x}")).collect::<String>();
    let (exp, exp_len) = expect.map_or((String::new(), 0), |e| (hex(e.as_bytes()), e.len()));
    let check = if expect.is_some() {
        format!(
            "(if (i32.ne (local.get $acc) (i32.const {exp_len})) (then (call $exit (i32.const 20))))
      (if (i32.eqz (call $eq (i32.const {ACC}) (i32.const {EXP}) (i32.const {exp_len}))) (then (call $exit (i32.const 21))))"
        )
    } else {
        format!(
            "(global.set $pos (i32.const {text}))
      (call $put (i32.const 0) (i32.const 12)) (call $num (i64.extend_i32_u (local.get $round)))
      (call $put (i32.const 12) (i32.const 9)) (call $num (i64.sub (local.get $tf) (local.get $t0)))
      (call $put (i32.const 21) (i32.const 10)) (call $num (i64.sub (local.get $te) (local.get $t0)))
      (call $put (i32.const 31) (i32.const 8)) (call $num (i64.extend_i32_s (local.get $tok)))
      (call $put (i32.const 39) (i32.const 7)) (call $num (i64.extend_i32_u (local.get $acc)))
      (call $put (i32.const 46) (i32.const 9)) (call $num (i64.extend_i32_u (local.get $batches)))
      (i32.store8 (i32.const {LOGBUF}) (i32.const 2))
      (i32.store8 (i32.const {len_at}) (i32.sub (global.get $pos) (i32.const {text})))
      (drop (call $log (i32.const {LOGBUF}) (i32.sub (global.get $pos) (i32.const {LOGBUF})) (i32.const {OUT}) (i32.const 0)))",
            text = LOGBUF + 2,
            len_at = LOGBUF + 1,
        )
    };
    let m = abi::MODULE;
    let wat = format!(
        r#"(module
  (import "{m}" "infer_stream" (func $infer_stream (param i32 i32 i32 i32) (result i32)))
  (import "{m}" "infer_next" (func $infer_next (param i32 i32 i32 i32) (result i32)))
  (import "{m}" "log" (func $log (param i32 i32 i32 i32) (result i32)))
  (import "{m}" "now" (func $now (result i64)))
  (import "{m}" "exit" (func $exit (param i32)))
  (memory (export "memory") 3)
  (data (i32.const 0) "bench round= ttft_ms= total_ms= tokens= bytes= batches=")
  (data (i32.const {REQ}) "{req}")
  (data (i32.const {EXP}) "{exp}")
  (global $vlen (mut i32) (i32.const 0))
  (global $pos (mut i32) (i32.const 0))
  (func $copy (param $d i32) (param $s i32) (param $n i32)
    (block $x (loop $l
      (br_if $x (i32.eqz (local.get $n)))
      (i32.store8 (local.get $d) (i32.load8_u (local.get $s)))
      (local.set $d (i32.add (local.get $d) (i32.const 1)))
      (local.set $s (i32.add (local.get $s) (i32.const 1)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l))))
{EQ_FUNC}
  ;; A postcard varint (u32) at $p; its length in $vlen.
  (func $varint (param $p i32) (result i32) (local $v i32) (local $i i32) (local $b i32)
    (loop $l
      (local.set $b (i32.load8_u (i32.add (local.get $p) (local.get $i))))
      (local.set $v (i32.or (local.get $v)
        (i32.shl (i32.and (local.get $b) (i32.const 127)) (i32.mul (local.get $i) (i32.const 7)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.and (i32.lt_u (local.get $i) (i32.const 5)) (i32.ne (i32.and (local.get $b) (i32.const 128)) (i32.const 0)))))
    (global.set $vlen (local.get $i))
    (local.get $v))
  (func $put (param $s i32) (param $n i32)
    (call $copy (global.get $pos) (local.get $s) (local.get $n))
    (global.set $pos (i32.add (global.get $pos) (local.get $n))))
  ;; Decimal digits of $v (negative: "-1") at $pos.
  (func $num (param $v i64) (local $tmp i32)
    (if (i64.lt_s (local.get $v) (i64.const 0)) (then
      (i32.store8 (global.get $pos) (i32.const 45))
      (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
      (local.set $v (i64.sub (i64.const 0) (local.get $v)))))
    (local.set $tmp (i32.const 128))
    (loop $l
      (local.set $tmp (i32.sub (local.get $tmp) (i32.const 1)))
      (i32.store8 (local.get $tmp) (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $l (i64.ne (local.get $v) (i64.const 0))))
    (call $put (local.get $tmp) (i32.sub (i32.const 128) (local.get $tmp))))
  (func (export "run")
    (local $r i32) (local $round i32) (local $hl i32) (local $acc i32) (local $n i32)
    (local $hdr i32) (local $p i32) (local $tok i32) (local $batches i32)
    (local $t0 i64) (local $tf i64) (local $te i64)
    (block $finish (loop $rounds
      (br_if $finish (i32.ge_u (local.get $round) (i32.const {rounds})))
      (local.set $t0 (call $now))
      (local.set $tf (i64.const -1))
      (local.set $r (call $infer_stream (i32.const {REQ}) (i32.const {req_len}) (i32.const {OUT}) (i32.const {OUT_CAP})))
      (if (i32.le_s (local.get $r) (i32.const 0)) (then (call $exit (i32.const 10))))
      ;; InferStream and InferNextRequest encode alike: the handle's bytes are the request.
      (call $copy (i32.const {HANDLE}) (i32.const {OUT}) (local.get $r))
      (local.set $hl (local.get $r))
      (local.set $acc (i32.const 0))
      (local.set $batches (i32.const 0))
      (local.set $tok (i32.const -1))
      (loop $next
        (local.set $r (call $infer_next (i32.const {HANDLE}) (local.get $hl) (i32.const {OUT}) (i32.const {OUT_CAP})))
        (if (i32.lt_s (local.get $r) (i32.const 0)) (then (call $exit (i32.const 11))))
        (if (i32.gt_s (local.get $r) (i32.const {OUT_CAP})) (then (call $exit (i32.const 12))))
        (local.set $n (call $varint (i32.const {OUT})))
        (local.set $hdr (global.get $vlen))
        (if (i32.gt_u (i32.add (local.get $acc) (local.get $n)) (i32.const {ACC_CAP})) (then (call $exit (i32.const 13))))
        (if (i32.gt_u (local.get $n) (i32.const 0)) (then
          (if (i64.lt_s (local.get $tf) (i64.const 0)) (then (local.set $tf (call $now))))
          (local.set $batches (i32.add (local.get $batches) (i32.const 1)))))
        (call $copy (i32.add (i32.const {ACC}) (local.get $acc)) (i32.add (i32.const {OUT}) (local.get $hdr)) (local.get $n))
        (local.set $acc (i32.add (local.get $acc) (local.get $n)))
        (local.set $p (i32.add (i32.add (i32.const {OUT}) (local.get $hdr)) (local.get $n)))
        (br_if $next (i32.eqz (i32.load8_u (local.get $p)))))
      (local.set $te (call $now))
      (if (i32.load8_u (i32.add (local.get $p) (i32.const 1)))
        (then (local.set $tok (call $varint (i32.add (local.get $p) (i32.const 2))))))
      {check}
      (local.set $round (i32.add (local.get $round) (i32.const 1)))
      (br $rounds)))
    (call $exit (i32.const 0))))"#,
        req = hex(request),
        req_len = request.len(),
    );
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
}

// ---------------------------------------------------------------------------------------
// A boot and its verified log

/// A verified run and what the evidence checks need: the launcher's log directory (kept
/// until the test ends) and the challenge nonce.
struct Booted {
    run: Run,
    dir: tempfile::TempDir,
    nonce: [u8; 32],
}

impl std::ops::Deref for Booted {
    type Target = Run;
    fn deref(&self) -> &Run {
        &self.run
    }
}

impl Booted {
    /// The stored evidence file of `principal` (`model:llm` → `evidence/model_llm.bin`).
    fn evidence(&self, principal: &str) -> PathBuf {
        self.dir
            .path()
            .join("run/evidence")
            .join(format!("{}.bin", principal.replace(':', "_")))
    }

    /// `measurements verify-evidence` of `principal`'s stored evidence with this run's nonce
    /// (plain QEMU: unattested) and `extra` flags: (exit success, stdout + stderr).
    fn verify_evidence(&self, principal: &str, file: &Path, extra: &[&str]) -> (bool, String) {
        let nonce: String = self.nonce.iter().map(|b| format!("{b:02x}")).collect();
        let mut args = vec![
            "verify-evidence".to_string(),
            "--evidence".into(),
            file.display().to_string(),
            "--principal".into(),
            principal.into(),
            "--nonce".into(),
            nonce,
            "--allow-unattested".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        // Built (a cargo run) once per test process, not per check.
        static MEASUREMENTS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        let exe =
            MEASUREMENTS.get_or_init(|| qemu_tests::workspace_bin("measurements", "measurements"));
        let o = Command::new(exe).args(&args).output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    }
}

/// What these tests read from a run beyond [`Run`]'s own helpers.
trait InferenceRun {
    /// The infer decisions of `agent` on `model`: (decision, rule name).
    fn infer_decisions(&self, agent: &str, model: &str) -> Vec<(Decision, String)>;
    /// The `PROXY_SESSION` entries: (decision, content, name).
    fn proxy_sessions(&self) -> Vec<(Decision, Option<[u8; 32]>, String)>;
    /// The `MODEL_CLAIM` entries: (decision, content, name).
    fn model_claims(&self) -> Vec<(Decision, Option<[u8; 32]>, String)>;
    /// Index in the log of the first lifecycle entry `rule` with `decision`.
    fn position(&self, rule: u32, decision: Decision) -> Option<usize>;
    /// The lifecycle entries of one kind: (decision, content, name).
    fn lifecycle(&self, kind: u32) -> Vec<(Decision, Option<[u8; 32]>, String)>;
}

impl InferenceRun for Run {
    fn infer_decisions(&self, agent: &str, model: &str) -> Vec<(Decision, String)> {
        self.decisions_on(Action::Infer, agent, model)
            .into_iter()
            .map(|(decision, rule, _)| (decision, rule))
            .collect()
    }

    fn proxy_sessions(&self) -> Vec<(Decision, Option<[u8; 32]>, String)> {
        self.lifecycle(lifecycle::PROXY_SESSION)
    }

    fn model_claims(&self) -> Vec<(Decision, Option<[u8; 32]>, String)> {
        self.lifecycle(lifecycle::MODEL_CLAIM)
    }

    fn position(&self, rule: u32, decision: Decision) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.action == Action::Lifecycle && e.rule == rule && e.decision == decision)
    }

    /// The lifecycle entries of one kind: (decision, content, name).
    fn lifecycle(&self, kind: u32) -> Vec<(Decision, Option<[u8; 32]>, String)> {
        self.entries
            .iter()
            .filter(|e| e.action == Action::Lifecycle && e.rule == kind)
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
fn boot(policy: &str, agents: &[(&str, Vec<u8>)], proxy: SocketAddr) -> Booted {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_compiler::compile("inference.policy", policy, Path::new("."))
        .unwrap_or_else(|d| panic!("{}\n{policy}", d.render()))
        .to_bytes();
    let manifest = Manifest {
        tools: None,
        fleet: None,
        coordinator: None,
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
    let challenge = qemu_tests::fresh_challenge();
    let nonce = challenge.nonce;
    let config = SessionConfig {
        log_store: Some(Box::new(FileLogStore::open(&log_dir).unwrap())),
        bundle: Some(Bundle::read(&bundle_dir).unwrap()),
        challenge: Some(challenge),
        proxy: Some(proxy.to_string()),
        ..Default::default()
    };
    let boot = Boot::new(image()).timeout(Duration::from_secs(400));
    let run = run_session(boot, &log_dir, config);
    assert!(!run.out.serial.contains("panic"), "{}", run.out);
    Booted { run, dir, nonce }
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
/// greedy answer, whole (`infer`) and streamed (`infer_stream`, another agent on the same
/// session); the relay saw no prompt; the session is in the log with the identity the
/// proxy logged; another model's pin is denied `target-pin`; a `phi` prompt is denied
/// `flow:phi` (the proxy says `tee: none`); a model pinned to the same proxy that requires
/// GPU evidence (`gpu { measurement … }`) is refused for it (`PROXY_REFUSED`: the proxy
/// says `gpu: none`) and its call denied `gpu-evidence`, no prompt sent; the proxy
/// completed exactly the two requests.
#[test]
fn a_prompt_reaches_the_model_and_labelled_data_does_not() {
    let Some(model) = prerequisites() else {
        return;
    };
    let proxy = start_proxy(&model);
    // The model file's SHA-256 (what `--expect-model-digest` expects), hashed while it boots.
    let model_digest = std::thread::spawn(move || {
        Sha256::digest(std::fs::read(&model).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    });
    let expected = direct_answer(&proxy, PROMPT, MAX_TOKENS);
    let before = completed(&proxy);
    let asker = script(&[
        infer(
            "llm",
            PROMPT,
            Expect::Bytes(postcard(&abi::InferResponse { text: &expected })),
        ),
        infer("other_llm", PROMPT, Expect::Code(DENIED)),
        infer("gpu_llm", PROMPT, Expect::Code(DENIED)),
    ]);
    let reader = script(&[
        read_record(),
        infer("llm", "rate P-1", Expect::Code(DENIED)),
    ]);
    // A second agent on the same session, streaming: its pieces add up to the same answer.
    let streamer = stream_agent(
        &postcard(&abi::InferRequest {
            model: "llm",
            prompt: PROMPT,
            max_tokens: MAX_TOKENS,
        }),
        1,
        Some(&expected),
    );
    let src = policy(
        &(agent_decl("asker", &asker)
            + &agent_decl("reader", &reader)
            + &agent_decl("streamer", &streamer)),
        &proxy.identity,
    ) + &format!(
        // The same proxy, required to show a confidential GPU (any reference value: the
        // real proxy has no GPU and says so).
        "model gpu_llm {{ proxy \"sha256:{}\" gpu {{ measurement 1 \"{}\" }} }}\n\
         rule ask_gpu {{ allow infer gpu_llm }}\n",
        proxy.identity,
        "ab".repeat(48)
    );
    let r = relay(proxy.tls, None);
    let run = boot(
        &src,
        &[("asker", asker), ("reader", reader), ("streamer", streamer)],
        r.addr,
    );
    run.assert_passed("asker");
    run.assert_passed("reader");
    run.assert_passed("streamer");
    assert_eq!(
        run.infer_decisions("streamer", "llm"),
        [(Decision::Allow, "ask".into())]
    );
    // One session for both agents: one evidence request on the wire, one `PROXY_SESSION`.
    assert_eq!(
        run.proxy_sessions()
            .iter()
            .filter(|s| s.2 == "identity")
            .count(),
        1
    );
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
    // The GPU requirement: refused for that model at the session's start, denied per call.
    let refused = run.lifecycle(lifecycle::PROXY_REFUSED);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, Decision::Deny);
    assert_eq!(refused[0].1, Some(hex32(&proxy.identity)));
    assert!(
        refused[0]
            .2
            .starts_with("gpu_llm: the policy requires a confidential GPU"),
        "{refused:?}"
    );
    assert_eq!(
        run.infer_decisions("asker", "gpu_llm"),
        [(Decision::Deny, "gpu-evidence".into())]
    );
    let wire = r.to_proxy.lock().unwrap().clone();
    // Evidence request, handshake, the model listing and the prompt went through.
    assert!(wire.len() > 400, "{}", wire.len());
    assert!(!wire.windows(16).any(|w| w == &PROMPT.as_bytes()[..16]));
    assert!(!wire.windows(3).any(|w| w == b"P-1"));
    assert_eq!(
        wire.windows(8).filter(|w| w == b"OPEVREQ1").count(),
        1,
        "one session"
    );
    assert_eq!(completed(&proxy), before + 2);
    the_proxy_is_a_principal_of_the_evidence(&run, &proxy, model_digest);
}

/// Boot 1, continued: the session came up before the evidence, which claims the proxy as
/// `model:llm` (and not `other_llm`, pinned to another proxy, nor `gpu_llm`, refused for want
/// of a GPU); the model provider's
/// `measurements verify-evidence --expect-proxy` (the identity the proxy logged) and
/// `--expect-model-digest` (the model file's SHA-256) pass; a verifier expecting another
/// proxy fails; the claim edited in the file fails the tree; no evidence for `other_llm`
/// says there is no claim for it.
fn the_proxy_is_a_principal_of_the_evidence(
    run: &Booted,
    proxy: &Proxy,
    model_digest: std::thread::JoinHandle<String>,
) {
    let identity = hex32(&proxy.identity);
    let session = run.position(lifecycle::PROXY_SESSION, Decision::Allow);
    let evidence = run.position(lifecycle::EVIDENCE, Decision::Allow);
    assert!(
        session.is_some() && session < evidence,
        "the session is up before the evidence: {session:?} {evidence:?}"
    );
    let claims = run.model_claims();
    assert_eq!(
        claims[..2],
        [
            (Decision::Allow, Some(identity), "llm".into()),
            (
                Decision::Error,
                None,
                "other_llm: pinned to another proxy".into()
            )
        ]
    );
    // `gpu_llm` pins the same proxy, which was refused for it (no GPU): not claimed either.
    assert_eq!(claims.len(), 3, "{claims:?}");
    assert_eq!(claims[2].0, Decision::Error);
    assert!(
        claims[2]
            .2
            .starts_with("gpu_llm: refused for it: the policy requires a confidential GPU"),
        "{claims:?}"
    );
    assert!(!run.evidence("model:gpu_llm").exists());
    let model_digest = model_digest.join().unwrap();
    let file = run.evidence("model:llm");
    let genuine = format!("sha256:{}", proxy.identity);
    let model_flag = format!("sha256:{model_digest}");
    let (ok, v) = run.verify_evidence(
        "model:llm",
        &file,
        &[
            "--expect-proxy",
            &genuine,
            "--expect-model-digest",
            &model_flag,
        ],
    );
    assert!(ok, "{v}");
    assert!(
        v.contains("VERIFIED (UNATTESTED PLATFORM) claim of model:llm"),
        "{v}"
    );
    assert!(v.contains("PASS model.proxy"), "{v}");
    assert!(v.contains("PASS model.digest"), "{v}");
    // A verifier who expects another proxy: refused, naming the one that answered.
    let other = format!("sha256:{OTHER_IDENTITY}");
    let (ok, v) = run.verify_evidence("model:llm", &file, &["--expect-proxy", &other]);
    assert!(!ok, "{v}");
    assert!(v.contains("FAIL model.proxy"), "{v}");
    // The host edits the claim in the evidence file to name another proxy: the leaf is no
    // longer in the attested tree.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(32)
        .position(|w| w == identity)
        .expect("the identity is in the leaf");
    bytes[at..at + 32].copy_from_slice(&hex32(OTHER_IDENTITY));
    let edited = run.dir.path().join("model_llm.edited.bin");
    std::fs::write(&edited, &bytes).unwrap();
    let (ok, v) = run.verify_evidence("model:llm", &edited, &["--expect-proxy", &other]);
    assert!(!ok, "{v}");
    assert!(v.contains("FAIL inclusion"), "{v}");
    // `other_llm` is pinned to a proxy that did not answer: no claim, no evidence, and the
    // verifier says so.
    let missing = run.evidence("model:other_llm");
    assert!(!missing.exists());
    let (ok, v) = run.verify_evidence("model:other_llm", &missing, &["--expect-proxy", &other]);
    assert!(!ok, "{v}");
    assert!(v.contains("issued no claim for this principal"), "{v}");
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
    // The session was up when the evidence was issued (the flip came later): claimed.
    assert_eq!(run.model_claims()[0].2, "llm");
    assert!(run.evidence("model:llm").is_file());
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
    // The host put another proxy than the pinned one behind the stream: the evidence, issued
    // after the refusal, claims no model, the log says why, and a verifier expecting the
    // pinned proxy finds no claim.
    let claims = run.model_claims();
    assert_eq!(claims.len(), 2, "{claims:?}");
    assert!(
        claims
            .iter()
            .all(|c| c.0 == Decision::Error && c.2.contains(": no proxy session (")),
        "{claims:?}"
    );
    assert!(run.position(lifecycle::EVIDENCE, Decision::Allow).is_some());
    let missing = run.evidence("model:llm");
    assert!(!missing.exists());
    let pinned = format!("sha256:{OTHER_IDENTITY}");
    let (ok, v) = run.verify_evidence("model:llm", &missing, &["--expect-proxy", &pinned]);
    assert!(!ok, "{v}");
    assert!(v.contains("issued no claim for this principal"), "{v}");
}

// ---------------------------------------------------------------------------------------
// The benchmark: the guest path against the proxy's plain port, in one run

/// One streamed answer, timed.
#[derive(Debug, Clone, Copy)]
struct Timed {
    ttft_ms: f64,
    total_ms: f64,
    tokens: u64,
}

impl Timed {
    fn end_to_end(&self) -> f64 {
        self.tokens as f64 * 1000.0 / self.total_ms
    }
    /// Tokens after the first, over the time after the first.
    fn decode(&self) -> f64 {
        (self.tokens.saturating_sub(1)) as f64 * 1000.0 / (self.total_ms - self.ttft_ms).max(1.0)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The request the monitor makes, streamed, on the proxy's plain port: TTFT to the first
/// event with text, total to `[DONE]`, tokens from the usage chunk.
fn direct_stream(p: &Proxy, prompt: &str, max_tokens: u32) -> (Timed, String) {
    let body = serde_json::json!({
        "model": p.id, "messages": [{"role": "user", "content": prompt}],
        "stream": true, "stream_options": {"include_usage": true},
        "max_tokens": max_tokens, "temperature": 0.0,
    })
    .to_string();
    let mut s = TcpStream::connect(p.plain).unwrap();
    s.set_nodelay(true).unwrap();
    let t0 = std::time::Instant::now();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let (mut buf, mut scanned) = (Vec::new(), 0);
    let (mut ttft, mut total, mut tokens, mut text) = (None, None, 0, String::new());
    let mut chunk = [0u8; 16384];
    while total.is_none() {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the proxy closed before [DONE]");
        buf.extend_from_slice(&chunk[..n]);
        while let Some(eol) = buf[scanned..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&buf[scanned..scanned + eol]).into_owned();
            scanned += eol + 1;
            let Some(data) = line.trim_end().strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                total = Some(t0.elapsed());
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            if let Some(t) = v["choices"][0]["delta"]["content"].as_str()
                && !t.is_empty()
            {
                ttft.get_or_insert_with(|| t0.elapsed());
                text.push_str(t);
            }
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                tokens = n;
            }
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        Timed {
            ttft_ms: ms(ttft.unwrap()),
            total_ms: ms(total.unwrap()),
            tokens,
        },
        text,
    )
}

/// The agent's `bench round=…` lines.
fn guest_rounds(serial: &str) -> Vec<(u32, Timed, u64, u64)> {
    serial
        .lines()
        .filter_map(|l| {
            let l = l.split("\"bench ").nth(1)?.trim_end_matches('"');
            let field = |k: &str| -> Option<i64> {
                l.split(' ')
                    .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))?
                    .parse()
                    .ok()
            };
            Some((
                u32::try_from(field("round")?).ok()?,
                Timed {
                    ttft_ms: field("ttft_ms")? as f64,
                    total_ms: field("total_ms")? as f64,
                    tokens: u64::try_from(field("tokens")?).ok()?,
                },
                u64::try_from(field("bytes")?).ok()?,
                u64::try_from(field("batches")?).ok()?,
            ))
        })
        .collect()
}

/// A relay between the launcher and the proxy that timestamps every read: where the guest
/// path's time goes (the proxy's own pace, seen on the wire, against what the agent saw).
struct TimedRelay {
    addr: SocketAddr,
    /// (when, from the guest?, bytes) per read.
    reads: Arc<Mutex<Vec<(std::time::Instant, bool, usize)>>>,
}

fn timed_relay(proxy: SocketAddr) -> TimedRelay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reads = Arc::new(Mutex::new(Vec::new()));
    let log = reads.clone();
    std::thread::spawn(move || {
        let Ok((guest, _)) = listener.accept() else {
            return;
        };
        let upstream = TcpStream::connect(proxy).unwrap();
        let _ = (guest.set_nodelay(true), upstream.set_nodelay(true));
        let pump =
            move |mut from: TcpStream, mut to: TcpStream, up: bool, log: Arc<Mutex<Vec<_>>>| {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    log.lock().unwrap().push((std::time::Instant::now(), up, n));
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Write);
            };
        let (g2, p2) = (guest.try_clone().unwrap(), upstream.try_clone().unwrap());
        let l2 = log.clone();
        std::thread::spawn(move || pump(g2, p2, true, l2));
        pump(upstream, guest, false, log);
    });
    TimedRelay { addr, reads }
}

/// Per chat request the guest sent (a guest→proxy read of at least `min` bytes), seen on
/// the wire between the launcher and the proxy: the time to the proxy's second read after
/// the request (the first carries the response head and the empty role chunk, sent before
/// the prompt is evaluated; the second the first token: the sizes are printed so a run
/// shows it), and to the proxy's last bytes before the next request. In ms, as [`Timed`]
/// (tokens left 0), with the sizes of the first three reads.
fn wire_rounds(
    reads: &[(std::time::Instant, bool, usize)],
    min: usize,
) -> Vec<(Timed, Vec<usize>)> {
    let mut out = Vec::new();
    // (request time, reads after it: (ms, bytes)).
    let mut cur: Option<(std::time::Instant, Vec<(f64, usize)>)> = None;
    let finish = |cur: Option<(std::time::Instant, Vec<(f64, usize)>)>, out: &mut Vec<_>| {
        if let Some((_, r)) = cur
            && r.len() >= 2
        {
            out.push((
                Timed {
                    ttft_ms: r[1].0,
                    total_ms: r[r.len() - 1].0,
                    tokens: 0,
                },
                r.iter().take(3).map(|x| x.1).collect(),
            ));
        }
    };
    for &(t, up, n) in reads {
        if up && n >= min {
            finish(cur.take(), &mut out);
            cur = Some((t, Vec::new()));
        } else if !up && let Some((start, r)) = cur.as_mut() {
            r.push(((t - *start).as_secs_f64() * 1000.0, n));
        }
    }
    finish(cur, &mut out);
    out
}

const BENCH_PROMPT: &str = "Write a short story about a lighthouse keeper and a storm.";

/// Tokens/s and time to first token through agent → monitor → channel → launcher relay →
/// TLS → `omega-proxy` → llama.cpp, against the same proxy's plain port (same process, model,
/// threads, prompt, `max_tokens`, greedy), in one run: direct rounds, one boot whose agent
/// streams its rounds, direct rounds again. The session's handshake (evidence, TLS 1.3,
/// model listing) is reported on its own. Opt-in (minutes of TCG):
/// `cargo test --release -p qemu-tests --test inference -- --ignored --nocapture bench`
/// (`OMEGA_BENCH_ROUNDS`, default 5; `OMEGA_BENCH_TOKENS`, default 128); scripts/bench.sh
/// runs it as the `inference` row.
#[test]
#[ignore = "benchmark; run with --ignored (scripts/bench.sh, ONLY=inference)"]
fn bench_guest_path_against_the_plain_port() {
    let Some(model) = prerequisites() else {
        return;
    };
    let env = |k: &str, d: u32| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let rounds = env("OMEGA_BENCH_ROUNDS", 5).max(1);
    let tokens = env("OMEGA_BENCH_TOKENS", 128);
    let proxy = start_proxy(&model);
    // Warm-up (page cache, llama.cpp's first decode), then direct rounds.
    let (_, direct_text) = direct_stream(&proxy, BENCH_PROMPT, tokens);
    let mut direct: Vec<Timed> = (0..rounds)
        .map(|_| direct_stream(&proxy, BENCH_PROMPT, tokens).0)
        .collect();
    // The agent's first round is its warm-up too.
    let req = postcard(&abi::InferRequest {
        model: "llm",
        prompt: BENCH_PROMPT,
        max_tokens: tokens,
    });
    let agent = stream_agent(&req, rounds + 1, None);
    let src = format!(
        "policy \"inference-bench\"\n{}model llm {{ proxy \"sha256:{}\" cleared [] }}\n\
         rule ask {{ allow infer llm }}\n",
        agent_decl("bench", &agent),
        proxy.identity
    );
    let wire = timed_relay(proxy.tls);
    let run = boot(&src, &[("bench", agent)], wire.addr);
    run.assert_passed("bench");
    direct.extend((0..rounds).map(|_| direct_stream(&proxy, BENCH_PROMPT, tokens).0));
    let lines = guest_rounds(&run.out.serial);
    assert_eq!(lines.len() as u32, rounds + 1, "{}", run.out);
    let guest: Vec<Timed> = lines[1..].iter().map(|l| l.1).collect();
    for (_, g, bytes, _) in &lines {
        assert_eq!(g.tokens, direct[0].tokens, "same answer length");
        assert_eq!(*bytes, direct_text.len() as u64, "same text");
    }
    let handshake = run
        .out
        .serial
        .lines()
        .find_map(|l| {
            l.split("omega: inference: session up in ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .expect("the monitor printed the handshake time");
    let batches = median(lines[1..].iter().map(|l| l.3 as f64).collect());
    // The chat requests are the guest's last sends over 200 bytes (the ClientHello is one
    // before them; the listing is smaller).
    let on_wire = wire_rounds(&wire.reads.lock().unwrap(), 200);
    assert!(on_wire.len() as u32 > rounds, "{on_wire:?}");
    let first_reads = on_wire[on_wire.len() - rounds as usize].1.clone();
    let on_wire: Vec<Timed> = on_wire[on_wire.len() - rounds as usize..]
        .iter()
        .zip(&guest)
        .map(|((w, _), g)| Timed {
            tokens: g.tokens,
            ..*w
        })
        .collect();
    let row = |name: &str, t: &[Timed]| {
        let ttft = median(t.iter().map(|x| x.ttft_ms).collect());
        let e2e = median(t.iter().map(Timed::end_to_end).collect());
        let dec = median(t.iter().map(Timed::decode).collect());
        println!(
            "{name:<7} ttft {ttft:9.2} ms   end-to-end {e2e:8.2} tok/s   decode {dec:8.2} tok/s"
        );
        (ttft, e2e, dec)
    };
    println!(
        "model {}, proxy threads 1, {} completion tokens, greedy, {rounds} guest rounds and {} direct rounds (medians)",
        proxy.id,
        direct[0].tokens,
        direct.len()
    );
    let d = row("direct", &direct);
    let g = row("guest", &guest);
    println!(
        "guest/direct: end-to-end {:.1} %, decode {:.1} %, ttft {:+.2} ms",
        100.0 * g.1 / d.1,
        100.0 * g.2 / d.2,
        g.0 - d.0
    );
    println!(
        "handshake (evidence, TLS 1.3, model listing; monitor clock): {handshake} ms; text crossed to the agent in {batches:.0} batches for {} tokens",
        direct[0].tokens
    );
    // Where the time goes: the same rounds seen on the wire between the launcher and the
    // proxy (the backend's own pace while the guest runs), against what the agent saw.
    println!("wire: the proxy's first reads of a round (bytes): {first_reads:?}");
    let w = row("wire", &on_wire);
    let per_round = |f: fn(&Timed, &Timed) -> f64| {
        median(guest.iter().zip(&on_wire).map(|(g, w)| f(g, w)).collect())
    };
    println!(
        "guest/wire, same rounds: end-to-end {:.1} %, ttft {:+.2} ms, last token {:+.2} ms (medians of per-round differences); wire/direct: end-to-end {:.1} %",
        100.0 * per_round(|g, w| w.total_ms / g.total_ms),
        per_round(|g, w| g.ttft_ms - w.ttft_ms),
        per_round(|g, w| g.total_ms - w.total_ms),
        100.0 * w.1 / d.1,
    );
}
