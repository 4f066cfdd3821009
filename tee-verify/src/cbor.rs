//! A strict, bounded CBOR (RFC 8949) reader for the small subset attestation documents use.
//!
//! SECURITY: the document comes from the untrusted host. Only definite lengths, at most
//! [`MAX_DEPTH`] levels of nesting, every length checked against the bytes left, no floats,
//! and no allocation: items borrow from the input.

/// Deeper nesting than a Nitro document needs (it has 3 levels) is refused.
pub const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    #[error("CBOR input ends inside an item")]
    Truncated,
    #[error("CBOR item kind {0} is not supported (indefinite length, float or reserved)")]
    Unsupported(u8),
    #[error("CBOR nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("CBOR text is not UTF-8")]
    BadText,
    #[error("{0} trailing bytes after the CBOR item")]
    Trailing(usize),
}

/// One decoded item; arrays and maps keep their raw body and are walked on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Unsigned(u64),
    /// A negative integer, stored as `-1 - n`'s `n`.
    Negative(u64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Seq<'a>),
    Map(Seq<'a>),
    Tag(u64, &'a [u8]),
    Bool(bool),
    Null,
}

/// The items of an array (`len` items) or a map (`len` key/value pairs), still encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seq<'a> {
    pub len: u64,
    body: &'a [u8],
    depth: usize,
}

/// Decodes exactly one item that fills `input`.
pub fn decode(input: &[u8]) -> Result<Item<'_>, CborError> {
    let (item, rest) = item(input, 0)?;
    if !rest.is_empty() {
        return Err(CborError::Trailing(rest.len()));
    }
    Ok(item)
}

fn take(input: &[u8], n: u64) -> Result<(&[u8], &[u8]), CborError> {
    let n = usize::try_from(n).map_err(|_| CborError::Truncated)?;
    if n > input.len() {
        return Err(CborError::Truncated);
    }
    Ok(input.split_at(n))
}

fn head(input: &[u8]) -> Result<(u8, u64, &[u8]), CborError> {
    let (&first, rest) = input.split_first().ok_or(CborError::Truncated)?;
    let major = first >> 5;
    let info = first & 0x1f;
    let (arg, rest) = match info {
        0..=23 => (u64::from(info), rest),
        24..=27 => {
            let (bytes, rest) = take(rest, 1 << (info - 24))?;
            (
                bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
                rest,
            )
        }
        _ => return Err(CborError::Unsupported(first)),
    };
    Ok((major, arg, rest))
}

fn item(input: &[u8], depth: usize) -> Result<(Item<'_>, &[u8]), CborError> {
    if depth > MAX_DEPTH {
        return Err(CborError::TooDeep);
    }
    let (major, arg, rest) = head(input)?;
    match major {
        0 => Ok((Item::Unsigned(arg), rest)),
        1 => Ok((Item::Negative(arg), rest)),
        2 => {
            let (bytes, rest) = take(rest, arg)?;
            Ok((Item::Bytes(bytes), rest))
        }
        3 => {
            let (bytes, rest) = take(rest, arg)?;
            let text = core::str::from_utf8(bytes).map_err(|_| CborError::BadText)?;
            Ok((Item::Text(text), rest))
        }
        4 | 5 => {
            // Walk the body once to find where it ends (and reject anything malformed in it).
            let count = if major == 5 {
                arg.checked_mul(2).ok_or(CborError::Truncated)?
            } else {
                arg
            };
            // SECURITY: every item takes at least one byte, so a count above the bytes left is
            // a lie; refusing it early bounds the walk by the input size.
            if count > rest.len() as u64 {
                return Err(CborError::Truncated);
            }
            let mut cursor = rest;
            for _ in 0..count {
                cursor = item(cursor, depth + 1)?.1;
            }
            let used = rest.len() - cursor.len();
            let seq = Seq {
                len: arg,
                body: &rest[..used],
                depth: depth + 1,
            };
            Ok((
                if major == 4 {
                    Item::Array(seq)
                } else {
                    Item::Map(seq)
                },
                cursor,
            ))
        }
        6 => {
            let (_, after) = item(rest, depth + 1)?;
            let used = rest.len() - after.len();
            Ok((Item::Tag(arg, &rest[..used]), after))
        }
        _ => match (arg, input[0]) {
            (20, _) => Ok((Item::Bool(false), rest)),
            (21, _) => Ok((Item::Bool(true), rest)),
            (22, _) => Ok((Item::Null, rest)),
            (_, first) => Err(CborError::Unsupported(first)),
        },
    }
}

impl<'a> Seq<'a> {
    /// The array's items in order.
    pub fn items(&self) -> SeqIter<'a> {
        SeqIter {
            rest: self.body,
            depth: self.depth,
        }
    }

    /// The map's (key, value) pairs in order.
    pub fn pairs(&self) -> impl Iterator<Item = (Item<'a>, Item<'a>)> {
        let mut items = self.items();
        core::iter::from_fn(move || Some((items.next()?, items.next()?)))
    }
}

/// Items of an already validated sequence body.
pub struct SeqIter<'a> {
    rest: &'a [u8],
    depth: usize,
}

impl<'a> Iterator for SeqIter<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        // The body was fully decoded once when the sequence was read, so this cannot fail;
        // an error here would only end the iteration early.
        let (item, rest) = item(self.rest, self.depth).ok()?;
        self.rest = rest;
        Some(item)
    }
}

impl<'a> Item<'a> {
    /// The tagged item's content, decoded.
    pub fn untag(self) -> Item<'a> {
        match self {
            Item::Tag(_, body) => decode(body).unwrap_or(Item::Null),
            other => other,
        }
    }
}

/// The encoding of a byte string header + body, as COSE's `Sig_structure` needs.
pub fn encode_bytes(out: &mut alloc::vec::Vec<u8>, bytes: &[u8]) {
    encode_head(out, 2, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The shortest head for `major` with argument `arg` (RFC 8949 §4.2.1 preferred encoding).
pub fn encode_head(out: &mut alloc::vec::Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_nested_items_and_refuses_lies() {
        // {1: [h'0102', "a", null, -3]}
        let doc = [0xa1, 0x01, 0x84, 0x42, 0x01, 0x02, 0x61, b'a', 0xf6, 0x22];
        let Item::Map(map) = decode(&doc).unwrap() else {
            panic!("not a map")
        };
        let (k, v) = map.pairs().next().unwrap();
        assert_eq!(k, Item::Unsigned(1));
        let Item::Array(arr) = v else {
            panic!("not an array")
        };
        let items: alloc::vec::Vec<_> = arr.items().collect();
        assert_eq!(
            items,
            [
                Item::Bytes(&[1, 2]),
                Item::Text("a"),
                Item::Null,
                Item::Negative(2)
            ]
        );
        for cut in 0..doc.len() {
            assert!(
                decode(&doc[..cut]).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
        assert_eq!(decode(&[0x01, 0x00]), Err(CborError::Trailing(1)));
        // A byte string claiming 2^64-1 bytes, an array claiming 2^32 items.
        assert_eq!(
            decode(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(CborError::Truncated)
        );
        assert_eq!(
            decode(&[0x9a, 0xff, 0xff, 0xff, 0xff]),
            Err(CborError::Truncated)
        );
        assert_eq!(
            decode(&[0x5f]),
            Err(CborError::Unsupported(0x5f)),
            "indefinite length"
        );
        assert_eq!(
            decode(&[0xfb, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(CborError::Unsupported(0xfb)),
            "float"
        );
        let deep = [0x81u8; 20];
        assert_eq!(decode(&deep), Err(CborError::TooDeep));
    }

    #[test]
    fn encodes_preferred_heads() {
        let mut out = alloc::vec::Vec::new();
        for (arg, want) in [
            (0u64, &[0x40][..]),
            (24, &[0x58, 24]),
            (256, &[0x59, 1, 0]),
            (70000, &[0x5a, 0, 1, 0x11, 0x70]),
        ] {
            out.clear();
            encode_head(&mut out, 2, arg);
            assert_eq!(out, want);
        }
    }
}
