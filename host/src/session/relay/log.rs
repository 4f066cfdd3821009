//! Log stream: the guest's provenance log entries, stored and fsynced before the Ack.

use std::ops::ControlFlow;

use omega_provenance::entry::{DecodeError, Entry};
use omega_wire::{Stream, msg::code};
use tracing::{error, warn};

use super::{Inbox, Input, Relay, Stored};
use crate::session::SessionEvent;
use crate::session::log_store::{CARDS_DIR, EVIDENCE_DIR, LogStore};
use crate::session::send::Shared;

pub(crate) struct LogRelay {
    store: Box<dyn LogStore>,
    /// Bytes stored and acknowledged.
    total: u64,
    /// Where the durable stream's entries end.
    entries: EntryEnds,
    /// Storage failed: nothing more is stored (or acknowledged).
    failed: bool,
    /// Frames were lost: nothing more is stored, since the log would have a hole.
    broken: bool,
}

/// Follows the log's byte stream (whole and partial `omega-provenance` entries, as the
/// guest's `Log::drain` produces it) to know where its last whole entry ends.
#[derive(Default)]
struct EntryEnds {
    /// Bytes of the stream after the last whole entry (at most one entry's worth).
    partial: Vec<u8>,
    /// Length of the stream up to the end of its last whole entry.
    whole: u64,
    /// The stream stopped decoding as entries: `whole` no longer moves.
    lost: bool,
}

impl EntryEnds {
    fn push(&mut self, bytes: &[u8]) {
        if self.lost {
            return;
        }
        self.partial.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            match Entry::decode(&self.partial[at..]) {
                Ok((_, n)) => at += n,
                Err(DecodeError::Truncated) => break,
                Err(_) => {
                    self.lost = true;
                    break;
                }
            }
        }
        self.whole += at as u64;
        self.partial.drain(..at);
    }
}

impl LogRelay {
    pub(crate) fn new(store: Box<dyn LogStore>) -> Self {
        // A reopened log continues after the whole entries it holds: Acks count from the
        // log's first byte (protocol v2).
        let held = store.stored();
        LogRelay {
            store,
            total: held,
            entries: EntryEnds {
                whole: held,
                ..EntryEnds::default()
            },
            failed: false,
            broken: false,
        }
    }

    fn put_file(&mut self, sh: &Shared, to: Stored, bytes: &[u8], done: SessionEvent) {
        if self.failed {
            return;
        }
        let (stored, name) = match &to {
            Stored::Beside(name) => (self.store.put_file(name, bytes), name.to_string()),
            Stored::Evidence(file) => (
                self.store.put_evidence(file, bytes),
                format!("{EVIDENCE_DIR}/{file}"),
            ),
            Stored::Card(file) => (
                self.store.put_card(file, bytes),
                format!("{CARDS_DIR}/{file}"),
            ),
        };
        match stored {
            Ok(()) => sh.event(done),
            Err(e) => self.fail(sh, format!("storing {name}: {e}")),
        }
    }

    /// Storage failed (disk full, I/O error): cut the log back to its last whole entry,
    /// tell the guest and the operator, and end the session, so that the run stops instead
    /// of the guest waiting forever for an Ack that cannot come.
    fn fail(&mut self, sh: &Shared, why: String) {
        self.failed = true;
        // SECURITY: a verifier reads the file as a sequence of entries; a torn last entry
        // would make the whole log unreadable. Acknowledged bytes of an entry that is not
        // whole are cut too: the guest keeps an entry until all of it is acknowledged.
        let kept = if self.entries.lost {
            self.total
        } else {
            self.entries.whole
        };
        let message = match self.store.truncate(kept) {
            Ok(()) => format!("{why}; the log was cut back to {kept} bytes (whole entries)"),
            Err(e) => format!("{why}; cutting the log back to {kept} bytes failed too: {e}"),
        };
        error!("provenance log storage failed: {message}");
        sh.backend_error(Stream::Log, message.clone());
        sh.send_error(
            Stream::Log,
            code::BACKEND,
            &format!("log storage failed: {why}"),
        );
        sh.event(SessionEvent::LogStorageFailed { message, kept });
        sh.shut_down();
    }

    /// Stores a batch of Data frames (the last one's sequence number `last_seq`) with one
    /// fsync, then acknowledges them.
    fn store(&mut self, sh: &Shared, last_seq: u32, batch: &[Vec<u8>]) -> ControlFlow<()> {
        let bytes: usize = batch.iter().map(|b| b.len()).sum();
        if self.failed {
            return ControlFlow::Break(());
        }
        let r = batch
            .iter()
            .try_for_each(|b| self.store.append(b))
            .and_then(|_| self.store.sync());
        match r {
            Ok(()) => {
                self.total += bytes as u64;
                batch.iter().for_each(|b| self.entries.push(b));
                let total = self.total;
                // SECURITY: the Ack goes out only after sync() returned: a host crash cannot
                // lose anything the guest was told is stored.
                if sh.send_with(|enc, o| enc.ack(last_seq, total, o)).is_err() {
                    return ControlFlow::Break(());
                }
                sh.event(SessionEvent::LogStored {
                    seq: last_seq,
                    total,
                });
            }
            Err(e) => {
                warn!("provenance log storage failed: {e}");
                self.fail(sh, e.to_string());
                return ControlFlow::Break(());
            }
        }
        sh.consumed(Stream::Log, bytes);
        ControlFlow::Continue(())
    }
}

impl Relay for LogRelay {
    fn stream(&self) -> Stream {
        Stream::Log
    }

    fn on_input(&mut self, sh: &Shared, input: Input, inbox: &mut Inbox) -> ControlFlow<()> {
        let (mut last_seq, first, gap) = match input {
            Input::File(to, bytes, done) => {
                self.put_file(sh, to, &bytes, done);
                return if self.failed {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                };
            }
            Input::Close => return ControlFlow::Continue(()),
            Input::Data {
                header,
                payload,
                gap,
            } => (header.seq, payload, gap),
        };
        self.broken |= gap;
        if self.broken {
            sh.send_error(
                Stream::Log,
                code::SEQUENCE,
                "log frames were lost; nothing more is stored",
            );
            sh.consumed(Stream::Log, first.len());
            return ControlFlow::Continue(());
        }
        // Batch the data that has queued up (stopping at a file, which must wait for this
        // batch, and at a gap): one fsync covers them all.
        let mut batch = vec![first];
        while let Some(more) = inbox.try_recv() {
            match more {
                Input::Data {
                    header,
                    payload,
                    gap: false,
                } => {
                    last_seq = header.seq;
                    batch.push(payload);
                }
                other => {
                    inbox.put_back(other);
                    break;
                }
            }
        }
        self.store(sh, last_seq, &batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_provenance::entry::MAX_ENTRY;
    use omega_provenance::{Action, Decision};

    fn entry(seq: u64, name: Option<&[u8]>) -> Vec<u8> {
        let e = Entry {
            seq,
            dt: 5,
            agent: 0,
            action: Action::Lifecycle,
            target: 0,
            decision: Decision::Allow,
            rule: 1,
            labels: 0,
            content: Some([7; 32]),
            name,
        };
        let mut out = [0u8; MAX_ENTRY];
        let n = e.encode(&mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn whole_entry_ends_are_found_across_any_split() {
        let stream: Vec<u8> = [
            entry(0, Some(b"omega-monitor")),
            entry(1, None),
            entry(2, None),
        ]
        .concat();
        let ends = {
            let (a, b) = (entry(0, Some(b"omega-monitor")).len(), entry(1, None).len());
            [0, a, a + b, stream.len()]
        };
        for split in 0..=stream.len() {
            let mut e = EntryEnds::default();
            e.push(&stream[..split]);
            let expect = *ends.iter().rev().find(|&&x| x <= split).unwrap() as u64;
            assert_eq!(e.whole, expect, "split at {split}");
            e.push(&stream[split..]);
            assert_eq!(e.whole, stream.len() as u64);
            assert!(!e.lost && e.partial.is_empty());
        }
    }

    #[test]
    fn a_stream_that_is_not_entries_stops_moving() {
        let mut e = EntryEnds::default();
        e.push(&entry(0, None));
        let w = e.whole;
        e.push(&[0xff; 40]);
        assert!(e.lost);
        assert_eq!(e.whole, w);
    }
}
