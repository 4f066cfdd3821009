//! The hardware glue: every `unsafe` piece of the monitor is in this folder. Each module
//! wraps one device or CPU facility behind a safe interface that the rest of the binary
//! (and the pure logic in the library half) uses.
//!
//! | module | wraps |
//! |---|---|
//! | [`cpu`] | GDT, TSS (double-fault stack), IDT |
//! | [`apic`] | local APIC and its timer, I/O APICs, the masked 8259 PICs |
//! | [`idle`] | halting the vCPU until the channel's interrupt or a timer tick (polling under SNP) |
//! | [`heap`] | the global allocator over the direct map |
//! | [`entropy`] | RDSEED/RDRAND (`omega_kernel::entropy::HwRng`) |
//! | [`clock`] | the TSC and its PIT calibration (`omega_kernel::clock::Clock`) |
//! | [`shared_pool`] | the DMA pages shared with the host |
//! | [`virtio`] | the virtio serial port (`omega_kernel::channel::Transport`) |
//! | [`snp`] | the SEV-SNP platform (`omega_kernel::platform::Platform`) and its `#VC` set-up |

pub mod apic;
pub mod clock;
pub mod cpu;
pub mod entropy;
pub mod heap;
pub mod idle;
pub mod shared_pool;
pub mod snp;
pub mod virtio;
