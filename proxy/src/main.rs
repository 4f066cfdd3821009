//! `omega-proxy`: serve a model over OpenAI's chat-completions API, or print the evidence the
//! proxy presents to a guest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use omega_proxy::engine::{Engine, EngineConfig};
use omega_proxy::server::{self, ServerConfig};
use omega_proxy::tls::{self, EvidenceSource, TlsListener};
use omega_proxy::tls_key::TlsKey;
use omega_proxy::{evidence, model_id};

#[derive(Parser)]
#[command(
    version,
    about = "Omega's inference proxy (llama.cpp behind OpenAI's chat-completions API)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a GGUF model: POST /v1/chat/completions, GET /v1/models, GET /health, on the
    /// plain local socket (--listen) and on the evidence-bound TLS port (--tls-listen).
    Serve {
        /// The GGUF model file (scripts/fetch-model.sh fetches the default one).
        #[arg(long)]
        model: PathBuf,
        /// Plain HTTP, for local clients.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The evidence exchange, then TLS 1.3 with the evidence's key (for guests).
        #[arg(long, default_value = "127.0.0.1:8443")]
        tls_listen: SocketAddr,
        /// Ed25519 TLS key (PKCS#8 DER), created when missing; without it a fresh key per start.
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// CPU threads for inference (1 on small, shared machines).
        #[arg(long, default_value_t = 1)]
        threads: u16,
        /// Context window in tokens (prompt + completion).
        #[arg(long, default_value_t = 2048)]
        ctx: u32,
        /// Longest prompt accepted, in tokens (longer ones get 400 context_length_exceeded).
        #[arg(long, default_value_t = 1536)]
        max_prompt_tokens: u32,
        /// Requests that may wait for the worker (more get 503).
        #[arg(long, default_value_t = 16)]
        queue: usize,
        /// Completion tokens per request at most, whatever max_tokens asks.
        #[arg(long, default_value_t = 512)]
        max_tokens: u32,
    },
    /// Print (and with --out write, postcard-encoded) the evidence this proxy presents for a
    /// guest's nonce. Without confidential hardware it says tee none, gpu none.
    Evidence {
        #[arg(long)]
        model: PathBuf,
        /// The guest's nonce, 32 bytes as 64 hex digits.
        #[arg(long)]
        nonce: String,
        /// Ed25519 TLS key (PKCS#8 DER), created when missing; without it a fresh key.
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// Where to write the encoded evidence.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve {
            model,
            listen,
            tls_listen,
            tls_key,
            threads,
            ctx,
            max_prompt_tokens,
            queue,
            max_tokens,
        } => {
            if ctx < 2 {
                bail!("--ctx must be at least 2");
            }
            let config = EngineConfig {
                threads,
                ctx,
                max_prompt_tokens,
            };
            let key = match &tls_key {
                Some(path) => TlsKey::load_or_create(path)
                    .with_context(|| format!("TLS key {}", path.display()))?,
                None => TlsKey::generate(),
            };
            let model_sha256 = evidence::sha256_file(&model)
                .with_context(|| format!("reading model {}", model.display()))?;
            let source = EvidenceSource::for_this_process(model_sha256, &key)?;
            let tls_config = tls::server_config(&key)?;
            let engine = Arc::new(Engine::load(&model, config)?);
            let id = model_id(&model);
            let router = server::router(
                engine,
                id.clone(),
                ServerConfig {
                    queue,
                    max_tokens_cap: max_tokens,
                },
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                let tls_tcp = tokio::net::TcpListener::bind(tls_listen)
                    .await
                    .with_context(|| format!("binding {tls_listen}"))?;
                let identity = hex::encode(source.identity());
                let tls_listener = TlsListener::new(tls_tcp, tls_config, source)?;
                tracing::info!("serving {id} on http://{}", listener.local_addr()?);
                tracing::info!(
                    "serving {id} on evidence-bound TLS {}",
                    axum::serve::Listener::local_addr(&tls_listener)?
                );
                tracing::info!(
                    "proxy identity (policy: model … {{ proxy \"sha256:{identity}\" }})"
                );
                tokio::try_join!(
                    server::serve(listener, router.clone()),
                    server::serve_tls(tls_listener, router),
                )?;
                anyhow::Ok(())
            })
        }
        Command::Evidence {
            model,
            nonce,
            tls_key,
            out,
        } => {
            let nonce: [u8; 32] = hex::decode(&nonce)
                .ok()
                .and_then(|n| n.try_into().ok())
                .context("--nonce must be 32 bytes as 64 hex digits")?;
            let key = match &tls_key {
                Some(path) => TlsKey::load_or_create(path)
                    .with_context(|| format!("TLS key {}", path.display()))?,
                None => TlsKey::generate(),
            };
            let model_sha256 = evidence::sha256_file(&model)
                .with_context(|| format!("reading model {}", model.display()))?;
            let e = evidence::collect(model_sha256, key.spki(), nonce)?;
            if let Some(out) = &out {
                let bytes = omega_proxy_evidence::encode(&e)?;
                std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
            }
            println!("{}", serde_json::to_string_pretty(&evidence::to_json(&e))?);
            Ok(())
        }
    }
}
