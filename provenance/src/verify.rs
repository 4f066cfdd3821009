//! Offline verification of an at-rest entry stream against a checkpoint.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::entry::EntryIter;
use crate::merkle::{Tree, leaf_hash};
use crate::note::Checkpoint;

/// Outcome of [`verify_stream`]: `failures` is empty iff the stream matches the checkpoint.
pub struct StreamReport {
    pub entries: u64,
    pub bytes: usize,
    pub tree: Tree,
    pub failures: Vec<String>,
}

/// Decodes every entry of `stream`, rebuilds the tree and checks it against `cp`.
/// Detects dropped, reordered, duplicated, altered, truncated and appended entries.
pub fn verify_stream(stream: &[u8], cp: &Checkpoint) -> StreamReport {
    let mut failures = Vec::new();
    let mut tree = Tree::new();
    let mut seq_errors = 0usize;
    for item in EntryIter::new(stream) {
        match item {
            Ok((off, e, bytes)) => {
                let idx = tree.len();
                // A log that names itself (LOG_START) must be the checkpoint's log.
                if idx == 0
                    && e.action == crate::entry::Action::Lifecycle
                    && e.rule == crate::entry::lifecycle::LOG_START
                    && let Some(name) = e.name
                    && name != cp.origin.as_bytes()
                {
                    failures.push(format!(
                        "log starts as {:?} but the checkpoint is for origin {:?}: different log",
                        alloc::string::String::from_utf8_lossy(name),
                        cp.origin
                    ));
                }
                if e.seq != idx {
                    // Report the first few; every mismatch also breaks the root.
                    if seq_errors < 8 {
                        failures.push(format!(
                            "entry #{idx} (byte {off}) carries seq {}: dropped, reordered or duplicated entry",
                            e.seq
                        ));
                    }
                    seq_errors += 1;
                }
                tree.push_leaf_hash(leaf_hash(bytes));
            }
            Err((off, err)) => {
                failures.push(format!("undecodable entry at byte {off}: {err}"));
            }
        }
    }
    if seq_errors > 8 {
        failures.push(format!("... {} more sequence errors", seq_errors - 8));
    }
    let n = tree.len();
    if n < cp.size {
        failures.push(format!(
            "log has {n} entries but the checkpoint covers {}: entries missing",
            cp.size
        ));
    } else {
        if n > cp.size {
            failures.push(format!(
                "{} entries after the checkpoint's size {} are not covered by it (appended)",
                n - cp.size,
                cp.size
            ));
        }
        match tree.root_at(cp.size) {
            Some(r) if crate::merkle::ct_eq(&r, &cp.root) => {}
            _ => failures.push(format!(
                "root of the first {} entries does not match the checkpoint root: entries altered",
                cp.size
            )),
        }
    }
    StreamReport {
        entries: n,
        bytes: stream.len(),
        tree,
        failures,
    }
}
