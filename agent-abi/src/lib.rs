//! The Omega agent host ABI: what a Wasm agent may import, how arguments and results cross
//! the sandbox boundary, and the limits the monitor enforces. Defined once, here, and used by
//! both sides: the SDK (compiled to `wasm32-unknown-unknown`) and the monitor's runtime.
//!
//! Design principles, kept by every function:
//! * **One versioned import module** ([`MODULE`], `"omega_v1"`). A later, incompatible ABI is a
//!   new module name; the monitor refuses a module that imports anything it does not define.
//! * **Bytes in, bytes out.** Requests and responses are postcard-encoded structs in the
//!   agent's linear memory, passed as `(ptr, len)`; responses are written to a buffer the agent
//!   provides `(out_ptr, out_cap)`. The return value is the response length (≥ 0) or a negated
//!   [`ErrorCode`] (< 0). A response longer than `out_cap` is held by the monitor and fetched
//!   with `result_take` (two-phase: the length comes back first).
//! * **The monitor owns the metadata.** Who sent a message and which labels it carries are set
//!   by the monitor ([`Delivered`]); nothing the agent sends can set them.
//! * **No allocation needed**: every type borrows from the bytes it was decoded from; lists
//!   have fixed capacities ([`heapless::Vec`]).
//!
//! The reference for agent authors is `docs/agent-abi.md`.
#![no_std]
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

pub use heapless;

/// The one import module of ABI version 1.
pub const MODULE: &str = "omega_v1";
/// The ABI version [`MODULE`] names.
pub const ABI_VERSION: u32 = 1;

/// The export the monitor calls to run an agent: `run: [] -> []`.
pub const ENTRY_EXPORT: &str = "run";
/// The agent's linear memory must be exported under this name.
pub const MEMORY_EXPORT: &str = "memory";

// ---------------------------------------------------------------------------------------------
// Limits. The monitor refuses anything larger with `ErrorCode::TooLarge`.
// ---------------------------------------------------------------------------------------------

/// Longest request (`args_len`) any call accepts.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Longest response the monitor hands back (held results included).
pub const MAX_RESPONSE: usize = 256 * 1024;
/// Longest prompt in an [`InferRequest`].
pub const MAX_PROMPT: usize = 32 * 1024;
/// Largest `max_tokens` in an [`InferRequest`].
pub const MAX_TOKENS: u32 = 8192;
/// Longest encoded [`Message`] in a [`SendRequest`].
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Most parts in one [`Message`].
pub const MAX_PARTS: usize = 8;
/// Most labels a delivered message carries (the policy's label limit).
pub const MAX_LABELS: usize = 64;
/// Longest name of an agent, model, tool or data source.
pub const MAX_NAME: usize = 64;
/// Longest tool argument text (a JSON object) in a [`ToolCallRequest`].
pub const MAX_TOOL_ARGS: usize = 16 * 1024;
/// Most bytes one [`DataReadRequest`] returns.
pub const MAX_READ: u32 = 64 * 1024;
/// Longest data path in a [`DataReadRequest`].
pub const MAX_PATH: usize = 256;
/// Longest log line.
pub const MAX_LOG: usize = 1024;
/// Most bytes one `random` call fills.
pub const MAX_RANDOM: usize = 256;
/// Messages queued for one agent before `send` to it answers `WouldBlock`.
pub const MAX_INBOX: usize = 16;
/// Streamed answers ([`INFER_STREAM`]) one agent may have open at once; one more is
/// `WouldBlock`.
pub const MAX_STREAMS: usize = 4;
/// Most text one [`INFER_NEXT`] returns; the rest stays for the next call.
pub const MAX_CHUNK: usize = 64 * 1024;
/// Most text the monitor holds for one open stream the agent is not reading; beyond it
/// the stream ends with `Failed`.
pub const MAX_STREAM_BUFFER: usize = 256 * 1024;

// ---------------------------------------------------------------------------------------------
// Functions and their signatures.
// ---------------------------------------------------------------------------------------------

/// A Wasm value type in an import signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValType {
    I32,
    I64,
}

/// One host function: its name in [`MODULE`] and its exact signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Import {
    pub name: &'static str,
    pub params: &'static [ValType],
    pub results: &'static [ValType],
}

use ValType::{I32, I64};

/// `(args_ptr, args_len, out_ptr, out_cap) -> i32`: the shape of every request/response call.
const CALL_PARAMS: &[ValType] = &[I32, I32, I32, I32];

/// LLM inference: [`InferRequest`] → [`InferResponse`]. Policy action `infer`.
pub const INFER: Import = call("infer");
/// MCP tool call: [`ToolCallRequest`] → [`ToolCallResponse`]. Policy action `call`.
pub const TOOL_CALL: Import = call("tool_call");
/// Message to another agent: [`SendRequest`] → `()` (empty). Policy action `send`.
pub const SEND: Import = call("send");
/// Next message for this agent: [`RecvRequest`] → [`Delivered`].
pub const RECV: Import = call("recv");
/// Read from a data source: [`DataReadRequest`] → [`DataReadResponse`]. Policy action `read`.
pub const DATA_READ: Import = call("data_read");
/// A log line to the host: [`LogRequest`] → `()` (empty).
pub const LOG: Import = call("log");
/// Streamed inference, start: [`InferRequest`] → [`InferStream`]. Policy action `infer`,
/// decided and logged exactly as [`INFER`]; returns at once with the stream's handle while
/// the proxy generates.
pub const INFER_STREAM: Import = call("infer_stream");
/// Streamed inference, next piece: [`InferNextRequest`] → [`InferChunk`]. Parks until text
/// or the end is there, then returns everything that arrived since the last call (up to
/// [`MAX_CHUNK`]): one crossing per batch, not per token. After the chunk with `done` the
/// handle is closed. A failed stream answers `Failed` (or `Unavailable`) once and closes.
pub const INFER_NEXT: Import = call("infer_next");
/// Monotonic monitor time in milliseconds: `() -> i64`.
pub const NOW: Import = Import {
    name: "now",
    params: &[],
    results: &[I64],
};
/// Fill `(ptr, len)` with random bytes from the monitor's entropy: `-> i32` (len or error).
pub const RANDOM: Import = Import {
    name: "random",
    params: &[I32, I32],
    results: &[I32],
};
/// Fetch the held result of the previous call into `(out_ptr, out_cap)`: `-> i32`.
pub const RESULT_TAKE: Import = Import {
    name: "result_take",
    params: &[I32, I32],
    results: &[I32],
};
/// End the agent with an exit code: `(code: i32) -> ()`; never returns.
pub const EXIT: Import = Import {
    name: "exit",
    params: &[I32],
    results: &[],
};

const fn call(name: &'static str) -> Import {
    Import {
        name,
        params: CALL_PARAMS,
        results: &[I32],
    }
}

/// Every function of [`MODULE`]; a module importing anything else is refused at load.
pub const IMPORTS: &[Import] = &[
    INFER,
    TOOL_CALL,
    SEND,
    RECV,
    DATA_READ,
    LOG,
    NOW,
    RANDOM,
    RESULT_TAKE,
    EXIT,
    INFER_STREAM,
    INFER_NEXT,
];

/// The host function called `name`, if [`MODULE`] has one.
pub fn import(name: &str) -> Option<&'static Import> {
    IMPORTS.iter().find(|i| i.name == name)
}

// ---------------------------------------------------------------------------------------------
// Return values and errors.
// ---------------------------------------------------------------------------------------------

/// Why a call failed: the negated return value. Details ([`HostError`]) are held as the
/// call's result and can be fetched with `result_take` until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(i32)]
pub enum ErrorCode {
    /// The request did not decode, or a field is invalid (empty name, `..` in a path).
    BadRequest = 1,
    /// The policy denied the action; [`HostError::Denied`] names the rule.
    Denied = 2,
    /// Nothing to receive yet (`recv` without `wait`), or the receiver's inbox is full.
    WouldBlock = 3,
    /// A pointer or length outside the agent's memory. The monitor traps the agent instead
    /// of returning this; it is the trap reason it reports.
    BadPointer = 4,
    /// A request, prompt, message or read above the limits in this crate.
    TooLarge = 5,
    /// The service behind the call does not exist yet or is not reachable.
    Unavailable = 6,
    /// `result_take` with no held result.
    NoResult = 7,
    /// The service ran and failed (a tool error, a proxy error); the reason is in the detail.
    Failed = 8,
}

impl ErrorCode {
    /// The code behind a negative return value.
    pub fn from_i32(code: i32) -> Option<Self> {
        Some(match code {
            1 => Self::BadRequest,
            2 => Self::Denied,
            3 => Self::WouldBlock,
            4 => Self::BadPointer,
            5 => Self::TooLarge,
            6 => Self::Unavailable,
            7 => Self::NoResult,
            8 => Self::Failed,
            _ => return None,
        })
    }
}

/// A failed call, in detail (postcard, fetched with `result_take` after a negative return).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostError<'a> {
    BadRequest,
    /// The policy's deciding rule, e.g. `"default-deny"`, `"flow:phi"`, `"triage_search"`.
    Denied {
        rule: &'a str,
    },
    WouldBlock,
    BadPointer,
    TooLarge {
        limit: u32,
    },
    Unavailable {
        reason: &'a str,
    },
    NoResult,
    Failed {
        reason: &'a str,
    },
}

impl HostError<'_> {
    /// The code returned (negated) for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            HostError::BadRequest => ErrorCode::BadRequest,
            HostError::Denied { .. } => ErrorCode::Denied,
            HostError::WouldBlock => ErrorCode::WouldBlock,
            HostError::BadPointer => ErrorCode::BadPointer,
            HostError::TooLarge { .. } => ErrorCode::TooLarge,
            HostError::Unavailable { .. } => ErrorCode::Unavailable,
            HostError::NoResult => ErrorCode::NoResult,
            HostError::Failed { .. } => ErrorCode::Failed,
        }
    }
}

/// The i32 a call returns: the response length, or the negated error code.
pub fn encode_return(result: Result<u32, ErrorCode>) -> i32 {
    match result {
        // Response lengths are at most MAX_RESPONSE, far below i32::MAX.
        Ok(len) => i32::try_from(len).unwrap_or(i32::MAX),
        Err(code) => -(code as i32),
    }
}

/// What an i32 return value means: `Ok(response length)` or the error code. An unknown
/// negative value reads as `BadRequest`.
pub fn decode_return(ret: i32) -> Result<u32, ErrorCode> {
    if ret >= 0 {
        Ok(ret.unsigned_abs())
    } else {
        Err(ErrorCode::from_i32(ret.checked_neg().unwrap_or(0)).unwrap_or(ErrorCode::BadRequest))
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and responses (postcard).
// ---------------------------------------------------------------------------------------------

/// `infer`: a prompt to a model the policy declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferRequest<'a> {
    pub model: &'a str,
    pub prompt: &'a str,
    /// At most [`MAX_TOKENS`]; the policy's `max_tokens` conditions see this value.
    pub max_tokens: u32,
}

/// `infer`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferResponse<'a> {
    pub text: &'a str,
}

/// `infer_stream`'s answer: the handle of the open stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferStream {
    pub stream: u64,
}

/// `infer_next`: the next piece of an open stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferNextRequest {
    pub stream: u64,
}

/// `infer_next`'s answer: the text that arrived since the previous call (possibly empty
/// with `done`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferChunk<'a> {
    pub text: &'a str,
    /// The answer is complete; the handle is closed.
    pub done: bool,
    /// With `done`: the proxy's count of completion tokens, when it gave one.
    pub completion_tokens: Option<u32>,
}

/// `tool_call`: an MCP tool, named `server.tool`, with its arguments as a JSON object text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallRequest<'a> {
    pub tool: &'a str,
    /// A JSON object (`{"limit": 10}`); the policy's `args.…` conditions see its fields.
    pub arguments: &'a str,
}

/// `tool_call`'s answer: the MCP result's text content items joined by `\n` (non-text items
/// replaced by a marker), as the monitor decodes it from the tool gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallResponse<'a> {
    /// The tool reported an error (MCP `isError`); the call itself was carried out.
    pub is_error: bool,
    pub content: &'a str,
}

/// `data_read`: bytes of one item of a data source shipped in the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataReadRequest<'a> {
    pub source: &'a str,
    /// `/`-separated, relative to the source; no `.`/`..` components, no empty segments.
    pub path: &'a str,
    pub offset: u64,
    /// At most [`MAX_READ`].
    pub max_len: u32,
}

/// `data_read`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataReadResponse<'a> {
    pub data: &'a [u8],
    /// Length of the whole item, so the agent knows when it has read everything.
    pub total_len: u64,
}

/// `send`: a message to another agent of this image, by its name, or of another image
/// (`node/agent`, over the monitor's peer channel: docs/fleet.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest<'a> {
    pub to: &'a str,
    #[serde(borrow)]
    pub message: Message<'a>,
}

/// `recv`: the next message for this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvRequest {
    /// Park until a message arrives (otherwise `WouldBlock` when the inbox is empty).
    pub wait: bool,
}

/// A message as the receiver gets it: sender and labels set by the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered<'a> {
    /// The sending agent's name (the monitor's, never the sender's claim).
    pub from: &'a str,
    /// Labels the message carries (the sender's context minus what the policy declassified);
    /// the receiver's context has taken them on by the time it reads the message.
    #[serde(borrow)]
    pub labels: heapless::Vec<&'a str, MAX_LABELS>,
    #[serde(borrow)]
    pub message: Message<'a>,
}

/// Who wrote a message (A2A v1.0 `Role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    User,
    Agent,
}

/// An agent-to-agent message shaped like the A2A v1.0 `Message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message<'a> {
    /// Chosen by the sender (A2A `messageId`).
    pub message_id: &'a str,
    /// Groups messages of one conversation (A2A `contextId`).
    pub context_id: Option<&'a str>,
    pub role: Role,
    #[serde(borrow)]
    pub parts: heapless::Vec<Part<'a>, MAX_PARTS>,
}

/// One part of a message (A2A v1.0 `Part`: text, or data with its media type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part<'a> {
    Text { text: &'a str },
    Data { media_type: &'a str, data: &'a [u8] },
}

/// `log`: one line to the host's log stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRequest<'a> {
    pub level: Level,
    pub text: &'a str,
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers (both sides).
// ---------------------------------------------------------------------------------------------

/// Decodes a whole request or response. Only the canonical encoding is accepted: trailing
/// bytes and overlong varints (postcard itself reads `[0x80, 0x00]` as 0) are refused, so
/// each value has exactly one encoding and the request digest in the provenance log names
/// the value, not one of its spellings.
pub fn decode<'a, T: Deserialize<'a> + Serialize>(bytes: &'a [u8]) -> Result<T, ErrorCode> {
    let value = match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => value,
        _ => return Err(ErrorCode::BadRequest),
    };
    // SECURITY: re-encode against the input byte by byte (no buffer): a second spelling of
    // one value could otherwise pass a filter written for the first.
    let compare = Canonical {
        expected: bytes,
        at: 0,
    };
    match postcard::serialize_with_flavor(&value, compare) {
        Ok(used) if used == bytes.len() => Ok(value),
        _ => Err(ErrorCode::BadRequest),
    }
}

/// A postcard output that writes nothing and fails at the first byte that differs from
/// `expected`.
struct Canonical<'e> {
    expected: &'e [u8],
    at: usize,
}

impl postcard::ser_flavors::Flavor for Canonical<'_> {
    type Output = usize;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        match self.expected.get(self.at) {
            Some(&b) if b == byte => {
                self.at += 1;
                Ok(())
            }
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.at)
    }
}

/// Encodes a value into `buf`; returns the bytes used, or `TooLarge` when it does not fit.
pub fn encode<'b, T: Serialize + ?Sized>(
    value: &T,
    buf: &'b mut [u8],
) -> Result<&'b mut [u8], ErrorCode> {
    postcard::to_slice(value, buf).map_err(|_| ErrorCode::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_encoding_decodes() {
        let req = DataReadRequest {
            source: "ehr",
            path: "/p1",
            offset: 0,
            max_len: 300,
        };
        let mut buf = [0u8; 64];
        let good = encode(&req, &mut buf).unwrap().to_vec();
        assert_eq!(decode::<DataReadRequest<'_>>(&good), Ok(req));
        // The same value with `offset` spelled as an overlong varint, and with a trailing byte.
        let at = 1 + 3 + 1 + 3;
        let mut overlong = good.clone();
        overlong.splice(at..at + 1, [0x80, 0x00]);
        assert_eq!(
            postcard::from_bytes::<DataReadRequest<'_>>(&overlong),
            Ok(req),
            "postcard alone accepts it"
        );
        assert_eq!(
            decode::<DataReadRequest<'_>>(&overlong),
            Err(ErrorCode::BadRequest)
        );
        let mut trailing = good;
        trailing.push(0);
        assert_eq!(
            decode::<DataReadRequest<'_>>(&trailing),
            Err(ErrorCode::BadRequest)
        );
    }

    #[test]
    fn return_values_round_trip() {
        for len in [0u32, 1, 4096, MAX_RESPONSE as u32] {
            assert_eq!(decode_return(encode_return(Ok(len))), Ok(len));
        }
        for code in 1..=8 {
            let c = ErrorCode::from_i32(code).unwrap();
            assert_eq!(c as i32, code);
            assert_eq!(decode_return(encode_return(Err(c))), Err(c));
        }
        assert_eq!(decode_return(i32::MIN), Err(ErrorCode::BadRequest));
        assert_eq!(decode_return(-99), Err(ErrorCode::BadRequest));
    }

    #[test]
    fn messages_round_trip_and_refuse_trailing_bytes() {
        let mut parts = heapless::Vec::new();
        parts.push(Part::Text { text: "hello" }).unwrap();
        parts
            .push(Part::Data {
                media_type: "application/json",
                data: b"{}",
            })
            .unwrap();
        let req = SendRequest {
            to: "summariser",
            message: Message {
                message_id: "m1",
                context_id: Some("c1"),
                role: Role::Agent,
                parts,
            },
        };
        let mut buf = [0u8; 256];
        let n = encode(&req, &mut buf).unwrap().len();
        assert_eq!(decode::<SendRequest<'_>>(&buf[..n]).unwrap(), req);
        assert_eq!(
            decode::<SendRequest<'_>>(&buf[..n + 1]),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(encode(&req, &mut buf[..4]), Err(ErrorCode::TooLarge));
    }

    #[test]
    fn every_import_is_found_by_name_and_names_are_distinct() {
        for (i, imp) in IMPORTS.iter().enumerate() {
            assert_eq!(import(imp.name), Some(imp));
            assert!(IMPORTS[..i].iter().all(|o| o.name != imp.name));
        }
        assert_eq!(import("fd_write"), None);
    }

    #[test]
    fn a_chunk_has_one_encoding() {
        let c = InferChunk {
            text: "Blue",
            done: true,
            completion_tokens: Some(12),
        };
        let mut buf = [0u8; 32];
        let n = encode(&c, &mut buf).unwrap().len();
        // text (len, bytes), done, Some, 12: what a hand-written agent (WAT) parses.
        assert_eq!(&buf[..n], b"\x04Blue\x01\x01\x0c");
        assert_eq!(decode::<InferChunk<'_>>(&buf[..n]), Ok(c));
        let next = InferNextRequest { stream: 300 };
        let n = encode(&next, &mut buf).unwrap().len();
        assert_eq!(&buf[..n], &[0xac, 0x02]);
    }

    #[test]
    fn host_errors_name_their_code() {
        let e = HostError::Denied { rule: "flow:phi" };
        let mut buf = [0u8; 32];
        let n = encode(&e, &mut buf).unwrap().len();
        assert_eq!(decode::<HostError<'_>>(&buf[..n]).unwrap(), e);
        assert_eq!(e.code(), ErrorCode::Denied);
    }
}
