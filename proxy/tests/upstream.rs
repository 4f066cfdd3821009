//! The upstream backend against a real OpenAI-compatible server running a real model: another
//! omega-proxy's plain port serving the default model (scripts/fetch-model.sh; env
//! OMEGA_MODEL). Greedy answers through the forwarding proxy equal the upstream's own, whole
//! and streamed; the caps, the in-flight bound and the timeouts hold.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omega_proxy::client;
use omega_proxy::engine::{Engine, EngineConfig};
use omega_proxy::server::{self, ServerConfig};
use omega_proxy::upstream::{self, UpstreamConfig};
use omega_test_support::require;
use serde_json::{Value, json};

fn chat(model: &str, prompt: &str, max_tokens: u32) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
    })
}

fn forwarder(config: UpstreamConfig) -> SocketAddr {
    server::spawn("127.0.0.1:0".parse().unwrap(), upstream::router(config)).unwrap()
}

#[test]
fn forwards_to_a_real_server_whole_and_streamed() {
    let Some(path) = require(
        omega_proxy::default_model(),
        "the default model (run scripts/fetch-model.sh, or set OMEGA_MODEL)",
    ) else {
        return;
    };
    let id = omega_proxy::model_id(&path);
    let engine = Arc::new(Engine::load(&path, EngineConfig::default()).unwrap());
    let real = server::spawn(
        "127.0.0.1:0".parse().unwrap(),
        server::router(engine, id.clone(), ServerConfig::default()),
    )
    .unwrap();
    let mut config = UpstreamConfig::new(&format!("http://{real}/v1"), id.clone()).unwrap();
    config.max_tokens_cap = 24;
    let proxy = forwarder(config);
    let body = serde_json::to_vec(&chat(&id, "Name a colour.", 16)).unwrap();

    // Whole answers: the same greedy text through the proxy as from the server itself.
    let direct = client::request(real, "POST", "/v1/chat/completions", &body).unwrap();
    let forwarded = client::request(proxy, "POST", "/v1/chat/completions", &body).unwrap();
    assert_eq!((direct.status, forwarded.status), (200, 200));
    let text = |r: &client::Reply| r.json().unwrap()["choices"][0]["message"]["content"].clone();
    assert_eq!(text(&direct), text(&forwarded));
    assert!(!text(&forwarded).as_str().unwrap().is_empty());

    // Streamed: pieces arrive as events and add up to the same text.
    let mut streamed = String::new();
    let mut events = 0;
    let mut stream_body = chat(&id, "Name a colour.", 16);
    stream_body["stream"] = json!(true);
    let status = client::stream_chat(proxy, &stream_body, |data| {
        events += 1;
        if data != "[DONE]" {
            let v: Value = serde_json::from_str(data).unwrap();
            if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                streamed.push_str(t);
            }
        }
        true
    })
    .unwrap();
    assert_eq!(status, 200);
    assert!(events > 2, "{events} events");
    assert_eq!(json!(streamed), text(&forwarded));

    // max_tokens above the cap is capped (the upstream generates at most 24 tokens).
    let big = serde_json::to_vec(&chat(&id, "Count from one to one hundred.", 4000)).unwrap();
    let r = client::request(proxy, "POST", "/v1/chat/completions", &big).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.json().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            <= 24
    );

    // Refused locally, in OpenAI's shape: another model, a bad parameter.
    let other = serde_json::to_vec(&chat("gpt-4", "hi", 4)).unwrap();
    let r = client::request(proxy, "POST", "/v1/chat/completions", &other).unwrap();
    assert_eq!(r.status, 404);
    let mut zero = chat(&id, "hi", 4);
    zero["max_tokens"] = json!(0);
    let r = client::request(
        proxy,
        "POST",
        "/v1/chat/completions",
        &serde_json::to_vec(&zero).unwrap(),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    let models = client::request(proxy, "GET", "/v1/models", b"").unwrap();
    assert_eq!(models.json().unwrap()["data"][0]["id"], json!(id));
}

#[test]
fn upstream_down_or_silent_is_a_gateway_error() {
    // Nothing listens: 502.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let proxy = forwarder(UpstreamConfig::new(&format!("http://{addr}/v1"), "m".into()).unwrap());
    let body = serde_json::to_vec(&chat("m", "hi", 4)).unwrap();
    let r = client::request(proxy, "POST", "/v1/chat/completions", &body).unwrap();
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));

    // A server that accepts and never answers: 504 after the timeout, not a hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            held.push(s);
        }
    });
    let mut config = UpstreamConfig::new(&format!("http://{addr}/v1"), "m".into()).unwrap();
    config.timeout = Duration::from_secs(2);
    let proxy = forwarder(config);
    let started = Instant::now();
    let r = client::request(proxy, "POST", "/v1/chat/completions", &body).unwrap();
    assert_eq!(r.status, 504);
    assert!(started.elapsed() < Duration::from_secs(10));
}
