use alloc::vec::Vec;

use crate::PerStream;
use crate::WireError;
use crate::frame::{Frame, Kind, Stream};

/// Default limit on one reassembled message.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Joins Data frames into messages, per stream, checking sequence numbers.
#[derive(Debug)]
pub struct Reassembler {
    parts: PerStream<Vec<u8>>,
    expect: PerStream<u32>,
    /// Dropping the rest of an over-long or broken message until its END frame.
    discarding: PerStream<bool>,
    max: usize,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(MAX_MESSAGE)
    }
}

impl Reassembler {
    pub fn new(max_message: usize) -> Self {
        Reassembler {
            parts: Default::default(),
            expect: Default::default(),
            discarding: Default::default(),
            max: max_message,
        }
    }

    /// Feeds a Data frame. `Ok(Some(msg))` when it completes a message; `Ok(None)` if more
    /// frames are needed; errors drop the partial message of that stream. Non-Data frames
    /// are ignored (`Ok(None)`).
    pub fn push(&mut self, frame: &Frame<'_>) -> Result<Option<(Stream, Vec<u8>)>, WireError> {
        if frame.header.kind != Kind::Data {
            return Ok(None);
        }
        let s = frame.header.stream;
        let i = s;
        let seq = frame.header.seq;
        if seq != self.expect[i] {
            let expected = self.expect[i];
            self.expect[i] = seq.wrapping_add(1);
            self.parts[i].clear();
            // Frames were lost: the partial message and the frame at the gap are dropped,
            // and if that frame is not an END frame, the rest of its message as well.
            self.discarding[i] = !frame.is_end();
            return Err(WireError::SeqGap {
                stream: s,
                expected,
                got: seq,
            });
        }
        self.expect[i] = seq.wrapping_add(1);
        if self.discarding[i] {
            if frame.is_end() {
                self.discarding[i] = false;
            }
            return Ok(None);
        }
        // SECURITY: bounded reassembly.
        if self.parts[i].len() + frame.payload.len() > self.max {
            self.parts[i] = Vec::new();
            self.discarding[i] = !frame.is_end();
            return Err(WireError::MessageTooLarge(s));
        }
        let part = &mut self.parts[i];
        let need = part.len() + frame.payload.len();
        if need > part.capacity() {
            // Doubling as `Vec` would, but never past the limit: a message of the maximum
            // size holds at most `max` bytes, not the next power of two.
            let target = (part.capacity() * 2).max(need).min(self.max);
            part.reserve_exact(target - part.len());
        }
        part.extend_from_slice(frame.payload);
        if frame.is_end() {
            Ok(Some((s, core::mem::take(&mut self.parts[i]))))
        } else {
            Ok(None)
        }
    }

    /// Bytes held for an incomplete message on `stream`.
    pub fn partial_len(&self, stream: Stream) -> usize {
        self.parts[stream].len()
    }
}
