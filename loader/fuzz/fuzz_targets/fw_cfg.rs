//! `cargo +nightly fuzz run fw_cfg` (from loader/): a fw_cfg device whose every byte comes
//! from the fuzzer (the host controls fw_cfg); the readers must stay within their bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omega_boot_info::{E820Entry, MAX_E820};
use omega_loader::fwcfg::{self, FwCfgIo};

struct Hostile<'a> {
    data: &'a [u8],
    pos: usize,
}

impl FwCfgIo for Hostile<'_> {
    fn select(&mut self, key: u16) {
        // Each selection restarts somewhere the fuzzer chose.
        self.pos = usize::from(key) % self.data.len().max(1);
    }
    fn read(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.data.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut io = Hostile { data, pos: 0 };
    let _ = fwcfg::probe(&mut io);
    let mut e820 = [E820Entry::default(); MAX_E820];
    if let Ok(n) = fwcfg::read_e820(&mut io, &mut e820) {
        assert!(n <= MAX_E820);
    }
    let mut cmdline = [0u8; 256];
    if let Ok(n) = fwcfg::read_file(&mut io, "opt/omega/cmdline", &mut cmdline) {
        assert!(n <= cmdline.len());
    }
});
