//! A streamed chat completion, parsed as it arrives: the HTTP/1.1 head, then the body
//! (`chunked` or `Content-Length`) decoded incrementally, then its server-sent events
//! (`data: {chat.completion.chunk}` … `data: [DONE]`). Text comes out as soon as a whole
//! event is in; nothing waits for the end of the response. Every buffer is bounded:
//! the head by [`http::MAX_HEAD`], one event line by [`MAX_EVENT_LINE`], the text of one
//! answer by [`http::MAX_BODY`], the response's bytes on the wire by [`http::MAX_RESPONSE`].
//!
//! A response other than 200 is collected whole and becomes the proxy's API error (the
//! session lives on); a malformed frame or event is a protocol error (the session ends).

use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::http::{self, HttpError, ResponseParser};
use crate::{ClientError, parse_answer};

/// The longest line of the event stream (one `data:` line holds one JSON chunk: a few
/// tokens' text and its envelope).
pub const MAX_EVENT_LINE: usize = 64 * 1024;

/// The end of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEnd {
    /// The proxy's count of completion tokens (from the usage chunk), when it sent one.
    pub completion_tokens: Option<u32>,
    /// `stop` or `length`, when the proxy said.
    pub finish_reason: Option<String>,
}

/// Where the body decoder is.
#[derive(Debug)]
enum Body {
    /// Bytes left of a `Content-Length` body.
    Length(usize),
    /// A chunk-size line so far.
    Size(Vec<u8>),
    /// Bytes left of the current chunk's data.
    Data(usize),
    /// How much of the CRLF after a chunk's data was seen.
    DataEnd(usize),
    /// Trailer lines after the last chunk; the current line so far.
    Trailer(Vec<u8>),
    Done,
}

#[derive(Debug)]
enum State {
    /// The head so far.
    Head(Vec<u8>),
    /// A non-200 answer, collected whole.
    Whole(ResponseParser),
    /// 200: the event stream.
    Events(Body),
}

/// One streamed response (see the module docs).
#[derive(Debug)]
pub struct StreamParser {
    state: State,
    /// Bytes received for this response (head, framing, body).
    total: usize,
    /// The event line being received.
    line: Vec<u8>,
    /// Bytes of text handed out so far.
    text_len: usize,
    done_marker: bool,
    end: StreamEnd,
    /// The proxy said `Connection: close`.
    pub close: bool,
}

impl Default for StreamParser {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`StreamParser::feed`] found.
pub type Finished = Option<Result<StreamEnd, ClientError>>;

#[derive(Deserialize)]
struct ChunkJson {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<crate::Usage>,
    error: Option<crate::ApiErrorBody>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
}

impl StreamParser {
    pub fn new() -> Self {
        Self {
            state: State::Head(Vec::new()),
            total: 0,
            line: Vec::new(),
            text_len: 0,
            done_marker: false,
            end: StreamEnd {
                completion_tokens: None,
                finish_reason: None,
            },
            close: false,
        }
    }

    /// Bytes from the connection: new text is appended to `text`. `Ok(Some(..))` once the
    /// response is complete (the answer's end, or the proxy's API error); `Err` for a
    /// protocol error (the connection cannot go on).
    pub fn feed(&mut self, bytes: &[u8], text: &mut String) -> Result<Finished, ClientError> {
        // SECURITY: bounds what a proxy makes the guest process for one answer.
        self.total = self
            .total
            .checked_add(bytes.len())
            .filter(|&t| t <= http::MAX_RESPONSE)
            .ok_or(ClientError::Http(HttpError::TooLarge))?;
        match &mut self.state {
            State::Head(head) => {
                head.extend_from_slice(bytes);
                let Some(end) = http::find(head, b"\r\n\r\n") else {
                    if head.len() > http::MAX_HEAD {
                        return Err(ClientError::Http(HttpError::HeadTooLarge));
                    }
                    return Ok(None);
                };
                if end > http::MAX_HEAD {
                    return Err(ClientError::Http(HttpError::HeadTooLarge));
                }
                let parsed = http::parse_head(&head[..end]).map_err(ClientError::Http)?;
                self.close = parsed.close;
                if parsed.status != 200 {
                    // The whole error response, then the proxy's message.
                    let all = core::mem::take(head);
                    let mut whole = ResponseParser::new();
                    let done = whole.feed(&all).map_err(ClientError::Http)?;
                    self.state = State::Whole(whole);
                    return Ok(done.map(|r| parse_answer(&r).map(|_| self.end.clone())));
                }
                let body = if parsed.chunked {
                    Body::Size(Vec::new())
                } else {
                    let n = parsed
                        .length
                        .ok_or(ClientError::Http(HttpError::NoLength))?;
                    if n > http::MAX_BODY {
                        return Err(ClientError::Http(HttpError::BodyTooLarge));
                    }
                    if n == 0 { Body::Done } else { Body::Length(n) }
                };
                let rest = head.split_off(end + 4);
                self.state = State::Events(body);
                self.body(&rest, text)
            }
            State::Whole(whole) => {
                let done = whole.feed(bytes).map_err(ClientError::Http)?;
                Ok(done.map(|r| parse_answer(&r).map(|_| self.end.clone())))
            }
            State::Events(_) => self.body(bytes, text),
        }
    }

    /// Decodes body framing from `bytes`; the body's bytes go to the event parser.
    fn body(&mut self, mut bytes: &[u8], text: &mut String) -> Result<Finished, ClientError> {
        let chunk_err = || ClientError::Http(HttpError::Chunk);
        while !bytes.is_empty() {
            let State::Events(body) = &mut self.state else {
                return Err(ClientError::TlsState("stream parser state"));
            };
            match body {
                Body::Length(left) | Body::Data(left) => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    let data = &bytes[..n];
                    bytes = &bytes[n..];
                    if *left == 0 {
                        *body = match body {
                            Body::Length(_) => Body::Done,
                            _ => Body::DataEnd(0),
                        };
                    }
                    self.events(data, text)?;
                }
                Body::Size(line) => {
                    let (b, rest) = (bytes[0], &bytes[1..]);
                    bytes = rest;
                    if b != b'\n' {
                        if line.len() >= 1024 {
                            return Err(chunk_err());
                        }
                        line.push(b);
                        continue;
                    }
                    let l = line.strip_suffix(b"\r").ok_or_else(chunk_err)?;
                    // Chunk extensions (";name=value") are allowed and ignored.
                    let size = l.split(|&b| b == b';').next().unwrap_or_default();
                    let size = http::ascii_usize(http::trim(size), 16).ok_or_else(chunk_err)?;
                    *body = if size == 0 {
                        Body::Trailer(Vec::new())
                    } else {
                        Body::Data(size)
                    };
                }
                Body::DataEnd(seen) => {
                    if bytes[0] != b"\r\n"[*seen] {
                        return Err(chunk_err());
                    }
                    bytes = &bytes[1..];
                    *seen += 1;
                    if *seen == 2 {
                        *body = Body::Size(Vec::new());
                    }
                }
                Body::Trailer(line) => {
                    let (b, rest) = (bytes[0], &bytes[1..]);
                    bytes = rest;
                    if b != b'\n' {
                        if line.len() >= 1024 {
                            return Err(chunk_err());
                        }
                        line.push(b);
                        continue;
                    }
                    if line.as_slice() == b"\r" || line.is_empty() {
                        *body = Body::Done;
                    } else {
                        line.clear();
                    }
                }
                Body::Done => return Err(ClientError::Http(HttpError::Trailing)),
            }
        }
        if matches!(self.state, State::Events(Body::Done)) {
            return Ok(Some(self.finish()));
        }
        Ok(None)
    }

    /// Splits body bytes into event-stream lines.
    fn events(&mut self, mut data: &[u8], text: &mut String) -> Result<(), ClientError> {
        while !data.is_empty() {
            let (piece, rest, full) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &[][..], false),
            };
            data = rest;
            if self.line.len() + piece.len() > MAX_EVENT_LINE {
                return Err(ClientError::Answer("an event line is over the limit"));
            }
            self.line.extend_from_slice(piece);
            if full {
                let line = core::mem::take(&mut self.line);
                self.line_done(line.strip_suffix(b"\r").unwrap_or(&line), text)?;
            }
        }
        Ok(())
    }

    /// One event-stream line: `data:` lines carry the chunks; other fields, comments and
    /// the empty lines between events carry nothing here.
    fn line_done(&mut self, line: &[u8], text: &mut String) -> Result<(), ClientError> {
        let Some(data) = line.strip_prefix(b"data:") else {
            return Ok(());
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if self.done_marker {
            return Err(ClientError::Answer("data after [DONE]"));
        }
        if data == b"[DONE]" {
            self.done_marker = true;
            return Ok(());
        }
        let chunk: ChunkJson = serde_json::from_slice(data)
            .map_err(|_| ClientError::Answer("a stream event is not a completion chunk"))?;
        if let Some(e) = chunk.error {
            return Err(ClientError::Api {
                status: 200,
                message: crate::cut_message(e.message),
            });
        }
        if let Some(u) = chunk.usage {
            self.end.completion_tokens = Some(u.completion_tokens);
        }
        if let Some(choice) = chunk.choices.into_iter().next() {
            if let Some(reason) = choice.finish_reason {
                self.end.finish_reason = Some(crate::cut_message(reason));
            }
            if let Some(piece) = choice.delta.and_then(|d| d.content) {
                self.text_len = self
                    .text_len
                    .checked_add(piece.len())
                    .filter(|&n| n <= http::MAX_BODY)
                    .ok_or(ClientError::Http(HttpError::BodyTooLarge))?;
                text.push_str(&piece);
            }
        }
        Ok(())
    }

    /// The body is complete: the answer ends well only after `[DONE]`.
    fn finish(&mut self) -> Result<StreamEnd, ClientError> {
        if !self.line.is_empty() {
            let line = core::mem::take(&mut self.line);
            let mut ignored = String::new();
            self.line_done(&line, &mut ignored)?;
        }
        if !self.done_marker {
            return Err(ClientError::Answer("the stream ended without [DONE]"));
        }
        Ok(self.end.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    fn sse(pieces: &[&str]) -> Vec<u8> {
        let mut events = String::new();
        events.push_str("data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n");
        for p in pieces {
            events.push_str(&format!(
                "data: {}\n\n",
                serde_json::json!({"choices": [{"delta": {"content": p}}]})
            ));
        }
        events.push_str("data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n");
        events.push_str(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\n",
        );
        events.push_str("data: [DONE]\n\n");
        let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for part in events.as_bytes().chunks(37) {
            out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[test]
    fn text_comes_out_as_it_arrives_whatever_the_cuts() {
        let wire = sse(&["Blue", " sky", " é"]);
        for step in [1, 2, 7, 64, wire.len()] {
            let mut p = StreamParser::new();
            let mut text = String::new();
            let mut end = None;
            for (i, piece) in wire.chunks(step).enumerate() {
                assert!(end.is_none(), "bytes after the end at piece {i}");
                end = p.feed(piece, &mut text).unwrap();
            }
            assert_eq!(text, "Blue sky é", "step {step}");
            assert_eq!(
                end.unwrap().unwrap(),
                StreamEnd {
                    completion_tokens: Some(3),
                    finish_reason: Some("length".to_string())
                }
            );
        }
    }

    #[test]
    fn the_first_text_is_out_before_the_response_ends() {
        let wire = sse(&["Blue", " sky"]);
        let at = wire.windows(4).position(|w| w == b"Blue").unwrap();
        let mut p = StreamParser::new();
        let mut text = String::new();
        // Up to the end of the first content event's line.
        let line_end = at + wire[at..].iter().position(|&b| b == b'\n').unwrap() + 1;
        assert!(p.feed(&wire[..line_end], &mut text).unwrap().is_none());
        assert_eq!(text, "Blue");
    }

    #[test]
    fn an_api_error_is_an_answer_and_framing_errors_are_fatal() {
        let body = r#"{"error":{"message":"prompt too long","type":"x","param":null,"code":"c"}}"#;
        let wire = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut p = StreamParser::new();
        let mut text = String::new();
        match p.feed(wire.as_bytes(), &mut text) {
            Ok(Some(Err(ClientError::Api {
                status: 400,
                message,
            }))) => {
                assert_eq!(message, "prompt too long")
            }
            other => panic!("{other:?}"),
        }
        let bad: [&[u8]; 5] = [
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcXY",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\ndata: {nope\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n\n\nextra",
        ];
        for wire in bad {
            let mut p = StreamParser::new();
            let mut text = String::new();
            assert!(
                p.feed(wire, &mut text).is_err(),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        // A stream that ends without [DONE] is a failed answer, not a protocol error.
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let mut p = StreamParser::new();
        assert!(matches!(
            p.feed(cut, &mut text),
            Ok(Some(Err(ClientError::Answer(_))))
        ));
    }

    #[test]
    fn bounds_hold() {
        let mut p = StreamParser::new();
        let mut text = String::new();
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n";
        assert!(p.feed(head, &mut text).unwrap().is_none());
        let long = alloc::vec![b'a'; MAX_EVENT_LINE + 1];
        assert!(matches!(
            p.feed(&long, &mut text),
            Err(ClientError::Answer(_))
        ));
        let mut p = StreamParser::new();
        assert!(matches!(
            p.feed(&alloc::vec![b'x'; http::MAX_RESPONSE + 1], &mut text),
            Err(ClientError::Http(HttpError::TooLarge))
        ));
    }
}
