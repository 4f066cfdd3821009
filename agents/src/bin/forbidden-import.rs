//! Hostile: imports a function outside the host ABI (WASI's `fd_write`, as a module built
//! for another host would). The monitor must refuse it at load, naming the import.
#![no_std]
#![no_main]

omega_sdk::entry!(main);

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn fd_write(fd: i32, iovs: *const u32, iovs_len: i32, written: *mut u32) -> i32;
}

fn main() -> Result<(), omega_sdk::Error> {
    let text = b"escaped\n";
    let iov = [text.as_ptr() as u32, text.len() as u32];
    let mut written = 0u32;
    // SAFETY: the pointers are to live locals; this agent must never get to run, though: the
    // monitor refuses the import before instantiating it.
    let ret = unsafe { fd_write(1, iov.as_ptr(), 1, &mut written) };
    omega_sdk::info!("fd_write returned {ret}");
    Ok(())
}
