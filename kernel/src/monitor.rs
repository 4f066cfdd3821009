//! Kernel entry and the boot sequence.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use omega_arch::exit::{ExitCode, exit};
use omega_arch::{serial, serial_println};
use omega_boot_info::{BootInfo, Tee};

use crate::{cpu, heap};

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    omega_arch::panic_report("omega", info)
}

/// Entry from the loader: `info` is the boot info's direct-map address.
#[unsafe(no_mangle)]
extern "C" fn _start(info: *const BootInfo) -> ! {
    serial::init();
    cpu::init();
    // SAFETY: the loader passes the direct-map address of a BootInfo it wrote in its own
    // reserved memory, which nothing else writes; `check` validates it before use.
    let info: &BootInfo = unsafe { &*info };
    let tee = match info.check() {
        Ok(tee) => tee,
        Err(e) => {
            serial_println!("omega: FATAL: boot info from the loader is unusable: {e:?}");
            exit(ExitCode::Failure)
        }
    };
    let Some(heap) = heap::init(info) else {
        serial_println!("omega: FATAL: no free RAM for the heap");
        exit(ExitCode::Failure)
    };
    banner(info, tee, &heap);
    heap_self_test();

    #[cfg(feature = "test-hooks")]
    crate::test_hooks::run(info.cmdline());

    serial_println!("omega: boot complete; no agents configured, shutting down");
    exit(ExitCode::Success)
}

fn banner(info: &BootInfo, tee: Tee, heap: &heap::HeapInfo) {
    let ram = info.usable_ram();
    serial_println!("==============================================================");
    serial_println!(" Omega monitor {VERSION}");
    serial_println!(" tee: {}", tee.name());
    serial_println!(" memory: {} MiB usable in {} e820 entries", ram >> 20, info.e820().len());
    serial_println!(" heap: {} MiB at phys {:#x}", heap.size >> 20, heap.phys_start);
    let d = &info.kernel_sha256;
    serial_println!(
        " kernel sha256: {:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}...",
        d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
    );
    if tee == Tee::None {
        serial_println!(" WARNING: no TEE; this run is unattested and verifiers refuse it by default");
    }
    serial_println!("==============================================================");
}

/// A quick check that the allocator works before anything relies on it.
fn heap_self_test() {
    let before = heap::free();
    {
        let v: Vec<u64> = (0..10_000).collect();
        let mut m = BTreeMap::new();
        for i in 0..1000u32 {
            m.insert(i, String::from("omega"));
        }
        let sum: u64 = v.iter().sum();
        if sum != 49_995_000 || m.len() != 1000 {
            serial_println!("omega: FATAL: heap self-test computed wrong values");
            exit(ExitCode::Failure);
        }
    }
    if heap::free() != before {
        serial_println!("omega: FATAL: heap self-test leaked {} bytes", before - heap::free());
        exit(ExitCode::Failure);
    }
    serial_println!("omega: heap self-test passed");
}
