//! The evidence-bound TLS port with the guest's client (`omega-inference-client`) and the real
//! default model: in process, and the real `omega-proxy serve` binary pinned by an identity
//! computed here from the binary and the model file, as a policy author would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use omega_inference_client::{
    CallerClock, ChatRequest, Client, ClientError, Expectations, Message, Refusal, Transport,
};
use omega_proxy::engine::{BACKEND, Engine, EngineConfig};
use omega_proxy::server::{self, ServerConfig};
use omega_proxy::tls::{self, EvidenceSource};
use omega_proxy::tls_key::TlsKey;
use omega_proxy_evidence::{Gpu, Tee};
use omega_test_support::require;

fn model() -> Option<PathBuf> {
    require(
        omega_proxy::default_model(),
        "the default model (run scripts/fetch-model.sh, or set OMEGA_MODEL)",
    )
}

struct Tcp(TcpStream);

impl Transport for Tcp {
    type Error = std::io::Error;
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)
    }
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

fn tcp(addr: SocketAddr) -> Tcp {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    Tcp(s)
}

fn client() -> Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            Client::new(
                rustls::crypto::ring::default_provider().secure_random,
                Arc::new(CallerClock::new(1_764_600_000)),
            )
        })
        .clone()
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut n)
        .unwrap();
    n
}

fn expect(identity: [u8; 32]) -> Expectations {
    Expectations {
        identity,
        model_sha256: None,
        require_tee: false,
        require_confidential_gpu: None,
    }
}

fn ask(model: &str, prompt: &str) -> ChatRequest<'static> {
    let messages: &'static [Message<'static>] = Box::leak(Box::new([Message {
        role: "user",
        content: Box::leak(prompt.to_string().into_boxed_str()),
    }]));
    ChatRequest {
        model: Box::leak(model.to_string().into_boxed_str()),
        messages,
        max_tokens: Some(16),
        temperature: Some(0.0),
        seed: None,
    }
}

#[test]
fn the_guest_client_gets_the_same_greedy_answer_over_tls_as_over_the_plain_socket() {
    let Some(path) = model() else { return };
    let engine = Arc::new(Engine::load(&path, EngineConfig::default()).expect("loading the model"));
    let id = omega_proxy::model_id(&path);
    let router = server::router(engine, id.clone(), ServerConfig::default());
    let key = TlsKey::generate();
    let source =
        EvidenceSource::for_this_process(omega_proxy::evidence::sha256_file(&path).unwrap(), &key)
            .unwrap();
    let identity = source.identity();
    let tls_addr = server::spawn_tls(
        "127.0.0.1:0".parse().unwrap(),
        router.clone(),
        tls::server_config(&key).unwrap(),
        source,
    )
    .unwrap();
    let plain_addr = server::spawn("127.0.0.1:0".parse().unwrap(), router).unwrap();

    // A client that connects and says nothing does not hold up the others.
    let _silent = TcpStream::connect(tls_addr).unwrap();

    let mut conn = client()
        .connect(tcp(tls_addr), &nonce(), &expect(identity))
        .expect("evidence and handshake");
    assert_eq!(conn.proxy().evidence.tee, Tee::None);
    assert_eq!(conn.proxy().evidence.tls_spki, key.spki());
    let req = ask(&id, "Name one colour.");
    let over_tls = conn.chat(&req).expect("chat over TLS");
    assert!(!over_tls.content.is_empty());
    assert!(over_tls.completion_tokens > 0 && over_tls.completion_tokens <= 16);
    // Keep-alive: a second call on the same connection.
    let again = conn.chat(&req).expect("second chat");
    assert_eq!(again.content, over_tls.content);

    let plain = omega_proxy::client::request(
        plain_addr,
        "POST",
        "/v1/chat/completions",
        &serde_json::to_vec(&serde_json::json!({
            "model": id, "messages": [{"role": "user", "content": "Name one colour."}],
            "max_tokens": 16, "temperature": 0,
        }))
        .unwrap(),
    )
    .unwrap();
    let plain: serde_json::Value = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(
        plain["choices"][0]["message"]["content"].as_str().unwrap(),
        over_tls.content
    );

    // Errors from the API come back as such over TLS.
    match conn.chat(&ask("no-such-model", "x")) {
        Err(ClientError::Api { status: 404, .. }) => {}
        other => panic!("expected 404, got {other:?}"),
    }

    // A client that starts TLS at once (no evidence request) is dropped without an answer.
    let mut raw = TcpStream::connect(tls_addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut hello = vec![0x16, 0x03, 0x01, 0x00, 0x23];
    hello.resize(40, 0);
    raw.write_all(&hello).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(raw.read(&mut buf).unwrap_or(0), 0);
}

/// `omega-proxy serve` on free ports; returns the child, the TLS address and the identity it
/// printed.
fn serve_binary(path: &Path) -> (Child, SocketAddr, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_omega-proxy"))
        .args(["serve", "--model"])
        .arg(path)
        .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads the two lines, then keeps draining so the proxy never blocks on its log.
    std::thread::spawn(move || {
        let (mut addr, mut identity) = (None, None);
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            if let Some(a) = line.split("evidence-bound TLS ").nth(1) {
                addr = a.trim().parse::<SocketAddr>().ok();
            }
            if let Some(i) = line.split("proxy \"sha256:").nth(1) {
                identity = i.get(..64).map(str::to_string);
            }
            if let (Some(a), Some(i)) = (addr, &identity) {
                let _ = tx.send((a, i.clone()));
                (addr, identity) = (None, None);
            }
        }
    });
    let (addr, identity) = rx
        .recv_timeout(Duration::from_secs(120))
        .map(|(a, i)| (Some(a), Some(i)))
        .unwrap_or((None, None));
    (
        child,
        addr.expect("TLS address"),
        identity.expect("identity"),
    )
}

#[test]
fn the_real_proxy_binary_pinned_by_binary_and_model_digests() {
    let Some(path) = model() else { return };
    let (mut child, addr, printed) = serve_binary(&path);
    // The pin, computed independently from the two files.
    let exe =
        omega_proxy::evidence::sha256_file(env!("CARGO_BIN_EXE_omega-proxy").as_ref()).unwrap();
    let model_sha256 = omega_proxy::evidence::sha256_file(&path).unwrap();
    let identity =
        omega_proxy_evidence::identity(&exe, &model_sha256, BACKEND, Tee::None, &Gpu::None);
    assert_eq!(printed, hex::encode(identity));

    let result = (|| {
        let mut e = expect(identity);
        e.model_sha256 = Some(model_sha256);
        let mut conn = client().connect(tcp(addr), &nonce(), &e)?;
        let id = omega_proxy::model_id(&path);
        let answer = conn.chat(&ask(&id, "Say hello."))?;
        assert!(!answer.content.is_empty());
        assert!(answer.finish_reason == "stop" || answer.finish_reason == "length");

        // Another model's pin: refused before TLS.
        let other = omega_proxy_evidence::identity(&exe, &[0; 32], BACKEND, Tee::None, &Gpu::None);
        match client().connect(tcp(addr), &nonce(), &expect(other)) {
            Err(ClientError::Refused(Refusal::Identity { got, .. })) => {
                assert_eq!(got, identity)
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("connected with another model's pin"),
        }
        // Labelled data needs a TEE: this proxy has none and says so.
        match client().connect(
            tcp(addr),
            &nonce(),
            &Expectations::from_policy(identity, true),
        ) {
            Err(ClientError::Refused(Refusal::NoTee)) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a policy requiring a TEE accepted tee none"),
        }
        Ok::<_, ClientError>(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result.expect("client against the real proxy");
}
