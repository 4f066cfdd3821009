//! Density in the real image: boots the production image with `--memory` MiB and
//! `--agents` idle agents (one page of linear memory each, parked in `recv`; the workload of
//! `qemu_tests::workloads::idle_bundle`), prints how many started, the heap they took per
//! agent, how many of them the guest's heap would hold, and the VM's host CPU while they
//! idle. `scripts/bench.sh` runs it twice (`ONLY=density`): 2 000 agents in 1 GiB, and
//! 100 agents for the idle CPU goal.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::Parser;

/// Idle agents in one Omega image: how many start, their memory, the host CPU they cost.
#[derive(Parser, Debug)]
struct Cli {
    /// Idle agents to start (at most 8192, `omega_bundle::MAX_INSTANCES`).
    #[arg(long, default_value_t = 2000)]
    agents: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    memory: u32,
    /// Seconds to measure the idle VM's host CPU for.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The image (default: $OMEGA_IMAGE, or the workspace's production image).
    #[arg(long)]
    image: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let image = cli
        .image
        .clone()
        .unwrap_or_else(|| qemu_tests::image().to_path_buf());
    let d = qemu_tests::workloads::density(&image, cli.agents, cli.memory, cli.seconds)?;
    println!("image: {} with -m {}M", image.display(), cli.memory);
    println!("{}", d.heap_banner);
    println!("{}", d.heap_line.trim());
    println!(
        "agents started: {} of {} in {:.1} s from QEMU's start (TCG)",
        d.started,
        cli.agents,
        d.boot_to_started.as_secs_f64()
    );
    let heap_mib: u64 = d
        .heap_banner
        .split("heap: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if d.bytes_per_agent > 0 && heap_mib > 0 {
        println!(
            "memory per idle agent: {:.1} KiB; the {heap_mib} MiB heap holds about {} such agents ({} per GiB of heap)",
            d.bytes_per_agent as f64 / 1024.0,
            (heap_mib << 20) / d.bytes_per_agent,
            (1u64 << 30) / d.bytes_per_agent
        );
    }
    println!(
        "host CPU while {} agents idle: {:.2} % of one core over {:.0} s",
        d.started, d.cpu_percent, cli.seconds
    );
    ensure!(
        d.started == u64::from(cli.agents),
        "only {} agents started",
        d.started
    );
    Ok(())
}
