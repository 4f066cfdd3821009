//! The reader side: decodes the guest's frames, answers the handshake, handles Control
//! itself and routes every other stream's data to its relay (never blocking on a backend).

use std::io::{self, Read};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use omega_agent_card::SignedCard;
use omega_wire::msg::{self, ControlMsg, ErrorBody, code};
use omega_wire::{
    Credits, Decoder, Frame, HelloAck, Kind, PerStream, RESUME_VERSION, Reassembler, Stream,
    WireError, negotiate,
};
use tracing::{info, warn};

use super::confirm::ConfirmHandle;
use super::log_store::{CHECKPOINT_FILE, KEY_FILE, card_file_name, evidence_file_name};
use super::psp::{self, PspHandle};
use super::relay::echo::EchoRelay;
use super::relay::inference::InferenceRelay;
use super::relay::link::{TcpLink, spawn_link};
use super::relay::log::LogRelay;
use super::relay::tools::ToolsRelay;
use super::relay::{self, Input, Messages, RelayHandle, Stored};
use super::send::{Shared, lock};
use super::{Challenge, IDLE_RESYNC, MAX_HOST_MESSAGE, SessionConfig, SessionEvent};
use crate::bundle::Bundle;

pub(crate) struct Demux {
    sh: Arc<Shared>,
    versions: Vec<u8>,
    window: u32,
    bundle: Option<Bundle>,
    challenge: Option<Challenge>,
    /// The peer channel's configuration (and whether this end initiates).
    peer_setup: Option<(super::PeerSetup, bool)>,
    /// The simulated PSP, when the challenge asks for one.
    psp: Option<PspHandle>,
    /// Answers the monitor's confirmation requests (the operator).
    confirm: ConfirmHandle,
    handshake: Option<u8>,
    failed: bool,
    /// Control messages are reassembled here and handled at once.
    control: Reassembler,
    expect_seq: PerStream<u32>,
    last_error_report: Option<Instant>,
    relays: PerStream<Option<RelayHandle>>,
    bundle_sender: Option<JoinHandle<()>>,
    /// Streams for which an UNAVAILABLE error was already sent.
    refused: PerStream<bool>,
    /// Bytes of the guest's log held before this session (a reopened log directory):
    /// stated in the HelloAck.
    log_stored: u64,
}

impl Demux {
    /// Starts a relay for every stream `config` serves.
    pub(crate) fn new(sh: Arc<Shared>, config: SessionConfig) -> Self {
        let mut relays: PerStream<Option<RelayHandle>> = PerStream::default();
        let log_stored = config.log_store.as_ref().map_or(0, |s| s.stored());
        if let Some(store) = config.log_store {
            relays[Stream::Log] = Some(relay::spawn(&sh, LogRelay::new(store)));
        }
        if let Some(proxy) = config.proxy {
            relays[Stream::Inference] = Some(relay::spawn(&sh, InferenceRelay::new(&sh, proxy)));
        }
        if let Some(cmd) = config.tool_gateway {
            let tools = ToolsRelay::start(&sh, &cmd);
            relays[Stream::Tools] = Some(relay::spawn(&sh, Messages::new(tools)));
        }
        relays[Stream::Echo] = Some(relay::spawn(&sh, Messages::new(EchoRelay)));
        let peer_setup = match (&config.peer, config.peer_setup) {
            (Some(link), Some(setup)) => Some((setup, matches!(link, TcpLink::Connect(_)))),
            _ => None,
        };
        if let Some(link) = config.peer {
            relays[Stream::Peer] = spawn_link(&sh, Stream::Peer, "peer link", link);
        }
        if let Some(addr) = config.fleet {
            relays[Stream::Fleet] = spawn_link(
                &sh,
                Stream::Fleet,
                "fleet coordinator relay",
                TcpLink::Connect(addr),
            );
        }
        let psp = config
            .challenge
            .and_then(|c| c.simulated_psp)
            .map(|measurement| PspHandle::spawn(&sh, measurement));
        let confirm = ConfirmHandle::spawn(&sh, config.operator);
        Demux {
            sh,
            versions: config.versions,
            window: config.window,
            bundle: config.bundle,
            challenge: config.challenge,
            peer_setup,
            psp,
            confirm,
            handshake: None,
            failed: false,
            control: Reassembler::new(MAX_HOST_MESSAGE),
            expect_seq: PerStream::default(),
            last_error_report: None,
            relays,
            bundle_sender: None,
            refused: PerStream::default(),
            log_stored,
        }
    }

    pub(crate) fn run<R: Read>(mut self, mut reader: R) {
        let mut dec: Box<Decoder> = Box::new(Decoder::new());
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_input = Instant::now();
        'outer: loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A read timeout (set by connect_unix, or by the caller on its stream) is an
                // idle tick.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.sh.is_closed() {
                        break;
                    }
                    // SECURITY: a truncated frame whose header claims more bytes than will
                    // come would otherwise hold up the frames behind it until more traffic
                    // arrives: after IDLE_RESYNC without input, give up on it and rescan.
                    if dec.pending() > 0 && last_input.elapsed() >= IDLE_RESYNC {
                        if let Some(e) = dec.resync() {
                            self.on_wire_error(e);
                        }
                        if self.drain(&mut dec) {
                            break 'outer;
                        }
                        // Still stuck on another partial frame: wait another IDLE_RESYNC.
                        last_input = Instant::now();
                    }
                    continue;
                }
                Err(e) => {
                    if !self.sh.is_closed() {
                        warn!("channel read failed: {e}");
                    }
                    break;
                }
            };
            last_input = Instant::now();
            let mut data = &buf[..n];
            while !data.is_empty() {
                let took = dec.push(data);
                data = &data[took..];
                if self.drain(&mut dec) {
                    break 'outer;
                }
            }
        }
        if let Err(e) = dec.finish() {
            self.on_wire_error(e);
        }
        info!("channel ended");
        self.sh.close();
        // Without input the relays end.
        for (_, r) in self.relays.iter_mut() {
            if let Some(r) = r.take() {
                r.join();
            }
        }
        if let Some(b) = self.bundle_sender.take() {
            let _ = b.join();
        }
        if let Some(p) = self.psp.take() {
            p.join();
        }
        self.sh.event(SessionEvent::Ended);
    }

    /// Handles every frame the decoder holds; true when the session must end.
    fn drain(&mut self, dec: &mut Decoder) -> bool {
        while let Some(r) = dec.next_frame() {
            match r {
                Ok(f) => self.on_frame(&f),
                Err(e) => self.on_wire_error(e),
            }
            if self.failed {
                return true;
            }
        }
        false
    }

    fn on_wire_error(&mut self, e: WireError) {
        warn!("bad input from the guest: {e}");
        self.sh.event(SessionEvent::WireError(e.to_string()));
        // SECURITY: report back at most 10 per second, so garbage cannot turn the host into
        // an amplifier.
        let now = Instant::now();
        if self
            .last_error_report
            .is_none_or(|t| now - t >= Duration::from_millis(100))
        {
            self.last_error_report = Some(now);
            self.sh
                .send_error(Stream::Control, code::MALFORMED, &e.to_string());
        }
    }

    fn protocol_error(&mut self, stream: Stream, c: u16, m: &str) {
        warn!("guest protocol error on {stream:?}: {m}");
        self.sh.event(SessionEvent::WireError(m.to_string()));
        self.sh.send_error(stream, c, m);
    }

    fn on_frame(&mut self, f: &Frame<'_>) {
        let s = f.stream();
        if self.handshake.is_none() && f.kind() != Kind::Hello {
            self.protocol_error(s, code::PROTOCOL, "Hello must be the first frame");
            return;
        }
        match f.kind() {
            Kind::Hello => self.on_hello(f),
            Kind::HelloAck => self.protocol_error(s, code::PROTOCOL, "unexpected HelloAck"),
            Kind::Credit => {
                let r = lock(&self.sh.credits)
                    .as_mut()
                    .map(|c| c.on_credit(s, f.header.arg));
                self.sh.credit_cv.notify_all();
                if let Some(Err(e)) = r {
                    self.protocol_error(s, code::CREDIT, &e.to_string());
                }
            }
            Kind::Ack => {
                self.protocol_error(s, code::PROTOCOL, "the host stores no log for the guest")
            }
            Kind::Error => {
                let (c, m) = match ErrorBody::decode(f.payload) {
                    Ok(b) => (b.code, b.message.to_string()),
                    Err(_) => (code::INTERNAL, "<malformed error body>".to_string()),
                };
                warn!("guest reported an error on {s:?}: code {c}: {m}");
                self.sh.event(SessionEvent::GuestError {
                    stream: s,
                    code: c,
                    message: m,
                });
            }
            Kind::Close => {
                info!("guest closed stream {s:?}");
                if let Some(r) = &self.relays[s] {
                    r.send(Input::Close);
                }
                self.sh.event(SessionEvent::StreamClosed(s));
            }
            Kind::Data => self.on_data(f),
        }
    }

    fn on_hello(&mut self, f: &Frame<'_>) {
        if self.handshake.is_some() {
            self.protocol_error(Stream::Control, code::PROTOCOL, "second Hello");
            return;
        }
        let hello = match omega_wire::Hello::decode(f.payload) {
            Ok(h) => h,
            Err(e) => {
                self.protocol_error(Stream::Control, code::PROTOCOL, &format!("bad Hello: {e}"));
                return;
            }
        };
        let window = self.window;
        match negotiate(&self.versions, hello.versions) {
            Ok(v) if v < RESUME_VERSION && self.log_stored > 0 => {
                // The guest could not be told what this host holds.
                let m = format!(
                    "the log directory holds {} bytes of the log, but protocol v{v} cannot resume a log",
                    self.log_stored
                );
                self.protocol_error(Stream::Control, code::NO_COMMON_VERSION, &m);
                self.sh.send_close(Stream::Control);
                self.sh.event(SessionEvent::HandshakeFailed {
                    guest_versions: hello.versions.to_vec(),
                });
                self.failed = true;
            }
            Ok(v) => {
                *lock(&self.sh.credits) = Some(Credits::new(window, hello.window));
                self.handshake = Some(v);
                let ack = HelloAck {
                    version: v,
                    versions: &self.versions,
                    window,
                    log_stored: self.log_stored,
                };
                if self.sh.send_with(|enc, b| enc.hello_ack(&ack, b)).is_err() {
                    return;
                }
                info!(
                    "guest hello: protocol version {v}, guest window {} bytes",
                    hello.window
                );
                self.sh.event(SessionEvent::Handshake { version: v });
                self.start_bundle();
            }
            Err(_) => {
                let ack = HelloAck {
                    version: 0,
                    versions: &self.versions,
                    window,
                    log_stored: 0,
                };
                let _ = self.sh.send_with(|enc, b| enc.hello_ack(&ack, b));
                let m = format!(
                    "no common version: guest {:?}, host {:?}",
                    hello.versions, self.versions
                );
                self.sh
                    .send_error(Stream::Control, code::NO_COMMON_VERSION, &m);
                self.sh.send_close(Stream::Control);
                warn!("{m}");
                self.sh.event(SessionEvent::HandshakeFailed {
                    guest_versions: hello.versions.to_vec(),
                });
                self.failed = true;
            }
        }
    }

    /// Sends the challenge, then the bundle (or closes the Bundle stream at once), on its
    /// own thread: both wait for the guest's credit.
    fn start_bundle(&mut self) {
        let sh = self.sh.clone();
        let bundle = self.bundle.take();
        let challenge = self.challenge;
        let peer_setup = self.peer_setup.take();
        self.bundle_sender = Some(thread::spawn(move || {
            if let Some(c) = challenge {
                let m = ControlMsg::Challenge {
                    nonce: c.nonce,
                    simulated_psp: c.simulated_psp.is_some(),
                };
                let mut b = [0u8; 64];
                match msg::encode(&m, &mut b)
                    .map_err(super::SessionError::from)
                    .and_then(|body| sh.send_message(Stream::Control, body))
                {
                    Ok(()) => sh.event(SessionEvent::ChallengeSent {
                        nonce: c.nonce,
                        simulated_psp: c.simulated_psp.is_some(),
                    }),
                    Err(e) => warn!("sending the challenge failed: {e}"),
                }
            }
            // Before the bundle, so the monitor knows it has a peer before its agents end.
            if let Some((setup, initiator)) = peer_setup {
                super::relay::peer::send_setup(&sh, setup, initiator);
            }
            let Some(b) = bundle else {
                sh.send_close(Stream::Bundle);
                return;
            };
            match sh.send_bundle(&b) {
                Ok(()) => {
                    info!(
                        "bundle sent: {} files, {} bytes",
                        b.files.len(),
                        b.total_bytes()
                    );
                    sh.event(SessionEvent::BundleSent {
                        files: b.files.len(),
                        bytes: b.total_bytes(),
                    });
                }
                Err(e) => warn!("sending the bundle failed: {e}"),
            }
        }));
    }

    fn on_data(&mut self, f: &Frame<'_>) {
        let s = f.stream();
        let n = f.payload.len();
        let r = lock(&self.sh.credits).as_mut().map(|c| c.on_data(s, n));
        if let Some(Err(e)) = r {
            // SECURITY: data beyond the granted credit is dropped and reported, never queued.
            self.protocol_error(s, code::CREDIT, &e.to_string());
            return;
        }
        if s == Stream::Control {
            // Control messages are handled at once: credit comes back per frame, and
            // reassembly is bounded by MAX_HOST_MESSAGE.
            match self.control.push(f) {
                Err(e) => {
                    let c = if matches!(e, WireError::MessageTooLarge(_)) {
                        code::TOO_LARGE
                    } else {
                        code::SEQUENCE
                    };
                    self.protocol_error(s, c, &e.to_string());
                }
                Ok(None) => {}
                Ok(Some((_, m))) => self.on_control(&m),
            }
            self.sh.consumed(s, n);
            return;
        }
        let expected = self.expect_seq[s];
        self.expect_seq[s] = f.header.seq.wrapping_add(1);
        let gap = f.header.seq != expected;
        if gap {
            let e = WireError::SeqGap {
                stream: s,
                expected,
                got: f.header.seq,
            };
            self.protocol_error(s, code::SEQUENCE, &e.to_string());
        }
        if s == Stream::Bundle {
            self.protocol_error(s, code::PROTOCOL, "the bundle stream is host-to-guest");
            self.sh.consumed(s, n);
            return;
        }
        match &self.relays[s] {
            Some(r) => r.send(Input::Data {
                header: f.header,
                payload: f.payload.to_vec(),
                gap,
            }),
            None => self.refuse(s, n, f.is_end()),
        }
    }

    /// Drops data of a stream nobody serves: an Error at the end of each message (and on
    /// the first refused frame), credit returned so the guest is not wedged.
    fn refuse(&mut self, s: Stream, n: usize, end: bool) {
        let why = relay::unserved(s);
        let first = !self.refused[s];
        if first {
            self.refused[s] = true;
            warn!("refusing {s:?} data: {why}");
        }
        if first || end {
            self.sh.send_error(s, code::UNAVAILABLE, why);
        }
        self.sh.consumed(s, n);
    }

    fn on_control(&mut self, m: &[u8]) {
        match msg::decode_exact::<ControlMsg>(m) {
            Ok(ControlMsg::Shutdown { status }) => {
                info!("guest shutting down (status {status})");
                self.sh.event(SessionEvent::Shutdown { status });
            }
            Ok(ControlMsg::Notice { text }) => {
                info!("guest: {text}");
                self.sh.event(SessionEvent::Notice(text.to_string()));
            }
            // Both go through the log relay, so they are stored after every log byte that
            // arrived before them is durable.
            Ok(ControlMsg::LogKey { vkey }) => {
                info!("guest log key: {vkey}");
                self.sh.event(SessionEvent::LogKey(vkey.to_string()));
                let to = Stored::Beside(KEY_FILE);
                self.store_beside_log(to, vkey.as_bytes(), SessionEvent::LogKeyStored);
            }
            Ok(ControlMsg::Checkpoint { note }) => {
                info!("guest checkpoint received ({} bytes)", note.len());
                self.sh.event(SessionEvent::Checkpoint(note.to_string()));
                let to = Stored::Beside(CHECKPOINT_FILE);
                self.store_beside_log(to, note.as_bytes(), SessionEvent::CheckpointStored);
            }
            Ok(ControlMsg::Evidence { principal, bundle }) => self.on_evidence(principal, bundle),
            Ok(ControlMsg::AgentCard { agent, card }) => self.on_card(agent, card),
            Ok(m @ ControlMsg::ConfirmRequest { .. }) => self.confirm.request(&self.sh, &m),
            Ok(ControlMsg::GuestRequest { message }) => match &self.psp {
                Some(p) => p.request(&self.sh, message),
                None => psp::refuse(
                    &self.sh,
                    code::UNAVAILABLE,
                    "no PSP on this host: guest requests are answered only with --simulated-psp (tests)",
                ),
            },
            Ok(
                ControlMsg::Challenge { .. }
                | ControlMsg::GuestResponse { .. }
                | ControlMsg::ConfirmAnswer { .. }
                | ControlMsg::PeerConfig { .. }
                | ControlMsg::PeerCredential { .. },
            ) => self.protocol_error(
                Stream::Control,
                code::PROTOCOL,
                "Challenge, GuestResponse, ConfirmAnswer, PeerConfig and PeerCredential go from the host to the guest",
            ),
            Err(e) => self.protocol_error(
                Stream::Control,
                code::PROTOCOL,
                &format!("bad control message: {e}"),
            ),
        }
    }

    /// Stores one principal's evidence beside the log (after the log bytes before it).
    fn on_evidence(&mut self, principal: &str, bundle: &[u8]) {
        let file = match evidence_file_name(principal) {
            Ok(f) => f,
            Err(e) => {
                return self.protocol_error(
                    Stream::Control,
                    code::PROTOCOL,
                    &format!("evidence refused: {e}"),
                );
            }
        };
        info!("guest evidence for {principal} ({} bytes)", bundle.len());
        self.sh.event(SessionEvent::Evidence {
            principal: principal.to_string(),
            bundle: bundle.to_vec(),
        });
        let done = SessionEvent::EvidenceStored {
            principal: principal.to_string(),
            file: file.clone(),
        };
        self.store_beside_log(Stored::Evidence(file), bundle, done);
    }

    /// Stores one agent's signed card beside the evidence (after the log bytes before it).
    /// The launcher only checks that it is a card (the verifier checks what it says).
    fn on_card(&mut self, agent: &str, card: &str) {
        let checked = card_file_name(agent)
            .map_err(|e| e.to_string())
            .and_then(|file| {
                let c = SignedCard::decode(card.as_bytes()).map_err(|e| e.to_string())?;
                if c.body.agent != agent {
                    return Err(format!("the card names agent {:?}", c.body.agent));
                }
                Ok(file)
            });
        let file = match checked {
            Ok(f) => f,
            Err(e) => {
                return self.protocol_error(
                    Stream::Control,
                    code::PROTOCOL,
                    &format!("agent card refused: {e}"),
                );
            }
        };
        info!("guest agent card for {agent} ({} bytes)", card.len());
        self.sh.event(SessionEvent::AgentCard {
            agent: agent.to_string(),
            card: card.to_string(),
        });
        let done = SessionEvent::CardStored {
            agent: agent.to_string(),
            file: file.clone(),
        };
        self.store_beside_log(Stored::Card(file), card.as_bytes(), done);
    }

    fn store_beside_log(&mut self, to: Stored, bytes: &[u8], done: SessionEvent) {
        match &self.relays[Stream::Log] {
            Some(r) => r.send(Input::File(to, bytes.to_vec(), done)),
            None => self.sh.send_error(
                Stream::Control,
                code::UNAVAILABLE,
                relay::unserved(Stream::Log),
            ),
        }
    }
}
