//! The Omega agent runtime: many sandboxed Wasm agents in one monitor, every host call
//! decided by policy and recorded before anything leaves the agent.
//!
//! Principles the code keeps:
//! * **One store per agent** (wasmi, no JIT): its own linear memory capped by
//!   [`AgentLimits::memory_bytes`] (`StoreLimits`), its own fuel.
//! * **Preemption by fuel.** The scheduler runs one agent for a fuel slice
//!   (`call_resumable`); out of fuel it goes to the back of the queue and resumes later.
//!   A spinning agent costs others at most one slice per round.
//! * **Parking.** A host call suspends the agent (a resumable host trap); the scheduler takes
//!   it through the gate (`gate.rs`) and either resumes the agent at once or parks it until the
//!   answer exists (an egress ticket, a message, room in the provenance outbox).
//! * **One gate.** Every call that acts outside the agent becomes an `omega_policy` request
//!   with the agent's current labels, is evaluated, recorded through [`Monitor::append_record`]
//!   and only then carried out; a denial returns `Denied { rule }`.
//! * **Containment.** A bad pointer, a trap, a memory bomb or an exhausted fuel budget stops
//!   that agent only; the restart policy decides whether it runs again. Nothing an agent
//!   passes can panic the runtime: pointers and lengths are checked against its memory,
//!   arithmetic on them is checked, requests are decoded with limits.
//!
//! The ABI is `omega-agent-abi` (`docs/agent-abi.md`); the runtime's design, tests and
//! figures are in `docs/agents.md`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod gate;
mod host;
mod load;
mod monitor;
mod remote;
mod stream;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use omega_agent_abi as abi;
use omega_policy::{LabelSet, Policy, Session};
use wasmi::{
    CompilationMode, Config, EnforcedLimits, Engine, Func, Linker, ResumableCall,
    ResumableCallHostTrap, ResumableCallOutOfFuel, Store, StoreLimitsBuilder, Val,
};

use host::{AgentCtx, HostCall, Stop};
pub use load::{AgentLimits, AgentSpec, CheckedModule, LoadError, PAGE, RestartPolicy};
pub use monitor::{
    AgentEvent, Answer, Backpressure, DataError, Egress, EgressReply, Monitor, Record, Ticket,
};

pub use gate::SCHEMA_RULE;
pub use monitor::Confirm;
pub use remote::{RemoteMessage, RemoteVerdict};

/// Postcard encoding into a fresh vector (only for values the runtime builds itself).
pub(crate) fn encode_owned<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap_or_default()
}

/// An agent's index in the runtime (stable for the runtime's life, restarts included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId(pub usize);

/// Where an agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Queued to run.
    Ready,
    /// Waiting for an answer, a message or room in the provenance log.
    Parked,
    /// Finished with this exit code.
    Exited(i32),
    /// Stopped after a trap, restarts used up.
    Trapped(String),
}

/// Runtime-wide settings.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeConfig {
    /// Most bytes of one agent's interpreter value stack.
    pub max_stack_bytes: usize,
    /// Most nested calls inside an agent.
    pub max_recursion_depth: usize,
    /// Most agents run in a row from the woken queue before one from the round-robin
    /// queue: agents that mostly wait keep their message rate next to spinners, and
    /// spinners still get a slice at least every `wake_burst` wake-ups.
    pub wake_burst: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_stack_bytes: 256 * 1024,
            max_recursion_depth: 1000,
            wake_burst: 256,
        }
    }
}

/// A message waiting in an inbox: copied out of the sender, with the labels it carries.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub from: usize,
    /// A message from another image: its sender as `node/agent` (then `from` is unused).
    pub remote: Option<String>,
    pub labels: LabelSet,
    /// postcard `Message`.
    pub message: Vec<u8>,
}

/// What a parked agent waits for.
#[derive(Debug)]
pub(crate) enum Wait {
    /// An egress answer with this ticket.
    Egress {
        ticket: Ticket,
        out_ptr: u32,
        out_cap: u32,
    },
    /// A message (`recv` with `wait`).
    Recv { out_ptr: u32, out_cap: u32 },
    /// Room in the provenance outbox; the call goes through the gate again.
    Record(HostCall),
    /// Text or the end of an open stream (`infer_next`).
    Stream {
        handle: u64,
        out_ptr: u32,
        out_cap: u32,
    },
}

/// Where the agent's execution is.
#[derive(Debug, Default)]
pub(crate) enum Run {
    /// `run` not called yet.
    #[default]
    Start,
    OutOfFuel(ResumableCallOutOfFuel),
    /// A host call is waiting for the gate.
    Gate(ResumableCallHostTrap, HostCall),
    /// The host call's result is ready: resume with it.
    Resume(ResumableCallHostTrap, Val),
    Parked(ResumableCallHostTrap, Wait),
    Done,
}

struct Agent {
    checked: CheckedModule,
    store: Store<AgentCtx>,
    entry: Func,
    run: Run,
    status: Status,
    session: Session,
    inbox: VecDeque<Inbound>,
    /// Open `infer_stream` answers (at most `abi::MAX_STREAMS`).
    streams: Vec<stream::Open>,
    restarts: u32,
    fuel_used: u64,
}

/// The agents of one monitor and their scheduler.
pub struct Runtime<'p, M> {
    engine: Engine,
    linker: Linker<AgentCtx>,
    policy: &'p Policy<'p>,
    monitor: M,
    agents: Vec<Agent>,
    /// Agents whose slice ran out, and new agents: served round robin.
    ready: VecDeque<usize>,
    /// Agents woken from a park (an answer, a message): served first, so an agent that
    /// mostly waits is not queued behind every spinner, but at most
    /// `RuntimeConfig::wake_burst` in a row before one slice from `ready`.
    woken: VecDeque<usize>,
    burst: usize,
    tickets: BTreeMap<Ticket, usize>,
    /// Tickets of open streams: the agent and its stream handle.
    stream_tickets: BTreeMap<Ticket, (usize, u64)>,
    /// The next stream handle.
    next_stream: u64,
    /// The first agent spawned under each name: `send` finds its receiver, and the
    /// policy name it is decided under, without a scan of every agent.
    by_name: BTreeMap<String, usize>,
    /// Remote senders' (`node/agent`) rate-limit windows, one per sender this policy
    /// allowed a message from (so at most one per remote agent it declares).
    remote_sessions: BTreeMap<String, omega_policy::Session>,
    config: RuntimeConfig,
}

impl<'p, M: Monitor> Runtime<'p, M> {
    /// A runtime deciding by `policy` and served by `monitor`.
    pub fn new(policy: &'p Policy<'p>, monitor: M, config: RuntimeConfig) -> Self {
        let mut wasm = Config::default();
        wasm.consume_fuel(true)
            // Translate every function at load (in `check`), outside any slice: lazily
            // translated functions are charged to the running slice, and a slice too short
            // for that ends in an error wasmi cannot resume. It also keeps the monitor from
            // paying an agent's translation inside the agent's time.
            .compilation_mode(CompilationMode::Eager)
            // SECURITY: a start function would run during instantiation, outside the
            // scheduler's slices; agents begin at `run`.
            .allow_start_fn(false)
            .enforced_limits(EnforcedLimits::strict())
            .set_max_cached_stacks(2)
            .set_max_recursion_depth(config.max_recursion_depth);
        if config.max_stack_bytes >= 1024 {
            wasm.set_min_stack_height(1024)
                .set_max_stack_height(config.max_stack_bytes);
        }
        let engine = Engine::new(&wasm);
        let mut linker = Linker::new(&engine);
        // Names are distinct constants (tested), so linking cannot collide.
        let _ = host::link(&mut linker);
        Runtime {
            engine,
            linker,
            policy,
            monitor,
            agents: Vec::new(),
            ready: VecDeque::new(),
            woken: VecDeque::new(),
            burst: 0,
            tickets: BTreeMap::new(),
            stream_tickets: BTreeMap::new(),
            next_stream: 1,
            by_name: BTreeMap::new(),
            remote_sessions: BTreeMap::new(),
            config,
        }
    }

    /// The monitor (for tests and the kernel's service loop).
    pub fn monitor(&self) -> &M {
        &self.monitor
    }
    pub fn monitor_mut(&mut self) -> &mut M {
        &mut self.monitor
    }

    /// Runs the load-time checks (hash pin, imports, exports, limits).
    pub fn check(&self, spec: &AgentSpec<'_>) -> Result<CheckedModule, LoadError> {
        load::check(&self.engine, self.policy, spec)
    }

    /// Checks and starts an agent.
    pub fn load(&mut self, spec: &AgentSpec<'_>) -> Result<AgentId, LoadError> {
        let checked = self.check(spec)?;
        self.spawn(checked)
    }

    /// Instantiates a checked module as a new agent and queues it.
    pub fn spawn(&mut self, checked: CheckedModule) -> Result<AgentId, LoadError> {
        let (store, entry) = self.instantiate(&checked)?;
        let id = self.agents.len();
        self.by_name.entry(checked.name.clone()).or_insert(id);
        self.agents.push(Agent {
            checked,
            store,
            entry,
            run: Run::Start,
            status: Status::Ready,
            session: Session::new(),
            inbox: VecDeque::new(),
            streams: Vec::new(),
            restarts: 0,
            fuel_used: 0,
        });
        self.started(id);
        Ok(AgentId(id))
    }

    fn instantiate(&self, checked: &CheckedModule) -> Result<(Store<AgentCtx>, Func), LoadError> {
        let err = |reason: String| LoadError::Instantiate {
            agent: checked.name.clone(),
            reason,
        };
        let memory = usize::try_from(checked.limits.memory_bytes).unwrap_or(usize::MAX);
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory)
            .memories(1)
            .tables(1)
            .table_elements(10_000)
            .instances(1)
            // SECURITY: growing past the limit stops the agent instead of letting it
            // retry forever.
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, AgentCtx::new(limits));
        store.limiter(|ctx| &mut ctx.limits);
        let instance = self
            .linker
            .instantiate_and_start(&mut store, &checked.module)
            .map_err(|e| err(format!("{e}")))?;
        let memory = instance
            .get_memory(&store, abi::MEMORY_EXPORT)
            .ok_or_else(|| err("no memory export".into()))?;
        store.data_mut().memory = Some(memory);
        let entry = instance
            .get_func(&store, abi::ENTRY_EXPORT)
            .ok_or_else(|| err("no run export".into()))?;
        Ok((store, entry))
    }

    fn started(&mut self, id: usize) {
        let Some(agent) = self.agents.get(id) else {
            return;
        };
        let record = Record::Start {
            agent: &agent.checked.name,
            module_hash: agent.checked.hash,
        };
        // A lifecycle record that meets backpressure is not retried: the decision records,
        // which gate every action, are the ones that must never be lost.
        let _ = self.monitor.append_record(&record);
        self.monitor.event(&agent.checked.name, AgentEvent::Started);
        self.ready.push_back(id);
    }

    /// Number of agents ever spawned.
    pub fn len(&self) -> usize {
        self.agents.len()
    }
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Agent `id`'s name.
    pub fn name(&self, id: AgentId) -> Option<&str> {
        self.agents.get(id.0).map(|a| a.checked.name.as_str())
    }

    /// Where agent `id` is.
    pub fn status(&self, id: AgentId) -> Option<&Status> {
        self.agents.get(id.0).map(|a| &a.status)
    }

    /// The agent's context labels (bits of the policy's labels).
    pub fn agent_labels(&self, id: AgentId) -> LabelSet {
        self.labels(id.0)
    }

    /// Agent `id`'s linear memory, read-only (for the operator's debugging and for tests).
    pub fn agent_memory(&self, id: AgentId) -> Option<&[u8]> {
        let agent = self.agents.get(id.0)?;
        Some(agent.store.data().memory?.data(&agent.store))
    }

    /// Restarts used by agent `id`.
    pub fn restarts(&self, id: AgentId) -> u32 {
        self.agents.get(id.0).map_or(0, |a| a.restarts)
    }

    /// Fuel agent `id` has burnt since its last (re)start.
    pub fn fuel_used(&self, id: AgentId) -> u64 {
        self.agents.get(id.0).map_or(0, |a| a.fuel_used)
    }

    /// Whether some agent is ready to run. When none is, the monitor may idle until an
    /// egress answer arrives ([`Runtime::deliver`]) or the log is drained.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty() || !self.woken.is_empty()
    }

    /// Runs the next ready agent for one fuel slice; `None` when no agent is ready.
    pub fn run_slice(&mut self) -> Option<AgentId> {
        let from_woken = !self.woken.is_empty()
            && (self.burst < self.config.wake_burst || self.ready.is_empty());
        let id = if from_woken {
            self.burst += 1;
            self.woken.pop_front()?
        } else {
            self.burst = 0;
            self.ready.pop_front()?
        };
        self.slice(id);
        Some(AgentId(id))
    }

    /// Runs slices until no agent is ready or `max_slices` have run; returns the count.
    pub fn run_until_idle(&mut self, max_slices: usize) -> usize {
        let mut n = 0;
        while n < max_slices && self.run_slice().is_some() {
            n += 1;
        }
        n
    }

    /// Answers a pending egress: writes the answer into the waiting agent and queues it.
    /// Unknown tickets (answered already, or the agent was stopped) are ignored.
    pub fn deliver(&mut self, ticket: Ticket, answer: &Answer) -> bool {
        if self.deliver_stream(ticket, answer) {
            return true;
        }
        let Some(id) = self.tickets.remove(&ticket) else {
            return false;
        };
        let Some(agent) = self.agents.get_mut(id) else {
            return false;
        };
        if !matches!(agent.run, Run::Parked(_, Wait::Egress { .. })) {
            return false;
        }
        let Run::Parked(
            call,
            Wait::Egress {
                out_ptr, out_cap, ..
            },
        ) = core::mem::take(&mut agent.run)
        else {
            return false;
        };
        let ret = self.answer(id, out_ptr, out_cap, answer);
        self.resume_later(id, call, Val::I32(ret));
        true
    }

    /// The monitor drained the provenance outbox: calls that waited for room retry.
    pub fn records_drained(&mut self) {
        for id in 0..self.agents.len() {
            let Some(agent) = self.agents.get_mut(id) else {
                continue;
            };
            if matches!(agent.run, Run::Parked(_, Wait::Record(_))) {
                let Run::Parked(c, Wait::Record(call)) = core::mem::take(&mut agent.run) else {
                    continue;
                };
                agent.run = Run::Gate(c, call);
                agent.status = Status::Ready;
                self.woken.push_back(id);
            }
        }
    }

    pub(crate) fn resume_later(&mut self, id: usize, call: ResumableCallHostTrap, ret: Val) {
        if let Some(agent) = self.agents.get_mut(id) {
            agent.run = Run::Resume(call, ret);
            agent.status = Status::Ready;
            self.woken.push_back(id);
        }
    }

    /// A message was queued for `id`: if it waits in `recv`, hand it over and queue it.
    pub(crate) fn wake_receiver(&mut self, id: usize) {
        let Some(agent) = self.agents.get_mut(id) else {
            return;
        };
        if !matches!(agent.run, Run::Parked(_, Wait::Recv { .. })) {
            return;
        }
        let Run::Parked(call, Wait::Recv { out_ptr, out_cap }) = core::mem::take(&mut agent.run)
        else {
            return;
        };
        let ret = match self.take_message(id) {
            Some(bytes) => self.write_response(id, out_ptr, out_cap, Ok(&bytes)),
            None => self.write_response(id, out_ptr, out_cap, Err(abi::HostError::BadRequest)),
        };
        self.resume_later(id, call, Val::I32(ret));
    }

    /// The live agent called `name` (the oldest, if several instances share the name).
    pub(crate) fn find_live(&self, name: &str) -> Option<usize> {
        let live = |a: &Agent| a.checked.name == name && !matches!(a.run, Run::Done);
        match self.by_name.get(name) {
            None => None,
            // The first agent of that name: with names unique (the kernel's manifest), the
            // only one.
            Some(&id) if self.agents.get(id).is_some_and(live) => Some(id),
            Some(&id) => self
                .agents
                .iter()
                .skip(id.saturating_add(1))
                .position(live)
                .map(|p| p + id + 1),
        }
    }

    /// The policy name agent `name` is decided under (an instance's agent), or `name`
    /// itself when no agent of that name was ever spawned.
    pub(crate) fn policy_name_of<'n>(&'n self, name: &'n str) -> &'n str {
        self.by_name
            .get(name)
            .and_then(|&id| self.agents.get(id))
            .map_or(name, |a| a.checked.policy_name.as_str())
    }

    pub(crate) fn agent_name(&self, id: usize) -> String {
        self.agents
            .get(id)
            .map(|a| a.checked.name.clone())
            .unwrap_or_default()
    }

    /// One slice of agent `id`: resume it with fresh fuel and handle host calls until it
    /// runs out of fuel, parks, ends or traps.
    fn slice(&mut self, id: usize) {
        let Some(agent) = self.agents.get_mut(id) else {
            return;
        };
        let mut run = core::mem::take(&mut agent.run);
        let required = match &run {
            Run::OutOfFuel(c) => c.required_fuel(),
            _ => 0,
        };
        let mut fuel = agent.checked.limits.fuel_slice.max(required);
        if let Some(total) = agent.checked.limits.fuel_total {
            fuel = fuel.min(total.saturating_sub(agent.fuel_used));
            // Not even the paused instruction fits in what is left.
            if fuel == 0 || fuel < required {
                self.trap(id, "fuel budget exhausted".into());
                return;
            }
        }
        if agent.store.set_fuel(fuel).is_err() {
            self.trap(id, "fuel metering unavailable".into());
            return;
        }
        loop {
            let Some(agent) = self.agents.get_mut(id) else {
                return;
            };
            let store = &mut agent.store;
            let result = match run {
                Run::Start => agent.entry.call_resumable(&mut *store, &[], &mut []),
                Run::OutOfFuel(c) => c.resume(&mut *store, &mut []),
                Run::Resume(c, v) => c.resume(&mut *store, &[v], &mut []),
                Run::Gate(c, call) => {
                    match self.gate(id, call) {
                        gate::Outcome::Return(v) => run = Run::Resume(c, v),
                        gate::Outcome::Park(wait) => {
                            self.account_fuel(id, fuel);
                            self.park(id, c, wait);
                            return;
                        }
                    }
                    continue;
                }
                parked @ (Run::Parked(..) | Run::Done) => {
                    agent.run = parked;
                    return;
                }
            };
            match result {
                Ok(ResumableCall::Finished) => {
                    self.account_fuel(id, fuel);
                    self.exit(id, 0);
                    return;
                }
                Ok(ResumableCall::OutOfFuel(c)) => {
                    self.account_fuel(id, fuel);
                    if let Some(agent) = self.agents.get_mut(id) {
                        agent.run = Run::OutOfFuel(c);
                        agent.status = Status::Ready;
                        self.ready.push_back(id);
                    }
                    return;
                }
                Ok(ResumableCall::HostTrap(c)) => {
                    let stop = c.host_error().downcast_ref::<Stop>().copied();
                    match stop {
                        Some(Stop::Suspend) => {
                            match self
                                .agents
                                .get_mut(id)
                                .and_then(|a| a.store.data_mut().pending.take())
                            {
                                Some(call) => run = Run::Gate(c, call),
                                None => {
                                    self.trap(id, "host call lost".into());
                                    return;
                                }
                            }
                        }
                        Some(Stop::Exit(code)) => {
                            self.account_fuel(id, fuel);
                            self.exit(id, code);
                            return;
                        }
                        Some(Stop::BadPointer) => {
                            self.trap(id, format!("{}", Stop::BadPointer));
                            return;
                        }
                        None => {
                            let reason = format!("{}", c.host_error());
                            self.trap(id, reason);
                            return;
                        }
                    }
                }
                Err(e) => {
                    self.trap(id, format!("{e}"));
                    return;
                }
            }
        }
    }

    fn account_fuel(&mut self, id: usize, given: u64) {
        if let Some(agent) = self.agents.get_mut(id) {
            let left = agent.store.get_fuel().unwrap_or(0);
            agent.fuel_used = agent.fuel_used.saturating_add(given.saturating_sub(left));
        }
    }

    fn park(&mut self, id: usize, call: ResumableCallHostTrap, wait: Wait) {
        let Some(agent) = self.agents.get_mut(id) else {
            return;
        };
        if let Wait::Egress { ticket, .. } = wait {
            self.tickets.insert(ticket, id);
        }
        agent.run = Run::Parked(call, wait);
        agent.status = Status::Parked;
        // A message may have arrived between the check and the park (it cannot today, the
        // runtime is single-threaded, but the invariant is cheap to keep).
        if self.agents.get(id).is_some_and(|a| !a.inbox.is_empty()) {
            self.wake_receiver(id);
        }
    }

    fn exit(&mut self, id: usize, code: i32) {
        self.stop(id, Status::Exited(code), AgentEvent::Exited { code });
    }

    /// Stops a trapped agent and restarts it if its policy allows.
    fn trap(&mut self, id: usize, reason: String) {
        self.stop(
            id,
            Status::Trapped(reason.clone()),
            AgentEvent::Trapped { reason: &reason },
        );
        let Some(agent) = self.agents.get(id) else {
            return;
        };
        let RestartPolicy::OnTrap { max } = agent.checked.restart else {
            return;
        };
        if agent.restarts >= max {
            return;
        }
        let checked = agent.checked.clone();
        // SECURITY: the session (labels, counts) and the inbox survive: a restart must not
        // launder the taint of what the agent read.
        match self.instantiate(&checked) {
            Ok((store, entry)) => {
                let Some(agent) = self.agents.get_mut(id) else {
                    return;
                };
                agent.store = store;
                agent.entry = entry;
                agent.run = Run::Start;
                agent.status = Status::Ready;
                agent.restarts = agent.restarts.saturating_add(1);
                agent.fuel_used = 0;
                let attempt = agent.restarts;
                self.monitor
                    .event(&checked.name, AgentEvent::Restarted { attempt });
                self.started(id);
            }
            Err(e) => {
                let reason = format!("{e}");
                self.monitor
                    .event(&checked.name, AgentEvent::Trapped { reason: &reason });
            }
        }
    }

    fn stop(&mut self, id: usize, status: Status, event: AgentEvent<'_>) {
        let Some(agent) = self.agents.get_mut(id) else {
            return;
        };
        agent.run = Run::Done;
        agent.status = status;
        agent.store.data_mut().pending = None;
        agent.store.data_mut().held = None;
        self.tickets.retain(|_, a| *a != id);
        self.stream_tickets.retain(|_, (a, _)| *a != id);
        agent.streams.clear();
        self.ready.retain(|a| *a != id);
        self.woken.retain(|a| *a != id);
        let Some(agent) = self.agents.get(id) else {
            return;
        };
        let _ = self.monitor.append_record(&Record::Exit {
            agent: &agent.checked.name,
        });
        self.monitor.event(&agent.checked.name, event);
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }
}
