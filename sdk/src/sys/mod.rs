//! The raw host calls, one safe function each: on `wasm32` the imports of
//! [`omega_agent_abi::MODULE`] ([`wasm`]), elsewhere a host double that unit tests (the SDK's
//! and an agent author's) drive ([`crate::host_double`]).
//!
//! Everything above this module is target-independent: it encodes requests, interprets return
//! values and decodes responses the same way on both.

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::{call, exit, now, random, result_take};

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::host_double::{call, exit, now, random, result_take};

use omega_agent_abi::Import;

/// The request/response functions of the ABI (all `(args, out) -> i32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Infer,
    ToolCall,
    Send,
    Recv,
    DataRead,
    Log,
    InferStream,
    InferNext,
}

impl Func {
    /// Every request/response function.
    pub const ALL: [Func; 8] = [
        Func::Infer,
        Func::ToolCall,
        Func::Send,
        Func::Recv,
        Func::DataRead,
        Func::Log,
        Func::InferStream,
        Func::InferNext,
    ];

    /// The function's definition in the ABI crate.
    pub fn import(self) -> &'static Import {
        match self {
            Func::Infer => &omega_agent_abi::INFER,
            Func::ToolCall => &omega_agent_abi::TOOL_CALL,
            Func::Send => &omega_agent_abi::SEND,
            Func::Recv => &omega_agent_abi::RECV,
            Func::DataRead => &omega_agent_abi::DATA_READ,
            Func::Log => &omega_agent_abi::LOG,
            Func::InferStream => &omega_agent_abi::INFER_STREAM,
            Func::InferNext => &omega_agent_abi::INFER_NEXT,
        }
    }
}
