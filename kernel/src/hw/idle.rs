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
//! "Nothing to do" is decided from the transport: `wait` halts when no input arrived since
//! the previous `wait`, so after one poll whose receive found nothing (one empty
//! `Channel::poll` is not enough: it reads one receive buffer and can return nothing with
//! more input already queued, which counts as input here); the service loop's [`wait`]
//! first polls on for [`SPIN_NS`] after the last input, so back-to-back traffic does not
//! halt. The channel's idle resync is timed on the monitor's clock
//! (`Config::MONITOR.idle_resync_ns`, 1 s, as the host's), so the tick keeps it firing
//! while halted. The channel's own waits (for credit; the log's wait for an `Ack`) idle
//! here too, through [`Idling`], the transport the services use. Without a clock the
//! resync counts polls, so `wait` only pauses (halting would stretch it from seconds to
//! days). The interrupt path is set up, and announced on the console, at the first halt.
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
use omega_kernel::channel::Transport;
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
/// How long the service loop polls on after the last input before it halts ([`wait`]).
/// A wake-up from `hlt` costs about 1.5 ms under TCG (measured), ten times a round trip
/// between two polling ends: without this, a request/answer exchange would halt between
/// every message (1 KiB echo: 3.7 ms instead of 0.2-0.4 ms). It costs at most this much CPU
/// per burst of input. The channel's own waits ([`Idling`]) halt at once instead: there the
/// host has to do the next step, and a spinning vCPU takes the host CPU it needs (1 MiB
/// echo: 82-86 ms spinning 1 ms per credit wait, 34-40 ms halting).
pub const SPIN_NS: u64 = 1_000_000;
/// The APIC timer's rate when it cannot be calibrated: QEMU's 1 GHz APIC bus / 16.
const DEFAULT_COUNTS_PER_MS: u32 = 62_500;
/// Calibration window against the TSC clock.
const CALIBRATION_NS: u64 = 2_000_000;

enum Mode {
    /// `sti; hlt` with the APIC timer armed for `tick` counts, once the channel has been
    /// without input for `spin` TSC ticks ([`SPIN_NS`]).
    Halt {
        apic: LocalApic,
        tick: u32,
        spin: u64,
    },
    /// SNP, or no usable local APIC.
    Pause,
}

static MODE: Once<Mode> = Once::new();
/// An interrupt arrived since the last [`wait`] looked.
static WOKEN: AtomicBool = AtomicBool::new(false);
/// The channel's interrupt arrived (reported once, for the tests).
static DEVICE_WOKE: AtomicBool = AtomicBool::new(false);
static DEVICE_WAKE_REPORTED: AtomicBool = AtomicBool::new(false);
/// `virtio::rx_activity` when `wait` last looked, and the TSC when it last changed.
static SEEN_ACTIVITY: AtomicU64 = AtomicU64::new(0);
/// The I/O APIC the channel line is routed through, when it takes a directed EOI (0: none).
static DIRECTED_EOI: AtomicU64 = AtomicU64::new(0);
static LAST_INPUT_TSC: AtomicU64 = AtomicU64::new(0);

/// Waits for something to happen: an interrupt from the channel device or the fallback
/// tick, once the channel has had no input since the last wait (otherwise, under SNP and
/// without a clock, one `PAUSE`). Call when a poll found nothing to do, then poll again.
pub fn wait(m: &Monitor) {
    wait_on(m.tee, m.clock.as_ref(), true);
}

/// [`wait`], polling on for [`SPIN_NS`] after the last input when `spin_first`.
fn wait_on(tee: Tee, clock: Option<&Clock>, spin_first: bool) {
    let activity = virtio::rx_activity();
    let tsc = clock::rdtsc();
    if SEEN_ACTIVITY.swap(activity, Ordering::Relaxed) != activity {
        LAST_INPUT_TSC.store(tsc, Ordering::Relaxed);
        core::hint::spin_loop();
        return;
    }
    match MODE.call_once(|| init(tee, clock)) {
        Mode::Pause => core::hint::spin_loop(),
        Mode::Halt { spin, .. }
            if spin_first && tsc.wrapping_sub(LAST_INPUT_TSC.load(Ordering::Relaxed)) < *spin =>
        {
            core::hint::spin_loop();
        }
        Mode::Halt { apic, tick, .. } => {
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

/// A channel transport that tells the channel the time (for its idle resync) and idles
/// like [`wait`], without its spin, when the channel waits (for credit, for an `Ack`).
pub struct Idling<T> {
    inner: T,
    tee: Tee,
    /// The monitor's clock's rate, from TSC 0: the channel needs only time differences.
    clock: Option<Clock>,
}

impl<T> Idling<T> {
    pub fn new(inner: T, m: &Monitor) -> Self {
        Idling {
            inner,
            tee: m.tee,
            clock: m.clock.as_ref().map(|c| Clock::new(0, c.hz())),
        }
    }
}

impl<T: Transport> Transport for Idling<T> {
    type Error = T::Error;

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, T::Error> {
        self.inner.recv(buf)
    }

    fn send(&mut self, data: &[u8]) -> Result<(), T::Error> {
        self.inner.send(data)
    }

    fn now_ns(&mut self) -> Option<u64> {
        self.clock.as_ref().map(clock::now_ns)
    }

    fn idle(&mut self) {
        wait_on(self.tee, self.clock.as_ref(), false);
    }

    fn reconnected(&mut self) -> bool {
        self.inner.reconnected()
    }
}

fn on_device_interrupt() {
    virtio::ack_interrupt();
    DEVICE_WOKE.store(true, Ordering::Relaxed);
    WOKEN.store(true, Ordering::Release);
    apic::eoi();
    // The line is level-triggered: its I/O APIC delivers it again only once its Remote IRR
    // is cleared. The local APIC's EOI broadcast does that under TCG, but not under KVM
    // with a split irqchip for `microvm`'s second I/O APIC: KVM exits to QEMU on EOI only
    // for the vectors of GSIs 0..23 (QEMU reserves 24 pins), so every wake-up after the
    // first waited for the fallback tick (100 ms). The directed EOI reaches QEMU's I/O
    // APIC itself.
    let io = DIRECTED_EOI.load(Ordering::Relaxed);
    if io != 0 {
        apic::ioapic_eoi(io, DEVICE_VECTOR);
    }
}

fn on_timer_interrupt() {
    WOKEN.store(true, Ordering::Release);
    apic::eoi();
}

/// The APIC withdrew an interrupt it had begun to deliver: no EOI (SDM 10.9), nothing to do.
fn ignore_spurious_interrupt() {}

fn init(tee: Tee, clock: Option<&Clock>) -> Mode {
    if tee == Tee::SevSnp {
        serial_println!(
            "omega: idle: SEV-SNP: no interrupts are taken; polling the channel with PAUSE"
        );
        return Mode::Pause;
    }
    let Some(apic) = LocalApic::find() else {
        serial_println!("omega: idle: no local APIC in xAPIC mode at 0xfee00000; polling");
        return Mode::Pause;
    };
    let Some(clock) = clock else {
        serial_println!(
            "omega: idle: no clock, so the channel's idle resync counts polls; polling"
        );
        return Mode::Pause;
    };
    apic::mask_legacy_pic();
    interrupts::set_handler(DEVICE_VECTOR, on_device_interrupt);
    interrupts::set_handler(TIMER_VECTOR, on_timer_interrupt);
    interrupts::set_handler(SPURIOUS_VECTOR, ignore_spurious_interrupt);
    apic.enable(SPURIOUS_VECTOR);
    let per_ms = calibrate(&apic, clock).unwrap_or(DEFAULT_COUNTS_PER_MS);
    // `microvm` with ACPI (QEMU's default) puts virtio-mmio slot n on GSI 24 + n, pin n of
    // its second I/O APIC. Without that I/O APIC (acpi=off: GSI 5 + n; ioapic2=off: GSI
    // 16 + n) the layout cannot be told apart, so the line is left alone.
    let routed = virtio::channel_slot().and_then(|slot| {
        let io = IoApic::probe(apic::IOAPIC2_PHYS)?;
        let pin = u32::try_from(slot)
            .ok()
            .filter(|p| *p < apic::IOAPIC_PINS)?;
        io.route_level(pin, DEVICE_VECTOR, apic.id());
        if let Some(phys) = io.directed_eoi() {
            DIRECTED_EOI.store(phys, Ordering::Relaxed);
        }
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
        spin: u64::try_from(u128::from(clock.hz()) * u128::from(SPIN_NS) / 1_000_000_000)
            .unwrap_or(u64::MAX),
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
