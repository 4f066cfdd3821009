//! Messages: the round trip between two agents in one Omega runtime next to two A2A agents
//! talking JSON-RPC over HTTP on loopback with the official Python SDK (`a2a-sdk`), the same
//! message on both sides, in one run (issue 12; figures in docs/agents.md).
//!
//! `cargo bench -p omega-runtime --bench a2a` (custom harness; `-- --quick` for fewer rounds).
//! The Python side needs `target/a2a-venv` (`bench/a2a/requirements.txt`) or a Python with
//! those packages in env `OMEGA_A2A_PYTHON`; without one the run fails when env `CI` is set
//! and otherwise says SKIP for that side.
//!
//! One round trip, both sides: the client encodes an A2A-shaped `Message` (message id,
//! context id `ctx`, role, one text part), it is delivered, the echo agent decodes it,
//! encodes a message with the same text and it comes back; the client decodes it and checks
//! the text. Here the agents are Wasm (wasmi) doing the postcard encoding and decoding
//! themselves, and each `send` is a policy decision and a provenance record; there it is the
//! SDK's client and server (protobuf messages, JSON, HTTP/1.1 on one kept-alive connection).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{all_imports, enc, escape, recv_req, wasm};
use omega_agent_abi as abi;
use omega_runtime::{AgentId, Runtime, Status};
use omega_test_support::{require, workspace_root};
use support::{Quiet, percentile, spec};

/// What `goal ≥ 20× faster` (issue 12) compares.
const GOAL: f64 = 20.0;
const INSTALL: &str = "python3 -m venv target/a2a-venv && target/a2a-venv/bin/pip install -r bench/a2a/requirements.txt";

// The Wasm agents' memory: round counter, the recv request, the encoded message up to its
// text, the client's text, the message being sent, the message received.
const COUNTER: u32 = 0;
const RECV_REQ: u32 = 0x100;
const PREFIX: u32 = 0x200;
const TEXT: u32 = 0x400;
const SEND: u32 = 0x1000;
const OUT: u32 = 0x2000;
const OUT_CAP: u32 = 0x2000;
const MAX_TEXT: usize = (SEND - TEXT) as usize;
/// The high bit of each byte of an i64: any set means a byte that is not ASCII.
const HIGH_BITS: i64 = 0x8080_8080_8080_8080_u64 as i64;

/// `SendRequest { to, message: { message_id, context_id: Some("ctx"), role, parts: [Text] } }`
/// up to the text's length: the part of the encoding that does not depend on the text.
fn send_prefix(to: &str, role: abi::Role) -> Vec<u8> {
    let mut parts = abi::heapless::Vec::new();
    parts.push(abi::Part::Text { text: "" }).unwrap();
    let mut bytes = enc(&abi::SendRequest {
        to,
        message: abi::Message {
            message_id: "m1",
            context_id: Some("ctx"),
            role,
            parts,
        },
    });
    assert_eq!(
        bytes.pop(),
        Some(0),
        "the empty text's length ends the encoding"
    );
    bytes
}

/// A Wasm agent that encodes and decodes its messages itself (postcard, as the SDK does),
/// checking every string as the SDK's decoder would (ASCII here, standing in for UTF-8,
/// whose check takes the same ASCII fast path).
/// The client sends `text` to `peer` and checks the answer carries it, `rounds` times,
/// counting rounds at [`COUNTER`]; the echo answers each message with its text.
fn a2a_agent(peer: &str, client: bool, text: &str, rounds: u32) -> String {
    assert!(text.len() <= MAX_TEXT && text.is_ascii());
    let role = if client {
        abi::Role::User
    } else {
        abi::Role::Agent
    };
    let prefix = send_prefix(peer, role);
    let recv = recv_req(true);
    let round = if client {
        format!(
            "(call $send_text (i32.const {TEXT}) (i32.const {len}))
      (call $recv_text)
      (if (i32.ne (global.get $text_len) (i32.const {len})) (then unreachable))
      (call $same (global.get $text) (i32.const {TEXT}) (i32.const {len}))",
            len = text.len()
        )
    } else {
        "(call $recv_text)
      (call $send_text (global.get $text) (global.get $text_len))"
            .to_string()
    };
    format!(
        r#"(module {imports}
  (memory (export "memory") 1)
  (global $pos (mut i32) (i32.const 0))
  (global $text (mut i32) (i32.const 0))
  (global $text_len (mut i32) (i32.const 0))
  (data (i32.const {RECV_REQ}) "{recv}")
  (data (i32.const {PREFIX}) "{prefix}")
  (data (i32.const {TEXT}) "{text}")
  ;; a postcard varint (LEB128) at $pos
  (func $varint (result i32) (local $v i32) (local $shift i32) (local $b i32)
    (loop $more
      (local.set $b (i32.load8_u (global.get $pos)))
      (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
      (local.set $v (i32.or (local.get $v)
        (i32.shl (i32.and (local.get $b) (i32.const 0x7f)) (local.get $shift))))
      (local.set $shift (i32.add (local.get $shift) (i32.const 7)))
      (br_if $more (i32.and (local.get $b) (i32.const 0x80))))
    (local.get $v))
  ;; a string at $pos (length, bytes), checked 8 bytes at a time as `str::from_utf8` does
  ;; for ASCII; leaves it in $text/$text_len
  (func $str (local $p i32)
    (global.set $text_len (call $varint))
    (global.set $text (global.get $pos))
    (global.set $pos (i32.add (global.get $pos) (global.get $text_len)))
    (local.set $p (global.get $text))
    (block $done (loop $words
      (br_if $done (i32.gt_u (i32.add (local.get $p) (i32.const 8)) (global.get $pos)))
      (if (i64.ne (i64.and (i64.load (local.get $p)) (i64.const {HIGH_BITS})) (i64.const 0))
        (then unreachable))
      (local.set $p (i32.add (local.get $p) (i32.const 8)))
      (br $words)))
    (block $done (loop $bytes
      (br_if $done (i32.ge_u (local.get $p) (global.get $pos)))
      (if (i32.ge_u (i32.load8_u (local.get $p)) (i32.const 0x80)) (then unreachable))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $bytes))))
  ;; Delivered {{ from, labels, message {{ message_id, context_id, role, parts: [Text] }} }}
  (func $decode (param $len i32) (local $n i32)
    (global.set $pos (i32.const {OUT}))
    (call $str)
    (local.set $n (call $varint))
    (block $done (loop $each
      (br_if $done (i32.eqz (local.get $n)))
      (call $str)
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $each)))
    (call $str)
    (local.set $n (call $varint))
    (if (i32.gt_u (local.get $n) (i32.const 1)) (then unreachable))
    (if (local.get $n) (then (call $str)))
    (if (i32.gt_u (call $varint) (i32.const 1)) (then unreachable))
    (if (i32.ne (call $varint) (i32.const 1)) (then unreachable))
    (if (i32.ne (call $varint) (i32.const 0)) (then unreachable))
    (call $str)
    (if (i32.ne (global.get $pos) (i32.add (i32.const {OUT}) (local.get $len))) (then unreachable)))
  ;; SendRequest with this text at {SEND}; returns its length
  (func $encode (param $text i32) (param $len i32) (result i32) (local $p i32) (local $v i32) (local $b i32)
    (memory.copy (i32.const {SEND}) (i32.const {PREFIX}) (i32.const {prefix_len}))
    (local.set $p (i32.const {text_at}))
    (local.set $v (local.get $len))
    (loop $more
      (local.set $b (i32.and (local.get $v) (i32.const 0x7f)))
      (local.set $v (i32.shr_u (local.get $v) (i32.const 7)))
      (if (local.get $v) (then (local.set $b (i32.or (local.get $b) (i32.const 0x80)))))
      (i32.store8 (local.get $p) (local.get $b))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br_if $more (local.get $v)))
    (memory.copy (local.get $p) (local.get $text) (local.get $len))
    (i32.sub (i32.add (local.get $p) (local.get $len)) (i32.const {SEND})))
  (func $send_text (param $text i32) (param $len i32)
    (if (i32.lt_s (call $send (i32.const {SEND}) (call $encode (local.get $text) (local.get $len))
                    (i32.const 0) (i32.const 0)) (i32.const 0))
      (then unreachable)))
  (func $recv_text (local $r i32)
    (local.set $r (call $recv (i32.const {RECV_REQ}) (i32.const {recv_len}) (i32.const {OUT}) (i32.const {OUT_CAP})))
    (if (i32.or (i32.lt_s (local.get $r) (i32.const 0)) (i32.gt_s (local.get $r) (i32.const {OUT_CAP})))
      (then unreachable))
    (call $decode (local.get $r)))
  ;; [a, a+len) = [b, b+len), compared 8 bytes at a time as `memcmp` does
  (func $same (param $a i32) (param $b i32) (param $len i32) (local $i i32)
    (block $done (loop $words
      (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $len)))
      (if (i64.ne (i64.load (i32.add (local.get $a) (local.get $i)))
                  (i64.load (i32.add (local.get $b) (local.get $i))))
        (then unreachable))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $words)))
    (block $done (loop $each
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $b) (local.get $i))))
        (then unreachable))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $each))))
  (func (export "run") (local $i i32)
    (loop $round
      {round}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (i32.store (i32.const {COUNTER}) (local.get $i))
      (br_if $round (i32.lt_u (local.get $i) (i32.const {rounds}))))))"#,
        imports = all_imports(),
        recv = escape(&recv),
        recv_len = recv.len(),
        prefix = escape(&prefix),
        prefix_len = prefix.len(),
        text_at = SEND as usize + prefix.len(),
        text = escape(text.as_bytes()),
    )
}

/// Round-trip times, sorted.
struct Figures {
    what: String,
    sorted: Vec<Duration>,
}

impl Figures {
    fn new(what: String, mut times: Vec<Duration>) -> Figures {
        times.sort();
        Figures {
            what,
            sorted: times,
        }
    }
    fn p50_us(&self) -> f64 {
        percentile(&self.sorted, 0.5).as_secs_f64() * 1e6
    }
    fn print(&self) {
        let mean = self.sorted.iter().sum::<Duration>() / self.sorted.len() as u32;
        println!(
            "  {:<58} p50 {:>9.2} µs  p99 {:>9.2} µs  mean {:>9.2} µs  ({} rounds)",
            self.what,
            self.p50_us(),
            percentile(&self.sorted, 0.99).as_secs_f64() * 1e6,
            mean.as_secs_f64() * 1e6,
            self.sorted.len()
        );
    }
}

/// Two Wasm agents in one runtime: each round trip timed from the client's round counter.
fn in_runtime(text: &str, warmup: u32, rounds: u32) -> Figures {
    let total = warmup + rounds;
    let client = wasm(&a2a_agent("echo", true, text, total));
    let echo = wasm(&a2a_agent("client", false, text, total));
    let mut rt = support::runtime(&[("client", &client, 0b111), ("echo", &echo, 0b111)]);
    let a = rt.load(&spec("client", &client)).unwrap();
    let b = rt.load(&spec("echo", &echo)).unwrap();
    let counter = |rt: &Runtime<'_, Quiet>, id: AgentId| {
        let at = COUNTER as usize;
        u32::from_le_bytes(rt.agent_memory(id).unwrap()[at..at + 4].try_into().unwrap())
    };

    let mut times = Vec::with_capacity(rounds as usize);
    let mut done = 0;
    let mut last = Instant::now();
    while done < total {
        let ran = rt.run_slice();
        assert!(
            ran.is_some(),
            "the pair stopped: client {:?}, echo {:?}",
            rt.status(a),
            rt.status(b)
        );
        if ran == Some(a) && counter(&rt, a) != done {
            let now = Instant::now();
            done = counter(&rt, a);
            if done > warmup {
                times.push(now - last);
            }
            last = now;
        }
    }
    rt.run_until_idle(10);
    assert_eq!(rt.status(a), Some(&Status::Exited(0)));
    assert_eq!(rt.status(b), Some(&Status::Exited(0)));
    assert!(
        rt.monitor().records() >= 2 * u64::from(total),
        "a decision record each way"
    );
    Figures::new(
        "omega: two Wasm agents, one runtime (policy + record each way)".into(),
        times,
    )
}

/// A Python with the SDK: env `OMEGA_A2A_PYTHON`, else `target/a2a-venv`.
fn a2a_python() -> Option<PathBuf> {
    let (python, named) = match std::env::var_os("OMEGA_A2A_PYTHON") {
        Some(p) => (PathBuf::from(p), true),
        None => (workspace_root().join("target/a2a-venv/bin/python"), false),
    };
    let works = Command::new(&python)
        .args([
            "-c",
            "import a2a.client, a2a.server.routes, uvicorn, uvloop",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        works || !named,
        "OMEGA_A2A_PYTHON={} cannot import a2a-sdk, uvicorn and uvloop",
        python.display()
    );
    require(
        works.then_some(python),
        format_args!("a Python with a2a-sdk for the A2A side (install: {INSTALL})"),
    )
}

/// Kills the echo server however the run ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The SDK's echo server (`bench/a2a/server.py`) and client (`bench/a2a/client.py`).
fn over_http(python: &PathBuf, text: &str, warmup: u32, rounds: u32) -> Figures {
    let dir = workspace_root().join("bench/a2a");
    let mut server = Server(
        Command::new(python)
            .arg(dir.join("server.py"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the A2A echo server"),
    );
    let mut ready = String::new();
    BufReader::new(server.0.stdout.as_mut().unwrap())
        .read_line(&mut ready)
        .expect("read the server's port");
    let ready: serde_json::Value =
        serde_json::from_str(&ready).unwrap_or_else(|e| panic!("server said {ready:?}: {e}"));
    let url = format!("http://127.0.0.1:{}/", ready["port"]);

    let out = Command::new(python)
        .arg(dir.join("client.py"))
        .args(["--url", &url, "--text", text])
        .args([
            "--warmup",
            &warmup.to_string(),
            "--rounds",
            &rounds.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run the A2A client");
    assert!(
        out.status.success(),
        "the A2A client failed: {}",
        out.status
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client said {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let times = report["times_ns"]
        .as_array()
        .expect("the client's round-trip times")
        .iter()
        .map(|t| Duration::from_nanos(t.as_u64().expect("nanoseconds")))
        .collect();
    Figures::new(
        format!(
            "A2A: {}, JSON-RPC over HTTP on loopback",
            report["sdk"].as_str().unwrap_or("a2a-sdk")
        ),
        times,
    )
}

fn main() {
    let (rust_rounds, http_rounds) = if support::quick() {
        (2_000, 200)
    } else {
        (100_000, 2_000)
    };
    let python = a2a_python();
    for size in [64, 1024] {
        let text = "x".repeat(size);
        println!(
            "message round trip, one A2A-shaped message with a {size} B text part each way \
             (encode, deliver, decode, check):"
        );
        let omega = in_runtime(&text, 1_000, rust_rounds);
        omega.print();
        let Some(python) = &python else {
            println!("  SKIP: the A2A side (no Python with a2a-sdk; {INSTALL})");
            continue;
        };
        let a2a = over_http(python, &text, 50, http_rounds);
        a2a.print();
        let ratio = a2a.p50_us() / omega.p50_us();
        println!(
            "  omega is {ratio:.0}x faster at p50 (goal >= {GOAL:.0}x: {})",
            if ratio >= GOAL { "met" } else { "NOT MET" }
        );
    }
}
