//! The client as a state machine without I/O: bytes from the proxy go in with
//! [`Session::feed`], bytes for the proxy come out with [`Session::take_outgoing`], answers
//! come out of [`Session::poll`]. The monitor drives it from its event loop over the
//! channel's Inference stream (it never blocks); [`crate::Client::connect`] drives it over a
//! blocking [`crate::Transport`] for hosts. Same three steps as the crate's overview:
//! evidence (checked before anything else is sent), TLS 1.3 pinned to the evidence's key,
//! then one HTTP/1.1 request at a time on the keep-alive connection.
//!
//! Calls submitted before the handshake is done wait in a bounded queue; nothing of them
//! leaves before the evidence passed and TLS is up. After any error the session is
//! [`Phase::Broken`]: every waiting call is named in the one [`Event::Broken`] and later
//! submissions are refused.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use omega_proxy_evidence::NONCE_LEN;
use omega_proxy_evidence::exchange::{self, RESPONSE_HEADER_LEN};
use rustls::client::{Resumption, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
use rustls::{ClientConfig, version::TLS13};

use crate::check::{Expectations, Refusal, VerifiedProxy, check};
use crate::stream::{StreamEnd, StreamParser};
use crate::{
    ChatRequest, ChatResponse, Client, ClientError, HttpError, INCOMING_TLS, MAX_REQUEST,
    MAX_STEPS, PLAINTEXT_PIECE, SERVER_NAME, chat_body, encode_into, encrypt_into, http,
    parse_answer, verifier,
};

/// Calls waiting (queued or in flight) at most; one more is refused with
/// [`ClientError::QueueFull`].
pub const MAX_QUEUED: usize = 256;

/// A caller's name for one call, echoed in its [`Event::Answer`].
pub type CallId = u64;

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the proxy's evidence (the request with the nonce is queued to send).
    Evidence,
    /// The evidence passed; TLS handshake in progress.
    Handshake,
    /// TLS is up: calls are sent one at a time.
    Ready,
    /// Failed or closed: unusable.
    Broken,
}

/// What happened, in order.
#[derive(Debug)]
pub enum Event {
    /// The evidence passed and the TLS handshake with its key is done: the proxy is who the
    /// evidence says (see [`Session::proxy`]).
    Established,
    /// The answer to one call (an API error, e.g. a 404, is an answer: the session lives on).
    Answer {
        id: CallId,
        result: Result<ChatResponse, ClientError>,
    },
    /// Text of a streamed call ([`Session::submit_stream`]): whatever arrived since the last
    /// event of this call, in one piece (consecutive pieces are merged while not polled).
    Delta { id: CallId, text: String },
    /// The end of a streamed call: its usage, or the proxy's API error (the session lives
    /// on). Every piece of its text came before, as [`Event::Delta`].
    StreamEnd {
        id: CallId,
        result: Result<StreamEnd, ClientError>,
    },
    /// The answer to [`Session::submit_models`]: the model ids the proxy serves.
    Models {
        id: CallId,
        result: Result<Vec<String>, ClientError>,
    },
    /// The session failed (refused evidence, TLS error, a flipped byte, the proxy closed):
    /// `waiting` are the calls that will never be answered, oldest first.
    Broken {
        error: ClientError,
        waiting: Vec<CallId>,
    },
}

/// What a call asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    ChatStream,
    Models,
}

/// How the response of the call in flight is parsed.
#[derive(Debug)]
enum Parser {
    Whole(http::ResponseParser),
    Stream(StreamParser),
}

impl Parser {
    fn for_kind(kind: Kind) -> Self {
        match kind {
            Kind::ChatStream => Parser::Stream(StreamParser::new()),
            Kind::Chat | Kind::Models => Parser::Whole(http::ResponseParser::new()),
        }
    }
}

/// The most model ids kept from a `/v1/models` answer, and the longest id.
const MAX_MODELS: usize = 16;
const MAX_MODEL_ID: usize = 256;

fn parse_models(resp: &http::Response) -> Result<Vec<String>, ClientError> {
    #[derive(serde::Deserialize)]
    struct List {
        data: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        id: String,
    }
    if resp.status != 200 {
        return Err(ClientError::Api {
            status: resp.status,
            message: String::from("GET /v1/models failed"),
        });
    }
    let list: List =
        serde_json::from_slice(&resp.body).map_err(|_| ClientError::Answer("not a model list"))?;
    Ok(list
        .data
        .into_iter()
        .filter(|e| e.id.len() <= MAX_MODEL_ID)
        .map(|e| e.id)
        .take(MAX_MODELS)
        .collect())
}

/// One evidence-checked TLS session with the proxy, without I/O.
pub struct Session {
    client: Client,
    phase: Phase,
    nonce: [u8; NONCE_LEN],
    candidates: Vec<Expectations>,
    /// Once the evidence passed: each candidate's verdict, in order.
    verdicts: Vec<Result<(), Refusal>>,
    /// Evidence phase: the response header and evidence received so far.
    evidence: Vec<u8>,
    tls: Option<UnbufferedClientConnection>,
    incoming: Box<[u8]>,
    in_used: usize,
    outgoing: Vec<u8>,
    proxy: Option<VerifiedProxy>,
    /// Calls not yet sent: id, kind and the HTTP request's bytes.
    queue: VecDeque<(CallId, Kind, Vec<u8>)>,
    /// The call whose response is being received.
    in_flight: Option<(CallId, Kind, Parser)>,
    /// The proxy said `Connection: close`: no further call can be sent.
    closing: bool,
    events: VecDeque<Event>,
}

impl Session {
    /// A session that sends the evidence request with `nonce` (drawn fresh by the caller for
    /// this session) and accepts the proxy whose evidence passes [`check`] against one of
    /// `candidates` (the policy's models: the one whose pinned identity the evidence has).
    pub fn new(client: &Client, nonce: [u8; NONCE_LEN], candidates: Vec<Expectations>) -> Self {
        Self {
            client: client.clone(),
            phase: Phase::Evidence,
            nonce,
            candidates,
            verdicts: Vec::new(),
            evidence: Vec::new(),
            tls: None,
            incoming: vec![0u8; INCOMING_TLS].into_boxed_slice(),
            in_used: 0,
            outgoing: exchange::request(&nonce).to_vec(),
            proxy: None,
            queue: VecDeque::new(),
            in_flight: None,
            closing: false,
            events: VecDeque::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The checked evidence, once it passed.
    pub fn proxy(&self) -> Option<&VerifiedProxy> {
        self.proxy.as_ref()
    }

    /// Once the evidence passed (for at least one candidate): each candidate's verdict, in
    /// the order given to [`Session::new`]. A candidate refused for more than its identity
    /// (its GPU requirement) must not be served by this session: the caller enforces that
    /// per call (the monitor's policy denies `gpu-evidence`).
    pub fn verdicts(&self) -> &[Result<(), Refusal>] {
        &self.verdicts
    }

    /// Bytes to send to the proxy, in order (empty when there are none).
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.outgoing)
    }

    /// The next event, if any.
    pub fn poll(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Calls submitted and not yet answered.
    pub fn waiting(&self) -> usize {
        self.queue.len() + usize::from(self.in_flight.is_some())
    }

    /// Queues one chat completion; it is sent once TLS is up and the calls before it are
    /// answered. Refused (and nothing queued) on a broken or closing session, a full queue
    /// or an oversized request.
    pub fn submit(&mut self, id: CallId, req: &ChatRequest<'_>) -> Result<(), ClientError> {
        self.submit_chat(id, req, Kind::Chat)
    }

    /// Queues one streamed chat completion: its text comes as [`Event::Delta`]s as the
    /// proxy generates it, then one [`Event::StreamEnd`]. Same queue and refusals as
    /// [`Session::submit`].
    pub fn submit_stream(&mut self, id: CallId, req: &ChatRequest<'_>) -> Result<(), ClientError> {
        self.submit_chat(id, req, Kind::ChatStream)
    }

    fn submit_chat(
        &mut self,
        id: CallId,
        req: &ChatRequest<'_>,
        kind: Kind,
    ) -> Result<(), ClientError> {
        if self.phase == Phase::Broken || self.closing {
            return Err(ClientError::Broken);
        }
        if self.waiting() >= MAX_QUEUED {
            return Err(ClientError::QueueFull);
        }
        let body = chat_body(req, kind == Kind::ChatStream);
        if body.len() > MAX_REQUEST {
            return Err(ClientError::RequestTooLarge(body.len()));
        }
        self.queue.push_back((
            id,
            kind,
            http::post_json("/v1/chat/completions", SERVER_NAME, &body),
        ));
        if self.phase == Phase::Ready {
            self.step();
        }
        Ok(())
    }

    /// Queues `GET /v1/models`: its answer is an [`Event::Models`] with the ids the proxy
    /// serves (the name a chat request must use; the evidence names the model by its
    /// digest, not its id).
    pub fn submit_models(&mut self, id: CallId) -> Result<(), ClientError> {
        if self.phase == Phase::Broken || self.closing {
            return Err(ClientError::Broken);
        }
        if self.waiting() >= MAX_QUEUED {
            return Err(ClientError::QueueFull);
        }
        self.queue
            .push_back((id, Kind::Models, http::get("/v1/models", SERVER_NAME)));
        if self.phase == Phase::Ready {
            self.step();
        }
        Ok(())
    }

    /// Bytes received from the proxy.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.phase != Phase::Broken {
            if self.phase == Phase::Evidence {
                let used = self.feed_evidence(bytes);
                bytes = &bytes[used..];
                continue;
            }
            let free = &mut self.incoming[self.in_used..];
            if free.is_empty() {
                // SECURITY: a record larger than TLS allows never fits; refuse, do not grow.
                self.fail(ClientError::TlsState("TLS record larger than the buffer"));
                return;
            }
            let n = free.len().min(bytes.len());
            free[..n].copy_from_slice(&bytes[..n]);
            self.in_used += n;
            bytes = &bytes[n..];
            self.step();
        }
    }

    /// The stream to the proxy closed (or the relay failed): the session ends.
    pub fn close(&mut self, error: ClientError) {
        if self.phase != Phase::Broken {
            self.fail(error);
        }
    }

    /// Takes what the evidence step needs of `bytes`; returns how many it took.
    fn feed_evidence(&mut self, bytes: &[u8]) -> usize {
        let need = match self.evidence_len() {
            Ok(Some(len)) => RESPONSE_HEADER_LEN + len,
            Ok(None) => RESPONSE_HEADER_LEN,
            Err(e) => {
                self.fail(e);
                return bytes.len();
            }
        };
        let n = need.saturating_sub(self.evidence.len()).min(bytes.len());
        self.evidence.extend_from_slice(&bytes[..n]);
        match self.evidence_len() {
            Err(e) => self.fail(e),
            Ok(Some(len)) if self.evidence.len() == RESPONSE_HEADER_LEN + len => {
                let evidence = core::mem::take(&mut self.evidence);
                if let Err(e) = self.start_tls(&evidence[RESPONSE_HEADER_LEN..]) {
                    self.fail(e);
                }
            }
            Ok(_) => {}
        }
        n
    }

    /// The evidence's length once the header is in (checked against `MAX_ENCODED` before
    /// anything is allocated for it).
    fn evidence_len(&self) -> Result<Option<usize>, ClientError> {
        let Some(header) = self.evidence.get(..RESPONSE_HEADER_LEN) else {
            return Ok(None);
        };
        let mut h = [0u8; RESPONSE_HEADER_LEN];
        h.copy_from_slice(header);
        exchange::parse_response_header(&h)
            .map(Some)
            .map_err(ClientError::Exchange)
    }

    /// Checks the evidence, then starts TLS 1.3 to exactly its key.
    fn start_tls(&mut self, evidence: &[u8]) -> Result<(), ClientError> {
        let (proxy, verdicts) = check_each(evidence, &self.nonce, &self.candidates);
        let proxy = proxy.map_err(ClientError::Refused)?;
        self.verdicts = verdicts;
        let mut config = ClientConfig::builder_with_details(
            self.client.provider.clone(),
            self.client.clock.clone(),
        )
        .with_protocol_versions(&[&TLS13])
        .map_err(ClientError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier::PinnedKey::new(
            proxy.tls_spki.clone(),
        )))
        .with_no_client_auth();
        // SECURITY: no resumption — a resumed session would skip the key check against the
        // fresh evidence of this session.
        config.resumption = Resumption::disabled();
        let name = ServerName::try_from(SERVER_NAME)
            .map_err(|_| ClientError::TlsState("server name"))?
            .to_owned();
        self.tls = Some(
            UnbufferedClientConnection::new(Arc::new(config), name).map_err(ClientError::Tls)?,
        );
        self.proxy = Some(proxy);
        self.phase = Phase::Handshake;
        self.step();
        Ok(())
    }

    /// Runs the TLS state machine as far as it goes without more input.
    fn step(&mut self) {
        if let Err(e) = self.step_inner() {
            self.fail(e);
        }
    }

    fn step_inner(&mut self) -> Result<(), ClientError> {
        for _ in 0..MAX_STEPS {
            let Some(tls) = self.tls.as_mut() else {
                return Ok(());
            };
            let UnbufferedStatus { mut discard, state } =
                tls.process_tls_records(&mut self.incoming[..self.in_used]);
            let mut wait = false;
            match state.map_err(ClientError::Tls)? {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(ClientError::Tls)?;
                        discard += record.discard;
                        // SECURITY: data nobody asked for is a protocol error, not input.
                        let Some((id, kind, parser)) = self.in_flight.as_mut() else {
                            return Err(ClientError::Http(HttpError::Trailing));
                        };
                        let (id, kind) = (*id, *kind);
                        match parser {
                            Parser::Whole(parser) => {
                                if let Some(response) =
                                    parser.feed(record.payload).map_err(ClientError::Http)?
                                {
                                    self.in_flight = None;
                                    if response.close {
                                        self.closing = true;
                                    }
                                    self.events.push_back(match kind {
                                        Kind::Models => Event::Models {
                                            id,
                                            result: parse_models(&response),
                                        },
                                        Kind::Chat | Kind::ChatStream => Event::Answer {
                                            id,
                                            result: parse_answer(&response),
                                        },
                                    });
                                }
                            }
                            Parser::Stream(parser) => {
                                let mut text = String::new();
                                let end = parser.feed(record.payload, &mut text)?;
                                let close = parser.close;
                                push_delta(&mut self.events, id, text);
                                if let Some(result) = end {
                                    self.in_flight = None;
                                    if close {
                                        self.closing = true;
                                    }
                                    self.events.push_back(Event::StreamEnd { id, result });
                                }
                            }
                        }
                    }
                }
                ConnectionState::EncodeTlsData(mut state) => {
                    encode_into(&mut self.outgoing, |buf| state.encode(buf))?;
                }
                ConnectionState::TransmitTlsData(state) => {
                    // The bytes are in `outgoing`, in order, for the caller to send.
                    state.done();
                }
                ConnectionState::BlockedHandshake => wait = true,
                ConnectionState::WriteTraffic(mut writer) => {
                    if self.phase == Phase::Handshake {
                        self.phase = Phase::Ready;
                        self.events.push_back(Event::Established);
                    }
                    if self.in_flight.is_none()
                        && !self.closing
                        && let Some((id, kind, request)) = self.queue.pop_front()
                    {
                        for piece in request.chunks(PLAINTEXT_PIECE) {
                            let mut record = Vec::new();
                            encrypt_into(&mut record, |buf| writer.encrypt(piece, buf))?;
                            self.outgoing.extend_from_slice(&record);
                        }
                        self.in_flight = Some((id, kind, Parser::for_kind(kind)));
                    } else {
                        wait = true;
                    }
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    return Err(ClientError::Closed);
                }
                _ => return Err(ClientError::TlsState("unexpected state")),
            }
            if discard > 0 {
                // rustls never discards more than it was given.
                let discard = discard.min(self.in_used);
                self.incoming.copy_within(discard..self.in_used, 0);
                self.in_used -= discard;
            }
            if wait {
                if self.closing && self.in_flight.is_none() {
                    // The proxy ends the connection after this answer: the calls still
                    // queued will not be sent on it.
                    return Err(ClientError::Closed);
                }
                return Ok(());
            }
        }
        Err(ClientError::TlsState("too many steps"))
    }

    /// Ends the session: one [`Event::Broken`] naming every call still waiting.
    fn fail(&mut self, error: ClientError) {
        self.phase = Phase::Broken;
        self.tls = None;
        self.outgoing.clear();
        let mut waiting: Vec<CallId> = self
            .in_flight
            .take()
            .map(|(id, ..)| id)
            .into_iter()
            .collect();
        waiting.extend(self.queue.drain(..).map(|(id, ..)| id));
        self.events.push_back(Event::Broken { error, waiting });
    }
}

/// Text for streamed call `id`: merged into the last event when that is text of the same
/// call (the caller had not polled in between: one crossing, not one per token).
fn push_delta(events: &mut VecDeque<Event>, id: CallId, text: String) {
    if text.is_empty() {
        return;
    }
    if let Some(Event::Delta { id: last, text: t }) = events.back_mut()
        && *last == id
    {
        t.push_str(&text);
        return;
    }
    events.push_back(Event::Delta { id, text });
}

/// [`check`] against every candidate: the proxy as the first candidate that passed checked
/// it, and each candidate's verdict. Without one that passed: the refusal of the first
/// candidate refused for more than its identity (the proxy is that model's, but fails its
/// other requirements, or the evidence is bad whatever the candidate), else the first
/// identity mismatch, or [`Refusal::Identity`] with no candidate.
///
/// SECURITY: one passing candidate admits the proxy. Candidates pinning the same identity
/// with different requirements (a model that requires GPU evidence beside one that does
/// not) are told apart by their verdicts, which the caller must enforce per model.
pub fn check_each(
    bytes: &[u8],
    nonce: &[u8; NONCE_LEN],
    candidates: &[Expectations],
) -> (Result<VerifiedProxy, Refusal>, Vec<Result<(), Refusal>>) {
    let mut passed = None;
    let mut verdicts = Vec::with_capacity(candidates.len());
    for expect in candidates {
        match check(bytes, nonce, expect) {
            Ok(v) => {
                passed.get_or_insert(v);
                verdicts.push(Ok(()));
            }
            Err(e) => verdicts.push(Err(e)),
        }
    }
    let proxy = match passed {
        Some(v) => Ok(v),
        None => Err(refusal_of(bytes, nonce, &verdicts)),
    };
    (proxy, verdicts)
}

/// [`check_each`]'s proxy alone (see there for which refusal is returned).
pub fn check_candidates(
    bytes: &[u8],
    nonce: &[u8; NONCE_LEN],
    candidates: &[Expectations],
) -> Result<VerifiedProxy, Refusal> {
    check_each(bytes, nonce, candidates).0
}

/// The refusal to report when no candidate passed.
fn refusal_of(bytes: &[u8], nonce: &[u8; NONCE_LEN], verdicts: &[Result<(), Refusal>]) -> Refusal {
    let refusals = || verdicts.iter().filter_map(|v| v.as_ref().err());
    let first = refusals()
        .find(|e| !matches!(e, Refusal::Identity { .. }))
        .or_else(|| refusals().next())
        .cloned();
    match first {
        Some(e) => e,
        // No model to serve: whatever the evidence, no pin can match.
        None => {
            let none = Expectations::from_policy([0; 32], false);
            check(bytes, nonce, &none)
                .err()
                .unwrap_or(Refusal::Identity {
                    expected: [0; 32],
                    got: [0; 32],
                })
        }
    }
}
