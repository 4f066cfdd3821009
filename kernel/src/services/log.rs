//! The Log stream: the monitor's provenance log (`omega-provenance`). Every record is
//! appended here; the log's at-rest byte stream (what `Log::take_unsent` hands out) goes
//! to the host on the Log stream, the verifier key and signed checkpoints go as Control
//! messages, and the host's acknowledgements say how much of it is durably stored.
//!
//! Durability: an entry stays in the outbox until the host has acknowledged it as durably
//! stored (an `Ack` beyond what was sent is refused by the channel). When the outbox is
//! full of unacknowledged entries, the producer blocks in [`LogService::append`] (in
//! `wait_for_ack`), reading the channel for acks, until the host stores more: no record is
//! ever dropped, and a host that stops storing stops the monitor's work, not its log.
//!
//! Resume: when a new launcher attaches (the channel noticed the host's end reopen and
//! shook hands again), its HelloAck says how many bytes of the log it holds durably. The
//! claim is checked against the outbox ([`omega_provenance::Log::resend_from`]: not beyond
//! what was sent, not below what was released, at an entry boundary); accepted, everything
//! after it is sent again and the resume is logged (`LOG_RESUMED`); refused, the host is
//! told, the refusal is logged (`RESUME_REFUSED`) and the Log stays held for the next host.

use alloc::boxed::Box;
use alloc::string::String;

use omega_arch::serial_println;
use omega_kernel::attest::{LOG_KEY_NAME, log_origin};
use omega_kernel::checkpoints::CheckpointSchedule;
use omega_kernel::clock::Clock;
use omega_provenance::entry::MAX_ENTRY;
use omega_provenance::entry::lifecycle;
use omega_provenance::note::Checkpoint;
use omega_provenance::{Action, AppendError, Decision, Log, LogKey, Record};
use omega_wire::Stream;
use omega_wire::msg::ControlMsg;

use super::{HostChannel, control, report_send_failure};
use crate::hw;
use crate::monitor::{Monitor, fatal};

/// Unsent bytes of agents' records that are sent at once; fewer wait for the agents'
/// loop to flush them, which it does every turn.
pub const FLUSH_BATCH: usize = 8 * 1024;

/// Log bytes held until the host acknowledges them (sent or not): one Log credit window, so
/// a host that grants credit and stores promptly never makes a producer wait.
const OUTBOX: usize = 64 * 1024;
const _: () = assert!(OUTBOX >= omega_wire::INITIAL_WINDOW as usize && OUTBOX > MAX_ENTRY);

pub struct LogService<'m> {
    log: Box<Log<OUTBOX>>,
    key: LogKey,
    /// The checkpoint origin: `omega-monitor/<boot id>`.
    origin: String,
    /// When the next periodic checkpoint is due.
    schedule: CheckpointSchedule,
    clock: Option<&'m Clock>,
    /// Target number the next `define_target` gets.
    next_target: u32,
    /// Resume outcomes to log once no record is waiting to be appended (a record made
    /// before must not follow one made later): (decision, name).
    notes: alloc::vec::Vec<(Decision, String)>,
}

impl<'m> LogService<'m> {
    /// Keys the log, announces its verifier key to the host and logs the monitor's start
    /// under this boot's origin.
    pub fn start(m: &'m Monitor, ch: &mut HostChannel) -> Self {
        // SECURITY: no entropy, no key: the monitor refuses to run the channel unlogged.
        let Some(keys) = m.keys.as_ref() else {
            fatal(
                "provenance log",
                "no entropy for the log key; refusing to run unlogged",
            )
        };
        let key = LogKey::from_seed(LOG_KEY_NAME, *keys.log_key)
            .unwrap_or_else(|| fatal("provenance log", "bad log key"));
        let origin = log_origin(&keys.boot_id);
        let vkey = key.verifier().encode();
        serial_println!("omega: provenance log {origin}, key {vkey}");
        control::send(ch, &ControlMsg::LogKey { vkey: &vkey });
        let clock = m.clock.as_ref();
        let mut s = LogService {
            log: Box::new(Log::new(0)),
            key,
            schedule: CheckpointSchedule::monitor(clock.map(hw::clock::now_ns)),
            origin,
            clock,
            next_target: 1,
            notes: alloc::vec::Vec::new(),
        };
        let origin = s.origin.clone();
        s.lifecycle(
            ch,
            lifecycle::LOG_START,
            0,
            Decision::Allow,
            Some(m.info.kernel_sha256),
            Some(origin.as_bytes()),
        );
        s
    }

    /// Nanoseconds on the monitor's clock (`None` without one).
    pub(super) fn now_ns(&self) -> Option<u64> {
        self.clock.map(hw::clock::now_ns)
    }

    /// Whether the monitor has a clock.
    pub fn has_clock(&self) -> bool {
        self.clock.is_some()
    }

    /// Milliseconds on the monitor's clock (0 without one).
    pub fn now_ms(&self) -> u64 {
        self.now_ns().map_or(0, |ns| ns / 1_000_000)
    }

    /// The log's Ed25519 public key (the evidence's `LogKey` claim).
    pub fn public_key(&self) -> [u8; 32] {
        self.key.public()
    }

    /// Appends `r` and sends it to the host (it stays in the outbox until acknowledged).
    pub fn append(&mut self, ch: &mut HostChannel, r: &Record<'_>) {
        // SECURITY: never lose a record; a full outbox is sent (waiting on the host's
        // credit if need be) and, once all of it is sent, acknowledged by the host before
        // the append is retried.
        loop {
            match self.log.append(r) {
                Ok(_) => {
                    self.write_notes();
                    self.flush(ch);
                    return self.checkpoint_if_due(ch);
                }
                Err(AppendError::OutboxFull) if self.log.unsent() > 0 && !ch.log_held() => {
                    self.flush(ch)
                }
                Err(AppendError::OutboxFull) => self.wait_for_ack(ch),
                Err(e) => fatal("provenance log", format_args!("{e:?}")),
            }
        }
    }

    /// Appends `r` without waiting for the host to store anything (sent once
    /// [`FLUSH_BATCH`] bytes are unsent, or at the caller's next [`LogService::flush`]):
    /// `Err(Backpressure)` when
    /// the outbox is full of sent, unacknowledged entries (nothing was appended). Agents'
    /// records go this way, so a slow host parks the agent (the runtime retries on
    /// `records_drained`), not the whole monitor.
    pub fn try_append(
        &mut self,
        ch: &mut HostChannel,
        r: &Record<'_>,
    ) -> Result<(), omega_runtime::Backpressure> {
        loop {
            match self.log.append(r) {
                Ok(_) => {
                    self.write_notes();
                    // Batched: the agents' loop flushes every turn (`flush`), so one
                    // virtio transfer carries many records; under TCG a transfer per
                    // record was 40 % of the monitor's time under load.
                    if self.log.unsent() >= FLUSH_BATCH {
                        self.flush(ch);
                    }
                    self.checkpoint_if_due(ch);
                    return Ok(());
                }
                Err(AppendError::OutboxFull) if self.log.unsent() > 0 && !ch.log_held() => {
                    self.flush(ch)
                }
                Err(AppendError::OutboxFull) => return Err(omega_runtime::Backpressure),
                Err(e) => fatal("provenance log", format_args!("{e:?}")),
            }
        }
    }

    /// Blocks until the host acknowledges more of the log (the producer's wait when the
    /// outbox is full of unacknowledged entries). Messages arriving meanwhile wait in the
    /// channel's bounded queue.
    fn wait_for_ack(&mut self, ch: &mut HostChannel) {
        serial_println!(
            "omega: log: outbox full ({} bytes unacknowledged); waiting for the host to store them",
            self.log.pending()
        );
        loop {
            if let Some(stored) = ch.take_resume() {
                self.on_resume(ch, stored);
            }
            if let Some(stored) = ch.take_log_ack() {
                self.on_ack(stored);
            }
            if self.log.free() >= MAX_ENTRY {
                return;
            }
            match ch.receive() {
                Ok(true) => {}
                Ok(false) => ch.idle(),
                Err(e) => report_send_failure("a credit grant or error report", &e),
            }
        }
    }

    /// Logs a lifecycle event.
    pub fn lifecycle(
        &mut self,
        ch: &mut HostChannel,
        rule: u32,
        target: u32,
        decision: Decision,
        content: Option<[u8; 32]>,
        name: Option<&[u8]>,
    ) {
        let r = self.lifecycle_record(0, rule, target, decision, content, name);
        self.append(ch, &r);
    }

    /// A lifecycle record about `agent` (0: the monitor), stamped now.
    pub fn lifecycle_record<'a>(
        &self,
        agent: u32,
        rule: u32,
        target: u32,
        decision: Decision,
        content: Option<[u8; 32]>,
        name: Option<&'a [u8]>,
    ) -> Record<'a> {
        Record {
            time: self.now_ms(),
            agent,
            action: Action::Lifecycle,
            target,
            decision,
            rule,
            labels: 0,
            content,
            name,
        }
    }

    /// Logs a new target (a bundle file): its number, content digest and name. Returns the
    /// number.
    pub fn define_target(&mut self, ch: &mut HostChannel, sha256: [u8; 32], name: &[u8]) -> u32 {
        let target = self.next_target;
        let r = self.lifecycle_record(
            0,
            lifecycle::DEFINE_TARGET,
            target,
            Decision::Allow,
            Some(sha256),
            Some(name),
        );
        self.append(ch, &r);
        self.next_target += 1;
        target
    }

    /// [`Self::define_target`] for a target without content (a model, tool, source or
    /// agent an agent names), without waiting: see [`Self::try_append`].
    pub fn try_define_target(
        &mut self,
        ch: &mut HostChannel,
        name: &[u8],
    ) -> Result<u32, omega_runtime::Backpressure> {
        let target = self.next_target;
        let r = self.lifecycle_record(
            0,
            lifecycle::DEFINE_TARGET,
            target,
            Decision::Allow,
            None,
            Some(name),
        );
        self.try_append(ch, &r)?;
        self.next_target += 1;
        Ok(target)
    }

    /// Sends every entry not sent yet to the host (they stay in the outbox until it
    /// acknowledges them). If the send fails they are not sent again: the host's stored log
    /// then no longer matches the signed checkpoints, which is what a verifier detects.
    pub fn flush(&mut self, ch: &mut HostChannel) {
        if let Some(stored) = ch.take_resume() {
            self.on_resume(ch, stored);
        }
        // Held after a reconnect until a resume is accepted: the entries wait in the outbox.
        if self.log.unsent() == 0 || ch.log_held() {
            return;
        }
        let mut buf = alloc::vec![0u8; self.log.unsent()];
        let n = self.log.take_unsent(&mut buf);
        if let Err(e) = ch.send(Stream::Log, &buf[..n]) {
            report_send_failure("log entries", &e);
        }
    }

    /// Flushes and sends a signed checkpoint of the whole log (origin: this boot's).
    pub fn checkpoint(&mut self, ch: &mut HostChannel) {
        self.flush(ch);
        let size = self.log.size();
        let note = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.log.root(),
        }
        .sign(&self.key);
        self.log.checkpoint_emitted();
        self.schedule.signed(size, self.now_ns());
        control::send(ch, &ControlMsg::Checkpoint { note: &note });
    }

    /// Sends a checkpoint if the periodic one is due (`omega_kernel::checkpoints`): after
    /// appends, and from the service loop, so entries older than the period get one even
    /// when no more entries follow.
    pub fn checkpoint_if_due(&mut self, ch: &mut HostChannel) {
        self.write_notes();
        if self.schedule.due(self.log.size(), self.now_ns()) {
            self.checkpoint(ch);
        }
    }

    /// A new host (after a reconnect) holds the first `stored` bytes of the log. SECURITY:
    /// the claim is checked before anything is released or sent: beyond the bytes sent, below
    /// what an earlier host acknowledged, or inside an entry, it is refused and the Log
    /// stays held; accepted, every entry after it is sent again, then a fresh checkpoint.
    pub fn on_resume(&mut self, ch: &mut HostChannel, stored: u64) {
        match self.log.resend_from(stored) {
            Ok(()) => {
                ch.resume_accepted(stored);
                serial_println!(
                    "omega: log: the host reconnected holding {stored} bytes of the log; sending the {} bytes after them again",
                    self.log.unsent()
                );
                self.notes
                    .push((Decision::Allow, alloc::format!("resumed at {stored}")));
                self.flush(ch);
                self.checkpoint(ch);
            }
            Err(e) => {
                serial_println!("omega: log: resume refused: {e}");
                let why = alloc::format!("resume refused: {e}");
                if let Err(e) = ch.resume_refused(&why) {
                    report_send_failure("a resume refusal", &e);
                }
                let mut name = why;
                name.truncate(omega_provenance::entry::MAX_NAME);
                self.notes.push((Decision::Deny, name));
            }
        }
    }

    /// Appends the resume outcomes waiting to be logged, as far as the outbox has room
    /// (never waiting: the rest stay for the next call).
    fn write_notes(&mut self) {
        while let Some((decision, name)) = self.notes.first() {
            let rule = if *decision == Decision::Allow {
                lifecycle::LOG_RESUMED
            } else {
                lifecycle::RESUME_REFUSED
            };
            let r = self.lifecycle_record(0, rule, 0, *decision, None, Some(name.as_bytes()));
            match self.log.append(&r) {
                Ok(_) => {
                    self.notes.remove(0);
                }
                Err(_) => return,
            }
        }
    }

    /// The host has durably stored `stored` bytes of the log: they leave the outbox.
    pub fn on_ack(&mut self, stored: u64) {
        // The channel refused acks beyond what it sent on Log; the log checks again against
        // its own bytes (the Log stream carries nothing else in production).
        if let Err(e) = self.log.acknowledge(stored) {
            serial_println!("omega: log: acknowledgement refused: {e}");
        }
    }

    /// Whether the host has stored every entry appended so far.
    pub fn all_stored(&self) -> bool {
        self.log.pending() == 0
    }

    pub fn entries(&self) -> u64 {
        self.log.size()
    }

    pub fn acked(&self) -> u64 {
        self.log.acked()
    }
}
