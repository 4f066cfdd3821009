//! The guest's JSON-RPC lines (what arrives on the Tools stream) into the gateway's reader
//! and request handler (`Gateway::serve`: bounded line reading, JSON parsing, tools/list,
//! tools/call checks, ping), with no server running, so that every call is refused by the
//! gateway's own checks. Invariants: no panic; every answer is one line of JSON-RPC 2.0;
//! each malformed line gets exactly one PARSE error (id null), each request with a number
//! or string id exactly one answer carrying that id, in order, and notifications (no
//! usable id) none; no call is ever forwarded (only errors answer tools/call).
#![no_main]
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use omega_tool_gateway::rpc::code;
use omega_tool_gateway::{Gateway, Manifest, Pins};
use serde_json::Value;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn gateway() -> &'static (Arc<Gateway>, Sink) {
    static G: OnceLock<(Arc<Gateway>, Sink)> = OnceLock::new();
    G.get_or_init(|| {
        let manifest = Manifest::parse("pins = \"pins.txt\"\n", Path::new("/nonexistent"))
            .expect("a manifest without servers");
        let sink = Sink::default();
        (
            Gateway::start(&manifest, Pins::default(), Box::new(sink.clone())),
            sink,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (g, sink) = gateway();
    sink.0.lock().unwrap().clear();
    // What the gateway must answer, line by line.
    let mut expected: Vec<Option<Value>> = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Err(_) => expected.push(Some(Value::Null)),
            Ok(v) => {
                if let Some(id) = v.get("id").filter(|id| id.is_number() || id.is_string()) {
                    expected.push(Some(id.clone()));
                }
            }
        }
    }
    // serve() ends by shutting every server down: none here, so the gateway stays usable.
    g.serve(io::Cursor::new(data)).expect("reading from memory");
    let out = std::mem::take(&mut *sink.0.lock().unwrap());
    assert!(out.is_empty() || out.ends_with(b"\n"));
    let answers: Vec<Value> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("answers are JSON"))
        .collect();
    assert_eq!(answers.len(), expected.len(), "one answer per request");
    for (a, id) in answers.iter().zip(&expected) {
        assert_eq!(a["jsonrpc"], "2.0");
        assert_eq!(
            Some(&a["id"]),
            id.as_ref(),
            "answer carries the request's id"
        );
        assert!(a.get("result").is_some() != a.get("error").is_some());
        if let Some(e) = a.get("error") {
            let c = e["code"].as_i64().expect("numeric code");
            assert!(
                [
                    code::PARSE,
                    code::INVALID_REQUEST,
                    code::METHOD_NOT_FOUND,
                    code::INVALID_PARAMS,
                    code::TOOL_UNAVAILABLE
                ]
                .contains(&c),
                "unexpected error code {c}"
            );
        }
    }
});
