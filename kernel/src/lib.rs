//! The monitor's library half: pure logic, no `unsafe`, tested on the host.
//!
//! | module | owns |
//! |---|---|
//! | [`admission`] | which agents the heap can hold |
//! | [`attest`] | the monitor's evidence about itself: boot id and log origin, the host's challenge, the claims, the channel transport to a simulated PSP |
//! | [`channel`] | the host channel endpoint (handshake, credits, reassembly, resync, error reports) over a byte [`channel::Transport`] |
//! | [`checkpoints`] | when the log signs a periodic checkpoint |
//! | [`clock`] | TSC-to-nanoseconds arithmetic and calibration maths |
//! | [`entropy`] | health-checked key material from a hardware RNG |
//! | [`frames`] | the physical frame allocator |
//! | [`heap_size`] | how big the heap is, from the memory map |
//! | [`platform`] | the [`platform::Platform`] trait, and [`platform::NoTee`] |
//!
//! The binary half (`main.rs`) wires these to the hardware: `hw/` holds every `unsafe`
//! piece (CPU tables, heap, RNG and TSC instructions, the shared DMA pool, the virtio
//! driver, the SEV-SNP platform), `monitor.rs` the boot sequence and its state, and
//! `services/` one module per channel stream.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod admission;
pub mod attest;
pub mod channel;
pub mod checkpoints;
pub mod clock;
pub mod entropy;
pub mod frames;
pub mod heap_size;
pub mod platform;
