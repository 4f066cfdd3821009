//! The Omega monitor. On the bare-metal target this is the kernel the loader starts; built
//! for the host it only explains itself, so that `cargo test --workspace` builds every
//! package.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod channel;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod heap;
#[cfg(target_os = "none")]
mod memory;
#[cfg(target_os = "none")]
mod monitor;
#[cfg(target_os = "none")]
mod rng;
#[cfg(target_os = "none")]
mod service;
#[cfg(target_os = "none")]
mod snp;
#[cfg(all(target_os = "none", feature = "test-hooks"))]
mod test_hooks;
#[cfg(target_os = "none")]
mod time;
#[cfg(target_os = "none")]
mod virtio;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "omega-kernel runs only inside the boot image (target x86_64-unknown-none); build it with image-build"
    );
    std::process::exit(2);
}
