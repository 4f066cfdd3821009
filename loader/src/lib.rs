//! The loader's pure logic, tested on the host: the kernel ELF parser, fw_cfg decoding and
//! the direct map's shape (the page-table builder is the shared `omega-page-tables` crate). `main.rs` wires them
//! to the hardware.
#![no_std]
#![forbid(unsafe_code)]

pub mod direct_map;
pub mod elf;
pub mod fwcfg;
