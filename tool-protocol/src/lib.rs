//! The contract between the monitor and the tool gateway (`omega-tools`), defined once for
//! both sides ([docs/tools.md](../../docs/tools.md), *Guest protocol*):
//!
//! * [`pin`]: a tool's pin, the SHA-256 of the canonical JSON of its `tools/list` entry's
//!   description and input schema. The policy compiler pins tools with it, the gateway
//!   checks servers' entries with it, and the monitor computes it itself from what the
//!   gateway lists (it never takes the gateway's word for a pin).
//! * [`code`] and [`MAX_LINE`]: the JSON-RPC error codes the gateway answers with and the
//!   longest line either side sends.
//! * [`guest`]: the monitor's tools client: the catalogue (listed, parsed strictly, pinned
//!   in the guest), `tools/call` requests with the guest's pin, answers matched by id and
//!   decoded with bounds, `list_changed` marking the catalogue stale. Pure logic; the
//!   kernel's service glue sends and receives the lines.
//! * [`identity`]: the tool servers' identity as the bundle's tools file states it
//!   (command, arguments, package, version), for the evidence, the gateway and the
//!   verifier.
//! * [`confirm`]: the calls waiting for the operator's answer to a `confirm` decision
//!   (bounded, each settled once, denied on timeout).
//!
//! `no_std` + `alloc`, no `unsafe`; nothing the host sends can make it panic (fuzzed:
//! `tool-protocol/fuzz`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod confirm;
pub mod guest;
pub mod identity;
pub mod pin;

pub use pin::{canonical_json, tool_pin};

/// Longest line accepted from a server, from the guest or from the gateway (the host
/// relay's own limit).
pub const MAX_LINE: usize = 1024 * 1024;

/// Error codes of the gateway's answers to the guest (JSON-RPC 2.0 `error.code`).
pub mod code {
    pub const PARSE: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    /// Unknown tool, or a tool that is not pinned, pinned differently, or being re-listed.
    pub const TOOL_UNAVAILABLE: i64 = -32001;
    /// The tool's server died, never started, or was cut off for a protocol violation.
    pub const SERVER_UNAVAILABLE: i64 = -32002;
    /// The server did not answer within the tool's timeout.
    pub const TIMEOUT: i64 = -32003;
    /// The server broke the protocol (malformed JSON, a line over [`super::MAX_LINE`]).
    pub const SERVER_PROTOCOL: i64 = -32004;
    /// The result is larger than the server's `max_result_bytes`.
    pub const RESULT_TOO_LARGE: i64 = -32005;
    /// The server answered the call with a JSON-RPC error.
    pub const SERVER_ERROR: i64 = -32006;
    /// Too many calls in flight.
    pub const BUSY: i64 = -32007;
    /// The guest decided on a pin that is no longer the tool's.
    pub const PIN_MISMATCH: i64 = -32008;
}

/// The notification the gateway sends when a server's tools changed.
pub const LIST_CHANGED: &str = "notifications/tools/list_changed";

/// `sha256:<64 lowercase hex>`, the pin's text form on the wire and in pins files.
pub fn format_pin(pin: &[u8; 32]) -> alloc::string::String {
    use core::fmt::Write as _;
    let mut s = alloc::string::String::with_capacity(71);
    s.push_str("sha256:");
    for b in pin {
        let _ = write!(s, "{b:02x}");
    }
    s
}
