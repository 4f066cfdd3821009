//! Messages on the relay: `kind u8 | length u16 (big-endian) | body`, and the bounded
//! [`Deframer`] that cuts them out of the relay's byte stream.

use alloc::vec::Vec;

use crate::{MAX_BODY, MAX_BUFFERED, PeerError};

/// Bytes before a message's body.
pub const HEADER_LEN: usize = 3;

/// The four messages of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Initiator → responder: version and the initiator's ephemeral key.
    Init = 1,
    /// Responder → initiator: its ephemeral key and its encrypted, signed identity.
    Resp = 2,
    /// Initiator → responder: its encrypted, signed identity.
    Finish = 3,
    /// Either way, after the handshake: one encrypted record.
    Record = 4,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Init,
            2 => Kind::Resp,
            3 => Kind::Finish,
            4 => Kind::Record,
            _ => return None,
        })
    }

    /// Smallest and largest body of this kind.
    fn body_bounds(self) -> (usize, usize) {
        match self {
            Kind::Init => (33, 33),
            // e_R + the sealed identity (key, credential length, signature, tag).
            Kind::Resp => (32 + crate::handshake::IDENTITY_MIN, MAX_BODY),
            Kind::Finish => (crate::handshake::IDENTITY_MIN, MAX_BODY),
            // counter + content type + tag.
            Kind::Record => (8 + 1 + crate::TAG_LEN, MAX_BODY),
        }
    }
}

/// One whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub body: Vec<u8>,
}

impl Message {
    /// The message as it travels (header and body).
    pub fn encode(&self) -> Vec<u8> {
        encode_message(self.kind, &self.body)
    }

    /// One message from exactly `bytes` (no more, no less).
    pub fn decode(bytes: &[u8]) -> Result<Message, PeerError> {
        let mut d = Deframer::new();
        d.push(bytes)?;
        let m = d
            .next_message()?
            .ok_or(PeerError::Malformed("truncated message"))?;
        if d.buffered() != 0 {
            return Err(PeerError::Malformed("bytes after the message"));
        }
        Ok(m)
    }
}

/// `kind | len | body`. Callers keep `body` within [`MAX_BODY`] (the handshake and the
/// record layer do); a longer body is a bug, and its length is clamped so the peer refuses it.
pub fn encode_message(kind: Kind, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(kind as u8);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Cuts messages out of the relay's byte stream. Holds at most [`MAX_BUFFERED`] bytes; checks
/// each header as soon as it is complete (unknown kind or a length outside the kind's bounds
/// is an error before its body arrives).
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
}

impl Deframer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends relay bytes. SECURITY: bounded; the caller takes messages out with [`next_message`]
    /// between pushes, so only a peer flooding faster than it is read hits the bound.
    ///
    /// [`next_message`]: Deframer::next_message
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        if self.buf.len().saturating_add(bytes.len()) > MAX_BUFFERED {
            return Err(PeerError::TooLarge("relay backlog"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Bytes held that are not a whole message yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, PeerError> {
        let Some(header) = self.buf.get(..HEADER_LEN) else {
            if let Some(&k) = self.buf.first() {
                Kind::from_u8(k).ok_or(PeerError::Malformed("message kind"))?;
            }
            return Ok(None);
        };
        let kind = Kind::from_u8(header[0]).ok_or(PeerError::Malformed("message kind"))?;
        let len = usize::from(u16::from_be_bytes([header[1], header[2]]));
        let (min, max) = kind.body_bounds();
        if len > max {
            return Err(PeerError::TooLarge("message body"));
        }
        if len < min {
            return Err(PeerError::Malformed("message body too short"));
        }
        let Some(total) = HEADER_LEN.checked_add(len) else {
            return Err(PeerError::TooLarge("message body"));
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        let body = self.buf[HEADER_LEN..total].to_vec();
        self.buf.drain(..total);
        Ok(Some(Message { kind, body }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deframes_byte_by_byte() {
        let a = encode_message(Kind::Init, &[7; 33]);
        let b = encode_message(Kind::Record, &[9; 40]);
        let mut d = Deframer::new();
        let mut got = Vec::new();
        for byte in a.iter().chain(&b) {
            d.push(&[*byte]).unwrap();
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].kind, Kind::Init);
        assert_eq!(got[1].body, [9; 40]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn refuses_bad_headers_early() {
        let mut d = Deframer::new();
        d.push(&[9]).unwrap();
        assert_eq!(d.next_message(), Err(PeerError::Malformed("message kind")));
        let mut d = Deframer::new();
        d.push(&[Kind::Record as u8, 0xff, 0xff]).unwrap();
        assert_eq!(d.next_message(), Err(PeerError::TooLarge("message body")));
        let mut d = Deframer::new();
        d.push(&[Kind::Init as u8, 0, 32]).unwrap();
        assert_eq!(
            d.next_message(),
            Err(PeerError::Malformed("message body too short"))
        );
        let mut d = Deframer::new();
        assert!(d.push(&alloc::vec![0; MAX_BUFFERED + 1]).is_err());
    }

    #[test]
    fn decode_wants_exactly_one() {
        let mut m = encode_message(Kind::Init, &[1; 33]);
        assert!(Message::decode(&m).is_ok());
        m.push(0);
        assert!(Message::decode(&m).is_err());
        assert!(Message::decode(&m[..10]).is_err());
    }
}
