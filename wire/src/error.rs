use crate::frame::Stream;

/// Everything that can go wrong on the wire. Decoder errors are reported once per bad
/// stretch of input; the decoder has already moved past the bad bytes when it returns one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Bytes before the next sync marker were skipped.
    #[error("{skipped} bytes of garbage skipped before a sync marker")]
    Garbage { skipped: usize },
    /// HLEN is 0 or larger than [`crate::MAX_HEADER`].
    #[error("header length {0} out of bounds")]
    HeaderLength(u8),
    /// The header checksum does not match.
    #[error("header CRC mismatch")]
    HeaderCrc,
    /// The header is not a canonical postcard `Header`, or a flag bit is unknown.
    #[error("malformed frame header")]
    BadHeader,
    /// Frame format version this decoder does not speak.
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown stream id {0}")]
    UnknownStream(u8),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The header claims a payload larger than [`crate::MAX_PAYLOAD`].
    #[error("oversized frame: payload length {0}")]
    Oversized(u32),
    /// The frame checksum does not match.
    #[error("frame CRC mismatch")]
    Crc,
    /// A well-formed frame whose kind/stream/length combination is not allowed.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// Input ended in the middle of a frame.
    #[error("stream ended inside a frame ({0} bytes pending)")]
    Truncated(usize),
    /// The caller's output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// A payload larger than [`crate::MAX_PAYLOAD`] was given to the encoder.
    #[error("payload too large for one frame")]
    PayloadTooLarge,
    /// No credit to send on this stream now; retry after the peer grants more.
    #[error("no credit on stream {0:?}")]
    WouldBlock(Stream),
    /// The peer sent more payload bytes than it had credit for.
    #[error("peer exceeded its credit on stream {0:?}")]
    CreditExceeded(Stream),
    /// A grant would push the outstanding credit past [`crate::MAX_WINDOW`].
    #[error("credit grant overflow on stream {0:?}")]
    CreditOverflow(Stream),
    /// The two sides share no protocol version.
    #[error("no common protocol version")]
    NoCommonVersion,
    /// A Data frame's sequence number is not the next one expected on its stream.
    #[error("sequence gap on stream {stream:?}: expected {expected}, got {got}")]
    SeqGap {
        stream: Stream,
        expected: u32,
        got: u32,
    },
    /// A reassembled message would exceed the reassembly limit.
    #[error("message too large on stream {0:?}")]
    MessageTooLarge(Stream),
    /// A message payload (Hello, Error, Bundle, Control) failed to decode.
    #[error("malformed message payload")]
    BadMessage,
}
