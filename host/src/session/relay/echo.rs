//! Echo stream (tests and benchmarks): the host answers the guest's requests when `--echo`
//! is on, and collects the guest's replies for [`echo_roundtrip`].

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use omega_wire::Stream;
use omega_wire::msg::code;
use omega_wire::msg::echo::{REPLY, REQUEST};

use super::MessageRelay;
use crate::session::send::{Shared, lock};
use crate::session::{ChannelSession, MAX_HOST_MESSAGE, SessionError};

/// The guest's echo replies, waiting for [`echo_roundtrip`].
pub(crate) struct EchoReplies {
    /// Answer the guest's requests.
    enabled: bool,
    replies: Mutex<VecDeque<Vec<u8>>>,
    cv: Condvar,
    /// One round trip at a time.
    one: Mutex<()>,
}

impl EchoReplies {
    pub(crate) fn new(enabled: bool) -> Self {
        EchoReplies {
            enabled,
            replies: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            one: Mutex::new(()),
        }
    }

    /// Wakes a waiting round trip (the session closed).
    pub(crate) fn wake(&self) {
        self.cv.notify_all();
    }
}

pub(crate) struct EchoRelay;

impl MessageRelay for EchoRelay {
    const STREAM: Stream = Stream::Echo;
    const MAX_MESSAGE: usize = MAX_HOST_MESSAGE;
    const TOO_LARGE: &'static str = "echo message too large";

    fn on_message(&mut self, sh: &Shared, mut m: Vec<u8>) -> ControlFlow<()> {
        match m.first() {
            Some(&REQUEST) if sh.echo.enabled => {
                m[0] = REPLY;
                // Waits for the guest's credit; meanwhile this relay takes no more
                // fragments, so no more credit goes back: a guest that stops reading is
                // blocked, not buffered.
                if sh.send_message(Stream::Echo, &m).is_err() {
                    return ControlFlow::Break(());
                }
            }
            Some(&REQUEST) => {
                sh.send_error(Stream::Echo, code::UNAVAILABLE, "echo is disabled (--echo)")
            }
            Some(&REPLY) => {
                lock(&sh.echo.replies).push_back(m);
                sh.echo.cv.notify_all();
            }
            _ => sh.send_error(
                Stream::Echo,
                code::PROTOCOL,
                "echo message without a Q/R tag",
            ),
        }
        ControlFlow::Continue(())
    }
}

/// Sends `size` bytes on the Echo stream, waits for the guest to echo them back, and returns
/// the round-trip time. The guest must echo Echo requests (tag `Q`) as replies (tag `R`).
pub fn echo_roundtrip(session: &ChannelSession, size: usize) -> Result<Duration, SessionError> {
    let sh = session.shared();
    let echo = &sh.echo;
    let _one = lock(&echo.one);
    lock(&echo.replies).clear();
    let mut req = Vec::with_capacity(size + 1);
    req.push(REQUEST);
    req.extend((0..size).map(|i| (i as u8).wrapping_mul(251).wrapping_add(size as u8)));
    let t0 = Instant::now();
    sh.send_message(Stream::Echo, &req)?;
    let mut q = lock(&echo.replies);
    let deadline = t0 + Duration::from_secs(60);
    loop {
        if let Some(r) = q.pop_front() {
            let dt = t0.elapsed();
            if r.len() != req.len() || r[1..] != req[1..] {
                return Err(SessionError::EchoMismatch);
            }
            return Ok(dt);
        }
        if sh.is_closed() {
            return Err(SessionError::Closed);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(SessionError::Timeout);
        }
        q = echo
            .cv
            .wait_timeout(q, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}
