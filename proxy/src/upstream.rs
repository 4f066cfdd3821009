//! The OpenAI-compatible upstream backend (`omega-proxy serve --upstream http://HOST:PORT/v1
//! --upstream-model NAME`): the proxy forwards chat completions, whole and streamed, to a
//! production server (llama.cpp's `llama-server`, vLLM, another omega-proxy) and serves them
//! on its plain socket and its evidence-bound TLS port like the built-in engine.
//!
//! What the proxy checks before forwarding (the same refusals, in OpenAI's error shape, as the
//! built-in engine): the body parses, names the served model, uses no parameter the proxy does
//! not implement, has valid messages, temperature and top_p. It then caps the completion
//! length (`max_tokens` = min(asked, `--max-tokens`), `max_completion_tokens` removed), bounds
//! the requests in flight (more get 503), the time to connect, the whole exchange's duration
//! (a stream cut off at the deadline ends early; a whole answer late gets 504) and the bytes
//! of an answer. A client that goes away drops the upstream connection, which stops the
//! upstream's generation.
//!
//! What it can attest: its own binary, that the backend is an upstream with this model *name*
//! — not which weights the upstream runs: it hashes no model file, so its evidence carries
//! `model_sha256` = [`omega_proxy_evidence::MODEL_NOT_HASHED`] and backend
//! `openai-upstream:<name>`. The hop to the upstream is plain HTTP: keep it on the same
//! machine (or confidential VM) as the proxy.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body::Body as _;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::openai::{self, ChatRequest};
use crate::server::{check_chat, error_response, invalid, openai_routes};

/// The prefix of the backend name in the evidence.
pub const BACKEND_PREFIX: &str = "openai-upstream:";

/// Where and how to forward.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `HOST:PORT` of the upstream.
    pub authority: String,
    /// The path prefix of its API, e.g. `/v1` (chat completions go to `{prefix}/chat/completions`).
    pub prefix: String,
    /// The model name clients ask for and the upstream is asked for.
    pub model: String,
    /// Completion tokens per request at most.
    pub max_tokens_cap: u32,
    /// Requests forwarded at once; more get 503.
    pub max_in_flight: usize,
    /// Time to connect to the upstream.
    pub connect_timeout: Duration,
    /// Time for one whole exchange, answer streamed to the end included.
    pub timeout: Duration,
    /// Bytes of one answer at most (streamed or not).
    pub max_response: usize,
}

impl UpstreamConfig {
    /// Parses `http://HOST:PORT/PREFIX` (plain HTTP only; see the module docs).
    pub fn new(url: &str, model: String) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("the upstream URL must start with http:// (the hop stays on this machine)")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host_port = authority
            .rsplit_once(':')
            .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if host_port.is_none() || authority.contains('@') {
            return Err(format!(
                "the upstream URL needs HOST:PORT, got {authority:?}"
            ));
        }
        let prefix = path.trim_end_matches('/').to_owned();
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the upstream URL's path has spaces or control characters".into());
        }
        if model.is_empty() || BACKEND_PREFIX.len() + model.len() > omega_proxy_evidence::MAX_NAME {
            return Err(format!(
                "--upstream-model must be 1 to {} bytes (it goes into the evidence's backend name)",
                omega_proxy_evidence::MAX_NAME - BACKEND_PREFIX.len()
            ));
        }
        Ok(Self {
            authority: authority.to_owned(),
            prefix,
            model,
            max_tokens_cap: 512,
            max_in_flight: 16,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
            max_response: 8 << 20,
        })
    }

    /// The backend name the evidence carries.
    pub fn backend(&self) -> String {
        format!("{BACKEND_PREFIX}{}", self.model)
    }
}

struct Shared {
    config: UpstreamConfig,
    in_flight: Arc<Semaphore>,
    forwarded: AtomicU64,
    refused_busy: AtomicU64,
    failed: AtomicU64,
}

/// The router forwarding to `config`'s upstream.
pub fn router(config: UpstreamConfig) -> Router {
    let shared = Arc::new(Shared {
        in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
        config,
        forwarded: AtomicU64::new(0),
        refused_busy: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    openai_routes(post(chat), get(models), get(health)).with_state(shared)
}

async fn models(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    axum::Json(openai::models(&shared.config.model))
}

async fn health(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    axum::Json(json!({
        "status": "ok",
        "backend": shared.config.backend(),
        "forwarded": shared.forwarded.load(Ordering::Relaxed),
        "refused_busy": shared.refused_busy.load(Ordering::Relaxed),
        "failed": shared.failed.load(Ordering::Relaxed),
    }))
}

fn upstream_error(status: StatusCode, message: &str) -> Response {
    error_response(status, message, "upstream_error", None, None)
}

async fn chat(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let config = &shared.config;
    let mut value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid(&format!("invalid request body: {e}"), None, None),
    };
    let request: ChatRequest = match serde_json::from_value(value.clone()) {
        Ok(r) => r,
        Err(e) => return invalid(&format!("invalid request body: {e}"), None, None),
    };
    let asked = match check_chat(&request, &config.model) {
        Ok(c) => c.max_tokens,
        Err(refusal) => return *refusal,
    };
    // SECURITY: the cap holds whatever the client asked; the upstream sees one field only.
    let capped = asked.map_or(config.max_tokens_cap, |a| a.min(config.max_tokens_cap));
    if let Some(obj) = value.as_object_mut() {
        obj.remove("max_completion_tokens");
        obj.insert("max_tokens".into(), json!(capped));
    }
    let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
        shared.refused_busy.fetch_add(1, Ordering::Relaxed);
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is busy; retry later",
            "server_error",
            None,
            Some("server_busy"),
        );
    };
    let body = match serde_json::to_vec(&value) {
        Ok(b) => b,
        Err(e) => return upstream_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    match forward(config, body, permit).await {
        Ok(response) => {
            shared.forwarded.fetch_add(1, Ordering::Relaxed);
            response
        }
        Err((status, message)) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("upstream {}: {message}", config.authority);
            upstream_error(status, &message)
        }
    }
}

async fn forward(
    config: &UpstreamConfig,
    body: Vec<u8>,
    permit: OwnedSemaphorePermit,
) -> Result<Response, (StatusCode, String)> {
    let deadline = tokio::time::Instant::now() + config.timeout;
    let bad_gateway = |what: &str, e: &dyn std::fmt::Display| {
        (StatusCode::BAD_GATEWAY, format!("upstream {what}: {e}"))
    };
    let tcp = tokio::time::timeout(
        config.connect_timeout,
        tokio::net::TcpStream::connect(&config.authority),
    )
    .await
    .map_err(|_| {
        (
            StatusCode::GATEWAY_TIMEOUT,
            "upstream connect timed out".to_owned(),
        )
    })?
    .map_err(|e| bad_gateway("connect", &e))?;
    tcp.set_nodelay(true)
        .map_err(|e| bad_gateway("socket", &e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| bad_gateway("handshake", &e))?;
    // The connection's driver; it ends when the request and the answer's body are dropped.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("upstream connection: {e}");
        }
    });
    let request = Request::post(format!("{}/chat/completions", config.prefix))
        .header(header::HOST, &config.authority)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(http_body_util_full(body))
        .map_err(|e| bad_gateway("request", &e))?;
    let response = tokio::time::timeout_at(deadline, sender.send_request(request))
        .await
        .map_err(|_| {
            (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream did not answer in time".to_owned(),
            )
        })?
        .map_err(|e| bad_gateway("request", &e))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    let streaming = content_type
        .to_str()
        .is_ok_and(|c| c.starts_with("text/event-stream"));
    let bounded = Bounded {
        inner: response.into_body(),
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        left: config.max_response,
        _permit: permit,
    };
    if streaming {
        // Pieces go to the client as the upstream sends them.
        let mut out = Response::new(Body::from_stream(bounded));
        *out.status_mut() = status;
        out.headers_mut().insert(header::CONTENT_TYPE, content_type);
        out.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(out);
    }
    // A whole answer: read it within the bounds, so a late or oversized one is an error
    // rather than a truncated JSON document.
    let mut whole = Vec::new();
    let mut stream = bounded;
    while let Some(piece) =
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut stream), cx)).await
    {
        match piece {
            Ok(bytes) => whole.extend_from_slice(&bytes),
            Err(BoundedError::Deadline) => {
                return Err((
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream answer timed out".into(),
                ));
            }
            Err(e) => return Err(bad_gateway("answer", &e)),
        }
    }
    Ok((status, [(header::CONTENT_TYPE, content_type)], whole).into_response())
}

/// A request body of bytes held in memory (hyper's client needs an `http_body::Body`).
fn http_body_util_full(bytes: Vec<u8>) -> Body {
    Body::from(bytes)
}

/// Why a forwarded answer stopped.
#[derive(Debug, thiserror::Error)]
enum BoundedError {
    #[error("the exchange took longer than the upstream timeout")]
    Deadline,
    #[error("the answer is larger than the proxy accepts")]
    TooLarge,
    #[error("{0}")]
    Upstream(#[from] hyper::Error),
}

/// The upstream's answer body with a deadline and a byte budget; holds the in-flight permit
/// until it is dropped (the client has it all, or went away).
struct Bounded {
    inner: hyper::body::Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    left: usize,
    _permit: OwnedSemaphorePermit,
}

impl futures_core::Stream for Bounded {
    type Item = Result<Bytes, BoundedError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BoundedError::Deadline)));
        }
        loop {
            return match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let Some(left) = this.left.checked_sub(data.len()) else {
                            return Poll::Ready(Some(Err(BoundedError::TooLarge)));
                        };
                        this.left = left;
                        Poll::Ready(Some(Ok(data)))
                    }
                    // Trailers: nothing to forward.
                    Err(_) => continue,
                },
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_names() {
        let c = UpstreamConfig::new("http://127.0.0.1:8000/v1/", "qwen".into()).unwrap();
        assert_eq!(
            (c.authority.as_str(), c.prefix.as_str()),
            ("127.0.0.1:8000", "/v1")
        );
        assert_eq!(c.backend(), "openai-upstream:qwen");
        let c = UpstreamConfig::new("http://gpu-vm:8000", "m".into()).unwrap();
        assert_eq!(c.prefix, "");
        for bad in [
            "https://h:1/v1",
            "http://h/v1",
            "http://:1",
            "http://u@h:1",
            "ftp://h:1",
        ] {
            assert!(UpstreamConfig::new(bad, "m".into()).is_err(), "{bad}");
        }
        assert!(UpstreamConfig::new("http://h:1/v1", String::new()).is_err());
        assert!(UpstreamConfig::new("http://h:1/v1", "x".repeat(49)).is_err());
        assert!(UpstreamConfig::new("http://h:1/v1", "x".repeat(48)).is_ok());
    }
}
