//! The guest's client for Omega's inference proxy (no_std + alloc).
//!
//! One connection, over any byte [`Transport`] (the channel's Inference stream in the guest, a
//! socket in host tests), goes through three steps, and prompt bytes exist only in the third:
//!
//! 1. **Evidence.** The client sends the proxy-evidence request with a fresh nonce (cleartext,
//!    [`omega_proxy_evidence::exchange`]), reads the evidence, and [`check`]s it against the
//!    policy's [`Expectations`] (pinned identity, model, TEE/GPU requirements, nonce).
//! 2. **TLS 1.3** with rustls's unbuffered API and this crate's [`provider`] (ChaCha20-Poly1305,
//!    X25519, Ed25519), accepting exactly the raw public key the evidence named
//!    ([`verifier::PinnedKey`]); no resumption, so every connection checks fresh evidence.
//! 3. **HTTP/1.1** `POST /v1/chat/completions` (non-streaming) inside TLS, the response parsed
//!    within fixed bounds ([`http`]).
//!
//! Time comes from the caller ([`CallerClock`]); randomness from the caller's
//! [`SecureRandom`]. Nothing here panics on what the proxy or the relay sends.
#![no_std]

extern crate alloc;

pub mod check;
pub mod http;
pub mod policy;
pub mod provider;
pub mod session;
pub mod stream;
pub mod verifier;

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use omega_proxy_evidence::NONCE_LEN;
use omega_proxy_evidence::exchange::ExchangeError;
use rustls::crypto::{CryptoProvider, SecureRandom};
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;
use rustls::unbuffered::{EncodeError, EncryptError};
use serde::Deserialize;

pub use check::{Expectations, GpuRequirement, Refusal, VerifiedProxy, check};
pub use http::HttpError;
pub use session::{CallId, Event, Phase, Session};

/// A reliable, ordered byte stream to the proxy (through the untrusted relay).
pub trait Transport {
    type Error: core::fmt::Display;
    /// Sends all of `bytes`.
    fn send(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
    /// Receives at least one byte into `buf` (blocking); `Ok(0)` when the stream is closed.
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;
}

/// The name sent in SNI and `Host`: the proxy is identified by its evidence, not a name.
pub const SERVER_NAME: &str = "omega-proxy.invalid";

/// The incoming TLS buffer: one full TLS 1.3 record (16 KiB plaintext + 256 expansion +
/// 5 header) plus the rest of a read.
pub const INCOMING_TLS: usize = 16 * 1024 + 256 + 5 + 1024;
/// The largest amount of TLS bytes buffered for sending at once (the client encrypts a
/// request in pieces of at most [`PLAINTEXT_PIECE`]).
pub const MAX_OUTGOING_TLS: usize = 32 * 1024;
/// Plaintext encrypted per piece.
pub const PLAINTEXT_PIECE: usize = 8 * 1024;
/// The largest request body sent (the prompt and its JSON).
pub const MAX_REQUEST: usize = 1024 * 1024;
/// Steps of the TLS state machine per operation at most (a wedged state is an error, not a
/// hang).
pub(crate) const MAX_STEPS: usize = 1 << 20;

/// Why a connection or a call failed. After any error the connection is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("transport: {0}")]
    Transport(String),
    #[error("the proxy closed the connection")]
    Closed,
    #[error("evidence exchange: {0}")]
    Exchange(ExchangeError),
    #[error("proxy refused: {0}")]
    Refused(Refusal),
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    #[error("TLS state machine: {0}")]
    TlsState(&'static str),
    #[error("HTTP: {0}")]
    Http(HttpError),
    #[error("the proxy answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("the proxy's answer is not a chat completion: {0}")]
    Answer(&'static str),
    #[error("request is {0} bytes, more than {MAX_REQUEST}")]
    RequestTooLarge(usize),
    #[error("the connection failed earlier")]
    Broken,
    #[error("too many calls waiting for the proxy")]
    QueueFull,
}

/// The current time, set by the caller (the monitor's clock in the guest). rustls asks it
/// for the time; with a pinned key nothing depends on certificate validity periods.
#[derive(Debug, Default)]
pub struct CallerClock(AtomicU64);

impl CallerClock {
    pub fn new(unix_secs: u64) -> Self {
        Self(AtomicU64::new(unix_secs))
    }

    pub fn set(&self, unix_secs: u64) {
        self.0.store(unix_secs, Ordering::Relaxed);
    }
}

impl TimeProvider for CallerClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(core::time::Duration::from_secs(
            self.0.load(Ordering::Relaxed),
        )))
    }
}

/// What a client needs, built once and shared by its connections.
#[derive(Clone)]
pub struct Client {
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) clock: Arc<CallerClock>,
}

impl Client {
    /// A client drawing randomness from `random` and the time from `clock`. Call it once per
    /// randomness source: the provider's key-exchange group is a `'static` object (16 bytes).
    pub fn new(random: &'static dyn SecureRandom, clock: Arc<CallerClock>) -> Self {
        Self {
            provider: Arc::new(provider::provider(random)),
            clock,
        }
    }

    /// Obtains and checks the proxy's evidence for `nonce` (which the caller draws fresh for
    /// this connection), then completes the TLS handshake pinned to its key. No prompt can
    /// leave before this returns `Ok`. A blocking driver of [`Session`] over `transport`.
    pub fn connect<T: Transport>(
        &self,
        transport: T,
        nonce: &[u8; NONCE_LEN],
        expect: &Expectations,
    ) -> Result<Connection<T>, ClientError> {
        let mut session = Session::new(self, *nonce, vec![expect.clone()]);
        let mut transport = transport;
        let mut buf = vec![0u8; RECV_CHUNK].into_boxed_slice();
        loop {
            flush(&mut transport, &mut session)?;
            match session.poll() {
                Some(Event::Established) => {
                    let proxy = session
                        .proxy()
                        .cloned()
                        .ok_or(ClientError::TlsState("established without evidence"))?;
                    return Ok(Connection {
                        transport,
                        session,
                        proxy,
                        next_id: 0,
                        buf,
                    });
                }
                Some(Event::Broken { error, .. }) => return Err(error),
                Some(
                    Event::Answer { .. }
                    | Event::Models { .. }
                    | Event::Delta { .. }
                    | Event::StreamEnd { .. },
                ) => {
                    return Err(ClientError::TlsState("early answer"));
                }
                None => fill(&mut transport, &mut session, &mut buf)?,
            }
        }
    }
}

/// Bytes read from a blocking transport at once.
const RECV_CHUNK: usize = 16 * 1024;

/// An established, evidence-checked TLS connection to the proxy (a [`Session`] driven over
/// a blocking [`Transport`]).
pub struct Connection<T: Transport> {
    transport: T,
    session: Session,
    proxy: VerifiedProxy,
    next_id: CallId,
    buf: Box<[u8]>,
}

/// One chat message.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// `system`, `user` or `assistant`.
    pub role: &'a str,
    pub content: &'a str,
}

/// A chat-completion request (non-streaming).
#[derive(Debug, Clone, Copy)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [Message<'a>],
    pub max_tokens: Option<u32>,
    /// 0 = greedy.
    pub temperature: Option<f32>,
    pub seed: Option<u64>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatResponse {
    pub content: String,
    /// `stop` or `length`.
    pub finish_reason: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl<T: Transport> Connection<T> {
    /// The proxy's checked evidence (its identity is the principal to log).
    pub fn proxy(&self) -> &VerifiedProxy {
        &self.proxy
    }

    /// Sends one chat completion and waits for the answer. The connection stays usable for
    /// the next call unless the proxy closes it or an error occurs.
    pub fn chat(&mut self, req: &ChatRequest<'_>) -> Result<ChatResponse, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.session.submit(id, req)?;
        loop {
            self.flush()?;
            match self.session.poll() {
                Some(Event::Answer { id: got, result }) if got == id => return result,
                Some(
                    Event::Answer { .. }
                    | Event::Models { .. }
                    | Event::Established
                    | Event::Delta { .. }
                    | Event::StreamEnd { .. },
                ) => {}
                Some(Event::Broken { error, .. }) => return Err(error),
                None => self.fill()?,
            }
        }
    }

    /// Sends one streamed chat completion and hands its text to `on_text` as it arrives
    /// (whatever text one read from the transport brought, in one piece); returns the end.
    pub fn chat_stream(
        &mut self,
        req: &ChatRequest<'_>,
        mut on_text: impl FnMut(&str),
    ) -> Result<stream::StreamEnd, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.session.submit_stream(id, req)?;
        loop {
            self.flush()?;
            match self.session.poll() {
                Some(Event::Delta { id: got, text }) if got == id => on_text(&text),
                Some(Event::StreamEnd { id: got, result }) if got == id => return result,
                Some(Event::Broken { error, .. }) => return Err(error),
                Some(_) => {}
                None => self.fill()?,
            }
        }
    }

    fn flush(&mut self) -> Result<(), ClientError> {
        flush(&mut self.transport, &mut self.session)
    }

    fn fill(&mut self) -> Result<(), ClientError> {
        fill(&mut self.transport, &mut self.session, &mut self.buf)
    }
}

/// Sends what the session has for the proxy.
fn flush<T: Transport>(transport: &mut T, session: &mut Session) -> Result<(), ClientError> {
    let out = session.take_outgoing();
    if !out.is_empty()
        && let Err(e) = transport.send(&out)
    {
        session.close(ClientError::Broken);
        return Err(ClientError::Transport(e.to_string()));
    }
    Ok(())
}

/// Receives once (blocking) and feeds the session; a closed stream closes it.
fn fill<T: Transport>(
    transport: &mut T,
    session: &mut Session,
    buf: &mut [u8],
) -> Result<(), ClientError> {
    match transport.recv(buf) {
        Ok(0) => {
            session.close(ClientError::Closed);
            Ok(())
        }
        Ok(n) => {
            session.feed(&buf[..n.min(buf.len())]);
            Ok(())
        }
        Err(e) => {
            session.close(ClientError::Broken);
            Err(ClientError::Transport(e.to_string()))
        }
    }
}

/// Appends TLS bytes produced by `f` to `out`, growing it as rustls asks, up to
/// [`MAX_OUTGOING_TLS`].
pub(crate) fn encode_into(
    out: &mut Vec<u8>,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), ClientError> {
    grow_and_write(out, |buf| match f(buf) {
        Ok(n) => Ok(Ok(n)),
        Err(EncodeError::InsufficientSize(s)) => Ok(Err(s.required_size)),
        Err(EncodeError::AlreadyEncoded) => Err(ClientError::TlsState("already encoded")),
    })
}

pub(crate) fn encrypt_into(
    out: &mut Vec<u8>,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), ClientError> {
    grow_and_write(out, |buf| match f(buf) {
        Ok(n) => Ok(Ok(n)),
        Err(EncryptError::InsufficientSize(s)) => Ok(Err(s.required_size)),
        Err(EncryptError::EncryptExhausted) => Err(ClientError::TlsState("sequence exhausted")),
    })
}

/// `f` writes into a buffer and returns the length, or the size it needs.
fn grow_and_write(
    out: &mut Vec<u8>,
    mut f: impl FnMut(&mut [u8]) -> Result<Result<usize, usize>, ClientError>,
) -> Result<(), ClientError> {
    let start = out.len();
    out.resize(start + 1024, 0);
    for _ in 0..2 {
        match f(&mut out[start..])? {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(required) => {
                if start + required > MAX_OUTGOING_TLS {
                    out.truncate(start);
                    return Err(ClientError::TlsState("outgoing TLS data over the cap"));
                }
                out.resize(start + required, 0);
            }
        }
    }
    out.truncate(start);
    Err(ClientError::TlsState("outgoing buffer size"))
}

/// The request body; `stream` asks for server-sent events with a final usage chunk.
pub(crate) fn chat_body(req: &ChatRequest<'_>, stream: bool) -> Vec<u8> {
    let messages: Vec<serde_json::Value> = req
        .messages
        .iter()
        .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
        .collect();
    let mut body = serde_json::json!({"model": req.model, "messages": messages, "stream": stream});
    if stream {
        body["stream_options"] = serde_json::json!({"include_usage": true});
    }
    if let Some(n) = req.max_tokens {
        body["max_tokens"] = n.into();
    }
    if let Some(t) = req.temperature {
        body["temperature"] = serde_json::Value::from(f64::from(t));
    }
    if let Some(s) = req.seed {
        body["seed"] = s.into();
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: AnswerMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct AnswerMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Usage {
    prompt_tokens: u32,
    pub(crate) completion_tokens: u32,
}

#[derive(Deserialize)]
struct ApiError {
    error: ApiErrorBody,
}

#[derive(Deserialize)]
pub(crate) struct ApiErrorBody {
    pub(crate) message: String,
}

/// The longest error message kept from the proxy.
const MAX_ERROR_MESSAGE: usize = 512;

/// `message` cut to [`MAX_ERROR_MESSAGE`] bytes (at a character boundary).
pub(crate) fn cut_message(mut message: String) -> String {
    if message.len() > MAX_ERROR_MESSAGE {
        let mut cut = MAX_ERROR_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

pub(crate) fn parse_answer(resp: &http::Response) -> Result<ChatResponse, ClientError> {
    if resp.status != 200 {
        let message = serde_json::from_slice::<ApiError>(&resp.body)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| "(no OpenAI error body)".into());
        return Err(ClientError::Api {
            status: resp.status,
            message: cut_message(message),
        });
    }
    let c: Completion = serde_json::from_slice(&resp.body)
        .map_err(|_| ClientError::Answer("not JSON of the expected shape"))?;
    let choice = c
        .choices
        .into_iter()
        .next()
        .ok_or(ClientError::Answer("no choices"))?;
    let usage = c.usage.ok_or(ClientError::Answer("no usage"))?;
    Ok(ChatResponse {
        content: choice.message.content.unwrap_or_default(),
        finish_reason: choice.finish_reason.unwrap_or_default(),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
    })
}
