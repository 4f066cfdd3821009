//! The loader's pure logic, tested on the host: the kernel ELF parser, fw_cfg decoding and
//! the page-table builder. `main.rs` wires them to the hardware.
#![no_std]
#![forbid(unsafe_code)]

pub mod elf;
pub mod fwcfg;
pub mod paging;
