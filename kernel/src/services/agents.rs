//! The agents: once the bundle is in and logged, every agent of its manifest is checked
//! (policy pin, imports, limits) and started in the agent runtime (`omega-runtime`), and
//! the service loop interleaves fuel slices of agent work with polling the channel until
//! every agent has finished. This module is the runtime's [`omega_runtime::Monitor`]:
//!
//! | runtime asks for | served by |
//! |---|---|
//! | `append_record` | the provenance log ([`LogService::try_append`]: a full outbox parks the agent, never drops a record); names interned as `DEFINE_*` entries |
//! | `now_ms`, `random` | the monitor's clock, RDSEED/RDRAND |
//! | `confirm` | a `confirm` decision: `ControlMsg::ConfirmRequest` to the host, the agent parked until the operator's answer (logged, then acted on) or the timeout ([`confirm`]) |
//! | `tool_catalogue_stale` | tool calls wait while the catalogue is re-listed after a `list_changed` (≤ 30 s) |
//! | `egress` | one message on the Inference stream (the host's answer, today an `Error`: no proxy, wakes the agent), or a `tools/call` to the tool gateway on the Tools stream, answered by JSON-RPC id |
//! | `tool_entry` | the tools client's catalogue ([`omega_tool_protocol::guest`]): listed from the gateway when the agents start and after every `list_changed`, each pin computed here |
//! | `read_data` | the bundle's data files (`manifest.data`), by source and item name |
//! | `log`, `event` | the serial console, escaped, prefixed with the agent's name |
//!
//! Without an agent that can run (a policy that does not decode, a module refused) nothing
//! is started: the refusal is printed, each refused agent is logged (`AGENT_REFUSED`), and
//! the monitor shuts down as before. Once they run, each started agent's signed A2A card
//! ([`omega_kernel::attest::cards`]) goes to the host (`ControlMsg::AgentCard`).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::convert::Infallible;
use omega_tool_protocol::guest::{self as tools, Client as ToolsClient};

use omega_agent_abi::Level;
use omega_arch::exit::ExitCode;
use omega_arch::serial_println;
use omega_bundle::{BundleFile, Manifest, Restart};
use omega_kernel::attest::cards::CardIssuer;
use omega_kernel::channel::HostText;
use omega_policy::{Policy, RuleName};
use omega_provenance::entry::lifecycle;
use omega_runtime::{
    AgentEvent, AgentId, AgentLimits, AgentSpec, Answer, Backpressure, DataError, Egress,
    EgressReply, LoadError, Record, RestartPolicy, Runtime, RuntimeConfig, Status, Ticket,
};
use omega_wire::{Stream, msg::code};
use sha2::{Digest, Sha256};

mod confirm;
mod peer_link;

use super::bundle::BundleService;
use super::inference::InferenceService;
use super::log::LogService;
use super::{HostChannel, LoopState, Step, control, report_send_failure};
use crate::monitor::Monitor;

/// Fuel slices run between two polls of the channel: agent work is bounded per loop turn,
/// so the host's acks and answers are read while agents compute.
const SLICES_PER_POLL: usize = 8;

/// The bundle's parts the agents use for the rest of the boot (one bundle per boot, so
/// they are never freed).
struct Loaded {
    manifest: &'static Manifest,
    files: &'static [BundleFile],
    policy: &'static Policy<'static>,
}

/// Takes the bundle's files and decodes its policy; `None` (reported) if it has none that
/// decodes.
fn take_bundle(bundle: &mut BundleService) -> Option<Loaded> {
    let (manifest, files) = bundle.take()?;
    let manifest: &'static Manifest = Box::leak(Box::new(manifest));
    let files: &'static [BundleFile] = Vec::leak(files);
    let policy_bytes = &files.get(1)?.bytes;
    match omega_policy::decode(policy_bytes) {
        Ok(p) => Some(Loaded {
            manifest,
            files,
            policy: Box::leak(Box::new(p)),
        }),
        Err(e) => {
            serial_println!(
                "omega: agents: policy {} does not decode ({e:?}); no agent runs",
                HostText(&manifest.policy)
            );
            None
        }
    }
}

fn spec<'a>(entry: &'a omega_bundle::AgentEntry, module: &'a [u8]) -> AgentSpec<'a> {
    AgentSpec {
        name: &entry.name,
        module,
        limits: AgentLimits {
            memory_bytes: entry.memory,
            fuel_slice: entry.fuel_slice,
            fuel_total: entry.fuel_budget,
        },
        restart: match entry.restart {
            Restart::Never => RestartPolicy::Never,
            Restart::Trap { max } => RestartPolicy::OnTrap { max },
        },
    }
}

/// Per-agent figures for the summary.
#[derive(Default)]
struct Counts {
    allowed: u64,
    denied: u64,
}

/// The runtime's view of the monitor: owns the channel and the log while agents run.
pub struct Host<'m> {
    pub(super) ch: HostChannel,
    pub(super) log: LogService<'m>,
    /// The manifest, for its data files (none without a bundle that loaded).
    data: Option<&'static Manifest>,
    files: &'static [BundleFile],
    /// Interned log ids: agents, targets and rules by name.
    agent_ids: BTreeMap<String, u32>,
    targets: BTreeMap<String, u32>,
    rules: BTreeMap<String, u32>,
    counts: BTreeMap<String, Counts>,
    /// The session with the inference proxy (its own module: evidence, TLS, answers).
    inference: InferenceService,
    /// The tool gateway's catalogue and the calls in flight (matched by JSON-RPC id = ticket).
    tools: ToolsClient,
    /// The policy declares tools: the catalogue is listed from the gateway.
    wants_tools: bool,
    /// Lines on the Tools stream refused so far.
    tools_refused: u64,
    /// Next ticket, also the JSON-RPC id of the next request to the gateway.
    next_ticket: Ticket,
    /// The last append met a full outbox (reported once per episode).
    log_full: bool,
    /// Calls waiting for the operator, and the re-list wait.
    confirming: confirm::Confirming,
    /// Episodes of a full outbox so far (the first 20 and every 1000th are reported).
    log_full_episodes: u64,
    /// The host configured a peer link: messages to `node/agent` can go out.
    peer_on: bool,
    /// Allowed messages to another image, for the peer service ([`peer_link`]).
    peer_out: Vec<peer_link::PeerOut>,
}

impl Host<'_> {
    fn agent_id(&mut self, name: &str) -> Result<u32, Backpressure> {
        self.intern_agent(name, |log, ch, r| log.try_append(ch, r))
    }

    /// `name`'s log id, defined (`DEFINE_AGENT`, appended with `append`) on first use.
    pub(super) fn intern_agent<E>(
        &mut self,
        name: &str,
        append: impl FnOnce(
            &mut LogService<'_>,
            &mut HostChannel,
            &omega_provenance::Record<'_>,
        ) -> Result<(), E>,
    ) -> Result<u32, E> {
        if let Some(&id) = self.agent_ids.get(name) {
            return Ok(id);
        }
        let id = u32::try_from(self.agent_ids.len() + 1).unwrap_or(u32::MAX);
        let r = self.log.lifecycle_record(
            0,
            lifecycle::DEFINE_AGENT,
            id,
            omega_provenance::Decision::Allow,
            None,
            Some(name.as_bytes()),
        );
        append(&mut self.log, &mut self.ch, &r)?;
        self.agent_ids.insert(name.to_string(), id);
        Ok(id)
    }

    /// Logs that agent `name` was refused at load time (`AGENT_REFUSED`, decision deny,
    /// name = `code`, content = the module's SHA-256 when there is a module).
    pub(super) fn log_refusal(&mut self, name: &str, module: Option<&[u8]>, code: &'static str) {
        // SECURITY: a refused agent is in the verified log, not only on the console the host
        // controls, so a verifier sees that this bundle's agents did not run, and why.
        // Nothing runs yet, so waiting for the host to store a full outbox stalls no agent.
        let Ok(id) = self.intern_agent(name, |log, ch, r| {
            log.append(ch, r);
            Ok::<(), Infallible>(())
        });
        let r = self.log.lifecycle_record(
            id,
            lifecycle::AGENT_REFUSED,
            0,
            omega_provenance::Decision::Deny,
            module.map(|m| Sha256::digest(m).into()),
            Some(code.as_bytes()),
        );
        self.log.append(&mut self.ch, &r);
    }

    fn target_id(&mut self, name: &str) -> Result<u32, Backpressure> {
        if let Some(&id) = self.targets.get(name) {
            return Ok(id);
        }
        let id = self.log.try_define_target(&mut self.ch, name.as_bytes())?;
        self.targets.insert(name.to_string(), id);
        Ok(id)
    }

    fn rule_id(&mut self, rule: &RuleName<'_>) -> Result<u32, Backpressure> {
        let name = rule.to_string();
        if let Some(&id) = self.rules.get(&name) {
            return Ok(id);
        }
        let id = u32::try_from(self.rules.len() + 1).unwrap_or(u32::MAX);
        let r = self.log.lifecycle_record(
            0,
            lifecycle::DEFINE_RULE,
            id,
            omega_provenance::Decision::Allow,
            None,
            Some(name.as_bytes()),
        );
        self.log.try_append(&mut self.ch, &r)?;
        self.rules.insert(name, id);
        Ok(id)
    }

    /// Appends one of the runtime's records, defining the names it uses first.
    fn append(&mut self, record: &Record<'_>) -> Result<(), Backpressure> {
        // SECURITY: every name a record needs is defined first; a name is interned only
        // once its definition is in the log, so a retried record never refers to an
        // undefined id.
        let r = match *record {
            Record::Decision {
                agent,
                action,
                target,
                decision,
                rule,
                labels,
                content,
            } => {
                let agent_id = self.agent_id(agent)?;
                let target = self.target_id(target)?;
                let rule_id = self.rule_id(&rule)?;
                let r = omega_provenance::Record {
                    time: self.log.now_ms(),
                    agent: agent_id,
                    action,
                    target,
                    decision,
                    rule: rule_id,
                    labels,
                    content: Some(content),
                    name: None,
                };
                self.log.try_append(&mut self.ch, &r)?;
                let c = self.counts.entry(agent.to_string()).or_default();
                if decision == omega_provenance::Decision::Deny {
                    c.denied += 1;
                } else {
                    c.allowed += 1;
                }
                return Ok(());
            }
            Record::Start { agent, module_hash } => {
                let id = self.agent_id(agent)?;
                (id, lifecycle::AGENT_START, Some(module_hash))
            }
            Record::Exit { agent } => (self.agent_id(agent)?, lifecycle::AGENT_EXIT, None),
        };
        let (agent, rule, content) = r;
        let r = self.log.lifecycle_record(
            agent,
            rule,
            0,
            omega_provenance::Decision::Allow,
            content,
            None,
        );
        self.log.try_append(&mut self.ch, &r)
    }

    fn send_egress(&mut self, stream: Stream, body: &[u8]) -> EgressReply {
        if let Err(e) = self.ch.send(stream, body) {
            report_send_failure("an agent's request", &e);
            return EgressReply::Answer(Answer::Unavailable(format!(
                "sending on {stream:?} failed"
            )));
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        EgressReply::Pending(ticket)
    }

    /// A `tools/call` for an allowed call, with the ticket as its id and the pin of the
    /// catalogue entry the policy decided on.
    fn send_tool_call(&mut self, tool: &str, arguments: &str) -> EgressReply {
        let ticket = self.next_ticket;
        let line = match self.tools.call_request(ticket, tool, arguments) {
            Ok(line) => line,
            Err(e) => return EgressReply::Answer(Answer::Unavailable(e.to_string())),
        };
        match self.send_egress(Stream::Tools, &line) {
            EgressReply::Answer(a) => {
                // Never sent: no answer can come for it.
                self.tools.cancel(ticket);
                EgressReply::Answer(a)
            }
            pending => pending,
        }
    }

    /// Asks the gateway for its catalogue when the policy declares tools and a listing is
    /// due (the first one, or after a `list_changed`).
    fn request_listing(&mut self) {
        if !self.wants_tools || !self.tools.needs_list() {
            return;
        }
        let id = self.next_ticket;
        self.next_ticket += 1;
        let Ok(line) = self.tools.list_request(id) else {
            return;
        };
        if let Err(e) = self.ch.send(Stream::Tools, &line) {
            report_send_failure("a tools/list request", &e);
            self.tools.cancel(id);
        }
    }

    /// A line (or an error) from the host on the Tools stream: an answer to a call by its
    /// id, a new catalogue, a change, or something refused (reported).
    fn on_tools(&mut self, reply: Result<Vec<u8>, (u16, String)>) -> Option<(Ticket, Answer)> {
        let event = match reply {
            Ok(line) => self.tools.on_line(&line),
            Err((c, why)) => self
                .tools
                .on_host_error(matches!(c, code::UNAVAILABLE | code::BACKEND), &why),
        };
        match event {
            tools::Event::Answer { id, outcome } => Some((
                id,
                match outcome {
                    tools::Outcome::Done { is_error, content } => {
                        Answer::Tool { is_error, content }
                    }
                    tools::Outcome::Unavailable(why) => Answer::Unavailable(why),
                    tools::Outcome::Failed(why) => Answer::Failed(why),
                },
            )),
            tools::Event::Listed { tools } => {
                self.relist_done();
                serial_println!(
                    "omega: tools: the gateway lists {tools} tools (pins computed by the monitor)"
                );
                None
            }
            tools::Event::ListFailed(why) => {
                self.relist_done();
                serial_println!(
                    "omega: tools: no catalogue ({}); every tool call is denied",
                    HostText(&why)
                );
                None
            }
            tools::Event::Changed => {
                self.relist_started();
                serial_println!(
                    "omega: tools: the gateway announced a change; no tool is callable until re-listed"
                );
                None
            }
            tools::Event::Ignored(why) => {
                self.tools_refused += 1;
                if super::worth_reporting(self.tools_refused) {
                    serial_println!(
                        "omega: tools: refused a line from the host ({} so far): {why}",
                        self.tools_refused
                    );
                }
                None
            }
        }
    }

    /// The host reconnected: every tool call in flight is answered Unavailable (its answer
    /// died with the old connection), a listing in flight is asked again, and the inference
    /// session (its TLS bytes lost mid-stream) is closed.
    fn host_reconnected(&mut self) -> Vec<(Ticket, Answer)> {
        let lost = || Err((code::UNAVAILABLE, String::from(super::HOST_RECONNECTED)));
        let mut answers = self.inference.on_host(&mut self.ch, &mut self.log, lost());
        loop {
            match self.tools.on_host_error(true, super::HOST_RECONNECTED) {
                tools::Event::Answer { id, outcome } => {
                    if let tools::Outcome::Unavailable(why) | tools::Outcome::Failed(why) = outcome
                    {
                        answers.push((id, Answer::Unavailable(why)));
                    }
                }
                tools::Event::Ignored(_) => break,
                _ => self.relist_done(),
            }
        }
        answers
    }

    /// The host answered on Inference or Tools: a tool answer goes to the call with its
    /// id, inference answers (none, one, or every waiting call when the session broke) to
    /// the calls the proxy session answers.
    fn answer(
        &mut self,
        stream: Stream,
        reply: Result<Vec<u8>, (u16, String)>,
    ) -> Vec<(Ticket, Answer)> {
        if matches!(&reply, Err((_, why)) if why == super::HOST_RECONNECTED) {
            return self.host_reconnected();
        }
        match stream {
            Stream::Inference => self.inference.on_host(&mut self.ch, &mut self.log, reply),
            Stream::Tools => self.on_tools(reply).into_iter().collect(),
            Stream::Control => {
                if let Ok(body) = reply {
                    self.on_confirm_answer(&body);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
    }
}

impl omega_runtime::Monitor for &mut Host<'_> {
    fn now_ms(&mut self) -> u64 {
        self.log.now_ms()
    }

    fn random(&mut self, buf: &mut [u8]) {
        let mut rng = crate::hw::entropy::CpuRng::detect();
        if let Err(e) = omega_kernel::entropy::fill(&mut rng, buf) {
            // The log key came from the same source at boot: a generator that fails now
            // is broken, and agents must not get predictable bytes.
            crate::monitor::fatal("entropy for an agent", e)
        }
    }

    fn append_record(&mut self, record: &Record<'_>) -> Result<(), Backpressure> {
        let r = self.append(record);
        if r.is_err() && !self.log_full {
            self.log_full_episodes += 1;
            if super::worth_reporting(self.log_full_episodes) {
                serial_println!(
                    "omega: agents: log outbox full ({} times so far); agents wait for the host to store it",
                    self.log_full_episodes
                );
            }
        }
        self.log_full = r.is_err();
        r
    }

    fn model_identity(&mut self, _model: &str) -> Option<[u8; 32]> {
        // SECURITY: the identity the proxy's evidence proved (and the session is up with its
        // key), never the pin itself: the evaluator's `target-pin` compares the two. None
        // without a session, so every call is then denied.
        self.inference.identity()
    }

    fn model_gpu_verified(&mut self, model: &str) -> bool {
        // SECURITY: only what this session's evidence proved against the model's reference
        // values (`omega_gpu_evidence::verify_proxy_gpu`); the policy denies `gpu-evidence`
        // otherwise.
        self.inference.gpu_verified(model)
    }

    fn tool_entry(&mut self, tool: &str) -> Option<[u8; 32]> {
        // SECURITY: the pin the monitor computed from the gateway's current listing; none
        // while the catalogue is stale (after a `list_changed`), so the policy's
        // `target-pin` denies every call until the re-list.
        self.tools.entry(tool)
    }

    fn check_tool_arguments(
        &mut self,
        tool: &str,
        arguments: &serde_json::Value,
    ) -> Result<(), String> {
        self.tools.check_arguments(tool, arguments)
    }

    fn confirm(&mut self, call: &omega_runtime::Confirm<'_>) -> EgressReply {
        self.ask_operator(call)
    }

    fn tool_catalogue_stale(&mut self) -> bool {
        self.relisting()
    }

    fn egress(&mut self, agent: &str, egress: Egress<'_>, confirm: bool) -> EgressReply {
        if confirm {
            // No operator console yet: a `confirm` action cannot be approved.
            return EgressReply::Answer(Answer::Unavailable(
                "operator confirmation is not available".into(),
            ));
        }
        match egress {
            // The policy decided on the verified proxy identity; the session sends the prompt
            // inside TLS and answers by ticket.
            Egress::Infer {
                prompt,
                max_tokens,
                stream,
                ..
            } => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                match self
                    .inference
                    .submit(&mut self.ch, ticket, prompt, max_tokens, stream)
                {
                    Ok(()) => EgressReply::Pending(ticket),
                    Err(answer) => EgressReply::Answer(answer),
                }
            }
            Egress::Tool { tool, arguments } => self.send_tool_call(tool, arguments),
            Egress::Message {
                to,
                module,
                message,
                labels,
            } => self.send_to_peer(agent, to, module, message, labels),
        }
    }

    fn read_data(
        &mut self,
        source: &str,
        path: &str,
        offset: u64,
        max_len: u32,
        out: &mut Vec<u8>,
    ) -> Result<u64, DataError> {
        let mut shipped = false;
        for d in self.data.iter().flat_map(|m| &m.data) {
            if d.source != source {
                continue;
            }
            shipped = true;
            if d.path != path {
                continue;
            }
            let bytes = self
                .files
                .iter()
                .find(|f| f.name == d.file)
                .map(|f| f.bytes.as_slice())
                .ok_or(DataError::NotFound)?;
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let end = start.saturating_add(max_len as usize).min(bytes.len());
            out.extend_from_slice(&bytes[start..end]);
            return Ok(bytes.len() as u64);
        }
        Err(if shipped {
            DataError::NotFound
        } else {
            DataError::Unavailable
        })
    }

    fn log(&mut self, agent: &str, level: Level, text: &str) {
        // SECURITY: escaped, and marked as the agent's, so an agent cannot drive the
        // operator's terminal or forge monitor lines.
        serial_println!(
            "omega: agent {} [{}]: \"{}\"",
            HostText(agent),
            level_name(level),
            HostText(text)
        );
    }

    fn event(&mut self, agent: &str, event: AgentEvent<'_>) {
        let agent = HostText(agent);
        match event {
            AgentEvent::Started => serial_println!("omega: agent {agent}: started"),
            AgentEvent::Exited { code } => {
                serial_println!("omega: agent {agent}: exited with code {code}")
            }
            AgentEvent::Trapped { reason } => {
                serial_println!("omega: agent {agent}: trapped: {}", HostText(reason))
            }
            AgentEvent::Restarted { attempt } => {
                serial_println!("omega: agent {agent}: restarted (attempt {attempt})")
            }
        }
    }
}

/// The refusal code logged for a load error (`AGENT_REFUSED`'s name; the console has the
/// whole message).
pub(super) fn refusal_code(e: &LoadError) -> &'static str {
    match e {
        LoadError::UnknownAgent(_) => "undeclared-agent",
        LoadError::HashMismatch { .. } => "hash-pin",
        LoadError::Invalid { .. } => "invalid-module",
        LoadError::ForeignImport { .. } => "foreign-import",
        LoadError::ImportSignature { .. } => "import-signature",
        LoadError::MissingExport { .. } => "missing-export",
        LoadError::MemoryLimit { .. } => "memory-limit",
        LoadError::Unsupported { .. } => "unsupported-module",
        LoadError::Instantiate { .. } => "instantiation",
    }
}

/// Checks every agent of the manifest and starts them all; `None` if any is refused: the
/// bundle's agents run together or not at all. Each refusal is printed and logged.
fn start<'h, 'm>(
    loaded: &Loaded,
    host: &'h mut Host<'m>,
    cards: Option<&CardIssuer>,
) -> Option<Runtime<'static, &'h mut Host<'m>>> {
    let t0 = host.log.now_ms();
    let mut rt = Runtime::new(loaded.policy, host, RuntimeConfig::default());
    let mut checked = Vec::new();
    let mut refused = false;
    for entry in &loaded.manifest.agents {
        let Some(module) = loaded.files.iter().find(|f| f.name == entry.module) else {
            serial_println!(
                "omega: agents: module {} missing; no agent runs",
                HostText(&entry.module)
            );
            rt.monitor_mut()
                .log_refusal(&entry.name, None, "module-missing");
            refused = true;
            continue;
        };
        match rt.check(&spec(entry, &module.bytes)) {
            Ok(c) => checked.push(c),
            Err(e) => {
                serial_println!(
                    "omega: agents: refused: {}; no agent runs",
                    HostText(&e.to_string())
                );
                rt.monitor_mut()
                    .log_refusal(&entry.name, Some(&module.bytes), refusal_code(&e));
                refused = true;
            }
        }
    }
    if refused {
        // A checkpoint covers the refusals, as one covers the agents' records after a run.
        let h = rt.monitor_mut();
        h.log.checkpoint(&mut h.ch);
        return None;
    }
    let t1 = rt.monitor_mut().log.now_ms();
    let heap_before = crate::hw::heap::used();
    let started = super::instances::spawn_all(&mut rt, checked, loaded.manifest, loaded.files);
    let t2 = rt.monitor_mut().log.now_ms();
    serial_println!(
        "omega: agents: {} started (load checks {} ms, instantiation {} ms)",
        rt.len(),
        t1.saturating_sub(t0),
        t2.saturating_sub(t1)
    );
    super::instances::report_heap(rt.len(), heap_before);
    let h = rt.monitor_mut();
    super::instances::send_cards(h, cards, &started, loaded.files);
    Some(rt)
}

fn finished(rt: &Runtime<'_, &mut Host<'_>>) -> bool {
    (0..rt.len()).all(|i| {
        matches!(
            rt.status(AgentId(i)),
            Some(Status::Exited(_) | Status::Trapped(_)) | None
        )
    })
}

fn summary(rt: &Runtime<'_, &mut Host<'_>>) {
    for i in 0..rt.len() {
        let id = AgentId(i);
        let name = rt.name(id).unwrap_or_default();
        let status = match rt.status(id) {
            Some(Status::Exited(code)) => format!("exited {code}"),
            Some(Status::Trapped(why)) => format!("trapped ({})", HostText(why)),
            Some(s) => format!("{s:?}"),
            None => "unknown".into(),
        };
        let (allowed, denied) = rt
            .monitor()
            .counts
            .get(name)
            .map_or((0, 0), |c| (c.allowed, c.denied));
        serial_println!(
            "omega: agent summary: {} status={status} fuel={} restarts={} allowed={allowed} denied={denied}",
            name,
            rt.fuel_used(id),
            rt.restarts(id)
        );
    }
}

/// How long the agents wait at start for the gateway's first listing (TCG, servers
/// starting); after it they start with an empty catalogue (tool calls denied `target-pin`)
/// and a late listing still fills it.
const FIRST_LISTING_MS: u64 = 60_000;

/// Before the first slice: when the policy declares tools, lists the gateway's catalogue
/// and waits (bounded) for it, so agents' first calls are decided on it. `Some` to stop.
fn first_listing(
    m: &Monitor,
    rt: &mut Runtime<'static, &mut Host<'_>>,
    state: &mut LoopState,
) -> Option<ExitCode> {
    let h = rt.monitor_mut();
    h.request_listing();
    let deadline = h.log.now_ms().saturating_add(FIRST_LISTING_MS);
    while rt.monitor_mut().tools.listing() {
        let h = rt.monitor_mut();
        if h.log.now_ms() >= deadline {
            serial_println!(
                "omega: tools: no listing from the gateway within {FIRST_LISTING_MS} ms; agents start without tools"
            );
            break;
        }
        match super::step(&mut h.ch, &mut h.log, state) {
            Step::Idle => crate::hw::idle::wait(m),
            Step::Exit(code) => return Some(code),
            Step::Acked => rt.records_drained(),
            Step::Reply(stream, reply) => {
                // No agent has run: only the listing (or a stray line) can be answered.
                for (ticket, answer) in h.answer(stream, reply) {
                    rt.deliver(ticket, &answer);
                }
            }
            Step::Busy => {}
        }
    }
    None
}

/// Runs the bundle's agents to the end, writes a checkpoint, then shuts down once the host
/// has stored the whole log.
pub fn run(
    m: &Monitor,
    ch: HostChannel,
    log: LogService<'_>,
    mut state: LoopState,
    cards: Option<CardIssuer>,
    inference: InferenceService,
) -> ExitCode {
    let mut loaded = take_bundle(&mut state.bundle);
    let mut host = Host {
        ch,
        log,
        data: loaded.as_ref().map(|l| l.manifest),
        files: loaded.as_ref().map_or(&[], |l| l.files),
        agent_ids: BTreeMap::new(),
        targets: BTreeMap::new(),
        rules: BTreeMap::new(),
        counts: BTreeMap::new(),
        inference,
        tools: ToolsClient::new(),
        wants_tools: loaded.as_ref().is_some_and(|l| !l.policy.tools.is_empty()),
        tools_refused: 0,
        next_ticket: 1,
        log_full: false,
        confirming: confirm::Confirming::new(),
        log_full_episodes: 0,
        peer_on: state.peer.configured(),
        peer_out: Vec::new(),
    };
    // The proxy session was set up before the evidence (`proxy_principal::connect`).
    if let Some(loaded) = &mut loaded {
        loaded.policy = super::inference::narrow(loaded.policy);
    }
    let mut ran = false;
    if let Some(loaded) = &loaded
        && let Some(mut rt) = start(loaded, &mut host, cards.as_ref())
    {
        if let Some(code) = first_listing(m, &mut rt, &mut state) {
            return code;
        }
        let mut heap_report = rt.monitor_mut().log.now_ms() + super::instances::HEAP_REPORT_MS;
        while !finished(&rt) {
            let now = rt.monitor_mut().log.now_ms();
            super::instances::heap_tick(&mut heap_report, now, rt.len());
            rt.monitor_mut().request_listing();
            let turn = rt.monitor_mut().turn();
            for (ticket, answer) in &turn.answers {
                rt.deliver(*ticket, answer);
            }
            if turn.retry {
                rt.records_drained();
            }
            for _ in 0..SLICES_PER_POLL {
                if rt.run_slice().is_none() {
                    break;
                }
            }
            peer_link::turn(&mut rt, &mut state.peer);
            let h = rt.monitor_mut();
            h.log.flush(&mut h.ch);
            match super::step(&mut h.ch, &mut h.log, &mut state) {
                Step::Busy => {}
                Step::Idle if rt.has_ready() => {}
                Step::Idle => crate::hw::idle::wait(m),
                Step::Exit(code) => return code,
                Step::Acked => rt.records_drained(),
                Step::Reply(stream, reply) => {
                    for (ticket, answer) in rt.monitor_mut().answer(stream, reply) {
                        rt.deliver(ticket, &answer);
                    }
                }
            }
        }
        summary(&rt);
        let h = rt.monitor_mut();
        h.log.checkpoint(&mut h.ch);
        ran = true;
    }
    let outcome = if ran { "agents done" } else { "no agent ran" };
    let h = &mut host;
    // A peer session's entries come after the agents' checkpoint: one more covers them.
    let mut peer_checkpointed = !state.peer.configured();
    loop {
        peer_link::refuse_all(h, &mut state.peer);
        // The peer session (if the host configured one) is closed and ended first.
        let peer_done = state.peer.wound_down(&mut h.ch, h.log.now_ms());
        if peer_done && !peer_checkpointed {
            h.log.checkpoint(&mut h.ch);
            peer_checkpointed = true;
        }
        // SECURITY: a coordinator serves until the host shuts it down (a shutdown is the
        // host's to give, as any denial of service is).
        if peer_done && h.log.all_stored() && !state.coordinator.serving() {
            serial_println!(
                "omega: bundle delivered and logged ({} entries, {} bytes stored by the host); {outcome}, shutting down",
                h.log.entries(),
                h.log.acked()
            );
            control::send_shutdown(&mut h.ch);
            return ExitCode::Success;
        }
        match super::step(&mut h.ch, &mut h.log, &mut state) {
            Step::Idle => crate::hw::idle::wait(m),
            Step::Exit(code) => return code,
            Step::Reply(stream, Ok(_)) => super::refuse_stream(&mut h.ch, stream),
            Step::Reply(_, Err(_)) => {}
            Step::Busy | Step::Acked => {}
        }
    }
}
