//! Host-controlled Bundle-stream messages into the guest's receiver. The input is split into
//! messages by a leading length byte each. Invariants: no panic, never more than MAX_FILES
//! files or MAX_TOTAL_BYTES held, and once a bundle is complete nothing replaces it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_bundle::{BundleReceiver, MAX_FILES, MAX_TOTAL_BYTES, Progress};

fuzz_target!(|data: &[u8]| {
    let mut rx = BundleReceiver::default();
    let mut rest = data;
    let mut done_with: Option<usize> = None;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        let (m, next) = tail.split_at(n);
        rest = next;
        if let Ok(Progress::Finished) = rx.on_message(m) {
            done_with = Some(rx.files.len());
        }
        assert!(rx.files.len() <= MAX_FILES as usize);
        let held: u64 = rx.files.iter().map(|f| f.bytes.len() as u64).sum();
        assert!(held <= MAX_TOTAL_BYTES);
        if let Some(n) = done_with {
            assert!(rx.is_done(), "a completed bundle was replaced");
            assert_eq!(rx.files.len(), n);
        }
    }
});
