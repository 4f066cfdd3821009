//! The gateway against real MCP servers: the npm reference servers and our own Python ones
//! (tool-gateway/servers/), including hostile ones. docs/tools.md maps each test to the
//! MCPSecBench attack category it covers.

mod common;

use std::time::{Duration, Instant};

use common::{Env, call, error_code, offered, revisions, text};
use omega_tool_gateway::rpc::code;
use serde_json::json;

/// An allowed call reaches the reference filesystem server and returns the file; an unpinned
/// tool of the same server (`write_file`) is neither offered nor callable.
#[test]
fn filesystem_read_works_end_to_end_and_unpinned_tools_do_not() {
    let Some(mut env) = Env::new() else { return };
    let data = env.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("hello.txt"), "hello from the host\n").unwrap();
    let args = [data.display().to_string()];
    env.npm_server("filesystem", "server-filesystem", &args, "{}", "");
    env.pin_listed("filesystem", &["read_text_file"]);
    let mut gw = env.start();

    assert_eq!(offered(&mut gw), ["filesystem.read_text_file"]);
    let path = data.join("hello.txt").display().to_string();
    let answer = call(
        &mut gw,
        "filesystem.read_text_file",
        json!({ "path": path }),
    );
    assert_eq!(text(&answer), "hello from the host\n", "{answer}");
    assert!(
        answer["result"]["pin"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    let target = data.join("written.txt");
    let answer = call(
        &mut gw,
        "filesystem.write_file",
        json!({ "path": target.display().to_string(), "content": "x" }),
    );
    assert_eq!(error_code(&answer), code::TOOL_UNAVAILABLE, "{answer}");
    assert!(!target.exists(), "an unpinned tool reached the server");

    assert_eq!(revisions(&mut gw), ["2025-11-25"]);
    let list = gw.request("tools/list", json!({}));
    assert_eq!(
        list["result"]["servers"][0]["package"],
        "@modelcontextprotocol/server-filesystem"
    );
}

/// The reference memory server, asked for an older handshake revision it supports.
#[test]
fn memory_create_entities_then_read_graph() {
    let Some(mut env) = Env::new() else { return };
    let store = env.dir.path().join("memory.jsonl");
    let menv = format!("{{ MEMORY_FILE_PATH = {:?} }}", store.display().to_string());
    env.npm_server(
        "memory",
        "server-memory",
        &[],
        &menv,
        "protocol = \"2025-06-18\"",
    );
    env.pin_listed("memory", &["create_entities", "read_graph"]);
    let mut gw = env.start();

    let entity =
        json!({ "name": "omega", "entityType": "project", "observations": ["pinned tools"] });
    let answer = call(
        &mut gw,
        "memory.create_entities",
        json!({ "entities": [entity] }),
    );
    assert!(answer.get("result").is_some(), "{answer}");
    let graph = call(&mut gw, "memory.read_graph", json!({}));
    assert!(text(&graph).contains("pinned tools"), "{graph}");
    assert_eq!(revisions(&mut gw), ["2025-06-18"]);
}

/// Our server on the Python SDK: the stateless 2026-07-28 revision when offered (auto), the
/// handshake when the manifest asks for it; both serve calls.
#[test]
fn python_sdk_server_at_both_revisions() {
    let Some(mut env) = Env::new() else { return };
    env.python_server("modern", "benign.py", &[], "");
    env.python_server("legacy", "benign.py", &[], "protocol = \"2025-11-25\"");
    env.pin_listed("modern", &["echo", "add"])
        .pin_listed("legacy", &["echo"]);
    let mut gw = env.start();

    assert_eq!(revisions(&mut gw), ["2026-07-28", "2025-11-25"]);
    assert_eq!(
        text(&call(&mut gw, "modern.echo", json!({ "text": "hi" }))),
        "hi"
    );
    assert_eq!(
        text(&call(&mut gw, "modern.add", json!({ "a": 2, "b": 40 }))),
        "42"
    );
    assert_eq!(
        text(&call(&mut gw, "legacy.echo", json!({ "text": "yo" }))),
        "yo"
    );
}

/// A tool the policy does not pin, pins differently, or a pin the guest decided on that is not
/// the tool's: refused, and the server's own log shows no call reached it.
#[test]
fn unpinned_or_mispinned_calls_never_reach_the_server() {
    let Some(mut env) = Env::new() else { return };
    env.python_server("benign", "benign.py", &[], "");
    env.pin_listed("benign", &["echo"])
        .pin("benign.add", &[7; 32]);
    let mut gw = env.start();

    assert_eq!(offered(&mut gw), ["benign.echo"]);
    let answer = call(&mut gw, "benign.add", json!({ "a": 1, "b": 2 }));
    assert_eq!(error_code(&answer), code::TOOL_UNAVAILABLE);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pins"),
        "{answer}"
    );
    for name in ["benign.nope", "echo", "other.echo", ""] {
        assert_eq!(
            error_code(&call(&mut gw, name, json!({}))),
            code::TOOL_UNAVAILABLE,
            "{name}"
        );
    }
    let stale = gw.request(
        "tools/call",
        json!({ "name": "benign.echo", "arguments": { "text": "x" }, "pin": format!("sha256:{}", "00".repeat(32)) }),
    );
    assert_eq!(error_code(&stale), code::PIN_MISMATCH);
    let bad_args = gw.request(
        "tools/call",
        json!({ "name": "benign.echo", "arguments": [1] }),
    );
    assert_eq!(error_code(&bad_args), code::INVALID_PARAMS);
    assert_eq!(
        env.calls_received("benign"),
        0,
        "a refused call reached the server"
    );

    // The log does record calls: the allowed one shows up.
    assert_eq!(
        text(&call(&mut gw, "benign.echo", json!({ "text": "ok" }))),
        "ok"
    );
    assert_eq!(env.calls_received("benign"), 1);
}

/// The pins can come from the compiled policy itself: a tool it declares with the entry the
/// server lists is available, one it does not declare is not.
#[test]
fn pins_from_the_compiled_policy() {
    let Some(mut env) = Env::new() else { return };
    env.python_server("benign", "benign.py", &[], "");
    let entries = env.entries("benign");
    let echo = entries.iter().find(|e| e["name"] == "echo").unwrap();
    let src = format!(
        "policy \"tools\"\ntool benign.echo {{\n  description {}\n  schema {}\n}}\n",
        echo["description"], echo["inputSchema"]
    );
    let compiled = policy_compiler::compile("tools.policy", &src, env.dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    env.policy(compiled.to_bytes());
    let mut gw = env.start();

    assert_eq!(offered(&mut gw), ["benign.echo"]);
    assert_eq!(
        text(&call(&mut gw, "benign.echo", json!({ "text": "p" }))),
        "p"
    );
    let add = call(&mut gw, "benign.add", json!({ "a": 1, "b": 1 }));
    assert_eq!(error_code(&add), code::TOOL_UNAVAILABLE);
    assert_eq!(env.calls_received("benign"), 1);
}

/// Rug pull: the tool changes its description after the first call and announces it; from
/// then on it is cut off (at the stateless and at the handshake revision).
#[test]
fn rug_pull_is_cut_off_after_list_changed() {
    let Some(mut env) = Env::new() else { return };
    env.python_server("rug", "hostile.py", &["rugpull"], "");
    env.python_server(
        "rug_legacy",
        "hostile.py",
        &["rugpull"],
        "protocol = \"2025-11-25\"",
    );
    env.pin_listed("rug", &["lookup"])
        .pin_listed("rug_legacy", &["lookup"]);
    let mut gw = env.start();
    assert_eq!(revisions(&mut gw), ["2026-07-28", "2025-11-25"]);

    for server in ["rug", "rug_legacy"] {
        let tool = format!("{server}.lookup");
        assert!(offered(&mut gw).contains(&tool));
        let first = call(&mut gw, &tool, json!({ "key": "a" }));
        assert_eq!(text(&first), "value of a", "{first}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while offered(&mut gw).contains(&tool) {
            assert!(
                Instant::now() < deadline,
                "{tool} still offered after the rug pull"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let second = call(&mut gw, &tool, json!({ "key": "b" }));
        assert_eq!(error_code(&second), code::TOOL_UNAVAILABLE, "{second}");
        assert_eq!(
            env.calls_received(server),
            1,
            "{server}: a call after the rug pull reached it"
        );
        let announced = format!("tools list changed server=\"{server}\"");
        assert!(
            env.gateway_log().contains(&announced),
            "{server}: cut off without the notification"
        );
    }
    // The guest is told once the re-list is done.
    gw.wait_notification("notifications/tools/list_changed");
    let log = env.gateway_log();
    assert!(log.contains("unavailable: its entry hashes to"), "{log}");
}

/// Shadowing: a server advertising tools named like another server's (`echo`,
/// `filesystem.read_file`) gets them only under its own namespace; the real one still answers.
#[test]
fn shadowing_cannot_replace_another_servers_tool() {
    let Some(mut env) = Env::new() else { return };
    env.python_server("benign", "benign.py", &[], "");
    env.python_server("shadow", "hostile.py", &["shadow"], "");
    env.pin_listed("benign", &["echo"]);
    // Even pinned under its own name, the shadow's echo cannot take benign's place.
    env.pin_listed("shadow", &["echo"]);
    let mut gw = env.start();

    let mut names = offered(&mut gw);
    names.sort();
    assert_eq!(names, ["benign.echo", "shadow.echo"]);
    assert_eq!(
        text(&call(&mut gw, "benign.echo", json!({ "text": "real" }))),
        "real"
    );
    assert_eq!(
        env.calls_received("shadow"),
        0,
        "a call for benign.echo reached the shadow"
    );
    let answer = call(
        &mut gw,
        "shadow.filesystem.read_file",
        json!({ "path": "/etc/passwd" }),
    );
    assert_eq!(error_code(&answer), code::TOOL_UNAVAILABLE);
    assert_eq!(env.calls_received("shadow"), 0);
}

/// Tool poisoning: the policy pinned the clean description; the server serves one with
/// instructions in it, so its entry hashes differently and the tool is unavailable.
#[test]
fn poisoned_description_is_unavailable() {
    let Some(mut env) = Env::new() else { return };
    env.python_server("poison", "hostile.py", &["poison"], "");
    let entries = env.entries("poison");
    let add = entries.iter().find(|e| e["name"] == "add").unwrap();
    assert!(add["description"].as_str().unwrap().contains("<IMPORTANT>"));
    let clean = omega_tool_protocol::tool_pin("Add two integers.", &add["inputSchema"]);
    env.pin("poison.add", &clean);
    let mut gw = env.start();

    assert!(offered(&mut gw).is_empty());
    let answer = call(&mut gw, "poison.add", json!({ "a": 1, "b": 2 }));
    assert_eq!(error_code(&answer), code::TOOL_UNAVAILABLE);
    assert_eq!(env.calls_received("poison"), 0);
    let list = gw.request("tools/list", json!({}));
    assert!(
        !list.to_string().contains("IMPORTANT"),
        "the poisoned text reached the guest"
    );
}

/// Oversized results, an oversized line, malformed JSON and silence end in clean errors;
/// other servers keep working, and a silent one does not hold up calls to the others.
#[test]
fn huge_malformed_and_silent_servers_fail_cleanly() {
    let Some(mut env) = Env::new() else { return };
    env.python_server("benign", "benign.py", &[], "");
    env.python_server("huge", "hostile.py", &["huge"], "");
    env.python_server("malformed", "hostile.py", &["malformed"], "");
    env.python_server("silent", "hostile.py", &["silent"], "timeout_ms = 3000");
    env.pin_listed("benign", &["echo"])
        .pin_listed("huge", &["huge"])
        .pin_listed("malformed", &["broken"])
        .pin_listed("silent", &["wait"]);
    let mut gw = env.start();

    // Silence: the call times out, and a call to another server sent after it answers first.
    let started = Instant::now();
    let waiting = gw.send(
        "tools/call",
        json!({ "name": "silent.wait", "arguments": {} }),
    );
    let echo = gw.send(
        "tools/call",
        json!({ "name": "benign.echo", "arguments": { "text": "hi" } }),
    );
    let first = gw.next_response();
    assert_eq!(
        first["id"], echo,
        "the silent server held up another server's call: {first}"
    );
    assert_eq!(text(&first), "hi");
    let timed_out = gw.wait(waiting);
    assert_eq!(error_code(&timed_out), code::TIMEOUT, "{timed_out}");
    assert!(started.elapsed() >= Duration::from_millis(2900));

    // Over max_result_bytes: refused, the server stays usable.
    let big = call(&mut gw, "huge.huge", json!({ "size": 300_000 }));
    assert_eq!(error_code(&big), code::RESULT_TOO_LARGE, "{big}");
    assert_eq!(
        text(&call(&mut gw, "huge.huge", json!({ "size": 3 }))),
        "xxx"
    );
    // A line over 1 MiB: a protocol violation; the server is cut off.
    let over = call(&mut gw, "huge.huge", json!({ "size": 2 << 20 }));
    assert_eq!(error_code(&over), code::SERVER_PROTOCOL, "{over}");
    let after = call(&mut gw, "huge.huge", json!({ "size": 3 }));
    assert_eq!(error_code(&after), code::SERVER_PROTOCOL, "{after}");

    let broken = call(&mut gw, "malformed.broken", json!({}));
    assert_eq!(
        broken.pointer("/error/code"),
        Some(&json!(code::SERVER_PROTOCOL)),
        "{broken} {}",
        env.gateway_log()
    );
    assert_eq!(
        text(&call(&mut gw, "benign.echo", json!({ "text": "still" }))),
        "still"
    );
    let names = offered(&mut gw);
    assert!(
        names.contains(&"benign.echo".to_owned()) && !names.iter().any(|n| n.starts_with("huge."))
    );
}

/// The guest side of the protocol: malformed lines and unknown methods get errors,
/// notifications get nothing, and nothing is forwarded; a server that cannot start is
/// only unavailable.
#[test]
fn guest_protocol_errors() {
    let Some(mut env) = Env::new() else { return };
    env.python_server("benign", "benign.py", &[], "");
    env.pin_listed("benign", &["echo"]);
    // A server whose command does not exist: unavailable, the others unaffected.
    env.raw_server(
        "[[server]]\nname = \"missing\"\ncommand = \"/nonexistent/mcp\"\npackage = \"x\"\nversion = \"1\"\n",
    );
    env.pin("missing.tool", &[1; 32]);
    let mut gw = env.start();
    assert_eq!(revisions(&mut gw), ["2026-07-28", "-"]);
    let missing = call(&mut gw, "missing.tool", json!({}));
    assert_eq!(error_code(&missing), code::TOOL_UNAVAILABLE, "{missing}");

    gw.write_line(b"{not json");
    assert_eq!(error_code(&gw.next_response()), code::PARSE);
    gw.notify(
        "tools/call",
        Some(json!({ "name": "benign.echo", "arguments": { "text": "n" } })),
    );
    assert_eq!(
        error_code(&gw.request("resources/list", json!({}))),
        code::METHOD_NOT_FOUND
    );
    assert_eq!(
        error_code(&gw.request("tools/call", json!({ "arguments": {} }))),
        code::INVALID_PARAMS
    );
    assert_eq!(gw.request("ping", json!({}))["result"], json!({}));
    assert_eq!(
        env.calls_received("benign"),
        0,
        "a notification was forwarded as a call"
    );
}

/// A server answering `initialize` with an older revision it supports is spoken to at that
/// revision; one answering a revision we do not speak is cut off. (A minimal raw server: the
/// SDKs answer the revision they are asked for.)
#[test]
fn handshake_accepts_older_revisions_and_refuses_unknown_ones() {
    let Some(mut env) = Env::new() else { return };
    let raw = env.dir.path().join("raw.py");
    std::fs::write(
        &raw,
        r#"
import json, sys
revision = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    if m["method"] == "initialize":
        r = {"protocolVersion": revision, "capabilities": {"tools": {}}, "serverInfo": {"name": "raw", "version": "1"}}
    elif m["method"] == "tools/list":
        r = {"tools": [{"name": "hi", "description": "Say hi.", "inputSchema": {"type": "object"}}]}
    elif m["method"] == "tools/call":
        r = {"content": [{"type": "text", "text": "hi"}]}
    else:
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "error": {"code": -32601, "message": "no"}}), flush=True)
        continue
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}), flush=True)
"#,
    )
    .unwrap();
    let python = env.python();
    let pin = omega_tool_protocol::tool_pin("Say hi.", &json!({ "type": "object" }));
    for (name, revision) in [("older", "2025-06-18"), ("future", "2099-01-01")] {
        let args = format!("args = [{:?}, {revision:?}]", raw.display().to_string());
        let block = format!(
            "[[server]]\nname = {name:?}\ncommand = {:?}\n{args}\npackage = \"raw\"\nversion = \"1\"\n",
            python.display().to_string()
        );
        env.raw_server(&block);
        env.pin(&format!("{name}.hi"), &pin);
    }
    let mut gw = env.start();
    // The refused server agreed on nothing and is unavailable.
    assert_eq!(revisions(&mut gw), ["2025-06-18", "-"]);
    let list = gw.request("tools/list", json!({}));
    assert_eq!(list["result"]["servers"][1]["available"], false, "{list}");
    assert_eq!(text(&call(&mut gw, "older.hi", json!({}))), "hi");
    let refused = call(&mut gw, "future.hi", json!({}));
    assert_eq!(error_code(&refused), code::TOOL_UNAVAILABLE, "{refused}");
}

/// Killing the gateway (as the launcher does at the end of a session) kills its servers too,
/// even one that would never exit on its own.
#[test]
fn servers_die_with_the_gateway() {
    let Some(mut env) = Env::new() else { return };
    env.python_server("benign", "benign.py", &[], "");
    env.python_server("silent", "hostile.py", &["silent"], "");
    env.pin_listed("silent", &["wait"]);
    let mut gw = env.start();
    let _ = gw.send(
        "tools/call",
        json!({ "name": "silent.wait", "arguments": {} }),
    );
    assert_eq!(revisions(&mut gw).len(), 2);

    let children = |pid: u32| -> Vec<u32> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        let mut all = Vec::new();
        for task in tasks {
            let list = std::fs::read_to_string(task.unwrap().path().join("children")).unwrap();
            all.extend(list.split_whitespace().map(|p| p.parse::<u32>().unwrap()));
        }
        all
    };
    let servers = children(gw.pid());
    assert_eq!(servers.len(), 2, "{servers:?}");
    gw.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in servers {
        // Gone, or a zombie waiting for init to reap it.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z "))
        };
        while alive() {
            assert!(
                Instant::now() < deadline,
                "server {pid} outlived the gateway"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
