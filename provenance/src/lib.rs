//! Omega provenance log: a tamper-evident, append-only record of every mediated interaction.
//!
//! * [`entry`]: compact canonical entry encoding (LEB128 varints, interned ids).
//! * [`merkle`]: RFC 9162 Merkle tree (frontier for the monitor, full tree + proofs for
//!   verifiers).
//! * [`log`]: the monitor-side log with a bounded outbox (backpressure, never drops).
//! * [`note`]: C2SP signed-note checkpoints (Ed25519).
//! * [`verify`]: offline verification of an entry stream against checkpoints.
//!
//! Formats are documented for third-party verifiers in `docs/provenance.md`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod b64;
pub mod entry;
pub mod log;
pub mod merkle;
pub mod note;
pub mod proof_file;
pub mod varint;
pub mod verify;

pub use entry::{Action, Decision, Entry};
pub use log::{AckError, AppendError, Appended, Log, Record};
pub use merkle::{Frontier, Hash, Tree};
pub use note::{Checkpoint, LogKey, VerifierKey};
