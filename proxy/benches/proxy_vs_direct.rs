//! Tokens/s and time to first token through the proxy's HTTP API (streamed, as clients use
//! it) vs the same llama.cpp backend called in-process, side by side in one run: same model,
//! threads, prompt, max_tokens, greedy decoding. Rounds alternate which of the two goes first
//! so drift on a shared machine hits both alike; medians are reported.
//!
//!   scripts/fetch-model.sh && cargo bench -p omega-proxy --bench proxy_vs_direct
//!
//! Env: OMEGA_MODEL (else the fetch script's cache), OMEGA_BENCH_ROUNDS (default 7),
//! OMEGA_BENCH_TOKENS (default 128), OMEGA_BENCH_THREADS (default 1).

use std::sync::Arc;
use std::time::{Duration, Instant};

use omega_proxy::client;
use omega_proxy::engine::{Engine, EngineConfig, Message, Sampling};
use omega_proxy::server::{self, ServerConfig};
use serde_json::{Value, json};

const PROMPT: &str =
    "Write a short story about a lighthouse keeper who finds a message in a bottle.";

#[derive(Clone, Copy)]
struct Run {
    ttft: Duration,
    total: Duration,
    tokens: usize,
}

impl Run {
    /// Generation speed after the first token (what a reader of the stream sees).
    fn decode_tps(&self) -> f64 {
        (self.tokens.saturating_sub(1)) as f64 / (self.total - self.ttft).as_secs_f64()
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn direct(engine: &Engine, session: &mut omega_proxy::engine::Session<'_>, max_tokens: u32) -> Run {
    let start = Instant::now();
    let messages = [Message {
        role: "user".into(),
        content: PROMPT.into(),
    }];
    let prompt = engine.prompt_tokens(&messages).expect("prompt");
    let sampling = Sampling {
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        max_tokens,
    };
    let mut ttft = None;
    let outcome = session
        .generate(&prompt, &sampling, |_| {
            ttft.get_or_insert_with(|| start.elapsed());
            true
        })
        .expect("generate");
    Run {
        ttft: ttft.expect("a token"),
        total: start.elapsed(),
        tokens: outcome.completion_tokens,
    }
}

fn proxied(addr: std::net::SocketAddr, model: &str, max_tokens: u32) -> Run {
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let start = Instant::now();
    let (mut ttft, mut tokens) = (None, 0);
    let status = client::stream_chat(addr, &body, |data| {
        if data == "[DONE]" {
            return true;
        }
        let chunk: Value = serde_json::from_str(data).expect("chunk");
        if chunk["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        {
            ttft.get_or_insert_with(|| start.elapsed());
        }
        if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
            tokens = n as usize;
        }
        true
    })
    .expect("request");
    assert_eq!(status, 200);
    Run {
        ttft: ttft.expect("a token"),
        total: start.elapsed(),
        tokens,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would run this too: only bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Some(path) = omega_test_support::require(
        omega_proxy::default_model(),
        "the default model (run scripts/fetch-model.sh, or set OMEGA_MODEL)",
    ) else {
        return;
    };
    let rounds = env_or("OMEGA_BENCH_ROUNDS", 7);
    let max_tokens = env_or("OMEGA_BENCH_TOKENS", 128) as u32;
    let threads = env_or("OMEGA_BENCH_THREADS", 1) as u16;
    let config = EngineConfig {
        threads,
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::load(&path, config).expect("loading the model"));
    let model = omega_proxy::model_id(&path);
    let router = server::router(engine.clone(), model.clone(), ServerConfig::default());
    let addr = server::spawn("127.0.0.1:0".parse().unwrap(), router).expect("server");
    let mut session = engine.session().expect("session");

    // Warm-up: page the model in, settle both paths.
    direct(&engine, &mut session, 8);
    proxied(addr, &model, 8);

    let (mut d, mut p) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Which goes first alternates, so neither always runs on a warmer machine.
        if round % 2 == 0 {
            d.push(direct(&engine, &mut session, max_tokens));
            p.push(proxied(addr, &model, max_tokens));
        } else {
            p.push(proxied(addr, &model, max_tokens));
            d.push(direct(&engine, &mut session, max_tokens));
        }
    }
    assert!(
        d.iter().chain(&p).all(|r| r.tokens == d[0].tokens),
        "greedy runs differ in length"
    );

    let report = |name: &str, runs: &[Run]| {
        let ttft = median(runs.iter().map(|r| r.ttft.as_secs_f64() * 1e3).collect());
        let tps = median(
            runs.iter()
                .map(|r| r.tokens as f64 / r.total.as_secs_f64())
                .collect(),
        );
        let decode = median(runs.iter().map(Run::decode_tps).collect());
        println!(
            "{name:<8} ttft {ttft:8.2} ms   end-to-end {tps:7.2} tok/s   decode {decode:7.2} tok/s"
        );
        (ttft, tps, decode)
    };
    println!(
        "model {model}, threads {threads}, {} completion tokens, greedy, {rounds} rounds (medians)",
        d[0].tokens
    );
    let (dt, dtps, ddec) = report("direct", &d);
    let (pt, ptps, pdec) = report("proxy", &p);
    println!(
        "proxy/direct: end-to-end {:.1} %, decode {:.1} %, ttft {:+.2} ms",
        100.0 * ptps / dtps,
        100.0 * pdec / ddec,
        pt - dt
    );
}
