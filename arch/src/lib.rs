//! x86_64 pieces the loader and the kernel share. Hardware access lives here and in the
//! two binaries only; everything else in Omega is plain, host-tested logic.
#![no_std]

pub mod cpu;
pub mod exceptions;
pub mod exit;
pub mod fatal;
pub mod interrupts;
pub mod serial;
#[cfg(target_os = "none")]
pub mod sev;

/// Prints a panic's location and message on the serial port and stops the machine
/// ([`fatal::stop`]). Both binaries' `#[panic_handler]`s end here. Under SNP the message
/// (formatted runtime values) is left out; the location is part of the measured image.
pub fn panic_report(who: &str, info: &core::panic::PanicInfo<'_>) -> ! {
    let details = fatal::disclosure().details();
    match info.location() {
        Some(loc) if !details => serial_println!(
            "{who}: PANIC at {}:{}:{}",
            loc.file(),
            loc.line(),
            loc.column()
        ),
        None if !details => serial_println!("{who}: PANIC"),
        Some(loc) => serial_println!(
            "{who}: PANIC at {}:{}:{}: {}",
            loc.file(),
            loc.line(),
            loc.column(),
            info.message()
        ),
        None => serial_println!("{who}: PANIC: {}", info.message()),
    }
    fatal::stop()
}
