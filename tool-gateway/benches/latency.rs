//! Added latency of a `tools/call` through `omega-tools` versus the same call sent straight
//! to the same kind of server process, over the same line client: p50/p99 of each, and the
//! difference. Needs the servers of scripts/install-mcp-servers.sh.
//!
//! `cargo bench -p omega-tool-gateway --bench latency` (env CALLS: measured calls per case).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, Peer};
use serde_json::{Value, json};

const ENVELOPE_REVISION: &str = "2026-07-28";

/// One way to reach a server: the peer and how to phrase a call.
struct Route {
    peer: Peer,
    /// Tool name as this route names it.
    tool: String,
    /// Adds the 2026-07-28 `_meta` envelope (direct calls to a stateless server).
    envelope: bool,
}

impl Route {
    fn call(&mut self, arguments: &Value) -> Duration {
        let mut params = json!({ "name": self.tool, "arguments": arguments });
        if self.envelope {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": ENVELOPE_REVISION,
                "io.modelcontextprotocol/clientCapabilities": {},
            });
        }
        let start = Instant::now();
        let answer = self.peer.request("tools/call", params);
        let took = start.elapsed();
        assert!(answer.get("result").is_some(), "call failed: {answer}");
        took
    }
}

/// A direct client for `argv`: negotiates like the gateway would, then calls `tool`.
fn direct(argv: &[String], env: &[(&str, String)], stateless: bool, tool: &str) -> Route {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear().stderr(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut peer = Peer::spawn(&mut cmd);
    if !stateless {
        let init = peer.request(
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": { "name": "bench", "version": "1" },
            }),
        );
        assert!(init.get("result").is_some(), "{init}");
        peer.notify("notifications/initialized", None);
    }
    Route {
        peer,
        tool: tool.to_owned(),
        envelope: stateless,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Alternates blocks of calls between the two routes (so drift hits both) and reports.
fn compare(case: &str, direct: &mut Route, gateway: &mut Route, arguments: &Value, calls: usize) {
    for _ in 0..200 {
        direct.call(arguments);
        gateway.call(arguments);
    }
    let (mut d, mut g) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    let block = 100;
    while d.len() < calls {
        for _ in 0..block {
            d.push(direct.call(arguments));
        }
        for _ in 0..block {
            g.push(gateway.call(arguments));
        }
    }
    d.sort();
    g.sort();
    let (d50, d99, g50, g99) = (
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        percentile(&g, 0.5),
        percentile(&g, 0.99),
    );
    println!(
        "{case}: {} calls each | direct p50 {:.0} us p99 {:.0} us | gateway p50 {:.0} us p99 {:.0} us | added p50 {:.0} us p99 {:.0} us",
        d.len(),
        micros(d50),
        micros(d99),
        micros(g50),
        micros(g99),
        micros(g50) - micros(d50),
        micros(g99) - micros(d99),
    );
}

fn main() {
    let Some(mut env) = Env::new() else { return };
    let calls: usize = std::env::var("CALLS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000);

    // Our Python SDK server at 2026-07-28 (stateless) and the npm filesystem server (handshake).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/benign.py");
    let python = [
        env.python().display().to_string(),
        script.display().to_string(),
    ];
    let data = env.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f.txt"), "x".repeat(1000)).unwrap();
    let fs_main = env
        .mcp
        .join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    let node = [
        "node".to_owned(),
        fs_main.display().to_string(),
        data.display().to_string(),
    ];

    env.raw_server(&format!(
        "[[server]]\nname = \"benign\"\ncommand = {:?}\nargs = [{:?}]\npackage = \"omega-test-servers\"\nversion = \"test\"\nprotocol = \"2026-07-28\"\n",
        python[0], python[1]
    ));
    env.npm_server(
        "filesystem",
        "server-filesystem",
        &[data.display().to_string()],
        "{}",
        "",
    );
    env.pin_listed("benign", &["echo"])
        .pin_listed("filesystem", &["read_text_file"]);
    let gw = env.start();
    let mut gateway = Route {
        peer: gw,
        tool: "benign.echo".into(),
        envelope: false,
    };

    let mut direct_py = direct(&python, &[], true, "echo");
    compare(
        "python-sdk echo (2026-07-28)",
        &mut direct_py,
        &mut gateway,
        &json!({ "text": "hello" }),
        calls,
    );

    gateway.tool = "filesystem.read_text_file".into();
    let mut direct_fs = direct(&node, &[], false, "read_text_file");
    let path = json!({ "path": data.join("f.txt").display().to_string() });
    compare(
        "server-filesystem read_text_file (2025-11-25)",
        &mut direct_fs,
        &mut gateway,
        &path,
        calls,
    );
}
