//! The record layer: one key per direction, strict counters, an authenticated close.
//!
//! A record's body is `counter u64 (big-endian) ‖ AEAD(type ‖ payload)`, the nonce is the
//! counter, the associated data `Record ‖ counter`. The receiver accepts exactly the next
//! counter: a lower one is a replay, a higher one a drop or reorder; both end the session.
//! A record sent back to its sender (reflection) is under the other direction's key and does
//! not decrypt. The relay cutting the stream is told apart from the peer ending it by the
//! [`Content::Close`] record, which only the peer can make.

use alloc::vec::Vec;
use zeroize::Zeroizing;

use crate::message::{Kind, Message, encode_message};
use crate::schedule::{self, Key};
use crate::{MAX_PLAINTEXT, PeerError};

const TYPE_DATA: u8 = 0;
const TYPE_CLOSE: u8 = 1;

/// What a record carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Data(Vec<u8>),
    /// The peer ended the session; nothing follows.
    Close,
}

/// Both directions of an established session.
pub struct Session {
    send: Key,
    recv: Key,
    send_counter: u64,
    recv_counter: u64,
    session_id: [u8; 16],
    sent_close: bool,
    got_close: bool,
    failed: bool,
}

impl Session {
    pub(crate) fn new(send: Key, recv: Key, session_id: [u8; 16]) -> Self {
        Session {
            send,
            recv,
            send_counter: 0,
            recv_counter: 0,
            session_id,
            sent_close: false,
            got_close: false,
            failed: false,
        }
    }

    /// Equal at both ends (derived from the whole handshake transcript).
    pub fn session_id(&self) -> [u8; 16] {
        self.session_id
    }

    /// Records sent and received so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.send_counter, self.recv_counter)
    }

    /// The peer's close arrived.
    pub fn peer_closed(&self) -> bool {
        self.got_close
    }

    /// A record carrying `payload` (at most [`MAX_PLAINTEXT`] bytes), as it travels.
    pub fn seal(&mut self, payload: &[u8]) -> Result<Vec<u8>, PeerError> {
        if payload.len() > MAX_PLAINTEXT {
            return Err(PeerError::TooLarge("record payload"));
        }
        self.seal_typed(TYPE_DATA, payload)
    }

    /// The close record; nothing can be sent after it.
    pub fn seal_close(&mut self) -> Result<Vec<u8>, PeerError> {
        let r = self.seal_typed(TYPE_CLOSE, &[])?;
        self.sent_close = true;
        Ok(r)
    }

    fn seal_typed(&mut self, ty: u8, payload: &[u8]) -> Result<Vec<u8>, PeerError> {
        if self.failed {
            return Err(PeerError::Failed);
        }
        if self.sent_close {
            return Err(PeerError::Closed);
        }
        let counter = self.send_counter;
        // SECURITY: a nonce is never reused: the last counter value is never sent.
        self.send_counter = counter.checked_add(1).ok_or(PeerError::CounterExhausted)?;
        let mut plain = Zeroizing::new(Vec::with_capacity(1 + payload.len()));
        plain.push(ty);
        plain.extend_from_slice(payload);
        let sealed = schedule::seal(&self.send, counter, &aad(counter), &plain);
        let mut body = Vec::with_capacity(8 + sealed.len());
        body.extend_from_slice(&counter.to_be_bytes());
        body.extend_from_slice(&sealed);
        Ok(encode_message(Kind::Record, &body))
    }

    /// Opens the next record. Any error poisons the session: every later call fails.
    pub fn open(&mut self, msg: &Message) -> Result<Content, PeerError> {
        if self.failed {
            return Err(PeerError::Failed);
        }
        let r = self.open_inner(msg);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn open_inner(&mut self, msg: &Message) -> Result<Content, PeerError> {
        if msg.kind != Kind::Record {
            return Err(PeerError::Unexpected {
                got: msg.kind,
                state: "established",
            });
        }
        if self.got_close {
            return Err(PeerError::Closed);
        }
        let (counter, sealed) = msg
            .body
            .split_first_chunk::<8>()
            .ok_or(PeerError::Malformed("record"))?;
        let counter = u64::from_be_bytes(*counter);
        let expected = self.recv_counter;
        if counter < expected {
            return Err(PeerError::Replayed {
                expected,
                got: counter,
            });
        }
        if counter > expected {
            return Err(PeerError::OutOfOrder {
                expected,
                got: counter,
            });
        }
        let plain = Zeroizing::new(
            schedule::open(&self.recv, counter, &aad(counter), sealed)
                .ok_or(PeerError::RecordDecrypt)?,
        );
        self.recv_counter = expected.checked_add(1).ok_or(PeerError::CounterExhausted)?;
        match plain.split_first() {
            Some((&TYPE_DATA, payload)) if payload.len() <= MAX_PLAINTEXT => {
                Ok(Content::Data(payload.to_vec()))
            }
            Some((&TYPE_CLOSE, [])) => {
                self.got_close = true;
                Ok(Content::Close)
            }
            _ => Err(PeerError::Malformed("record content")),
        }
    }
}

fn aad(counter: u64) -> [u8; 9] {
    let mut a = [0u8; 9];
    a[0] = Kind::Record as u8;
    a[1..].copy_from_slice(&counter.to_be_bytes());
    a
}
