use crate::frame::Stream;
use crate::{MAX_PAYLOAD, PerStream, WireError};

/// Default initial credit each side grants the other on every stream (bytes).
pub const INITIAL_WINDOW: u32 = 64 * 1024;
/// Upper bound of a window and of the credit outstanding on one stream.
pub const MAX_WINDOW: u32 = 16 * 1024 * 1024;

/// Per-stream credit flow control for one end of the connection.
///
/// Send side: the peer granted us `window` bytes per stream at the handshake and more with
/// Credit frames; [`Credits::try_send`] takes credit or answers `WouldBlock` (nothing is ever
/// dropped: the caller keeps the data and retries after [`Credits::on_credit`]).
///
/// Receive side: we granted the peer `our_window`; [`Credits::on_data`] checks each Data
/// frame against it, and [`Credits::consumed`] returns a grant to send back once the
/// application has consumed half a window.
#[derive(Debug, Clone)]
pub struct Credits {
    send: PerStream<u64>,
    recv: PerStream<u64>,
    unreported: PerStream<u64>,
    our_window: u32,
}

impl Credits {
    /// `our_window`: what we granted the peer (announced in our Hello/HelloAck);
    /// `peer_window`: what the peer granted us (from its Hello/HelloAck).
    /// Both are clamped to 1..=MAX_WINDOW.
    pub fn new(our_window: u32, peer_window: u32) -> Self {
        let ow = our_window.clamp(1, MAX_WINDOW);
        let pw = peer_window.clamp(1, MAX_WINDOW);
        Credits {
            send: PerStream::splat(pw as u64),
            recv: PerStream::splat(ow as u64),
            unreported: PerStream::default(),
            our_window: ow,
        }
    }

    /// Payload bytes we may send on `stream` now.
    pub fn available(&self, stream: Stream) -> u64 {
        self.send[stream]
    }

    /// How many of `want` bytes may go in the next frame: min(want, credit, MAX_PAYLOAD).
    pub fn sendable(&self, stream: Stream, want: usize) -> usize {
        let c = self.send[stream].min(MAX_PAYLOAD as u64) as usize;
        want.min(c)
    }

    /// Takes `n` bytes of send credit, all or nothing.
    pub fn try_send(&mut self, stream: Stream, n: usize) -> Result<(), WireError> {
        let c = &mut self.send[stream];
        if (n as u64) > *c {
            return Err(WireError::WouldBlock(stream));
        }
        *c -= n as u64;
        Ok(())
    }

    /// The peer granted `grant` more bytes (a Credit frame).
    pub fn on_credit(&mut self, stream: Stream, grant: u64) -> Result<(), WireError> {
        let c = &mut self.send[stream];
        // SECURITY: a peer cannot inflate credit without bound.
        match c.checked_add(grant) {
            Some(v) if v <= MAX_WINDOW as u64 => {
                *c = v;
                Ok(())
            }
            _ => Err(WireError::CreditOverflow(stream)),
        }
    }

    /// The peer sent a Data frame with `n` payload bytes.
    pub fn on_data(&mut self, stream: Stream, n: usize) -> Result<(), WireError> {
        let r = &mut self.recv[stream];
        // SECURITY: a peer that ignores credit is refused, not buffered.
        if (n as u64) > *r {
            return Err(WireError::CreditExceeded(stream));
        }
        *r -= n as u64;
        Ok(())
    }

    /// Credit the peer still holds on `stream` (receive side).
    pub fn peer_credit(&self, stream: Stream) -> u64 {
        self.recv[stream]
    }

    /// The application consumed `n` received bytes. Returns a grant to send in a Credit frame
    /// when at least half a window (or everything outstanding) has been consumed.
    pub fn consumed(&mut self, stream: Stream, n: usize) -> Option<u32> {
        let i = stream;
        // Nobody consumes more than was received: bound by what the peer used of the window.
        let used = (self.our_window as u64).saturating_sub(self.recv[i]);
        self.unreported[i] = self.unreported[i].saturating_add(n as u64).min(used);
        let threshold = (self.our_window as u64).div_ceil(2);
        // Never grant past the window: outstanding + grant ≤ our_window.
        let room = (self.our_window as u64).saturating_sub(self.recv[i]);
        let grant = self.unreported[i].min(room);
        if grant > 0 && (grant >= threshold || self.recv[i] == 0) {
            self.unreported[i] -= grant;
            self.recv[i] += grant;
            Some(grant as u32)
        } else {
            None
        }
    }

    /// Forces out a grant for everything consumed so far (e.g. before going idle).
    pub fn flush_grant(&mut self, stream: Stream) -> Option<u32> {
        let i = stream;
        let room = (self.our_window as u64).saturating_sub(self.recv[i]);
        let grant = self.unreported[i].min(room);
        if grant == 0 {
            return None;
        }
        self.unreported[i] -= grant;
        self.recv[i] += grant;
        Some(grant as u32)
    }
}
