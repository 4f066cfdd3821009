use crate::WireError;
use crate::crc32c::crc32c;
use crate::frame::{Frame, MAX_FRAME, MAX_HEADER, SYNC, check_kind_rules, decode_header};

/// Default decoder buffer: exactly one largest frame.
pub const DECODER_BUF: usize = MAX_FRAME;

/// Counters for diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    pub frames: u64,
    pub errors: u64,
    /// Bytes dropped while resynchronising.
    pub skipped: u64,
}

/// Incremental frame decoder with a fixed buffer of `N` bytes (no allocation).
///
/// Feed it with [`Decoder::push`] (any slicing of the stream) and drain it with
/// [`Decoder::next_frame`] until `None`. After `None`, `push` accepts at least one byte of
/// non-empty input, so the loop "push, then next_frame until None" always makes progress.
///
/// SECURITY: everything in the buffer is untrusted. No input makes it panic, allocate, or
/// stop making progress: every error drops at least one byte, and a frame's length is
/// bounded by [`MAX_FRAME`] ≤ `N` before the decoder waits for it.
pub struct Decoder<const N: usize = DECODER_BUF> {
    buf: [u8; N],
    start: usize,
    end: usize,
    stats: DecoderStats,
}

impl<const N: usize> Default for Decoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Decoder<N> {
    const BIG_ENOUGH: () = assert!(N >= MAX_FRAME, "decoder buffer must hold one MAX_FRAME");

    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::BIG_ENOUGH;
        Decoder {
            buf: [0; N],
            start: 0,
            end: 0,
            stats: DecoderStats {
                frames: 0,
                errors: 0,
                skipped: 0,
            },
        }
    }

    /// Copies as much of `data` as fits and returns how many bytes were taken.
    pub fn push(&mut self, data: &[u8]) -> usize {
        if self.start > 0 && (self.end == N || self.start == self.end || self.start >= N / 2) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = data.len().min(N - self.end);
        self.buf[self.end..self.end + n].copy_from_slice(&data[..n]);
        self.end += n;
        n
    }

    /// Drops everything buffered (the peer's connection was replaced); the counts stay.
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Bytes buffered but not yet returned as a frame or skipped.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// At end of input: `Err(Truncated)` if a partial frame (or partial marker) is left.
    /// Clears the buffer either way.
    pub fn finish(&mut self) -> Result<(), WireError> {
        let left = self.pending();
        self.start = 0;
        self.end = 0;
        if left > 0 {
            Err(WireError::Truncated(left))
        } else {
            Ok(())
        }
    }

    /// Gives up on the partial frame at the front (call it when the stream has been idle
    /// for a while with [`Decoder::pending`] > 0): drops one byte and lets the next
    /// [`Decoder::next_frame`] rescan. Needed after a truncated frame whose header claims
    /// more bytes than the peer will send: without it the decoder waits for them (it cannot
    /// tell truncation from a slow sender). Returns `Truncated` if anything was pending.
    pub fn resync(&mut self) -> Option<WireError> {
        let left = self.pending();
        if left == 0 {
            return None;
        }
        // SECURITY: same rule as every other failure: drop one byte, rescan.
        self.skip(1);
        self.stats.errors += 1;
        Some(WireError::Truncated(left))
    }

    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Next frame or error; `None` when more input is needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame<'_>, WireError>> {
        match self.scan() {
            None => None,
            Some(Err(e)) => {
                self.stats.errors += 1;
                Some(Err(e))
            }
            Some(Ok((hdr, pstart, plen, total))) => {
                self.stats.frames += 1;
                let base = self.start;
                self.start += total;
                Some(Ok(Frame {
                    header: hdr,
                    payload: &self.buf[base + pstart..base + pstart + plen],
                }))
            }
        }
    }

    /// Drops `n` bytes at the front as garbage.
    fn skip(&mut self, n: usize) {
        self.start += n;
        self.stats.skipped += n as u64;
    }

    /// Returns (header, payload offset, payload len, frame len) relative to `start`.
    #[allow(clippy::type_complexity)]
    fn scan(&mut self) -> Option<Result<(crate::Header, usize, usize, usize), WireError>> {
        let avail = &self.buf[self.start..self.end];
        if avail.is_empty() {
            return None;
        }
        // Find the marker.
        match find_sync(avail) {
            Some(0) => {}
            Some(k) => {
                self.skip(k);
                return Some(Err(WireError::Garbage { skipped: k }));
            }
            None => {
                // Keep a tail that could be the start of a marker split across pushes.
                let keep = partial_sync_suffix(avail);
                let k = avail.len() - keep;
                if k == 0 {
                    return None;
                }
                self.skip(k);
                return Some(Err(WireError::Garbage { skipped: k }));
            }
        }
        let s = SYNC.len();
        if avail.len() < s + 1 {
            return None;
        }
        let hlen = avail[s] as usize;
        // SECURITY: every failure below drops one byte (the marker's first) and rescans, so a
        // marker-like pattern inside garbage or a lying header can never hide a good frame
        // that follows, nor make the decoder wait for more than MAX_FRAME bytes.
        if hlen == 0 || hlen > MAX_HEADER {
            self.skip(1);
            return Some(Err(WireError::HeaderLength(hlen as u8)));
        }
        let hend = s + 1 + hlen;
        if avail.len() < hend + 4 {
            return None;
        }
        let hcrc = u32::from_le_bytes(avail[hend..hend + 4].try_into().unwrap_or([0; 4]));
        if crc32c(&avail[s..hend]) != hcrc {
            self.skip(1);
            return Some(Err(WireError::HeaderCrc));
        }
        let hdr = match decode_header(&avail[s + 1..hend]) {
            Ok(h) => h,
            Err(e) => {
                self.skip(1);
                return Some(Err(e));
            }
        };
        let plen = hdr.len as usize; // ≤ MAX_PAYLOAD, checked by decode_header
        let pstart = hend + 4;
        let total = pstart + plen + 4;
        if avail.len() < total {
            return None;
        }
        let crc = u32::from_le_bytes(avail[total - 4..total].try_into().unwrap_or([0; 4]));
        if crc32c(&avail[s..total - 4]) != crc {
            self.skip(1);
            return Some(Err(WireError::Crc));
        }
        // The frame is intact but its kind rules are broken: drop the whole frame.
        if let Err(e) = check_kind_rules(&hdr) {
            self.skip(total);
            return Some(Err(e));
        }
        Some(Ok((hdr, pstart, plen, total)))
    }
}

fn find_sync(hay: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + SYNC.len() <= hay.len() {
        match hay[i..].iter().position(|&b| b == SYNC[0]) {
            None => return None,
            Some(p) => {
                i += p;
                if i + SYNC.len() <= hay.len() && hay[i..i + SYNC.len()] == SYNC {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// Length of the longest proper suffix of `hay` that is a prefix of SYNC.
fn partial_sync_suffix(hay: &[u8]) -> usize {
    (1..SYNC.len())
        .rev()
        .find(|&k| k <= hay.len() && hay[hay.len() - k..] == SYNC[..k])
        .unwrap_or(0)
}
