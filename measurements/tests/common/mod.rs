//! Shared helpers of the integration tests: where the test data and oracles are, and the
//! SKIPPED-or-fail policy (env `CI` set: anything missing is a failure).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn repo_root() -> PathBuf {
    manifest_dir().join("..")
}

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Missing prerequisite: a failure in CI, otherwise a visible skip.
pub fn missing(what: &str) {
    if in_ci() {
        panic!("{what} (env CI is set, so this is a failure)");
    }
    eprintln!("SKIPPED: {what}");
}

/// `<repo>/../shared/testdata/snp`, if present.
pub fn snp_testdata() -> Option<PathBuf> {
    let d = manifest_dir().join("../../shared/testdata/snp");
    d.join("README.md").is_file().then_some(d)
}

/// The embedded real Milan vector (copied from the `sev` crate package, Apache-2.0).
pub fn embedded_milan() -> (Vec<u8>, Vec<u8>) {
    let dir = manifest_dir().join("tests/data/virtee-sev-8.0.0");
    let hex_text = std::fs::read_to_string(dir.join("report_milan.hex")).unwrap();
    let report = hex::decode(hex_text.trim()).unwrap();
    let vcek = std::fs::read(dir.join("vcek_milan.der")).unwrap();
    (report, vcek)
}

/// The `sev-snp-measure` executable: on PATH or in `<repo>/target/oracles-venv/bin`.
pub fn oracle_exe() -> Option<PathBuf> {
    let venv = repo_root().join("target/oracles-venv/bin/sev-snp-measure");
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("sev-snp-measure");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    venv.is_file().then_some(venv)
}

/// A Python that can `import sevsnpmeasure`: `OMEGA_ORACLE_PYTHON`, the venv beside the
/// executable, or the executable's shebang.
pub fn oracle_python() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("OMEGA_ORACLE_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(exe) = oracle_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("python"));
            candidates.push(dir.join("python3"));
        }
        if let Some(line) = std::fs::read_to_string(&exe).ok().and_then(|text| {
            text.lines()
                .next()
                .and_then(|l| l.strip_prefix("#!"))
                .map(str::to_owned)
        }) {
            candidates.push(PathBuf::from(line.trim()));
        }
    }
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import sevsnpmeasure"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Debian's OVMF images (package `ovmf`) that exist here.
pub fn debian_ovmf() -> Vec<PathBuf> {
    [
        "/usr/share/ovmf/OVMF.fd",
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_CODE.fd",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.is_file())
    .collect()
}

/// Omega's boot image: env `OMEGA_IMAGE` or `<repo>/target/omega/omega.bin`.
pub fn omega_image() -> Option<PathBuf> {
    let p = std::env::var_os("OMEGA_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/omega/omega.bin"));
    p.is_file().then_some(p)
}

/// A scratch directory unique to this test process and name.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("omega-measurements-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Small deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn fill(&mut self, b: &mut [u8]) {
        for x in b {
            *x = self.next_u64() as u8;
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// The seed of randomised tests: env `OMEGA_TEST_SEED` or a fixed default.
pub fn seed() -> u64 {
    std::env::var("OMEGA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0000_de9a_5eed)
}

pub fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

/// An image laid out like Omega's (see DESIGN.md): ROM of `size` bytes with random contents,
/// SEV metadata (SECRETS, CPUID, SEC_MEM, optionally KERNEL_HASHES), SEV-ES reset block and
/// optionally the SEV hash table entry.
pub fn synthetic_image(rng: &mut Rng, size: usize, kernel_hashes: Option<u32>) -> Vec<u8> {
    let mut img = rng.bytes(size);
    let mut sections = vec![
        firmware_layout::Section {
            gpa: 0x80_0000,
            size: 0x1000,
            kind: firmware_layout::SectionKind::SnpSecrets,
        },
        firmware_layout::Section {
            gpa: 0x80_1000,
            size: 0x1000,
            kind: firmware_layout::SectionKind::Cpuid,
        },
        firmware_layout::Section {
            gpa: 0x80_2000,
            size: 0xfe000,
            kind: firmware_layout::SectionKind::SnpSecMem,
        },
    ];
    if kernel_hashes.is_some() {
        sections.push(firmware_layout::Section {
            gpa: 0x90_0000,
            size: 0x1000,
            kind: firmware_layout::SectionKind::SnpKernelHashes,
        });
    }
    let meta = firmware_layout::encode_sev_metadata(&sections);
    let meta_off = size - 0x1000;
    img[meta_off..meta_off + meta.len()].copy_from_slice(&meta);
    let ap_eip = 0xffff_0000u32 - 0x1000 * rng.below(16) as u32;
    let mut b = firmware_layout::FooterBuilder::new()
        .entry(firmware_layout::SEV_METADATA_GUID, &0x1000u32.to_le_bytes())
        .entry(
            firmware_layout::SEV_ES_RESET_BLOCK_GUID,
            &ap_eip.to_le_bytes(),
        );
    let mut ht = Vec::new();
    if let Some(gpa) = kernel_hashes {
        ht.extend_from_slice(&gpa.to_le_bytes());
        ht.extend_from_slice(&0x400u32.to_le_bytes());
        b = b.entry(firmware_layout::SEV_HASH_TABLE_RV_GUID, &ht);
    }
    let table = b.build().unwrap();
    let end = size - firmware_layout::TABLE_END_FROM_IMAGE_END;
    img[end - table.len()..end].copy_from_slice(&table);
    img
}
