//! Host-controlled lines on the Tools stream into the monitor's tools client, after a
//! listing and calls are pending (ids 1..=4; the listing has id 5). Invariants: no panic;
//! an id is answered at most once; an answer's text stays within `MAX_RESULT`;
//! after `list_changed` nothing is callable until a new listing; checking arguments against
//! a listed schema never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omega_tool_protocol::guest::{Client, Event, MAX_RESULT, Outcome};

const LISTING: &[u8] = br#"{"jsonrpc":"2.0","id":0,"result":{"tools":[{"name":"fs.read","description":"Read.","inputSchema":{"type":"object","properties":{"path":{"type":"string"},"n":{"anyOf":[{"type":"integer"},{"type":"null"}]},"l":{"type":"array","items":{"enum":[1,"a"]}}},"required":["path"],"additionalProperties":false}}]}}"#;

fuzz_target!(|data: &[u8]| {
    let mut c = Client::new();
    let _ = c.list_request(0);
    let _ = c.on_line(LISTING);
    for id in 1..=4 {
        let _ = c.call_request(id, "fs.read", "{}");
    }
    let _ = c.list_request(5);
    let mut answered = std::collections::BTreeSet::new();
    // Several lines per input, split at newlines as the host relay would.
    for line in data.split(|&b| b == b'\n') {
        match c.on_line(line) {
            Event::Answer { id, outcome } => {
                assert!(answered.insert(id), "id {id} answered twice");
                if let Outcome::Done { content, .. } = outcome {
                    assert!(content.len() <= MAX_RESULT);
                }
            }
            Event::Changed => assert!(c.entry("fs.read").is_none() && c.is_empty()),
            Event::Listed { .. } => {}
            Event::ListFailed(_) => assert!(c.is_empty()),
            Event::Ignored(_) => {}
        }
        // Agent-controlled arguments against the listed schema (after a re-list, whatever
        // schema the host listed).
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
            let _ = c.check_arguments("fs.read", &v);
        }
        if line.first() == Some(&b'!') {
            let _ = c.on_host_error(line.len() % 2 == 0, "x");
        }
    }
});
