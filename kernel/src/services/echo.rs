//! The Echo stream: every `Q…` request is answered `R…` with the same payload (tests and
//! benchmarks measure the channel with it). With the `echo-all` test hook the other
//! streams echo too.

use omega_wire::{Stream, msg};

use super::{HostChannel, report_send_failure};

/// Whether `body` is an echo request.
pub fn is_request(body: &[u8]) -> bool {
    body.first() == Some(&msg::echo::REQUEST)
}

/// Answers an echo request (see [`is_request`]) with the same bytes, tagged as a reply.
pub fn answer(ch: &mut HostChannel, mut body: alloc::vec::Vec<u8>) {
    body[0] = msg::echo::REPLY;
    echo_back(ch, Stream::Echo, &body);
}

/// Sends `body` back on `stream`.
pub fn echo_back(ch: &mut HostChannel, stream: Stream, body: &[u8]) {
    if let Err(e) = ch.send(stream, body) {
        report_send_failure("an echo", &e);
    }
}
