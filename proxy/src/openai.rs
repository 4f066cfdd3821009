//! The subset of OpenAI's chat-completions API the proxy speaks: requests, responses,
//! streamed chunks and errors, in OpenAI's JSON shapes.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::Message;

/// `POST /v1/chat/completions`. Fields the proxy does not implement are refused by
/// [`ChatRequest::unsupported`] rather than silently ignored.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens`.
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<i64>,
    pub n: Option<u32>,
    pub stop: Option<Value>,
    pub tools: Option<Value>,
    pub response_format: Option<Value>,
    pub logprobs: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Content,
}

/// A message's content: a string, or parts of which only text is supported.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

impl ChatRequest {
    /// The first parameter this server does not implement, if the request uses one.
    pub fn unsupported(&self) -> Option<&'static str> {
        if self.n.is_some_and(|n| n != 1) {
            return Some("n");
        }
        if self.stop.as_ref().is_some_and(|s| !s.is_null()) {
            return Some("stop");
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_null()) {
            return Some("tools");
        }
        if self
            .response_format
            .as_ref()
            .is_some_and(|f| f.get("type") != Some(&json!("text")))
        {
            return Some("response_format");
        }
        if self.logprobs == Some(true) {
            return Some("logprobs");
        }
        None
    }

    /// The messages as the chat template takes them; `Err(param)` names what is wrong.
    pub fn messages(&self) -> Result<Vec<Message>, String> {
        if self.messages.is_empty() {
            return Err("messages must not be empty".into());
        }
        self.messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let role = match m.role.as_str() {
                    "system" | "developer" => "system",
                    "user" => "user",
                    "assistant" => "assistant",
                    other => return Err(format!("messages[{i}].role {other:?} is not supported")),
                };
                let content = match &m.content {
                    Content::Text(t) => t.clone(),
                    Content::Parts(parts) => {
                        let mut text = String::new();
                        for p in parts {
                            match (p.kind.as_str(), &p.text) {
                                ("text", Some(t)) => text.push_str(t),
                                _ => {
                                    return Err(format!(
                                        "messages[{i}]: only text content parts are supported"
                                    ));
                                }
                            }
                        }
                        text
                    }
                };
                Ok(Message {
                    role: role.into(),
                    content,
                })
            })
            .collect()
    }
}

#[derive(Debug, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// A whole (non-streamed) completion.
pub fn completion(
    id: &str,
    created: u64,
    model: &str,
    text: &str,
    finish: &str,
    usage: Usage,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": usage,
    })
}

/// One streamed chunk: a `delta`, and `finish_reason` on the last one.
pub fn chunk(id: &str, created: u64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    })
}

/// The chunk that carries usage when `stream_options.include_usage` is set (no choices).
pub fn usage_chunk(id: &str, created: u64, model: &str, usage: Usage) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    })
}

/// OpenAI's error body.
pub fn error(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// `GET /v1/models`.
pub fn models(id: &str) -> Value {
    json!({"object": "list", "data": [{"id": id, "object": "model", "created": 0, "owned_by": "omega"}]})
}
