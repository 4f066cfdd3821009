//! LEB128 varints, the same encoding postcard uses for unsigned integers.
//! Decoding is strict: canonical (shortest) encodings only, bounded length, no panics.

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    #[error("input ends inside a varint")]
    Truncated,
    #[error("varint is too large or not in shortest form")]
    Invalid,
}

/// Maximum encoded length of a u64.
pub const MAX_LEN: usize = 10;

/// Writes `v` into `out` (which must have room for [`MAX_LEN`] bytes); returns bytes written.
#[inline]
pub fn encode(mut v: u64, out: &mut [u8; MAX_LEN]) -> usize {
    let mut i = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out[i] = byte;
            return i + 1;
        }
        out[i] = byte | 0x80;
        i += 1;
    }
}

/// Encoded length of `v`.
pub fn len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Decodes a varint from the front of `input`; returns (value, bytes consumed).
pub fn decode(input: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut v: u64 = 0;
    for i in 0..MAX_LEN {
        let b = *input.get(i).ok_or(VarintError::Truncated)?;
        let part = u64::from(b & 0x7f);
        // SECURITY: the 10th byte may only carry the top bit of a u64.
        if i == MAX_LEN - 1 && part > 1 {
            return Err(VarintError::Invalid);
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            // SECURITY: reject non-canonical encodings (trailing zero groups), so every value
            // has exactly one byte representation and re-encoding reproduces the hashed bytes.
            if i > 0 && b == 0 {
                return Err(VarintError::Invalid);
            }
            return Ok((v, i + 1));
        }
    }
    Err(VarintError::Invalid)
}
