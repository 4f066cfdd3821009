//! `cargo +nightly fuzz run footer` (from firmware-layout/): any bytes as an image; the
//! table parser, metadata and kernel-entry readers must return, never panic, and whatever
//! they accept must lie inside the input.
#![no_main]

use firmware_layout::GuidTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(table) = GuidTable::parse(data) else { return };
    for e in table.entries().flatten() {
        assert!(e.offset + e.data.len() <= data.len());
    }
    if let Ok(meta) = table.sev_metadata(data) {
        for s in meta.sections().flatten() {
            assert!(s.end() <= 1 << 32);
        }
    }
    if let Ok(k) = table.kernel() {
        assert!(k.offset + k.len <= data.len());
    }
    let _ = table.sev_es_reset_eip();
    let _ = table.declared_image_size();
});
