//! `omega-proxy`: serve a model over OpenAI's chat-completions API, or print the evidence the
//! proxy presents to a guest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use omega_proxy::engine::{Engine, EngineConfig};
use omega_proxy::gpu::GpuSource;
use omega_proxy::server::{self, ServerConfig};
use omega_proxy::tls::{self, EvidenceSource, TlsListener};
use omega_proxy::tls_key::TlsKey;
use omega_proxy::upstream::{self, UpstreamConfig};
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
        #[arg(
            long,
            required_unless_present = "upstream",
            conflicts_with = "upstream"
        )]
        model: Option<PathBuf>,
        #[command(flatten)]
        upstream: UpstreamArgs,
        #[command(flatten)]
        gpu: GpuArgs,
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
        #[arg(
            long,
            required_unless_present = "upstream",
            conflicts_with = "upstream"
        )]
        model: Option<PathBuf>,
        #[command(flatten)]
        upstream: UpstreamArgs,
        #[command(flatten)]
        gpu: GpuArgs,
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

/// The OpenAI-compatible upstream backend, instead of --model.
#[derive(clap::Args)]
struct UpstreamArgs {
    /// Forward to this OpenAI-compatible server (`http://HOST:PORT/v1`: llama.cpp's
    /// llama-server, vLLM, another omega-proxy) instead of running a model.
    #[arg(long, requires = "upstream_model")]
    upstream: Option<String>,
    /// The model name served (clients ask for it; the upstream is asked for it).
    #[arg(long, requires = "upstream")]
    upstream_model: Option<String>,
    /// Seconds for one whole upstream exchange (a streamed answer to its end).
    #[arg(long, default_value_t = 300)]
    upstream_timeout: u64,
}

/// Where the evidence's GPU comes from.
#[derive(clap::Args)]
struct GpuArgs {
    /// `none` (default: the evidence says gpu none) or `nvml` (needs the `nvml` feature and
    /// NVIDIA's driver; the GPU's SPDM report and certificate chain per guest connection).
    #[arg(long, default_value = "none", value_parser = ["none", "nvml"])]
    gpu_evidence: String,
    /// NVML's index of the GPU.
    #[arg(long, default_value_t = 0)]
    gpu_index: u32,
}

impl GpuArgs {
    fn source(&self) -> anyhow::Result<GpuSource> {
        Ok(match self.gpu_evidence.as_str() {
            "nvml" => GpuSource::nvml(self.gpu_index)?,
            _ => GpuSource::None,
        })
    }
}

impl UpstreamArgs {
    fn config(&self, max_tokens: u32) -> anyhow::Result<Option<UpstreamConfig>> {
        let (Some(url), Some(model)) = (&self.upstream, &self.upstream_model) else {
            return Ok(None);
        };
        let mut c = UpstreamConfig::new(url, model.clone()).map_err(anyhow::Error::msg)?;
        c.max_tokens_cap = max_tokens;
        c.timeout = std::time::Duration::from_secs(self.upstream_timeout);
        Ok(Some(c))
    }
}

/// The evidence source for a model file or an upstream.
fn evidence_source(
    model: Option<&PathBuf>,
    upstream: Option<&UpstreamConfig>,
    gpu: &GpuArgs,
    key: &TlsKey,
) -> anyhow::Result<EvidenceSource> {
    let (model_sha256, backend) = match (model, upstream) {
        (Some(model), _) => (
            evidence::sha256_file(model)
                .with_context(|| format!("reading model {}", model.display()))?,
            None,
        ),
        (None, Some(u)) => (omega_proxy_evidence::MODEL_NOT_HASHED, Some(u.backend())),
        (None, None) => bail!("--model or --upstream is required"),
    };
    let mut source = EvidenceSource::for_this_process(model_sha256, key)?;
    if let Some(backend) = backend {
        source.backend = backend;
    }
    source.gpu = gpu.source()?;
    Ok(source)
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
            upstream,
            gpu,
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
            let upstream = upstream.config(max_tokens)?;
            let source = evidence_source(model.as_ref(), upstream.as_ref(), &gpu, &key)?;
            let tls_config = tls::server_config(&key)?;
            let (router, id) = match (&model, upstream) {
                (Some(model), _) => {
                    let engine = Arc::new(Engine::load(model, config)?);
                    let id = model_id(model);
                    let router = server::router(
                        engine,
                        id.clone(),
                        ServerConfig {
                            queue,
                            max_tokens_cap: max_tokens,
                        },
                    );
                    (router, id)
                }
                (None, Some(mut u)) => {
                    u.max_in_flight = queue.max(1);
                    let id = u.model.clone();
                    tracing::info!(
                        "forwarding {id} to upstream http://{}{}",
                        u.authority,
                        u.prefix
                    );
                    (upstream::router(u), id)
                }
                (None, None) => bail!("--model or --upstream is required"),
            };
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
            upstream,
            gpu,
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
            let upstream = upstream.config(512)?;
            let e =
                evidence_source(model.as_ref(), upstream.as_ref(), &gpu, &key)?.evidence(nonce)?;
            if let Some(out) = &out {
                let bytes = omega_proxy_evidence::encode(&e)?;
                std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
            }
            println!("{}", serde_json::to_string_pretty(&evidence::to_json(&e))?);
            Ok(())
        }
    }
}
