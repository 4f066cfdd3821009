//! Launch digest time: this crate vs sev-snp-measure, same inputs.
//!
//!     cargo bench -p measurements --bench digest
//!
//! For each image (Debian OVMF, Omega's image when built) and vCPU count, prints the median
//! of in-process `launch_digest` (parse + hash, release build) next to sev-snp-measure's
//! `calc_launch_digest` timed inside one Python process (no interpreter start-up), and the
//! median wall time of the `measurements digest` command next to the `sev-snp-measure`
//! command: compare like with like. docs/measurements.md has the figures, and the same
//! command-against-command comparison made with hyperfine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use measurements::digest::{DigestOptions, VcpuType, launch_digest};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
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

/// Median wall time of `exe args… --vcpu-type EPYC-Milan --vcpus N <image_flag> image`.
fn command(
    exe: &Path,
    args: &[&str],
    image_flag: &str,
    image: &Path,
    vcpus: u32,
    runs: u32,
) -> Option<Duration> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let o = Command::new(exe)
            .args(args)
            .args(["--vcpu-type", "EPYC-Milan", "--vcpus", &vcpus.to_string()])
            .arg(image_flag)
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
    let oracle = omega_test_support::oracle::executable("sev-snp-measure").zip(
        omega_test_support::oracle::python_importing("sevsnpmeasure"),
    );
    println!(
        "| image | size | vCPUs | measurements (lib) | sev-snp-measure (in-process) | measurements (command) | sev-snp-measure (command) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let ours_exe = Path::new(env!("CARGO_BIN_EXE_measurements"));
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
            let ours_cmd = command(ours_exe, &["digest"], "--image", img, vcpus, runs);
            let (inproc, cmd) = match &oracle {
                Some((exe, python)) if !quick => (
                    python_in_process(python, img, vcpus, runs),
                    command(exe, &["--mode", "snp"], "--ovmf", img, vcpus, runs),
                ),
                _ => (None, None),
            };
            let f = |d: Option<Duration>| {
                d.map_or("n/a".to_owned(), |d| {
                    format!("{:.2} ms", d.as_secs_f64() * 1e3)
                })
            };
            println!(
                "| {} | {} KiB | {vcpus} | {} | {} | {} | {} |",
                img.file_name().unwrap().to_string_lossy(),
                bytes.len() / 1024,
                f(Some(ours)),
                f(inproc),
                f(ours_cmd),
                f(cmd)
            );
        }
    }
}
