//! `cargo +nightly fuzz run kernel_elf` (from loader/): the kernel ELF checker on any
//! bytes; every segment it accepts must lie in the allowed range and inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omega_loader::elf::Kernel;

const BASE: u64 = 0xffff_ffff_8100_0000;

fuzz_target!(|data: &[u8]| {
    let Ok(k) = Kernel::parse(data, BASE, BASE + 0x1000_0000) else { return };
    for s in k.segments() {
        assert!(s.vaddr >= BASE && s.vaddr + s.mem_len <= BASE + 0x1000_0000);
        assert!(!(s.writable() && s.executable()));
        assert!(k.data(s).len() as u64 <= s.mem_len);
    }
});
