//! The loader's pure logic, tested on the host: the kernel ELF parser and fw_cfg decoding
//! (the page-table builder is the shared `omega-page-tables` crate). `main.rs` wires them
//! to the hardware.
#![no_std]
#![forbid(unsafe_code)]

pub mod elf;
pub mod fwcfg;
