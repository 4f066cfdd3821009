//! An HTTP client's `POST /v1/chat/completions` body into the proxy's request parsing
//! (`proxy/src/openai.rs`: `ChatRequest` deserialisation, `unsupported`, `messages`), as
//! the server's handler runs it. Invariants: no panic; a request whose messages convert
//! has as many messages as it sent, each with one of the three roles the chat template
//! knows, text that is the request's own (a string, or the text parts joined).
#![no_main]

#[path = "../../src/openai.rs"]
#[allow(dead_code)]
mod openai;

/// Stand-in for `omega-proxy`'s `engine::Message` (same fields), so that `openai.rs`
/// compiles without the engine and llama.cpp.
mod engine {
    #[derive(Debug, Clone)]
    pub struct Message {
        pub role: String,
        pub content: String,
    }
}

use libfuzzer_sys::fuzz_target;
use openai::{ChatRequest, Content};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<ChatRequest>(data) else {
        return;
    };
    let _ = req.unsupported();
    if let Ok(msgs) = req.messages() {
        assert_eq!(msgs.len(), req.messages.len());
        for (m, sent) in msgs.iter().zip(&req.messages) {
            assert!(["system", "user", "assistant"].contains(&m.role.as_str()));
            match &sent.content {
                Content::Text(t) => assert_eq!(&m.content, t),
                Content::Parts(parts) => {
                    let joined: String = parts.iter().filter_map(|p| p.text.as_deref()).collect();
                    assert_eq!(m.content, joined);
                }
            }
        }
    }
});
