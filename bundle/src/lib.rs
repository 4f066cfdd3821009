//! The agent bundle contract between the launcher (`omega-host`) and the monitor: what a
//! bundle may contain, the message sequence that carries it, and the guest's receiver.
//! Both sides use this crate, so the launcher refuses exactly what the guest would refuse.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod receiver;

pub use receiver::{
    BundleError, BundleFile, BundleReceiver, MAX_FILES, MAX_NAME, MAX_TOTAL, Progress,
};
