//! Attaching a new launcher to a running VM: what the log directory of the earlier run
//! holds, checked before the new launcher tells the monitor how much of its log is stored.
//!
//! The earlier launcher appended the Log stream to `provenance.log` and fsynced before every
//! Ack, and stored each signed checkpoint only after every log byte before it was durable.
//! So the file is a run of whole entries, perhaps followed by part of one (the monitor
//! keeps an entry until all of it is acknowledged, so that part is sent again), and the
//! last `checkpoint.note` covers a prefix of those entries. [`check_stored_log`] checks
//! exactly that: every entry decodes with consecutive sequence numbers, the checkpoint's
//! signature verifies under `log.vkey`, and its root is the root of the file's first
//! `size` entries. The number of bytes of whole entries is what the new launcher states in
//! its HelloAck (`log_stored`); the monitor checks it again against its own outbox.

use omega_provenance::entry::{DecodeError, EntryIter};
use omega_provenance::note::{Checkpoint, VerifierKey};
use omega_provenance::verify::verify_stream;

/// What a log directory holds, as far as a resume is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLog {
    /// Bytes of whole entries: what the new launcher says it holds.
    pub whole: u64,
    /// Whole entries.
    pub entries: u64,
    /// Bytes after the last whole entry (part of an entry), cut before resuming.
    pub torn: u64,
    /// The size of the checkpoint the entries were checked against (None: there was none).
    pub checkpoint_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    #[error(
        "entry #{index} at byte {offset} does not decode ({error:?}): the stored log is damaged"
    )]
    Undecodable {
        index: u64,
        offset: usize,
        error: DecodeError,
    },
    #[error("entry #{index} carries seq {seq}: the stored log lost, reordered or repeated entries")]
    Sequence { index: u64, seq: u64 },
    #[error("checkpoint.note is there but log.vkey is not: the checkpoint cannot be checked")]
    NoKey,
    #[error("log.vkey: {0}")]
    BadKey(String),
    #[error("checkpoint.note does not verify under log.vkey: {0}")]
    BadCheckpoint(String),
    #[error(
        "the checkpoint covers {size} entries but the stored log has {entries} whole entries: entries are missing"
    )]
    ShortLog { size: u64, entries: u64 },
    #[error("the stored log does not match its checkpoint: {0}")]
    Mismatch(String),
}

/// Checks a stored log (`provenance.log`'s bytes) against the directory's verifier key and
/// last checkpoint (each `None` when the file is absent).
pub fn check_stored_log(
    log: &[u8],
    vkey: Option<&str>,
    checkpoint: Option<&str>,
) -> Result<StoredLog, ResumeError> {
    let mut ends = Vec::new();
    let mut whole = 0usize;
    for (index, item) in EntryIter::new(log).enumerate() {
        let index = index as u64;
        match item {
            Ok((off, e, bytes)) => {
                if e.seq != index {
                    return Err(ResumeError::Sequence { index, seq: e.seq });
                }
                whole = off + bytes.len();
                ends.push(whole);
            }
            // Part of an entry at the end: the monitor still holds all of it.
            Err((_, DecodeError::Truncated)) => break,
            Err((offset, error)) => {
                return Err(ResumeError::Undecodable {
                    index,
                    offset,
                    error,
                });
            }
        }
    }
    let entries = ends.len() as u64;
    let checkpoint_size = match checkpoint {
        None => None,
        Some(note) => {
            let key = vkey.ok_or(ResumeError::NoKey)?;
            let key = VerifierKey::parse(key.trim())
                .map_err(|e| ResumeError::BadKey(format!("{e:?}")))?;
            let cp = Checkpoint::verify(note, &key)
                .map_err(|e| ResumeError::BadCheckpoint(format!("{e:?}")))?;
            if cp.size > entries {
                return Err(ResumeError::ShortLog {
                    size: cp.size,
                    entries,
                });
            }
            let covered = match cp.size {
                0 => 0,
                n => ends[n as usize - 1],
            };
            let report = verify_stream(&log[..covered], &cp);
            if let Some(f) = report.failures.first() {
                return Err(ResumeError::Mismatch(f.clone()));
            }
            Some(cp.size)
        }
    };
    Ok(StoredLog {
        whole: whole as u64,
        entries,
        torn: (log.len() - whole) as u64,
        checkpoint_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_provenance::note::LogKey;
    use omega_provenance::{Action, Decision, Log, Record};

    /// A log of `n` entries as the monitor streams it, its key and a checkpoint of the first
    /// `at` entries.
    fn stored(n: u64, at: u64) -> (Vec<u8>, String, String) {
        let key = LogKey::from_seed("omega-monitor", [3; 32]).unwrap();
        let mut log = Log::<65536>::new(0);
        let mut bytes = Vec::new();
        let mut note = None;
        for i in 0..n {
            if i == at {
                note = Some(log.checkpoint(&key));
            }
            log.append(&Record {
                time: i,
                agent: 1,
                action: Action::Message,
                target: 2,
                decision: Decision::Allow,
                rule: 3,
                labels: 0,
                content: Some([i as u8; 32]),
                name: None,
            })
            .unwrap();
            let mut buf = vec![0u8; 4096];
            let k = log.drain(&mut buf);
            bytes.extend_from_slice(&buf[..k]);
        }
        let note = note.unwrap_or_else(|| log.checkpoint(&key));
        (bytes, key.verifier().encode(), note)
    }

    #[test]
    fn whole_entries_after_the_checkpoint_count_and_a_torn_tail_is_cut() {
        let (bytes, vkey, note) = stored(10, 6);
        let entry = bytes.len() / 10;
        let torn = &bytes[..bytes.len() - 5];
        let s = check_stored_log(torn, Some(&vkey), Some(&note)).unwrap();
        assert_eq!(
            s,
            StoredLog {
                whole: (bytes.len() - entry) as u64,
                entries: 9,
                torn: (entry - 5) as u64,
                checkpoint_size: Some(6),
            }
        );
        // Without a checkpoint: the entries alone.
        let s = check_stored_log(&bytes, None, None).unwrap();
        assert_eq!((s.entries, s.checkpoint_size), (10, None));
    }

    /// A damaged directory is refused: fewer entries than the checkpoint covers, an altered
    /// entry, a checkpoint under another key, a missing key.
    #[test]
    fn a_log_that_does_not_match_its_checkpoint_is_refused() {
        let (bytes, vkey, note) = stored(10, 8);
        let entry = bytes.len() / 10;
        assert!(matches!(
            check_stored_log(&bytes[..entry * 7], Some(&vkey), Some(&note)),
            Err(ResumeError::ShortLog {
                size: 8,
                entries: 7
            })
        ));
        let mut altered = bytes.clone();
        altered[entry * 2 + entry - 3] ^= 1;
        assert!(matches!(
            check_stored_log(&altered, Some(&vkey), Some(&note)),
            Err(ResumeError::Mismatch(_))
        ));
        let other = LogKey::from_seed("omega-monitor", [4; 32])
            .unwrap()
            .verifier()
            .encode();
        assert!(matches!(
            check_stored_log(&bytes, Some(&other), Some(&note)),
            Err(ResumeError::BadCheckpoint(_))
        ));
        assert_eq!(
            check_stored_log(&bytes, None, Some(&note)),
            Err(ResumeError::NoKey)
        );
        // An entry dropped from the middle: the sequence breaks.
        let dropped = [&bytes[..entry * 3], &bytes[entry * 4..]].concat();
        assert!(matches!(
            check_stored_log(&dropped, None, None),
            Err(ResumeError::Sequence { index: 3, seq: 4 })
        ));
    }
}
