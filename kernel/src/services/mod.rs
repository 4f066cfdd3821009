//! The monitor's services over the host channel: one module per stream, and the loop that
//! hands each incoming message to its stream's module.
//!
//! | stream | module | what it does |
//! |---|---|---|
//! | Control | [`control`] | shutdown, notices and the challenge from the host; the log key, checkpoints, evidence ([`evidence`]), agent cards ([`agents`]) and the final shutdown to it |
//! | Bundle | [`bundle`] | receives the bundle (`omega_bundle::BundleReceiver`), hashes and logs every file |
//! | Log | [`log`] | the provenance log: appends, streams it to the host, tracks what the host stored |
//! | Echo | [`echo`] | answers `Q…` with `R…` (tests, benchmarks) |
//! | Inference | [`inference`] (for [`agents`]) | the evidence-checked TLS session with the inference proxy: agents' prompts out, answers back to the waiting agent (before the bundle: `Error(UNAVAILABLE)`) |
//! | Peer | [`peer`] | the peer channel to another monitor (`omega-peer-channel`), configured by the host on Control, its authority the fleet coordinator the bundle names; agents' messages to `node/agent` over it (with [`agents`]) |
//! | Fleet | [`coordinator`] | when the bundle makes this image its fleet's coordinator: the relay's requests (policy updates, placements, admissions) to `omega_fleet::service`, each logged, answered in order; the monitor then runs until the relay closes the stream or the host shuts it down |
//! | Tools | [`agents`] | agents' tool calls out, the gateway's answers back to the waiting agent (before the bundle: `Error(UNAVAILABLE)`) |
//!
//! Once the bundle is in, the proxy session is set up when the policy names models
//! ([`proxy_principal`]: bounded), the monitor issues its evidence ([`evidence`], with a
//! `model:<name>` claim per model the session proved), and [`agents::run`] takes over the loop: it runs the bundle's agents
//! in fuel slices between polls of the channel, and shuts down when they are done and the
//! host has stored the whole log.
//!
//! Where the coming streams go: the agent runtime, the inference proxy and the MCP tool
//! gateway each get a module here (`agents.rs`, `inference.rs`, `tools.rs`) with an
//! `on_message` the loop in [`run`] calls for its stream, replacing the `UNAVAILABLE`
//! answer; state they keep across messages lives in a struct the loop owns, as
//! [`bundle::BundleService`] does. Hardware they need goes in `hw/`, pure logic in the
//! library half.
//!
//! Errors the host causes never stop the monitor: bad input is reported (console and an
//! `Error` frame) and skipped by the channel, a refused message is answered with an
//! `Error` on its stream, and a failed send is reported and the loop goes on.

mod agents;
mod bundle;
mod control;
mod coordinator;
mod echo;
mod evidence;
mod inference;
mod instances;
mod log;
mod peer;
mod proxy_principal;

use omega_arch::exit::ExitCode;
use omega_arch::serial_println;
use omega_kernel::attest::Challenges;
use omega_kernel::channel::{Channel, ChannelError, Config, Event, HostText};
use omega_wire::{Stream, msg};

use crate::hw::idle::Idling;
use crate::hw::virtio::{self, Console, ConsoleError};
use crate::monitor::Monitor;

/// The channel to the host, over the virtio serial port (idling when the channel waits).
type HostChannel = Channel<Idling<Console>>;
type SendError = ChannelError<ConsoleError>;

/// Reports a failed send on the console (the host cannot be told: the channel is what
/// failed). The loop carries on; what was lost is the host's to notice.
fn report_send_failure(what: &str, e: &SendError) {
    serial_println!("omega: channel: sending {what} failed: {e}");
}

/// What the loop hands the agents' service (as an error "reply" on Control) when the host
/// reconnected: tool calls and the inference session in flight lost their answers.
pub(crate) const HOST_RECONNECTED: &str = "the host reconnected; the request was lost";

/// Bad input is reported for the first 20 cases, then every 1000th, so a flood of garbage
/// cannot flood the console too.
fn worth_reporting(count: u64) -> bool {
    count <= 20 || count.is_multiple_of(1000)
}

/// The channel could not be set up, for a reason the host controls: reported rather than
/// `fatal`, but with nothing to serve this is not a clean run either.
fn unusable_channel(e: impl core::fmt::Display) -> ExitCode {
    serial_println!("omega: host channel: {e}; nothing to serve, shutting down");
    ExitCode::Failure
}

/// Serves the host channel until the host asks to shut down, or the bundle is in, its
/// agents are done (or none could start) and the host has stored the whole log. Returns the exit code to stop with. `echo_all` (test
/// hooks) echoes every stream but Control instead of serving it.
pub fn run(m: &Monitor, echo_all: bool) -> ExitCode {
    let console = match virtio::probe() {
        Ok(c) => c,
        Err(ConsoleError::NoDevice) => {
            serial_println!("omega: no host channel (no virtio console)");
            serial_println!("omega: boot complete; no agents configured, shutting down");
            return ExitCode::Success;
        }
        // The device is there but unusable: no multiport, the port never added, an
        // impossible answer while setting it up.
        Err(e) => return unusable_channel(e),
    };
    serial_println!(
        "omega: host channel: virtio console at mmio slot {}",
        console.slot
    );
    let mut ch = match Channel::connect(Idling::new(console, m), Config::MONITOR) {
        Ok(ch) => ch,
        // No handshake, no channel (a version mismatch was told to the host).
        Err(e) => return unusable_channel(e),
    };
    serial_println!("omega: host channel up (protocol v{})", ch.version);

    let mut log = log::LogService::start(m, &mut ch);
    let mut loop_state = LoopState {
        bundle: bundle::BundleService::default(),
        challenges: Challenges::default(),
        echo_all,
        peer: peer::PeerService::new(
            m.keys.as_ref().map(|k| &*k.peer_key),
            m.keys.as_ref().map(|k| &*k.evidence_key),
        ),
        coordinator: coordinator::CoordinatorService::new(
            m.keys.as_ref().map(|k| &*k.coordinator_key),
        ),
    };
    // Until the bundle is in: then the monitor attests itself and its agents run
    // (`agents::run`), which ends the boot.
    while !loop_state.bundle.delivered() {
        match step(&mut ch, &mut log, &mut loop_state) {
            Step::Idle => crate::hw::idle::wait(m),
            Step::Exit(code) => return code,
            // A message is refused; an error from the host was reported (never answered).
            Step::Reply(stream, Ok(_)) => refuse_stream(&mut ch, stream),
            Step::Reply(_, Err(_)) => {}
            Step::Busy | Step::Acked => {}
        }
    }
    loop_state.peer.set_fleet(
        loop_state
            .bundle
            .contents()
            .and_then(|(m, _)| m.fleet.as_ref()),
    );
    loop_state.coordinator.set_bundle(
        &mut ch,
        &mut log,
        loop_state
            .bundle
            .contents()
            .and_then(|(m, _)| m.coordinator.as_ref()),
    );
    // The proxy session first (when the policy names models), so that the evidence can
    // claim the proxy as the `model:<name>` principal; bounded, never in the way.
    let early = match proxy_principal::connect(m, &mut ch, &mut log, &mut loop_state) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let LoopState {
        bundle,
        challenges,
        coordinator,
        ..
    } = &mut loop_state;
    let cards = evidence::issue(
        m,
        &mut ch,
        &mut log,
        challenges,
        bundle,
        &early.models,
        coordinator.identity(),
    );
    early.log(&mut ch, &mut log, cards.is_some());
    agents::run(m, ch, log, loop_state, cards, early.inference)
}

/// What the service loop keeps across messages, besides the channel and the log.
pub(crate) struct LoopState {
    bundle: bundle::BundleService,
    challenges: Challenges,
    /// Test hooks: echo every stream but Control instead of serving it.
    echo_all: bool,
    /// The peer channel to another monitor (Peer stream).
    pub(crate) peer: peer::PeerService,
    /// The fleet coordinator, when the bundle makes this image one (Fleet stream).
    pub(crate) coordinator: coordinator::CoordinatorService,
}

/// What one poll of the channel left for the caller.
pub(crate) enum Step {
    /// Something was handled (or nothing arrived but the channel is still busy).
    Busy,
    /// Nothing arrived: the caller may idle.
    Idle,
    /// The host acknowledged log bytes (room in the log's outbox).
    Acked,
    /// Stop with this exit code.
    Exit(ExitCode),
    /// The host answered on Inference or Tools: a message, or an error (code, text); or
    /// (Control) the operator's answer to a confirmation request.
    Reply(
        Stream,
        Result<alloc::vec::Vec<u8>, (u16, alloc::string::String)>,
    ),
}

/// Answers a message on a stream nobody serves with `Error(UNAVAILABLE)`.
fn refuse_stream(ch: &mut HostChannel, stream: Stream) {
    if let Err(e) = ch.send_error(
        stream,
        msg::code::UNAVAILABLE,
        "stream not served by this monitor yet",
    ) {
        report_send_failure("an UNAVAILABLE error", &e);
    }
}

/// Polls the channel once and hands what arrived to its stream's service; signs a
/// periodic log checkpoint when one is due.
fn step(ch: &mut HostChannel, log: &mut log::LogService<'_>, state: &mut LoopState) -> Step {
    let LoopState {
        bundle,
        challenges,
        echo_all,
        peer,
        coordinator,
    } = state;
    let echo_all = *echo_all;
    log.checkpoint_if_due(ch);
    let event = match ch.poll() {
        Ok(Some(e)) => e,
        Ok(None) => return Step::Idle,
        Err(e) => {
            report_send_failure("a credit grant or error report", &e);
            return Step::Busy;
        }
    };
    match event {
        Event::Message(Stream::Control, body) => {
            match control::on_message(ch, log, challenges, &body) {
                control::Outcome::Shutdown => return Step::Exit(ExitCode::Success),
                // For the agents' service (before the agents run: refused like any message
                // nobody serves).
                control::Outcome::ConfirmAnswer => return Step::Reply(Stream::Control, Ok(body)),
                control::Outcome::Peer => peer.on_control(ch, log, &body),
                control::Outcome::Continue => {}
            }
        }
        Event::Message(Stream::Echo, body) if echo::is_request(&body) => echo::answer(ch, body),
        Event::Message(Stream::Bundle, body) if !echo_all => bundle.on_message(ch, log, &body),
        Event::Message(stream, body) if echo_all => echo::echo_back(ch, stream, &body),
        Event::Message(Stream::Peer, body) if peer.configured() => peer.on_message(ch, log, &body),
        Event::Message(Stream::Fleet, body) => coordinator.on_message(ch, log, &body),
        Event::Message(stream @ (Stream::Inference | Stream::Tools), body) => {
            return Step::Reply(stream, Ok(body));
        }
        Event::Message(stream, _) => refuse_stream(ch, stream),
        Event::LogAck { stored } => {
            log.on_ack(stored);
            return Step::Acked;
        }
        Event::LogResume { stored } => {
            log.on_resume(ch, stored);
            return Step::Acked;
        }
        Event::Reconnected => {
            serial_println!(
                "omega: host channel: the host reconnected ({} so far); new handshake sent, the log is held until the new host resumes it",
                ch.reconnects
            );
            return Step::Reply(
                Stream::Control,
                Err((msg::code::UNAVAILABLE, HOST_RECONNECTED.into())),
            );
        }
        Event::PeerError {
            stream,
            code,
            message,
        } => {
            serial_println!(
                "omega: host reports an error on {stream:?} (code {code}, escaped): \"{}\"",
                HostText(&message)
            );
            if ch.unshown_peer_errors > 0 {
                serial_println!(
                    "omega: {} more errors from the host not shown",
                    core::mem::take(&mut ch.unshown_peer_errors)
                );
            }
            if matches!(stream, Stream::Inference | Stream::Tools) {
                return Step::Reply(stream, Err((code, message)));
            }
        }
        Event::Malformed(e) => {
            if worth_reporting(ch.malformed) {
                serial_println!(
                    "omega: channel: malformed input from the host ({} so far): {e}",
                    ch.malformed
                );
            }
        }
        Event::TransportFault(e) => {
            if worth_reporting(ch.malformed) {
                serial_println!(
                    "omega: channel: bad answer from the host's virtio device ({} bad inputs so far): {e}",
                    ch.malformed
                );
            }
        }
        Event::Closed(stream) => {
            serial_println!("omega: host closed stream {stream:?}");
            if stream == Stream::Peer {
                peer.on_closed(ch, log);
            }
            if stream == Stream::Fleet {
                coordinator.on_closed();
            }
            if stream == Stream::Inference {
                // The proxy hung up (or the relay lost it): the session ends.
                return Step::Reply(
                    stream,
                    Err((msg::code::UNAVAILABLE, "the host closed the stream".into())),
                );
            }
        }
    }
    Step::Busy
}
