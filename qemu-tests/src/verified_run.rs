//! A bundle run to completion in the real image through the launcher's session, with its
//! stored log verified and decoded: what the agent tests read their results from (the
//! monitor's console summary per agent, every log entry with its names resolved, and the
//! events the launcher's session saw).

use std::path::Path;
use std::time::Duration;

use omega_host::SessionConfig;
use omega_host::session::SessionEvent;
use omega_provenance::entry::{EntryIter, lifecycle};
use omega_provenance::{Action, Decision};

use crate::{Boot, EXIT_SUCCESS, Outcome};

/// One entry of the verified log, owned.
#[derive(Debug, Clone)]
pub struct Logged {
    pub agent: u32,
    pub action: Action,
    pub target: u32,
    pub decision: Decision,
    pub rule: u32,
    pub labels: u64,
    pub name: Vec<u8>,
    pub content: Option<[u8; 32]>,
}

/// What a run left: the console, the verified stored log's entries and the session's events.
pub struct Run {
    pub out: Outcome,
    pub entries: Vec<Logged>,
    pub events: Vec<SessionEvent>,
}

/// A policy decision with its names resolved through the log's own definitions:
/// (agent, action, target, decision, rule).
pub type Decided = (String, Action, String, Decision, String);

impl Run {
    /// Id of the lifecycle definition (`DEFINE_*`) of `name`.
    pub fn defined(&self, kind: u32, name: &str) -> Option<u32> {
        self.entries
            .iter()
            .find(|e| e.action == Action::Lifecycle && e.rule == kind && e.name == name.as_bytes())
            .map(|e| e.target)
    }

    /// The name the log's definition of `kind` gives id `id` (`#id` when it has none).
    pub fn name_of(&self, kind: u32, id: u32) -> String {
        self.entries
            .iter()
            .find(|e| e.action == Action::Lifecycle && e.rule == kind && e.target == id)
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .unwrap_or_else(|| format!("#{id}"))
    }

    /// Every policy decision (not lifecycle) of `agent`, in log order, with names.
    pub fn decisions_of(&self, agent: &str) -> Vec<Decided> {
        let Some(id) = self.defined(lifecycle::DEFINE_AGENT, agent) else {
            return Vec::new();
        };
        self.entries
            .iter()
            .filter(|e| e.agent == id && e.action != Action::Lifecycle)
            .map(|e| {
                (
                    agent.to_string(),
                    e.action,
                    self.name_of(lifecycle::DEFINE_TARGET, e.target),
                    e.decision,
                    self.name_of(lifecycle::DEFINE_RULE, e.rule),
                )
            })
            .collect()
    }

    /// The decisions on `action` of `agent` on `target`, in log order: (decision, rule
    /// name, labels). Empty when the log defines neither name.
    pub fn decisions_on(
        &self,
        action: Action,
        agent: &str,
        target: &str,
    ) -> Vec<(Decision, String, u64)> {
        let (Some(a), Some(t)) = (
            self.defined(lifecycle::DEFINE_AGENT, agent),
            self.defined(lifecycle::DEFINE_TARGET, target),
        ) else {
            return Vec::new();
        };
        self.entries
            .iter()
            .filter(|e| e.action == action && e.agent == a && e.target == t)
            .map(|e| {
                (
                    e.decision,
                    self.name_of(lifecycle::DEFINE_RULE, e.rule),
                    e.labels,
                )
            })
            .collect()
    }

    /// The monitor's console summary line for `agent` (panics when there is none).
    pub fn summary(&self, agent: &str) -> String {
        let prefix = format!("omega: agent summary: {agent} ");
        self.out
            .serial
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no summary for {agent}\n{}", self.out))
            .to_string()
    }

    /// `agent` exited 0: every step of its script returned what it must.
    #[track_caller]
    pub fn assert_passed(&self, agent: &str) {
        let s = self.summary(agent);
        assert!(s.contains("status=exited 0 "), "{s}\n{}", self.out);
    }
}

/// Runs the bundle in `bundle_dir` on `image` until the monitor shuts down (at most
/// `timeout`), with the session's files in `work`; asserts a clean exit and a stored log
/// that verifies against the last checkpoint, every entry covered.
pub fn run_bundle(image: &Path, bundle_dir: &Path, work: &Path, timeout: Duration) -> Run {
    let bundle = omega_host::bundle::Bundle::read(bundle_dir).expect("the bundle reads");
    let boot = Boot::new(image).timeout(timeout);
    let (out, events) = crate::deliver_bundle(boot, work, bundle).expect("the boot runs");
    verified(out, events, work)
}

/// Boots `boot` with the launcher's session serving `config` (its channel socket in
/// `log_dir`, where `config`'s log store must store the log) until the monitor shuts down;
/// asserts what [`run_bundle`] asserts.
pub fn run_session(boot: Boot, log_dir: &Path, config: SessionConfig) -> Run {
    let (vm, session) = crate::boot_with_session(boot, &log_dir.join("channel.sock"), config)
        .expect("the boot starts");
    let out = vm.finish().expect("the boot runs");
    verified(out, session.close(), log_dir)
}

/// A finished run's outcome and session events: a clean exit, a shutdown with status 0 and
/// the log stored in `log_dir` verified and decoded.
fn verified(out: Outcome, events: Vec<SessionEvent>, log_dir: &Path) -> Run {
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::Shutdown { status: 0 })),
        "{events:?}"
    );
    let (cp, stored) = crate::verify_stored_log(&events, log_dir);
    let mut entries = Vec::new();
    for e in EntryIter::new(&stored) {
        let (_, entry, _) = e.expect("a verified log decodes");
        entries.push(Logged {
            agent: entry.agent,
            action: entry.action,
            target: entry.target,
            decision: entry.decision,
            rule: entry.rule,
            labels: entry.labels,
            name: entry.name.unwrap_or_default().to_vec(),
            content: entry.content,
        });
    }
    assert_eq!(entries.len() as u64, cp.size, "{out}");
    Run {
        out,
        entries,
        events,
    }
}
