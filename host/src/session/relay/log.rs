//! Log stream: the guest's provenance log entries, stored and fsynced before the Ack.

use std::ops::ControlFlow;

use omega_wire::{Stream, msg::code};
use tracing::warn;

use super::{Inbox, Input, Relay};
use crate::session::SessionEvent;
use crate::session::log_store::LogStore;
use crate::session::send::Shared;

pub(crate) struct LogRelay {
    store: Box<dyn LogStore>,
    /// Bytes stored and acknowledged.
    total: u64,
    /// Storage failed: nothing more is stored (or acknowledged).
    failed: bool,
    /// Frames were lost: nothing more is stored, since the log would have a hole.
    broken: bool,
}

impl LogRelay {
    pub(crate) fn new(store: Box<dyn LogStore>) -> Self {
        LogRelay {
            store,
            total: 0,
            failed: false,
            broken: false,
        }
    }

    fn put_file(&mut self, sh: &Shared, name: &str, bytes: &[u8], done: SessionEvent) {
        if self.failed {
            return;
        }
        match self.store.put_file(name, bytes) {
            Ok(()) => sh.event(done),
            Err(e) => {
                warn!("storing {name}: {e}");
                sh.backend_error(Stream::Log, e.to_string());
                sh.send_error(
                    Stream::Control,
                    code::BACKEND,
                    &format!("storing {name}: {e}"),
                );
            }
        }
    }

    /// Stores a batch of Data frames (the last one's sequence number `last_seq`) with one
    /// fsync, then acknowledges them.
    fn store(&mut self, sh: &Shared, last_seq: u32, batch: &[Vec<u8>]) -> ControlFlow<()> {
        let bytes: usize = batch.iter().map(|b| b.len()).sum();
        if self.failed {
            sh.send_error(
                Stream::Log,
                code::BACKEND,
                "log storage failed earlier; nothing more is stored",
            );
            sh.consumed(Stream::Log, bytes);
            return ControlFlow::Continue(());
        }
        let r = batch
            .iter()
            .try_for_each(|b| self.store.append(b))
            .and_then(|_| self.store.sync());
        match r {
            Ok(()) => {
                self.total += bytes as u64;
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
                self.failed = true;
                warn!("provenance log storage failed: {e}");
                sh.backend_error(Stream::Log, e.to_string());
                sh.send_error(
                    Stream::Log,
                    code::BACKEND,
                    &format!("log storage failed: {e}"),
                );
            }
        }
        sh.consumed(Stream::Log, bytes);
        ControlFlow::Continue(())
    }
}

impl Relay for LogRelay {
    const STREAM: Stream = Stream::Log;

    fn on_input(&mut self, sh: &Shared, input: Input, inbox: &mut Inbox) -> ControlFlow<()> {
        let (mut last_seq, first, gap) = match input {
            Input::File(name, bytes, done) => {
                self.put_file(sh, name, &bytes, done);
                return ControlFlow::Continue(());
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
