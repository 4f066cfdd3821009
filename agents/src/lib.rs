//! What the example agents share: the names of the demo scenario (the demo policy,
//! `agents/demo/demo.policy`, declares the same agents, models, sources and tools) and the
//! record format of its patient data.
#![no_std]

extern crate alloc;

use alloc::string::String;

/// Reads patient records (`phi`) and asks the model to triage them.
pub const TRIAGE: &str = "triage";
/// Summarises what it is sent; cleared for `phi`.
pub const SUMMARISER: &str = "summariser";
/// Books appointments through tools; not cleared for `phi`.
pub const SCHEDULER: &str = "scheduler";

/// The text of the message that ends a conversation with the summariser: it stops serving
/// (exit 0) once its client says so, which lets the monitor finish when the work is done.
pub const END_OF_SESSION: &str = "end of session";

/// The in-house model the policy clears for `phi`.
pub const LOCAL_MODEL: &str = "local_llm";
/// The public model the policy does not clear for `phi`.
pub const PUBLIC_MODEL: &str = "public_llm";

/// The electronic health record source (labels `phi`, `pii`).
pub const EHR: &str = "ehr";
/// In [`EHR`]: one record path per line (`/patients/…`, the paths the policy's read rules
/// match).
pub const PATIENT_INDEX: &str = "/patients/index.txt";

/// Lines of a record `key: value`; the value of `key` (first match), trimmed.
pub fn field<'a>(record: &'a str, key: &str) -> Option<&'a str> {
    record.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// `text` cut to at most `max` bytes at a char boundary, with `…` when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return String::from(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = String::from(&text[..end]);
    s.push('…');
    s
}

/// The cross-image demo (docs/fleet.md, `qemu-tests/tests/peer.rs`): `courier` runs on node
/// `node-a` and sends to agents of node `node-b`, where `inbox` waits for one message.
pub const COURIER: &str = "courier";
/// Receives one message from another image and says so.
pub const INBOX: &str = "inbox";
/// What the courier sends, in order: one the receiving image's policy refuses, one its own
/// policy refuses (it never leaves), and the one `inbox` gets (last: `inbox` then ends).
pub const COURIER_TARGETS: [&str; 3] = ["node-b/vault", "node-b/archive", "node-b/inbox"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_finds_the_first_matching_key() {
        let record = "id: p001\nname: Ada Smith\ncomplaint: chest pain: severe\nid: other";
        assert_eq!(field(record, "id"), Some("p001"));
        assert_eq!(field(record, "complaint"), Some("chest pain: severe"));
        assert_eq!(field(record, "age"), None);
    }

    #[test]
    fn clip_cuts_on_a_char_boundary() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("ééé", 3), "é…");
    }
}
