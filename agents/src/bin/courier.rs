//! Courier: sends one message to each agent of another image in
//! [`omega_example_agents::COURIER_TARGETS`] and logs what came back: delivered, denied (by
//! this image's policy, or by the other image's: the rule is then `node:rule`), or
//! unavailable (no session, or it broke). The monitor parks each `send` until the other
//! image's gate has answered, so the three lines are the three outcomes, in order, each
//! with the time from `send` to its outcome (monitor clock, ms): the cross-image round trip
//! when the session was already up.
#![no_std]
#![no_main]

extern crate alloc;

use omega_example_agents::COURIER_TARGETS;
use omega_sdk::{Error, info};

omega_sdk::entry!(main);

fn main() -> Result<(), Error> {
    for to in COURIER_TARGETS {
        let t0 = omega_sdk::now();
        let sent = omega_sdk::send_text(to, Some("peer-demo"), "hello from another image");
        let ms = omega_sdk::now().saturating_sub(t0);
        match sent {
            Ok(()) => info!("courier: {to}: delivered ({ms} ms)"),
            Err(Error::Denied { rule }) => info!("courier: {to}: denied ({rule}) ({ms} ms)"),
            Err(e @ (Error::Unavailable { .. } | Error::Failed { .. })) => {
                info!("courier: {to}: {e} ({ms} ms)")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
