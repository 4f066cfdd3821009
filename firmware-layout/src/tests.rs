use alloc::vec;
use alloc::vec::Vec;

use super::*;

/// A 64 KiB image with the given table and metadata, laid out as image-build does.
fn image_with(meta_sections: &[Section], extra: &[(Guid, Vec<u8>)]) -> Vec<u8> {
    let mut img = vec![0u8; 0x10000];
    let meta = encode_sev_metadata(meta_sections);
    let meta_off = 0x10000 - 0x1000;
    img[meta_off..meta_off + meta.len()].copy_from_slice(&meta);
    let mut b = FooterBuilder::new()
        .entry(SEV_METADATA_GUID, &0x1000u32.to_le_bytes())
        .entry(SEV_ES_RESET_BLOCK_GUID, &0xffff_f000u32.to_le_bytes());
    for (g, d) in extra {
        b = b.entry(*g, d);
    }
    let table = b.build().unwrap();
    let end = img.len() - TABLE_END_FROM_IMAGE_END;
    img[end - table.len()..end].copy_from_slice(&table);
    img
}

fn sections() -> Vec<Section> {
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

#[test]
fn guid_bytes_match_firmware_order() {
    assert_eq!(
        FOOTER_GUID.to_bytes_le(),
        [
            0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a,
            0x08, 0x2d
        ]
    );
    assert_eq!(
        alloc::format!("{SEV_METADATA_GUID}"),
        "dc886566-984a-4798-a75e-5585a7bf67cc"
    );
}

#[test]
fn footer_guid_sits_at_size_minus_0x30() {
    let img = image_with(&sections(), &[]);
    let at = img.len() - 0x30;
    assert_eq!(&img[at..at + 16], &FOOTER_GUID.to_bytes_le());
}

fn kernel_entry(image_size: u32, offset: usize, len: usize) -> Vec<u8> {
    KernelEntry {
        image_size,
        offset,
        len,
        sha256: [7u8; 32],
    }
    .encode()
    .to_vec()
}

#[test]
fn round_trip() {
    let img = image_with(
        &sections(),
        &[(OMEGA_KERNEL_GUID, kernel_entry(0x10000, 0, 0x100))],
    );
    let t = GuidTable::parse(&img).unwrap();
    assert_eq!(t.entries().count(), 3);
    assert_eq!(t.sev_es_reset_eip().unwrap(), 0xffff_f000);
    let meta = t.sev_metadata(&img).unwrap();
    assert_eq!(meta.offset, 0xf000);
    let got: Vec<_> = meta.sections().map(Result::unwrap).collect();
    assert_eq!(got, sections());
    let k = t.kernel().unwrap();
    assert_eq!(
        (k.image_size, k.offset, k.len, k.sha256),
        (0x10000, 0, 0x100, [7u8; 32])
    );
    // The loader first reads only the top of its ROM.
    let top = GuidTable::parse(&img[0xf000..]).unwrap();
    assert_eq!(top.declared_image_size().unwrap(), 0x10000);
    assert!(matches!(
        top.kernel(),
        Err(LayoutError::ImageSizeMismatch {
            declared: 0x10000,
            len: 0x1000,
            ..
        })
    ));
}

#[test]
fn rejects_missing_footer() {
    let img = vec![0u8; 0x10000];
    assert_eq!(
        GuidTable::parse(&img).unwrap_err(),
        LayoutError::NoFooter {
            offset: 0x10000 - 0x30
        }
    );
    assert!(matches!(
        GuidTable::parse(&img[..10]),
        Err(LayoutError::TooSmall { len: 10 })
    ));
}

#[test]
fn rejects_bad_table_length() {
    let mut img = image_with(&sections(), &[]);
    let at = img.len() - 0x32;
    img[at..at + 2].copy_from_slice(&5u16.to_le_bytes());
    assert!(matches!(
        GuidTable::parse(&img),
        Err(LayoutError::BadTableLength { len: 5, .. })
    ));
    img[at..at + 2].copy_from_slice(&0xffffu16.to_le_bytes());
    // 0xffff fits in a 64 KiB image, but the entries inside are garbage (zeros).
    assert!(GuidTable::parse(&img).is_err());
}

#[test]
fn rejects_bad_entry_length() {
    let mut img = image_with(&sections(), &[]);
    // The entry right below the footer: its u16 length sits at size-0x32-18.
    let at = img.len() - 0x32 - 18;
    img[at..at + 2].copy_from_slice(&3u16.to_le_bytes());
    assert!(matches!(
        GuidTable::parse(&img),
        Err(LayoutError::BadEntryLength { len: 3, .. })
    ));
}

#[test]
fn rejects_bad_metadata() {
    let mut s = sections();
    let img = image_with(&s, &[]);
    let t = GuidTable::parse(&img).unwrap();
    t.sev_metadata(&img).unwrap();

    let mut bad = img.clone();
    bad[0xf000] = b'X';
    let t = GuidTable::parse(&bad).unwrap();
    assert_eq!(
        t.sev_metadata(&bad).unwrap_err(),
        LayoutError::BadMetadataSignature { offset: 0xf000 }
    );

    let mut bad = img.clone();
    bad[0xf008] = 2;
    let t = GuidTable::parse(&bad).unwrap();
    assert!(matches!(
        t.sev_metadata(&bad),
        Err(LayoutError::BadMetadataVersion { version: 2, .. })
    ));

    let mut bad = img.clone();
    bad[0xf00c] = 200; // 200 items cannot fit the declared length
    let t = GuidTable::parse(&bad).unwrap();
    assert!(matches!(
        t.sev_metadata(&bad),
        Err(LayoutError::BadMetadataLength { .. })
    ));

    let mut bad = img.clone();
    bad[0xf010 + 8] = 9; // first section's type
    let t = GuidTable::parse(&bad).unwrap();
    assert_eq!(
        t.sev_metadata(&bad).unwrap_err(),
        LayoutError::UnknownSectionType {
            offset: 0xf010,
            kind: 9
        }
    );

    s[0].gpa = 0xffff_f000;
    s[0].size = 0x2000;
    let img = image_with(&s, &[]);
    let t = GuidTable::parse(&img).unwrap();
    assert!(matches!(
        t.sev_metadata(&img),
        Err(LayoutError::SectionOverflow { .. })
    ));
}

#[test]
fn rejects_kernel_outside_image() {
    // Runs into the table at the top of the image.
    let img = image_with(
        &sections(),
        &[(OMEGA_KERNEL_GUID, kernel_entry(0x10000, 0xff00, 0x100))],
    );
    assert!(matches!(
        GuidTable::parse(&img).unwrap().kernel(),
        Err(LayoutError::KernelOutside { .. })
    ));
    // Offset + length overflowing u32 is caught too.
    let img = image_with(
        &sections(),
        &[(
            OMEGA_KERNEL_GUID,
            kernel_entry(0x10000, 0xffff_ff00, 0x1000),
        )],
    );
    assert!(matches!(
        GuidTable::parse(&img).unwrap().kernel(),
        Err(LayoutError::KernelOutside { .. })
    ));
    assert_eq!(
        GuidTable::parse(&image_with(&sections(), &[]))
            .unwrap()
            .kernel()
            .unwrap_err(),
        LayoutError::MissingEntry(OMEGA_KERNEL_GUID)
    );
}

/// Every single-byte change in the last 4 KiB parses to a result or an error, never a panic.
#[test]
fn byte_flips_never_panic() {
    let img = image_with(&sections(), &[]);
    for at in img.len() - 0x1000..img.len() {
        for v in [0u8, 1, 0x12, 0x7f, 0x80, 0xff] {
            let mut m = img.clone();
            m[at] = v;
            if let Ok(t) = GuidTable::parse(&m) {
                let _ = t.sev_metadata(&m).map(|md| md.sections().count());
                let _ = t.kernel();
                let _ = t.sev_es_reset_eip();
            }
        }
    }
}

/// Debian's OVMF builds carry the same table (the `ovmf` package is a prerequisite).
#[test]
fn parses_debian_ovmf() {
    extern crate std;
    let Some(images) = omega_test_support::debian_ovmf() else {
        return;
    };
    for path in &images {
        let img = std::fs::read(path).unwrap();
        // OVMF.fd has SEV metadata; the split OVMF_CODE builds have the table without it.
        let has_metadata = path.ends_with("OVMF.fd");
        let path = path.display();
        let t = GuidTable::parse(&img).unwrap();
        assert!(t.sev_es_reset_eip().unwrap() > 0, "{path}");
        match t.sev_metadata(&img) {
            Ok(meta) => {
                let kinds: Vec<_> = meta.sections().map(|s| s.unwrap().kind).collect();
                assert!(
                    kinds.contains(&SectionKind::SnpSecrets) && kinds.contains(&SectionKind::Cpuid),
                    "{path}"
                );
            }
            Err(e) => {
                assert!(!has_metadata, "{path}: {e}");
                assert_eq!(e, LayoutError::MissingEntry(SEV_METADATA_GUID));
            }
        }
    }
}

#[test]
fn sev_hash_table_entry() {
    let mut data = 0x80_f000u32.to_le_bytes().to_vec();
    data.extend_from_slice(&0x400u32.to_le_bytes());
    let image = image_with(&sections(), &[(SEV_HASH_TABLE_RV_GUID, data)]);
    let table = GuidTable::parse(&image).unwrap();
    assert_eq!(table.sev_hash_table(), Ok(Some((0x80_f000, 0x400))));

    let image = image_with(&sections(), &[]);
    assert_eq!(GuidTable::parse(&image).unwrap().sev_hash_table(), Ok(None));

    let image = image_with(&sections(), &[(SEV_HASH_TABLE_RV_GUID, vec![1, 2, 3, 4])]);
    let err = GuidTable::parse(&image)
        .unwrap()
        .sev_hash_table()
        .unwrap_err();
    assert!(
        matches!(
            err,
            LayoutError::ShortEntry {
                len: 4,
                expected: 8,
                ..
            }
        ),
        "{err:?}"
    );
}
