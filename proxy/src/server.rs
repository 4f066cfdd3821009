//! The HTTP server: OpenAI chat completions (whole and streamed), models, health.
//!
//! One inference worker per model (a thread owning the llama.cpp context) takes jobs from a
//! bounded queue; a request that finds the queue full gets 503 at once. The worker hands text
//! to the request through a small channel; when the request goes away (a streaming client
//! that disconnects drops the response body) the channel closes and the worker stops
//! generating at the next token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use llama_cpp_2::token::LlamaToken;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::engine::{Engine, EngineError, Finish, Outcome, Sampling};
use crate::openai::{self, ChatRequest, Usage};

/// The largest request body accepted (bytes).
pub const MAX_BODY: usize = 1 << 20;

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Requests waiting for the worker at most (beyond the one it is running).
    pub queue: usize,
    /// Completion tokens per request at most, whatever `max_tokens` asks.
    pub max_tokens_cap: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            queue: 16,
            max_tokens_cap: 512,
        }
    }
}

/// What the worker sends back for one job.
enum Event {
    Text(String),
    Done(Outcome),
    Failed(String),
}

struct Job {
    prompt: Vec<LlamaToken>,
    sampling: Sampling,
    events: mpsc::Sender<Event>,
}

struct Shared {
    engine: Arc<Engine>,
    model_id: String,
    config: ServerConfig,
    jobs: SyncSender<Job>,
    counters: Arc<Counters>,
}

/// What the server has done, for `GET /health` (operators and the cancellation test).
#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    cancelled: AtomicU64,
    refused_busy: AtomicU64,
}

/// Starts the worker thread for `engine` and returns the router serving it as `model_id`.
pub fn router(engine: Arc<Engine>, model_id: String, config: ServerConfig) -> Router {
    let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(config.queue);
    let worker_engine = engine.clone();
    let counters = Arc::new(Counters::default());
    let worker_counters = counters.clone();
    std::thread::Builder::new()
        .name("inference".into())
        .spawn(move || worker(&worker_engine, queue, &worker_counters))
        .expect("spawning the inference worker");
    let shared = Arc::new(Shared {
        engine,
        model_id,
        config,
        jobs,
        counters,
    });
    openai_routes(post(chat), get(models), get(health)).with_state(shared)
}

/// The OpenAI-compatible surface every backend serves with its own handlers (the built-in
/// engine's here, the upstream's in [`crate::upstream`]): chat completions, models and
/// health, on the same paths and with the same body limit.
pub(crate) fn openai_routes<S: Clone + Send + Sync + 'static>(
    chat: MethodRouter<S>,
    models: MethodRouter<S>,
    health: MethodRouter<S>,
) -> Router<S> {
    Router::new()
        .route("/v1/chat/completions", chat)
        .route("/v1/models", models)
        .route("/health", health)
        // SECURITY: bounds what one request makes the proxy buffer, parse and (upstream)
        // forward.
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // Streamed chunks are small: without TCP_NODELAY, Nagle holds one back until the client
    // acknowledges the previous one.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, router).await
}

/// Serves `router` on the evidence-bound TLS port until the process ends.
pub async fn serve_tls(listener: crate::tls::TlsListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// Like [`spawn`], with the evidence-bound TLS port (evidence from `source`, TLS with
/// `config`) instead of the plain socket.
pub fn spawn_tls(
    addr: SocketAddr,
    router: Router,
    config: rustls::ServerConfig,
    source: crate::tls::EvidenceSource,
) -> std::io::Result<SocketAddr> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(async {
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        crate::tls::TlsListener::new(tcp, config, source)
    })?;
    let bound = axum::serve::Listener::local_addr(&listener)?;
    std::thread::Builder::new()
        .name("https".into())
        .spawn(move || {
            if let Err(e) = runtime.block_on(serve_tls(listener, router)) {
                tracing::error!("TLS server stopped: {e}");
            }
        })?;
    Ok(bound)
}

/// Binds `addr`, serves `router` on a background runtime thread, and returns the bound
/// address (tests and the benchmark use port 0).
pub fn spawn(addr: SocketAddr, router: Router) -> std::io::Result<SocketAddr> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            if let Err(e) = runtime.block_on(serve(listener, router)) {
                tracing::error!("server stopped: {e}");
            }
        })?;
    Ok(bound)
}

fn worker(engine: &Engine, queue: std::sync::mpsc::Receiver<Job>, counters: &Counters) {
    let mut session = match engine.session() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("inference worker cannot start: {e}");
            // Every job is answered with the error rather than left waiting.
            for job in queue {
                let _ = job.events.blocking_send(Event::Failed(e.to_string()));
            }
            return;
        }
    };
    for job in queue {
        // A client that left while queued costs nothing.
        if job.events.is_closed() {
            counters.cancelled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let events = &job.events;
        let result = session.generate(&job.prompt, &job.sampling, |text| {
            events.blocking_send(Event::Text(text.to_owned())).is_ok()
        });
        let last = match result {
            Ok(outcome) if outcome.finish == Finish::Cancelled => {
                tracing::info!(
                    "generation cancelled after {} tokens",
                    outcome.completion_tokens
                );
                counters.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(outcome) => {
                counters.completed.fetch_add(1, Ordering::Relaxed);
                Event::Done(outcome)
            }
            Err(e) => Event::Failed(e.to_string()),
        };
        let _ = events.blocking_send(last);
    }
}

pub(crate) fn error_response(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    (
        status,
        axum::Json(openai::error(message, kind, param, code)),
    )
        .into_response()
}

/// A chat request that passed [`check_chat`], with the defaults filled in.
pub(crate) struct CheckedChat {
    pub messages: Vec<crate::engine::Message>,
    /// `max_completion_tokens`, else `max_tokens`; never `Some(0)`.
    pub max_tokens: Option<u32>,
    pub temperature: f32,
    pub top_p: f32,
}

/// The checks every backend makes before serving a chat request, each refusal in OpenAI's
/// error shape: the model is the one served, no unsupported parameter, the messages convert,
/// temperature in [0, 2], top_p in (0, 1], max_tokens at least 1.
/// The refusal is boxed: a `Response` is large and the check's caller returns it at once.
pub(crate) fn check_chat(
    request: &ChatRequest,
    served: &str,
) -> Result<CheckedChat, Box<Response>> {
    if request.model != served {
        return Err(Box::new(error_response(
            StatusCode::NOT_FOUND,
            &format!(
                "the model {:?} does not exist; this server serves {served:?}",
                request.model
            ),
            "invalid_request_error",
            Some("model"),
            Some("model_not_found"),
        )));
    }
    if let Some(param) = request.unsupported() {
        return Err(Box::new(invalid(
            &format!("{param} is not supported by this server"),
            Some(param),
            Some("unsupported_parameter"),
        )));
    }
    let messages = request
        .messages()
        .map_err(|message| Box::new(invalid(&message, Some("messages"), None)))?;
    let temperature = request.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(Box::new(invalid(
            "temperature must be between 0 and 2",
            Some("temperature"),
            None,
        )));
    }
    let top_p = request.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(Box::new(invalid(
            "top_p must be in (0, 1]",
            Some("top_p"),
            None,
        )));
    }
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    if max_tokens == Some(0) {
        return Err(Box::new(invalid(
            "max_tokens must be at least 1",
            Some("max_tokens"),
            None,
        )));
    }
    Ok(CheckedChat {
        messages,
        max_tokens,
        temperature,
        top_p,
    })
}

pub(crate) fn invalid(message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        param,
        code,
    )
}

async fn health(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    let c = &shared.counters;
    axum::Json(json!({
        "status": "ok",
        "completed": c.completed.load(Ordering::Relaxed),
        "cancelled": c.cancelled.load(Ordering::Relaxed),
        "refused_busy": c.refused_busy.load(Ordering::Relaxed),
    }))
}

async fn models(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    axum::Json(openai::models(&shared.model_id))
}

async fn chat(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    // Parsed by hand (not the Json extractor) so every refusal has OpenAI's error shape.
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return invalid(&format!("invalid request body: {e}"), None, None),
    };
    let checked = match check_chat(&request, &shared.model_id) {
        Ok(c) => c,
        Err(refusal) => return *refusal,
    };
    let (messages, asked) = (checked.messages, checked.max_tokens);
    let (temperature, top_p) = (checked.temperature, checked.top_p);
    let engine = shared.engine.clone();
    let prompt = match tokio::task::spawn_blocking(move || engine.prompt_tokens(&messages)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e @ EngineError::PromptTooLong { .. })) => {
            return invalid(
                &e.to_string(),
                Some("messages"),
                Some("context_length_exceeded"),
            );
        }
        Ok(Err(e @ (EngineError::NulInMessage | EngineError::EmptyPrompt))) => {
            return invalid(&e.to_string(), Some("messages"), None);
        }
        Ok(Err(e)) => return server_error(&e.to_string()),
        Err(e) => return server_error(&e.to_string()),
    };
    let room = shared.engine.config().ctx as usize - prompt.len();
    let max_tokens = asked
        .unwrap_or(shared.config.max_tokens_cap)
        .min(shared.config.max_tokens_cap)
        .min(u32::try_from(room).unwrap_or(u32::MAX));
    let seed = request.seed.map_or_else(random_seed, |s| s as u32);
    let sampling = Sampling {
        temperature,
        top_p,
        seed,
        max_tokens,
    };

    // Small: the worker waits on a slow reader rather than buffering a whole answer.
    let (events, mut receiver) = mpsc::channel(32);
    match shared.jobs.try_send(Job {
        prompt,
        sampling,
        events,
    }) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            // SECURITY: bounded queue: a flood of requests is refused, not buffered.
            shared.counters.refused_busy.fetch_add(1, Ordering::Relaxed);
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is busy (request queue full); retry later",
                "server_error",
                None,
                Some("queue_full"),
            );
        }
        Err(TrySendError::Disconnected(_)) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the inference worker has stopped",
                "server_error",
                None,
                None,
            );
        }
    }

    let id = format!(
        "chatcmpl-{:016x}",
        random_seed() as u64 | (u64::from(random_seed()) << 32)
    );
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let model = shared.model_id.clone();
    if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        let stream = SseStream {
            receiver,
            id,
            created,
            model,
            include_usage,
            state: SseState::Start,
        };
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from_stream(stream))
            .expect("a valid response");
    }

    let mut text = String::new();
    while let Some(event) = receiver.recv().await {
        match event {
            Event::Text(t) => text.push_str(&t),
            Event::Done(outcome) => {
                let usage = Usage::new(outcome.prompt_tokens, outcome.completion_tokens);
                let finish = outcome.finish.as_openai();
                let body = openai::completion(&id, created, &model, &text, finish, usage);
                return axum::Json(body).into_response();
            }
            Event::Failed(message) => return server_error(&message),
        }
    }
    server_error("the inference worker stopped")
}

fn server_error(message: &str) -> Response {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        message,
        "server_error",
        None,
        None,
    )
}

fn random_seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS once per process and varied per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish() as u32
}

enum SseState {
    Start,
    Streaming,
    Ended,
}

/// The worker's events as OpenAI's server-sent events: a first chunk with the role, one
/// chunk per burst of text (whatever text is waiting is sent in one chunk, so a slow reader
/// gets fewer, larger chunks), a last chunk with `finish_reason`, the usage chunk when asked
/// for, and `data: [DONE]`.
struct SseStream {
    receiver: mpsc::Receiver<Event>,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    state: SseState,
}

impl SseStream {
    fn event(value: &Value) -> Bytes {
        Bytes::from(format!("data: {value}\n\n"))
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        Self::event(&openai::chunk(
            &self.id,
            self.created,
            &self.model,
            delta,
            finish,
        ))
    }

    fn end(&mut self, outcome: Outcome) -> Bytes {
        let mut out = self
            .chunk(json!({}), Some(outcome.finish.as_openai()))
            .to_vec();
        if self.include_usage {
            let usage = Usage::new(outcome.prompt_tokens, outcome.completion_tokens);
            let chunk = openai::usage_chunk(&self.id, self.created, &self.model, usage);
            out.extend_from_slice(&Self::event(&chunk));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.state = SseState::Ended;
        Bytes::from(out)
    }
}

impl futures_core::Stream for SseStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.state {
            SseState::Ended => return Poll::Ready(None),
            SseState::Start => {
                this.state = SseState::Streaming;
                let first = this.chunk(json!({"role": "assistant", "content": ""}), None);
                return Poll::Ready(Some(Ok(first)));
            }
            SseState::Streaming => {}
        }
        let mut text = String::new();
        loop {
            match this.receiver.poll_recv(cx) {
                Poll::Ready(Some(Event::Text(t))) => text.push_str(&t),
                Poll::Ready(Some(Event::Done(outcome))) => {
                    let mut out = if text.is_empty() {
                        Vec::new()
                    } else {
                        this.chunk(json!({"content": text}), None).to_vec()
                    };
                    out.extend_from_slice(&this.end(outcome));
                    return Poll::Ready(Some(Ok(Bytes::from(out))));
                }
                Poll::Ready(Some(Event::Failed(message))) => {
                    this.state = SseState::Ended;
                    let error = openai::error(&message, "server_error", None, None);
                    return Poll::Ready(Some(Ok(Self::event(&error))));
                }
                Poll::Ready(None) => {
                    this.state = SseState::Ended;
                    return Poll::Ready(None);
                }
                Poll::Pending if text.is_empty() => return Poll::Pending,
                Poll::Pending => {
                    return Poll::Ready(Some(Ok(this.chunk(json!({"content": text}), None))));
                }
            }
        }
    }
}
