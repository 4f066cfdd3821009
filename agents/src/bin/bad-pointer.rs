//! Hostile: calls the host ABI directly with a pointer past the end of its memory. The
//! monitor checks every (ptr, len) against the agent's memory and traps this agent; nothing
//! else is touched.
#![no_std]
#![no_main]

omega_sdk::entry!(main);

#[link(wasm_import_module = "omega_v1")]
unsafe extern "C" {
    fn log(args: *const u8, args_len: usize, out: *mut u8, out_cap: usize) -> i32;
}

/// Near the top of the 32-bit address space: far past any agent's memory limit.
const WILD: usize = 0xffff_f000;

fn main() -> Result<(), omega_sdk::Error> {
    omega_sdk::info!("calling log with ptr {WILD:#x}");
    // SAFETY: none, deliberately: this is the out-of-bounds pointer the monitor must catch.
    // It only reads guest memory through its bounds-checked view, so no host memory is
    // touched either way.
    let ret = unsafe { log(WILD as *const u8, 4096, core::ptr::null_mut(), 0) };
    // Reached only if the monitor failed to trap.
    omega_sdk::error!("log with a wild pointer returned {ret}: the monitor did not trap");
    omega_sdk::exit(99)
}
