//! Inbox: waits for one message (from an agent of another image in the cross-image demo)
//! and logs who sent it and what it says, then ends.
#![no_std]
#![no_main]

extern crate alloc;

use omega_sdk::{Error, info};

omega_sdk::entry!(main);

fn main() -> Result<(), Error> {
    let message = omega_sdk::recv()?;
    info!("inbox: from {}: {}", message.from(), message.text());
    Ok(())
}
