//! One safe function per host call: encode the request, call, fetch a long response or an
//! error's detail with `result_take`, decode.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use omega_agent_abi::{
    self as abi, DataReadRequest, DataReadResponse, ErrorCode, HostError, InferChunk,
    InferNextRequest, InferRequest, InferResponse, Level, LogRequest, ToolCallRequest,
    ToolCallResponse, decode_return,
};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::sys::{self, Func};

/// Size of the first response buffer; a longer response is fetched at its exact length.
const FIRST_BUFFER: usize = 1024;
/// Size of the first buffer for an error's detail (a rule name or a short reason).
const DETAIL_BUFFER: usize = 256;

/// Why [`finish`] has no response.
enum Failure {
    Code(ErrorCode),
    Protocol,
}

/// The response of a call that returned `ret` into `out`, fetching it with `result_take`
/// when the monitor held it for being longer than `out`.
fn finish(ret: i32, mut out: Vec<u8>) -> Result<Vec<u8>, Failure> {
    let len = decode_return(ret).map_err(Failure::Code)? as usize;
    if len > out.len() {
        if len > abi::MAX_RESPONSE {
            return Err(Failure::Protocol);
        }
        out.resize(len, 0);
        let again = decode_return(sys::result_take(&mut out)).map_err(Failure::Code)?;
        if again as usize != len {
            return Err(Failure::Protocol);
        }
    }
    out.truncate(len);
    Ok(out)
}

/// The error behind `code`, with the detail the monitor holds for it (the denying rule).
fn detail(code: ErrorCode) -> Error {
    let mut buf = vec![0; DETAIL_BUFFER];
    let ret = sys::result_take(&mut buf);
    finish(ret, buf)
        .ok()
        .and_then(|bytes| abi::decode::<HostError<'_>>(&bytes).ok().map(Error::from))
        .filter(|e| e.code() == Some(code))
        .unwrap_or_else(|| Error::from_code(code))
}

fn failed(failure: Failure) -> Error {
    match failure {
        Failure::Code(code) => detail(code),
        Failure::Protocol => Error::Protocol,
    }
}

/// `func(request)`: the encoded response bytes.
pub(crate) fn request<T: Serialize + ?Sized>(func: Func, request: &T) -> Result<Vec<u8>, Error> {
    let args = postcard::to_allocvec(request).map_err(|_| Error::BadRequest)?;
    let mut out = vec![0; FIRST_BUFFER];
    let ret = sys::call(func, &args, &mut out);
    finish(ret, out).map_err(failed)
}

/// A response, decoded whole (the ABI's one encoding).
pub(crate) fn decode<'a, T: Deserialize<'a> + Serialize>(bytes: &'a [u8]) -> Result<T, Error> {
    abi::decode(bytes).map_err(|_| Error::Protocol)
}

/// A call whose response is empty.
fn no_response(bytes: Vec<u8>) -> Result<(), Error> {
    if bytes.is_empty() {
        Ok(())
    } else {
        Err(Error::Protocol)
    }
}

/// Asks `model` (a model the policy declares) to complete `prompt`; policy action `infer`.
pub fn infer(model: &str, prompt: &str, max_tokens: u32) -> Result<String, Error> {
    let req = InferRequest {
        model,
        prompt,
        max_tokens,
    };
    let bytes = request(Func::Infer, &req)?;
    Ok(decode::<InferResponse<'_>>(&bytes)?.text.into())
}

/// Asks `model` to complete `prompt` and streams the answer: policy action `infer`, decided
/// and logged as [`infer`] is, before anything leaves. The returned [`InferStream`] yields
/// the text as the model generates it.
///
/// ```no_run
/// let mut answer = omega_sdk::infer_stream("local_llm", "Name a colour.", 64)?;
/// while let Some(text) = answer.next_text()? {
///     omega_sdk::info!("{text}");
/// }
/// # Ok::<(), omega_sdk::Error>(())
/// ```
pub fn infer_stream(model: &str, prompt: &str, max_tokens: u32) -> Result<InferStream, Error> {
    let req = InferRequest {
        model,
        prompt,
        max_tokens,
    };
    let bytes = request(Func::InferStream, &req)?;
    let handle: abi::InferStream = decode(&bytes)?;
    Ok(InferStream {
        handle: handle.stream,
        done: false,
        completion_tokens: None,
    })
}

/// An answer being generated ([`infer_stream`]).
#[derive(Debug)]
pub struct InferStream {
    handle: u64,
    done: bool,
    completion_tokens: Option<u32>,
}

impl InferStream {
    /// The text that arrived since the previous call (waiting until some does), `None`
    /// once the answer is complete. All tokens that arrived meanwhile come in one piece.
    /// An error (the proxy session broke) ends the stream.
    pub fn next_text(&mut self) -> Result<Option<String>, Error> {
        while !self.done {
            let bytes = match request(
                Func::InferNext,
                &InferNextRequest {
                    stream: self.handle,
                },
            ) {
                Ok(bytes) => bytes,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            let chunk: InferChunk<'_> = decode(&bytes)?;
            if chunk.done {
                self.done = true;
                self.completion_tokens = chunk.completion_tokens;
            }
            if !chunk.text.is_empty() {
                return Ok(Some(chunk.text.into()));
            }
        }
        Ok(None)
    }

    /// The whole rest of the answer.
    pub fn collect(mut self) -> Result<String, Error> {
        let mut all = String::new();
        while let Some(text) = self.next_text()? {
            all.push_str(&text);
        }
        Ok(all)
    }

    /// The proxy's count of completion tokens, once the answer is complete (if it gave one).
    pub fn completion_tokens(&self) -> Option<u32> {
        self.completion_tokens
    }

    /// Whether the answer is complete (or failed).
    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// A tool's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    /// The tool reported an error (MCP `isError`); the call itself was carried out.
    pub is_error: bool,
    /// The MCP result content, JSON text. Labelled `untrusted` by the policy's `result`.
    pub content: String,
}

/// Calls the MCP tool `tool` (`server.tool`) with `arguments`, a JSON object text; policy
/// action `call` (its `args.…` conditions see the object's fields).
pub fn tool_call(tool: &str, arguments: &str) -> Result<ToolResult, Error> {
    let bytes = request(Func::ToolCall, &ToolCallRequest { tool, arguments })?;
    let r: ToolCallResponse<'_> = decode(&bytes)?;
    Ok(ToolResult {
        is_error: r.is_error,
        content: r.content.into(),
    })
}

/// Bytes of one item of a data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub data: Vec<u8>,
    /// Length of the whole item.
    pub total_len: u64,
}

/// Reads up to `max_len` bytes (at most [`abi::MAX_READ`]) of `path` in data source
/// `source` from `offset`; policy action `read`. The source's labels taint this agent.
pub fn data_read(source: &str, path: &str, offset: u64, max_len: u32) -> Result<Chunk, Error> {
    let req = DataReadRequest {
        source,
        path,
        offset,
        max_len,
    };
    let bytes = request(Func::DataRead, &req)?;
    let r: DataReadResponse<'_> = decode(&bytes)?;
    Ok(Chunk {
        data: r.data.into(),
        total_len: r.total_len,
    })
}

/// Reads the whole item `path` of data source `source`, [`abi::MAX_READ`] bytes a call.
pub fn read_to_end(source: &str, path: &str) -> Result<Vec<u8>, Error> {
    let mut all = Vec::new();
    loop {
        let chunk = data_read(source, path, all.len() as u64, abi::MAX_READ)?;
        all.extend_from_slice(&chunk.data);
        let read = all.len() as u64;
        if read == chunk.total_len {
            return Ok(all);
        }
        // An empty chunk before the end, or more bytes than the item has, would loop or
        // grow forever: the monitor broke the contract.
        if chunk.data.is_empty() || read > chunk.total_len {
            return Err(Error::Protocol);
        }
    }
}

/// Longest `text` that [`log`] sends: at most [`abi::MAX_LOG`] bytes, cut at a char boundary.
fn log_prefix(text: &str) -> &str {
    let mut end = text.len().min(abi::MAX_LOG);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Bytes of an encoded [`LogRequest`] around its text (variant tag and length prefix).
const LOG_OVERHEAD: usize = 8;

/// Sends one line to the host's log (cut to [`abi::MAX_LOG`] bytes). Allocates nothing,
/// so the panic handler can use it.
pub fn log(level: Level, text: &str) -> Result<(), Error> {
    let mut args = [0u8; abi::MAX_LOG + LOG_OVERHEAD];
    let req = LogRequest {
        level,
        text: log_prefix(text),
    };
    let args = abi::encode(&req, &mut args).map_err(|_| Error::BadRequest)?;
    let ret = sys::call(Func::Log, args, &mut []);
    finish(ret, Vec::new())
        .map_err(failed)
        .and_then(no_response)
}

/// Monotonic monitor time in milliseconds.
pub fn now() -> u64 {
    u64::try_from(sys::now()).unwrap_or(0)
}

/// Fills `buf` with random bytes from the monitor's entropy source.
pub fn random(buf: &mut [u8]) -> Result<(), Error> {
    for part in buf.chunks_mut(abi::MAX_RANDOM) {
        let ret = sys::random(part);
        match decode_return(ret) {
            Ok(n) if n as usize == part.len() => {}
            Ok(_) => return Err(Error::Protocol),
            Err(code) => return Err(detail(code)),
        }
    }
    Ok(())
}

/// Ends this agent with `code` (0: success); the monitor reports it and never resumes it.
pub fn exit(code: i32) -> ! {
    sys::exit(code)
}
