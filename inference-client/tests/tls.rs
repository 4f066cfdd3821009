//! The client against a real rustls server (ring provider, raw public key), which plays the
//! proxy: evidence exchange, TLS 1.3, HTTP. The attacks: another key than the evidence names,
//! evidence for another nonce or model, tampered evidence, `tee: none` where a TEE is required,
//! tampered ciphertext, garbage instead of evidence, oversized answers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use omega_inference_client::{
    CallerClock, ChatRequest, Client, ClientError, Connection, Expectations, HttpError, Message,
    Refusal, Transport,
};
use omega_proxy_evidence::exchange::{self, REQUEST_LEN};
use omega_proxy_evidence::{EvidenceError, Gpu, ProxyEvidence, Tee};
use rustls::crypto::ring as ring_provider;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::server::AlwaysResolvesServerRawPublicKeys;
use rustls::sign::CertifiedKey;
use rustls::version::TLS13;
use rustls::{CertificateError, ServerConfig, ServerConnection};

const PROXY_SHA256: [u8; 32] = [0x11; 32];
const MODEL_SHA256: [u8; 32] = [0x22; 32];
const BACKEND: &str = "llama.cpp-cpu";

/// An Ed25519 key from a fixed seed: (PKCS#8 v1 DER, SPKI DER).
fn key(seed: u8) -> (Vec<u8>, Vec<u8>) {
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
    let pkcs8 = [
        &[
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ][..],
        &kp.sk.seed()[..],
    ]
    .concat();
    let spki = [
        &omega_inference_client::check::ED25519_SPKI_PREFIX[..],
        &kp.pk[..],
    ]
    .concat();
    (pkcs8, spki)
}

fn identity(tee: Tee) -> [u8; 32] {
    omega_proxy_evidence::identity(&PROXY_SHA256, &MODEL_SHA256, BACKEND, tee, &Gpu::None)
}

fn expect() -> Expectations {
    Expectations {
        identity: identity(Tee::None),
        model_sha256: Some(MODEL_SHA256),
        require_tee: false,
        require_confidential_gpu: None,
    }
}

/// How the fake proxy misbehaves.
#[derive(Clone, Default)]
struct Fake {
    /// Seed of the key the TLS handshake uses (default: the evidence's, 1).
    tls_seed: Option<u8>,
    /// Changes the evidence before it is sent (then `report_data` is recomputed, unless
    /// `raw_tamper`).
    edit: Option<fn(&mut ProxyEvidence)>,
    /// Flips a byte of the encoded evidence.
    raw_tamper: bool,
    /// Sends this instead of the evidence response.
    garbage: Option<&'static [u8]>,
    /// Flips a byte in the ciphertext of the first answer.
    tamper_answer: bool,
    /// The HTTP answer (default: a chat completion).
    answer: Option<Vec<u8>>,
}

/// What the fake proxy saw: the plaintext it decrypted (every request), or its error.
struct Seen {
    plaintext: Vec<u8>,
    error: Option<String>,
}

fn completion(content: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    })
    .to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn spawn_fake(fake: Fake) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut seen = Seen {
            plaintext: Vec::new(),
            error: None,
        };
        if let Err(e) = serve_one(sock, &fake, &mut seen.plaintext) {
            seen.error = Some(e);
        }
        let _ = tx.send(seen);
    });
    (addr, rx)
}

fn serve_one(mut sock: TcpStream, fake: &Fake, plaintext: &mut Vec<u8>) -> Result<(), String> {
    let mut req = [0u8; REQUEST_LEN];
    sock.read_exact(&mut req).map_err(|e| e.to_string())?;
    let nonce = exchange::parse_request(&req).map_err(|e| e.to_string())?;
    if let Some(g) = fake.garbage {
        sock.write_all(g).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let (_, evidence_spki) = key(1);
    let mut e = ProxyEvidence::new(
        PROXY_SHA256,
        MODEL_SHA256,
        BACKEND.into(),
        Tee::None,
        Gpu::None,
        None,
        evidence_spki,
        nonce,
    );
    if let Some(edit) = fake.edit {
        edit(&mut e);
        e.report_data =
            omega_proxy_evidence::report_data(&e.tls_spki, e.gpu_evidence.as_deref(), &e.nonce);
    }
    let mut resp = exchange::response(&e).map_err(|e| e.to_string())?;
    if fake.raw_tamper {
        let n = resp.len();
        resp[n - 64 - 32 - 10] ^= 1; // inside tls_spki's key bytes
    }
    sock.write_all(&resp).map_err(|e| e.to_string())?;

    let (pkcs8, spki) = key(fake.tls_seed.unwrap_or(1));
    let signer = ring_provider::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(pkcs8))
        .map_err(|e| e.to_string())?;
    let certified = Arc::new(CertifiedKey::new(vec![CertificateDer::from(spki)], signer));
    let config = ServerConfig::builder_with_provider(Arc::new(ring_provider::default_provider()))
        .with_protocol_versions(&[&TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(certified)));
    let mut conn = ServerConnection::new(Arc::new(config)).map_err(|e| e.to_string())?;
    let mut first = true;
    loop {
        // One HTTP request: head, then Content-Length bytes.
        let start = plaintext.len();
        let request_len = loop {
            let got = &plaintext[start..];
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    break end + 4 + len;
                }
            }
            if conn.complete_io(&mut sock).map_err(|e| e.to_string())? == (0, 0) {
                return Ok(()); // the client closed
            }
            let mut buf = [0u8; 4096];
            match conn.reader().read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => plaintext.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.to_string()),
            }
        };
        debug_assert!(request_len > 0);
        let answer = fake.answer.clone().unwrap_or_else(|| completion("pong"));
        conn.writer()
            .write_all(&answer)
            .map_err(|e| e.to_string())?;
        let mut tls = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut tls).map_err(|e| e.to_string())?;
        }
        if fake.tamper_answer && first {
            let n = tls.len();
            tls[n - 20] ^= 0x40;
        }
        first = false;
        sock.write_all(&tls).map_err(|e| e.to_string())?;
    }
}

/// A socket that records what the client sent.
struct Recording {
    sock: TcpStream,
    sent: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Transport for Recording {
    type Error = std::io::Error;
    fn send(&mut self, bytes: &[u8]) -> Result<(), std::io::Error> {
        self.sent.lock().unwrap().extend_from_slice(bytes);
        self.sock.write_all(bytes)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        self.sock.read(buf)
    }
}

fn client() -> Client {
    Client::new(
        ring_provider::default_provider().secure_random,
        Arc::new(CallerClock::new(1_764_600_000)),
    )
}

type Sent = Arc<std::sync::Mutex<Vec<u8>>>;

fn connect(
    fake: Fake,
    expect: &Expectations,
) -> (
    Result<Connection<Recording>, ClientError>,
    Sent,
    mpsc::Receiver<Seen>,
) {
    let (addr, seen) = spawn_fake(fake);
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let sent = Sent::default();
    let t = Recording {
        sock,
        sent: sent.clone(),
    };
    let nonce = [0x5a; 32];
    (client().connect(t, &nonce, expect), sent, seen)
}

fn ask(conn: &mut Connection<Recording>, prompt: &str) -> Result<String, ClientError> {
    let messages = [Message {
        role: "user",
        content: prompt,
    }];
    conn.chat(&ChatRequest {
        model: "m",
        messages: &messages,
        max_tokens: Some(8),
        temperature: Some(0.0),
        seed: None,
    })
    .map(|r| r.content)
}

const PROMPT: &str = "the secret prompt 7f3a";

/// A refusal before TLS: the client sent the evidence request and nothing else.
fn assert_refused_before_tls(fake: Fake, expect: &Expectations, want: Refusal) {
    let (r, sent, _) = connect(fake, expect);
    match r {
        Err(ClientError::Refused(got)) => assert_eq!(got, want),
        Err(e) => panic!("expected refusal {want:?}, got {e}"),
        Ok(_) => panic!("expected refusal {want:?}, connected"),
    }
    assert_eq!(
        sent.lock().unwrap().len(),
        REQUEST_LEN,
        "bytes after the request"
    );
}

#[test]
fn evidence_then_pinned_tls_then_two_calls_on_one_connection() {
    let (conn, sent, seen) = connect(Fake::default(), &expect());
    let mut conn = conn.expect("connect");
    assert_eq!(conn.proxy().identity, identity(Tee::None));
    assert_eq!(ask(&mut conn, PROMPT).unwrap(), "pong");
    assert_eq!(ask(&mut conn, "again").unwrap(), "pong");
    drop(conn);
    let seen = seen.recv().unwrap();
    assert!(seen.error.is_none(), "{:?}", seen.error);
    let text = String::from_utf8(seen.plaintext).unwrap();
    assert!(
        text.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{text}"
    );
    assert!(text.contains(PROMPT) && text.contains("again"));
    assert_eq!(text.matches("POST ").count(), 2);
    // SECURITY check of the channel: the prompt never crossed in cleartext.
    let wire = sent.lock().unwrap();
    assert!(!wire.windows(PROMPT.len()).any(|w| w == PROMPT.as_bytes()));
}

#[test]
fn another_key_than_the_evidence_names_is_refused_before_any_request() {
    let (r, _sent, seen) = connect(
        Fake {
            tls_seed: Some(2),
            ..Fake::default()
        },
        &expect(),
    );
    match r {
        Err(ClientError::Tls(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("connected to a proxy with another key"),
    }
    // The proxy decrypted nothing from the client.
    let seen = seen.recv().unwrap();
    assert!(seen.plaintext.is_empty());
}

#[test]
fn wrong_model_wrong_identity_wrong_nonce_and_tampered_evidence_are_refused() {
    assert_refused_before_tls(
        Fake {
            edit: Some(|e| e.model_sha256 = [0x33; 32]),
            ..Fake::default()
        },
        &expect(),
        Refusal::Model {
            expected: MODEL_SHA256,
            got: [0x33; 32],
        },
    );
    // Without a separate model pin, the identity catches the other model.
    let mut by_identity = expect();
    by_identity.model_sha256 = None;
    let other =
        omega_proxy_evidence::identity(&PROXY_SHA256, &[0x33; 32], BACKEND, Tee::None, &Gpu::None);
    assert_refused_before_tls(
        Fake {
            edit: Some(|e| e.model_sha256 = [0x33; 32]),
            ..Fake::default()
        },
        &by_identity,
        Refusal::Identity {
            expected: identity(Tee::None),
            got: other,
        },
    );
    // Another proxy binary.
    let (r, _, _) = connect(
        Fake {
            edit: Some(|e| e.proxy_sha256[0] ^= 1),
            ..Fake::default()
        },
        &expect(),
    );
    assert!(matches!(
        r,
        Err(ClientError::Refused(Refusal::Identity { .. }))
    ));
    // Evidence for another nonce: a replay.
    assert_refused_before_tls(
        Fake {
            edit: Some(|e| e.nonce = [0x5b; 32]),
            ..Fake::default()
        },
        &expect(),
        Refusal::Nonce,
    );
    // A relay that swaps the key in the evidence breaks report_data.
    assert_refused_before_tls(
        Fake {
            raw_tamper: true,
            ..Fake::default()
        },
        &expect(),
        Refusal::Evidence(EvidenceError::ReportData),
    );
}

#[test]
fn a_proxy_without_tee_is_refused_where_policy_requires_one() {
    let mut strict = expect();
    strict.require_tee = true;
    assert_refused_before_tls(Fake::default(), &strict, Refusal::NoTee);
    // A claimed TEE without a verifiable report is refused too.
    strict.identity = identity(Tee::SevSnp);
    assert_refused_before_tls(
        Fake {
            edit: Some(|e| e.tee = Tee::SevSnp),
            ..Fake::default()
        },
        &strict,
        Refusal::TeeUnproven,
    );
    // The policy's rule: labelled data needs a TEE.
    assert!(Expectations::from_policy([0; 32], true).require_tee);
    assert!(!Expectations::from_policy([0; 32], false).require_tee);
    let mut gpu = expect();
    gpu.require_confidential_gpu = Some(omega_inference_client::GpuRequirement {
        reference: vec![omega_gpu_evidence::ReferenceValue {
            index: 1,
            allowed: vec![vec![0; 48]],
        }],
        root_der: None,
    });
    assert_refused_before_tls(Fake::default(), &gpu, Refusal::NoConfidentialGpu);
}

#[test]
fn tampered_ciphertext_is_an_error_and_the_connection_is_dead() {
    let (conn, _, _) = connect(
        Fake {
            tamper_answer: true,
            ..Fake::default()
        },
        &expect(),
    );
    let mut conn = conn.expect("connect");
    match ask(&mut conn, PROMPT) {
        Err(ClientError::Tls(rustls::Error::DecryptError)) => {}
        other => panic!("expected a decrypt error, got {other:?}"),
    }
    assert!(matches!(ask(&mut conn, PROMPT), Err(ClientError::Broken)));
}

#[test]
fn garbage_instead_of_evidence_is_refused() {
    for garbage in [
        &b"HTTP/1.1 400 Bad Request\r\n\r\n"[..],
        &[0x16, 0x03, 0x03, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0][..],
    ] {
        let (r, sent, _) = connect(
            Fake {
                garbage: Some(garbage),
                ..Fake::default()
            },
            &expect(),
        );
        assert!(
            matches!(
                r,
                Err(ClientError::Exchange(exchange::ExchangeError::Magic))
            ),
            "{:?}",
            r.err()
        );
        assert_eq!(sent.lock().unwrap().len(), REQUEST_LEN);
    }
    // A header announcing a huge evidence: refused before allocating it.
    let mut huge = exchange::RESPONSE_MAGIC.to_vec();
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    let huge: &'static [u8] = huge.leak();
    let (r, _, _) = connect(
        Fake {
            garbage: Some(huge),
            ..Fake::default()
        },
        &expect(),
    );
    assert!(matches!(
        r,
        Err(ClientError::Exchange(exchange::ExchangeError::Length(
            u32::MAX
        )))
    ));
    // The proxy hangs up mid-evidence.
    let (r, _, _) = connect(
        Fake {
            garbage: Some(b"OPEVRSP1\x00\x00\x01\x00abc"),
            ..Fake::default()
        },
        &expect(),
    );
    assert!(matches!(r, Err(ClientError::Closed)), "{:?}", r.err());
}

#[test]
fn oversized_and_error_answers() {
    let big = b"HTTP/1.1 200 OK\r\ncontent-length: 2000000\r\n\r\n".to_vec();
    let (conn, _, _) = connect(
        Fake {
            answer: Some(big),
            ..Fake::default()
        },
        &expect(),
    );
    let mut conn = conn.expect("connect");
    assert!(matches!(
        ask(&mut conn, PROMPT),
        Err(ClientError::Http(HttpError::BodyTooLarge))
    ));

    let body = r#"{"error":{"message":"model 'x' not found","type":"invalid_request_error","param":"model","code":"model_not_found"}}"#;
    let answer = format!(
        "HTTP/1.1 404 Not Found\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (conn, _, _) = connect(
        Fake {
            answer: Some(answer.into_bytes()),
            ..Fake::default()
        },
        &expect(),
    );
    let mut conn = conn.expect("connect");
    match ask(&mut conn, PROMPT) {
        Err(ClientError::Api { status, message }) => {
            assert_eq!((status, message.as_str()), (404, "model 'x' not found"));
        }
        other => panic!("{other:?}"),
    }
}

/// A relay between the client and the fake proxy that flips one bit of the proxy's stream at
/// byte `at` (the evidence, the handshake, or the answer).
/// Also returns the bytes the proxy sent (before the flip), once the connection ends.
fn flipping_relay(upstream: SocketAddr, at: usize) -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (total, total_rx) = mpsc::channel();
    thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(upstream).unwrap();
        let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = c_read.read(&mut buf) {
                if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = s_write.shutdown(std::net::Shutdown::Write);
        });
        let (mut s_read, mut c_write) = (server, client);
        let mut seen = 0usize;
        let mut stream = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s_read.read(&mut buf) {
            if n == 0 {
                break;
            }
            stream.extend_from_slice(&buf[..n]);
            if (seen..seen + n).contains(&at) {
                buf[at - seen] ^= 0x01;
            }
            seen += n;
            if c_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = c_write.shutdown(std::net::Shutdown::Both);
        let _ = total.send(stream);
    });
    (addr, total_rx)
}

#[test]
fn a_relay_flipping_any_byte_never_yields_another_answer() {
    // The length of the proxy's whole stream for one call, through a relay that flips nothing.
    let (upstream, _) = spawn_fake(Fake::default());
    let (relay, total) = flipping_relay(upstream, usize::MAX);
    let sock = TcpStream::connect(relay).unwrap();
    let t = Recording {
        sock,
        sent: Sent::default(),
    };
    let mut conn = client().connect(t, &[0x5a; 32], &expect()).unwrap();
    assert_eq!(ask(&mut conn, PROMPT).unwrap(), "pong");
    drop(conn);
    let stream = total.recv().unwrap();
    let len = stream.len();
    assert!(len > 500, "{len}");
    // The offsets of the bytes TLS 1.3 does not authenticate (after the evidence): every
    // record's legacy_record_version, which receivers ignore (RFC 8446 §5.1), and the outer
    // type of encrypted records (rustls builds their AEAD's additional data from the fixed
    // 0x17 0x0303, so only the length is bound; the real type is inside, authenticated).
    let mut unauthenticated = Vec::new();
    let header: [u8; exchange::RESPONSE_HEADER_LEN] =
        stream[..exchange::RESPONSE_HEADER_LEN].try_into().unwrap();
    let mut at = exchange::RESPONSE_HEADER_LEN + exchange::parse_response_header(&header).unwrap();
    while at + 5 <= len {
        unauthenticated.extend([at + 1, at + 2]);
        if stream[at] == 0x17 {
            unauthenticated.push(at);
        }
        at += 5 + usize::from(u16::from_be_bytes([stream[at + 3], stream[at + 4]]));
    }
    assert_eq!(at, len, "the stream is whole TLS records");

    let stride = std::env::var("OMEGA_FLIP_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5usize);
    let mut accepted = Vec::new();
    for at in (0..len).step_by(stride) {
        let (upstream, _) = spawn_fake(Fake::default());
        let (relay, _) = flipping_relay(upstream, at);
        let sock = TcpStream::connect(relay).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let t = Recording {
            sock,
            sent: Sent::default(),
        };
        let result = client()
            .connect(t, &[0x5a; 32], &expect())
            .and_then(|mut c| ask(&mut c, PROMPT));
        if let Ok(answer) = result {
            // SECURITY: integrity — the true answer or an error, never another answer.
            assert_eq!(answer, "pong", "flip at {at} changed the answer");
            accepted.push(at);
        }
    }
    // Every other byte the proxy sends is authenticated: the evidence by its strict decoding
    // and report_data, the handshake by the transcript, the records by the AEAD.
    eprintln!("stream of {len} bytes; flips accepted at {accepted:?}");
    for at in &accepted {
        assert!(
            unauthenticated.contains(at),
            "flip at {at} accepted: {accepted:?}"
        );
    }
}

/// Drives a [`Session`] as the monitor does: no blocking, bytes handed over one at a time in
/// both directions, calls submitted before the evidence arrives.
fn drive_session(
    fake: Fake,
    candidates: Vec<Expectations>,
    calls: &[(u64, &str)],
) -> (Vec<Event>, Vec<u8>, Seen) {
    use omega_inference_client::Session;
    let (addr, seen) = spawn_fake(fake);
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut session = Session::new(&client(), [0x5a; 32], candidates);
    for (id, prompt) in calls {
        let messages = [Message {
            role: "user",
            content: prompt,
        }];
        session
            .submit(
                *id,
                &ChatRequest {
                    model: "m",
                    messages: &messages,
                    max_tokens: Some(8),
                    temperature: Some(0.0),
                    seed: None,
                },
            )
            .unwrap();
    }
    let mut events = Vec::new();
    let mut sent = Vec::new();
    let mut answered = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let out = session.take_outgoing();
        if !out.is_empty() {
            sent.extend_from_slice(&out);
            if sock.write_all(&out).is_err() {
                break;
            }
        }
        while let Some(e) = session.poll() {
            let end = matches!(e, Event::Broken { .. });
            answered += usize::from(matches!(e, Event::Answer { .. }));
            events.push(e);
            if end {
                drop(sock);
                return (events, sent, seen.recv().unwrap());
            }
        }
        if answered == calls.len() && session.phase() == omega_inference_client::Phase::Ready {
            break;
        }
        let mut buf = [0u8; 4096];
        match sock.read(&mut buf) {
            Ok(0) => session.close(ClientError::Closed),
            Ok(n) => buf[..n].iter().for_each(|b| session.feed(&[*b])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
    drop(sock);
    (events, sent, seen.recv().unwrap())
}

use omega_inference_client::Event;

#[test]
fn session_queues_calls_during_the_handshake_and_answers_them_in_order() {
    // Two models in the policy: the proxy is the second one's.
    let other = Expectations {
        identity: [0x77; 32],
        model_sha256: None,
        require_tee: false,
        require_confidential_gpu: None,
    };
    let mine = Expectations {
        model_sha256: None,
        ..expect()
    };
    let (events, sent, seen) = drive_session(
        Fake::default(),
        vec![other, mine],
        &[(7, PROMPT), (9, "again")],
    );
    assert!(matches!(events[0], Event::Established), "{events:?}");
    let answers: Vec<(u64, String)> = events[1..]
        .iter()
        .map(|e| match e {
            Event::Answer { id, result } => (*id, result.as_ref().unwrap().content.clone()),
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(answers, [(7, "pong".into()), (9, "pong".into())]);
    assert!(!sent.windows(PROMPT.len()).any(|w| w == PROMPT.as_bytes()));
    let text = String::from_utf8(seen.plaintext).unwrap();
    assert_eq!(text.matches("POST ").count(), 2);
}

#[test]
fn session_refusal_and_tampering_name_every_waiting_call() {
    // Evidence for another binary: refused before anything but the evidence request left.
    let (events, sent, _) = drive_session(
        Fake {
            edit: Some(|e| e.proxy_sha256 = [0x99; 32]),
            ..Fake::default()
        },
        vec![expect()],
        &[(1, PROMPT), (2, PROMPT)],
    );
    assert_eq!(sent.len(), REQUEST_LEN);
    match &events[..] {
        [Event::Broken { error, waiting }] => {
            assert!(matches!(
                error,
                ClientError::Refused(Refusal::Identity { .. })
            ));
            assert_eq!(waiting, &[1, 2]);
        }
        e => panic!("{e:?}"),
    }
    // A flipped ciphertext byte in the first answer: that call and the queued one fail.
    let (events, _, _) = drive_session(
        Fake {
            tamper_answer: true,
            ..Fake::default()
        },
        vec![expect()],
        &[(1, PROMPT), (2, PROMPT)],
    );
    match &events[..] {
        [Event::Established, Event::Broken { error, waiting }] => {
            assert!(matches!(
                error,
                ClientError::Tls(rustls::Error::DecryptError)
            ));
            assert_eq!(waiting, &[1, 2]);
        }
        e => panic!("{e:?}"),
    }
}

/// A streamed answer as omega-proxy sends it: server-sent events in HTTP chunks.
fn streamed(pieces: &[&str]) -> Vec<u8> {
    let mut events = String::from("data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n");
    for p in pieces {
        events.push_str(&format!(
            "data: {}\n\n",
            serde_json::json!({"choices": [{"delta": {"content": p}}]})
        ));
    }
    events.push_str("data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    events.push_str(
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":4}}\n\n",
    );
    events.push_str("data: [DONE]\n\n");
    let mut out =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for line in events.split_inclusive("\n\n") {
        out.extend_from_slice(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes());
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn a_streamed_answer_comes_in_pieces_and_the_connection_lives_on() {
    let fake = Fake {
        answer: Some(streamed(&["Bl", "ue", " sky", "."])),
        ..Fake::default()
    };
    let (conn, sent, seen) = connect(fake, &expect());
    let mut conn = conn.unwrap();
    let messages = [Message {
        role: "user",
        content: PROMPT,
    }];
    let req = ChatRequest {
        model: "m",
        messages: &messages,
        max_tokens: Some(8),
        temperature: Some(0.0),
        seed: None,
    };
    for _ in 0..2 {
        let mut pieces = Vec::new();
        let end = conn
            .chat_stream(&req, |t| pieces.push(t.to_string()))
            .unwrap();
        assert_eq!(pieces.concat(), "Blue sky.");
        assert_eq!(end.completion_tokens, Some(4));
        assert_eq!(end.finish_reason.as_deref(), Some("stop"));
    }
    drop(conn);
    let seen = seen.recv().unwrap();
    let text = String::from_utf8(seen.plaintext).unwrap();
    assert_eq!(text.matches("\"stream\":true").count(), 2, "{text}");
    assert!(text.contains("\"include_usage\":true"), "{text}");
    let sent = sent.lock().unwrap();
    assert!(!sent.windows(PROMPT.len()).any(|w| w == PROMPT.as_bytes()));
}

#[test]
fn a_session_merges_the_text_that_arrives_between_two_polls() {
    use omega_inference_client::Session;
    let fake = Fake {
        answer: Some(streamed(&["a", "b", "c", "d", "e"])),
        ..Fake::default()
    };
    let (addr, _seen) = spawn_fake(fake);
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut session = Session::new(&client(), [0x5a; 32], vec![expect()]);
    let messages = [Message {
        role: "user",
        content: PROMPT,
    }];
    session
        .submit_stream(
            3,
            &ChatRequest {
                model: "m",
                messages: &messages,
                max_tokens: Some(8),
                temperature: Some(0.0),
                seed: None,
            },
        )
        .unwrap();
    let mut deltas = Vec::new();
    let mut end = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while end.is_none() && std::time::Instant::now() < deadline {
        let out = session.take_outgoing();
        if !out.is_empty() {
            sock.write_all(&out).unwrap();
        }
        // Everything one read brought is fed before polling: one event for all of it.
        let mut buf = [0u8; 65536];
        match sock.read(&mut buf) {
            Ok(0) => session.close(ClientError::Closed),
            Ok(n) => buf[..n].iter().for_each(|b| session.feed(&[*b])),
            Err(_) => {}
        }
        while let Some(e) = session.poll() {
            match e {
                Event::Established => {}
                Event::Delta { id: 3, text } => deltas.push(text),
                Event::StreamEnd { id: 3, result } => end = Some(result.unwrap()),
                e => panic!("{e:?}"),
            }
        }
    }
    assert_eq!(deltas.concat(), "abcde");
    // The fake writes the whole answer at once: it arrives in one or a few reads, never one
    // event per token.
    assert!(deltas.len() < 5, "{deltas:?}");
    assert_eq!(end.unwrap().completion_tokens, Some(4));
}
