//! Triage: reads the patient records in the `ehr` source (labelled `phi`), asks the in-house
//! model to rate each one's urgency, and sends the ratings to the summariser (cleared for
//! `phi`), then tells it the session is over. When the model is unavailable or the policy
//! refuses it (`target-pin` without the attested proxy; `flow:phi` while the proxy's TEE is
//! unproven), it rates by keywords instead and says so in each rating, `[keyword rules, not a
//! model: …]`: never a made-up model answer. Before it reads any record (its context still
//! carries no label) it asks the model one general question and logs the answer.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use omega_example_agents::{
    EHR, END_OF_SESSION, LOCAL_MODEL, PATIENT_INDEX, SUMMARISER, clip, field,
};
use omega_sdk::{Error, info};

omega_sdk::entry!(main);

/// Most tokens the model may answer with (the policy allows up to 4096 for this agent).
const MAX_TOKENS: u32 = 128;

/// Why a triage round failed (exit code 1; a host call's error names its rule or reason).
#[derive(Debug)]
enum TriageError {
    Host(Error),
    NoRecords,
    EmptySummary,
}

impl From<Error> for TriageError {
    fn from(e: Error) -> Self {
        TriageError::Host(e)
    }
}

impl core::fmt::Display for TriageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TriageError::Host(e) => write!(f, "{e}"),
            TriageError::NoRecords => write!(f, "no records in {EHR}:{PATIENT_INDEX}"),
            TriageError::EmptySummary => write!(f, "the summariser answered with no text"),
        }
    }
}

/// The question asked before any record is read: no patient data in it.
const WARM_UP: &str = "In one short sentence: what does a triage nurse do?";

fn main() -> Result<(), TriageError> {
    match omega_sdk::infer(LOCAL_MODEL, WARM_UP, 32) {
        Ok(answer) => info!("model {LOCAL_MODEL} says: {}", clip(answer.trim(), 160)),
        Err(e) => info!("model {LOCAL_MODEL} not asked: {e}"),
    }
    info!("triaging the records listed in {EHR}:{PATIENT_INDEX}");
    let index = omega_sdk::read_to_end(EHR, PATIENT_INDEX)?;
    let index = String::from_utf8_lossy(&index);
    let mut ratings = Vec::new();
    for path in index.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let record = omega_sdk::read_to_end(EHR, path)?;
        let record = String::from_utf8_lossy(&record);
        let id = field(&record, "id").unwrap_or(path);
        let rating = rate(&record)?;
        ratings.push(format!("{id}: {rating}"));
    }
    if ratings.is_empty() {
        return Err(TriageError::NoRecords);
    }

    let context = format!("triage-{}", omega_sdk::now());
    omega_sdk::send_text(SUMMARISER, Some(&context), &ratings.join("\n"))?;
    loop {
        let reply = omega_sdk::recv()?;
        let d = reply.delivered();
        // Anything else (another agent, an older round) is not the answer: keep waiting.
        if d.from == SUMMARISER && d.message.context_id == Some(context.as_str()) {
            if reply.text().is_empty() {
                return Err(TriageError::EmptySummary);
            }
            omega_sdk::send_text(SUMMARISER, Some(&context), END_OF_SESSION)?;
            return Ok(());
        }
    }
}

/// One record's urgency, by the model or, when it cannot be reached or is refused, by
/// keywords.
fn rate(record: &str) -> Result<String, Error> {
    let prompt = format!(
        "You are a triage nurse. Rate this patient's urgency from 1 (immediate) to 5 \
         (non-urgent) and give one short reason. Answer exactly as `urgency N: reason`.\n\n{record}"
    );
    match omega_sdk::infer(LOCAL_MODEL, &prompt, MAX_TOKENS) {
        Ok(answer) => Ok(format!(
            "{} [model {LOCAL_MODEL}]",
            clip(answer.trim(), 200)
        )),
        Err(e @ (Error::Unavailable { .. } | Error::Failed { .. } | Error::Denied { .. })) => {
            Ok(format!(
                "{} [keyword rules, not a model: {e}]",
                keyword_rating(record)
            ))
        }
        Err(e) => Err(e),
    }
}

/// Red-flag complaints first: the rule a triage desk applies without a model.
fn keyword_rating(record: &str) -> String {
    const RULES: [(u8, &[&str]); 3] = [
        (
            1,
            &[
                "chest pain",
                "not breathing",
                "unconscious",
                "stroke",
                "severe bleeding",
            ],
        ),
        (
            2,
            &["shortness of breath", "confusion", "high fever", "fracture"],
        ),
        (3, &["fever", "vomiting", "sprain", "wound"]),
    ];
    let complaint = field(record, "complaint").unwrap_or(record).to_lowercase();
    for (urgency, words) in RULES {
        if let Some(w) = words.iter().find(|w| complaint.contains(*w)) {
            return format!("urgency {urgency}: {w}");
        }
    }
    "urgency 5: no red flags".to_string()
}
