//! The template agent: copy this file to start a new one (see docs/sdk.md). It answers every
//! message it receives with the message's text and a timestamp.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;

use omega_sdk::{Error, info};

omega_sdk::entry!(main);

fn main() -> Result<(), Error> {
    info!("template agent started");
    loop {
        let message = omega_sdk::recv()?;
        let answer = format!("{} (at {} ms)", message.text(), omega_sdk::now());
        message.reply_text(&answer)?;
    }
}
