//! Per-agent session state kept by the monitor: context labels and fixed-window counters.

use crate::LabelSet;
use crate::eval::{Decision, Effect, Request, State};
use crate::format::{MAX_LIMITS, Policy};

/// One agent's session: the labels its context carries and, per rate limit, the current
/// fixed window (`now / window_secs`) and how many allowed actions it has seen.
#[derive(Debug, Clone)]
pub struct Session {
    labels: LabelSet,
    windows: [(u64, u32); MAX_LIMITS],
    counts: [u32; MAX_LIMITS],
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A fresh session: no labels, no counts.
    pub const fn new() -> Self {
        Session {
            labels: 0,
            windows: [(0, 0); MAX_LIMITS],
            counts: [0; MAX_LIMITS],
        }
    }

    /// Labels the context carries.
    pub fn labels(&self) -> LabelSet {
        self.labels
    }

    /// The state to evaluate against at time `now` (seconds): counts of expired windows are 0.
    pub fn state(&mut self, policy: &Policy<'_>, now: u64) -> State<'_> {
        for (i, limit) in policy.limits.iter().enumerate().take(MAX_LIMITS) {
            let window = now / u64::from(limit.window_secs.max(1));
            if let (Some(w), Some(c)) = (self.windows.get(i), self.counts.get_mut(i)) {
                *c = if w.0 == window { w.1 } else { 0 };
            }
        }
        State {
            labels: self.labels,
            counts: &self.counts,
        }
    }

    /// Records that a decided request was carried out: for `allow`, and for `confirm` once
    /// the operator approved it. Takes on the decision's labels and counts the action against
    /// every matching rate limit. A `deny` changes nothing.
    pub fn record(
        &mut self,
        policy: &Policy<'_>,
        req: &Request<'_>,
        decision: &Decision,
        now: u64,
    ) {
        if decision.effect == Effect::Deny {
            return;
        }
        self.labels |= decision.labels;
        for (i, limit) in policy.limits.iter().enumerate().take(MAX_LIMITS) {
            if !policy.limit_applies(limit, req) {
                continue;
            }
            let window = now / u64::from(limit.window_secs.max(1));
            if let Some(w) = self.windows.get_mut(i) {
                if w.0 != window {
                    *w = (window, 0);
                }
                w.1 = w.1.saturating_add(1);
            }
        }
    }

    /// A message was delivered to this agent: its labels travel with it.
    pub fn receive(&mut self, labels: LabelSet) {
        self.labels |= labels;
    }
}
