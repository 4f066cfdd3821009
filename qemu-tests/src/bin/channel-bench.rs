//! Host-channel benchmark under QEMU: round-trip latency and throughput of echo messages
//! through the whole path (host session → wire frames → QEMU chardev → virtio serial port
//! → monitor → and back), side by side with the raw virtio transport (no framing, the
//! test-hooks image's byte echo).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use omega_host::session::{ChannelSession, SessionConfig, echo_roundtrip};
use omega_wire::msg::ControlMsg;
use qemu_tests::Boot;

/// Measures the host channel's echo round trips under QEMU.
#[derive(Parser, Debug)]
struct Cli {
    /// Round trips per message size.
    #[arg(long, default_value_t = 20)]
    runs: usize,
}

const SIZES: [usize; 5] = [1, 1024, 16 * 1024, 256 * 1024, 1 << 20];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(what: &str, size: usize, times: Vec<Duration>) {
    let m = median(times);
    let mbps = (2 * size) as f64 / m.as_secs_f64() / 1e6;
    println!(
        "| {what} | {size} B | {:.3} ms | {mbps:.2} MB/s |",
        m.as_secs_f64() * 1000.0
    );
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let dir = tempfile::tempdir()?;
    println!("| path | message | median round trip | throughput (both directions) |");
    println!("|---|---|---|---|");

    // Framed: the production image and the real host session.
    let sock = dir.path().join("framed.sock");
    let vm = Boot::new(qemu_tests::image())
        .timeout(Duration::from_secs(600))
        .virtio_console(&sock)
        .spawn()?;
    let session = ChannelSession::connect_unix(
        &sock,
        SessionConfig::default(),
        Instant::now() + Duration::from_secs(60),
    )?;
    session.wait_handshake(Duration::from_secs(60))?;
    for size in SIZES {
        let mut times = Vec::new();
        for _ in 0..cli.runs {
            times.push(echo_roundtrip(&session, size)?);
        }
        report("framed (omega-wire + host session)", size, times);
    }
    session.send_control(&ControlMsg::Shutdown { status: 0 })?;
    let _ = vm.finish();
    drop(session);

    // Raw: bytes over the same virtio serial port, no framing.
    let sock: PathBuf = dir.path().join("raw.sock");
    let mut vm = Boot::new(qemu_tests::test_hooks_image())
        .cmdline("test=virtio-echo")
        .timeout(Duration::from_secs(600))
        .virtio_console(&sock)
        .spawn()?;
    let stream = loop {
        if let Ok(s) = UnixStream::connect(&sock) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    anyhow::ensure!(
        vm.wait_for("virtio console ready", Duration::from_secs(60)),
        "raw echo did not start"
    );
    for size in SIZES {
        let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut times = Vec::new();
        for _ in 0..cli.runs {
            let mut w = stream.try_clone()?;
            let d = data.clone();
            let t = Instant::now();
            let h = std::thread::spawn(move || w.write_all(&d));
            let mut got = vec![0u8; size];
            (&stream).read_exact(&mut got).context("raw echo")?;
            times.push(t.elapsed());
            h.join().expect("writer").context("raw write")?;
            anyhow::ensure!(got == data, "raw echo differs");
        }
        report("raw virtio serial port (no framing)", size, times);
    }
    let _ = vm.kill();
    Ok(())
}
