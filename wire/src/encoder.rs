use crate::crc32c::{Crc32c, crc32c};
use crate::frame::{
    FLAG_END, Header, Kind, MAX_HEADER, MAX_PAYLOAD, SYNC, Stream, check_kind_rules, encode_header,
};
use crate::msg::ErrorBody;
use crate::{Credits, Hello, HelloAck, PerStream, WireError};

/// Encodes one frame with `header` (its `len` is set from `payload`) into `out`.
/// Returns the number of bytes written. `out` needs `payload.len() + OVERHEAD_MAX` bytes at most.
pub fn encode_frame(header: &Header, payload: &[u8], out: &mut [u8]) -> Result<usize, WireError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(WireError::PayloadTooLarge);
    }
    let mut h = *header;
    h.len = payload.len() as u32;
    check_kind_rules(&h)?;
    let mut hb = [0u8; MAX_HEADER];
    let hlen = encode_header(&h, &mut hb)?;
    let total = SYNC.len() + 1 + hlen + 4 + payload.len() + 4;
    if out.len() < total {
        return Err(WireError::BufferTooSmall);
    }
    let mut p = 0;
    out[..4].copy_from_slice(&SYNC);
    p += 4;
    out[p] = hlen as u8;
    out[p + 1..p + 1 + hlen].copy_from_slice(&hb[..hlen]);
    let hcrc = crc32c(&out[p..p + 1 + hlen]);
    p += 1 + hlen;
    out[p..p + 4].copy_from_slice(&hcrc.to_le_bytes());
    p += 4;
    out[p..p + payload.len()].copy_from_slice(payload);
    p += payload.len();
    let mut c = Crc32c::new();
    c.update(&out[SYNC.len()..p]);
    out[p..p + 4].copy_from_slice(&c.finish().to_le_bytes());
    p += 4;
    debug_assert_eq!(p, total);
    Ok(total)
}

/// Splits a message into frame payloads: `(chunk, end)`, chunks of at most [`MAX_PAYLOAD`]
/// bytes, `end` on the last. An empty message is one empty chunk with `end`.
pub fn fragments(msg: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    let n = msg.len().div_ceil(MAX_PAYLOAD).max(1);
    (0..n).map(move |i| {
        let start = i * MAX_PAYLOAD;
        let end = (start + MAX_PAYLOAD).min(msg.len());
        (&msg[start..end], i + 1 == n)
    })
}

/// Frame writer for one direction of a connection: keeps each stream's Data sequence number.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    seq: PerStream<u32>,
}

impl Encoder {
    pub const fn new() -> Self {
        Encoder {
            seq: PerStream::splat(0),
        }
    }

    /// Sequence number the next Data frame on `stream` will carry.
    pub fn next_seq(&self, stream: Stream) -> u32 {
        self.seq[stream]
    }

    /// One Data frame (`payload` ≤ [`MAX_PAYLOAD`]). Does not consult credit: use
    /// [`Encoder::data_with_credit`] or [`Credits::try_send`] first.
    pub fn data(
        &mut self,
        stream: Stream,
        payload: &[u8],
        end: bool,
        out: &mut [u8],
    ) -> Result<usize, WireError> {
        let mut h = Header::new(stream, Kind::Data);
        h.seq = self.seq[stream];
        if end {
            h.flags = FLAG_END;
        }
        let n = encode_frame(&h, payload, out)?;
        self.seq[stream] = h.seq.wrapping_add(1);
        Ok(n)
    }

    /// Encodes the next piece of a message whose unsent rest is `rest`, as large as the
    /// stream's credit and [`MAX_PAYLOAD`] allow; END is set if the piece is all of `rest`.
    /// Returns `(payload bytes taken from rest, frame bytes written)`.
    /// With `rest` non-empty and no credit: `Err(WouldBlock)`, nothing written or consumed.
    /// An empty `rest` writes one empty END frame (it costs no credit).
    pub fn data_with_credit(
        &mut self,
        credits: &mut Credits,
        stream: Stream,
        rest: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, usize), WireError> {
        let n = credits.sendable(stream, rest.len());
        if n == 0 && !rest.is_empty() {
            return Err(WireError::WouldBlock(stream));
        }
        let written = self.data(stream, &rest[..n], n == rest.len(), out)?;
        credits.try_send(stream, n)?;
        Ok((n, written))
    }

    /// Grants the peer `grant` more payload bytes on `stream`.
    pub fn credit(
        &mut self,
        stream: Stream,
        grant: u32,
        out: &mut [u8],
    ) -> Result<usize, WireError> {
        let mut h = Header::new(stream, Kind::Credit);
        h.arg = grant as u64;
        encode_frame(&h, &[], out)
    }

    /// Log stream: Data frames up to `seq` inclusive (`stored` bytes in all) are durable.
    pub fn ack(&mut self, seq: u32, stored: u64, out: &mut [u8]) -> Result<usize, WireError> {
        let mut h = Header::new(Stream::Log, Kind::Ack);
        h.seq = seq;
        h.arg = stored;
        encode_frame(&h, &[], out)
    }

    pub fn hello(&mut self, hello: &Hello<'_>, out: &mut [u8]) -> Result<usize, WireError> {
        self.message_frame(Stream::Control, Kind::Hello, hello, out)
    }

    pub fn hello_ack(&mut self, ack: &HelloAck<'_>, out: &mut [u8]) -> Result<usize, WireError> {
        self.message_frame(Stream::Control, Kind::HelloAck, ack, out)
    }

    /// Error frame about `stream` (`code`: [`crate::msg::code`]); long messages are cut at
    /// [`crate::msg::MAX_ERROR_MESSAGE`] bytes (on a char boundary).
    pub fn error(
        &mut self,
        stream: Stream,
        code: u16,
        message: &str,
        out: &mut [u8],
    ) -> Result<usize, WireError> {
        let mut cut = message.len().min(crate::msg::MAX_ERROR_MESSAGE);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        let body = ErrorBody {
            code,
            message: &message[..cut],
        };
        self.message_frame(stream, Kind::Error, &body, out)
    }

    pub fn close(&mut self, stream: Stream, out: &mut [u8]) -> Result<usize, WireError> {
        encode_frame(&Header::new(stream, Kind::Close), &[], out)
    }

    fn message_frame<T: serde::Serialize>(
        &mut self,
        stream: Stream,
        kind: Kind,
        msg: &T,
        out: &mut [u8],
    ) -> Result<usize, WireError> {
        let mut buf = [0u8; 1024];
        let body = postcard::to_slice(msg, &mut buf).map_err(|_| WireError::PayloadTooLarge)?;
        encode_frame(&Header::new(stream, kind), body, out)
    }
}
