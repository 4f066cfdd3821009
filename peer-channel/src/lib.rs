//! `omega-peer-channel`: mutually authenticated, encrypted sessions between two Omega
//! monitors, relayed by hosts that are trusted with nothing.
//!
//! Design principles this crate keeps:
//!
//! * **Sans-IO.** Nothing here reads a socket or a clock or draws randomness: the caller
//!   feeds the relay's bytes in, takes bytes out, and hands in the ephemeral secret and the
//!   time. The monitor drives it from its event loop; tests drive two ends in memory.
//! * **The relay is the adversary.** Every byte fed in may be forged, replayed, reordered,
//!   cut or reflected. Decoders are bounded ([`MAX_BODY`], [`MAX_CREDENTIAL`]) and strict;
//!   nothing panics on them (fuzzed: `peer-channel/fuzz`). The first error ends the session
//!   for good ([`Channel`] turns `Failed`), so an attacker gets exactly one try.
//! * **Who the peer is, is somebody else's decision.** The handshake proves possession of an
//!   Ed25519 peer key; whether that key belongs to a node the fleet admits is decided by a
//!   [`PeerAuthority`] over the credential the peer presents (the fleet coordinator's, or
//!   keys pinned from verified evidence: [`PinnedAuthority`]).
//!
//! The protocol (SIGMA-I, in the shape of TLS 1.3's: ephemeral X25519, signatures by the
//! long-term keys over the transcript, identities encrypted), its key schedule and record
//! layer are specified in `docs/fleet.md` ("Channels between images"):
//!
//! ```text
//! I → R  Init    version, e_I
//! R → I  Resp    e_R, AEAD_hsR( pk_R, credential_R, Sig_R(transcript) )
//! I → R  Finish  AEAD_hsI( pk_I, credential_I, Sig_I(transcript) )
//! both   Record  counter, AEAD_dir( type ‖ payload )      (one key per direction)
//! ```

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod authority;
mod channel;
pub mod envelope;
mod handshake;
mod message;
mod record;
mod schedule;

pub use authority::{AuthorityError, MAX_NAME, PeerAuthority, PeerName, PinnedAuthority};
pub use channel::{Channel, Event};
pub use envelope::{AgentAddr, Frame};
pub use handshake::{Established, Identity, Initiator, PeerInfo, Responder, ResponderWaiting};
pub use message::{Deframer, HEADER_LEN, Kind, Message, encode_message};
pub use record::{Content, Session};

/// Protocol version carried in `Init` (the only one).
pub const VERSION: u8 = 1;
/// Largest credential a peer may present.
pub const MAX_CREDENTIAL: usize = 2048;
/// Largest application payload in one record.
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// AEAD tag length (ChaCha20-Poly1305).
pub const TAG_LEN: usize = 16;
/// Largest message body on the relay: a record (counter, content type, payload, tag).
pub const MAX_BODY: usize = 8 + 1 + MAX_PLAINTEXT + TAG_LEN;
/// Bytes the channel buffers from the relay before the caller takes events out.
pub const MAX_BUFFERED: usize = 4 * (HEADER_LEN + MAX_BODY);

/// Why a handshake or record was refused. Every one of them ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("{0} too large")]
    TooLarge(&'static str),
    #[error("unsupported protocol version {0}")]
    Version(u8),
    #[error("unexpected {got:?} message in state {state}")]
    Unexpected { got: Kind, state: &'static str },
    #[error("the peer's ephemeral key is of low order (no shared secret)")]
    WeakKey,
    #[error("the handshake does not decrypt (tampered, replayed or another session's)")]
    HandshakeDecrypt,
    #[error("the peer's signature over the transcript does not verify")]
    BadSignature,
    #[error("the peer presented our own key (reflection)")]
    Reflection,
    #[error("the peer's credential was refused: {0}")]
    Credential(#[from] AuthorityError),
    #[error("the peer is {got}, not the expected {expected}")]
    WrongPeer { expected: PeerName, got: PeerName },
    #[error("record {got} replayed (expected {expected})")]
    Replayed { expected: u64, got: u64 },
    #[error("record {got} out of order (expected {expected}: one was dropped or reordered)")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("a record does not decrypt (tampered, reflected or another session's)")]
    RecordDecrypt,
    #[error("the record counter is exhausted")]
    CounterExhausted,
    #[error("the relay ended the stream without the peer's close (truncation)")]
    Truncated,
    #[error("the session is closed")]
    Closed,
    #[error("the session failed earlier and accepts nothing more")]
    Failed,
    #[error("the local key or ephemeral secret is invalid (all zero: entropy failure)")]
    BadLocalKey,
}
