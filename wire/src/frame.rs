use serde::{Deserialize, Serialize};

use crate::WireError;

/// Sync marker that starts every frame.
pub const SYNC: [u8; 4] = [0xA5, 0x5A, b'O', b'W'];
/// Largest payload of one frame. Larger messages are split (see [`crate::fragments`]).
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// Largest HLEN a decoder accepts. Version 1 headers are at most 24 bytes.
pub const MAX_HEADER: usize = 32;
/// Bytes around the payload: SYNC + HLEN + header (at most) + HCRC + CRC.
pub const OVERHEAD_MAX: usize = SYNC.len() + 1 + MAX_HEADER + 4 + 4;
/// Largest frame on the wire.
pub const MAX_FRAME: usize = OVERHEAD_MAX + MAX_PAYLOAD;
/// Flag bit: this Data frame ends a message.
pub const FLAG_END: u8 = 0x01;
const KNOWN_FLAGS: u8 = FLAG_END;
/// Number of streams.
pub const STREAM_COUNT: usize = 8;

/// Logical streams multiplexed on the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stream {
    /// Handshake, shutdown, notices.
    Control = 0,
    /// Opaque (TLS) bytes between the guest and the inference proxy.
    Inference = 1,
    /// Tool calls (line-delimited JSON-RPC) between the guest and the tool gateway.
    Tools = 2,
    /// Provenance log entries, guest -> host, acknowledged when durably stored.
    Log = 3,
    /// Agent bundle, host -> guest.
    Bundle = 4,
    /// Echo stream for tests and benchmarks.
    Echo = 5,
    /// Opaque peer-channel bytes (`omega-peer-channel`) between this monitor and another
    /// image's, relayed by the hosts (`omega run --peer-listen` / `--peer-connect`).
    Peer = 6,
    /// The fleet coordinator's requests and answers (`omega_fleet::service`: length-prefixed
    /// postcard) between an in-image coordinator and its untrusted relay
    /// (`omega run --fleet-connect`).
    Fleet = 7,
}

impl Stream {
    pub const ALL: [Stream; STREAM_COUNT] = [
        Stream::Control,
        Stream::Inference,
        Stream::Tools,
        Stream::Log,
        Stream::Bundle,
        Stream::Echo,
        Stream::Peer,
        Stream::Fleet,
    ];

    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Stream::Control,
            1 => Stream::Inference,
            2 => Stream::Tools,
            3 => Stream::Log,
            4 => Stream::Bundle,
            5 => Stream::Echo,
            6 => Stream::Peer,
            7 => Stream::Fleet,
            _ => return None,
        })
    }
}

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Payload bytes of a message on `stream`; `FLAG_END` marks its last frame.
    Data = 0,
    /// `arg` more payload bytes may be sent to the sender of this frame on `stream`.
    Credit = 1,
    /// Version negotiation, first frame from the guest (payload: [`crate::Hello`]).
    Hello = 2,
    /// Answer to Hello (payload: [`crate::HelloAck`]).
    HelloAck = 3,
    /// Log stream: Data frames up to `seq` (inclusive), `arg` bytes in all, are durably stored.
    Ack = 4,
    /// The sender reports a problem concerning `stream` (payload: [`crate::msg::ErrorBody`]).
    Error = 5,
    /// The sender will send nothing more on `stream`.
    Close = 6,
}

impl Kind {
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Kind::Data,
            1 => Kind::Credit,
            2 => Kind::Hello,
            3 => Kind::HelloAck,
            4 => Kind::Ack,
            5 => Kind::Error,
            6 => Kind::Close,
            _ => return None,
        })
    }
}

/// A decoded, validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Frame format version (1).
    pub version: u8,
    pub stream: Stream,
    pub kind: Kind,
    /// Bit 0: [`FLAG_END`]. Other bits must be zero.
    pub flags: u8,
    /// Data: per-(stream, direction) frame counter from 0, wrapping. Ack: last stored seq.
    pub seq: u32,
    /// Credit: bytes granted. Ack: total bytes stored. Otherwise 0.
    pub arg: u64,
    /// Payload length in bytes, at most [`MAX_PAYLOAD`].
    pub len: u32,
}

impl Header {
    pub const fn new(stream: Stream, kind: Kind) -> Self {
        Header {
            version: crate::FRAME_FORMAT,
            stream,
            kind,
            flags: 0,
            seq: 0,
            arg: 0,
            len: 0,
        }
    }

    pub const fn is_end(&self) -> bool {
        self.flags & FLAG_END != 0
    }
}

/// The header exactly as postcard encodes it (field order is the wire order).
#[derive(Serialize, Deserialize)]
struct RawHeader {
    version: u8,
    stream: u8,
    kind: u8,
    flags: u8,
    seq: u32,
    arg: u64,
    len: u32,
}

/// One frame borrowed from the decoder's buffer (valid until the next `push`/`next_frame`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: Header,
    pub payload: &'a [u8],
}

impl Frame<'_> {
    pub fn stream(&self) -> Stream {
        self.header.stream
    }
    pub fn kind(&self) -> Kind {
        self.header.kind
    }
    pub fn is_end(&self) -> bool {
        self.header.is_end()
    }
}

/// Encodes the header into `out`, returns its length (1..=MAX_HEADER).
pub(crate) fn encode_header(h: &Header, out: &mut [u8; MAX_HEADER]) -> Result<usize, WireError> {
    let raw = RawHeader {
        version: h.version,
        stream: h.stream as u8,
        kind: h.kind as u8,
        flags: h.flags,
        seq: h.seq,
        arg: h.arg,
        len: h.len,
    };
    let used = postcard::to_slice(&raw, &mut out[..]).map_err(|_| WireError::BufferTooSmall)?;
    Ok(used.len())
}

/// Parses and checks a header (everything except the CRC and the kind rules).
pub(crate) fn decode_header(bytes: &[u8]) -> Result<Header, WireError> {
    let (raw, rest) =
        postcard::take_from_bytes::<RawHeader>(bytes).map_err(|_| WireError::BadHeader)?;
    // SECURITY: HLEN must cover the header exactly; trailing bytes are refused.
    if !rest.is_empty() {
        return Err(WireError::BadHeader);
    }
    if raw.version != crate::FRAME_FORMAT {
        return Err(WireError::UnsupportedVersion(raw.version));
    }
    let stream = Stream::from_u8(raw.stream).ok_or(WireError::UnknownStream(raw.stream))?;
    let kind = Kind::from_u8(raw.kind).ok_or(WireError::UnknownKind(raw.kind))?;
    if raw.flags & !KNOWN_FLAGS != 0 {
        return Err(WireError::BadHeader);
    }
    // SECURITY: the length bound is checked before anything waits for or reads the payload.
    if raw.len as usize > MAX_PAYLOAD {
        return Err(WireError::Oversized(raw.len));
    }
    let h = Header {
        version: raw.version,
        stream,
        kind,
        flags: raw.flags,
        seq: raw.seq,
        arg: raw.arg,
        len: raw.len,
    };
    // SECURITY: one header, one encoding. Postcard accepts over-long varints; re-encoding and
    // comparing refuses them, so no two byte strings decode to the same header.
    let mut canon = [0u8; MAX_HEADER];
    let n = encode_header(&h, &mut canon)?;
    if &canon[..n] != bytes {
        return Err(WireError::BadHeader);
    }
    Ok(h)
}

/// Rules on kind/stream/flags/arg/len combinations (checked on encode and decode).
pub(crate) fn check_kind_rules(h: &Header) -> Result<(), WireError> {
    let needs_empty = matches!(h.kind, Kind::Credit | Kind::Ack | Kind::Close);
    if needs_empty && h.len != 0 {
        return Err(WireError::Protocol(
            "credit/ack/close frames carry no payload",
        ));
    }
    if h.kind != Kind::Data && h.flags != 0 {
        return Err(WireError::Protocol("flags are only defined on data frames"));
    }
    match h.kind {
        Kind::Hello | Kind::HelloAck if h.stream != Stream::Control => Err(WireError::Protocol(
            "hello frames belong to the control stream",
        )),
        Kind::Ack if h.stream != Stream::Log => {
            Err(WireError::Protocol("ack frames belong to the log stream"))
        }
        Kind::Credit if h.arg == 0 || h.arg > crate::MAX_WINDOW as u64 => {
            Err(WireError::Protocol("credit grant must be 1..=MAX_WINDOW"))
        }
        Kind::Data | Kind::Hello | Kind::HelloAck | Kind::Error | Kind::Close if h.arg != 0 => {
            Err(WireError::Protocol("arg must be zero for this kind"))
        }
        Kind::Hello | Kind::HelloAck | Kind::Error | Kind::Close | Kind::Credit if h.seq != 0 => {
            Err(WireError::Protocol("seq must be zero for this kind"))
        }
        _ => Ok(()),
    }
}
