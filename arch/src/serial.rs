//! COM1 (16550 UART at I/O port 0x3f8): the console of the loader and the kernel.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

const COM1: u16 = 0x3f8;

fn outb(port: u16, value: u8) {
    // SAFETY: writes to the COM1 UART's registers, which the firmware owns; no memory is
    // touched. Under SNP this raises #VC, which the handler emulates through the GHCB;
    // before there is a GHCB the console stays off (see `set_enabled`).
    unsafe { x86_64::instructions::port::Port::new(port).write(value) }
}

fn inb(port: u16) -> u8 {
    // SAFETY: as in `outb`: reads a UART register, no memory effects.
    unsafe { x86_64::instructions::port::Port::new(port).read() }
}

/// Set until an SNP guest has a GHCB: port I/O would otherwise raise a #VC nobody can
/// answer. (Zero-initialised on purpose: the loader has no .data.)
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns the console on or off (output while off is dropped).
pub fn set_enabled(on: bool) {
    DISABLED.store(!on, Ordering::SeqCst);
}

pub fn enabled() -> bool {
    !DISABLED.load(Ordering::SeqCst)
}

/// Programs 115200 baud, 8N1, FIFOs on.
pub fn init() {
    if !enabled() {
        return;
    }
    outb(COM1 + 1, 0x00); // no interrupts
    outb(COM1 + 3, 0x80); // DLAB
    outb(COM1, 0x01); // divisor 1 = 115200
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1
    outb(COM1 + 2, 0xc7); // FIFO on, cleared
    outb(COM1 + 4, 0x03); // DTR + RTS
}

/// The transmitter stayed busy for a whole bounded wait: from then on a byte is written
/// only if the transmitter is ready at once, and dropped otherwise, never waited for.
/// (Zero-initialised, as `DISABLED`.)
static STALLED: AtomicBool = AtomicBool::new(false);

fn write_byte(b: u8) {
    const THRE: u8 = 0x20;
    if STALLED.load(Ordering::Relaxed) {
        // A console nobody reads (QEMU's stdout went to a launcher that died: QEMU retries
        // each byte before dropping it) must not cost the monitor a bounded wait per byte,
        // which made every console line take seconds.
        if inb(COM1 + 5) & THRE != 0 {
            outb(COM1, b);
        }
        return;
    }
    // Bounded wait for the transmitter: a wedged or absent UART must not hang the boot.
    for _ in 0..100_000 {
        if inb(COM1 + 5) & THRE != 0 {
            outb(COM1, b);
            return;
        }
        core::hint::spin_loop();
    }
    STALLED.store(true, Ordering::Relaxed);
}

/// A stateless writer: every instance talks to the same UART.
pub struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !enabled() {
            return Ok(());
        }
        for b in s.bytes() {
            if b == b'\n' {
                write_byte(b'\r');
            }
            write_byte(b);
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _ = fmt::Write::write_fmt(&mut Serial, args);
}

#[macro_export]
macro_rules! serial_print {
    ($($arg:tt)*) => { $crate::serial::_print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! serial_println {
    () => { $crate::serial_print!("\n") };
    ($($arg:tt)*) => { $crate::serial::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
