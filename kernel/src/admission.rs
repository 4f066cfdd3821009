//! Which agents the heap can hold: each agent is admitted against the heap that was free
//! when the agents started, for its whole memory limit (what it may grow to) plus the
//! runtime's own state, and a reserve stays for the monitor. An agent that does not fit is
//! refused at start (logged `AGENT_REFUSED`, code `heap`) instead of the monitor running
//! out of heap later while agents grow.
//!
//! What is not reserved: the per-agent buffers the runtime fills only while agents talk
//! (an inbox of at most 16 messages of ≤ 64 KiB, a held response of ≤ 256 KiB, a value
//! stack of ≤ 256 KiB). Reserving their worst case (≈ 1.6 MiB per agent) would cut a 1 GiB
//! guest to a few hundred agents; the reserve below covers ordinary traffic, and an
//! exhausted heap stops the monitor (`alloc` failure is fatal), never corrupts it.

/// Heap kept for the monitor whatever the agents commit: the channel's bounded buffers
/// (≤ 5 × (2 MiB + 64 KiB) while the host fills every stream, `omega_bundle::limits`), the
/// log's outbox, the tools and inference queues, the agents' messages in flight.
pub const MONITOR_RESERVE: u64 = 16 << 20;

/// The runtime's state per agent besides its linear memory: store, instance, the parked
/// call's stack, session, inbox queue, names. Measured 9.4 KiB natively and about 11 KiB in
/// the image (`docs/agents.md`); reserved with room.
pub const AGENT_OVERHEAD: u64 = 32 << 10;

/// Commitments against the heap free when the agents start.
#[derive(Debug, Clone)]
pub struct Admission {
    budget: u64,
    committed: u64,
}

impl Admission {
    /// `free`: heap bytes free before the first agent is instantiated.
    pub fn new(free: u64) -> Self {
        Admission {
            budget: free.saturating_sub(MONITOR_RESERVE),
            committed: 0,
        }
    }

    /// Commits an agent whose linear memory may grow to `memory_limit` bytes; `false` (and
    /// nothing committed) when it does not fit.
    pub fn admit(&mut self, memory_limit: u64) -> bool {
        let need = memory_limit.saturating_add(AGENT_OVERHEAD);
        match self.committed.checked_add(need) {
            Some(total) if total <= self.budget => {
                self.committed = total;
                true
            }
            _ => false,
        }
    }

    /// Bytes committed so far.
    pub fn committed(&self) -> u64 {
        self.committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_admitted_while_their_limits_fit_beside_the_reserve() {
        const MIB: u64 = 1 << 20;
        // 1 GiB guest: thousands of one-page agents fit.
        let mut a = Admission::new(1000 * MIB);
        let n = (0..20_000).take_while(|_| a.admit(64 << 10)).count();
        assert_eq!(n as u64, (1000 - 16) * MIB / ((64 << 10) + AGENT_OVERHEAD));
        assert!(n >= 8192);
        // Nothing is committed by a refusal; a smaller agent may still fit.
        let before = a.committed();
        assert!(!a.admit(4 * MIB));
        assert_eq!(a.committed(), before);
        // The default 128 MiB guest with the bundle in: 4 MiB agents, about 23.
        let mut a = Admission::new(110 * MIB);
        let n = (0..100).take_while(|_| a.admit(4 * MIB)).count();
        assert_eq!(n, 23);
        // Hostile sizes: no overflow, refused.
        let mut a = Admission::new(u64::MAX);
        assert!(!a.admit(u64::MAX));
        assert!(!Admission::new(MIB).admit(0));
    }
}
