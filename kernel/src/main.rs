//! The Omega monitor's binary half. On the bare-metal target this is the kernel the loader
//! starts; built for the host it only explains itself, so that `cargo test --workspace`
//! builds every package.
//!
//! | module | owns |
//! |---|---|
//! | `monitor` | the boot sequence and the state it leaves (`Monitor`) |
//! | `hw/` | every `unsafe` piece: CPU tables, heap, RNG, TSC, shared DMA pool, virtio, SEV-SNP |
//! | `services/` | the host channel's streams, one module each |
//! | `test_hooks` | fault injection for the QEMU tests (`test-hooks` feature only) |
//!
//! The pure logic they use (channel state machine, clock arithmetic, entropy checks, frame
//! allocator, platform trait) is the library half, `lib.rs`, tested on the host.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod hw;
#[cfg(target_os = "none")]
mod monitor;
#[cfg(target_os = "none")]
mod services;
#[cfg(all(target_os = "none", feature = "test-hooks"))]
mod test_hooks;

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    omega_arch::panic_report("omega", info)
}

/// Entry from the loader: `info` is the boot info's direct-map address.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn _start(info: *const omega_boot_info::BootInfo) -> ! {
    // SAFETY: the loader passes the direct-map address of a BootInfo it wrote in its own
    // reserved memory, which nothing else writes; `BootInfo::check` validates it before
    // `boot` relies on it.
    let info = unsafe { &*info };
    let m = monitor::boot(info);

    #[cfg(feature = "test-hooks")]
    let echo_all = test_hooks::run(&m);
    #[cfg(not(feature = "test-hooks"))]
    let echo_all = false;

    let code = services::run(&m, echo_all);
    omega_arch::exit::exit(code)
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "omega-kernel runs only inside the boot image (target x86_64-unknown-none); build it with image-build"
    );
    std::process::exit(2);
}
