//! Hostile: traps every time it runs (a Wasm `unreachable`). The monitor reports each trap
//! and restarts it only as often as its restart policy says.
#![no_std]
#![no_main]

omega_sdk::entry!(main);

fn main() -> Result<(), omega_sdk::Error> {
    omega_sdk::info!("started at {} ms; trapping", omega_sdk::now());
    core::arch::wasm32::unreachable()
}
