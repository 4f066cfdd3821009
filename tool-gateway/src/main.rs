//! `omega-tools`: the tool gateway the launcher starts (`omega run --tool-gateway`). Reads the
//! guest's JSON-RPC lines on stdin, answers on stdout; logs on stderr.

use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use omega_tool_gateway::manifest::PinSource;
use omega_tool_gateway::{Gateway, Manifest, Pins};

/// Runs the MCP servers of a tools manifest and offers their pinned tools to the guest.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The tools manifest (TOML; see docs/tools.md).
    #[arg(long)]
    manifest: PathBuf,
    /// Expected pins from this compiled policy instead of the manifest's.
    #[arg(long, conflicts_with = "pins")]
    policy: Option<PathBuf>,
    /// Expected pins from this pins file (`server.tool sha256:<hex>` lines) instead.
    #[arg(long)]
    pins: Option<PathBuf>,
}

fn run(args: Args) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    let source = match (args.policy, args.pins) {
        (Some(p), _) => PinSource::Policy(p),
        (_, Some(p)) => PinSource::File(p),
        _ => manifest.pins.clone(),
    };
    let pins = match &source {
        PinSource::Policy(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Pins::from_policy(&bytes).with_context(|| format!("pins of {}", p.display()))?
        }
        PinSource::File(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Pins::parse(&text).with_context(|| format!("{}", p.display()))?
        }
    };
    tracing::info!(
        pinned = pins.len(),
        servers = manifest.servers.len(),
        "starting"
    );
    let out = Box::new(BufWriter::new(std::io::stdout()));
    let gateway = Gateway::start(&manifest, pins, out);
    gateway.serve(BufReader::new(std::io::stdin().lock()))?;
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
