//! [`Channel`]: one end of a peer channel as an event-loop state machine. Feed it the relay's
//! bytes, take its output bytes and events; the first error ends it for good.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use zeroize::Zeroizing;

use crate::handshake::{Identity, Initiator, PeerInfo, Responder, ResponderWaiting};
use crate::message::Deframer;
use crate::record::{Content, Session};
use crate::{MAX_BUFFERED, PeerAuthority, PeerError, PeerName};

/// What the channel has to say to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake finished: who the peer is.
    Established(PeerInfo),
    /// An application payload from the peer.
    Message(Vec<u8>),
    /// The peer closed the session (authenticated).
    Closed,
}

enum State {
    AwaitInit(Zeroizing<[u8; 32]>),
    AwaitResp(Initiator),
    AwaitFinish(ResponderWaiting),
    Open(Session),
    Done,
    Failed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::AwaitInit(_) => "awaiting Init",
            State::AwaitResp(_) => "awaiting Resp",
            State::AwaitFinish(_) => "awaiting Finish",
            State::Open(_) => "open",
            State::Done => "closed",
            State::Failed => "failed",
        }
    }
}

/// One end of a channel.
pub struct Channel<A: PeerAuthority> {
    identity: Identity,
    authority: A,
    state: State,
    deframer: Deframer,
    out: Vec<u8>,
    events: VecDeque<Event>,
    event_bytes: usize,
    peer: Option<PeerInfo>,
}

impl<A: PeerAuthority> Channel<A> {
    /// The connecting end: queues `Init` at once. `expected`: the node meant.
    pub fn initiator(
        identity: Identity,
        authority: A,
        ephemeral_seed: [u8; 32],
        expected: Option<PeerName>,
    ) -> Result<Self, PeerError> {
        let (init, bytes) = Initiator::start(ephemeral_seed, expected)?;
        let mut c = Self::with_state(identity, authority, State::AwaitResp(init));
        c.out = bytes;
        Ok(c)
    }

    /// The listening end: waits for `Init`, answers with this ephemeral secret.
    pub fn responder(
        identity: Identity,
        authority: A,
        ephemeral_seed: [u8; 32],
    ) -> Result<Self, PeerError> {
        if ephemeral_seed == [0; 32] {
            return Err(PeerError::BadLocalKey);
        }
        Ok(Self::with_state(
            identity,
            authority,
            State::AwaitInit(Zeroizing::new(ephemeral_seed)),
        ))
    }

    fn with_state(identity: Identity, authority: A, state: State) -> Self {
        Channel {
            identity,
            authority,
            state,
            deframer: Deframer::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            event_bytes: 0,
            peer: None,
        }
    }

    /// The peer, once established.
    pub fn peer(&self) -> Option<&PeerInfo> {
        self.peer.as_ref()
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// This end's identity (its public key, its credential).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Whether bytes wait for the relay.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Bytes for the relay (taken: the next call returns only newer ones).
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.out)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front()?;
        if let Event::Message(m) = &e {
            self.event_bytes = self.event_bytes.saturating_sub(m.len());
        }
        Some(e)
    }

    /// Relay bytes in. Processes every whole message; on the first error the channel fails
    /// for good and says why (later calls answer [`PeerError::Failed`]).
    pub fn feed(&mut self, bytes: &[u8], now_s: u64) -> Result<(), PeerError> {
        if matches!(self.state, State::Failed) {
            return Err(PeerError::Failed);
        }
        let r = self.feed_inner(bytes, now_s);
        if r.is_err() {
            self.state = State::Failed;
            self.out.clear();
        }
        r
    }

    fn feed_inner(&mut self, bytes: &[u8], now_s: u64) -> Result<(), PeerError> {
        self.deframer.push(bytes)?;
        while let Some(msg) = self.deframer.next_message()? {
            let state = core::mem::replace(&mut self.state, State::Failed);
            self.state = match state {
                State::AwaitInit(seed) => {
                    let (waiting, resp) = Responder::on_init(&self.identity, *seed, &msg)?;
                    self.out.extend_from_slice(&resp);
                    State::AwaitFinish(waiting)
                }
                State::AwaitResp(init) => {
                    let (est, finish) =
                        init.on_resp(&self.identity, &msg, &self.authority, now_s)?;
                    self.out.extend_from_slice(&finish);
                    self.established(est.peer);
                    State::Open(est.session)
                }
                State::AwaitFinish(waiting) => {
                    let est = waiting.on_finish(&msg, &self.authority, now_s)?;
                    self.established(est.peer);
                    State::Open(est.session)
                }
                State::Open(mut session) => match session.open(&msg)? {
                    Content::Data(m) => {
                        // SECURITY: bounded: an owner that stops polling stops the channel.
                        self.event_bytes = self.event_bytes.saturating_add(m.len());
                        if self.event_bytes > MAX_BUFFERED {
                            return Err(PeerError::TooLarge("unread messages"));
                        }
                        self.events.push_back(Event::Message(m));
                        State::Open(session)
                    }
                    Content::Close => {
                        self.events.push_back(Event::Closed);
                        // Answer with our own close unless we sent one already.
                        if let Ok(c) = session.seal_close() {
                            self.out.extend_from_slice(&c);
                        }
                        State::Done
                    }
                },
                State::Done => {
                    return Err(PeerError::Unexpected {
                        got: msg.kind,
                        state: State::Done.name(),
                    });
                }
                State::Failed => return Err(PeerError::Failed),
            };
        }
        Ok(())
    }

    fn established(&mut self, peer: PeerInfo) {
        self.peer = Some(peer.clone());
        self.events.push_back(Event::Established(peer));
    }

    /// Queues an application payload (at most [`crate::MAX_PLAINTEXT`] bytes).
    pub fn send(&mut self, payload: &[u8]) -> Result<(), PeerError> {
        match &mut self.state {
            State::Open(s) => {
                let r = s.seal(payload)?;
                self.out.extend_from_slice(&r);
                Ok(())
            }
            State::Failed => Err(PeerError::Failed),
            State::Done => Err(PeerError::Closed),
            other => Err(PeerError::Unexpected {
                got: crate::Kind::Record,
                state: other.name(),
            }),
        }
    }

    /// Queues the close record. The session ends when the peer's close arrives.
    pub fn close(&mut self) -> Result<(), PeerError> {
        match &mut self.state {
            State::Open(s) => {
                let r = s.seal_close()?;
                self.out.extend_from_slice(&r);
                Ok(())
            }
            State::Failed => Err(PeerError::Failed),
            _ => Err(PeerError::Closed),
        }
    }

    /// The relay's stream ended. `Ok` only after the peer's authenticated close; otherwise
    /// the stream was cut ([`PeerError::Truncated`]) and the channel fails.
    pub fn transport_ended(&mut self) -> Result<(), PeerError> {
        match self.state {
            State::Done => Ok(()),
            State::Failed => Err(PeerError::Failed),
            _ => {
                self.state = State::Failed;
                Err(PeerError::Truncated)
            }
        }
    }
}
