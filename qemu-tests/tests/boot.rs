//! Boots the real image in QEMU (TCG unless OMEGA_QEMU_ACCEL=kvm) and checks the banner,
//! the memory map, the exit codes, fault reports, and refusal of corrupted images.

use std::path::PathBuf;
use std::time::Duration;

use qemu_tests::{Boot, EXIT_FAILURE, EXIT_SUCCESS, image, test_hooks_image};

fn assert_contains(out: &qemu_tests::Outcome, needle: &str) {
    assert!(
        out.serial.contains(needle),
        "serial output lacks {needle:?}\n{out}"
    );
}

#[test]
fn boots_to_banner_and_exits_cleanly() {
    let out = Boot::new(image()).run().unwrap();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    assert_contains(&out, "omega-loader 0.1.0: long mode");
    assert_contains(&out, "Omega monitor 0.1.0");
    assert_contains(&out, " tee: none");
    assert_contains(&out, " memory: 128 MiB usable in");
    assert_contains(&out, "omega: heap self-test passed");
    assert_contains(&out, " frames: ");
    assert_contains(&out, " shared DMA pool 2048 KiB at ");
    assert_contains(&out, "omega: boot complete");
    assert!(out.banner_after.is_some());
}

#[test]
fn reports_the_memory_qemu_gives_it() {
    let out = Boot::new(image()).memory(512).run().unwrap();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    // microvm leaves no hole below 512 MiB, so all of it is usable RAM.
    assert_contains(&out, " memory: 512 MiB usable in");
}

#[test]
fn refuses_too_little_memory() {
    let out = Boot::new(image()).memory(32).run().unwrap();
    assert_eq!(out.status, Some(EXIT_FAILURE), "{out}");
    assert_contains(
        &out,
        "omega-loader: FATAL: memory: 32 MiB RAM, at least 64 MiB needed",
    );
}

#[test]
fn production_image_ignores_test_hooks() {
    let out = Boot::new(image()).cmdline("test=panic").run().unwrap();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    assert!(!out.serial.contains("test hook"), "{out}");
}

#[test]
fn kernel_panic_is_reported_with_location() {
    let out = Boot::new(test_hooks_image())
        .cmdline("test=panic")
        .run()
        .unwrap();
    assert_eq!(out.status, Some(EXIT_FAILURE), "{out}");
    assert_contains(&out, "omega: PANIC at kernel/src/test_hooks.rs:");
    assert_contains(&out, "test hook asked for a panic");
}

#[test]
fn guard_page_fault_is_reported() {
    let out = Boot::new(test_hooks_image())
        .cmdline("test=pagefault")
        .run()
        .unwrap();
    assert_eq!(out.status, Some(EXIT_FAILURE), "{out}");
    assert_contains(&out, "omega: CPU EXCEPTION #PF page fault (vector 14)");
    assert_contains(
        &out,
        "page fault at address 0xffffffff9ffdfff8: read, page not present",
    );
}

#[test]
fn invalid_opcode_is_reported() {
    let out = Boot::new(test_hooks_image())
        .cmdline("test=ud")
        .run()
        .unwrap();
    assert_eq!(out.status, Some(EXIT_FAILURE), "{out}");
    assert_contains(&out, "omega: CPU EXCEPTION #UD invalid opcode (vector 6)");
}

#[test]
fn kernel_code_is_not_writable() {
    let out = Boot::new(test_hooks_image())
        .cmdline("test=write-code")
        .run()
        .unwrap();
    assert_eq!(out.status, Some(EXIT_FAILURE), "{out}");
    assert_contains(&out, "write, protection violation");
    assert!(!out.serial.contains("wrote to kernel code"), "{out}");
}

/// Writes a modified copy of the production image and returns its path.
fn corrupted(name: &str, change: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(image()).unwrap();
    change(&mut bytes);
    let dir = image().parent().unwrap().join("corrupted");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn corrupted_kernel_is_refused() {
    // A byte inside the kernel's code: the ELF still parses, only the digest catches it.
    let path = corrupted("kernel-byte.bin", |b| b[0x1100] ^= 0x40);
    let out = Boot::new(path).run().unwrap();
    assert_eq!(out.status, Some(EXIT_FAILURE), "{out}");
    assert_contains(
        &out,
        "omega-loader: FATAL: kernel: SHA-256 of the kernel ELF does not match",
    );
    assert!(!out.serial.contains("Omega monitor"), "{out}");
}

#[test]
fn corrupted_footer_is_refused() {
    let path = corrupted("footer.bin", |b| {
        let at = b.len() - 0x30;
        b[at] ^= 0xff;
    });
    let out = Boot::new(path).run().unwrap();
    assert_eq!(out.status, Some(EXIT_FAILURE), "{out}");
    assert_contains(
        &out,
        "omega-loader: FATAL: image footer: no footer GUID at offset 0xfd0",
    );
}

#[test]
fn corrupted_reset_vector_never_hangs_the_harness() {
    // cli; hlt: the CPU stops for good. The harness must kill QEMU at its timeout.
    let path = corrupted("reset-hlt.bin", |b| {
        let at = b.len() - 0x10;
        b[at..at + 2].copy_from_slice(&[0xfa, 0xf4]);
    });
    let out = Boot::new(path)
        .timeout(Duration::from_secs(3))
        .run()
        .unwrap();
    assert!(out.timed_out, "{out}");
    assert_ne!(out.status, Some(EXIT_SUCCESS));
    assert!(out.elapsed < Duration::from_secs(10), "{out}");
    assert!(!out.serial.contains("Omega monitor"));
}
