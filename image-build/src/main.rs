use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use image_build::{Options, build, hex};

/// Builds Omega's boot image: compiles the loader and the kernel for x86_64-unknown-none
/// and lays them out as one flat firmware file for `qemu-system-x86_64 -bios`.
///
/// The same commit yields the same bytes in any directory; the printed SHA-256 lets you
/// check that.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Where to write the image.
    #[arg(long, default_value = "target/omega/omega.bin")]
    out: PathBuf,
    /// Build the kernel with its fault-injection test hooks (for the QEMU tests only; never
    /// deploy such an image).
    #[arg(long)]
    test_hooks: bool,
    /// Cargo target directory for the bare-metal build [default: target/image-build/<variant>].
    #[arg(long)]
    target_dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut opts = Options::for_workspace(cli.test_hooks);
    if let Some(dir) = cli.target_dir {
        opts.target_dir = dir;
    }
    eprintln!(
        "image-build: compiling loader and kernel for {} (profile image)...",
        image_build::TARGET
    );
    let t = Instant::now();
    let image = build(&opts)?;
    if let Some(dir) = cli.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&cli.out, &image.bytes)
        .with_context(|| format!("writing {}", cli.out.display()))?;
    println!("image:          {}", cli.out.display());
    println!(
        "size:           {} bytes ({} KiB)",
        image.bytes.len(),
        image.bytes.len() >> 10
    );
    println!("sha256:         {}", hex(&image.sha256()));
    println!(
        "kernel:         {} bytes, sha256 {}",
        image.kernel.len,
        hex(&image.kernel.sha256)
    );
    println!("loader:         {} bytes", image.loader_len);
    let vcpu_type = launch_digest::VcpuType::EpycV4;
    let digest = launch_digest::launch_digest(&image.bytes, 1, vcpu_type, 0x1, &Default::default())
        .context("computing the SNP launch digest of the image")?;
    println!(
        "snp digest:     {} (1 vCPU, {vcpu_type}, guest features 0x1)",
        hex(&digest)
    );
    println!(
        "                other configurations: measurements digest --image {} --vcpus N --vcpu-type TYPE",
        cli.out.display()
    );
    if cli.test_hooks {
        println!("variant:        TEST HOOKS (not for deployment)");
    }
    eprintln!("image-build: done in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}
