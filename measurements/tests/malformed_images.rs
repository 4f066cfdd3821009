//! Malformed images give clear errors that name the offset; never a panic.

mod common;

use firmware_layout::{
    FooterBuilder, SEV_ES_RESET_BLOCK_GUID, SEV_METADATA_GUID, Section, SectionKind,
    TABLE_END_FROM_IMAGE_END, encode_sev_metadata,
};
use measurements::digest::{
    DigestError, DigestOptions, KernelHashes, VcpuType, inspect, launch_digest,
};

const SIZE: usize = 0x10000;
const META_OFF: usize = SIZE - 0x1000;

fn image(sections: &[Section], meta_from_end: u32) -> Vec<u8> {
    let mut img = vec![0u8; SIZE];
    let meta = encode_sev_metadata(sections);
    img[META_OFF..META_OFF + meta.len()].copy_from_slice(&meta);
    let table = FooterBuilder::new()
        .entry(SEV_METADATA_GUID, &meta_from_end.to_le_bytes())
        .entry(SEV_ES_RESET_BLOCK_GUID, &0xffff_f000u32.to_le_bytes())
        .build()
        .unwrap();
    let end = SIZE - TABLE_END_FROM_IMAGE_END;
    img[end - table.len()..end].copy_from_slice(&table);
    img
}

fn good_sections() -> Vec<Section> {
    vec![
        Section {
            gpa: 0x80_0000,
            size: 0x1000,
            kind: SectionKind::SnpSecrets,
        },
        Section {
            gpa: 0x80_1000,
            size: 0x1000,
            kind: SectionKind::Cpuid,
        },
        Section {
            gpa: 0x80_2000,
            size: 0xfe000,
            kind: SectionKind::SnpSecMem,
        },
    ]
}

fn digest(img: &[u8]) -> Result<[u8; 48], DigestError> {
    launch_digest(img, 2, VcpuType::EpycMilan, 1, &DigestOptions::default())
}

fn err(img: &[u8]) -> String {
    digest(img).unwrap_err().to_string()
}

#[test]
fn good_image_measures() {
    digest(&image(&good_sections(), 0x1000)).unwrap();
}

#[test]
fn no_footer() {
    let mut img = image(&good_sections(), 0x1000);
    img[SIZE - 0x30] ^= 1; // first byte of the footer GUID
    assert_eq!(
        err(&img),
        format!(
            "malformed image: no footer GUID at offset {:#x} (not an OVMF-compatible image)",
            SIZE - 0x30
        )
    );
    assert!(err(&[0u8; 16]).contains("too small"));
    assert!(err(&[]).contains("too small"));
}

#[test]
fn bad_guid_table_length() {
    let mut img = image(&good_sections(), 0x1000);
    let len_at = SIZE - 0x32;
    img[len_at..len_at + 2].copy_from_slice(&0xffffu16.to_le_bytes());
    let e = err(&img);
    assert!(
        e.contains(&format!(
            "footer at offset {len_at:#x} declares a table of 65535 bytes"
        )),
        "{e}"
    );
    img[len_at..len_at + 2].copy_from_slice(&3u16.to_le_bytes());
    assert!(err(&img).contains("declares a table of 3 bytes"));
}

#[test]
fn metadata_outside_the_file() {
    let e = err(&image(&good_sections(), 0x20000));
    assert!(
        e.contains("SEV metadata offset 0x20000 (from end) lies outside the 65536-byte image"),
        "{e}"
    );
    let e = err(&image(&good_sections(), 8));
    assert!(e.contains("outside"), "{e}");
}

#[test]
fn unknown_section_type() {
    let mut img = image(&good_sections(), 0x1000);
    let second_type = META_OFF + 16 + 12 + 8;
    img[second_type] = 0x7;
    let e = err(&img);
    assert!(
        e.contains(&format!(
            "section at offset {:#x}: unknown section type 0x7",
            META_OFF + 16 + 12
        )),
        "{e}"
    );
}

#[test]
fn section_past_4_gib_or_unaligned() {
    let e = err(&image(
        &[Section {
            gpa: 0xffff_f000,
            size: 0x2000,
            kind: SectionKind::SnpSecMem,
        }],
        0x1000,
    ));
    assert!(
        e.contains(&format!(
            "section at offset {:#x}: gpa 0xfffff000 + size 0x2000 overflows 4 GiB",
            META_OFF + 16
        )),
        "{e}"
    );
    let e = err(&image(
        &[Section {
            gpa: 0x80_0800,
            size: 0x1000,
            kind: SectionKind::SnpSecMem,
        }],
        0x1000,
    ));
    assert!(
        e.contains(&format!(
            "section at offset {:#x}: gpa 0x800800 is not 4 KiB aligned",
            META_OFF + 16
        )),
        "{e}"
    );
    let e = err(&image(
        &[Section {
            gpa: 0x80_0000,
            size: 0x800,
            kind: SectionKind::SnpSecMem,
        }],
        0x1000,
    ));
    assert!(
        e.contains("size 0x800 is not a non-zero multiple of 4 KiB"),
        "{e}"
    );
}

#[test]
fn bad_metadata_header() {
    let mut img = image(&good_sections(), 0x1000);
    img[META_OFF] = b'X';
    assert!(err(&img).contains(&format!("no \"ASEV\" signature at offset {META_OFF:#x}")));
    let mut img = image(&good_sections(), 0x1000);
    img[META_OFF + 8] = 2;
    assert!(err(&img).contains("version 2 is not 1"));
    let mut img = image(&good_sections(), 0x1000);
    img[META_OFF + 12] = 0xff; // item count no longer matches the length
    assert!(err(&img).contains("does not match"));
}

#[test]
fn image_not_whole_pages() {
    // A valid footer at the end of a file that is not a page multiple.
    let mut img = image(&good_sections(), 0x1000);
    img.drain(..0x10);
    let e = err(&img);
    assert!(e.contains("not a whole number of 4 KiB pages"), "{e}");
}

#[test]
fn vcpus_and_kernel_hashes_preconditions() {
    let img = image(&good_sections(), 0x1000);
    let e = launch_digest(&img, 0, VcpuType::Epyc, 1, &DigestOptions::default()).unwrap_err();
    assert!(matches!(e, DigestError::NoVcpus(0)));
    let kh = KernelHashes::new(b"kernel", None, None);
    let e = launch_digest(
        &img,
        1,
        VcpuType::Epyc,
        1,
        &DigestOptions {
            kernel_hashes: Some(kh),
        },
    )
    .unwrap_err();
    assert!(matches!(e, DigestError::NoKernelHashesSection), "{e}");
    // Kernel hashes section but no hash table entry.
    let mut s = good_sections();
    s.push(Section {
        gpa: 0x90_0000,
        size: 0x1000,
        kind: SectionKind::SnpKernelHashes,
    });
    let img = image(&s, 0x1000);
    let e = launch_digest(
        &img,
        1,
        VcpuType::Epyc,
        1,
        &DigestOptions {
            kernel_hashes: Some(kh),
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("no SEV hash table entry"), "{e}");
    // Without a kernel the same image measures (hash page as zero page).
    launch_digest(&img, 1, VcpuType::Epyc, 1, &DigestOptions::default()).unwrap();
}

#[test]
fn no_reset_block_is_refused() {
    // sev-snp-measure requires the SEV-ES reset block even for one vCPU; so do we.
    let mut img = vec![0u8; SIZE];
    let table = FooterBuilder::new().build().unwrap();
    let end = SIZE - TABLE_END_FROM_IMAGE_END;
    img[end - table.len()..end].copy_from_slice(&table);
    let e = err(&img);
    assert!(
        e.contains("no 00f771de-1a7e-4fcb-890e-68c77e2fb44e entry"),
        "{e}"
    );
    assert!(inspect(&img).is_err());
}

#[test]
fn overlapping_sections() {
    let mut s = good_sections();
    s.push(Section {
        gpa: 0x80_1000,
        size: 0x1000,
        kind: SectionKind::SnpSecMem,
    });
    let e = err(&image(&s, 0x1000));
    assert!(
        e.contains(&format!(
            "section at offset {:#x}: gpa 0x801000..0x802000 overlaps the section at offset {:#x}",
            META_OFF + 16 + 36,
            META_OFF + 16 + 12
        )),
        "{e}"
    );
    // A section inside the image's own mapping (it ends at 4 GiB).
    let s = [Section {
        gpa: 0xffff_f000,
        size: 0x1000,
        kind: SectionKind::SnpSecrets,
    }];
    let e = err(&image(&s, 0x1000));
    assert!(
        e.contains("overlaps the image at 0xffff0000..0x100000000"),
        "{e}"
    );
}
