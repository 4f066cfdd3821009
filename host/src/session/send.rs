//! What the session threads share, and the send path: every frame to the guest goes
//! through [`Shared`], data only against the guest's credit, one message per stream at a time.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use omega_bundle::msg::{self as bundle_msg, Message};
use omega_wire::{Credits, Encoder, MAX_FRAME, PerStream, Stream, WireError, msg};
use tracing::debug;

use super::relay::echo::EchoReplies;
use super::{SessionError, SessionEvent};
use crate::bundle::Bundle;

struct Out {
    w: Box<dyn Write + Send>,
    enc: Encoder,
    buf: Vec<u8>,
}

pub(crate) struct Shared {
    out: Mutex<Out>,
    /// None until the handshake.
    pub(crate) credits: Mutex<Option<Credits>>,
    pub(crate) credit_cv: Condvar,
    /// Held while one message is sent on a stream, so messages never interleave.
    stream_send: PerStream<Mutex<()>>,
    closed: AtomicBool,
    events: Mutex<Vec<SessionEvent>>,
    events_cv: Condvar,
    pub(crate) echo: EchoReplies,
    /// Shuts the underlying stream down (e.g. a socket), so the reader ends too.
    closer: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// Locks, ignoring poisoning: a panicked relay must not take the session down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn new(writer: Box<dyn Write + Send>, echo_enabled: bool) -> Shared {
        Shared {
            out: Mutex::new(Out {
                w: writer,
                enc: Encoder::new(),
                buf: vec![0; MAX_FRAME],
            }),
            credits: Mutex::new(None),
            credit_cv: Condvar::new(),
            stream_send: Default::default(),
            closed: AtomicBool::new(false),
            events: Mutex::new(Vec::new()),
            events_cv: Condvar::new(),
            echo: EchoReplies::new(echo_enabled),
            closer: Mutex::new(None),
        }
    }

    pub(crate) fn event(&self, e: SessionEvent) {
        lock(&self.events).push(e);
        self.events_cv.notify_all();
    }

    pub(crate) fn events(&self) -> Vec<SessionEvent> {
        lock(&self.events).clone()
    }

    /// Waits until an event matching `pred` has happened (at any time) and returns it.
    pub(crate) fn wait_event(
        &self,
        pred: impl Fn(&SessionEvent) -> bool,
        timeout: Duration,
    ) -> Option<SessionEvent> {
        let deadline = std::time::Instant::now() + timeout;
        let mut ev = lock(&self.events);
        loop {
            if let Some(e) = ev.iter().find(|e| pred(e)) {
                return Some(e.clone());
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return None;
            }
            ev = self
                .events_cv
                .wait_timeout(ev, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.credit_cv.notify_all();
        self.echo.wake();
    }

    pub(crate) fn set_closer(&self, f: Box<dyn FnOnce() + Send>) {
        *lock(&self.closer) = Some(f);
    }

    /// Ends the session from the host side: no more sending, and the stream is shut down
    /// (when a closer was set), so the reader sees its end.
    pub(crate) fn shut_down(&self) {
        self.close();
        let closer = lock(&self.closer).take();
        if let Some(c) = closer {
            c();
        }
    }

    /// Writes one frame built by `f`.
    pub(crate) fn send_with(
        &self,
        f: impl FnOnce(&mut Encoder, &mut [u8]) -> Result<usize, WireError>,
    ) -> Result<(), SessionError> {
        if self.is_closed() {
            return Err(SessionError::Closed);
        }
        let mut o = lock(&self.out);
        let Out { w, enc, buf } = &mut *o;
        let n = f(enc, buf)?;
        let r = w.write_all(&buf[..n]).and_then(|_| w.flush());
        if let Err(e) = r {
            drop(o);
            self.close();
            return Err(e.into());
        }
        Ok(())
    }

    pub(crate) fn send_error(&self, stream: Stream, c: u16, message: &str) {
        if let Err(e) = self.send_with(|enc, b| enc.error(stream, c, message, b)) {
            debug!("could not send error frame: {e}");
        }
    }

    pub(crate) fn send_close(&self, stream: Stream) {
        let _ = self.send_with(|enc, b| enc.close(stream, b));
    }

    /// Sends a whole message on `stream`, waiting for credit as needed (never drops data).
    pub(crate) fn send_message(&self, stream: Stream, msg: &[u8]) -> Result<(), SessionError> {
        let _one_at_a_time = lock(&self.stream_send[stream]);
        let mut rest = msg;
        loop {
            let n = {
                let mut cr = lock(&self.credits);
                loop {
                    if self.is_closed() {
                        return Err(SessionError::Closed);
                    }
                    if let Some(c) = cr.as_mut() {
                        let n = c.sendable(stream, rest.len());
                        if n > 0 || rest.is_empty() {
                            c.try_send(stream, n)?;
                            break n;
                        }
                    }
                    cr = self
                        .credit_cv
                        .wait_timeout(cr, Duration::from_millis(200))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            };
            let end = n == rest.len();
            self.send_with(|enc, b| enc.data(stream, &rest[..n], end, b))?;
            rest = &rest[n..];
            if end {
                return Ok(());
            }
        }
    }

    /// The host consumed `n` bytes received on `stream`: grant credit back when due.
    pub(crate) fn consumed(&self, stream: Stream, n: usize) {
        let g = lock(&self.credits)
            .as_mut()
            .and_then(|c| c.consumed(stream, n));
        if let Some(g) = g {
            let _ = self.send_with(|enc, b| enc.credit(stream, g, b));
        }
    }

    /// A backend (proxy, tool gateway, log storage) failed: an event for the operator.
    pub(crate) fn backend_error(&self, stream: Stream, message: String) {
        self.event(SessionEvent::BackendError { stream, message });
    }

    /// Sends the bundle's message sequence (`omega_bundle::msg`), then Close on Bundle.
    pub(crate) fn send_bundle(&self, b: &Bundle) -> Result<(), SessionError> {
        let mut buf = [0u8; bundle_msg::MAX_HEADER_MESSAGE];
        for m in bundle_msg::sequence(&b.files) {
            match m {
                Message::Header(h) => {
                    self.send_message(Stream::Bundle, msg::encode(&h, &mut buf)?)?
                }
                Message::Content(c) => self.send_message(Stream::Bundle, c)?,
            }
        }
        self.send_with(|enc, o| enc.close(Stream::Bundle, o))
    }
}
