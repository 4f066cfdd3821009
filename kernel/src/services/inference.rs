//! The session with the inference proxy, over the channel's Inference stream (the host
//! relays the bytes to `omega run --proxy HOST:PORT` and back, and sees the evidence exchange
//! and TLS ciphertext only). It drives [`omega_inference_client::Session`] from the monitor's
//! loop: bytes from the host are fed in, bytes for the proxy go out as Inference messages,
//! answers go to the waiting agents; nothing blocks.
//!
//! Order of things, once the bundle is in and before the evidence is issued and any agent
//! starts (`proxy_principal::connect`, which then claims the proved proxy in the evidence):
//!
//! 1. A fresh nonce from RDSEED/RDRAND; the evidence request goes out.
//! 2. The evidence is checked against the policy's models (`model … { proxy "sha256:…" }`,
//!    and `gpu { measurement … }` where a model requires confidential-GPU evidence:
//!    [`omega_inference_client::policy::expectations`]): it must decode strictly, carry the
//!    nonce and pass one model's expectations. Nothing else is sent before that; a refusal is
//!    logged (`PROXY_SESSION`, deny) and every model stays unpinned (`target-pin` denies each
//!    call). A model the proxy fails beside one it passes (same pin, GPU evidence missing or
//!    not verifying) is logged `PROXY_REFUSED` and its calls are denied `gpu-evidence`.
//! 3. TLS 1.3 pinned to the evidence's key; then `GET /v1/models` for the id to ask for.
//! 4. The session is logged (`PROXY_SESSION` allow, content = the proxy identity, then one
//!    with content = SHA-256 of the whole evidence: binary, model, TLS key, nonce), and
//!    [`InferenceService::identity`] gives the policy the *verified* identity.
//!
//! SECURITY: labelled data goes only to a proxy whose TEE is proven, and no TEE report is
//! verified yet ([`narrow`]): every model loses its clearances for the run, so a `phi`
//! prompt is denied `flow:phi` by the evaluator (unless a rule `declassify`s it: the policy's
//! explicit choice).
//!
//! Agents' calls are answered in order over the one keep-alive connection; they wait in the
//! session's bounded queue. A broken session (refused evidence, a flipped byte, the proxy or
//! the relay gone) fails every waiting call with the reason, is printed and logged
//! (`PROXY_SESSION`, error), and later calls get `Unavailable`: no reconnection yet.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use omega_arch::serial_println;
use omega_inference_client::{
    CallerClock, ChatRequest, Client, ClientError, Event, Message, Phase, Refusal, Session,
};
use omega_kernel::channel::HostText;
use omega_policy::Policy;
use omega_provenance::Decision;
use omega_provenance::entry::lifecycle;
use omega_runtime::{Answer, Ticket};
use omega_wire::Stream;
use sha2::{Digest, Sha256};

use super::log::LogService;
use super::{HostChannel, report_send_failure};
use crate::monitor::DigestPrefix;

/// How long the agents wait at start for the proxy session (TCG: software X25519 and
/// Ed25519; a proxy starting); after it the session goes on and calls made before it is
/// up are decided without a verified identity (`target-pin`).
pub const FIRST_SESSION_MS: u64 = 60_000;

/// The call id of the model listing (agents' calls use their tickets, from 1).
const MODELS_CALL: u64 = 0;

/// The kernel's entropy as rustls's randomness (key shares, the client random).
#[derive(Debug)]
struct KernelRandom;

impl rustls::crypto::SecureRandom for KernelRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        let mut rng = crate::hw::entropy::CpuRng::detect();
        // SECURITY: a failing generator fails the handshake; it never yields weak bytes.
        omega_kernel::entropy::fill(&mut rng, buf).map_err(|_| rustls::crypto::GetRandomFailed)
    }
}

static RANDOM: KernelRandom = KernelRandom;

/// Where the session is, for the agents.
enum State {
    /// The policy names no model: no session.
    Off,
    /// Evidence, handshake or model listing under way.
    Connecting,
    /// Up: chat requests use `served` as the model id.
    Ready { served: String },
    /// Refused or broken: why.
    Down(String),
}

/// The monitor's side of the inference proxy (see the module docs).
pub struct InferenceService {
    session: Option<Session>,
    state: State,
    clock: Arc<CallerClock>,
    /// The verified proxy identity (set once the session is up).
    identity: Option<[u8; 32]>,
    /// Monitor time when the evidence request went out (the handshake's cost is printed).
    started_ms: u64,
    /// The policy's models, in order (the session's candidates), and whether each requires
    /// confidential-GPU evidence.
    models: Vec<(String, bool)>,
    /// Models whose GPU requirement the session's evidence met (set once the session is up).
    gpu_verified: Vec<String>,
    /// Models pinned to this proxy that it fails (`PROXY_REFUSED`), and why.
    refused: Vec<(String, String)>,
}

impl InferenceService {
    /// No session: the policy has no model.
    pub fn off() -> Self {
        Self {
            session: None,
            state: State::Off,
            clock: Arc::new(CallerClock::new(0)),
            identity: None,
            started_ms: 0,
            models: Vec::new(),
            gpu_verified: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// Starts a session for `policy`'s models (none without models): sends the evidence
    /// request with a fresh nonce.
    pub fn start(policy: &Policy<'_>, ch: &mut HostChannel, log: &LogService<'_>) -> Self {
        if policy.models.is_empty() {
            return Self::off();
        }
        let clock = Arc::new(CallerClock::new(log.now_ms() / 1000));
        let client = Client::new(&RANDOM, clock.clone());
        let mut nonce = [0u8; 32];
        let mut rng = crate::hw::entropy::CpuRng::detect();
        if let Err(e) = omega_kernel::entropy::fill(&mut rng, &mut nonce) {
            // The log key came from the same source at boot: a generator that fails now
            // is broken, and a predictable nonce would accept a replayed evidence.
            crate::monitor::fatal("entropy for the proxy nonce", e)
        }
        // The identity pins the proxy binary, the model file, the backend, TEE and GPU; a
        // model's `gpu { … }` requires GPU evidence verified against its reference values;
        // the TEE requirement for labelled data is applied per call ([`narrow`]).
        let candidates = omega_inference_client::policy::expectations(policy);
        let models = policy
            .models
            .iter()
            .zip(&candidates)
            .map(|(m, e)| (m.name.to_string(), e.require_confidential_gpu.is_some()))
            .collect();
        let session = Session::new(&client, nonce, candidates);
        serial_println!(
            "omega: inference: asking the proxy for its evidence (nonce {})",
            DigestPrefix(&nonce)
        );
        let mut s = Self {
            session: Some(session),
            state: State::Connecting,
            clock,
            identity: None,
            started_ms: log.now_ms(),
            models,
            gpu_verified: Vec::new(),
            refused: Vec::new(),
        };
        s.flush(ch);
        s
    }

    /// Still connecting (the evidence, handshake or listing under way).
    pub fn connecting(&self) -> bool {
        matches!(self.state, State::Connecting)
    }

    /// The proxy identity the policy's `target-pin` compares with: the one the evidence
    /// proved (checked against the pins), none without a session that passed.
    pub fn identity(&self) -> Option<[u8; 32]> {
        match self.state {
            State::Ready { .. } => self.identity,
            _ => None,
        }
    }

    /// What the session proved (evidence checked, TLS to its key up), while it is up.
    pub fn verified(&self) -> Option<&omega_inference_client::VerifiedProxy> {
        match self.state {
            State::Ready { .. } => self.session.as_ref().and_then(|s| s.proxy()),
            _ => None,
        }
    }

    /// Why there is no session: `None` while connecting or up.
    pub fn down_reason(&self) -> Option<&str> {
        match &self.state {
            State::Off => Some("the policy names no model"),
            State::Down(why) => Some(why),
            State::Connecting | State::Ready { .. } => None,
        }
    }

    /// Whether the live session's GPU evidence verified against `model`'s GPU requirement
    /// (the policy's `gpu-evidence` check): false without a session, or for a model that
    /// requires none.
    pub fn gpu_verified(&self, model: &str) -> bool {
        matches!(self.state, State::Ready { .. }) && self.gpu_verified.iter().any(|m| m == model)
    }

    /// The models the live session was refused for (the proxy has their pin but fails their
    /// further requirement), and why: the evidence must not claim them.
    pub fn refused_models(&self) -> &[(String, String)] {
        match self.state {
            State::Ready { .. } => &self.refused,
            _ => &[],
        }
    }

    /// Sends an agent's prompt (already allowed by the policy); the answer comes later by
    /// `ticket` (with `stream`, as [`Answer::InferPart`]s while the proxy generates), or
    /// `Err` at once with why it cannot be sent.
    pub fn submit(
        &mut self,
        ch: &mut HostChannel,
        ticket: Ticket,
        prompt: &str,
        max_tokens: u32,
        stream: bool,
    ) -> Result<(), Answer> {
        let served = match &self.state {
            State::Ready { served } => served.clone(),
            State::Off => return Err(Answer::Unavailable("no inference proxy".into())),
            State::Connecting => {
                return Err(Answer::Unavailable(
                    "the inference proxy session is not up yet".into(),
                ));
            }
            State::Down(why) => {
                return Err(Answer::Unavailable(format!(
                    "inference proxy session down: {why}"
                )));
            }
        };
        let Some(session) = self.session.as_mut() else {
            return Err(Answer::Unavailable("no inference proxy".into()));
        };
        let messages = [Message {
            role: "user",
            content: prompt,
        }];
        let req = ChatRequest {
            model: &served,
            messages: &messages,
            max_tokens: Some(max_tokens),
            // Greedy: the same prompt gives the same answer (tests, the demo).
            temperature: Some(0.0),
            seed: None,
        };
        let sent = if stream {
            session.submit_stream(ticket, &req)
        } else {
            session.submit(ticket, &req)
        };
        sent.map_err(|e| Answer::Unavailable(format!("inference proxy: {e}")))?;
        self.flush(ch);
        Ok(())
    }

    /// What the host sent on the Inference stream: bytes from the proxy, or an error (the
    /// relay could not reach it, the stream closed). Returns the answers for agents.
    pub fn on_host(
        &mut self,
        ch: &mut HostChannel,
        log: &mut LogService<'_>,
        reply: Result<Vec<u8>, (u16, String)>,
    ) -> Vec<(Ticket, Answer)> {
        self.clock.set(log.now_ms() / 1000);
        let Some(session) = self.session.as_mut() else {
            return Vec::new();
        };
        match reply {
            Ok(bytes) => session.feed(&bytes),
            Err((code, why)) => session.close(ClientError::Transport(format!(
                "the host reports error {code}: {}",
                HostText(&why)
            ))),
        }
        let answers = self.events(ch, log);
        self.flush(ch);
        answers
    }

    /// Handles the session's events: state changes logged, answers collected.
    fn events(&mut self, ch: &mut HostChannel, log: &mut LogService<'_>) -> Vec<(Ticket, Answer)> {
        let mut answers = Vec::new();
        loop {
            let Some(session) = self.session.as_mut() else {
                return answers;
            };
            let Some(event) = session.poll() else {
                return answers;
            };
            match event {
                Event::Established => {
                    // The listing goes first; agents' calls queue behind it.
                    if let Err(e) = session.submit_models(MODELS_CALL) {
                        self.down(ch, log, &e.to_string(), false, Vec::new(), &mut answers);
                    }
                }
                Event::Models { result, .. } => match result {
                    Ok(ids) if !ids.is_empty() => {
                        let served = ids.into_iter().next().unwrap_or_default();
                        self.up(ch, log, served);
                    }
                    Ok(_) => self.down(
                        ch,
                        log,
                        "the proxy serves no model",
                        false,
                        Vec::new(),
                        &mut answers,
                    ),
                    Err(e) => self.down(ch, log, &e.to_string(), false, Vec::new(), &mut answers),
                },
                Event::Answer { id, result } => answers.push((
                    id,
                    match result {
                        Ok(r) => Answer::Infer { text: r.content },
                        // An API error (oversized prompt, busy proxy): the session lives on.
                        Err(e) => Answer::Failed(format!("inference proxy: {e}")),
                    },
                )),
                // Streamed calls: the text that arrived with this message from the host, in
                // one piece per call (the session merges what came between two polls).
                Event::Delta { id, text } => {
                    answers.push((id, Answer::InferPart { text, end: None }));
                }
                Event::StreamEnd { id, result } => answers.push((
                    id,
                    match result {
                        Ok(end) => Answer::InferPart {
                            text: String::new(),
                            end: Some(end.completion_tokens),
                        },
                        Err(e) => Answer::Failed(format!("inference proxy: {e}")),
                    },
                )),
                Event::Broken { error, waiting } => {
                    let refused = matches!(error, ClientError::Refused(_));
                    self.down(ch, log, &error.to_string(), refused, waiting, &mut answers);
                }
            }
        }
    }

    /// The session passed the evidence, the handshake and the listing.
    fn up(&mut self, ch: &mut HostChannel, log: &mut LogService<'_>, served: String) {
        let Some(proxy) = self.session.as_ref().and_then(|s| s.proxy()) else {
            return;
        };
        let e = &proxy.evidence;
        let evidence_digest = proxy.evidence_sha256;
        serial_println!(
            "omega: inference: proxy verified: identity {} (binary {}, model {} served as {}, backend {}, tee {:?}, gpu {:?}), TLS key {} pinned, evidence {}",
            DigestPrefix(&proxy.identity),
            DigestPrefix(&e.proxy_sha256),
            DigestPrefix(&e.model_sha256),
            HostText(&served),
            HostText(&e.backend),
            e.tee,
            e.gpu,
            DigestPrefix(&Sha256::digest(&proxy.tls_spki).into()),
            DigestPrefix(&evidence_digest),
        );
        serial_println!(
            "omega: inference: session up in {} ms (evidence, TLS 1.3 handshake, model listing)",
            log.now_ms().saturating_sub(self.started_ms)
        );
        // SECURITY: the proxy is a principal of this run: who answered the agents is in the
        // signed log, by the identity the policy pinned and the whole evidence (TLS key and
        // nonce included).
        log.lifecycle(
            ch,
            lifecycle::PROXY_SESSION,
            0,
            Decision::Allow,
            Some(proxy.identity),
            Some(b"identity"),
        );
        log.lifecycle(
            ch,
            lifecycle::PROXY_SESSION,
            0,
            Decision::Allow,
            Some(evidence_digest),
            Some(b"evidence"),
        );
        let identity = proxy.identity;
        self.per_model(ch, log, identity);
        self.identity = Some(identity);
        self.state = State::Ready { served };
    }

    /// The session's verdict for each model: the GPU requirements it met are remembered for
    /// the policy; a model pinned to this proxy that it fails (GPU evidence missing or not
    /// verifying) is logged `PROXY_REFUSED`, and the policy denies its calls.
    fn per_model(&mut self, ch: &mut HostChannel, log: &mut LogService<'_>, identity: [u8; 32]) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        self.gpu_verified.clear();
        self.refused.clear();
        for ((name, gpu), verdict) in self.models.iter().zip(session.verdicts()) {
            match verdict {
                Ok(()) if *gpu => {
                    serial_println!(
                        "omega: inference: model {}: the proxy's GPU evidence verified",
                        HostText(name)
                    );
                    self.gpu_verified.push(name.clone());
                }
                Ok(()) | Err(Refusal::Identity { .. }) => {}
                Err(why) => {
                    serial_println!(
                        "omega: inference: model {} refused: {}",
                        HostText(name),
                        HostText(&why.to_string())
                    );
                    self.refused.push((name.clone(), why.to_string()));
                    let record = cut(&format!("{name}: {why}"));
                    log.lifecycle(
                        ch,
                        lifecycle::PROXY_REFUSED,
                        0,
                        Decision::Deny,
                        Some(identity),
                        Some(record.as_bytes()),
                    );
                }
            }
        }
    }

    /// The session is over: logged, printed, every waiting call failed.
    fn down(
        &mut self,
        ch: &mut HostChannel,
        log: &mut LogService<'_>,
        why: &str,
        refused: bool,
        waiting: Vec<u64>,
        answers: &mut Vec<(Ticket, Answer)>,
    ) {
        // A refusal of the evidence is a decision (deny); anything else a failure, before
        // the session was up or after.
        let (decision, what) = if refused {
            (Decision::Deny, "refused")
        } else if matches!(self.state, State::Ready { .. }) {
            (Decision::Error, "broken")
        } else {
            (Decision::Error, "failed")
        };
        serial_println!(
            "omega: inference: proxy session {what}: {}; {} waiting calls failed",
            HostText(why),
            waiting.iter().filter(|&&id| id != MODELS_CALL).count()
        );
        let name = cut(&format!("{what}: {why}"));
        log.lifecycle(
            ch,
            lifecycle::PROXY_SESSION,
            0,
            decision,
            None,
            Some(name.as_bytes()),
        );
        for id in waiting.into_iter().filter(|&id| id != MODELS_CALL) {
            answers.push((
                id,
                Answer::Failed(format!("inference proxy session {what}: {why}")),
            ));
        }
        self.state = State::Down(why.to_string());
        self.identity = None;
        self.gpu_verified.clear();
        if let Some(s) = self.session.as_mut()
            && s.phase() != Phase::Broken
        {
            s.close(ClientError::Broken);
        }
    }

    /// Sends what the session has for the proxy as one Inference message.
    fn flush(&mut self, ch: &mut HostChannel) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let out = session.take_outgoing();
        if out.is_empty() {
            return;
        }
        if let Err(e) = ch.send(Stream::Inference, &out) {
            report_send_failure("bytes for the inference proxy", &e);
            session.close(ClientError::Transport(
                "sending on the channel failed".into(),
            ));
        }
    }
}

/// `text` cut to a log entry's name (`MAX_NAME` bytes, at a character boundary).
fn cut(text: &str) -> String {
    let mut end = text.len().min(omega_provenance::entry::MAX_NAME);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    String::from(&text[..end])
}

/// The policy the agents run under, given the proxy session: every model's clearances are
/// dropped unless the proxy's TEE is proven, which nothing does yet (no TEE report is
/// verified; verified GPU evidence proves the GPU, not that the proxy's host cannot read the
/// prompts), so no labelled data goes to any proxy. A rule's `declassify`
/// still lets named labels through: the policy's explicit choice.
pub fn narrow(policy: &'static Policy<'static>) -> &'static Policy<'static> {
    if policy.models.iter().all(|m| m.cleared == 0) {
        return policy;
    }
    let mut p = policy.clone();
    for m in &mut p.models {
        if m.cleared != 0 {
            serial_println!(
                "omega: inference: model {} loses its clearances for this run (no proxy TEE is proven)",
                HostText(m.name)
            );
        }
        m.cleared = 0;
    }
    Box::leak(Box::new(p))
}
