//! The monitor's pure logic, tested on the host: physical frame allocation, the monotonic
//! clock's arithmetic, entropy health checks, and the platform abstraction. The binary
//! (`main.rs` and its target-only modules) wires these to the hardware.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod clock;
pub mod entropy;
pub mod frames;
pub mod pagetable;
pub mod platform;
