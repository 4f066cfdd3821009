//! The one way the loader and the kernel stop on an unrecoverable condition, and the one
//! place that decides what a stop may tell the console ([`Disclosure`]).
//!
//! Without SEV the host sees all guest memory anyway, and the QEMU tests read the full
//! reports: a panic's message, a `FATAL` line with its cause, an exception's registers.
//! Under SEV-SNP the console is still the host's (COM1 goes through the GHCB) while guest
//! state is not, and without Restricted Injection the host can inject an NMI or `#PF` at
//! any instruction, including in the middle of key handling: a register dump there would
//! hand it key material. So under SNP an unexpected exception prints nothing, a panic or
//! fatal error prints a fixed line (no runtime value, no address), and the guest ends with
//! a GHCB termination request whose code says which ([`omega_boot_info::snp::terminate`]).

use core::fmt::Display;
use core::sync::atomic::{AtomicBool, Ordering};

use omega_boot_info::snp::{Termination, terminate};

use crate::exit::{ExitCode, exit};
use crate::serial_println;

/// What a stop may show on host-visible outputs (the serial console).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    /// No SEV: full reports (registers, addresses, messages), then the QEMU exit status.
    Full,
    /// SEV-SNP: no register, address or runtime value; a GHCB termination request.
    Silent,
}

impl Disclosure {
    /// The decision, from what the platform says: SEV_STATUS (the loader reads it, the
    /// kernel has it in the boot info). Any SEV bit means guest memory is not the host's,
    /// so its registers are not either. (Plain SEV and SEV-ES are refused at reset, but a
    /// report before that refusal must not leak either.)
    pub const fn for_sev_status(sev_status: u64) -> Self {
        if sev_status & 1 != 0 {
            Disclosure::Silent
        } else {
            Disclosure::Full
        }
    }

    /// An unexpected CPU exception's report (vector, RIP, CR2, registers).
    pub const fn exception_report(self) -> bool {
        matches!(self, Disclosure::Full)
    }

    /// A panic's message and a fatal error's cause (formatted runtime values).
    pub const fn details(self) -> bool {
        matches!(self, Disclosure::Full)
    }

    /// Whether a stop asks the hypervisor to terminate (SNP) rather than writing QEMU's
    /// debug-exit port.
    pub const fn terminates(self) -> bool {
        matches!(self, Disclosure::Silent)
    }
}

/// Set once the running binary knows its memory is not the host's. Zero-initialised, so
/// it lives in .bss: the loader has no .data.
static SILENT: AtomicBool = AtomicBool::new(false);

/// Records what the platform says (SEV_STATUS, 0 without SEV). The decision is
/// [`Disclosure::for_sev_status`]; once silent, a boot never becomes verbose again.
pub fn set_platform(sev_status: u64) {
    if Disclosure::for_sev_status(sev_status) == Disclosure::Silent {
        SILENT.store(true, Ordering::Relaxed);
    }
}

/// Records that this boot runs as an SEV-SNP guest (the kernel learns it from the boot
/// info): [`set_platform`] with the SEV_STATUS bits every SNP guest has.
pub fn set_snp_guest() {
    set_platform(sev_snp::features::REQUIRED);
}

/// What this boot may disclose when it stops.
pub fn disclosure() -> Disclosure {
    if SILENT.load(Ordering::Relaxed) {
        Disclosure::Silent
    } else {
        Disclosure::Full
    }
}

/// Stops the machine after an unrecoverable condition: under SNP a termination request
/// with `reason`, else the failure exit status.
pub fn stop_with(reason: Termination) -> ! {
    #[cfg(target_os = "none")]
    if disclosure().terminates() {
        crate::sev::terminate(reason)
    }
    let _ = reason;
    exit(ExitCode::Failure)
}

/// Stops the machine after a fatal error or panic was reported on the console.
pub fn stop() -> ! {
    stop_with(terminate::FATAL)
}

/// Reports `what` failed with `err` as `"{who}: FATAL: {what}: {err}"` and [`stop`]s.
/// Under SNP only `"{who}: FATAL: {what}"` is printed: `what` is a fixed text, `err` may
/// carry runtime values. Only for conditions the binary cannot recover from itself (no
/// memory, broken boot info, a corrupted image); errors the host causes on the channel
/// are reported and survived instead.
pub fn fatal(who: &str, what: &str, err: impl Display) -> ! {
    fatal_as(terminate::FATAL, who, what, err)
}

/// [`fatal`] with a termination reason of its own, for conditions the operator should
/// tell apart from the host side (a PVALIDATE or page-state change refused).
pub fn fatal_as(reason: Termination, who: &str, what: &str, err: impl Display) -> ! {
    if disclosure().details() {
        serial_println!("{who}: FATAL: {what}: {err}");
    } else {
        serial_println!("{who}: FATAL: {what}");
    }
    stop_with(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_reports_only_without_sev() {
        // Plain QEMU (TCG) and hosts without SEV: SEV_STATUS reads as 0.
        let full = Disclosure::for_sev_status(0);
        assert_eq!(full, Disclosure::Full);
        assert!(full.exception_report() && full.details() && !full.terminates());
        // SNP as QEMU 10 launches it (0x7), with optional features, and every pattern
        // with SEV on: silent, and the stop is a termination request.
        for status in [0x7u64, 0x87, 0x27, 0x1, 0x3, u64::MAX] {
            let d = Disclosure::for_sev_status(status);
            assert_eq!(d, Disclosure::Silent, "{status:#x}");
            assert!(!d.exception_report() && !d.details() && d.terminates());
        }
        // Bits other than SEV's alone do not make a guest encrypted.
        assert_eq!(Disclosure::for_sev_status(0x6), Disclosure::Full);
    }

    #[test]
    fn the_flag_drives_the_decision() {
        // Host tests run in one process: this is the only test that sets the flag.
        assert_eq!(disclosure(), Disclosure::Full);
        set_platform(0);
        assert_eq!(disclosure(), Disclosure::Full);
        set_snp_guest();
        assert_eq!(disclosure(), Disclosure::Silent);
        // Never back: a later "no SEV" cannot turn the reports on again.
        set_platform(0);
        assert_eq!(disclosure(), Disclosure::Silent);
    }
}
