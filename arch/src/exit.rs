//! Ending a run, and the exit statuses the host sees. QEMU's `isa-debug-exit` device at
//! port 0xf4 turns a write of `v` into the process exit status `(v << 1) | 1`. Without that
//! device (a real host) the CPU halts.
//!
//! This is the one definition of those statuses. The crate builds for the host too, so the
//! launcher and the QEMU tests compare against [`QEMU_EXIT_SUCCESS`] and
//! [`QEMU_EXIT_FAILURE`] rather than numbers of their own.

/// The two outcomes a boot reports to its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// The monitor finished cleanly (host-requested shutdown, or nothing left to do):
    /// QEMU exits with status 33.
    Success = 0x10,
    /// A panic, an unhandled CPU exception, or a refusal to boot (bad image, too little
    /// memory, no usable platform): QEMU exits with status 35.
    Failure = 0x11,
}

/// Port of the isa-debug-exit device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// QEMU's exit status after [`ExitCode::Success`] (33).
pub const QEMU_EXIT_SUCCESS: i32 = ExitCode::Success.qemu_status();
/// QEMU's exit status after [`ExitCode::Failure`] (35).
pub const QEMU_EXIT_FAILURE: i32 = ExitCode::Failure.qemu_status();

impl ExitCode {
    /// The QEMU process status this code becomes.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }
}

/// Reports `code` to the host and stops this CPU.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: a write to the debug-exit port only ends the VM (or does nothing on a host
    // without the device); no memory is touched.
    unsafe { x86_64::instructions::port::Port::<u32>::new(DEBUG_EXIT_PORT).write(code as u32) };
    halt_forever()
}

/// Halts with interrupts off, for good (where there is nothing left to report).
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_the_host_sees() {
        // QEMU's isa-debug-exit: (value << 1) | 1. These numbers are what CI scripts and
        // the launcher compare against; they must never change.
        assert_eq!(ExitCode::Success as u8, 0x10);
        assert_eq!(ExitCode::Failure as u8, 0x11);
        assert_eq!(QEMU_EXIT_SUCCESS, 33);
        assert_eq!(QEMU_EXIT_FAILURE, 35);
    }
}
