//! The monotonic clock: TSC ticks turned into nanoseconds, the TSC frequency calibrated
//! against the PIT (1.193182 MHz), and a floor that never lets time run backwards.

use core::sync::atomic::{AtomicU64, Ordering};

pub const PIT_HZ: u64 = 1_193_182;

/// TSC frequency from a calibration window: `tsc_delta` TSC ticks while the PIT counted
/// `pit_ticks`. `None` when the numbers cannot be a real clock.
pub fn tsc_hz(tsc_delta: u64, pit_ticks: u64) -> Option<u64> {
    if pit_ticks == 0 || tsc_delta == 0 {
        return None;
    }
    let hz = u128::from(tsc_delta) * u128::from(PIT_HZ) / u128::from(pit_ticks);
    // SECURITY: a host that skews the calibration gets a clock that is wrong, not one that
    // divides by zero or overflows. 1 MHz .. 100 GHz is the plausible range.
    (1_000_000..=100_000_000_000)
        .contains(&hz)
        .then_some(hz as u64)
}

/// Monotonic nanoseconds since `base_tsc`.
#[derive(Debug)]
pub struct Clock {
    base_tsc: u64,
    hz: u64,
    last_ns: AtomicU64,
    /// Times the TSC was seen to go backwards (the host controls it without SecureTSC).
    backwards: AtomicU64,
}

impl Clock {
    pub const fn new(base_tsc: u64, hz: u64) -> Clock {
        Clock {
            base_tsc,
            hz,
            last_ns: AtomicU64::new(0),
            backwards: AtomicU64::new(0),
        }
    }

    pub fn hz(&self) -> u64 {
        self.hz
    }

    /// Nanoseconds for a raw TSC reading; never less than a previous answer.
    pub fn ns_at(&self, tsc: u64) -> u64 {
        let ticks = tsc.saturating_sub(self.base_tsc);
        let ns = (u128::from(ticks) * 1_000_000_000 / u128::from(self.hz.max(1)))
            .min(u128::from(u64::MAX)) as u64;
        let prev = self.last_ns.fetch_max(ns, Ordering::Relaxed);
        if ns < prev {
            self.backwards.fetch_add(1, Ordering::Relaxed);
            prev
        } else {
            ns
        }
    }

    pub fn backwards_seen(&self) -> u64 {
        self.backwards.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrates() {
        // 10 ms window of a 2.5 GHz TSC.
        assert_eq!(tsc_hz(25_000_000, 11_932), Some(2_499_962_286));
        assert_eq!(tsc_hz(0, 11_932), None);
        assert_eq!(tsc_hz(1, 0), None);
        assert_eq!(tsc_hz(u64::MAX, 1), None);
        assert_eq!(tsc_hz(10, 11_932), None);
    }

    #[test]
    fn never_goes_backwards() {
        let c = Clock::new(1000, 1_000_000_000);
        assert_eq!(c.ns_at(1000), 0);
        assert_eq!(c.ns_at(3000), 2000);
        assert_eq!(c.ns_at(2000), 2000, "a TSC that went back is clamped");
        assert_eq!(c.ns_at(500), 2000, "even below the base");
        assert_eq!(c.backwards_seen(), 2);
        assert_eq!(c.ns_at(u64::MAX), 18_446_744_073_709_550_615);
    }
}
