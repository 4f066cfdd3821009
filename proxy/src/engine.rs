//! The inference backend: one GGUF model through llama.cpp (`llama-cpp-2`), its chat template,
//! and a generation loop that streams text pieces to a callback which may stop it.
//!
//! The HTTP server and the benchmark's direct path both call [`Session::generate`], so what
//! the benchmark measures between them is the proxy's own cost.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

/// The name of the backend in the proxy's evidence.
#[cfg(not(feature = "cuda"))]
pub const BACKEND: &str = "llama.cpp-cpu";
/// The name of the backend in the proxy's evidence.
#[cfg(feature = "cuda")]
pub const BACKEND: &str = "llama.cpp-cuda";

/// How the model is run.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// CPU threads for generation and prompt processing.
    pub threads: u16,
    /// Context window in tokens (prompt + completion).
    pub ctx: u32,
    /// The longest prompt accepted, in tokens (after the chat template).
    pub max_prompt_tokens: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            threads: 1,
            ctx: 2048,
            max_prompt_tokens: 1536,
        }
    }
}

/// Why the backend failed or refused.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("llama.cpp backend: {0}")]
    Backend(#[from] llama_cpp_2::LlamaCppError),
    #[error("loading model {path}: {source}")]
    Load {
        path: String,
        source: llama_cpp_2::LlamaModelLoadError,
    },
    #[error("the model has no usable chat template: {0}")]
    Template(String),
    #[error("creating a llama.cpp context: {0}")]
    Context(#[from] llama_cpp_2::LlamaContextLoadError),
    #[error("a message contains a NUL byte")]
    NulInMessage,
    #[error("the prompt is {tokens} tokens, more than the {max} this server accepts")]
    PromptTooLong { tokens: usize, max: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("llama.cpp decode failed: {0}")]
    Decode(String),
}

/// One chat message (role and text).
#[derive(Debug, Clone)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// Sampling for one request.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// 0 = greedy (deterministic).
    pub temperature: f32,
    /// Nucleus sampling; 1 = off.
    pub top_p: f32,
    pub seed: u32,
    /// Tokens to generate at most (the caller has already applied the server's cap).
    pub max_tokens: u32,
}

/// Why generation ended (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// End of generation token.
    Stop,
    /// `max_tokens` or the context window reached.
    Length,
    /// The consumer stopped it (a client that went away).
    Cancelled,
}

impl Finish {
    /// The OpenAI `finish_reason` string.
    pub fn as_openai(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length | Finish::Cancelled => "length",
        }
    }
}

/// What one generation did.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub finish: Finish,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// llama.cpp's process-wide state: initialised once, whatever loads how many models.
fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    let mut b = LlamaBackend::init()?;
    b.void_logs();
    Ok(BACKEND.get_or_init(|| b))
}

/// A loaded model and its chat template.
pub struct Engine {
    model: LlamaModel,
    template: LlamaChatTemplate,
    config: EngineConfig,
}

impl Engine {
    /// Loads `path` (GGUF) on the CPU (or the GPU with feature `cuda`).
    pub fn load(path: &Path, config: EngineConfig) -> Result<Self, EngineError> {
        let backend = backend()?;
        let params = LlamaModelParams::default();
        #[cfg(feature = "cuda")]
        let params = params.with_n_gpu_layers(u32::MAX);
        let model = LlamaModel::load_from_file(backend, path, &params).map_err(|source| {
            EngineError::Load {
                path: path.display().to_string(),
                source,
            }
        })?;
        let template = model
            .chat_template(None)
            .map_err(|e| EngineError::Template(e.to_string()))?;
        Ok(Self {
            model,
            template,
            config,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The prompt tokens of `messages` under the model's chat template, ending with the
    /// assistant's opening tag; refused when longer than `max_prompt_tokens` or than the
    /// context window leaves room for.
    pub fn prompt_tokens(&self, messages: &[Message]) -> Result<Vec<LlamaToken>, EngineError> {
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| EngineError::NulInMessage)?;
        let text = self
            .model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| EngineError::Template(e.to_string()))?;
        // The template writes the special tokens as text: parse them as such.
        let tokens = self.model.vocab().tokenize(text.as_bytes(), true, true);
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        // One token of the window must stay free for the first generated token.
        let max = (self.config.max_prompt_tokens as usize).min(self.config.ctx as usize - 1);
        // SECURITY: a prompt longer than the window would fail inside llama.cpp after the
        // request was queued; refusing it here keeps one client from wasting the worker.
        if tokens.len() > max {
            return Err(EngineError::PromptTooLong {
                tokens: tokens.len(),
                max,
            });
        }
        Ok(tokens)
    }

    /// A generation session (one llama.cpp context, reused request after request).
    pub fn session(&self) -> Result<Session<'_>, EngineError> {
        let threads = i32::from(self.config.threads.max(1));
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.config.ctx))
            .with_n_batch(self.config.ctx)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx = self.model.new_context(backend()?, params)?;
        Ok(Session { engine: self, ctx })
    }
}

/// A llama.cpp context over an [`Engine`]'s model.
pub struct Session<'m> {
    engine: &'m Engine,
    ctx: LlamaContext<'m>,
}

impl Session<'_> {
    /// Generates from `prompt` (from [`Engine::prompt_tokens`]); hands each piece of text to
    /// `on_text` as soon as it is whole UTF-8, and stops when `on_text` returns false.
    pub fn generate(
        &mut self,
        prompt: &[LlamaToken],
        sampling: &Sampling,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Outcome, EngineError> {
        let decode = |e: llama_cpp_2::DecodeError| EngineError::Decode(e.to_string());
        let n_ctx = self.ctx.n_ctx() as usize;
        // The previous request's cache is of no use: every request starts afresh.
        self.ctx.clear_kv_cache();
        let mut batch = LlamaBatch::new(prompt.len().max(1), 1);
        let last = prompt.len() - 1;
        for (i, &token) in prompt.iter().enumerate() {
            batch
                .add(token, i as i32, &[0], i == last)
                .map_err(|e| EngineError::Decode(e.to_string()))?;
        }
        self.ctx.decode(&mut batch).map_err(decode)?;

        let mut sampler = sampler(sampling);
        let vocab = self.engine.model.vocab();
        let mut text = Utf8Pieces::default();
        let mut pos = prompt.len();
        let mut generated = 0usize;
        let finish = loop {
            if generated >= sampling.max_tokens as usize || pos >= n_ctx {
                break Finish::Length;
            }
            let token = sampler.sample(&self.ctx, batch.n_tokens() - 1);
            sampler.accept(token);
            if vocab.is_eog(token) {
                break Finish::Stop;
            }
            generated += 1;
            let piece = vocab.token_to_piece(token, false, None);
            if let Some(s) = text.push(&piece)
                && !on_text(&s)
            {
                break Finish::Cancelled;
            }
            batch.clear();
            batch
                .add(token, pos as i32, &[0], true)
                .map_err(|e| EngineError::Decode(e.to_string()))?;
            self.ctx.decode(&mut batch).map_err(decode)?;
            pos += 1;
        };
        if finish != Finish::Cancelled
            && let Some(rest) = text.finish()
        {
            on_text(&rest);
        }
        Ok(Outcome {
            finish,
            prompt_tokens: prompt.len(),
            completion_tokens: generated,
        })
    }
}

fn sampler(s: &Sampling) -> LlamaSampler {
    if s.temperature <= 0.0 {
        return LlamaSampler::greedy();
    }
    let mut chain = Vec::new();
    if s.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(s.top_p, 1));
    }
    chain.push(LlamaSampler::temp(s.temperature));
    chain.push(LlamaSampler::dist(s.seed));
    LlamaSampler::chain_simple(chain)
}

/// Token pieces → text: a piece may end inside a multi-byte character, which is held back
/// until the next piece completes it.
#[derive(Default)]
struct Utf8Pieces {
    pending: Vec<u8>,
}

impl Utf8Pieces {
    /// The text that is complete after `piece`, if any.
    fn push(&mut self, piece: &[u8]) -> Option<String> {
        self.pending.extend_from_slice(piece);
        let complete = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An invalid sequence is not going to complete: hand it on, replaced.
            Err(e) if e.error_len().is_some() => self.pending.len(),
            Err(e) => e.valid_up_to(),
        };
        if complete == 0 {
            return None;
        }
        let rest = self.pending.split_off(complete);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        Some(text)
    }

    /// Whatever is left at the end (an incomplete character, replaced).
    fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty())
            .then(|| String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Pieces;

    #[test]
    fn pieces_split_inside_a_character_are_joined() {
        let mut t = Utf8Pieces::default();
        let euro = "€".as_bytes(); // 3 bytes
        assert_eq!(t.push(b"a"), Some("a".into()));
        assert_eq!(t.push(&euro[..1]), None);
        assert_eq!(t.push(&euro[1..2]), None);
        assert_eq!(t.push(&[euro[2], b'b']), Some("€b".into()));
        assert_eq!(t.push(&[0xff, b'c']), Some("\u{fffd}c".into()));
        assert_eq!(t.push(&euro[..2]), None);
        assert_eq!(t.finish(), Some("\u{fffd}".into()));
        assert_eq!(t.finish(), None);
    }
}
