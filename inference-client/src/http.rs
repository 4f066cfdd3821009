//! HTTP/1.1 for one API call: the request's bytes, and a bounded parser for the response
//! (`Content-Length` or `chunked` bodies; nothing else is accepted).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// The largest response head (status line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// The largest response body.
pub const MAX_BODY: usize = 1024 * 1024;
/// The most bytes a response may take on the wire (head, body, chunk framing).
pub const MAX_RESPONSE: usize = MAX_HEAD + MAX_BODY + 64 * 1024;

/// Why a response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("response head is over {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("response is over {MAX_RESPONSE} bytes")]
    TooLarge,
    #[error("response body is over {MAX_BODY} bytes")]
    BodyTooLarge,
    #[error("malformed status line")]
    StatusLine,
    #[error("malformed header line")]
    Header,
    #[error("malformed chunked body")]
    Chunk,
    #[error("response has neither Content-Length nor chunked encoding")]
    NoLength,
    #[error("bytes follow the response")]
    Trailing,
}

/// `POST path` with a JSON body.
pub fn post_json(path: &str, host: &str, body: &[u8]) -> Vec<u8> {
    let mut head = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// `GET path`.
pub fn get(path: &str, host: &str) -> Vec<u8> {
    let mut head = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n"
    );
    head.into_bytes()
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The server said `Connection: close`.
    pub close: bool,
}

/// Collects a response's bytes (at most [`MAX_RESPONSE`]) until it is complete.
#[derive(Debug, Default)]
pub struct ResponseParser {
    buf: Vec<u8>,
}

impl ResponseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes from the connection; `Ok(Some)` once the response is complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Response>, HttpError> {
        // SECURITY: bounds what a proxy (or a relay that learned the key, if any) makes the
        // guest buffer.
        if self.buf.len() + bytes.len() > MAX_RESPONSE {
            return Err(HttpError::TooLarge);
        }
        self.buf.extend_from_slice(bytes);
        parse(&self.buf)
    }

    /// Whether nothing has been received yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Parses a complete response in `buf`: `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<Response>, HttpError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(HttpError::HeadTooLarge);
        }
        return Ok(None);
    };
    if head_end > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    let head = parse_head(&buf[..head_end])?;
    let (status, length, chunked, close) = (head.status, head.length, head.chunked, head.close);
    let rest = &buf[head_end + 4..];
    let body = if chunked {
        match dechunk(rest)? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else {
        let n = length.ok_or(HttpError::NoLength)?;
        if n > MAX_BODY {
            return Err(HttpError::BodyTooLarge);
        }
        if rest.len() < n {
            return Ok(None);
        }
        if rest.len() > n {
            return Err(HttpError::Trailing);
        }
        rest.to_vec()
    };
    Ok(Some(Response {
        status,
        body,
        close,
    }))
}

/// A response head: status and the framing headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub status: u16,
    pub length: Option<usize>,
    pub chunked: bool,
    pub close: bool,
}

/// Parses a response head (without the final empty line).
pub(crate) fn parse_head(head: &[u8]) -> Result<Head, HttpError> {
    let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
    let status = status(lines.next().unwrap_or_default())?;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    for line in lines {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HttpError::Header)?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = ascii_usize(value, 10).ok_or(HttpError::Header)?;
            // SECURITY: two different lengths are a smuggling shape; refuse.
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::Header);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::Header);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            close = value.eq_ignore_ascii_case(b"close");
        }
    }
    if chunked && length.is_some() {
        return Err(HttpError::Header);
    }
    Ok(Head {
        status,
        length,
        chunked,
        close,
    })
}

fn status(line: &[u8]) -> Result<u16, HttpError> {
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))
        .ok_or(HttpError::StatusLine)?;
    let code = rest.get(..3).ok_or(HttpError::StatusLine)?;
    if rest.len() > 3 && rest[3] != b' ' {
        return Err(HttpError::StatusLine);
    }
    let n = ascii_usize(code, 10).ok_or(HttpError::StatusLine)?;
    u16::try_from(n)
        .ok()
        .filter(|n| (100..600).contains(n))
        .ok_or(HttpError::StatusLine)
}

/// The body of a complete chunked encoding in `buf`, `None` if incomplete.
fn dechunk(mut buf: &[u8]) -> Result<Option<Vec<u8>>, HttpError> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(buf, b"\r\n") else {
            return if buf.len() > 1024 {
                Err(HttpError::Chunk)
            } else {
                Ok(None)
            };
        };
        let line = &buf[..eol];
        // Chunk extensions (";name=value") are allowed and ignored.
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = ascii_usize(trim(size), 16).ok_or(HttpError::Chunk)?;
        buf = &buf[eol + 2..];
        if size == 0 {
            // Trailers, then an empty line.
            let mut rest = buf;
            loop {
                let Some(eol) = find(rest, b"\r\n") else {
                    return Ok(None);
                };
                if eol == 0 {
                    rest = &rest[2..];
                    break;
                }
                rest = &rest[eol + 2..];
            }
            if !rest.is_empty() {
                return Err(HttpError::Trailing);
            }
            return Ok(Some(body));
        }
        if body.len() + size > MAX_BODY {
            return Err(HttpError::BodyTooLarge);
        }
        if buf.len() < size + 2 {
            return Ok(None);
        }
        if &buf[size..size + 2] != b"\r\n" {
            return Err(HttpError::Chunk);
        }
        body.extend_from_slice(&buf[..size]);
        buf = &buf[size + 2..];
    }
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Digits only (no sign, no spaces), at most 8 of them: no overflow, no giant values.
pub(crate) fn ascii_usize(s: &[u8], radix: u32) -> Option<usize> {
    if s.is_empty() || s.len() > 8 {
        return None;
    }
    s.iter().try_fold(0usize, |acc, &b| {
        let d = (b as char).to_digit(radix)?;
        Some(acc * radix as usize + d as usize)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_and_chunked() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: x\r\n\r\nhello";
        for n in 0..r.len() {
            assert_eq!(parse(&r[..n]), Ok(None), "prefix {n}");
        }
        assert_eq!(
            parse(r).unwrap().unwrap(),
            Response {
                status: 200,
                body: b"hello".to_vec(),
                close: false
            }
        );
        let c = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        for n in 0..c.len() {
            assert_eq!(parse(&c[..n]), Ok(None), "prefix {n}");
        }
        let resp = parse(c).unwrap().unwrap();
        assert_eq!(
            (resp.status, resp.body.as_slice(), resp.close),
            (404, &b"abcde"[..], true)
        );
    }

    #[test]
    fn refusals() {
        let cases: [(&[u8], HttpError); 8] = [
            (b"HTTP/1.1 200 OK\r\n\r\n", HttpError::NoLength),
            (
                b"HTTP/2 200\r\ncontent-length: 0\r\n\r\n",
                HttpError::StatusLine,
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nab",
                HttpError::Trailing,
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
                HttpError::Header,
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                HttpError::Header,
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\n",
                HttpError::BodyTooLarge,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                HttpError::Chunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nabc",
                HttpError::Chunk,
            ),
        ];
        for (input, err) in cases {
            assert_eq!(parse(input), Err(err), "{}", String::from_utf8_lossy(input));
        }
        let mut p = ResponseParser::new();
        assert_eq!(p.feed(&[b'a'; MAX_HEAD + 1]), Err(HttpError::HeadTooLarge));
        let mut p = ResponseParser::new();
        assert_eq!(
            p.feed(&alloc::vec![0; MAX_RESPONSE + 1]),
            Err(HttpError::TooLarge)
        );
    }

    #[test]
    fn request_bytes() {
        let r = post_json("/v1/chat/completions", "proxy", b"{}");
        assert_eq!(
            r,
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}
