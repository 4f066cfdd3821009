//! The launch digest against the test oracle `sev-snp-measure --mode snp` (PyPI) and the
//! `sev` crate: Debian's OVMF images, synthetic Omega-like images, Omega's own image, every
//! vCPU type, 1 to 64 vCPUs, several guest features, and QEMU kernel hashes.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use measurements::digest::{self, DigestOptions, KernelHashes, Measurer, VcpuType};

/// The vCPU types sev-snp-measure 0.0.13 knows (it lacks EPYC-Turin-v1/-v2).
const ORACLE_TYPES: [&str; 16] = [
    "EPYC",
    "EPYC-v1",
    "EPYC-v2",
    "EPYC-IBPB",
    "EPYC-v3",
    "EPYC-v4",
    "EPYC-Rome",
    "EPYC-Rome-v1",
    "EPYC-Rome-v2",
    "EPYC-Rome-v3",
    "EPYC-Milan",
    "EPYC-Milan-v1",
    "EPYC-Milan-v2",
    "EPYC-Genoa",
    "EPYC-Genoa-v1",
    "EPYC-Turin",
];

/// One digest to compute.
#[derive(Clone, Debug)]
struct Case {
    image: PathBuf,
    vcpus: u32,
    vcpu_type: VcpuType,
    features: u64,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    append: Option<String>,
}

impl Case {
    fn new(image: &Path, vcpus: u32, vcpu_type: VcpuType, features: u64) -> Self {
        Case {
            image: image.to_owned(),
            vcpus,
            vcpu_type,
            features,
            kernel: None,
            initrd: None,
            append: None,
        }
    }

    fn ours(&self, m: &Measurer) -> Result<String, String> {
        let kernel_hashes = self.kernel.as_ref().map(|k| {
            let kernel = std::fs::read(k).unwrap();
            let initrd = self.initrd.as_ref().map(|p| std::fs::read(p).unwrap());
            KernelHashes::new(&kernel, initrd.as_deref(), self.append.as_deref())
        });
        m.launch_digest(
            self.vcpus,
            self.vcpu_type,
            self.features,
            &DigestOptions { kernel_hashes },
        )
        .map(hex::encode)
        .map_err(|e| e.to_string())
    }
}

/// Runs sev-snp-measure's own `calc_launch_digest` (the function behind its CLI) on all
/// cases in one Python process; `Err` for each case it refuses.
fn oracle_batch(py: &Path, cases: &[Case]) -> Vec<Result<String, String>> {
    const SCRIPT: &str = r#"
import json, sys
from sevsnpmeasure import guest
from sevsnpmeasure.sev_mode import SevMode
for line in sys.stdin:
    c = json.loads(line)
    try:
        ld = guest.calc_launch_digest(SevMode.SEV_SNP, c["vcpus"], c["sig"], c["image"], c["kernel"],
                                      c["initrd"], c["append"], c["features"])
        print(ld.hex(), flush=True)
    except Exception as e:
        print("ERR " + type(e).__name__ + ": " + str(e).replace("\n", " "), flush=True)
"#;
    let mut child = Command::new(py)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the oracle's python");
    let mut input = String::new();
    for c in cases {
        let j = serde_json::json!({
            "image": path_str(&c.image),
            "vcpus": c.vcpus,
            "sig": c.vcpu_type.signature(),
            "features": c.features,
            "kernel": c.kernel.as_deref().map(path_str),
            "initrd": c.initrd.as_deref().map(path_str),
            "append": c.append,
        });
        input.push_str(&j.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "oracle python failed");
    let lines: Vec<_> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| match l.strip_prefix("ERR ") {
            Some(e) => Err(e.to_owned()),
            None => Ok(l.to_owned()),
        })
        .collect();
    assert_eq!(lines.len(), cases.len());
    lines
}

fn oracle_python_or_skip() -> Option<PathBuf> {
    require(
        oracle_python(),
        "sev-snp-measure (PyPI) not found on PATH or in target/oracles-venv (scripts/test.sh installs it)",
    )
}

fn oracle_exe_or_skip() -> Option<PathBuf> {
    require(
        oracle_exe(),
        "the sev-snp-measure executable is not on PATH or in target/oracles-venv",
    )
}

fn omega_image_or_skip() -> Option<PathBuf> {
    require(
        omega_image(),
        "Omega's image (OMEGA_IMAGE or target/omega/omega.bin) is not built",
    )
}

/// Compares all cases with the oracle. Exactly `refusals` of them must be refused by both
/// sides (and every other one give equal digests): a refusal is not a match, so a run in
/// which both sides refuse everything cannot pass.
fn compare(py: &Path, cases: &[Case], refusals: usize) {
    assert!(cases.len() > refusals, "no case to compare");
    let theirs = oracle_batch(py, cases);
    let mut measurers: Vec<(PathBuf, Measurer)> = Vec::new();
    let (mut matches, mut refused) = (0, 0);
    for (c, t) in cases.iter().zip(theirs) {
        if !measurers.iter().any(|(p, _)| *p == c.image) {
            let m = Measurer::new(&std::fs::read(&c.image).unwrap()).expect("image parses");
            measurers.push((c.image.clone(), m));
        }
        let m = &measurers.iter().find(|(p, _)| *p == c.image).unwrap().1;
        let ours = c.ours(m);
        match (&ours, &t) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "digest differs from sev-snp-measure for {c:?}");
                matches += 1;
            }
            (Err(_), Err(_)) => refused += 1,
            _ => panic!("{c:?}: ours {ours:?}, sev-snp-measure {t:?}"),
        }
    }
    eprintln!("{matches} digests equal to sev-snp-measure's, {refused} refused by both");
    assert_eq!(
        (matches, refused),
        (cases.len() - refusals, refusals),
        "(equal digests, refused by both)"
    );
}

#[test]
fn oracle_debian_ovmf_1_to_64_vcpus() {
    let (Some(py), Some(images)) = (oracle_python_or_skip(), debian_ovmf()) else {
        return;
    };
    let mut cases = Vec::new();
    for img in &images {
        for vcpus in 1..=64 {
            cases.push(Case::new(img, vcpus, VcpuType::EpycMilan, 0x1));
        }
    }
    compare(&py, &cases, 0);
}

#[test]
fn oracle_debian_ovmf_every_vcpu_type_and_sig() {
    let (Some(py), Some(images)) = (oracle_python_or_skip(), debian_ovmf()) else {
        return;
    };
    let mut cases = Vec::new();
    for img in &images {
        for name in ORACLE_TYPES {
            let t: VcpuType = name.parse().unwrap();
            for vcpus in [1, 3, 16] {
                cases.push(Case::new(img, vcpus, t, 0x1));
            }
        }
        for sig in [0, 0x800f12, 0xa00f11, 0xb00f21, 0xffff_ffff] {
            cases.push(Case::new(img, 2, VcpuType::Signature(sig), 0x1));
        }
    }
    compare(&py, &cases, 0);
}

#[test]
fn oracle_guest_features() {
    let (Some(py), Some(images)) = (oracle_python_or_skip(), debian_ovmf()) else {
        return;
    };
    let mut cases = Vec::new();
    for img in &images {
        for features in [0x0, 0x1, 0x3, 0x5, 0x21, 0x41, 0x81, 0x2f, 0xffff, u64::MAX] {
            for vcpus in [1, 2] {
                cases.push(Case::new(img, vcpus, VcpuType::EpycGenoa, features));
            }
        }
    }
    compare(&py, &cases, 0);
}

#[test]
fn oracle_synthetic_omega_like_images() {
    let Some(py) = oracle_python_or_skip() else {
        return;
    };
    let dir = scratch("synthetic");
    let mut rng = Rng::new(seed());
    let mut cases = Vec::new();
    for (i, size) in [0x10000usize, 0x20000, 0x100000, 0x400000]
        .into_iter()
        .enumerate()
    {
        let p = dir.join(format!("img{i}.bin"));
        std::fs::write(&p, synthetic_image(&mut rng, size, None)).unwrap();
        for _ in 0..12 {
            let t = VcpuType::NAMED[rng.below(ORACLE_TYPES.len())];
            let vcpus = 1 + rng.below(64) as u32;
            let features = [0x1, 0x5, 0x21][rng.below(3)];
            cases.push(Case::new(&p, vcpus, t, features));
        }
    }
    compare(&py, &cases, 0);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn oracle_kernel_hashes() {
    let Some(py) = oracle_python_or_skip() else {
        return;
    };
    let dir = scratch("kernel-hashes");
    let mut rng = Rng::new(seed() ^ 0x4b);
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.img");
    std::fs::write(&kernel, rng.bytes(300_000)).unwrap();
    std::fs::write(&initrd, rng.bytes(123_457)).unwrap();
    let mut cases = Vec::new();
    // Hash table at the start, middle and the last place it fits in its page.
    let last = 0x1000 - digest::PADDED_HASH_TABLE_LEN as u32;
    for (i, at) in [0u32, 0xc00, last].into_iter().enumerate() {
        let p = dir.join(format!("img{i}.bin"));
        std::fs::write(&p, synthetic_image(&mut rng, 0x20000, Some(0x90_0000 + at))).unwrap();
        let appends = [
            None,
            Some(""),
            Some("console=ttyS0 root=/dev/vda1"),
            Some("ünïcode ☃ quiet"),
        ];
        for append in appends {
            for with_initrd in [false, true] {
                let mut c = Case::new(&p, 1 + rng.below(8) as u32, VcpuType::EpycMilan, 0x1);
                c.kernel = Some(kernel.clone());
                c.initrd = with_initrd.then(|| initrd.clone());
                c.append = append.map(str::to_owned);
                cases.push(c);
            }
        }
        // Same image without a kernel: the hashes section is measured as zero pages.
        cases.push(Case::new(&p, 2, VcpuType::EpycMilan, 0x1));
    }
    // Debian's OVMF has no SNP_KERNEL_HASHES section: both refuse.
    let debian = debian_ovmf().unwrap_or_default();
    for img in &debian {
        let mut c = Case::new(img, 1, VcpuType::EpycMilan, 0x1);
        c.kernel = Some(kernel.clone());
        cases.push(c);
    }
    compare(&py, &cases, debian.len());
    std::fs::remove_dir_all(dir).ok();
}

/// The CLIs side by side: `measurements digest` and `sev-snp-measure`, same arguments.
#[test]
fn oracle_cli_end_to_end() {
    let (Some(exe), Some(images)) = (oracle_exe_or_skip(), debian_ovmf()) else {
        return;
    };
    let ours = env!("CARGO_BIN_EXE_measurements");
    let run = |cmd: &str, args: &[&str]| {
        let o = Command::new(cmd).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap().trim().to_owned()
    };
    for img in &images {
        let img = path_str(img);
        for (vcpus, t, features) in [
            ("1", "EPYC-v4", "0x1"),
            ("4", "EPYC-Milan", "0x21"),
            ("64", "EPYC-Genoa", "0x1"),
        ] {
            let args = [
                "--vcpus",
                vcpus,
                "--vcpu-type",
                t,
                "--guest-features",
                features,
            ];
            let theirs = run(
                path_str(&exe).as_str(),
                &[&["--mode", "snp", "--ovmf", &img][..], &args].concat(),
            );
            let mine = run(ours, &[&["digest", "--image", &img][..], &args].concat());
            assert_eq!(mine.len(), 96);
            assert_eq!(mine, theirs, "{img} {args:?}");
            let json = run(
                ours,
                &[&["digest", "--json", "--image", &img][..], &args].concat(),
            );
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(v["launch_digest"], theirs);
            assert_eq!(v["vcpus"], vcpus.parse::<u32>().unwrap());
            assert_eq!(v["vcpu_type"], t);
            let size = v["image_info"]["size"].as_u64().unwrap();
            assert_eq!(
                v["image_info"]["gpa"],
                format!("{:#x}", (1u64 << 32) - size)
            );
        }
        let sig = run(
            ours,
            &[
                "digest",
                "--image",
                &img,
                "--vcpus",
                "2",
                "--vcpu-sig",
                "0xa00f11",
            ],
        );
        let theirs = run(
            path_str(&exe).as_str(),
            &[
                "--mode",
                "snp",
                "--ovmf",
                &img,
                "--vcpus",
                "2",
                "--vcpu-sig",
                "0xa00f11",
            ],
        );
        assert_eq!(sig, theirs);
    }
}

#[test]
fn oracle_omega_image() {
    let Some(img) = omega_image_or_skip() else {
        return;
    };
    let info = digest::inspect(&std::fs::read(&img).unwrap()).expect("Omega's image parses");
    assert!(
        info.has_sev_metadata,
        "Omega's image must declare SEV metadata"
    );
    let Some(py) = oracle_python_or_skip() else {
        return;
    };
    let mut cases = Vec::new();
    for vcpus in [1, 2, 4, 8, 64] {
        for t in ["EPYC", "EPYC-Milan", "EPYC-Genoa", "EPYC-Turin"] {
            cases.push(Case::new(&img, vcpus, t.parse().unwrap(), 0x1));
        }
    }
    compare(&py, &cases, 0);
}

/// The `sev` crate's `snp_calc_launch_digest` agrees, including for the types the Python
/// oracle lacks (EPYC-Turin-v1/-v2).
#[test]
fn sev_crate_agrees() {
    use sev::measurement::snp::{SnpMeasurementArgs, snp_calc_launch_digest};
    use sev::measurement::vcpu_types::CpuType;
    use sev::measurement::vmsa::GuestFeatures;
    let dir = scratch("sev-crate");
    let mut rng = Rng::new(seed() ^ 0x5e5);
    let synth = dir.join("synthetic.bin");
    std::fs::write(&synth, synthetic_image(&mut rng, 0x20000, Some(0x90_0100))).unwrap();
    let kernel = dir.join("vmlinuz");
    std::fs::write(&kernel, rng.bytes(50_000)).unwrap();
    let mut images = debian_ovmf().unwrap_or_default();
    images.push(synth.clone());
    images.extend(omega_image_or_skip());
    for img in &images {
        let m = Measurer::new(&std::fs::read(img).unwrap()).unwrap();
        if !m.info().has_sev_metadata {
            // Known difference: the sev crate refuses images without SEV metadata (Debian's
            // OVMF_CODE_4M.fd); sev-snp-measure measures ROM + VMSAs, and so do we.
            let theirs = snp_calc_launch_digest(SnpMeasurementArgs {
                vcpus: 1,
                vcpu_type: CpuType::Epyc,
                ovmf_file: img.clone(),
                guest_features: GuestFeatures(0x1),
                kernel_file: None,
                initrd_file: None,
                append: None,
                ovmf_hash_str: None,
                vmm_type: None,
            });
            assert!(
                format!("{theirs:?}").contains("OVMF_SEV_METADATA_GUID"),
                "{theirs:?}"
            );
            continue;
        }
        for (i, t) in VcpuType::NAMED.into_iter().enumerate() {
            let vcpus = 1 + (i as u32 * 7) % 20;
            let theirs = snp_calc_launch_digest(SnpMeasurementArgs {
                vcpus,
                vcpu_type: CpuType::try_from(t.name().unwrap()).unwrap(),
                ovmf_file: img.clone(),
                guest_features: GuestFeatures(0x1),
                kernel_file: None,
                initrd_file: None,
                append: None,
                ovmf_hash_str: None,
                vmm_type: None,
            })
            .unwrap();
            let ours = m
                .launch_digest(vcpus, t, 0x1, &DigestOptions::default())
                .unwrap();
            assert_eq!(
                hex::encode(ours),
                theirs.get_hex_ld(),
                "{} {t} {vcpus}",
                img.display()
            );
        }
    }
    // Kernel hashes through the sev crate too.
    let m = Measurer::new(&std::fs::read(&synth).unwrap()).unwrap();
    let theirs = snp_calc_launch_digest(SnpMeasurementArgs {
        vcpus: 2,
        vcpu_type: CpuType::EpycMilan,
        ovmf_file: synth.clone(),
        guest_features: GuestFeatures(0x1),
        kernel_file: Some(kernel.clone()),
        initrd_file: None,
        append: Some("console=ttyS0"),
        ovmf_hash_str: None,
        vmm_type: None,
    })
    .unwrap();
    let kh = KernelHashes::new(
        &std::fs::read(&kernel).unwrap(),
        None,
        Some("console=ttyS0"),
    );
    let ours = m
        .launch_digest(
            2,
            VcpuType::EpycMilan,
            0x1,
            &DigestOptions {
                kernel_hashes: Some(kh),
            },
        )
        .unwrap();
    assert_eq!(hex::encode(ours), theirs.get_hex_ld());
    std::fs::remove_dir_all(dir).ok();
}

/// `launch_digest` (one shot) and `Measurer` agree, and the ROM digest equals
/// `sev-snp-measure --mode snp:ovmf-hash`.
#[test]
fn one_shot_and_rom_hash() {
    let Some(images) = debian_ovmf() else {
        return;
    };
    let exe = oracle_exe_or_skip();
    for img in &images {
        let bytes = std::fs::read(img).unwrap();
        let m = Measurer::new(&bytes).unwrap();
        let a = digest::launch_digest(
            &bytes,
            3,
            VcpuType::EpycRome,
            0x1,
            &DigestOptions::default(),
        )
        .unwrap();
        let b = m
            .launch_digest(3, VcpuType::EpycRome, 0x1, &DigestOptions::default())
            .unwrap();
        assert_eq!(a, b);
        if let Some(exe) = &exe {
            let o = Command::new(exe)
                .args(["--mode", "snp:ovmf-hash", "--ovmf"])
                .arg(img)
                .output()
                .unwrap();
            assert!(o.status.success());
            assert_eq!(
                String::from_utf8(o.stdout).unwrap().trim(),
                hex::encode(m.rom_digest())
            );
        }
    }
}
