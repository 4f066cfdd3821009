//! The built image's layout read back with the same parser verifiers use, and the
//! reproducibility check: two checkouts in different directories build the same bytes.

use std::path::Path;
use std::process::Command;

use firmware_layout::{GuidTable, SectionKind};
use image_build::{Options, build, hex};
use omega_boot_info::phys;

#[test]
fn footer_table_reads_back() {
    let image = build(&Options::for_workspace(false)).unwrap();
    let b = &image.bytes;
    assert_eq!(b.len() % 0x1_0000, 0, "size must be a multiple of 64 KiB");
    let table = GuidTable::parse(b).unwrap();
    let kernel = table.kernel().unwrap();
    assert_eq!(kernel, image.kernel);
    assert_eq!(&b[kernel.offset..kernel.offset + 4], b"\x7fELF");
    let sections: Vec<_> = table
        .sev_metadata(b)
        .unwrap()
        .sections()
        .map(Result::unwrap)
        .collect();
    let find = |k| sections.iter().find(|s| s.kind == k).copied().unwrap();
    assert_eq!(
        u64::from(find(SectionKind::SnpSecrets).gpa),
        phys::SECRETS_PAGE
    );
    assert_eq!(find(SectionKind::SnpSecrets).size, 0x1000);
    assert_eq!(u64::from(find(SectionKind::Cpuid).gpa), phys::CPUID_PAGE);
    assert_eq!(find(SectionKind::Cpuid).size, 0x1000);
    let sec = find(SectionKind::SnpSecMem);
    assert_eq!(
        (u64::from(sec.gpa), sec.end()),
        (phys::SEC_MEM_START, phys::SEC_MEM_END)
    );
    // APs start in the reset code's page, inside the ROM.
    let eip = table.sev_es_reset_eip().unwrap();
    assert_eq!(eip, image.ap_reset_eip);
    assert!((0xffff_e000..0xffff_f000).contains(&eip), "{eip:#x}");
    // The reset vector starts with `cli`.
    assert_eq!(b[b.len() - 16], 0xfa);
}

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .current_dir(dir)
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?} failed");
}

/// Builds HEAD in a fresh clone at another path and depth and compares the image with this
/// checkout's (built from its own target directory, as `scripts/test.sh` just did from
/// scratch). A checkout with changes HEAD lacks builds two fresh clones instead.
#[test]
fn two_checkouts_build_identical_images() {
    let here = Options::for_workspace(false);
    let tmp = tempfile::tempdir().unwrap();
    let clone = |dir: &Path| {
        std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
        git(
            tmp.path(),
            &[
                "clone",
                "--quiet",
                "--no-hardlinks",
                here.root.to_str().unwrap(),
                dir.to_str().unwrap(),
            ],
        );
    };
    let build_in = |root: &Path| {
        let opts = Options {
            root: root.to_path_buf(),
            target_dir: root.join("target"),
            test_hooks: false,
        };
        build(&opts).unwrap()
    };
    let b = tmp.path().join("some").join("deeper").join("checkout-b");
    clone(&b);
    let status = Command::new("git")
        .current_dir(&here.root)
        .args(["status", "--porcelain"])
        .output()
        .unwrap();
    assert!(status.status.success());
    let clean = status.stdout.is_empty();
    // Both at once: each build's last steps (the kernel crate, LTO) use one core.
    let (ia, ib) = std::thread::scope(|s| {
        let ta = s.spawn(|| {
            if clean {
                build(&here).unwrap()
            } else {
                eprintln!("this checkout differs from HEAD: building a second clone instead");
                let a = tmp.path().join("a");
                clone(&a);
                build_in(&a)
            }
        });
        let ib = build_in(&b);
        (ta.join().unwrap(), ib)
    });
    assert_eq!(
        hex(&ia.sha256()),
        hex(&ib.sha256()),
        "the two checkouts built different images"
    );
    assert_eq!(ia.bytes, ib.bytes);
}
