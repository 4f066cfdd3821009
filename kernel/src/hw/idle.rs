//! Idling the vCPU when the monitor has nothing to do, instead of spinning on the channel.
//!
//! Without a TEE: the channel's virtio-mmio line is routed through `microvm`'s second I/O
//! APIC (GSI 24 + slot) to [`DEVICE_VECTOR`], the local APIC timer is a one-shot fallback
//! tick ([`TICK_MS`]; [`POLL_TICK_MS`] when the device line cannot be routed), and
//! [`wait`] halts until either fires. Interrupts are enabled only inside `wait`'s
//! `sti; hlt`: work is checked with interrupts off, and `sti` holds interrupts off for
//! one more instruction, so one that arrives after the check is delivered at the `hlt`
//! (waking it) and never lost. The handlers acknowledge, set a flag and send the EOI.
//!
//! "Nothing to do" is decided from the transport, not from one empty `Channel::poll`
//! (which reads one receive buffer and can return nothing with more input already
//! queued): `wait` halts only after [`QUIET_POLLS`] polls in a row whose receives found no
//! input (or [`QUIET_NS`] without input, whichever comes first), and polls on (spinning)
//! until then. That count is the channel's idle resync (`Config::MONITOR.idle_resync_polls`),
//! which counts polls: halting sooner would stretch the resync after a half-sent frame from
//! seconds to days. So the monitor spins for that long after the last input (about 1.7 s
//! of CPU under TCG, measured; 10 s under nested KVM, where a poll is slow) and then
//! sleeps; back-to-back traffic never halts, so its latency is what it was. The interrupt path is
//! set up, and announced on the console, at the first halt.
//!
//! Under SEV-SNP the monitor takes no interrupts (docs/threat-model.md, Restricted
//! Injection): they would be the host's to inject and, with Restricted Injection on, would
//! need a `#HV` doorbell the monitor does not implement. There `wait` is one `PAUSE` (which
//! a KVM host's pause-loop exiting can use to run something else) and the caller polls
//! again, as before this module existed; no handler is registered, so any interrupt the
//! host injects stops the guest silently.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use omega_arch::interrupts::{self, SPURIOUS_VECTOR};
use omega_arch::serial_println;
use omega_boot_info::Tee;
use omega_kernel::channel::Config;
use omega_kernel::clock::Clock;
use spin::Once;

use crate::hw::apic::{self, IoApic, LocalApic};
use crate::hw::{clock, virtio};
use crate::monitor::Monitor;

/// The channel device's interrupt.
pub const DEVICE_VECTOR: u8 = interrupts::FIRST_VECTOR;
/// The local APIC timer's.
pub const TIMER_VECTOR: u8 = interrupts::FIRST_VECTOR + 1;
/// The fallback tick while the device interrupt is routed: only a safety net (a lost
/// interrupt costs at most this much latency), so long enough to cost nothing idle.
pub const TICK_MS: u32 = 100;
/// The tick when the device line could not be routed: the channel is polled this often.
pub const POLL_TICK_MS: u32 = 5;
/// Polls without input before the first halt: see the module docs.
pub const QUIET_POLLS: u64 = Config::MONITOR.idle_resync_polls + 1;
/// ...or this long without input, whichever comes first: under nested KVM a poll costs
/// over 0.2 ms, and the count alone would keep the monitor spinning for minutes.
pub const QUIET_NS: u64 = 10_000_000_000;
/// The APIC timer's rate when it cannot be calibrated: QEMU's 1 GHz APIC bus / 16.
const DEFAULT_COUNTS_PER_MS: u32 = 62_500;
/// Calibration window against the TSC clock.
const CALIBRATION_NS: u64 = 2_000_000;

enum Mode {
    /// `sti; hlt` with the APIC timer armed for `tick` counts.
    Halt { apic: LocalApic, tick: u32 },
    /// SNP, or no usable local APIC.
    Pause,
}

static MODE: Once<Mode> = Once::new();
/// An interrupt arrived since the last [`wait`] looked.
static WOKEN: AtomicBool = AtomicBool::new(false);
/// The channel's interrupt arrived (reported once, for the tests).
static DEVICE_WOKE: AtomicBool = AtomicBool::new(false);
static DEVICE_WAKE_REPORTED: AtomicBool = AtomicBool::new(false);
/// `virtio::rx_activity` when `wait` last looked, the waits since it last changed, and
/// the clock then.
static SEEN_ACTIVITY: AtomicU64 = AtomicU64::new(0);
static QUIET: AtomicU64 = AtomicU64::new(0);
static QUIET_SINCE_NS: AtomicU64 = AtomicU64::new(0);

/// Whether the channel has been without input for [`QUIET_POLLS`] polls (one `wait`
/// follows each empty poll) or [`QUIET_NS`].
fn quiet_long_enough(clock: Option<&Clock>) -> bool {
    let now = clock.map(clock::now_ns);
    let activity = virtio::rx_activity();
    if SEEN_ACTIVITY.swap(activity, Ordering::Relaxed) != activity {
        QUIET.store(0, Ordering::Relaxed);
        QUIET_SINCE_NS.store(now.unwrap_or(0), Ordering::Relaxed);
        return false;
    }
    let quiet = QUIET.load(Ordering::Relaxed).saturating_add(1);
    QUIET.store(quiet, Ordering::Relaxed);
    let long = now.is_some_and(|t| t - QUIET_SINCE_NS.load(Ordering::Relaxed) >= QUIET_NS);
    quiet >= QUIET_POLLS || long
}

/// Waits for something to happen: an interrupt from the channel device or the fallback
/// tick, once the channel has been quiet long enough (otherwise, and under SNP, one
/// `PAUSE`). Call when a poll found nothing to do, then poll again.
pub fn wait(m: &Monitor) {
    let snp = m.platform.tee() == Tee::SevSnp;
    if !snp && !quiet_long_enough(m.clock.as_ref()) {
        core::hint::spin_loop();
        return;
    }
    match MODE.call_once(|| init(m)) {
        // One PAUSE per empty poll, as before idling existed: the channel's idle resync
        // counts polls.
        Mode::Pause => core::hint::spin_loop(),
        Mode::Halt { apic, tick } => {
            // Interrupts are off everywhere but in the `hlt` below; this makes it so
            // should a caller ever have turned them on.
            x86_64::instructions::interrupts::disable();
            if WOKEN.swap(false, Ordering::Acquire) {
                return;
            }
            apic.arm_oneshot(TIMER_VECTOR, *tick);
            // SAFETY: the IDT has gates and registered handlers for both vectors that can
            // fire (DEVICE_VECTOR, TIMER_VECTOR) and the spurious one; the PICs and every
            // other APIC source are masked (`init`). `sti` delays interrupts by one
            // instruction, so none is taken before `hlt`, and a pending one wakes it; the
            // handlers save every register and touch only atomics and device registers.
            // Not `nomem`: the handlers write `WOKEN`.
            unsafe { core::arch::asm!("sti", "hlt", "cli", options(nostack)) };
            apic.stop_timer();
            WOKEN.store(false, Ordering::Release);
            if DEVICE_WOKE.load(Ordering::Relaxed)
                && !DEVICE_WAKE_REPORTED.swap(true, Ordering::Relaxed)
            {
                serial_println!("omega: idle: woken by the channel interrupt");
            }
        }
    }
}

fn on_device_interrupt() {
    virtio::ack_interrupt();
    DEVICE_WOKE.store(true, Ordering::Relaxed);
    WOKEN.store(true, Ordering::Release);
    apic::eoi();
}

fn on_timer_interrupt() {
    WOKEN.store(true, Ordering::Release);
    apic::eoi();
}

/// The APIC withdrew an interrupt it had begun to deliver: no EOI (SDM 10.9), nothing to do.
fn ignore_spurious_interrupt() {}

fn init(m: &Monitor) -> Mode {
    if m.platform.tee() == Tee::SevSnp {
        serial_println!(
            "omega: idle: SEV-SNP: no interrupts are taken; polling the channel with PAUSE"
        );
        return Mode::Pause;
    }
    let Some(apic) = LocalApic::find() else {
        serial_println!("omega: idle: no local APIC in xAPIC mode at 0xfee00000; polling");
        return Mode::Pause;
    };
    apic::mask_legacy_pic();
    interrupts::set_handler(DEVICE_VECTOR, on_device_interrupt);
    interrupts::set_handler(TIMER_VECTOR, on_timer_interrupt);
    interrupts::set_handler(SPURIOUS_VECTOR, ignore_spurious_interrupt);
    apic.enable(SPURIOUS_VECTOR);
    let per_ms = m
        .clock
        .as_ref()
        .and_then(|c| calibrate(&apic, c))
        .unwrap_or(DEFAULT_COUNTS_PER_MS);
    // `microvm` with ACPI (QEMU's default) puts virtio-mmio slot n on GSI 24 + n, pin n of
    // its second I/O APIC. Without that I/O APIC (acpi=off: GSI 5 + n; ioapic2=off: GSI
    // 16 + n) the layout cannot be told apart, so the line is left alone.
    let routed = virtio::channel_slot().and_then(|slot| {
        let io = IoApic::probe(apic::IOAPIC2_PHYS)?;
        let pin = u32::try_from(slot)
            .ok()
            .filter(|p| *p < apic::IOAPIC_PINS)?;
        io.route_level(pin, DEVICE_VECTOR, apic.id());
        Some(pin)
    });
    let tick_ms = match routed {
        Some(pin) => {
            serial_println!(
                "omega: idle: halting; channel interrupt GSI {} -> vector {DEVICE_VECTOR}, APIC timer {} counts/ms, fallback tick {TICK_MS} ms",
                24 + pin,
                per_ms
            );
            TICK_MS
        }
        None => {
            serial_println!(
                "omega: idle: halting; channel interrupt not routable (no second I/O APIC), polling every {POLL_TICK_MS} ms"
            );
            POLL_TICK_MS
        }
    };
    Mode::Halt {
        apic,
        tick: per_ms.saturating_mul(tick_ms),
    }
}

/// APIC timer counts per millisecond, measured against the TSC clock; `None` when the
/// measurement is implausible (the caller assumes QEMU's rate).
fn calibrate(apic: &LocalApic, clock: &Clock) -> Option<u32> {
    const START: u32 = u32::MAX;
    let t0 = clock::now_ns(clock);
    apic.start_masked(START);
    let mut elapsed_ns;
    // Bounded: a TSC that stops must not hang the boot (the clock never goes backwards).
    let mut spins = 0u32;
    loop {
        elapsed_ns = clock::now_ns(clock) - t0;
        spins += 1;
        if elapsed_ns >= CALIBRATION_NS || spins == 10_000_000 {
            break;
        }
        core::hint::spin_loop();
    }
    let counts = u64::from(apic.elapsed(START));
    apic.stop_timer();
    let per_ms = counts.checked_mul(1_000_000)? / elapsed_ns.max(1);
    // 1 MHz to 10 GHz of APIC bus (divided by 16): anything else is a broken measurement.
    u32::try_from(per_ms)
        .ok()
        .filter(|r| (62..=625_000).contains(r))
}
