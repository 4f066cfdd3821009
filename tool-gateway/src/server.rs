//! One MCP server: its process, the line protocol over its stdin/stdout, and protocol
//! negotiation. A request registers a reply that runs on the server's reader thread when the
//! answer comes, or on its timer thread at the deadline: nobody waits on a silent server
//! except the calls made to it, and an answer reaches the guest with no thread hand-off.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::manifest::{HANDSHAKE_REVISIONS, ProtocolChoice, STATELESS_REVISION, ServerSpec};
use crate::rpc::{self, LineError, MAX_LINE, code};

/// Most requests waiting for one server's answers.
pub const MAX_PENDING: usize = 32;
/// Most lines queued for one server's stdin.
const OUTBOX: usize = 32;
/// Most `tools/list` pages and tools per server.
pub const MAX_PAGES: usize = 64;
pub const MAX_TOOLS: usize = 1024;
/// Longest server error message passed on to the guest.
const MAX_SERVER_MESSAGE: usize = 1024;

/// Why a request to a server failed. Every variant means nothing more was forwarded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("server `{server}` is unavailable: {why}")]
    Unavailable { server: String, why: String },
    #[error("server `{server}` did not answer within {ms} ms")]
    Timeout { server: String, ms: u128 },
    #[error("server `{server}` broke the protocol: {why}")]
    Protocol { server: String, why: String },
    #[error("server `{server}` answered with error {code}: {message}")]
    Server {
        server: String,
        code: i64,
        message: String,
    },
    #[error("server `{server}`: result of {size} bytes is over the limit of {max}")]
    TooLarge {
        server: String,
        size: usize,
        max: usize,
    },
    #[error("server `{server}` has too many requests in flight")]
    Busy { server: String },
}

impl CallError {
    /// The JSON-RPC error code the guest gets.
    pub fn code(&self) -> i64 {
        match self {
            CallError::Unavailable { .. } => code::SERVER_UNAVAILABLE,
            CallError::Timeout { .. } => code::TIMEOUT,
            CallError::Protocol { .. } => code::SERVER_PROTOCOL,
            CallError::Server { .. } => code::SERVER_ERROR,
            CallError::TooLarge { .. } => code::RESULT_TOO_LARGE,
            CallError::Busy { .. } => code::BUSY,
        }
    }
}

/// The revision agreed with a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// 2026-07-28: no session; every request carries the `_meta` envelope.
    Stateless,
    /// An `initialize` handshake revision.
    Handshake(&'static str),
}

impl Protocol {
    /// The revision string.
    pub fn revision(self) -> &'static str {
        match self {
            Protocol::Stateless => STATELESS_REVISION,
            Protocol::Handshake(r) => r,
        }
    }
}

/// What to do with a request's outcome; runs exactly once.
pub type Reply = Box<dyn FnOnce(Result<Value, CallError>) + Send>;

struct Pending {
    deadline: Instant,
    timeout: Duration,
    reply: Reply,
}

/// A running MCP server.
pub struct Server {
    pub spec: ServerSpec,
    /// `None` for a server that failed to start.
    child: Mutex<Option<Child>>,
    outbox: SyncSender<Vec<u8>>,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Wakes the timer thread when a request is added or the server dies.
    timer: Condvar,
    next_id: AtomicU64,
    dead: Mutex<Option<CallError>>,
    protocol: OnceLock<Protocol>,
    /// Bumped by every `notifications/tools/list_changed` (see [`Server::changes`]).
    changes: AtomicU64,
    /// Whether `on_change` has run and the re-list it asked for has not started yet.
    relist_queued: AtomicBool,
    on_change: Box<dyn Fn() + Send + Sync>,
}

impl Server {
    /// Starts the server's process (no shell; environment: PATH plus the manifest's `env`;
    /// stderr appended to `<log_dir>/<name>.stderr.log`) and its reader and writer threads.
    /// `on_change` runs on the reader thread after each tools list change notification.
    pub fn spawn(
        spec: ServerSpec,
        log_dir: &Path,
        on_change: Box<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<Arc<Server>> {
        std::fs::create_dir_all(log_dir)?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{}.stderr.log", spec.name)))?;
        let mut cmd = Command::new(&spec.command);
        // SECURITY: the launcher's environment (credentials, tokens) is not the tool's.
        cmd.args(&spec.args).env_clear().envs(&spec.env);
        if let Some(path) = std::env::var_os("PATH")
            && !spec.env.contains_key("PATH")
        {
            cmd.env("PATH", path);
        }
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        // SECURITY: a server outlives nothing: if the gateway dies (the launcher kills it),
        // the kernel kills the server too, so a hostile one cannot linger on the host.
        // (The signal follows the spawning thread: servers are spawned by the main thread.)
        let gateway = std::process::id() as libc::pid_t;
        // SAFETY: only prctl, getppid and _exit, all async-signal-safe, run in the child
        // between fork and exec; nothing is allocated or locked.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The gateway died before the prctl: no signal would come.
                if libc::getppid() != gateway {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        // SECURITY: server stderr goes to a log file, never to the guest.
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (outbox, lines) = mpsc::sync_channel(OUTBOX);
        let server = Arc::new(Server::new(spec, Some(child), outbox, None, on_change));
        let s = Arc::clone(&server);
        thread::spawn(move || s.write_loop(stdin, lines));
        let s = Arc::clone(&server);
        thread::spawn(move || s.read_from(stdout));
        let s = Arc::clone(&server);
        thread::spawn(move || s.timer_loop());
        Ok(server)
    }

    /// A server without a process (fuzzing, tests): the lines the gateway would write to
    /// its stdin arrive on the returned receiver (at most 32 queued; then sends fail as
    /// for a full stdin), and [`Server::read_from`] plays its stdout. No timer runs.
    pub fn detached(
        spec: ServerSpec,
        on_change: Box<dyn Fn() + Send + Sync>,
    ) -> (Arc<Server>, Receiver<Vec<u8>>) {
        let (outbox, lines) = mpsc::sync_channel(OUTBOX);
        (
            Arc::new(Server::new(spec, None, outbox, None, on_change)),
            lines,
        )
    }

    /// A server that could not be started: every request fails with `why`.
    pub fn failed(spec: ServerSpec, why: String) -> Arc<Server> {
        let (outbox, _) = mpsc::sync_channel(1);
        let dead = CallError::Unavailable {
            server: spec.name.clone(),
            why,
        };
        Arc::new(Server::new(spec, None, outbox, Some(dead), Box::new(|| {})))
    }

    fn new(
        spec: ServerSpec,
        child: Option<Child>,
        outbox: SyncSender<Vec<u8>>,
        dead: Option<CallError>,
        on_change: Box<dyn Fn() + Send + Sync>,
    ) -> Server {
        Server {
            spec,
            child: Mutex::new(child),
            outbox,
            pending: Mutex::new(HashMap::new()),
            timer: Condvar::new(),
            next_id: AtomicU64::new(1),
            dead: Mutex::new(dead),
            protocol: OnceLock::new(),
            changes: AtomicU64::new(0),
            relist_queued: AtomicBool::new(false),
            on_change,
        }
    }

    /// The server's name (its namespace).
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The revision agreed in [`Server::negotiate`].
    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol.get().copied()
    }

    /// How many tools list changes the server has announced so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Called as a re-list asked for by `on_change` starts: later changes ask again.
    pub fn relist_started(&self) {
        self.relist_queued.store(false, Ordering::SeqCst);
    }

    /// Why the server is unusable, if it is.
    pub fn dead(&self) -> Option<CallError> {
        self.dead.lock().expect("lock").clone()
    }

    /// Negotiates the protocol revision the manifest asks for and the server supports.
    pub fn negotiate(&self) -> Result<Protocol, CallError> {
        let protocol = match self
            .spec
            .protocol_choice()
            .expect("validated by the manifest")
        {
            ProtocolChoice::Auto => match self.discover() {
                Ok(p) => p,
                // A server without the stateless revision answers an error (method not found).
                Err(CallError::Server { .. }) | Err(CallError::Protocol { .. })
                    if self.dead().is_none() =>
                {
                    self.handshake(HANDSHAKE_REVISIONS[0])?
                }
                Err(e) => return Err(e),
            },
            ProtocolChoice::Stateless => self.discover()?,
            ProtocolChoice::Handshake(revision) => self.handshake(revision)?,
        };
        let _ = self.protocol.set(protocol);
        info!(
            server = self.name(),
            revision = protocol.revision(),
            "MCP revision agreed"
        );
        Ok(protocol)
    }

    fn discover(&self) -> Result<Protocol, CallError> {
        let result = self.request_as(
            "server/discover",
            json!({}),
            true,
            self.spec.start_timeout(),
        )?;
        let offers = result
            .get("supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|r| r == STATELESS_REVISION));
        if !offers {
            return Err(self.protocol_error("server/discover does not offer 2026-07-28"));
        }
        let lists_changes = result
            .pointer("/capabilities/tools/listChanged")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if lists_changes {
            // In 2026-07-28 change notifications ride a long-lived `subscriptions/listen`;
            // its answer (only when the server ends it) is ignored.
            let id = self.next_id.fetch_add(1, Ordering::SeqCst);
            let params = with_envelope(json!({ "notifications": { "toolsListChanged": true } }));
            self.send(&rpc::request(&json!(id), "subscriptions/listen", params))?;
        }
        Ok(Protocol::Stateless)
    }

    fn handshake(&self, revision: &'static str) -> Result<Protocol, CallError> {
        let params = json!({
            "protocolVersion": revision,
            "capabilities": {},
            "clientInfo": { "name": "omega-tools", "version": env!("CARGO_PKG_VERSION") },
        });
        let result = self.request_as("initialize", params, false, self.spec.start_timeout())?;
        let answered = result.get("protocolVersion").and_then(Value::as_str);
        // The server may answer an older revision it supports; we accept the ones we speak.
        let Some(agreed) = HANDSHAKE_REVISIONS.iter().find(|r| Some(**r) == answered) else {
            let why = format!("unsupported protocol revision {answered:?}");
            self.kill(self.protocol_error(&why));
            return Err(self.protocol_error(&why));
        };
        self.send(&rpc::notification("notifications/initialized", None))?;
        Ok(Protocol::Handshake(agreed))
    }

    /// All tool entries of `tools/list`, following `nextCursor` (bounded).
    pub fn list_tools(&self) -> Result<Vec<Value>, CallError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let page = self.request("tools/list", params, self.spec.start_timeout())?;
            let Some(entries) = page.get("tools").and_then(Value::as_array) else {
                return Err(self.protocol_error("tools/list result has no `tools` array"));
            };
            tools.extend(entries.iter().cloned());
            if tools.len() > MAX_TOOLS {
                return Err(self.protocol_error("more than MAX_TOOLS tools"));
            }
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(next) if cursor.as_deref() != Some(next) => cursor = Some(next.to_owned()),
                Some(_) => return Err(self.protocol_error("tools/list cursor repeats")),
                None => return Ok(tools),
            }
        }
        Err(self.protocol_error("more than MAX_PAGES tools/list pages"))
    }

    /// `tools/call` with the server's own tool name; `reply` gets the result (at most
    /// `max_result_bytes`) or the error. `Err` (and no reply) if it could not be sent.
    pub fn call_tool(&self, tool: &str, arguments: &Value, reply: Reply) -> Result<(), CallError> {
        let params = json!({ "name": tool, "arguments": arguments });
        let (server, max) = (self.name().to_owned(), self.spec.max_result_bytes);
        let checked: Reply = Box::new(move |answer| {
            reply(answer.and_then(|result| {
                let size = serde_json::to_vec(&result)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX);
                if size > max {
                    return Err(CallError::TooLarge { server, size, max });
                }
                Ok(result)
            }))
        });
        let stateless = self.protocol() == Some(Protocol::Stateless);
        self.send_request(
            "tools/call",
            params,
            stateless,
            self.spec.call_timeout(),
            checked,
        )
    }

    /// A request at the agreed revision, waiting at most `timeout` for the answer.
    pub fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let stateless = self.protocol() == Some(Protocol::Stateless);
        self.request_as(method, params, stateless, timeout)
    }

    fn request_as(
        &self,
        method: &str,
        params: Value,
        stateless: bool,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let (tx, answer) = mpsc::sync_channel(1);
        let reply: Reply = Box::new(move |r| {
            let _ = tx.send(r);
        });
        self.send_request(method, params, stateless, timeout, reply)?;
        // The timer thread replies by the deadline; the margin only guards against a bug.
        answer
            .recv_timeout(timeout + Duration::from_secs(5))
            .unwrap_or_else(|_| {
                Err(CallError::Timeout {
                    server: self.name().to_owned(),
                    ms: timeout.as_millis(),
                })
            })
    }

    /// Registers `reply` and sends the request. `Err` (and `reply` dropped) if not sent.
    fn send_request(
        &self,
        method: &str,
        params: Value,
        stateless: bool,
        timeout: Duration,
        reply: Reply,
    ) -> Result<(), CallError> {
        if let Some(e) = self.dead() {
            return Err(e);
        }
        let params = if stateless {
            with_envelope(params)
        } else {
            params
        };
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        {
            let mut pending = self.pending.lock().expect("lock");
            if pending.len() >= MAX_PENDING {
                return Err(CallError::Busy {
                    server: self.name().to_owned(),
                });
            }
            pending.insert(
                id,
                Pending {
                    deadline: Instant::now() + timeout,
                    timeout,
                    reply,
                },
            );
        }
        self.timer.notify_one();
        if let Err(e) = self.send(&rpc::request(&json!(id), method, params)) {
            // If the entry is gone, the server died meanwhile and `kill` has replied already:
            // one answer per request, never two.
            if self.pending.lock().expect("lock").remove(&id).is_some() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Fails requests whose deadline passed (and tells the server they are cancelled).
    fn timer_loop(&self) {
        let mut pending = self.pending.lock().expect("lock");
        loop {
            if self.dead().is_some() && pending.is_empty() {
                return;
            }
            let now = Instant::now();
            let expired: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| p.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            if !expired.is_empty() {
                let replies: Vec<(u64, Pending)> = expired
                    .iter()
                    .filter_map(|id| pending.remove_entry(id))
                    .collect();
                drop(pending);
                for (id, p) in replies {
                    warn!(server = self.name(), id, "timed out");
                    let cancel = json!({ "requestId": id, "reason": "timeout" });
                    let _ = self.send(&rpc::notification("notifications/cancelled", Some(cancel)));
                    let ms = p.timeout.as_millis();
                    (p.reply)(Err(CallError::Timeout {
                        server: self.name().to_owned(),
                        ms,
                    }));
                }
                pending = self.pending.lock().expect("lock");
                continue;
            }
            let next = pending.values().map(|p| p.deadline).min();
            let wait = next.map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
            pending = self.timer.wait_timeout(pending, wait).expect("lock").0;
        }
    }

    /// Queues one message for the server's stdin without blocking.
    fn send(&self, msg: &Value) -> Result<(), CallError> {
        let line = serde_json::to_vec(msg).expect("a Value serialises");
        if line.len() > MAX_LINE {
            return Err(CallError::Unavailable {
                server: self.name().to_owned(),
                why: "request longer than MAX_LINE".into(),
            });
        }
        // SECURITY: a server that stops reading fills the queue; callers then get Busy
        // instead of blocking behind it.
        self.outbox.try_send(line).map_err(|e| match e {
            TrySendError::Full(_) => CallError::Busy {
                server: self.name().to_owned(),
            },
            TrySendError::Disconnected(_) => self.dead().unwrap_or(CallError::Unavailable {
                server: self.name().to_owned(),
                why: "stdin closed".into(),
            }),
        })
    }

    fn write_loop(&self, mut stdin: ChildStdin, lines: Receiver<Vec<u8>>) {
        for line in lines {
            let written = stdin
                .write_all(&line)
                .and_then(|_| stdin.write_all(b"\n"))
                .and_then(|_| stdin.flush());
            if let Err(e) = written {
                self.kill(CallError::Unavailable {
                    server: self.name().to_owned(),
                    why: format!("writing to it: {e}"),
                });
                return;
            }
        }
    }

    /// The reader: handles what the server writes to its stdout, line by line (≤ 1 MiB),
    /// until it ends or breaks the protocol; then the server is cut off and every waiting
    /// request fails. Runs on the server's reader thread ([`Server::detached`]: the
    /// caller's).
    pub fn read_from(&self, stdout: impl std::io::Read) {
        let mut r = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            let why = match rpc::read_line(&mut r, &mut line) {
                Ok(true) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(true) => match serde_json::from_slice::<Value>(&line) {
                    Ok(msg) => match self.dispatch(msg) {
                        Ok(()) => continue,
                        Err(why) => self.protocol_error(why),
                    },
                    Err(e) => self.protocol_error(&format!("malformed JSON: {e}")),
                },
                Ok(false) => CallError::Unavailable {
                    server: self.name().to_owned(),
                    why: "it exited".into(),
                },
                Err(LineError::TooLong) => self.protocol_error("a line longer than 1 MiB"),
                Err(LineError::Io(e)) => CallError::Unavailable {
                    server: self.name().to_owned(),
                    why: format!("reading from it: {e}"),
                },
            };
            // SECURITY: after a protocol violation nothing more from this server is trusted:
            // it is killed and every waiting call fails.
            self.kill(why);
            return;
        }
    }

    fn dispatch(&self, msg: Value) -> Result<(), &'static str> {
        let method = msg.get("method").and_then(Value::as_str);
        let id = msg.get("id");
        match (method, id) {
            (Some(method), Some(id)) => {
                // A request from the server: we offer no client features (no sampling,
                // roots or elicitation); only ping is answered.
                let answer = if method == "ping" {
                    rpc::result(id, json!({}))
                } else {
                    rpc::error(id, code::METHOD_NOT_FOUND, "not offered by omega-tools")
                };
                let _ = self.send(&answer);
                Ok(())
            }
            (Some("notifications/tools/list_changed"), None) => {
                self.changes.fetch_add(1, Ordering::SeqCst);
                // SECURITY: a flood of notifications queues one re-list, not one each.
                if !self.relist_queued.swap(true, Ordering::SeqCst) {
                    info!(server = self.name(), "tools list changed");
                    (self.on_change)();
                }
                Ok(())
            }
            (Some(other), None) => {
                debug!(server = self.name(), method = other, "notification ignored");
                Ok(())
            }
            (None, Some(id)) => {
                let answer = match (msg.get("result"), msg.get("error")) {
                    (Some(result), None) => Ok(result.clone()),
                    (None, Some(error)) => Err(CallError::Server {
                        server: self.name().to_owned(),
                        code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                        message: rpc::truncate(
                            error.get("message").and_then(Value::as_str).unwrap_or(""),
                            MAX_SERVER_MESSAGE,
                        )
                        .to_owned(),
                    }),
                    _ => return Err("a response with neither or both of result and error"),
                };
                // An unknown id is a late answer to a request that timed out: dropped.
                let pending = id
                    .as_u64()
                    .and_then(|id| self.pending.lock().expect("lock").remove(&id));
                if let Some(p) = pending {
                    (p.reply)(answer);
                }
                Ok(())
            }
            (None, None) => Err("a message that is neither request, notification nor response"),
        }
    }

    fn protocol_error(&self, why: &str) -> CallError {
        CallError::Protocol {
            server: self.name().to_owned(),
            why: why.to_owned(),
        }
    }

    /// Marks the server unusable for `why`, kills it and fails every waiting request.
    pub fn kill(&self, why: CallError) {
        {
            let mut dead = self.dead.lock().expect("lock");
            if dead.is_none() {
                warn!(server = self.name(), "cut off: {why}");
                *dead = Some(why.clone());
            }
        }
        if let Some(mut child) = self.child.lock().expect("lock").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let pending: Vec<Pending> = self
            .pending
            .lock()
            .expect("lock")
            .drain()
            .map(|(_, p)| p)
            .collect();
        self.timer.notify_one();
        for p in pending {
            (p.reply)(Err(why.clone()));
        }
    }
}

/// `params` with the 2026-07-28 envelope in `_meta`.
fn with_envelope(mut params: Value) -> Value {
    if let Some(obj) = params.as_object_mut() {
        let meta = obj.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(
                "io.modelcontextprotocol/protocolVersion".into(),
                json!(STATELESS_REVISION),
            );
            meta.insert(
                "io.modelcontextprotocol/clientCapabilities".into(),
                json!({}),
            );
            meta.insert(
                "io.modelcontextprotocol/clientInfo".into(),
                json!({ "name": "omega-tools", "version": env!("CARGO_PKG_VERSION") }),
            );
        }
    }
    params
}
