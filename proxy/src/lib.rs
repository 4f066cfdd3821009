//! Omega's inference proxy: serves a GGUF model through llama.cpp behind OpenAI's
//! chat-completions API, and presents evidence (`omega-proxy-evidence`) that binds its
//! binary, its model and its TLS key to a guest's nonce, and serves the same API over TLS 1.3
//! with that key after the evidence exchange (`tls`). See docs/inference.md.

pub mod client;
pub mod engine;
pub mod evidence;
pub mod gpu;
pub mod openai;
pub mod server;
pub mod tls;
pub mod tls_key;
pub mod upstream;

use std::path::{Path, PathBuf};

/// The default model's file name (scripts/fetch-model.sh).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The default model, for tests and the benchmark: env `OMEGA_MODEL`, else the cache that
/// scripts/fetch-model.sh fills (`OMEGA_MODEL_DIR`, else `$HOME/.cache/omega/models`).
pub fn default_model() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("OMEGA_MODEL") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let dir = match std::env::var_os("OMEGA_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(&std::env::var_os("HOME")?).join(".cache/omega/models"),
    };
    Some(dir.join(DEFAULT_MODEL_FILE)).filter(|p| p.is_file())
}

/// The id a model is served under: its file name without `.gguf`.
pub fn model_id(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(".gguf")
        .map(str::to_owned)
        .unwrap_or(name)
}
