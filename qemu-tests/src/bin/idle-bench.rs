//! What an idle image costs the host: boots the production image with the launcher's
//! channel session connected, lets it sit with nothing to do, and reads the QEMU process's
//! CPU time from /proc before and after (utime + stime from `stat`, and the per-thread
//! `schedstat` run times, which count in nanoseconds). Then checks that the idle monitor
//! still answers at once: the first echo round trip wakes it from `hlt` by the channel's
//! interrupt (a monitor woken only by its 100 ms fallback tick would take up to 100 ms);
//! the ones after it find the monitor still polling (it halts only after a quiet spell,
//! see `kernel/src/hw/idle.rs`).
//!
//! `--max-percent P` makes it fail when the image used more than P % of one host core
//! (the QEMU test `idle::an_idle_image_leaves_the_host_core_alone` runs it so).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use omega_host::session::{SessionConfig, echo_roundtrip};
use omega_wire::msg::ControlMsg;
use qemu_tests::Boot;
use qemu_tests::host_cpu::{USER_HZ, cpu_time};

/// Measures the host CPU an idle Omega image uses under QEMU.
#[derive(Parser, Debug)]
struct Cli {
    /// Seconds to measure the idle image for.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds to wait for the monitor's first halt (its `omega: idle: halting` line);
    /// an image without idling never prints it and is measured after this wait.
    #[arg(long, default_value_t = 60.0)]
    halt_timeout: f64,
    /// Seconds to let the image settle after that, before measuring.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// The image (default: $OMEGA_IMAGE, or the workspace's production image).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Echo round trips after the idle period (the first one from `hlt`).
    #[arg(long, default_value_t = 5)]
    echo_runs: usize,
    /// Print the guest's console at the end.
    #[arg(long)]
    serial: bool,
    /// Fail when the idle image used more than this % of one host core.
    #[arg(long)]
    max_percent: Option<f64>,
    /// Fail when the first echo round trip, from `hlt`, takes more than this many ms.
    #[arg(long)]
    max_echo_ms: Option<f64>,
}

/// What the monitor prints at its first halt.
const HALT_LINE: &str = "omega: idle: halting";
/// What the monitor prints the first time the channel's interrupt wakes it.
const WOKEN_LINE: &str = "omega: idle: woken by the channel interrupt";

fn read_pid(pidfile: &Path) -> Result<u32> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = std::fs::read_to_string(pidfile)
            && let Ok(pid) = s.trim().parse()
        {
            return Ok(pid);
        }
        ensure!(Instant::now() < until, "QEMU wrote no pid file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let image = cli
        .image
        .clone()
        .unwrap_or_else(|| qemu_tests::image().to_path_buf());
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("channel.sock");
    let pidfile = dir.path().join("qemu.pid");
    let mut boot = Boot::new(&image).timeout(Duration::from_secs(600));
    boot.extra_args = vec!["-pidfile".into(), pidfile.display().to_string()];
    let (mut vm, session) = qemu_tests::boot_with_session(boot, &sock, SessionConfig::default())?;
    session
        .wait_handshake(Duration::from_secs(120))
        .context("channel handshake")?;
    ensure!(
        vm.wait_for("omega: host channel up", Duration::from_secs(60)),
        "the channel did not come up:\n{}",
        vm.serial()
    );
    let pid = read_pid(&pidfile)?;
    let up = Instant::now();
    let halted = vm.wait_for(HALT_LINE, Duration::from_secs_f64(cli.halt_timeout));
    let to_halt = up.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64(cli.settle));

    let t0 = Instant::now();
    let before = cpu_time(pid)?;
    std::thread::sleep(Duration::from_secs_f64(cli.seconds));
    let after = cpu_time(pid)?;
    let wall = t0.elapsed().as_secs_f64();
    let stat_pct = (after.ticks - before.ticks) as f64 / USER_HZ / wall * 100.0;
    let sched_pct = (after.sched_ns - before.sched_ns) as f64 / 1e9 / wall * 100.0;

    let mut echo = Vec::new();
    for _ in 0..cli.echo_runs {
        let rtt = echo_roundtrip(&session, 1)
            .with_context(|| format!("echo round trip {}:\n{}", echo.len() + 1, vm.serial()))?;
        echo.push(rtt.as_secs_f64() * 1e3);
    }
    let from_halt_ms = echo.first().copied();
    let mut polling = echo.get(1..).unwrap_or_default().to_vec();
    polling.sort_by(f64::total_cmp);
    let polling_ms = polling.get(polling.len() / 2).copied();

    session.send_control(&ControlMsg::Shutdown { status: 0 })?;
    let out = vm.finish()?;
    let idle_line = out
        .serial
        .lines()
        .find(|l| l.starts_with(HALT_LINE))
        .unwrap_or("(the image never halted: it predates hw::idle, or cannot idle)");

    if cli.serial {
        println!("--- serial ---\n{}--- end ---", out.serial);
    }
    println!("image: {}", image.display());
    println!("{idle_line}");
    if halted {
        println!("first halt {to_halt:.1} s after the channel came up");
    }
    println!(
        "idle {wall:.1} s: QEMU used {stat_pct:.2} % of one host core (/proc stat utime+stime), {sched_pct:.3} % (schedstat, all threads)"
    );
    if let Some(ms) = from_halt_ms {
        println!("echo round trip (1 B) from hlt: {ms:.3} ms");
    }
    if let Some(ms) = polling_ms {
        println!(
            "echo round trip (1 B) while polling, median of {}: {ms:.3} ms",
            polling.len()
        );
    }
    if let Some(line) = out.serial.lines().find(|l| l.contains(WOKEN_LINE)) {
        println!("{line}");
    }
    println!("host load average: {}", load_average());

    ensure!(
        halted || cli.max_percent.is_none(),
        "the monitor never halted within {} s",
        cli.halt_timeout
    );
    if let Some(max) = cli.max_percent
        && stat_pct.max(sched_pct) > max
    {
        bail!(
            "the idle image used {:.2} % of a host core (limit {max} %)",
            stat_pct.max(sched_pct)
        );
    }
    if let (Some(max), Some(ms)) = (cli.max_echo_ms, from_halt_ms)
        && ms > max
    {
        bail!("an echo round trip from idle took {ms:.3} ms (limit {max} ms)");
    }
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
