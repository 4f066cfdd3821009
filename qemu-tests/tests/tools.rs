//! Agents in the real image call real MCP tools under policy: the launcher's session with
//! the real tool gateway (`omega-tools`) in front of the npm filesystem server and our
//! Python servers (benign and hostile, `tool-gateway/servers/`, each logging every request
//! it receives). The monitor lists the gateway's catalogue, computes every pin itself,
//! decides each call (policy → provenance → Tools stream) and decodes the answers.
//!
//! Needs QEMU and the MCP servers (`scripts/install-mcp-servers.sh`): missing, a failure
//! under `CI`, else a loud skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use omega_agent_abi as abi;
use omega_bundle::{AgentEntry, DataEntry, MANIFEST, Manifest};
use omega_host::session::SessionEvent;
use omega_host::session::confirm::{Answers, Operator};
use omega_host::{Bundle, FileLogStore, SessionConfig};
use omega_provenance::entry::lifecycle;
use omega_provenance::{Action, Decision};
use qemu_tests::script::{Expect, OUT, OUT_CAP, Step, postcard, script};
use qemu_tests::verified_run::{Run, run_session};
use qemu_tests::{Boot, image};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Return values an agent sees (`-ErrorCode`).
const BAD_REQUEST: i32 = -1;
const DENIED: i32 = -2;
const UNAVAILABLE: i32 = -6;
const FAILED: i32 = -8;

/// Label bits of the compiled test policies: built-ins first (phi, secret, untrusted),
/// then `label pii`.
const PHI: u64 = 1;
const UNTRUSTED: u64 = 1 << 2;
const PII: u64 = 1 << 3;

// ---------------------------------------------------------------------------------------
// Prerequisites and the gateway set-up

/// QEMU, the MCP servers and Node.js, or `None` after a loud skip (a failure under CI).
fn prerequisites() -> Option<PathBuf> {
    if !qemu_tests::qemu_present() {
        return None;
    }
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    omega_test_support::require(node.then_some(()), "node (scripts/setup.sh)")?;
    let dir = std::env::var_os("OMEGA_MCP_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/omega/mcp")));
    omega_test_support::require(
        dir.filter(|d| d.join("installed").is_file()),
        "MCP servers not installed (run scripts/install-mcp-servers.sh; OMEGA_MCP_DIR)",
    )
}

/// A gateway manifest being put together in a temporary folder, and the policy source.
struct Setup {
    dir: tempfile::TempDir,
    mcp: PathBuf,
    servers: Vec<String>,
    /// The gateway manifest names the bundle's tools file (`bundle_tools`).
    bundle_tools: bool,
}

impl Setup {
    fn new() -> Option<Setup> {
        let mcp = prerequisites()?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("gateway/logs")).unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        Some(Setup {
            dir,
            mcp,
            servers: Vec::new(),
            bundle_tools: false,
        })
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The folder the filesystem server serves.
    fn data(&self) -> PathBuf {
        self.path("data")
    }

    fn request_log(&self, server: &str) -> PathBuf {
        self.path(&format!("gateway/{server}.requests.log"))
    }

    /// `tools/call` requests server `server` received (its own log), as JSON.
    fn calls_received(&self, server: &str) -> Vec<Value> {
        std::fs::read_to_string(self.request_log(server))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["method"] == "tools/call")
            .collect()
    }

    /// One of our Python servers, logging its requests.
    fn python(&mut self, name: &str, script: &str, args: &[&str], extra: &str) -> &mut Setup {
        let script = omega_test_support::workspace_root()
            .join("tool-gateway/servers")
            .join(script);
        let mut argv = vec![script.display().to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let python = self.mcp.join("venv/bin/python").display().to_string();
        let env = format!(
            "{{ MCP_REQUEST_LOG = {:?} }}",
            self.request_log(name).display().to_string()
        );
        self.servers.push(format!(
            "[[server]]\nname = {name:?}\ncommand = {python:?}\nargs = {argv:?}\nenv = {env}\npackage = \"omega-test-servers\"\nversion = \"test\"\n{extra}\n"
        ));
        self
    }

    /// The npm filesystem server, serving [`Setup::data`].
    fn filesystem(&mut self) -> &mut Setup {
        let main = self
            .mcp
            .join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
        let argv = [
            main.display().to_string(),
            self.data().display().to_string(),
        ];
        self.servers.push(format!(
            "[[server]]\nname = \"filesystem\"\ncommand = \"node\"\nargs = {argv:?}\nenv = {{}}\npackage = \"@modelcontextprotocol/server-filesystem\"\nversion = \"2026.8.31\"\n"
        ));
        self
    }

    fn manifest_text(&self) -> String {
        let tools = if self.bundle_tools {
            "bundle_tools = \"tools.json\"\n"
        } else {
            ""
        };
        format!(
            "policy = \"policy.bin\"\nlog_dir = \"logs\"\n{tools}\n{}",
            self.servers.join("\n")
        )
    }

    /// The `tools/list` entries `server` advertises now, asked directly (as an operator
    /// does before pinning), by name; its request log is cleared afterwards.
    fn entries(&self, server: &str) -> BTreeMap<String, (String, Value)> {
        use omega_tool_gateway::Manifest as GatewayManifest;
        use omega_tool_gateway::server::{CallError, Server};
        let m = GatewayManifest::parse(&self.manifest_text(), &self.path("gateway"))
            .expect("gateway manifest");
        let spec = m
            .servers
            .into_iter()
            .find(|s| s.name == server)
            .expect("server");
        let s = Server::spawn(spec, &self.path("gateway/logs"), Box::new(|| {})).expect("spawn");
        s.negotiate().expect("negotiate");
        let tools = s.list_tools().expect("tools/list");
        s.kill(CallError::Busy {
            server: server.into(),
        });
        let _ = std::fs::remove_file(self.request_log(server));
        tools
            .into_iter()
            .map(|e| {
                let name = e["name"].as_str().unwrap().to_owned();
                let desc = e["description"].as_str().unwrap().to_owned();
                (name, (desc, e["inputSchema"].clone()))
            })
            .collect()
    }

    /// The bundle's tools file (`omega_tool_protocol::identity`) for the servers as the
    /// gateway manifest runs them; also written to `gateway/tools.json` and named there by
    /// `bundle_tools`, so the gateway checks its servers against it.
    fn bundle_tools(&mut self) -> Vec<u8> {
        use omega_tool_gateway::Manifest as GatewayManifest;
        let m = GatewayManifest::parse(&self.manifest_text(), &self.path("gateway"))
            .expect("gateway manifest");
        let servers: Vec<Value> = m
            .servers
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name, "command": s.command, "args": s.args,
                    "package": s.package, "version": s.version,
                })
            })
            .collect();
        let bytes = serde_json::to_vec(&serde_json::json!({ "servers": servers })).unwrap();
        std::fs::write(self.path("gateway/tools.json"), &bytes).unwrap();
        self.bundle_tools = true;
        bytes
    }

    /// Writes the gateway's manifest and policy; the command the launcher runs.
    fn gateway(&self, policy: &[u8]) -> String {
        std::fs::write(self.path("gateway/tools.toml"), self.manifest_text()).unwrap();
        std::fs::write(self.path("gateway/policy.bin"), policy).unwrap();
        format!(
            "{} --manifest {}",
            qemu_tests::workspace_bin("omega-tool-gateway", "omega-tools").display(),
            self.path("gateway/tools.toml").display()
        )
    }
}

/// A policy `tool` declaration for an entry as listed (the policy language's strings take
/// JSON's escapes for `"`, `\`, newline and tab).
fn tool_decl(name: &str, (description, schema): &(String, Value), fields: &str) -> String {
    format!(
        "tool {name} {{\n  description {}\n  schema {schema}\n  {fields}\n}}\n",
        Value::from(description.as_str())
    )
}

// ---------------------------------------------------------------------------------------
// Agents: WAT scripts of host calls (`qemu_tests::script`), each with the return it must see

fn call(tool: &str, arguments: &str, expect: Expect) -> Step {
    Step::Call {
        func: "tool_call",
        request: postcard(&abi::ToolCallRequest { tool, arguments }),
        expect,
    }
}

/// The response of a tool that answered `content`.
fn answered(content: &str) -> Expect {
    Expect::Bytes(postcard(&abi::ToolCallResponse {
        is_error: false,
        content,
    }))
}

fn log_step(expect: Expect) -> Step {
    Step::Call {
        func: "log",
        request: postcard(&abi::LogRequest {
            level: abi::Level::Info,
            text: "tool result seen",
        }),
        expect,
    }
}

fn read_step(source: &str, path: &str) -> Step {
    Step::Call {
        func: "data_read",
        request: postcard(&abi::DataReadRequest {
            source,
            path,
            offset: 0,
            max_len: 1024,
        }),
        expect: Expect::Positive,
    }
}

fn agent_decl(name: &str, module: &[u8], cleared: &str) -> String {
    format!(
        "agent {name} {{ hash \"sha256:{:x}\" cleared [{cleared}] }}\n",
        Sha256::digest(module)
    )
}

// ---------------------------------------------------------------------------------------
// A run: the launcher's session with the gateway, the verified log

/// What these tests read from a run beyond [`Run`]'s own helpers.
trait ToolsRun {
    /// The tool-call decisions for `agent` on `tool`: (decision, rule name, labels).
    fn tool_decisions(&self, agent: &str, tool: &str) -> Vec<(Decision, String, u64)>;
}

impl ToolsRun for Run {
    fn tool_decisions(&self, agent: &str, tool: &str) -> Vec<(Decision, String, u64)> {
        self.decisions_on(Action::Tool, agent, tool)
    }
}

/// Boots the production image with `files` as the bundle and the gateway `gateway` behind
/// the Tools stream; checks a clean shutdown and verifies the stored log.
fn run(setup: &Setup, files: &[(&str, Vec<u8>)], gateway: String) -> Run {
    run_with(setup, files, gateway, Operator::DenyAll)
}

/// [`run`] with `operator` answering the monitor's confirmation requests.
fn run_with(setup: &Setup, files: &[(&str, Vec<u8>)], gateway: String, operator: Operator) -> Run {
    let bundle_dir = setup.path("bundle");
    std::fs::create_dir_all(&bundle_dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(bundle_dir.join(name), bytes).unwrap();
    }
    let log_dir = setup.path("run");
    std::fs::create_dir_all(&log_dir).unwrap();
    let config = SessionConfig {
        log_store: Some(Box::new(FileLogStore::open(&log_dir).unwrap())),
        bundle: Some(Bundle::read(&bundle_dir).unwrap()),
        challenge: Some(qemu_tests::fresh_challenge()),
        tool_gateway: Some(gateway),
        operator,
        ..Default::default()
    };
    let boot = Boot::new(image()).timeout(Duration::from_secs(400));
    let run = run_session(boot, &log_dir, config);
    // The monitor listed the catalogue itself and never panicked.
    assert!(
        run.out.serial.contains("omega: tools: the gateway lists "),
        "{}",
        run.out
    );
    assert!(!run.out.serial.contains("panic"), "{}", run.out);
    run
}

fn bundle_files<'a>(
    policy: Vec<u8>,
    agents: &'a [(&'a str, Vec<u8>)],
    data: &'a [(&'a str, &'a str, &'a str, Vec<u8>)],
) -> Vec<(String, Vec<u8>)> {
    let manifest = Manifest {
        tools: None,
        fleet: None,
        coordinator: None,
        version: omega_bundle::MANIFEST_VERSION,
        policy: "policy.bin".into(),
        agents: agents
            .iter()
            .map(|(n, _)| AgentEntry::new(n, &format!("{n}.wasm")))
            .collect(),
        data: data
            .iter()
            .map(|(source, path, file, _)| DataEntry {
                source: (*source).into(),
                path: (*path).into(),
                file: (*file).into(),
            })
            .collect(),
    };
    let mut files = vec![
        (MANIFEST.to_string(), manifest.to_json()),
        ("policy.bin".to_string(), policy),
    ];
    for (n, m) in agents {
        files.push((format!("{n}.wasm"), m.clone()));
    }
    for (_, _, file, bytes) in data {
        files.push(((*file).to_string(), bytes.clone()));
    }
    files
}

fn as_refs(files: &[(String, Vec<u8>)]) -> Vec<(&str, Vec<u8>)> {
    files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect()
}

fn compile(src: &str) -> Vec<u8> {
    policy_compiler::compile("tools.policy", src, Path::new("."))
        .unwrap_or_else(|d| panic!("{}\n{src}", d.render()))
        .to_bytes()
}

// ---------------------------------------------------------------------------------------
// The tests

/// (a) An allowed call works end to end: an agent reads a file through the npm filesystem
/// server and gets exactly its contents, and the Python SDK server adds; the results are
/// labelled `untrusted` plus the tool's `result` labels (the agent can no longer log).
/// (b) Denied calls never reach the server: a rule on an argument, a path outside what the
/// rule allows, an undeclared tool — the server's own request log shows none of them and
/// the verified log has each deny with its rule; arguments of another type than the pinned
/// schema's are refused before the policy. (c) Labelled data (phi) in a tool's
/// arguments is denied `flow:phi` and never reaches the server.
#[test]
fn allowed_calls_work_end_to_end_and_denied_ones_never_leave_the_guest() {
    let Some(mut setup) = Setup::new() else {
        return;
    };
    const NOTES: &str = "Clinic notes: the east wing opens at 9.\n";
    std::fs::write(setup.data().join("notes.txt"), NOTES).unwrap();
    setup.filesystem().python("benign", "benign.py", &[], "");
    let fs = setup.entries("filesystem");
    let benign = setup.entries("benign");
    let data = setup.data().canonicalize().unwrap();
    let notes_path = data.join("notes.txt").display().to_string();
    let args = |path: &str| serde_json::json!({ "path": path }).to_string();

    let reader = script(&[
        call(
            "filesystem.read_text_file",
            &args(&notes_path),
            answered(NOTES),
        ),
        // The result made the context untrusted (and pii): the host log is refused.
        log_step(Expect::Code(DENIED)),
    ]);
    let adder = script(&[
        call("benign.add", r#"{"a": 2, "b": 3}"#, answered("5")),
        call("benign.add", r#"{"a": 1000, "b": 1}"#, Expect::Code(DENIED)),
        // A string where the pinned schema says integer: no condition would see it as
        // 1000 (the deny rule would not match) and the server would coerce it; refused
        // before the policy (logged deny, rule `schema`), nothing sent.
        call(
            "benign.add",
            r#"{"a": "1000", "b": 1}"#,
            Expect::Code(BAD_REQUEST),
        ),
    ]);
    let snoop = script(&[
        call(
            "filesystem.read_text_file",
            &args("/etc/passwd"),
            Expect::Code(DENIED),
        ),
        call(
            "filesystem.write_file",
            &serde_json::json!({"path": format!("{}/x", data.display()), "content": "x"})
                .to_string(),
            Expect::Code(DENIED),
        ),
    ]);
    let leaker = script(&[
        read_step("ehr", "patient/42"),
        call(
            "benign.echo",
            r#"{"text": "Jane Doe, HIV positive"}"#,
            Expect::Code(DENIED),
        ),
    ]);
    let agents = [
        ("reader", reader),
        ("adder", adder),
        ("snoop", snoop),
        ("leaker", leaker),
    ];
    let mut src = String::from("policy \"tools\"\nlabel pii\nsource ehr { labels [phi] }\n");
    for (name, module) in &agents {
        src += &agent_decl(name, module, "");
    }
    src += &tool_decl(
        "filesystem.read_text_file",
        &fs["read_text_file"],
        "cleared []\n  result [pii]",
    );
    src += &tool_decl("benign.add", &benign["add"], "cleared [untrusted]");
    src += &tool_decl("benign.echo", &benign["echo"], "cleared []");
    src += &format!(
        r#"
rule read_data_files {{
  allow call filesystem.read_text_file
  agents [reader, snoop]
  when args.path startswith "{}/"
}}
rule no_big_add {{ deny call benign.add when args.a > 100 }}
rule adding {{ allow call benign.add agents [adder] }}
rule echoing {{ allow call benign.echo agents [leaker] }}
rule leaker_reads {{ allow read ehr agents [leaker] }}
"#,
        data.display()
    );
    let policy = compile(&src);
    let gateway = setup.gateway(&policy);
    let files = bundle_files(
        policy,
        &agents,
        &[(
            "ehr",
            "patient/42",
            "patient-42.txt",
            b"Jane Doe, HIV positive".to_vec(),
        )],
    );
    let r = run(&setup, &as_refs(&files), gateway);

    for (agent, _) in &agents {
        r.assert_passed(agent);
    }
    // (a) Allowed, logged before it left, labelled: untrusted (every tool result) + pii
    // (the tool's `result`).
    assert_eq!(
        r.tool_decisions("reader", "filesystem.read_text_file"),
        [(Decision::Allow, "read_data_files".into(), UNTRUSTED | PII)]
    );
    assert_eq!(
        r.tool_decisions("adder", "benign.add"),
        [
            (Decision::Allow, "adding".into(), UNTRUSTED),
            (Decision::Deny, "no_big_add".into(), UNTRUSTED),
            (Decision::Deny, "schema".into(), UNTRUSTED)
        ]
    );
    // (b) Denied calls never reached a server: benign got exactly the one allowed add.
    let benign_calls = setup.calls_received("benign");
    assert_eq!(benign_calls.len(), 1, "{benign_calls:?}");
    assert_eq!(benign_calls[0]["params"]["name"], "add");
    assert_eq!(benign_calls[0]["params"]["arguments"]["a"], 2);
    assert_eq!(
        r.tool_decisions("snoop", "filesystem.read_text_file"),
        [(Decision::Deny, "default-deny".into(), 0)]
    );
    assert_eq!(
        r.tool_decisions("snoop", "filesystem.write_file"),
        [(Decision::Deny, "unknown-target".into(), 0)]
    );
    assert!(!data.join("x").exists(), "write_file ran");
    // (c) The phi the leaker read could not leave through a tool's arguments.
    assert_eq!(
        r.tool_decisions("leaker", "benign.echo"),
        [(Decision::Deny, "flow:phi".into(), PHI)]
    );
    assert!(r.summary("reader").contains("allowed=1 denied=0"));
}

/// (d) Rug pull: the server changes `lookup`'s description after its first call and
/// announces it. The monitor empties its catalogue on the gateway's `list_changed`,
/// re-lists, computes the changed entry's pin (no longer the policy's), and the agent's
/// next call is denied `target-pin`: the server's log shows exactly one call. A bystander
/// calls another server's tool all along: a call made while the catalogue is re-listed
/// waits for the new listing instead of being denied, so every one is answered.
#[test]
fn a_rug_pull_is_cut_off_mid_session() {
    let Some(mut setup) = Setup::new() else {
        return;
    };
    setup
        .python("rug", "hostile.py", &["rugpull"], "")
        .python("benign", "benign.py", &[], "");
    let rug = setup.entries("rug");
    let benign = setup.entries("benign");
    const ECHOES: usize = 150;
    let bystander = script(
        &(0..ECHOES)
            .map(|_| call("benign.echo", r#"{"text": "hi"}"#, answered("hi")))
            .collect::<Vec<_>>(),
    );
    let agent = script(&[
        call("rug.lookup", r#"{"key": "k1"}"#, answered("value of k1")),
        // Time for the announcement and the monitor's re-list (TCG).
        Step::Wait(5000),
        call("rug.lookup", r#"{"key": "k2"}"#, Expect::Code(DENIED)),
    ]);
    let src = format!(
        "policy \"rug\"\n{}{}{}{}rule looking {{ allow call rug.lookup agents [looker] }}\nrule echoing {{ allow call benign.echo agents [bystander] }}\n",
        agent_decl("looker", &agent, ""),
        agent_decl("bystander", &bystander, ""),
        tool_decl("rug.lookup", &rug["lookup"], "cleared []"),
        tool_decl("benign.echo", &benign["echo"], "cleared [untrusted]"),
    );
    let policy = compile(&src);
    let gateway = setup.gateway(&policy);
    let files = bundle_files(policy, &[("looker", agent), ("bystander", bystander)], &[]);
    let r = run(&setup, &as_refs(&files), gateway);

    r.assert_passed("looker");
    // Every echo was allowed and answered, the ones made during the re-list included.
    r.assert_passed("bystander");
    let echoes = r.tool_decisions("bystander", "benign.echo");
    assert_eq!(echoes.len(), ECHOES);
    assert!(
        echoes
            .iter()
            .all(|(d, rule, _)| *d == Decision::Allow && rule == "echoing")
    );
    assert_eq!(setup.calls_received("benign").len(), ECHOES);
    eprintln!(
        "a call waited for the re-list: {}",
        r.out
            .serial
            .contains("omega: tools: a tool call waits for the re-list")
    );
    assert!(
        r.out.serial.contains(
            "omega: tools: the gateway announced a change; no tool is callable until re-listed"
        ),
        "{}",
        r.out
    );
    let decisions = r.tool_decisions("looker", "rug.lookup");
    assert_eq!(
        decisions,
        [
            (Decision::Allow, "looking".into(), UNTRUSTED),
            (Decision::Deny, "target-pin".into(), UNTRUSTED)
        ]
    );
    let calls = setup.calls_received("rug");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["params"]["arguments"]["key"], "k1");
}

/// (e) Hostile servers do not hurt the guest or other agents: a result too large for an
/// agent (the gateway passes it; the monitor refuses it), a line over the gateway's limit,
/// a malformed answer, a server that never answers (timeout), a poisoned description (its
/// pin is not the policy's: unavailable) and a shadowing server's `echo` (undeclared). A
/// bystander keeps calling the benign server and a compute agent runs next to them; every
/// agent ends as planned and the monitor shuts down cleanly.
#[test]
fn hostile_servers_do_not_hurt_the_guest_or_other_agents() {
    let Some(mut setup) = Setup::new() else {
        return;
    };
    setup
        .python("benign", "benign.py", &[], "")
        .python("huge", "hostile.py", &["huge"], "max_result_bytes = 983040")
        .python("malformed", "hostile.py", &["malformed"], "")
        .python("silent", "hostile.py", &["silent"], "timeout_ms = 3000")
        .python("poison", "hostile.py", &["poison"], "")
        .python("shadow", "hostile.py", &["shadow"], "");
    let benign = setup.entries("benign");
    let huge = setup.entries("huge");
    let malformed = setup.entries("malformed");
    let silent = setup.entries("silent");
    let poison = setup.entries("poison");
    let poisoned_add = &poison["add"];
    assert!(poisoned_add.0.contains("<IMPORTANT>"));
    // The operator pinned the clean entry; the server lists a poisoned one.
    let clean_add = ("Add two integers.".to_string(), poisoned_add.1.clone());

    let agents = [
        (
            "big",
            script(&[
                // Passes the gateway (text and structuredContent: ≈ 600 KB ≤ 960 KiB), over
                // what the monitor hands an agent: refused by the monitor, and said so.
                call("huge.huge", r#"{"size": 300000}"#, Expect::Code(FAILED)),
                Step::Detail(postcard(&abi::HostError::Failed {
                    reason: &format!(
                        "tool result over {} bytes or {} items; not passed on",
                        omega_tool_protocol::guest::MAX_RESULT,
                        omega_tool_protocol::guest::MAX_CONTENT_ITEMS
                    ),
                })),
                // Over the gateway's line limit: the server is cut off.
                call("huge.huge", r#"{"size": 2000000}"#, Expect::Code(FAILED)),
            ]),
        ),
        (
            "broken",
            script(&[call("malformed.broken", "{}", Expect::Code(FAILED))]),
        ),
        (
            "waiter",
            script(&[call("silent.wait", "{}", Expect::Code(UNAVAILABLE))]),
        ),
        (
            "poisoned",
            script(&[call(
                "poison.add",
                r#"{"a": 1, "b": 2}"#,
                Expect::Code(DENIED),
            )]),
        ),
        (
            "shadowed",
            script(&[call(
                "shadow.echo",
                r#"{"text": "x"}"#,
                Expect::Code(DENIED),
            )]),
        ),
        (
            "bystander",
            script(&[
                call("benign.echo", r#"{"text": "one"}"#, answered("one")),
                call("benign.echo", r#"{"text": "two"}"#, answered("two")),
                Step::Wait(2000),
                call("benign.echo", r#"{"text": "three"}"#, answered("three")),
            ]),
        ),
        (
            "worker",
            script(&[Step::Wait(3000), log_step(Expect::Code(0))]),
        ),
    ];
    let mut src = String::from("policy \"hostile\"\n");
    for (name, module) in &agents {
        src += &agent_decl(name, module, "");
    }
    // Every tool result makes the caller's context untrusted: these tools take such
    // arguments, so an agent can call twice.
    let cleared = "cleared [untrusted]";
    src += &tool_decl("benign.echo", &benign["echo"], cleared);
    src += &tool_decl("huge.huge", &huge["huge"], cleared);
    src += &tool_decl("malformed.broken", &malformed["broken"], cleared);
    src += &tool_decl("silent.wait", &silent["wait"], cleared);
    src += &tool_decl("poison.add", &clean_add, cleared);
    src += "rule anyone_calls { allow call * }\n";
    let policy = compile(&src);
    let gateway = setup.gateway(&policy);
    let files = bundle_files(policy, &agents, &[]);
    let r = run(&setup, &as_refs(&files), gateway);
    eprintln!("hostile servers: the run took {:?}", r.out.elapsed);

    for (agent, _) in &agents {
        r.assert_passed(agent);
    }
    assert!(
        r.out
            .serial
            .contains("omega: agent worker [info]: \"tool result seen\""),
        "{}",
        r.out
    );
    assert_eq!(
        r.tool_decisions("poisoned", "poison.add"),
        [(Decision::Deny, "target-pin".into(), 0)]
    );
    assert_eq!(
        r.tool_decisions("shadowed", "shadow.echo"),
        [(Decision::Deny, "unknown-target".into(), 0)]
    );
    assert!(setup.calls_received("poison").is_empty());
    assert!(setup.calls_received("shadow").is_empty());
    assert_eq!(setup.calls_received("benign").len(), 3);
    assert_eq!(setup.calls_received("huge").len(), 2);
}

/// (f) Operator confirmation: a rule decides `confirm` for `benign.add`; the monitor parks
/// the agent and asks the launcher, whose answers file approves the first call and denies
/// the second. The approved call reaches the server and answers; the denied one is
/// refused `operator` and never reaches it. The verified log holds, for each, the
/// `confirm` decision with its rule and then the answer (`CONFIRMATION`: allow `approved`,
/// deny `denied`) bound to that decision by its content digest.
#[test]
fn operator_confirmation_approves_and_denies_and_both_are_logged() {
    let Some(mut setup) = Setup::new() else {
        return;
    };
    setup.python("benign", "benign.py", &[], "");
    let benign = setup.entries("benign");
    let asker = script(&[
        call("benign.add", r#"{"a": 2, "b": 3}"#, answered("5")),
        call("benign.add", r#"{"a": 4, "b": 4}"#, Expect::Code(DENIED)),
        Step::Detail(postcard(&abi::HostError::Denied { rule: "operator" })),
    ]);
    let src = format!(
        "policy \"confirm\"\n{}{}rule adding_needs_ok {{ confirm call benign.add agents [asker] }}\n",
        agent_decl("asker", &asker, ""),
        tool_decl("benign.add", &benign["add"], "cleared [untrusted]"),
    );
    let policy = compile(&src);
    // The bundle names the server (its tools file), and the gateway checks it runs that.
    let tools_json = setup.bundle_tools();
    let gateway = setup.gateway(&policy);
    let mut files = bundle_files(policy, &[("asker", asker)], &[]);
    let mut manifest = Manifest::parse(&files[0].1).unwrap();
    manifest.tools = Some("tools.json".into());
    files[0].1 = manifest.to_json();
    files.push(("tools.json".into(), tools_json.clone()));
    let answers = Answers::parse("approve benign.add\ndeny benign.add\n").unwrap();
    let r = run_with(
        &setup,
        &as_refs(&files),
        gateway,
        Operator::Answers(answers),
    );

    r.assert_passed("asker");
    // The server saw exactly the approved call.
    let calls = setup.calls_received("benign");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["params"]["arguments"]["a"], 2);
    // Both decisions are `confirm` under the rule.
    assert_eq!(
        r.tool_decisions("asker", "benign.add"),
        [
            (Decision::Confirm, "adding_needs_ok".into(), UNTRUSTED),
            (Decision::Confirm, "adding_needs_ok".into(), UNTRUSTED)
        ]
    );
    // Each answer is logged, after its decision, bound to it by the content digest.
    let agent = r.defined(lifecycle::DEFINE_AGENT, "asker").unwrap();
    let tool = r.defined(lifecycle::DEFINE_TARGET, "benign.add").unwrap();
    let decided: Vec<(usize, Option<[u8; 32]>)> = r
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.action == Action::Tool && e.agent == agent && e.target == tool)
        .map(|(i, e)| (i, e.content))
        .collect();
    let answered: Vec<(usize, Decision, String, Option<[u8; 32]>)> = r
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.action == Action::Lifecycle && e.rule == lifecycle::CONFIRMATION)
        .map(|(i, e)| {
            assert_eq!((e.agent, e.target), (agent, tool));
            (
                i,
                e.decision,
                String::from_utf8_lossy(&e.name).into_owned(),
                e.content,
            )
        })
        .collect();
    assert_eq!(answered.len(), 2, "{}", r.out);
    assert_eq!(
        (answered[0].1, answered[0].2.as_str()),
        (Decision::Allow, "approved")
    );
    assert_eq!(
        (answered[1].1, answered[1].2.as_str()),
        (Decision::Deny, "denied")
    );
    for (d, a) in decided.iter().zip(&answered) {
        assert!(d.0 < a.0, "answer logged before its decision");
        assert!(
            d.1.is_some() && d.1 == a.3,
            "answer not bound to its decision"
        );
    }
    assert_ne!(decided[0].1, decided[1].1);
    // The launcher got both requests with the rule and answered them as the file says.
    let requests: Vec<_> = r
        .events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::ConfirmRequest(q) => Some(q.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 2, "{:?}", r.events);
    for q in &requests {
        assert_eq!(
            (
                q.agent.as_str(),
                q.action.as_str(),
                q.target.as_str(),
                q.rule.as_str()
            ),
            ("asker", "tool", "benign.add", "adding_needs_ok")
        );
    }
    assert!(requests[0].summary.contains("\"a\": 2"), "{requests:?}");
    let answers: Vec<bool> = r
        .events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::ConfirmAnswered { approve, .. } => Some(*approve),
            _ => None,
        })
        .collect();
    assert_eq!(answers, [true, false]);
    assert!(r.summary("asker").contains("status=exited 0"));
    // The tool server is a principal of the evidence: the pins the policy holds for it.
    let bundle = r
        .events
        .iter()
        .find_map(|e| match e {
            SessionEvent::Evidence { principal, bundle } if principal == "tools:benign" => {
                Some(bundle.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no tools:benign evidence: {:?}", r.events));
    let bundle = omega_evidence::Bundle::decode(&bundle).unwrap();
    let leaf = omega_evidence::SaltedLeaf::decode(&bundle.leaf).unwrap();
    let (description, schema) = &benign["add"];
    let pin = omega_tool_protocol::tool_pin(description, schema);
    assert_eq!(
        leaf.claim,
        omega_evidence::Claim::ToolServer {
            server: "benign".into(),
            tools: 1,
            pins_digest: omega_evidence::pins_digest([("benign.add", &pin)]),
            identity: {
                let named = omega_tool_protocol::identity::parse(&tools_json).unwrap();
                Some(omega_evidence::ToolIdentity {
                    command: named[0].command_line(),
                    package: "omega-test-servers".into(),
                    version: "test".into(),
                })
            },
        }
    );
}

/// Benchmark (ignored; `cargo test -p qemu-tests --test tools tool_call_latency -- --ignored
/// --nocapture`): an agent in the image calls `benign.echo` 20 times to warm up, then 300
/// times, timing the 300 with the monitor's clock (ms), and exits with the total; each call
/// goes through the gate (schema, policy, provenance), the Tools stream, the launcher's
/// relay, `omega-tools` and the Python SDK server, and back. Prints the mean per call; the
/// same server called directly is `tool-gateway`'s `latency` bench.
#[test]
#[ignore = "benchmark"]
fn tool_call_latency_from_an_agent() {
    const WARM: u32 = 20;
    const CALLS: u32 = 300;
    let Some(mut setup) = Setup::new() else {
        return;
    };
    setup.python("benign", "benign.py", &[], "");
    let benign = setup.entries("benign");
    let req = postcard(&abi::ToolCallRequest {
        tool: "benign.echo",
        arguments: r#"{"text": "hi"}"#,
    });
    let hex: String = req.iter().map(|b| format!("\\{b:02x}")).collect();
    let m = abi::MODULE;
    let wat = format!(
        r#"(module
  (import "{m}" "tool_call" (func $tool_call (param i32 i32 i32 i32) (result i32)))
  (import "{m}" "now" (func $now (result i64)))
  (import "{m}" "exit" (func $exit (param i32)))
  (memory (export "memory") 3)
  (data (i32.const 1024) "{hex}")
  (func $calls (param $n i32)
    (loop $l
      (if (i32.le_s (call $tool_call (i32.const 1024) (i32.const {len}) (i32.const {OUT}) (i32.const {OUT_CAP})) (i32.const 0))
        (then (call $exit (i32.const -1))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (i32.gt_s (local.get $n) (i32.const 0)))))
  (func (export "run") (local $t i64)
    (call $calls (i32.const {WARM}))
    (local.set $t (call $now))
    (call $calls (i32.const {CALLS}))
    (call $exit (i32.wrap_i64 (i64.sub (call $now) (local.get $t))))))"#,
        len = req.len()
    );
    let agent = wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"));
    let src = format!(
        "policy \"bench\"\n{}{}rule echoing {{ allow call benign.echo agents [bencher] }}\n",
        agent_decl("bencher", &agent, ""),
        tool_decl("benign.echo", &benign["echo"], "cleared [untrusted]"),
    );
    let policy = compile(&src);
    let gateway = setup.gateway(&policy);
    let files = bundle_files(policy, &[("bencher", agent)], &[]);
    let r = run(&setup, &as_refs(&files), gateway);
    let s = r.summary("bencher");
    let total: u64 = s
        .split("status=exited ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{s}\n{}", r.out));
    assert_eq!(
        setup.calls_received("benign").len(),
        (WARM + CALLS) as usize
    );
    println!(
        "tool_call from an agent in the image: {CALLS} calls in {total} ms, mean {:.0} µs per call (accel {})",
        total as f64 * 1000.0 / f64::from(CALLS),
        std::env::var("OMEGA_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into())
    );
}
