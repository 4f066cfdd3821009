//! `agents-build`: builds the example agents reproducibly, writes them to `--out`, and
//! prints each module's SHA-256 (the policy's `agent … hash` pin) and size.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

/// Build the example agents (agents/) to wasm32, reproducibly, and print their hashes.
#[derive(Parser)]
#[command(after_help = "Example:\n  agents-build --out target/agents\n  \
    (scripts/build-agents.sh does this from the repository root)")]
struct Args {
    /// The repository root (the checkout that holds agents/, sdk/ and agent-abi/).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Cargo's target directory for the wasm build [default: REPO/target/agents-build].
    #[arg(long)]
    target_dir: Option<PathBuf>,
    /// Where NAME.wasm and SHA256SUMS go [default: REPO/target/agents].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the demo bundle (manifest.json, policy.bin pinned to these builds, the demo
    /// agents and the data items the manifest declares) to this directory.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// The inference proxy identity (`sha256:…`, what `omega-proxy serve` logs) the demo
    /// policy pins for the in-house model [default: one no proxy has].
    #[arg(long, value_name = "sha256:HEX")]
    proxy_pin: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target_dir = args
        .target_dir
        .unwrap_or_else(|| args.repo.join("target/agents-build"));
    let out = args.out.unwrap_or_else(|| args.repo.join("target/agents"));
    let built =
        omega_agents_build::build(&args.repo, &target_dir).context("building the agents")?;
    omega_agents_build::write(&out, &built).context("writing the agents")?;
    for b in &built {
        println!(
            "{}  {:>6} bytes  {:>2} pages  {}",
            b.pin(),
            b.wasm.len(),
            b.info.initial_pages,
            out.join(b.file_name()).display()
        );
    }
    if let Some(dir) = &args.bundle {
        omega_agents_build::write_demo_bundle_with(
            &args.repo,
            &built,
            dir,
            args.proxy_pin.as_deref(),
        )
        .context("writing the demo bundle")?;
        println!("demo bundle: {}", dir.display());
    }
    Ok(())
}
