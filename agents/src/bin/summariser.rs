//! Summariser: serves summaries to other agents. Waits for a message, asks the in-house model
//! to summarise its text, and replies in the same conversation (A2A context id). When the
//! model is unavailable or refused, it replies with a plain extractive summary and says so.
//! Serves until a client ends its session with [`END_OF_SESSION`] (parked, costing no CPU,
//! between messages). It logs nothing once it has a message: the message's labels (`phi`)
//! are then its own.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use omega_example_agents::{END_OF_SESSION, LOCAL_MODEL, clip};
use omega_sdk::{Error, info};

omega_sdk::entry!(main);

const MAX_TOKENS: u32 = 200;

fn main() -> Result<(), Error> {
    info!("serving summaries");
    loop {
        let request = omega_sdk::recv()?;
        let text = request.text();
        if text == END_OF_SESSION {
            return Ok(());
        }
        let prompt = format!("Summarise for a busy clinician in three lines:\n\n{text}");
        let summary = match omega_sdk::infer(LOCAL_MODEL, &prompt, MAX_TOKENS) {
            Ok(s) => s,
            Err(e @ (Error::Unavailable { .. } | Error::Failed { .. } | Error::Denied { .. })) => {
                format!("{} [extractive: {e}]", extractive(&text))
            }
            Err(e) => return Err(e),
        };
        request.reply_text(&summary)?;
    }
}

/// How many lines, and the most urgent ones (lines are `id: urgency N: …` from triage; any
/// other text just gets its first lines).
fn extractive(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let urgency = |l: &&str| {
        l.find("urgency ")
            .and_then(|i| l[i + 8..].chars().next())
            .and_then(|c| c.to_digit(10))
            .unwrap_or(9)
    };
    let top = lines.iter().map(urgency).min().unwrap_or(9);
    let urgent: Vec<&str> = lines
        .iter()
        .filter(|l| top < 9 && urgency(l) == top)
        .copied()
        .collect();
    let head: Vec<&str> = if urgent.is_empty() {
        lines.iter().take(3).copied().collect()
    } else {
        urgent
    };
    clip(
        &format!("{} items; first: {}", lines.len(), head.join(" | ")),
        600,
    )
}
