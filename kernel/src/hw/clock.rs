//! The clock's hardware: the TSC, calibrated against the PIT (channel 0, read by latching;
//! no port 0x61 needed, which `microvm` lacks). The arithmetic is `omega_kernel::clock`.

use omega_kernel::clock::{self, Clock};
use x86_64::instructions::port::Port;

/// 4 ms of PIT ticks (4,773): one tick is 0.02 % of a window, and the ratio uses the ticks
/// actually counted, so shorter windows lose little precision; every boot waits for all
/// of them (five 10 ms windows were a tenth of the boot under TCG).
const WINDOW: u64 = clock::PIT_HZ / 250;
/// Calibration windows; the median wins, so one disturbed window (a descheduled vCPU on a
/// busy host) does not skew the clock.
const WINDOWS: usize = 5;
const GLITCH_STEP: u16 = 0x4000;

/// The raw time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn pit_count() -> u16 {
    // SAFETY: port I/O to the PIT (latch channel 0, read the latched count low then high)
    // touches no memory, and the monitor is the PIT's only user.
    unsafe {
        Port::<u8>::new(0x43).write(0x00);
        let lo = Port::<u8>::new(0x40).read();
        let hi = Port::<u8>::new(0x40).read();
        u16::from_le_bytes([lo, hi])
    }
}

/// Counts TSC ticks across `pit_ticks` PIT ticks; `None` if the PIT does not count.
fn measure(pit_ticks: u64) -> Option<(u64, u64)> {
    // SAFETY: programs PIT channel 0 as a free-running rate generator (mode 2, reload
    // 0xffff); nothing in the monitor uses the PIT otherwise.
    unsafe {
        Port::<u8>::new(0x43).write(0x34);
        Port::<u8>::new(0x40).write(0xff);
        Port::<u8>::new(0x40).write(0xff);
    }
    let mut last = pit_count();
    let tsc0 = rdtsc();
    let mut elapsed = 0u64;
    // Bounded: a missing PIT (all reads equal) must not hang the boot.
    for _ in 0..50_000_000u64 {
        let c = pit_count();
        let step = last.wrapping_sub(c);
        // Two back-to-back reads cannot be a quarter of the counter's range apart; such a
        // step is a glitched read (or a host playing with the PIT) and is not counted,
        // since one bogus step would end the window at once and wreck the calibration.
        if step < GLITCH_STEP {
            elapsed += u64::from(step);
        }
        last = c;
        if elapsed >= pit_ticks {
            return Some((rdtsc() - tsc0, elapsed));
        }
    }
    None
}

/// Calibrates and returns the clock, or why it could not.
pub fn calibrate() -> Result<Clock, &'static str> {
    let base = rdtsc();
    let mut hz = [0u64; WINDOWS];
    for slot in hz.iter_mut() {
        let (tsc, pit) = measure(WINDOW).ok_or("the PIT does not count")?;
        *slot = clock::tsc_hz(tsc, pit).ok_or("implausible TSC frequency")?;
    }
    hz.sort_unstable();
    Ok(Clock::new(base, hz[WINDOWS / 2]))
}

/// Nanoseconds on `clock` now.
pub fn now_ns(clock: &Clock) -> u64 {
    clock.ns_at(rdtsc())
}

/// Busy-waits `ms` milliseconds of PIT time and returns the TSC ticks that passed (for
/// checking the clock against the PIT).
pub fn pit_wait_tsc(ms: u64) -> Option<u64> {
    measure(clock::PIT_HZ * ms / 1000).map(|(tsc, _)| tsc)
}
