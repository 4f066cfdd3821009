//! Fault injection for the QEMU tests, chosen by `test=` on the command line
//! (`-fw_cfg name=opt/omega/cmdline,string=test=panic`). Only in images built with the
//! `test-hooks` feature.

use omega_arch::serial_println;
use omega_boot_info::virt;

pub fn run(cmdline: &str) {
    let Some(test) = cmdline.split_whitespace().find_map(|w| w.strip_prefix("test=")) else {
        return;
    };
    serial_println!("omega: test hook: {test}");
    match test {
        "panic" => panic!("test hook asked for a panic"),
        "pagefault" => {
            // The guard page under the boot stack.
            let guard = (virt::KERNEL_STACK_TOP - virt::KERNEL_STACK_SIZE - 8) as *const u64;
            // SAFETY: deliberately faults; the page-fault handler reports and stops.
            let v = unsafe { core::ptr::read_volatile(guard) };
            serial_println!("omega: read {v:#x} from the guard page?!");
        }
        "ud" => {
            // SAFETY: deliberately raises #UD; the handler reports and stops.
            unsafe { core::arch::asm!("ud2") };
        }
        "write-code" => {
            // W^X: kernel code is mapped read-only.
            let code = run as *const () as *mut u8;
            // SAFETY: deliberately faults (write to a read-only page).
            unsafe { core::ptr::write_volatile(code, 0xcc) };
            serial_println!("omega: wrote to kernel code?!");
        }
        other => serial_println!("omega: unknown test hook {other:?}"),
    }
}
