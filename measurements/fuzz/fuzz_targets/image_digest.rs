//! Image footer/metadata parsing and the launch digest on arbitrary bytes: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use measurements::digest::{DigestOptions, KernelHashes, Measurer, VcpuType, inspect};

fuzz_target!(|data: &[u8]| {
    // First byte picks the parameters; the rest is the image, padded to whole pages half
    // of the time so that the digest path runs too.
    let Some((&p, rest)) = data.split_first() else { return };
    let mut image = rest.to_vec();
    if p & 0x80 != 0 {
        let pad = image.len().next_multiple_of(4096) - image.len();
        image.splice(0..0, std::iter::repeat_n(0u8, pad));
    }
    let _ = inspect(&image);
    if let Ok(m) = Measurer::new(&image) {
        let vcpus = u32::from(p & 0x7);
        let t = VcpuType::NAMED[usize::from(p >> 3 & 0xf) % VcpuType::NAMED.len()];
        let kernel_hashes = (p & 0x40 != 0).then(|| KernelHashes::new(b"kernel", None, Some("x")));
        let _ = m.launch_digest(vcpus, t, 1, &DigestOptions { kernel_hashes });
    }
});
