//! One relay per served stream, each on its own thread, fed by the demux through a queue:
//! the reader never blocks on a backend, and a relay whose backend is slow stops returning
//! credit, so the guest blocks on that stream only.
//!
//! [`Relay`] is the loop every relay shares; [`Messages`] adds bounded reassembly for
//! relays that act on whole messages (Tools, Echo).

pub(crate) mod echo;
pub(crate) mod inference;
pub(crate) mod link;
pub(crate) mod log;
pub(crate) mod peer;
pub(crate) mod tcp;
pub(crate) mod tools;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};

use omega_wire::{Frame, Header, Reassembler, Stream, WireError, msg::code};

use super::SessionEvent;
use super::send::Shared;

/// What the demux hands a relay.
pub(crate) enum Input {
    /// A Data frame from the guest, within its credit. `gap`: frames before it were lost
    /// (the demux has reported it).
    Data {
        header: Header,
        payload: Vec<u8>,
        gap: bool,
    },
    /// The guest closed the stream.
    Close,
    /// Log only: a file stored beside the log once every byte received before it is
    /// stored, then the event.
    File(Stored, Vec<u8>, SessionEvent),
}

/// Where a file kept beside the log goes.
pub(crate) enum Stored {
    /// `log.vkey`, `checkpoint.note` in the log directory.
    Beside(&'static str),
    /// `evidence/<file name>` (already checked by `evidence_file_name`).
    Evidence(String),
    /// `cards/<file name>` (already checked by `card_file_name`).
    Card(String),
}

/// A relay's queue, with room to put back an input it looked at but did not take.
pub(crate) struct Inbox {
    rx: Receiver<Input>,
    next: Option<Input>,
}

impl Inbox {
    /// The next input; None once the demux has gone.
    pub(crate) fn recv(&mut self) -> Option<Input> {
        self.next.take().or_else(|| self.rx.recv().ok())
    }

    /// The next input if one is queued now.
    pub(crate) fn try_recv(&mut self) -> Option<Input> {
        self.next.take().or_else(|| self.rx.try_recv().ok())
    }

    pub(crate) fn put_back(&mut self, input: Input) {
        debug_assert!(self.next.is_none());
        self.next = Some(input);
    }
}

/// The backend of one stream.
pub(crate) trait Relay: Send + 'static {
    /// The stream it serves.
    fn stream(&self) -> Stream;

    /// Handles one input (and may take more from `inbox` to batch them). `Break` ends the
    /// relay (the channel is gone).
    fn on_input(&mut self, sh: &Shared, input: Input, inbox: &mut Inbox) -> ControlFlow<()>;

    /// Runs when the relay ends.
    fn finish(self, _sh: &Shared)
    where
        Self: Sized,
    {
    }
}

/// Why the guest's data on `stream` is refused when its relay is not configured.
pub(crate) fn unserved(stream: Stream) -> &'static str {
    match stream {
        Stream::Log => "no log storage configured (--log-dir)",
        Stream::Inference => "no inference proxy configured (--proxy)",
        Stream::Tools => "no tool gateway configured (--tool-gateway)",
        Stream::Peer => "no peer link configured (--peer-listen / --peer-connect)",
        Stream::Fleet => "no fleet coordinator relay configured (--fleet-connect)",
        _ => "stream not served by this host",
    }
}

/// A running relay: its queue and its thread.
pub(crate) struct RelayHandle {
    tx: Sender<Input>,
    thread: JoinHandle<()>,
}

impl RelayHandle {
    pub(crate) fn send(&self, input: Input) {
        // A relay that ended has nothing left to serve; its input is dropped.
        let _ = self.tx.send(input);
    }

    /// Ends the relay (no more input) and waits for it.
    pub(crate) fn join(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// Starts `relay` on its own thread.
pub(crate) fn spawn<R: Relay>(sh: &Arc<Shared>, mut relay: R) -> RelayHandle {
    let (tx, rx) = mpsc::channel();
    let sh = Arc::clone(sh);
    let thread = thread::Builder::new()
        .name(format!("omega-{:?}", relay.stream()).to_lowercase())
        .spawn(move || {
            let mut inbox = Inbox { rx, next: None };
            while let Some(input) = inbox.recv() {
                if relay.on_input(&sh, input, &mut inbox).is_break() {
                    break;
                }
            }
            relay.finish(&sh);
        })
        .expect("spawn a relay thread");
    RelayHandle { tx, thread }
}

/// A relay that acts on whole messages from the guest.
pub(crate) trait MessageRelay: Send + 'static {
    const STREAM: Stream;
    /// Longest message it takes.
    const MAX_MESSAGE: usize;
    /// The error text for a longer one.
    const TOO_LARGE: &'static str;

    fn on_message(&mut self, sh: &Shared, message: Vec<u8>) -> ControlFlow<()>;

    fn finish(self, _sh: &Shared)
    where
        Self: Sized,
    {
    }
}

/// Reassembles a [`MessageRelay`]'s messages with `omega-wire`'s [`Reassembler`]. Credit
/// goes back per fragment while the message is buffered (bounded by `MAX_MESSAGE`), and
/// stops while `on_message` waits on the backend.
pub(crate) struct Messages<M> {
    relay: M,
    reassembler: Reassembler,
}

impl<M: MessageRelay> Messages<M> {
    pub(crate) fn new(relay: M) -> Self {
        Messages {
            relay,
            reassembler: Reassembler::new(M::MAX_MESSAGE),
        }
    }
}

impl<M: MessageRelay> Relay for Messages<M> {
    fn stream(&self) -> Stream {
        M::STREAM
    }

    fn on_input(&mut self, sh: &Shared, input: Input, _: &mut Inbox) -> ControlFlow<()> {
        let Input::Data {
            header, payload, ..
        } = input
        else {
            return ControlFlow::Continue(());
        };
        sh.consumed(M::STREAM, payload.len());
        match self.reassembler.push(&Frame {
            header,
            payload: &payload,
        }) {
            Ok(Some((_, message))) => self.relay.on_message(sh, message),
            Ok(None) => ControlFlow::Continue(()),
            Err(WireError::MessageTooLarge(_)) => {
                sh.send_error(M::STREAM, code::TOO_LARGE, M::TOO_LARGE);
                ControlFlow::Continue(())
            }
            // A sequence gap: the demux reported it; the partial message is dropped.
            Err(_) => ControlFlow::Continue(()),
        }
    }

    fn finish(self, sh: &Shared) {
        self.relay.finish(sh);
    }
}
