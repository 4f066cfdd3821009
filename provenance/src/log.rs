//! The monitor side of the log: frontier + bounded outbox. Nothing is ever dropped: an entry
//! stays in the outbox until the host has acknowledged it as durably stored
//! ([`Log::take_unsent`] sends, [`Log::acknowledge`] releases), and when the outbox is full
//! [`Log::append`] refuses (and changes nothing): the caller must block the agent until the
//! host acknowledges more.

use crate::entry::{Action, Decision, Entry, MAX_ENTRY, MAX_NAME};
use crate::merkle::{Frontier, Hash, leaf_hash};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// SECURITY: backpressure. The entry was NOT recorded and the interaction must not
    /// proceed; block the agent and retry after [`Log::drain`].
    #[error("provenance outbox full: drain before appending")]
    OutboxFull,
    #[error("monitor time went backwards")]
    TimeWentBackwards,
    #[error("name only allowed on lifecycle entries, 1..={MAX_NAME} bytes")]
    BadName,
    #[error("log is full")]
    LogFull,
}

/// An acknowledgement the log cannot believe (it is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// SECURITY: the host claims to have stored bytes it was never sent; believing it would
    /// release entries nobody stored.
    #[error("acknowledges {acked} bytes, only {sent} were sent")]
    BeyondSent { acked: u64, sent: u64 },
    /// Less than an earlier acknowledgement: storage cannot shrink.
    #[error("acknowledges {acked} bytes, {earlier} were acknowledged before")]
    Backwards { acked: u64, earlier: u64 },
    /// SECURITY: a new host resuming inside an entry would splice a torn entry into the
    /// stored log; entries are released and resent whole.
    #[error("resumes at byte {at}, inside an entry (entries end at {before} and {after})")]
    MidEntry { at: u64, before: u64, after: u64 },
}

/// What the monitor records about one interaction (ids are interned per log; see
/// [`crate::entry::lifecycle`]).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Monotonic monitor time (ticks, e.g. ms since boot).
    pub time: u64,
    pub agent: u32,
    pub action: Action,
    pub target: u32,
    pub decision: Decision,
    pub rule: u32,
    pub labels: u64,
    pub content: Option<[u8; 32]>,
    pub name: Option<&'a [u8]>,
}

/// Result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub leaf_hash: Hash,
    pub encoded_len: usize,
    /// `checkpoint_every` entries have been appended since the last checkpoint.
    pub checkpoint_due: bool,
}

/// Append-only provenance log with an outbox of `CAP` bytes.
pub struct Log<const CAP: usize> {
    frontier: Frontier,
    last_time: u64,
    outbox: [u8; CAP],
    /// Ring position of the oldest unacknowledged byte.
    head: usize,
    /// Bytes held: sent and unacknowledged (the first `sent`), then not yet sent.
    len: usize,
    sent: usize,
    /// Bytes of the stream released since the log began: whole entries only, so the
    /// outbox always starts at an entry.
    acked: u64,
    /// The highest acknowledgement of the current host (may end inside an entry, which
    /// then stays held until all of it is acknowledged).
    host_acked: u64,
    checkpoint_every: u64,
    since_checkpoint: u64,
}

impl<const CAP: usize> Log<CAP> {
    /// `checkpoint_every` = N (0 = only on demand).
    pub fn new(checkpoint_every: u64) -> Self {
        Log {
            frontier: Frontier::new(),
            last_time: 0,
            outbox: [0; CAP],
            head: 0,
            len: 0,
            sent: 0,
            acked: 0,
            host_acked: 0,
            checkpoint_every,
            since_checkpoint: 0,
        }
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Bytes held in the outbox (sent but unacknowledged, and not yet sent).
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Bytes not yet sent.
    pub fn unsent(&self) -> usize {
        self.len - self.sent
    }

    /// Bytes of the stream released since the log began: the whole entries the host
    /// acknowledged as stored.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Bytes of the stream handed out by [`Log::take_unsent`] since the log began.
    pub fn sent(&self) -> u64 {
        self.acked + self.sent as u64
    }

    /// Free bytes in the outbox; an append needs at most [`MAX_ENTRY`].
    pub fn free(&self) -> usize {
        CAP - self.len
    }

    /// Appends a record: encodes it, stores it in the outbox and extends the tree — or,
    /// if anything fails, changes nothing at all.
    pub fn append(&mut self, r: &Record<'_>) -> Result<Appended, AppendError> {
        if r.time < self.last_time {
            return Err(AppendError::TimeWentBackwards);
        }
        let seq = self.frontier.size();
        let e = Entry {
            seq,
            dt: r.time - self.last_time,
            agent: r.agent,
            action: r.action,
            target: r.target,
            decision: r.decision,
            rule: r.rule,
            labels: r.labels,
            content: r.content,
            name: r.name,
        };
        let mut buf = [0u8; MAX_ENTRY];
        let n = e.encode(&mut buf).ok_or(AppendError::BadName)?;
        if n > self.free() {
            return Err(AppendError::OutboxFull);
        }
        let leaf = leaf_hash(&buf[..n]);
        if !self.frontier.push_leaf_hash(leaf) {
            return Err(AppendError::LogFull);
        }
        // Copy into the ring.
        let tail = (self.head + self.len) % CAP;
        let first = n.min(CAP - tail);
        self.outbox[tail..tail + first].copy_from_slice(&buf[..first]);
        self.outbox[..n - first].copy_from_slice(&buf[first..n]);
        self.len += n;
        self.last_time = r.time;
        self.since_checkpoint += 1;
        let due = self.checkpoint_every != 0 && self.since_checkpoint >= self.checkpoint_every;
        Ok(Appended {
            seq,
            leaf_hash: leaf,
            encoded_len: n,
            checkpoint_due: due,
        })
    }

    /// Copies up to `out.len()` unsent bytes (a byte stream of whole and partial entries, in
    /// order) to `out` and marks them sent; returns the number copied. They stay in the
    /// outbox until [`Log::acknowledge`]d.
    pub fn take_unsent(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.unsent());
        let start = (self.head + self.sent) % CAP;
        let first = n.min(CAP - start);
        out[..first].copy_from_slice(&self.outbox[start..start + first]);
        out[first..n].copy_from_slice(&self.outbox[..n - first]);
        self.sent += n;
        n
    }

    /// The host has durably stored the first `total` bytes of the stream: the whole entries
    /// among them leave the outbox (an entry the host holds only part of stays until all of
    /// it is acknowledged, so that a new host can resume at an entry boundary). Returns how
    /// many bytes were released. A claim beyond what was sent, or below an earlier one, is
    /// refused and changes nothing.
    pub fn acknowledge(&mut self, total: u64) -> Result<usize, AckError> {
        if total < self.host_acked {
            return Err(AckError::Backwards {
                acked: total,
                earlier: self.host_acked,
            });
        }
        let n = total - self.acked;
        if n > self.sent as u64 {
            return Err(AckError::BeyondSent {
                acked: total,
                sent: self.sent(),
            });
        }
        self.host_acked = total;
        let (whole, _) = self.entry_bounds(n as usize);
        Ok(self.release(whole))
    }

    /// Releases the first `n` sent bytes (`n` ≤ `self.sent`, at an entry boundary).
    fn release(&mut self, n: usize) -> usize {
        self.head = (self.head + n) % CAP;
        self.len -= n;
        self.sent -= n;
        self.acked += n as u64;
        n
    }

    /// The entry boundaries around outbox offset `at` (≤ `self.len`): the last entry end at
    /// or before it and the first at or after it (equal when `at` is one).
    fn entry_bounds(&self, at: usize) -> (usize, usize) {
        let mut pos = 0;
        let mut buf = [0u8; MAX_ENTRY];
        while pos < at {
            let k = (self.len - pos).min(MAX_ENTRY);
            let start = (self.head + pos) % CAP;
            let first = k.min(CAP - start);
            buf[..first].copy_from_slice(&self.outbox[start..start + first]);
            buf[first..k].copy_from_slice(&self.outbox[..k - first]);
            // The outbox holds only entries this log encoded, back to back.
            let Ok((_, n)) = Entry::decode(&buf[..k]) else {
                break;
            };
            if pos + n > at {
                return (pos, pos + n);
            }
            pos += n;
        }
        (pos, pos)
    }

    /// A new host holds the first `stored` bytes of the stream (after a reconnect): what it
    /// holds is released, and everything after it is sent again by the next
    /// [`Log::take_unsent`], so the stored log continues from the first byte it lacks.
    /// Refused (changing nothing) when `stored` is beyond what was sent, below what an
    /// earlier host acknowledged and was released (those bytes are gone), or inside an
    /// entry.
    pub fn resend_from(&mut self, stored: u64) -> Result<(), AckError> {
        if stored < self.acked {
            return Err(AckError::Backwards {
                acked: stored,
                earlier: self.acked,
            });
        }
        let n = stored - self.acked;
        if n > self.sent as u64 {
            return Err(AckError::BeyondSent {
                acked: stored,
                sent: self.sent(),
            });
        }
        let (before, after) = self.entry_bounds(n as usize);
        if before != n as usize {
            return Err(AckError::MidEntry {
                at: stored,
                before: self.acked + before as u64,
                after: self.acked + after as u64,
            });
        }
        self.release(before);
        self.host_acked = stored;
        self.sent = 0;
        Ok(())
    }

    /// Sends and releases at once: [`Log::take_unsent`] followed by the release of every
    /// whole entry sent (for a consumer that stores synchronously, e.g. tools and tests).
    pub fn drain(&mut self, out: &mut [u8]) -> usize {
        let n = self.take_unsent(out);
        let (whole, _) = self.entry_bounds(self.sent);
        self.release(whole);
        self.host_acked = self.acked;
        n
    }

    /// Marks a checkpoint as emitted (resets the every-N counter).
    pub fn checkpoint_emitted(&mut self) {
        self.since_checkpoint = 0;
    }

    /// Signs a checkpoint of the current tree (on demand or when `checkpoint_due`).
    pub fn checkpoint(&mut self, key: &crate::note::LogKey) -> alloc::string::String {
        self.since_checkpoint = 0;
        crate::note::Checkpoint {
            origin: key.name().into(),
            size: self.size(),
            root: self.root(),
        }
        .sign(key)
    }
}
