//! The imports of ABI version 1 and the only `unsafe` calls into them.

use super::Func;

// The module name must be a literal here; `tests::import_module_is_the_abi_module` and the
// agents' import check (agents-build) hold it to `omega_agent_abi::MODULE`.
#[link(wasm_import_module = "omega_v1")]
unsafe extern "C" {
    fn infer(args: *const u8, args_len: usize, out: *mut u8, out_cap: usize) -> i32;
    fn tool_call(args: *const u8, args_len: usize, out: *mut u8, out_cap: usize) -> i32;
    fn send(args: *const u8, args_len: usize, out: *mut u8, out_cap: usize) -> i32;
    fn recv(args: *const u8, args_len: usize, out: *mut u8, out_cap: usize) -> i32;
    fn data_read(args: *const u8, args_len: usize, out: *mut u8, out_cap: usize) -> i32;
    fn log(args: *const u8, args_len: usize, out: *mut u8, out_cap: usize) -> i32;
    fn infer_stream(args: *const u8, args_len: usize, out: *mut u8, out_cap: usize) -> i32;
    fn infer_next(args: *const u8, args_len: usize, out: *mut u8, out_cap: usize) -> i32;
    #[link_name = "now"]
    fn now_ms() -> i64;
    #[link_name = "random"]
    fn random_fill(buf: *mut u8, len: usize) -> i32;
    #[link_name = "result_take"]
    fn take(out: *mut u8, out_cap: usize) -> i32;
    #[link_name = "exit"]
    fn exit_with(code: i32) -> !;
}

/// `func(args) -> out`: the raw return value (response length or negated error code).
pub(crate) fn call(func: Func, args: &[u8], out: &mut [u8]) -> i32 {
    let (a, a_len, o, o_cap) = (args.as_ptr(), args.len(), out.as_mut_ptr(), out.len());
    // SAFETY: `args` and `out` are live slices of this agent's memory for the whole call, so
    // both (ptr, len) pairs are in bounds; the monitor reads at most `args.len()` bytes and
    // writes at most `out.len()` bytes (ABI contract), and it runs no code of ours meanwhile.
    unsafe {
        match func {
            Func::Infer => infer(a, a_len, o, o_cap),
            Func::ToolCall => tool_call(a, a_len, o, o_cap),
            Func::Send => send(a, a_len, o, o_cap),
            Func::Recv => recv(a, a_len, o, o_cap),
            Func::DataRead => data_read(a, a_len, o, o_cap),
            Func::Log => log(a, a_len, o, o_cap),
            Func::InferStream => infer_stream(a, a_len, o, o_cap),
            Func::InferNext => infer_next(a, a_len, o, o_cap),
        }
    }
}

/// `result_take(out)`: the held result of the previous call.
pub(crate) fn result_take(out: &mut [u8]) -> i32 {
    // SAFETY: as in `call`: `out` is a live, writable slice of `out.len()` bytes.
    unsafe { take(out.as_mut_ptr(), out.len()) }
}

/// `now()`: monotonic monitor time in milliseconds.
pub(crate) fn now() -> i64 {
    // SAFETY: no arguments; the monitor only returns a value.
    unsafe { now_ms() }
}

/// `random(buf)`: fills `buf` (at most `MAX_RANDOM` bytes) from the monitor's entropy.
pub(crate) fn random(buf: &mut [u8]) -> i32 {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes.
    unsafe { random_fill(buf.as_mut_ptr(), buf.len()) }
}

/// `exit(code)`: ends this agent; the monitor never returns into it.
pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: no pointers; the import does not return (the monitor unwinds the agent).
    unsafe { exit_with(code) }
}
