//! Ending a run: QEMU's `isa-debug-exit` device at port 0xf4 turns a write of `v` into the
//! process exit status `(v << 1) | 1`. Without that device (a real host) the CPU halts.

/// The two outcomes a boot reports to its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// QEMU exits with status 33.
    Success = 0x10,
    /// QEMU exits with status 35.
    Failure = 0x11,
}

/// Port of the isa-debug-exit device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

impl ExitCode {
    /// The QEMU process status this code becomes.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }
}

pub fn exit(code: ExitCode) -> ! {
    // SAFETY: a write to the debug-exit port only ends the VM (or does nothing on a host
    // without the device); no memory is touched.
    unsafe { x86_64::instructions::port::Port::<u32>::new(DEBUG_EXIT_PORT).write(code as u32) };
    halt_forever()
}

pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
