//! The proxy alone, with the real default model (scripts/fetch-model.sh; env OMEGA_MODEL
//! overrides): generation, streaming, limits, concurrency, a full queue, cancellation, the
//! official `openai` Python client, and the `evidence` command.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use omega_proxy::client::{self, Reply};
use omega_proxy::engine::{Engine, EngineConfig};
use omega_proxy::server::{self, ServerConfig};
use omega_test_support::require;
use serde_json::{Value, json};

fn model() -> Option<PathBuf> {
    require(
        omega_proxy::default_model(),
        "the default model (run scripts/fetch-model.sh, or set OMEGA_MODEL)",
    )
}

fn engine(path: &Path) -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            Arc::new(Engine::load(path, EngineConfig::default()).expect("loading the model"))
        })
        .clone()
}

/// A server with `config` over the shared engine (its own worker), on a free port.
fn start(path: &Path, config: ServerConfig) -> SocketAddr {
    let router = server::router(engine(path), omega_proxy::model_id(path), config);
    server::spawn("127.0.0.1:0".parse().unwrap(), router).expect("starting the server")
}

/// The server most tests share (generous queue: the tests run in parallel).
fn shared() -> Option<(SocketAddr, String)> {
    static SERVER: OnceLock<SocketAddr> = OnceLock::new();
    let path = model()?;
    let addr = *SERVER.get_or_init(|| {
        start(
            &path,
            ServerConfig {
                queue: 64,
                ..ServerConfig::default()
            },
        )
    });
    Some((addr, omega_proxy::model_id(&path)))
}

fn chat(model: &str, prompt: &str, max_tokens: u32) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

fn post(addr: SocketAddr, body: &Value) -> Reply {
    client::request(
        addr,
        "POST",
        "/v1/chat/completions",
        &serde_json::to_vec(body).unwrap(),
    )
    .unwrap()
}

fn content(reply: &Value) -> &str {
    reply["choices"][0]["message"]["content"].as_str().unwrap()
}

#[test]
fn generates_an_answer_deterministically_when_greedy() {
    let Some((addr, model)) = shared() else {
        return;
    };
    let request = chat(
        &model,
        "What is the capital of France? Answer in one word.",
        16,
    );
    let first = post(addr, &request);
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let first = first.json().unwrap();
    assert_eq!(first["object"], "chat.completion");
    assert_eq!(first["model"], model);
    assert_eq!(first["choices"][0]["message"]["role"], "assistant");
    assert!(!content(&first).trim().is_empty(), "empty answer: {first}");
    assert!(
        content(&first).contains("Paris"),
        "a 135M model still knows this: {first}"
    );
    let usage = &first["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 5);
    assert!((1..=16).contains(&usage["completion_tokens"].as_u64().unwrap()));
    assert!(["stop", "length"].contains(&first["choices"][0]["finish_reason"].as_str().unwrap()));
    let second = post(addr, &request).json().unwrap();
    assert_eq!(
        content(&first),
        content(&second),
        "greedy decoding is deterministic"
    );
}

#[test]
fn streaming_gives_the_same_text_in_openai_chunks() {
    let Some((addr, model)) = shared() else {
        return;
    };
    let prompt = "Name three colours.";
    let whole = post(addr, &chat(&model, prompt, 24)).json().unwrap();
    let mut request = chat(&model, prompt, 24);
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let mut events = Vec::new();
    let status = client::stream_chat(addr, &request, |data| {
        events.push(data.to_owned());
        true
    })
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, content(&whole));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(
        finish["choices"][0]["finish_reason"],
        whole["choices"][0]["finish_reason"]
    );
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], whole["usage"]);
}

#[test]
fn max_tokens_is_honoured() {
    let Some((addr, model)) = shared() else {
        return;
    };
    for max in [1, 3] {
        let reply = post(
            addr,
            &chat(&model, "Write a long story about a dragon.", max),
        )
        .json()
        .unwrap();
        assert_eq!(reply["usage"]["completion_tokens"], max, "{reply}");
        assert_eq!(reply["choices"][0]["finish_reason"], "length");
    }
    // The server's cap applies whatever the client asks.
    let reply = post(addr, &chat(&model, "Count from 1 to 1000.", 100_000))
        .json()
        .unwrap();
    assert!(
        reply["usage"]["completion_tokens"].as_u64().unwrap() <= 512,
        "{reply}"
    );
}

#[test]
fn oversized_prompt_is_refused_clearly() {
    let Some((addr, model)) = shared() else {
        return;
    };
    let prompt = "lorem ipsum dolor sit amet ".repeat(2000);
    let reply = post(addr, &chat(&model, &prompt, 4));
    assert_eq!(reply.status, 400);
    let error = &reply.json().unwrap()["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["code"], "context_length_exceeded");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("more than the 1536"),
        "{error}"
    );
}

#[test]
fn bad_requests_get_openai_errors() {
    let Some((addr, model)) = shared() else {
        return;
    };
    let cases = [
        (
            json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}),
            404,
            Some("model"),
        ),
        (
            json!({"model": model, "messages": []}),
            400,
            Some("messages"),
        ),
        (
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "n": 2}),
            400,
            Some("n"),
        ),
        (
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "temperature": 3}),
            400,
            Some("temperature"),
        ),
        (json!({"model": model}), 400, None),
    ];
    for (body, status, param) in cases {
        let reply = post(addr, &body);
        assert_eq!(reply.status, status, "{body}");
        let error = &reply.json().unwrap()["error"];
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(error["param"].as_str(), param, "{body}");
    }
    let models = client::request(addr, "GET", "/v1/models", b"")
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(models["data"][0]["id"], model);
}

#[test]
fn concurrent_requests_are_all_answered() {
    let Some((addr, model)) = shared() else {
        return;
    };
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let body = chat(&model, &format!("Say the number {i}."), 8);
            std::thread::spawn(move || post(addr, &body))
        })
        .collect();
    for t in threads {
        let reply = t.join().unwrap();
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(
            reply.json().unwrap()["usage"]["completion_tokens"]
                .as_u64()
                .unwrap()
                >= 1
        );
    }
}

#[test]
fn a_full_queue_answers_503_and_a_disconnect_cancels() {
    let Some(path) = model() else { return };
    // One job running, one waiting: the third is refused.
    let addr = start(
        &path,
        ServerConfig {
            queue: 1,
            ..ServerConfig::default()
        },
    );
    let model = omega_proxy::model_id(&path);
    let mut long = chat(
        &model,
        "Write a very long story about a dragon and a knight.",
        400,
    );
    long["stream"] = json!(true);

    // A: running. Its first text proves the worker has it; it then stops reading and leaves.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (leave_tx, leave_rx) = std::sync::mpsc::channel::<()>();
    let a_body = long.clone();
    let a = std::thread::spawn(move || {
        let mut seen = 0;
        client::stream_chat(addr, &a_body, |data| {
            let chunk: Value = serde_json::from_str(data).unwrap();
            if chunk["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
            {
                seen += 1;
                if seen == 1 {
                    started_tx.send(()).unwrap();
                    leave_rx.recv().unwrap();
                    return false; // disconnect
                }
            }
            true
        })
    });
    started_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("A started");
    // B: queued (its 200 status comes only once the job is in the queue).
    let b_body = long.clone();
    let (b_queued_tx, b_queued_rx) = std::sync::mpsc::channel();
    let b = std::thread::spawn(move || {
        client::stream_chat(addr, &b_body, |_| {
            let _ = b_queued_tx.send(());
            false
        })
    });
    b_queued_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("B queued");
    // C: refused.
    let c = post(addr, &chat(&model, "hi", 4));
    assert_eq!(c.status, 503, "{}", String::from_utf8_lossy(&c.body));
    let error = &c.json().unwrap()["error"];
    assert_eq!(error["code"], "queue_full");

    // A and B disconnect: the worker stops A's generation and skips or stops B's.
    leave_tx.send(()).unwrap();
    assert_eq!(a.join().unwrap().unwrap(), 200);
    assert_eq!(b.join().unwrap().unwrap(), 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = client::request(addr, "GET", "/health", b"")
            .unwrap()
            .json()
            .unwrap();
        if health["cancelled"] == 2 {
            assert_eq!(health["completed"], 0, "{health}");
            assert_eq!(health["refused_busy"], 1, "{health}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "generation not cancelled: {health}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The worker is free again.
    assert_eq!(post(addr, &chat(&model, "hi", 2)).status, 200);
}

#[test]
fn the_official_openai_python_client_works() {
    let Some((addr, model)) = shared() else {
        return;
    };
    let Some(python) = require(
        omega_test_support::oracle::python_importing("openai"),
        "Python with the openai package (pip install openai; OMEGA_ORACLE_PYTHON)",
    ) else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let out = std::process::Command::new(python)
        .args([script, &format!("http://{addr}/v1"), &model])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openai client: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn evidence_command_names_model_and_says_no_cc_hardware() {
    let Some(path) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("evidence.bin");
    let key = dir.path().join("tls.key");
    let nonce = "ab".repeat(32);
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_omega-proxy"))
        .args(["evidence", "--model"])
        .arg(&path)
        .args(["--nonce", &nonce, "--tls-key"])
        .arg(&key)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let printed: Value = serde_json::from_slice(&run.stdout).unwrap();
    let evidence = omega_proxy_evidence::decode(&std::fs::read(&out).unwrap()).unwrap();
    let model_sha256 = omega_proxy::evidence::sha256_file(&path).unwrap();
    assert_eq!(evidence.model_sha256, model_sha256);
    assert_eq!(printed["model_sha256"], hex::encode(model_sha256));
    let exe =
        omega_proxy::evidence::sha256_file(env!("CARGO_BIN_EXE_omega-proxy").as_ref()).unwrap();
    assert_eq!(evidence.proxy_sha256, exe);
    assert_eq!(evidence.tee, omega_proxy_evidence::Tee::None);
    assert_eq!(evidence.gpu, omega_proxy_evidence::Gpu::None);
    assert_eq!(evidence.gpu_evidence, None);
    assert_eq!(printed["tee"], "none");
    assert_eq!(printed["gpu"], "none");
    assert_eq!(evidence.nonce, [0xab; 32]);
    let tls = omega_proxy::tls_key::TlsKey::from_pkcs8(&std::fs::read(&key).unwrap()).unwrap();
    assert_eq!(evidence.tls_spki, tls.spki());
    assert_eq!(
        evidence.report_data,
        omega_proxy_evidence::report_data(&tls.spki(), None, &[0xab; 32])
    );
    // A bad nonce is refused.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_omega-proxy"))
        .args(["evidence", "--model"])
        .arg(&path)
        .args(["--nonce", "abcd"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
