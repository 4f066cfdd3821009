//! The Log stream: the monitor's provenance log (`omega-provenance`). Every record is
//! appended here; the log's at-rest byte stream (what `Log::drain` produces) goes to the
//! host on the Log stream, the verifier key and signed checkpoints go as Control messages,
//! and the host's acknowledgements say how much of it is durably stored.

use alloc::boxed::Box;

use omega_arch::serial_println;
use omega_kernel::clock::Clock;
use omega_provenance::entry::lifecycle;
use omega_provenance::{Action, AppendError, Decision, Log, LogKey, Record};
use omega_wire::Stream;
use omega_wire::msg::ControlMsg;

use super::{HostChannel, control, report_send_failure};
use crate::hw;
use crate::monitor::{Monitor, fatal};

/// Origin (and key name) of the monitor's log.
pub const LOG_ORIGIN: &str = "omega-monitor";
/// Log bytes buffered before they must go to the host.
const OUTBOX: usize = 16 * 1024;

pub struct LogService<'m> {
    log: Box<Log<OUTBOX>>,
    key: LogKey,
    clock: Option<&'m Clock>,
    /// Target number the next `define_target` gets.
    next_target: u32,
    /// Log bytes sent to the host, and acknowledged by it as durably stored.
    sent: u64,
    acked: u64,
}

impl<'m> LogService<'m> {
    /// Keys the log, announces its verifier key to the host and logs the monitor's start.
    pub fn start(m: &'m Monitor, ch: &mut HostChannel) -> Self {
        // SECURITY: no entropy, no key: the monitor refuses to run the channel unlogged.
        let Some(seed) = m.log_key.as_deref().copied() else {
            fatal(
                "provenance log",
                "no entropy for the log key; refusing to run unlogged",
            )
        };
        let key = LogKey::from_seed(LOG_ORIGIN, seed)
            .unwrap_or_else(|| fatal("provenance log", "bad log key"));
        let vkey = key.verifier().encode();
        serial_println!("omega: provenance log key {vkey}");
        control::send(ch, &ControlMsg::LogKey { vkey: &vkey });
        let mut s = LogService {
            log: Box::new(Log::new(0)),
            key,
            clock: m.clock.as_ref(),
            next_target: 1,
            sent: 0,
            acked: 0,
        };
        let start = Record {
            time: s.now_ms(),
            agent: 0,
            action: Action::Lifecycle,
            target: 0,
            decision: Decision::Allow,
            rule: lifecycle::LOG_START,
            labels: 0,
            content: Some(m.info.kernel_sha256),
            name: Some(LOG_ORIGIN.as_bytes()),
        };
        s.append(ch, &start);
        s.flush(ch);
        s
    }

    /// Milliseconds on the monitor's clock (0 without one).
    fn now_ms(&self) -> u64 {
        self.clock
            .map(|c| hw::clock::now_ns(c) / 1_000_000)
            .unwrap_or(0)
    }

    /// Appends `r`.
    pub fn append(&mut self, ch: &mut HostChannel, r: &Record<'_>) {
        // SECURITY: never lose a record; a full outbox is drained (waiting on the host's
        // credit if need be) before the append is retried.
        loop {
            match self.log.append(r) {
                Ok(_) => return,
                Err(AppendError::OutboxFull) => self.flush(ch),
                Err(e) => fatal("provenance log", format_args!("{e:?}")),
            }
        }
    }

    /// Logs a new target (a bundle file): its number, content digest and name.
    pub fn define_target(&mut self, ch: &mut HostChannel, sha256: [u8; 32], name: &[u8]) {
        let r = Record {
            time: self.now_ms(),
            agent: 0,
            action: Action::Lifecycle,
            target: self.next_target,
            decision: Decision::Allow,
            rule: lifecycle::DEFINE_TARGET,
            labels: 0,
            content: Some(sha256),
            name: Some(name),
        };
        self.next_target += 1;
        self.append(ch, &r);
    }

    /// Sends every pending entry to the host. If the send fails the bytes are gone from
    /// the outbox: the host's stored log then no longer matches the signed checkpoints,
    /// which is exactly what a verifier detects.
    pub fn flush(&mut self, ch: &mut HostChannel) {
        if self.log.pending() == 0 {
            return;
        }
        let mut buf = alloc::vec![0u8; self.log.pending()];
        let n = self.log.drain(&mut buf);
        match ch.send(Stream::Log, &buf[..n]) {
            Ok(()) => self.sent += n as u64,
            Err(e) => report_send_failure("log entries", &e),
        }
    }

    /// Flushes and sends a signed checkpoint of the whole log.
    pub fn checkpoint(&mut self, ch: &mut HostChannel) {
        self.flush(ch);
        let note = self.log.checkpoint(&self.key);
        control::send(ch, &ControlMsg::Checkpoint { note: &note });
    }

    /// The host has durably stored `stored` bytes of the log.
    pub fn on_ack(&mut self, stored: u64) {
        self.acked = self.acked.max(stored);
    }

    /// Whether the host has stored everything sent so far.
    pub fn all_stored(&self) -> bool {
        self.acked >= self.sent
    }

    pub fn entries(&self) -> u64 {
        self.log.size()
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }
}
