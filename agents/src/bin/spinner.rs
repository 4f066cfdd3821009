//! Hostile: spins forever without a host call. The scheduler's fuel slices must keep the
//! other agents running; its fuel limit (if any) ends it.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

omega_sdk::entry!(main);

/// Observable work, so the loop is not optimised into something else.
static SPINS: AtomicU64 = AtomicU64::new(0);

fn main() -> Result<(), omega_sdk::Error> {
    omega_sdk::info!("spinning");
    loop {
        SPINS.fetch_add(1, Ordering::Relaxed);
    }
}
