//! Boot-time benchmark: boots the image N times and reports the time from starting QEMU
//! to the kernel banner and to QEMU's exit (median, min, max).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use qemu_tests::{Boot, EXIT_SUCCESS};

/// Boots the Omega image repeatedly under QEMU and prints boot-time statistics.
#[derive(Parser, Debug)]
struct Cli {
    /// Image to boot [default: build target/omega/omega.bin].
    #[arg(long)]
    image: Option<PathBuf>,
    /// Number of boots.
    #[arg(long, default_value_t = 10)]
    runs: usize,
}

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[0]), ms(v[v.len() - 1]))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let image = cli
        .image
        .unwrap_or_else(|| qemu_tests::image().to_path_buf());
    let size = std::fs::metadata(&image)?.len();
    let accel = std::env::var("OMEGA_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
    let (mut banner, mut total) = (Vec::new(), Vec::new());
    for i in 0..cli.runs.max(1) {
        let out = Boot::new(&image).run()?;
        if out.status != Some(EXIT_SUCCESS) {
            bail!("boot {i} failed:\n{out}");
        }
        banner.push(out.banner_after.expect("banner seen"));
        total.push(out.elapsed);
        eprintln!(
            "boot-bench: run {}/{}: banner after {:?}",
            i + 1,
            cli.runs,
            out.banner_after.unwrap()
        );
    }
    let (bm, bmin, bmax) = stats(banner);
    let (tm, tmin, tmax) = stats(total);
    println!(
        "image: {} ({} bytes, {} KiB), accel {accel}, {} runs",
        image.display(),
        size,
        size >> 10,
        cli.runs
    );
    println!("| measure | median | min | max |");
    println!("|---|---|---|---|");
    println!("| QEMU start to kernel banner | {bm:.1} ms | {bmin:.1} ms | {bmax:.1} ms |");
    println!("| QEMU start to exit (whole boot) | {tm:.1} ms | {tmin:.1} ms | {tmax:.1} ms |");
    Ok(())
}
