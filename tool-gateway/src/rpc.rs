//! JSON-RPC 2.0 lines: bounded reading, message builders and the error codes the gateway
//! answers the guest with.

use std::io::{BufRead, Read};

use serde_json::{Value, json};

// The limit and the codes are the guest↔gateway contract, defined once for both sides.
pub use omega_tool_protocol::{MAX_LINE, code};

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one line into `buf` (without its `\n`); `false` at the end of the input.
/// SECURITY: never buffers more than [`MAX_LINE`] + 1 bytes, whatever the peer sends.
pub fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<bool, LineError> {
    buf.clear();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    Ok(true)
}

/// Discards input up to and including the next `\n` (after a [`LineError::TooLong`]).
pub fn skip_line(r: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

/// A JSON-RPC request.
pub fn request(id: &Value, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// A JSON-RPC notification.
pub fn notification(method: &str, params: Option<Value>) -> Value {
    match params {
        Some(p) => json!({ "jsonrpc": "2.0", "method": method, "params": p }),
        None => json!({ "jsonrpc": "2.0", "method": method }),
    }
}

/// A JSON-RPC success response.
pub fn result(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A JSON-RPC error response.
pub fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// `s` cut to at most `max` bytes on a character boundary (for untrusted text in logs/errors).
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded() {
        let mut input = Vec::new();
        input.extend_from_slice(b"{\"a\":1}\r\n");
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend_from_slice(b"\nlast");
        let mut r = std::io::BufReader::new(&input[..]);
        let mut buf = Vec::new();
        assert!(read_line(&mut r, &mut buf).unwrap());
        assert_eq!(buf, b"{\"a\":1}");
        assert!(matches!(
            read_line(&mut r, &mut buf),
            Err(LineError::TooLong)
        ));
        assert!(buf.len() <= MAX_LINE + 1);
        skip_line(&mut r).unwrap();
        assert!(read_line(&mut r, &mut buf).unwrap());
        assert_eq!(buf, b"last");
        assert!(!read_line(&mut r, &mut buf).unwrap());
    }

    #[test]
    fn truncate_keeps_characters_whole() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
