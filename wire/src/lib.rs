//! `omega-wire`: the framing of Omega's guest<->host byte stream.
//!
//! One reliable byte stream (virtio-console port 0 in the guest, a QEMU unix-socket chardev on
//! the host) carries seven logical streams in frames:
//!
//! ```text
//! SYNC "\xA5\x5AOW" | HLEN u8 | HEADER (postcard, HLEN bytes) | HCRC u32le | PAYLOAD | CRC u32le
//! ```
//!
//! `HCRC` = CRC-32C(HLEN ‖ HEADER); `CRC` = CRC-32C of every byte between SYNC and CRC.
//! The complete specification is `docs/wire.md`; this crate is its reference implementation.
//!
//! * [`Encoder`] writes frames into a caller buffer (keeps per-stream sequence numbers).
//! * [`Decoder`] takes arbitrary byte slices, holds at most one frame in a fixed buffer, and
//!   yields frames or errors; after any error it resynchronises on the next marker.
//! * [`Credits`] is the per-stream flow control: payload bytes may be sent only against
//!   credit the peer granted; without credit the answer is [`WireError::WouldBlock`].
//! * [`Hello`]/[`HelloAck`]/[`negotiate`]: version negotiation.
//! * [`msg`]: payloads of the Control and Error messages, the Echo tags, and the postcard
//!   helpers other message sets (the bundle's, in `omega-bundle`) use.
//! * `Reassembler` (feature `alloc`): joins split messages per stream.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod crc32c;
mod credits;
mod decoder;
mod encoder;
mod error;
mod frame;
mod hello;
pub mod msg;
mod per_stream;
#[cfg(feature = "alloc")]
mod reassembly;

pub use crc32c::{Crc32c, crc32c};
pub use credits::{Credits, INITIAL_WINDOW, MAX_WINDOW};
pub use decoder::{DECODER_BUF, Decoder, DecoderStats};
pub use encoder::{Encoder, encode_frame, fragments};
pub use error::WireError;
pub use frame::{
    FLAG_END, Frame, Header, Kind, MAX_FRAME, MAX_HEADER, MAX_PAYLOAD, OVERHEAD_MAX, STREAM_COUNT,
    SYNC, Stream,
};
pub use hello::{Hello, HelloAck, MAX_VERSIONS, SUPPORTED_VERSIONS, VERSION, negotiate};
pub use per_stream::PerStream;
#[cfg(feature = "alloc")]
pub use reassembly::{MAX_MESSAGE, Reassembler};
