//! The agent side of the host ABI: the functions linked into every instance.
//!
//! They do as little as possible inside the interpreter: check every pointer and length
//! against the agent's memory, copy the request out, and suspend the call
//! ([`Suspend`]) so the scheduler can take it through the one gate (`gate.rs`) with the
//! whole runtime at hand. Only `result_take`, which touches nothing but the agent's own held
//! result, answers in place.

use alloc::vec::Vec;
use core::fmt;

use omega_agent_abi as abi;
use wasmi::{Caller, Error, Linker, Memory, StoreLimits};

/// Which ABI function a suspended call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Infer,
    ToolCall,
    Send,
    Recv,
    DataRead,
    Log,
    Now,
    Random,
    InferStream,
    InferNext,
}

/// A host call waiting for the scheduler: the request bytes (copied out of the agent) and
/// where the response goes. `out` was checked against the memory when the call was made; a
/// Wasm memory never shrinks, so it stays valid.
#[derive(Debug)]
pub(crate) struct HostCall {
    pub kind: CallKind,
    pub args: Vec<u8>,
    pub out_ptr: u32,
    pub out_cap: u32,
}

/// Per-store data of one agent.
#[derive(Debug)]
pub(crate) struct AgentCtx {
    pub limits: StoreLimits,
    pub memory: Option<Memory>,
    /// The call the agent is suspended in, taken by the scheduler.
    pub pending: Option<HostCall>,
    /// The previous call's response (or error detail), for `result_take`.
    pub held: Option<Vec<u8>>,
}

impl AgentCtx {
    pub fn new(limits: StoreLimits) -> Self {
        AgentCtx {
            limits,
            memory: None,
            pending: None,
            held: None,
        }
    }
}

/// Host errors that end or pause the agent's current call. wasmi hands them to the
/// scheduler as a resumable host trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A host call is pending in [`AgentCtx::pending`]; resume with its return value.
    Suspend,
    /// `exit(code)`.
    Exit(i32),
    /// A pointer or length outside the agent's memory: the agent is stopped.
    BadPointer,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Suspend => f.write_str("host call suspended"),
            Stop::Exit(code) => write!(f, "exit({code})"),
            Stop::BadPointer => f.write_str("pointer or length outside the agent's memory"),
        }
    }
}

impl wasmi::errors::HostError for Stop {}

/// The byte range `[ptr, ptr + len)` if it lies inside a memory of `size` bytes.
///
/// SECURITY: every pointer and length an agent passes goes through here; the sum is checked,
/// so `ptr + len` cannot wrap around to a small in-bounds value.
pub(crate) fn checked_range(ptr: i32, len: i32, size: usize) -> Option<core::ops::Range<usize>> {
    let start = usize::try_from(ptr as u32).ok()?;
    let len = usize::try_from(len as u32).ok()?;
    let end = start.checked_add(len)?;
    (end <= size).then_some(start..end)
}

fn memory(caller: &Caller<'_, AgentCtx>) -> Result<Memory, Error> {
    caller
        .data()
        .memory
        .ok_or_else(|| Error::host(Stop::BadPointer))
}

/// Checks both buffers of a request/response call, copies the request out and suspends.
fn suspend_call(
    caller: &mut Caller<'_, AgentCtx>,
    kind: CallKind,
    args: (i32, i32),
    out: (i32, i32),
) -> Result<i32, Error> {
    let mem = memory(caller)?;
    let data = mem.data(&*caller);
    let bad = || Error::host(Stop::BadPointer);
    let args_range = checked_range(args.0, args.1, data.len()).ok_or_else(bad)?;
    checked_range(out.0, out.1, data.len()).ok_or_else(bad)?;
    // Every call discards the previous call's held result.
    caller.data_mut().held = None;
    if args_range.len() > abi::MAX_REQUEST {
        return Ok(fail(
            caller,
            abi::HostError::TooLarge {
                limit: abi::MAX_REQUEST as u32,
            },
        ));
    }
    let bytes = mem.data(&*caller).get(args_range).ok_or_else(bad)?.to_vec();
    caller.data_mut().pending = Some(HostCall {
        kind,
        args: bytes,
        out_ptr: out.0 as u32,
        out_cap: out.1 as u32,
    });
    Err(Error::host(Stop::Suspend))
}

/// Answers a call with an error in place: the code is returned, the detail held.
fn fail(caller: &mut Caller<'_, AgentCtx>, error: abi::HostError<'_>) -> i32 {
    caller.data_mut().held = Some(crate::encode_owned(&error));
    abi::encode_return(Err(error.code()))
}

/// `result_take(out_ptr, out_cap)`: answered in place, it only reads the agent's own data.
fn result_take(
    caller: &mut Caller<'_, AgentCtx>,
    out_ptr: i32,
    out_cap: i32,
) -> Result<i32, Error> {
    let mem = memory(caller)?;
    let (data, ctx) = mem.data_and_store_mut(&mut *caller);
    let range =
        checked_range(out_ptr, out_cap, data.len()).ok_or_else(|| Error::host(Stop::BadPointer))?;
    let Some(held) = ctx.held.as_ref() else {
        return Ok(abi::encode_return(Err(abi::ErrorCode::NoResult)));
    };
    let len = u32::try_from(held.len()).unwrap_or(u32::MAX);
    if held.len() <= range.len() {
        if let Some(dst) = data.get_mut(range.start..range.start + held.len()) {
            dst.copy_from_slice(held);
        }
        ctx.held = None;
    }
    Ok(abi::encode_return(Ok(len)))
}

/// Links every function of [`abi::MODULE`]. Signatures here are the ones in
/// [`abi::IMPORTS`]; a test checks that the two agree.
pub(crate) fn link(linker: &mut Linker<AgentCtx>) -> Result<(), wasmi::errors::LinkerError> {
    let m = abi::MODULE;
    macro_rules! call {
        ($imp:expr, $kind:expr) => {
            linker.func_wrap(
                m,
                $imp.name,
                |mut c: Caller<'_, AgentCtx>, a: i32, al: i32, o: i32, oc: i32| {
                    suspend_call(&mut c, $kind, (a, al), (o, oc))
                },
            )?;
        };
    }
    call!(abi::INFER, CallKind::Infer);
    call!(abi::TOOL_CALL, CallKind::ToolCall);
    call!(abi::SEND, CallKind::Send);
    call!(abi::RECV, CallKind::Recv);
    call!(abi::DATA_READ, CallKind::DataRead);
    call!(abi::LOG, CallKind::Log);
    call!(abi::INFER_STREAM, CallKind::InferStream);
    call!(abi::INFER_NEXT, CallKind::InferNext);
    linker.func_wrap(
        m,
        abi::NOW.name,
        |mut c: Caller<'_, AgentCtx>| -> Result<i64, Error> {
            c.data_mut().held = None;
            c.data_mut().pending = Some(HostCall {
                kind: CallKind::Now,
                args: Vec::new(),
                out_ptr: 0,
                out_cap: 0,
            });
            Err(Error::host(Stop::Suspend))
        },
    )?;
    linker.func_wrap(
        m,
        abi::RANDOM.name,
        |mut c: Caller<'_, AgentCtx>, ptr: i32, len: i32| -> Result<i32, Error> {
            let mem = memory(&c)?;
            checked_range(ptr, len, mem.data(&c).len())
                .ok_or_else(|| Error::host(Stop::BadPointer))?;
            if len as u32 as usize > abi::MAX_RANDOM {
                return Ok(fail(
                    &mut c,
                    abi::HostError::TooLarge {
                        limit: abi::MAX_RANDOM as u32,
                    },
                ));
            }
            c.data_mut().pending = Some(HostCall {
                kind: CallKind::Random,
                args: Vec::new(),
                out_ptr: ptr as u32,
                out_cap: len as u32,
            });
            Err(Error::host(Stop::Suspend))
        },
    )?;
    linker.func_wrap(
        m,
        abi::RESULT_TAKE.name,
        |mut c: Caller<'_, AgentCtx>, ptr: i32, cap: i32| result_take(&mut c, ptr, cap),
    )?;
    linker.func_wrap(
        m,
        abi::EXIT.name,
        |_: Caller<'_, AgentCtx>, code: i32| -> Result<(), Error> {
            Err(Error::host(Stop::Exit(code)))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_without_wrapping() {
        assert_eq!(checked_range(0, 0, 0), Some(0..0));
        assert_eq!(checked_range(10, 6, 16), Some(10..16));
        assert_eq!(checked_range(10, 7, 16), None);
        assert_eq!(checked_range(-1, 2, 65536), None);
        assert_eq!(checked_range(1, -1, 65536), None);
        assert_eq!(
            checked_range(i32::MAX, i32::MAX, usize::MAX),
            Some(0x7fff_ffff..0xffff_fffe)
        );
    }
}
