//! Launch digest time: this crate vs sev-snp-measure, same inputs.
//!
//!     cargo bench -p measurements --bench digest
//!
//! For each image (Debian OVMF, Omega's image when built) and vCPU count, prints the median
//! of in-process `launch_digest` (parse + hash, release build), the median of
//! sev-snp-measure's `calc_launch_digest` timed inside one Python process (no interpreter
//! start-up), and the median wall time of the `sev-snp-measure` command. The results go in
//! docs/measurements.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use measurements::digest::{DigestOptions, VcpuType, launch_digest};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn oracle_dir() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/oracles-venv/bin");
    venv.join("sev-snp-measure").is_file().then_some(venv)
}

fn python_in_process(py: &Path, image: &Path, vcpus: u32, runs: u32) -> Option<Duration> {
    let script = format!(
        "import timeit\nfrom sevsnpmeasure import guest\nfrom sevsnpmeasure.sev_mode import SevMode\n\
         t = timeit.repeat(lambda: guest.calc_launch_digest(SevMode.SEV_SNP, {vcpus}, 0xa00f11, {img:?}, None, None, None, 1), number=1, repeat={runs})\n\
         t.sort(); print(t[len(t)//2])",
        img = image.to_str()?
    );
    let o = Command::new(py).args(["-c", &script]).output().ok()?;
    let secs: f64 = String::from_utf8(o.stdout).ok()?.trim().parse().ok()?;
    Some(Duration::from_secs_f64(secs))
}

fn cli(exe: &Path, image: &Path, vcpus: u32, runs: u32) -> Option<Duration> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let o = Command::new(exe)
            .args([
                "--mode",
                "snp",
                "--vcpu-type",
                "EPYC-Milan",
                "--vcpus",
                &vcpus.to_string(),
                "--ovmf",
            ])
            .arg(image)
            .output()
            .ok()?;
        if !o.status.success() {
            return None;
        }
        times.push(t.elapsed());
    }
    Some(median(times))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: run once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = if quick { 1 } else { 21 };
    let mut images: Vec<PathBuf> = ["/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF_CODE_4M.fd"]
        .iter()
        .map(PathBuf::from)
        .collect();
    images.push(
        std::env::var_os("OMEGA_IMAGE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/omega/omega.bin")
            }),
    );
    let oracle = oracle_dir();
    println!(
        "| image | size | vCPUs | measurements (lib) | sev-snp-measure (in-process) | sev-snp-measure (command) |"
    );
    println!("|---|---|---|---|---|---|");
    for img in images.iter().filter(|p| p.is_file()) {
        let bytes = std::fs::read(img).unwrap();
        for vcpus in [1u32, 64] {
            let mut times = Vec::new();
            let mut ld = [0u8; 48];
            for _ in 0..runs {
                let t = Instant::now();
                ld = launch_digest(
                    &bytes,
                    vcpus,
                    VcpuType::EpycMilan,
                    1,
                    &DigestOptions::default(),
                )
                .unwrap();
                times.push(t.elapsed());
            }
            std::hint::black_box(ld);
            let ours = median(times);
            let (inproc, cmd) = match &oracle {
                Some(d) if !quick => (
                    python_in_process(&d.join("python"), img, vcpus, runs),
                    cli(&d.join("sev-snp-measure"), img, vcpus, runs),
                ),
                _ => (None, None),
            };
            let f = |d: Option<Duration>| {
                d.map_or("n/a".to_owned(), |d| {
                    format!("{:.2} ms", d.as_secs_f64() * 1e3)
                })
            };
            println!(
                "| {} | {} KiB | {vcpus} | {} | {} | {} |",
                img.file_name().unwrap().to_string_lossy(),
                bytes.len() / 1024,
                f(Some(ours)),
                f(inproc),
                f(cmd)
            );
        }
    }
}
