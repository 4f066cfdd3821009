//! When the monitor signs a log checkpoint: every [`EVERY_ENTRIES`] entries or
//! [`EVERY_NS`] of monitor time, whichever comes first (and at the end of a run), so a host
//! that withholds the newest entries can hide at most that much (docs/provenance.md).

/// Entries between two periodic checkpoints at most.
pub const EVERY_ENTRIES: u64 = 256;
/// Monitor time between two periodic checkpoints at most, when entries were added.
pub const EVERY_NS: u64 = 1_000_000_000;

/// The periodic-checkpoint policy: what was last signed, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSchedule {
    every_entries: u64,
    every_ns: u64,
    /// Tree size of the last checkpoint signed.
    signed_size: u64,
    /// Monitor time of the last checkpoint signed (or of the start); `None` without a clock.
    signed_at: Option<u64>,
}

impl CheckpointSchedule {
    /// The monitor's policy ([`EVERY_ENTRIES`], [`EVERY_NS`]), starting at `now_ns`.
    pub fn monitor(now_ns: Option<u64>) -> Self {
        Self::new(EVERY_ENTRIES, EVERY_NS, now_ns)
    }

    pub fn new(every_entries: u64, every_ns: u64, now_ns: Option<u64>) -> Self {
        CheckpointSchedule {
            every_entries: every_entries.max(1),
            every_ns,
            signed_size: 0,
            signed_at: now_ns,
        }
    }

    /// Whether a checkpoint is due for a log of `size` entries at `now_ns`: something new
    /// since the last one, and either `every_entries` new entries or `every_ns` elapsed.
    /// Without a clock only the entry count applies.
    pub fn due(&self, size: u64, now_ns: Option<u64>) -> bool {
        let new = size.saturating_sub(self.signed_size);
        if new == 0 {
            return false;
        }
        if new >= self.every_entries {
            return true;
        }
        match (now_ns, self.signed_at) {
            (Some(now), Some(at)) => now.saturating_sub(at) >= self.every_ns,
            _ => false,
        }
    }

    /// A checkpoint of `size` entries was signed at `now_ns`.
    pub fn signed(&mut self, size: u64, now_ns: Option<u64>) {
        self.signed_size = size;
        self.signed_at = now_ns.or(self.signed_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn due_after_n_entries_without_time_passing() {
        let mut s = CheckpointSchedule::monitor(Some(0));
        assert!(!s.due(0, Some(0)));
        assert!(!s.due(EVERY_ENTRIES - 1, Some(1)));
        assert!(s.due(EVERY_ENTRIES, Some(1)));
        s.signed(EVERY_ENTRIES, Some(1));
        assert!(!s.due(EVERY_ENTRIES, Some(2)));
        assert!(!s.due(2 * EVERY_ENTRIES - 1, Some(2)));
        assert!(s.due(2 * EVERY_ENTRIES, Some(2)));
    }

    #[test]
    fn due_after_t_with_new_entries_only() {
        let mut s = CheckpointSchedule::monitor(Some(5 * MS));
        // Time alone does not make one due: nothing new to sign.
        assert!(!s.due(0, Some(10_000 * MS)));
        assert!(!s.due(1, Some(5 * MS + EVERY_NS - 1)));
        assert!(s.due(1, Some(5 * MS + EVERY_NS)));
        s.signed(1, Some(5 * MS + EVERY_NS));
        assert!(!s.due(1, Some(100 * EVERY_NS)));
        assert!(!s.due(2, Some(5 * MS + 2 * EVERY_NS - 1)));
        assert!(s.due(2, Some(5 * MS + 2 * EVERY_NS)));
    }

    #[test]
    fn without_a_clock_only_the_count_applies() {
        let mut s = CheckpointSchedule::new(3, EVERY_NS, None);
        assert!(!s.due(2, None));
        assert!(s.due(3, None));
        s.signed(3, None);
        assert!(!s.due(5, None));
        // A clock that appears later starts the timer; it does not make one due at once.
        s.signed(5, Some(7));
        assert!(!s.due(6, Some(7 + EVERY_NS - 1)));
        assert!(s.due(6, Some(7 + EVERY_NS)));
    }

    #[test]
    fn a_clock_going_backwards_delays_but_never_panics() {
        let s = CheckpointSchedule::monitor(Some(10 * EVERY_NS));
        assert!(!s.due(1, Some(0)));
        assert!(s.due(EVERY_ENTRIES, Some(0)));
        // Zero is read as one: a checkpoint for every entry, never a division by zero.
        let z = CheckpointSchedule::new(0, 0, None);
        assert!(z.due(1, None));
    }
}
