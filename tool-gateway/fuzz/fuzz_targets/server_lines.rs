//! What an MCP server writes to its stdout, into the gateway's reader for that server
//! (`Server::read_from`: bounded line reading, JSON parsing, responses matched to pending
//! requests by id, requests from the server answered, notifications), on a server without
//! a process (`Server::detached`) with two `tools/call`s (ids 1 and 2) waiting. Invariants:
//! no panic; each call is answered exactly once (by the server's line, or failed when the
//! input ends or breaks the protocol); a result passed on is within `max_result_bytes`;
//! every line the gateway writes back to the server (answers to its requests) is one
//! JSON-RPC 2.0 object.
#![no_main]
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use omega_tool_gateway::server::Server;
use omega_tool_gateway::{Manifest, ServerSpec};
use serde_json::{Value, json};

const MAX_RESULT: usize = 4096;

fn spec() -> &'static ServerSpec {
    static S: OnceLock<ServerSpec> = OnceLock::new();
    S.get_or_init(|| {
        let text = format!(
            "pins = \"pins.txt\"\n[[server]]\nname = \"fuzz\"\ncommand = \"none\"\npackage = \"p\"\nversion = \"1\"\nmax_result_bytes = {MAX_RESULT}\n"
        );
        Manifest::parse(&text, Path::new("/nonexistent"))
            .expect("a manifest with one server")
            .servers
            .remove(0)
    })
}

fuzz_target!(|data: &[u8]| {
    let changes = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&changes);
    let (server, lines) = Server::detached(
        spec().clone(),
        Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let answers: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    for i in 0..2 {
        let a = Arc::clone(&answers);
        server
            .call_tool(
                "t",
                &json!({"i": i}),
                Box::new(move |r| {
                    if let Ok(v) = &r {
                        let size = serde_json::to_vec(v).unwrap().len();
                        assert!(size <= MAX_RESULT, "a result of {size} bytes passed");
                    }
                    a[i].fetch_add(1, Ordering::SeqCst);
                }),
            )
            .expect("the calls are sent");
    }
    server.read_from(data);
    // The input ended (or broke the protocol): the server is cut off and nothing waits.
    assert!(server.dead().is_some());
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.load(Ordering::SeqCst), 1, "call {i} answered other than once");
    }
    // Our two requests, then only answers to the server's own requests.
    for (n, line) in lines.try_iter().enumerate() {
        let v: Value = serde_json::from_slice(&line).expect("the gateway writes JSON");
        assert_eq!(v["jsonrpc"], "2.0");
        if n >= 2 {
            assert!(v.get("method").is_none(), "a request the gateway did not send: {v}");
        }
    }
});
