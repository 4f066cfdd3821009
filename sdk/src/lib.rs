//! Write Omega agents in Rust.
//!
//! An agent is a `no_std` Rust program compiled to `wasm32-unknown-unknown` that the monitor
//! runs in a sandbox. Everything it does outside its own memory is a call to the host ABI
//! ([`abi`], the crate `omega-agent-abi`, documented in `docs/agent-abi.md`), and the monitor
//! decides each one by policy and logs it before anything leaves the agent. This crate wraps
//! that ABI:
//!
//! * **Safe wrappers**, one per host call: [`infer`] (whole) and [`infer_stream`] (token
//!   batches as they are generated), [`tool_call`], [`data_read`] /
//!   [`read_to_end`], [`send`] / [`send_text`], [`recv`] / [`try_recv`], [`log()`] (and the
//!   [`info!`]-style macros), [`now`], [`random`], [`exit`]. Requests and responses are
//!   postcard-encoded; a response longer than the first buffer is fetched at its exact
//!   length with `result_take`, so callers never size buffers.
//! * **Typed errors** ([`Error`]): a policy denial is [`Error::Denied`] with the rule's name.
//! * **The entry point** ([`entry!`]): exports `run`, the function the monitor calls.
//! * **A runtime for `wasm32`**: a global allocator over linear memory that reuses freed
//!   blocks and grows memory a page at a time (`AgentAllocator`, wasm32 only), and a panic handler that
//!   logs the message and traps. Both are features (`allocator`, `panic-handler`, default on).
//! * **A host double** ([`host_double`], not on `wasm32`): the same calls answered by a test's
//!   [`host_double::Host`], so agent logic runs under `cargo test`.
//!
//! A whole agent:
//!
//! ```no_run
//! #![no_std]
//! #![no_main]
//!
//! use omega_sdk::{Error, info};
//!
//! omega_sdk::entry!(main);
//!
//! fn main() -> Result<(), Error> {
//!     let question = omega_sdk::recv()?;
//!     let answer = omega_sdk::infer("local_llm", &question.text(), 256)?;
//!     info!("answering {}", question.from());
//!     question.reply_text(&answer)
//! }
//! ```
//!
//! Build it as the example agents are built (`scripts/build-agents.sh`: the workspace's
//! `agent` profile, `opt-level = "z"`, `panic = "abort"`, and a 32 KiB stack from
//! `agents/build.rs`); `docs/sdk.md` walks through a new agent.
#![no_std]

extern crate alloc;

#[doc(hidden)]
pub use alloc::format as __format;

pub use omega_agent_abi as abi;
pub use omega_agent_abi::{Delivered, Level, Message, Part, Role};

mod calls;
mod error;
mod messages;
mod sys;

#[cfg(not(target_arch = "wasm32"))]
pub mod host_double;
#[cfg(target_arch = "wasm32")]
mod rt;

pub use calls::{
    Chunk, InferStream, ToolResult, data_read, exit, infer, infer_stream, log, now, random,
    read_to_end, tool_call,
};
pub use error::Error;
pub use messages::{Received, next_message_id, recv, send, send_text, text_message, try_recv};
#[cfg(target_arch = "wasm32")]
pub use rt::AgentAllocator;
pub use sys::Func;

/// Exports `run`, the function the monitor calls to start the agent
/// ([`abi::ENTRY_EXPORT`]), calling `$main: fn() -> Result<(), E>` for any
/// `E: Display` (an SDK [`Error`] or the agent's own).
///
/// Returning `Ok(())` ends the agent normally; an `Err` is logged and ends it with
/// [`exit`]`(1)`; a panic is logged and traps (the monitor reports it and applies the
/// manifest's restart policy).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// The agent's entry point, called by the monitor.
        #[unsafe(no_mangle)]
        pub extern "C" fn run() {
            $crate::__run($main)
        }
    };
}

#[doc(hidden)]
pub fn __run<E: core::fmt::Display>(main: fn() -> Result<(), E>) {
    if let Err(e) = main() {
        error!("{e}");
        exit(1);
    }
}

/// Logs a formatted line at `level`: `omega_sdk::log!(Level::Info, "read {} records", n)`.
/// Errors of the log call itself are ignored.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {{
        let _ = $crate::log($level, &$crate::__format!($($arg)*));
    }};
}

/// Logs a formatted line at [`Level::Error`].
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log!($crate::Level::Error, $($arg)*) };
}

/// Logs a formatted line at [`Level::Warn`].
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log!($crate::Level::Warn, $($arg)*) };
}

/// Logs a formatted line at [`Level::Info`].
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log!($crate::Level::Info, $($arg)*) };
}

/// Logs a formatted line at [`Level::Debug`].
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log!($crate::Level::Debug, $($arg)*) };
}

#[cfg(test)]
mod tests;
