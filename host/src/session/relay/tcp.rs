//! The byte pipe that the Inference relay and the link relays (Peer, Fleet) share: the
//! guest's bytes on one stream written to one TCP connection, the connection's bytes sent
//! back into that stream. The host reads nothing in them (TLS to the proxy, the peer
//! channel's own encryption, the coordinator's signatures); the relays differ only in how
//! the connection is made.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::ControlFlow;

use omega_wire::{MAX_PAYLOAD, Stream, msg::code};
use tracing::warn;

use super::Input;
use crate::session::send::Shared;

/// The guest-to-backend half: the connection, once made, and what errors call it.
pub(crate) struct TcpPipe {
    stream: Stream,
    /// The backend as errors name it ("inference proxy", "peer link", "fleet coordinator
    /// relay").
    what: &'static str,
    conn: Option<TcpStream>,
}

impl TcpPipe {
    pub(crate) fn new(stream: Stream, what: &'static str) -> Self {
        TcpPipe {
            stream,
            what,
            conn: None,
        }
    }

    /// The stream it carries.
    pub(crate) fn stream(&self) -> Stream {
        self.stream
    }

    /// One input from the guest. Data is written to the connection, which `connect` makes
    /// when there is none (its error, which names the backend, goes to the guest and the
    /// session's events); a write error drops the connection. Credit comes back only once
    /// the backend took the bytes: a stalled backend stalls this stream and nothing else.
    /// The guest's close half-closes the connection.
    pub(crate) fn on_input(
        &mut self,
        sh: &Shared,
        input: Input,
        connect: impl FnOnce() -> Result<TcpStream, String>,
    ) -> ControlFlow<()> {
        let bytes = match input {
            Input::Data { payload, .. } => payload,
            Input::Close => {
                if let Some(c) = self.conn.take() {
                    let _ = c.shutdown(Shutdown::Write);
                }
                return ControlFlow::Continue(());
            }
            Input::File(..) => return ControlFlow::Continue(()),
        };
        let conn = match self.conn.take() {
            Some(c) => Ok(c),
            None => connect(),
        };
        match conn {
            Ok(mut c) => match c.write_all(&bytes) {
                Ok(()) => self.conn = Some(c),
                Err(e) => {
                    let m = format!("{} write: {e}", self.what);
                    sh.send_error(self.stream, code::BACKEND, &m);
                }
            },
            Err(m) => {
                warn!("{m}");
                sh.backend_error(self.stream, m.clone());
                sh.send_error(self.stream, code::BACKEND, &m);
            }
        }
        sh.consumed(self.stream, bytes.len());
        ControlFlow::Continue(())
    }

    /// Closes the connection both ways (the relay is ending).
    pub(crate) fn finish(self) {
        if let Some(c) = self.conn {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// The backend's bytes from `c` into the guest's `stream`, as they come; the backend's end
/// of the connection (or a read error) closes the stream. Ends early when the channel is
/// gone.
pub(crate) fn tcp_to_guest(sh: &Shared, stream: Stream, mut c: TcpStream) {
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if sh.send_message(stream, &buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    sh.send_close(stream);
}
