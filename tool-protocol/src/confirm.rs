//! The monitor's table of calls waiting for the operator: a policy rule decided `confirm`,
//! the request went to the host (`omega_wire::msg::ControlMsg::ConfirmRequest`), and the
//! agent is parked until an answer comes or the wait times out.
//!
//! SECURITY: the table fails closed. An answer is taken only for an id that is waiting,
//! once; an answer of another contract version denies the call it names; an answer for
//! an id that is not waiting (unknown, answered already, timed out) is refused and changes
//! nothing; a call nobody answers is denied when its time is up. What the host says the
//! operator decided is only that: an operator control, logged so a verifier sees it, not
//! a guarantee against a hostile host (docs/tools.md, *Operator confirmation*).

use alloc::collections::BTreeMap;

/// Calls waiting for the operator at most; one more is denied at once.
pub const MAX_WAITING: usize = 64;

/// How long a call waits for the operator's answer by default.
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;

/// Why a call could not be put before the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskError {
    /// [`MAX_WAITING`] calls are waiting already.
    Busy,
    /// The id is waiting already (a monitor bug: ids are tickets, never reused).
    Duplicate,
}

/// An answer from the host that decides nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No call with this id is waiting: unknown, answered already, or timed out.
    NotWaiting(u64),
}

/// How a waiting call was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The operator approved: the call goes out.
    Approved,
    /// The operator denied it.
    Denied,
    /// The answer was of another contract version: denied.
    BadVersion,
    /// No answer in time: denied.
    Timeout,
}

impl Verdict {
    /// The name logged with the answer (`CONFIRMATION` entries).
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Denied => "denied",
            Verdict::BadVersion => "bad-version",
            Verdict::Timeout => "timeout",
        }
    }

    /// Only an approval lets the call out.
    pub fn approved(self) -> bool {
        self == Verdict::Approved
    }
}

struct Waiting<T> {
    deadline_ms: u64,
    call: T,
}

/// The calls waiting for the operator, by id, each with what the monitor needs to carry it
/// out (`T`).
pub struct Confirmations<T> {
    waiting: BTreeMap<u64, Waiting<T>>,
    timeout_ms: u64,
}

impl<T> Confirmations<T> {
    /// An empty table whose calls wait `timeout_ms` at most.
    pub fn new(timeout_ms: u64) -> Self {
        Confirmations {
            waiting: BTreeMap::new(),
            timeout_ms,
        }
    }

    /// Puts call `id` before the operator at `now_ms`.
    pub fn ask(&mut self, id: u64, now_ms: u64, call: T) -> Result<(), AskError> {
        if self.waiting.contains_key(&id) {
            return Err(AskError::Duplicate);
        }
        if self.waiting.len() >= MAX_WAITING {
            return Err(AskError::Busy);
        }
        let deadline_ms = now_ms.saturating_add(self.timeout_ms);
        self.waiting.insert(id, Waiting { deadline_ms, call });
        Ok(())
    }

    /// Forgets call `id` (its request could not be sent).
    pub fn cancel(&mut self, id: u64) -> Option<T> {
        self.waiting.remove(&id).map(|w| w.call)
    }

    /// An answer from the host for call `id`: takes the call out (once), or is refused.
    /// The caller decides the [`Verdict`] from the answer (another contract version is
    /// [`Verdict::BadVersion`]).
    pub fn settle(&mut self, id: u64) -> Result<T, Refused> {
        self.waiting
            .remove(&id)
            .map(|w| w.call)
            .ok_or(Refused::NotWaiting(id))
    }

    /// One call whose time is up at `now_ms` (denied: [`Verdict::Timeout`]), if any.
    pub fn expired(&mut self, now_ms: u64) -> Option<(u64, T)> {
        let id = self
            .waiting
            .iter()
            .find(|(_, w)| now_ms >= w.deadline_ms)
            .map(|(&id, _)| id)?;
        self.waiting.remove(&id).map(|w| (id, w.call))
    }

    /// Calls waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// No call is waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_settles_its_call_once() {
        let mut c = Confirmations::new(1000);
        c.ask(1, 0, "a").unwrap();
        c.ask(2, 0, "b").unwrap();
        assert_eq!(c.ask(2, 0, "b"), Err(AskError::Duplicate));
        assert_eq!(c.settle(1), Ok("a"));
        // A duplicated answer, an unknown id: refused, nothing settled.
        assert_eq!(c.settle(1), Err(Refused::NotWaiting(1)));
        assert_eq!(c.settle(9), Err(Refused::NotWaiting(9)));
        assert_eq!(c.len(), 1);
        assert_eq!(c.settle(2), Ok("b"));
        assert!(c.is_empty());
    }

    #[test]
    fn only_an_approval_lets_a_call_out_and_silence_times_out() {
        let mut c = Confirmations::new(1000);
        for v in [Verdict::Denied, Verdict::BadVersion, Verdict::Timeout] {
            assert!(!v.approved(), "{}", v.name());
        }
        assert!(Verdict::Approved.approved());
        c.ask(2, 100, ()).unwrap();
        assert_eq!(c.expired(1099), None);
        assert_eq!(c.expired(1100), Some((2, ())));
        // Once timed out, a late approval is refused.
        assert_eq!(c.settle(2), Err(Refused::NotWaiting(2)));
        assert_eq!(c.expired(u64::MAX), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut c = Confirmations::new(u64::MAX);
        for id in 0..MAX_WAITING as u64 {
            c.ask(id, u64::MAX, ()).unwrap();
        }
        assert_eq!(c.ask(999, 0, ()), Err(AskError::Busy));
        assert_eq!(c.cancel(0), Some(()));
        assert!(c.ask(999, 0, ()).is_ok());
        // Deadlines saturate instead of wrapping.
        assert_eq!(c.expired(u64::MAX - 1), None);
    }
}
