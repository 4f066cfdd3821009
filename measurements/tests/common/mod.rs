//! Shared helpers of the integration tests: where the images and oracles are. Missing
//! prerequisites go through `omega_test_support::require` (env `CI` set: a failure).
#![allow(dead_code, unused_imports)] // each test binary uses a different part

use std::path::{Path, PathBuf};

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn repo_root() -> PathBuf {
    manifest_dir().join("..")
}

pub use omega_test_support::random::{Rng, mutate, mutate_near};
pub use omega_test_support::{debian_ovmf, require, snp};

/// The real Milan vector every clone has, as (report, VCEK).
pub fn embedded_milan() -> (Vec<u8>, Vec<u8>) {
    let v = snp::embedded_milan();
    (v.report, v.vcek)
}

/// The `sev-snp-measure` executable (PATH or the oracle venv).
pub fn oracle_exe() -> Option<PathBuf> {
    omega_test_support::oracle::executable("sev-snp-measure")
}

/// A Python that can `import sevsnpmeasure`.
pub fn oracle_python() -> Option<PathBuf> {
    omega_test_support::oracle::python_importing("sevsnpmeasure")
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

/// The seed of randomised tests: env `OMEGA_TEST_SEED` or a fixed default.
pub fn seed() -> u64 {
    omega_test_support::random::seed(0x0000_de9a_5eed)
}

/// Runs the `measurements` binary.
pub fn measurements(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_measurements"))
        .args(args)
        .output()
        .unwrap()
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
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
