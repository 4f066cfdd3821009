//! Boot to first agent ready: the Omega image with a bundle against a minimal Linux guest
//! (a Debian kernel with a busybox initramfs) under the same QEMU binary, machine
//! (`microvm`), CPU model, memory and accelerator, booted alternately so both see the same
//! load. Omega is ready when the monitor prints its first `omega: agent …: started` (the
//! bundle delivered, checked and an agent instantiated); Linux when its `/init` prints
//! `LINUX-READY` (the kernel booted and ran the first user program). Both are timed from
//! starting QEMU, in wall-clock time and in the CPU time QEMU used (which a busy machine
//! distorts much less). `scripts/bench.sh` fetches the Linux side from Debian's packages.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use qemu_tests::Boot;
use qemu_tests::host_cpu::cpu_time;

/// Boots Omega (with a bundle) and a minimal Linux guest alternately and compares the time
/// to the first agent (or first user program) ready, and the image sizes.
#[derive(Parser, Debug)]
struct Cli {
    /// The Linux kernel (bzImage), e.g. Debian's vmlinuz-*-cloud-amd64.
    #[arg(long)]
    linux_kernel: PathBuf,
    /// A static busybox binary (Debian's busybox-static) for the Linux guest's initramfs.
    #[arg(long)]
    busybox: PathBuf,
    /// The bundle the Omega image boots with (e.g. the demo bundle from agents-build).
    #[arg(long)]
    bundle: PathBuf,
    /// The Omega image (default: $OMEGA_IMAGE, or the workspace's production image).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Boots of each.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Guest memory in MiB (both).
    #[arg(long, default_value_t = 128)]
    memory: u32,
    /// Seconds a boot may take before it counts as failed.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// What Linux's /init prints once it runs.
const LINUX_READY: &str = "LINUX-READY";

/// One boot: wall-clock and QEMU CPU seconds to ready.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A newc cpio archive (what Linux unpacks as an initramfs) holding `/init`, busybox and
/// `/dev/console` (without it /init has no stdout).
fn initramfs(busybox: &[u8]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        let name = format!("{name}\0");
        let fields = [
            0,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let init =
        format!("#!/bin/busybox sh\n/bin/busybox echo {LINUX_READY}\n/bin/busybox poweroff -f\n");
    let mut a = Vec::new();
    entry(&mut a, "bin", 0o040755, &[], (0, 0));
    entry(&mut a, "bin/busybox", 0o100755, busybox, (0, 0));
    entry(&mut a, "init", 0o100755, init.as_bytes(), (0, 0));
    entry(&mut a, "dev", 0o040755, &[], (0, 0));
    entry(&mut a, "dev/console", 0o020600, &[], (5, 1));
    entry(&mut a, "TRAILER!!!", 0, &[], (0, 0));
    a
}

fn boot_linux(cli: &Cli, initrd: &Path, qemu: &str, kvm: bool) -> Result<Sample> {
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-machine",
        "microvm",
        "-accel",
        if kvm { "kvm" } else { "tcg" },
    ]);
    if !kvm {
        // The same CPU model as the Omega boot (QemuConfig); under TCG Linux cannot
        // calibrate the TSC on microvm (no HPET or PM timer), so it is told the rate.
        cmd.args(["-cpu", "max"]);
    }
    let append = if kvm {
        "console=ttyS0 quiet panic=-1"
    } else {
        "console=ttyS0 quiet panic=-1 tsc_early_khz=2000000"
    };
    cmd.args(["-smp", "1", "-m", &format!("{}M", cli.memory)])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(&cli.linux_kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting QEMU for Linux")?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped");
    // The reader thread notes the moment the marker appears and QEMU's CPU time then.
    let reader = std::thread::spawn(move || -> Option<Sample> {
        use std::io::Read as _;
        let mut stdout = stdout;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stdout.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen
                .windows(LINUX_READY.len())
                .any(|w| w == LINUX_READY.as_bytes())
            {
                let wall = start.elapsed().as_secs_f64();
                let cpu = cpu_time(pid).ok()?.seconds();
                return Some(Sample { wall, cpu });
            }
        }
    });
    let deadline = start + Duration::from_secs(cli.timeout);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("Linux did not print {LINUX_READY} within {} s", cli.timeout);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    reader
        .join()
        .ok()
        .flatten()
        .with_context(|| format!("Linux exited without printing {LINUX_READY}"))
}

fn boot_omega(cli: &Cli, image: &Path) -> Result<Sample> {
    let dir = tempfile::tempdir()?;
    let bundle = omega_host::Bundle::read(&cli.bundle)
        .with_context(|| format!("reading the bundle {}", cli.bundle.display()))?;
    let boot = Boot::new(image)
        .memory(cli.memory)
        .timeout(Duration::from_secs(cli.timeout));
    let (mut vm, session) = qemu_tests::serve_bundle(boot, dir.path(), bundle)?;
    let ready = vm.wait_for(": started", Duration::from_secs(cli.timeout));
    let wall = vm.started().elapsed().as_secs_f64();
    let cpu = cpu_time(vm.pid())?.seconds();
    ensure!(
        ready && vm.serial().contains("omega: agent "),
        "no agent started:\n{}",
        vm.serial()
    );
    vm.kill()?;
    drop(session.close());
    Ok(Sample { wall, cpu })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let image = cli
        .image
        .clone()
        .unwrap_or_else(|| qemu_tests::image().to_path_buf());
    let qemu = std::env::var("OMEGA_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
    let kvm = std::env::var("OMEGA_QEMU_ACCEL").is_ok_and(|a| a == "kvm");
    let busybox = std::fs::read(&cli.busybox)
        .with_context(|| format!("reading {}", cli.busybox.display()))?;
    let dir = tempfile::tempdir()?;
    let initrd = dir.path().join("initramfs.cpio");
    std::fs::File::create(&initrd)?.write_all(&initramfs(&busybox))?;

    let (mut omega, mut linux) = (Vec::new(), Vec::new());
    for i in 0..cli.runs.max(1) {
        let o = boot_omega(&cli, &image)?;
        let l = boot_linux(&cli, &initrd, &qemu, kvm)?;
        eprintln!(
            "boot-compare: run {}/{}: omega {:.3} s wall / {:.3} s cpu, linux {:.3} s wall / {:.3} s cpu",
            i + 1,
            cli.runs,
            o.wall,
            o.cpu,
            l.wall,
            l.cpu
        );
        omega.push(o);
        linux.push(l);
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len());
    let (image_size, kernel_size, initrd_size) =
        (size(&image)?, size(&cli.linux_kernel)?, size(&initrd)?);
    let med = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    let (ow, oc) = (med(&omega, |s| s.wall), med(&omega, |s| s.cpu));
    let (lw, lc) = (med(&linux, |s| s.wall), med(&linux, |s| s.cpu));
    let accel = if kvm { "kvm" } else { "tcg" };
    println!(
        "same QEMU ({qemu}, microvm, -cpu max, {} MiB, {accel}), {} boots each, medians",
        cli.memory, cli.runs
    );
    println!("| | Omega (to first agent started) | Linux + busybox (to /init) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| wall clock | {:.0} ms | {:.0} ms | {:.1}x |",
        ow * 1e3,
        lw * 1e3,
        lw / ow
    );
    println!(
        "| QEMU CPU time | {:.0} ms | {:.0} ms | {:.1}x |",
        oc * 1e3,
        lc * 1e3,
        lc / oc
    );
    println!(
        "| image size | {} KiB | {} KiB kernel + {} KiB initramfs (uncompressed cpio) | {:.1}x |",
        image_size >> 10,
        kernel_size >> 10,
        initrd_size >> 10,
        (kernel_size + initrd_size) as f64 / image_size as f64
    );
    // One line per figure for scripts/bench.sh's summary table.
    println!(
        "RESULT boot_wall_ms omega={:.1} peer={:.1}",
        ow * 1e3,
        lw * 1e3
    );
    println!(
        "RESULT boot_cpu_ms omega={:.1} peer={:.1}",
        oc * 1e3,
        lc * 1e3
    );
    println!(
        "RESULT image_kib omega={} peer={}",
        image_size >> 10,
        (kernel_size + initrd_size) >> 10
    );
    Ok(())
}
