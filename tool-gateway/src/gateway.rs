//! The guest side: the catalogue of namespaced, pinned tools and the guest's requests
//! (`tools/list`, `tools/call`), each answered on one line.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{Value, json};
use tracing::{info, warn};

use crate::manifest::Manifest;
use crate::pins::{Pins, format_pin, parse_pin};
use crate::rpc::{self, LineError, code};
use crate::server::{CallError, Server};

/// Why a tool cannot be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the policy pins no tool of this name")]
    NotPinned,
    #[error("its entry hashes to {current}, the policy pins {expected}")]
    PinMismatch { current: String, expected: String },
    #[error("its name is not a valid tool name")]
    BadName,
    #[error("its server lists the name twice")]
    Ambiguous,
    #[error("its entry has no string description or no object inputSchema")]
    BadEntry,
}

/// One tool as its server lists it.
#[derive(Debug, Clone)]
pub struct Tool {
    server: usize,
    /// The name on its server (without the namespace).
    pub name: String,
    pub description: String,
    pub input_schema: Value,
    /// `tool_pin` of the entry as listed now.
    pub pin: [u8; 32],
    pub status: Result<(), Unavailable>,
}

/// The gateway: servers, expected pins, and the current catalogue.
pub struct Gateway {
    servers: Vec<Arc<Server>>,
    pins: Pins,
    /// Namespaced name → tool; each server's entries replaced whole on a re-list.
    catalogue: Mutex<BTreeMap<String, Tool>>,
    /// The [`Server::changes`] count each server's catalogue entries were listed at.
    listed_at: Mutex<Vec<u64>>,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Gateway {
    /// Starts every server of the manifest, negotiates, lists their tools, and starts the
    /// thread that re-lists a server after it announces a change. A server that fails to
    /// start stays in the gateway as unavailable; answers to the guest go to `out`.
    pub fn start(manifest: &Manifest, pins: Pins, out: Box<dyn Write + Send>) -> Arc<Gateway> {
        let (changed, changes): (Sender<usize>, Receiver<usize>) = mpsc::channel();
        let mut servers = Vec::new();
        for (i, spec) in manifest.servers.iter().enumerate() {
            let tx = changed.clone();
            let on_change = Box::new(move || {
                let _ = tx.send(i);
            });
            match Server::spawn(spec.clone(), &manifest.log_dir, on_change) {
                Ok(s) => servers.push(s),
                Err(e) => {
                    warn!(server = spec.name, "failed to start: {e}");
                    servers.push(Server::failed(
                        spec.clone(),
                        format!("failed to start: {e}"),
                    ));
                }
            }
        }
        let gateway = Arc::new(Gateway {
            listed_at: Mutex::new(vec![0; servers.len()]),
            servers,
            pins,
            catalogue: Mutex::new(BTreeMap::new()),
            out: Mutex::new(out),
        });
        // Servers start in parallel: a slow one delays start-up by its own timeout only.
        // (One that failed to spawn fails `negotiate` at once.)
        let starts: Vec<_> = (0..gateway.servers.len())
            .map(|i| {
                let g = Arc::clone(&gateway);
                thread::spawn(move || {
                    if let Err(e) = g.servers[i].negotiate() {
                        warn!(server = g.servers[i].name(), "no usable MCP session: {e}");
                        g.servers[i].kill(e);
                        return;
                    }
                    g.relist(i);
                })
            })
            .collect();
        for s in starts {
            let _ = s.join();
        }
        let g = Arc::clone(&gateway);
        thread::spawn(move || {
            for i in changes {
                g.servers[i].relist_started();
                g.relist(i);
                g.notify_guest(omega_tool_protocol::LIST_CHANGED);
            }
        });
        gateway
    }

    /// Re-lists server `i` and replaces its catalogue entries (none if it fails).
    fn relist(&self, i: usize) {
        let server = &self.servers[i];
        let at = server.changes();
        let listed = server.list_tools();
        let mut catalogue = self.catalogue.lock().expect("lock");
        catalogue.retain(|_, t| t.server != i);
        let entries = match listed {
            Ok(entries) => entries,
            Err(e) => {
                warn!(
                    server = server.name(),
                    "tools/list failed, its tools are unavailable: {e}"
                );
                server.kill(e);
                return;
            }
        };
        let mut seen = BTreeMap::<String, usize>::new();
        for entry in &entries {
            let tool = self.check(i, entry);
            *seen.entry(tool.name.clone()).or_default() += 1;
            catalogue.insert(format!("{}.{}", server.name(), tool.name), tool);
        }
        for (name, count) in seen {
            if count > 1 {
                // SECURITY: two entries of one name: which one a call reaches is unknowable.
                if let Some(t) = catalogue.get_mut(&format!("{}.{name}", server.name())) {
                    t.status = Err(Unavailable::Ambiguous);
                }
            }
        }
        for (name, tool) in catalogue.iter().filter(|(_, t)| t.server == i) {
            match &tool.status {
                Ok(()) => info!(tool = name, pin = format_pin(&tool.pin), "available"),
                Err(why) => warn!(tool = name, "unavailable: {why}"),
            }
        }
        self.listed_at.lock().expect("lock")[i] = at;
    }

    /// Checks one `tools/list` entry of server `i` against the pins.
    fn check(&self, i: usize, entry: &Value) -> Tool {
        let name = entry.get("name").and_then(Value::as_str).unwrap_or("");
        let description = entry.get("description").and_then(Value::as_str);
        let schema = entry.get("inputSchema").filter(|s| s.is_object());
        let mut tool = Tool {
            server: i,
            name: rpc::truncate(name, 128).to_owned(),
            description: description.unwrap_or("").to_owned(),
            input_schema: schema.cloned().unwrap_or(Value::Null),
            pin: [0; 32],
            status: Ok(()),
        };
        tool.status = if !crate::is_tool_name(name) {
            Err(Unavailable::BadName)
        } else if let (Some(d), Some(s)) = (description, schema) {
            tool.pin = omega_tool_protocol::tool_pin(d, s);
            let full = format!("{}.{name}", self.servers[i].name());
            match self.pins.get(&full) {
                None => Err(Unavailable::NotPinned),
                Some(expected) if *expected != tool.pin => Err(Unavailable::PinMismatch {
                    current: format_pin(&tool.pin),
                    expected: format_pin(expected),
                }),
                Some(_) => Ok(()),
            }
        } else {
            Err(Unavailable::BadEntry)
        };
        tool
    }

    /// The tool `name` if it can be called now, else why not (as a guest error).
    fn available(&self, name: &str) -> Result<Tool, (i64, String)> {
        let catalogue = self.catalogue.lock().expect("lock");
        let Some(tool) = catalogue.get(name) else {
            return Err((
                code::TOOL_UNAVAILABLE,
                format!("no tool `{}`", rpc::truncate(name, 200)),
            ));
        };
        if let Err(why) = &tool.status {
            return Err((
                code::TOOL_UNAVAILABLE,
                format!("tool `{name}` is unavailable: {why}"),
            ));
        }
        let server = &self.servers[tool.server];
        if let Some(e) = server.dead() {
            return Err((e.code(), e.to_string()));
        }
        // SECURITY: from the moment a server announces a change until its re-list is
        // checked, none of its tools is callable (rug-pull defence).
        if server.changes() != self.listed_at.lock().expect("lock")[tool.server] {
            return Err((
                code::TOOL_UNAVAILABLE,
                format!("tool `{name}` changed; unavailable until re-listed and pinned"),
            ));
        }
        Ok(tool.clone())
    }

    /// The guest's `tools/list`: available tools, namespaced, with their pins.
    pub fn list(&self) -> Value {
        let catalogue = self.catalogue.lock().expect("lock");
        let listed_at = self.listed_at.lock().expect("lock");
        let tools: Vec<Value> = catalogue
            .iter()
            .filter(|(_, t)| {
                let s = &self.servers[t.server];
                t.status.is_ok() && s.dead().is_none() && s.changes() == listed_at[t.server]
            })
            // Only the pinned fields: unpinned ones (title, annotations) never reach the guest.
            .map(|(name, t)| {
                json!({
                    "name": name,
                    "description": t.description,
                    "inputSchema": t.input_schema,
                    "pin": format_pin(&t.pin),
                })
            })
            .collect();
        // Each server's identity and state, for the operator and, later, the evidence.
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|s| {
                json!({
                    "name": s.name(),
                    "package": s.spec.package,
                    "version": s.spec.version,
                    "revision": s.protocol().map(|p| p.revision()),
                    "available": s.dead().is_none(),
                })
            })
            .collect();
        json!({ "tools": tools, "servers": servers })
    }

    /// The guest's `tools/call` {name, arguments, pin?}: forwarded only if every check
    /// holds; the answer (result or error) is written to the guest when it comes.
    pub fn call(self: &Arc<Self>, id: Value, params: &Value) {
        if let Err((c, m)) = self.try_call(&id, params) {
            self.refuse(&id, c, &m);
        }
    }

    fn try_call(self: &Arc<Self>, id: &Value, params: &Value) -> Result<(), (i64, String)> {
        let bad = |m: &str| (code::INVALID_PARAMS, m.to_owned());
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no string `name`"))?;
        let arguments = match params.get("arguments") {
            None => json!({}),
            Some(a) if a.is_object() => a.clone(),
            Some(_) => return Err(bad("`arguments` is not an object")),
        };
        let tool = self.available(name)?;
        if let Some(pin) = params.get("pin") {
            let pin = pin
                .as_str()
                .and_then(parse_pin)
                .ok_or_else(|| bad("`pin` is not sha256:<hex>"))?;
            if pin != tool.pin {
                return Err((
                    code::PIN_MISMATCH,
                    format!("tool `{name}` is no longer the pinned entry"),
                ));
            }
        }
        let (g, answer_id, pin) = (Arc::clone(self), id.clone(), format_pin(&tool.pin));
        let reply = Box::new(move |outcome: Result<Value, CallError>| {
            match outcome
                .map_err(|e| (e.code(), e.to_string()))
                .and_then(|r| guest_result(&r, pin))
            {
                Ok(result) => g.send(&rpc::result(&answer_id, result)),
                Err((c, m)) => g.refuse(&answer_id, c, &m),
            }
        });
        self.servers[tool.server]
            .call_tool(&tool.name, &arguments, reply)
            .map_err(|e| (e.code(), e.to_string()))
    }

    fn refuse(&self, id: &Value, code: i64, message: &str) {
        info!(code, "call refused: {message}");
        self.send(&rpc::error(id, code, message));
    }

    /// Handles one guest line; answers are written to `out` (calls answer when their
    /// server does, in completion order).
    pub fn handle_line(self: &Arc<Self>, line: &[u8]) {
        let msg: Value = match serde_json::from_slice(line) {
            Ok(m) => m,
            Err(_) => return self.send(&rpc::error(&Value::Null, code::PARSE, "malformed JSON")),
        };
        let Some(id) = msg
            .get("id")
            .filter(|id| id.is_number() || id.is_string())
            .cloned()
        else {
            // A notification (or an id we cannot echo): nothing to answer, nothing forwarded.
            return;
        };
        let params = msg.get("params").cloned().unwrap_or(json!({}));
        match msg.get("method").and_then(Value::as_str) {
            Some("tools/list") => self.send(&rpc::result(&id, self.list())),
            Some("ping") => self.send(&rpc::result(&id, json!({}))),
            Some("tools/call") => self.call(id, &params),
            Some(_) => self.send(&rpc::error(&id, code::METHOD_NOT_FOUND, "unknown method")),
            None => self.send(&rpc::error(&id, code::INVALID_REQUEST, "no method")),
        }
    }

    /// Reads guest lines from `input` until it ends, then stops every server.
    pub fn serve(self: &Arc<Self>, mut input: impl BufRead) -> std::io::Result<()> {
        let mut line = Vec::new();
        loop {
            match rpc::read_line(&mut input, &mut line) {
                Ok(true) if line.iter().all(u8::is_ascii_whitespace) => {}
                Ok(true) => self.handle_line(&line),
                Ok(false) => break,
                Err(LineError::TooLong) => {
                    self.send(&rpc::error(
                        &Value::Null,
                        code::INVALID_REQUEST,
                        "line too long",
                    ));
                    rpc::skip_line(&mut input)?;
                }
                Err(LineError::Io(e)) => return Err(e),
            }
        }
        self.shutdown();
        Ok(())
    }

    /// Kills every server.
    pub fn shutdown(&self) {
        for s in &self.servers {
            s.kill(CallError::Unavailable {
                server: s.name().to_owned(),
                why: "shut down".into(),
            });
        }
    }

    fn notify_guest(&self, method: &str) {
        self.send(&rpc::notification(method, None));
    }

    fn send(&self, msg: &Value) {
        let mut line = serde_json::to_vec(msg).expect("a Value serialises");
        line.push(b'\n');
        let mut out = self.out.lock().expect("lock");
        if let Err(e) = out.write_all(&line).and_then(|_| out.flush()) {
            warn!("writing to the guest: {e}");
        }
    }
}

/// The result the guest gets: only the fields it checks, and the pin of the entry that
/// answered.
fn guest_result(result: &Value, pin: String) -> Result<Value, (i64, String)> {
    let Some(obj) = result.as_object() else {
        return Err((
            code::SERVER_PROTOCOL,
            "tools/call result is not an object".into(),
        ));
    };
    let mut out = serde_json::Map::new();
    for key in ["content", "structuredContent", "isError"] {
        if let Some(v) = obj.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    out.insert("pin".into(), json!(pin));
    Ok(Value::Object(out))
}
