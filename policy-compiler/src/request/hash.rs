//! The request's hash fields: 64 lowercase hex digits, nothing else.

/// Hex digit values; 0xff for bytes that are not lowercase hex digits.
const LOWER_HEX: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// A SHA-256 as exactly 64 lowercase hex digits (no prefix, no sign, no other case): the
/// request form, branch-free over the digits.
pub(super) fn strict_hash(s: &str) -> Option<[u8; 32]> {
    let digits: &[u8; 64] = s.as_bytes().try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (hi, lo) = (
            LOWER_HEX[usize::from(pair[0])],
            LOWER_HEX[usize::from(pair[1])],
        );
        bad |= hi | lo;
        *byte = (hi << 4) | lo;
    }
    (bad & 0xf0 == 0).then_some(out)
}
