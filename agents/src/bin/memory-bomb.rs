//! Hostile: allocates (and touches) 64 KiB blocks until memory is refused. The monitor's
//! memory limit refuses the growth: either `memory.grow` fails and the allocation failure
//! traps it, or the runtime traps the grow itself. The other agents must not notice.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

omega_sdk::entry!(main);

const BLOCK: usize = 64 * 1024;

fn main() -> Result<(), omega_sdk::Error> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Non-zero fill: every page is really written, not just reserved.
        hoard.push(vec![0xa5; BLOCK]);
        if hoard.len().is_multiple_of(16) {
            omega_sdk::info!("holding {} KiB", hoard.len() * BLOCK / 1024);
        }
    }
}
