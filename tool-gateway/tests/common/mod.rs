//! Shared by the gateway's tests and its benchmark: the installed MCP servers, manifests
//! written into a temporary folder, and a line-based JSON-RPC peer for any process.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use omega_tool_gateway::pins::format_pin;
use omega_tool_gateway::server::Server;
use omega_tool_gateway::{Manifest, rpc};
use serde_json::{Value, json};

/// How long a test waits for any one answer before failing.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The MCP servers installed by scripts/install-mcp-servers.sh ([`omega_test_support::require`]d).
pub fn mcp_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("OMEGA_MCP_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/omega/mcp")));
    omega_test_support::require(
        dir.filter(|d| d.join("installed").is_file()),
        "MCP servers not installed (run scripts/install-mcp-servers.sh; OMEGA_MCP_DIR)",
    )
}

/// A line-based JSON-RPC peer: a child process spoken to on its stdin/stdout.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    next_id: u64,
    /// Responses read while waiting for another id.
    early: HashMap<u64, Value>,
    /// Notifications received so far.
    pub notifications: Vec<Value>,
}

impl Peer {
    pub fn spawn(cmd: &mut Command) -> Peer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("peer printed a line that is not JSON ({e}): {line}")
                });
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Peer {
            child,
            stdin,
            lines,
            next_id: 1,
            early: HashMap::new(),
            notifications: Vec::new(),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Writes one raw line.
    pub fn write_line(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("open");
        stdin
            .write_all(line)
            .and_then(|_| stdin.write_all(b"\n"))
            .and_then(|_| stdin.flush())
            .expect("write");
    }

    /// Sends a request; its id.
    pub fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let line = serde_json::to_vec(&rpc::request(&json!(id), method, params)).unwrap();
        self.write_line(&line);
        id
    }

    /// Sends a notification.
    pub fn notify(&mut self, method: &str, params: Option<Value>) {
        let line = serde_json::to_vec(&rpc::notification(method, params)).unwrap();
        self.write_line(&line);
    }

    /// The next message that is not a notification (any id).
    pub fn next_response(&mut self) -> Value {
        loop {
            let msg = self
                .lines
                .recv_timeout(PATIENCE)
                .expect("an answer in time");
            if msg.get("method").is_some() && msg.get("id").is_none() {
                self.notifications.push(msg);
            } else {
                return msg;
            }
        }
    }

    /// Waits until a notification `method` has arrived (panics after [`PATIENCE`]).
    pub fn wait_notification(&mut self, method: &str) {
        while !self.notifications.iter().any(|n| n["method"] == method) {
            let msg = self
                .lines
                .recv_timeout(PATIENCE)
                .expect("the notification in time");
            match msg.get("id").and_then(Value::as_u64) {
                Some(id) => {
                    self.early.insert(id, msg);
                }
                None => self.notifications.push(msg),
            }
        }
    }

    /// The response to request `id` (whole message).
    pub fn wait(&mut self, id: u64) -> Value {
        if let Some(m) = self.early.remove(&id) {
            return m;
        }
        loop {
            let msg = self.next_response();
            match msg.get("id").and_then(Value::as_u64) {
                Some(got) if got == id => return msg,
                Some(other) => {
                    self.early.insert(other, msg);
                }
                None => panic!("response without a usable id: {msg}"),
            }
        }
    }

    /// Request and its response message.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params);
        self.wait(id)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway set-up in a temporary folder: servers, pins, logs.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub mcp: PathBuf,
    servers: Vec<String>,
    pins: Vec<String>,
    /// A compiled policy to take the pins from instead of `pins`.
    policy: Option<Vec<u8>>,
}

impl Env {
    /// `None` (after a loud skip, or a failure under CI) when the servers are not installed.
    pub fn new() -> Option<Env> {
        Some(Env {
            dir: tempfile::tempdir().unwrap(),
            mcp: mcp_dir()?,
            servers: Vec::new(),
            pins: Vec::new(),
            policy: None,
        })
    }

    pub fn python(&self) -> PathBuf {
        self.mcp.join("venv/bin/python")
    }

    /// The file server `name` (one of ours) appends every request it receives to.
    pub fn request_log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.requests.log"))
    }

    /// How many `tools/call` requests server `name` has received (its own log).
    pub fn calls_received(&self, name: &str) -> usize {
        let log = std::fs::read_to_string(self.request_log(name)).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(r#""method":"tools/call""#))
            .count()
    }

    /// One of our Python servers (tool-gateway/servers/<script>), with a request log.
    pub fn python_server(
        &mut self,
        name: &str,
        script: &str,
        args: &[&str],
        extra: &str,
    ) -> &mut Env {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("servers")
            .join(script);
        let mut argv = vec![script.display().to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let env = format!(
            "{{ MCP_REQUEST_LOG = {:?} }}",
            self.request_log(name).display().to_string()
        );
        let python = self.python().display().to_string();
        self.server(name, &python, &argv, &env, "omega-test-servers", extra)
    }

    /// One of the npm reference servers (`server-filesystem`, `server-memory`).
    pub fn npm_server(
        &mut self,
        name: &str,
        package: &str,
        args: &[String],
        env: &str,
        extra: &str,
    ) -> &mut Env {
        let main = self
            .mcp
            .join("node_modules/@modelcontextprotocol")
            .join(package)
            .join("dist/index.js");
        let mut argv = vec![main.display().to_string()];
        argv.extend(args.iter().cloned());
        self.server(
            name,
            "node",
            &argv,
            env,
            &format!("@modelcontextprotocol/{package}"),
            extra,
        )
    }

    fn server(
        &mut self,
        name: &str,
        command: &str,
        args: &[String],
        env: &str,
        package: &str,
        extra: &str,
    ) -> &mut Env {
        self.servers.push(format!(
            "[[server]]\nname = {name:?}\ncommand = {command:?}\nargs = {args:?}\nenv = {env}\npackage = {package:?}\nversion = \"test\"\n{extra}\n"
        ));
        self
    }

    /// A server given as its whole manifest block.
    pub fn raw_server(&mut self, block: &str) -> &mut Env {
        self.servers.push(block.to_owned());
        self
    }

    /// Pins `name` (`server.tool`) to `pin`.
    pub fn pin(&mut self, name: &str, pin: &[u8; 32]) -> &mut Env {
        self.pins.push(format!("{name} {}", format_pin(pin)));
        self
    }

    /// Takes the pins from this compiled policy (`policy = "policy.bin"`).
    pub fn policy(&mut self, bytes: Vec<u8>) -> &mut Env {
        self.policy = Some(bytes);
        self
    }

    fn manifest_text(&self) -> String {
        let pins = match self.policy {
            Some(_) => "policy = \"policy.bin\"",
            None => "pins = \"pins.txt\"",
        };
        format!("{pins}\nlog_dir = \"logs\"\n\n{}", self.servers.join("\n"))
    }

    /// The `tools/list` entries server `name` advertises now (asked directly, as an operator
    /// would before pinning); its request log is cleared afterwards.
    pub fn entries(&self, name: &str) -> Vec<Value> {
        let m = Manifest::parse(&self.manifest_text(), self.dir.path()).expect("manifest");
        let spec = m
            .servers
            .into_iter()
            .find(|s| s.name == name)
            .expect("server");
        let server =
            Server::spawn(spec, &self.dir.path().join("logs"), Box::new(|| {})).expect("spawn");
        server.negotiate().expect("negotiate");
        let tools = server.list_tools().expect("tools/list");
        server.kill(omega_tool_gateway::server::CallError::Busy {
            server: name.into(),
        });
        let _ = std::fs::remove_file(self.request_log(name));
        tools
    }

    /// The pin of `tool` as server `server` advertises it now.
    pub fn listed_pin(&self, server: &str, tool: &str) -> [u8; 32] {
        let entries = self.entries(server);
        let e = entries
            .iter()
            .find(|e| e["name"] == tool)
            .unwrap_or_else(|| panic!("{server} lists no {tool}"));
        omega_tool_protocol::tool_pin(e["description"].as_str().unwrap(), &e["inputSchema"])
    }

    /// Pins each of `tools` of `server` as listed now.
    pub fn pin_listed(&mut self, server: &str, tools: &[&str]) -> &mut Env {
        let entries = self.entries(server);
        for tool in tools {
            let e = entries
                .iter()
                .find(|e| e["name"] == *tool)
                .unwrap_or_else(|| panic!("{server} lists no {tool}"));
            let pin = omega_tool_protocol::tool_pin(
                e["description"].as_str().unwrap(),
                &e["inputSchema"],
            );
            self.pin(&format!("{server}.{tool}"), &pin);
        }
        self
    }

    /// Writes the manifest and pins and starts `omega-tools` on them (its stderr in the folder).
    pub fn start(&self) -> Peer {
        let manifest = self.dir.path().join("tools.toml");
        std::fs::write(&manifest, self.manifest_text()).unwrap();
        std::fs::write(self.dir.path().join("pins.txt"), self.pins.join("\n")).unwrap();
        if let Some(policy) = &self.policy {
            std::fs::write(self.dir.path().join("policy.bin"), policy).unwrap();
        }
        let stderr = std::fs::File::create(self.dir.path().join("gateway.log")).unwrap();
        Peer::spawn(
            Command::new(env!("CARGO_BIN_EXE_omega-tools"))
                .arg("--manifest")
                .arg(&manifest)
                .env("RUST_LOG", "debug")
                .stderr(stderr),
        )
    }

    /// The gateway's own log so far.
    pub fn gateway_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }
}

/// `tools/call` through the gateway: the whole response message.
pub fn call(peer: &mut Peer, name: &str, arguments: Value) -> Value {
    peer.request(
        "tools/call",
        json!({ "name": name, "arguments": arguments }),
    )
}

/// The error code of a response, or panics with the response.
pub fn error_code(msg: &Value) -> i64 {
    msg.pointer("/error/code")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("expected an error: {msg}"))
}

/// The first text content of a `tools/call` result, or panics with the response.
pub fn text(msg: &Value) -> String {
    msg.pointer("/result/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("expected a text result: {msg}"))
        .to_owned()
}

/// Names of the tools the gateway offers now.
pub fn offered(peer: &mut Peer) -> Vec<String> {
    let list = peer.request("tools/list", json!({}));
    list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The revision agreed with each server, in manifest order (`-` if none).
pub fn revisions(peer: &mut Peer) -> Vec<String> {
    let list = peer.request("tools/list", json!({}));
    let servers = list["result"]["servers"].as_array().unwrap();
    servers
        .iter()
        .map(|s| s["revision"].as_str().unwrap_or("-").to_owned())
        .collect()
}
