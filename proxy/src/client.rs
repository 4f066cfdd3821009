//! A minimal HTTP/1.1 client for the proxy's own tests and benchmark: one request per
//! connection, `Content-Length` or chunked responses, and server-sent events read as they
//! arrive (so time to first token is measured at the socket).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// A response: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> io::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(io::Error::other)
    }
}

/// Sends a request and reads the status line and headers; the reader is left at the body.
fn start(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> io::Result<(u16, bool, Option<usize>, BufReader<TcpStream>)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let (mut chunked, mut length) = (false, None);
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok();
        }
    }
    Ok((status, chunked, length, reader))
}

/// Reads one chunk of a chunked body (`None` at the last, empty one).
fn read_chunk(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16).map_err(
        |_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {line:?}"),
            )
        },
    )?;
    let mut data = vec![0; size];
    reader.read_exact(&mut data)?;
    let mut crlf = [0; 2];
    reader.read_exact(&mut crlf)?;
    Ok((size > 0).then_some(data))
}

/// One request, whole response.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> io::Result<Reply> {
    let (status, chunked, length, mut reader) = start(addr, method, path, body)?;
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader)? {
            body.extend_from_slice(&chunk);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Reply { status, body })
}

/// `POST /v1/chat/completions` with `stream: true`: calls `on_event` with each `data:`
/// payload as it arrives (including `[DONE]`); stops early (closing the connection) when
/// `on_event` returns false. Returns the HTTP status.
pub fn stream_chat(
    addr: SocketAddr,
    body: &serde_json::Value,
    mut on_event: impl FnMut(&str) -> bool,
) -> io::Result<u16> {
    let bytes = serde_json::to_vec(body)?;
    let (status, chunked, _, mut reader) = start(addr, "POST", "/v1/chat/completions", &bytes)?;
    if status != 200 || !chunked {
        return Ok(status);
    }
    let mut pending = Vec::new();
    while let Some(chunk) = read_chunk(&mut reader)? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            for line in text.lines() {
                if let Some(data) = line.strip_prefix("data: ")
                    && !on_event(data)
                {
                    return Ok(status);
                }
            }
        }
    }
    Ok(status)
}
