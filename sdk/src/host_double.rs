//! A stand-in for the monitor on the host (not `wasm32`), so the SDK and an agent's own logic
//! run under plain `cargo test`. It keeps the ABI's calling convention exactly: a response
//! longer than the caller's buffer, and every error's detail, is held for `result_take`.
//!
//! ```
//! use omega_sdk::host_double::{self, Host, Reply};
//! use omega_sdk::{Func, abi};
//!
//! struct Model;
//! impl Host for Model {
//!     fn call(&mut self, func: Func, args: &[u8]) -> Reply {
//!         let req: abi::InferRequest<'_> = abi::decode(args).unwrap();
//!         assert_eq!(func, Func::Infer);
//!         Reply::ok(&abi::InferResponse { text: req.prompt })
//!     }
//! }
//! host_double::install(Model);
//! assert_eq!(omega_sdk::infer("local_llm", "echo", 16).unwrap(), "echo");
//! ```

extern crate std;

use std::boxed::Box;
use std::cell::RefCell;
use std::vec::Vec;

use omega_agent_abi::{ErrorCode, HostError, encode_return};
use serde::Serialize;

use crate::sys::Func;

/// The monitor's side of one call, as a test writes it.
pub trait Host {
    /// Answers `func(args)`; `args` is the postcard request exactly as the agent encoded it.
    fn call(&mut self, func: Func, args: &[u8]) -> Reply;
    /// `now()`: milliseconds.
    fn now(&mut self) -> i64 {
        0
    }
    /// `random(buf)`.
    fn random(&mut self, buf: &mut [u8]) {
        buf.fill(0x5a);
    }
}

/// A closure answers calls (`now` and `random` keep their defaults).
impl<F: FnMut(Func, &[u8]) -> Reply> Host for F {
    fn call(&mut self, func: Func, args: &[u8]) -> Reply {
        self(func, args)
    }
}

/// A call's outcome: the encoded response, or the error whose detail is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok(Vec<u8>),
    Err(ErrorCode, Vec<u8>),
}

impl Reply {
    /// A response value, postcard-encoded.
    pub fn ok<T: Serialize + ?Sized>(response: &T) -> Reply {
        Reply::Ok(postcard::to_allocvec(response).expect("a response encodes"))
    }

    /// An error and its detail.
    pub fn err(error: HostError<'_>) -> Reply {
        Reply::Err(
            error.code(),
            postcard::to_allocvec(&error).expect("an error encodes"),
        )
    }
}

/// What `exit(code)` does on the host: a panic carrying this, so a test can catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exited(pub i32);

struct Installed {
    host: Box<dyn Host>,
    held: Option<Vec<u8>>,
}

std::thread_local! {
    static HOST: RefCell<Option<Installed>> = const { RefCell::new(None) };
}

/// Makes `host` answer this thread's host calls (replacing any earlier one).
pub fn install(host: impl Host + 'static) {
    HOST.with(|h| {
        *h.borrow_mut() = Some(Installed {
            host: Box::new(host),
            held: None,
        })
    });
}

fn with<R>(f: impl FnOnce(&mut Installed) -> R) -> R {
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        f(h.as_mut()
            .expect("no host double installed: call omega_sdk::host_double::install first"))
    })
}

/// Copies `bytes` to `out` when they fit, holds them otherwise (the monitor's rule).
fn deliver(installed: &mut Installed, bytes: Vec<u8>, out: &mut [u8]) -> i32 {
    let len = u32::try_from(bytes.len()).expect("a test response fits in u32");
    match out.get_mut(..bytes.len()) {
        Some(dst) => {
            dst.copy_from_slice(&bytes);
            installed.held = None;
        }
        None => installed.held = Some(bytes),
    }
    encode_return(Ok(len))
}

pub(crate) fn call(func: Func, args: &[u8], out: &mut [u8]) -> i32 {
    with(|i| match i.host.call(func, args) {
        Reply::Ok(bytes) => deliver(i, bytes, out),
        Reply::Err(code, detail) => {
            i.held = Some(detail);
            encode_return(Err(code))
        }
    })
}

pub(crate) fn result_take(out: &mut [u8]) -> i32 {
    with(|i| match i.held.take() {
        Some(bytes) => deliver(i, bytes, out),
        None => encode_return(Err(ErrorCode::NoResult)),
    })
}

pub(crate) fn now() -> i64 {
    with(|i| i.host.now())
}

pub(crate) fn random(buf: &mut [u8]) -> i32 {
    with(|i| i.host.random(buf));
    encode_return(Ok(u32::try_from(buf.len()).unwrap_or(u32::MAX)))
}

pub(crate) fn exit(code: i32) -> ! {
    std::panic::panic_any(Exited(code))
}
