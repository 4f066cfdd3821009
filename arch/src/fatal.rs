//! The one way the loader and the kernel stop on an unrecoverable condition: a message on
//! the console, then, under SEV-SNP, a GHCB termination request (the host learns the
//! outcome from it), else the failure exit status. Panics and unhandled CPU exceptions end
//! here too.

use core::fmt::Display;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::exit::{ExitCode, exit};
use crate::serial_println;

/// Set once the running binary knows it is an SNP guest. Zero-initialised, so it lives in
/// .bss: the loader has no .data.
static SNP_GUEST: AtomicBool = AtomicBool::new(false);

/// Records that this boot runs as an SEV-SNP guest: from now on [`stop`] asks the
/// hypervisor to terminate instead of writing the debug-exit port.
pub fn set_snp_guest() {
    SNP_GUEST.store(true, Ordering::Relaxed);
}

/// Stops the machine after an unrecoverable condition was reported on the console.
pub fn stop() -> ! {
    #[cfg(target_os = "none")]
    if SNP_GUEST.load(Ordering::Relaxed) {
        crate::sev::terminate(omega_boot_info::snp::terminate::FATAL)
    }
    exit(ExitCode::Failure)
}

/// Reports `what` failed with `err` as `"{who}: FATAL: {what}: {err}"` and [`stop`]s.
/// Only for conditions the binary cannot recover from itself (no memory, broken boot
/// info, a corrupted image); errors the host causes on the channel are reported and
/// survived instead.
pub fn fatal(who: &str, what: &str, err: impl Display) -> ! {
    serial_println!("{who}: FATAL: {what}: {err}");
    stop()
}
