//! Scheduler, the tool-using agent: finds a patient through the FHIR search tool and books a
//! follow-up slot through the calendar tool. When the tools cannot be used (the policy denies
//! the call, e.g. `target-pin` while no attested tool gateway exists, or the gateway is
//! unavailable) it says so in a log line naming the rule or reason and exits 0: nothing was
//! booked, and nothing went wrong in the agent. Any other failure ends it with exit code 1.
//! Tool results are labelled `untrusted`, and a labelled context may not
//! log, so it says what it will do before its first call and nothing after a result.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use omega_example_agents::clip;
use omega_sdk::{Error, info};

omega_sdk::entry!(main);

const SEARCH: &str = "fhir.search_patients";
const BOOK: &str = "calendar.book";
const FAMILY_NAME: &str = "Smith";
const FOLLOW_UP_SLOT: u32 = 42;

/// Why scheduling failed.
#[derive(Debug)]
enum ScheduleError {
    Host(&'static str, Error),
    ToolError(&'static str, String),
    NoPatient,
}

impl core::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ScheduleError::Host(tool, e) => write!(f, "{tool}: {e}"),
            ScheduleError::ToolError(tool, content) => {
                write!(f, "{tool} reported an error: {}", clip(content, 200))
            }
            ScheduleError::NoPatient => write!(f, "no patient named {FAMILY_NAME}"),
        }
    }
}

/// Calls `tool`; a tool-reported error is an error here too.
fn call(tool: &'static str, arguments: &str) -> Result<String, ScheduleError> {
    match omega_sdk::tool_call(tool, arguments) {
        Ok(r) if !r.is_error => Ok(r.content),
        Ok(r) => Err(ScheduleError::ToolError(tool, r.content)),
        Err(e) => Err(ScheduleError::Host(tool, e)),
    }
}

fn main() -> Result<(), ScheduleError> {
    match schedule() {
        Err(ScheduleError::Host(tool, e @ (Error::Denied { .. } | Error::Unavailable { .. }))) => {
            info!("nothing booked: {tool}: {e}");
            Ok(())
        }
        done => done,
    }
}

fn schedule() -> Result<(), ScheduleError> {
    info!("booking slot {FOLLOW_UP_SLOT} for the first patient named {FAMILY_NAME}");
    let query = format!(r#"{{"family_name":"{FAMILY_NAME}","limit":10}}"#);
    let found = call(SEARCH, &query)?;
    let patient = first_id(&found).ok_or(ScheduleError::NoPatient)?;
    let booking = format!(r#"{{"patient_id":"{patient}","slot":{FOLLOW_UP_SLOT},"urgent":false}}"#);
    call(BOOK, &booking)?;
    Ok(())
}

/// The first `"id": "…"` in a JSON text (the search result's first patient), without a JSON
/// parser: ids are plain strings.
fn first_id(json: &str) -> Option<String> {
    let after = &json[json.find("\"id\"")? + 4..];
    let value = after
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(String::from(&value[..value.find('"')?]))
}
