//! SNP guest requests carried over the host channel instead of the GHCB: the transport the
//! test images use to reach the host's simulated PSP (`ControlMsg::GuestRequest` out,
//! `ControlMsg::GuestResponse` back). The messages are the real ones (AES-GCM under the
//! lab VMPCK0, sequence numbers checked by `sev_snp::GuestMessenger`); only the carrier
//! differs, so a host that alters, replays or withholds a response makes the request fail
//! (and the messenger wipe its key), exactly as with a PSP behind the GHCB.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use sev_snp::GhcbError;
use sev_snp::guest_msg::{
    GuestRequestTransport, HDR_SZ_OFFSET, MSG_HDR_SIZE, MSG_PAGE_SIZE, MSG_SZ_OFFSET,
};

/// How long the monitor waits for the host's response, on its own clock.
pub const PSP_TIMEOUT_NS: u64 = 5_000_000_000;
/// The same without a clock, in polls of the link (as `Config::idle_resync_polls` counts
/// about 1 s in 2M polls).
pub const PSP_TIMEOUT_POLLS: u64 = 10_000_000;

/// The channel as the transport sees it.
pub trait PspLink {
    type Error: core::fmt::Display;
    /// Sends one guest-request message (header and encrypted payload) to the host.
    fn send_request(&mut self, message: &[u8]) -> Result<(), Self::Error>;
    /// The host's response message if one has arrived; otherwise reads the channel once
    /// (queueing anything else that arrives) and may wait briefly for input.
    fn poll_response(&mut self) -> Option<Vec<u8>>;
    /// Monotonic nanoseconds, `None` without a clock.
    fn now_ns(&mut self) -> Option<u64>;
}

/// Why a request over the channel failed (the messenger sees a transport error and wipes
/// its key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PspFailure {
    #[error("sending the guest request failed: {0}")]
    Send(String),
    #[error("no response from the host's simulated PSP within 5 s")]
    Timeout,
    #[error("the host's response is {0} bytes, more than a message page")]
    TooLong(usize),
    #[error("the host's response is {0} bytes, shorter than a message header")]
    TooShort(usize),
}

/// The bytes of a message page in use: the header and the payload its size fields give
/// (never past the page).
pub fn used_len(page: &[u8; MSG_PAGE_SIZE]) -> usize {
    let field = |o: usize| usize::from(u16::from_le_bytes([page[o], page[o + 1]]));
    (field(HDR_SZ_OFFSET) + field(MSG_SZ_OFFSET)).min(MSG_PAGE_SIZE)
}

/// [`GuestRequestTransport`] over a [`PspLink`], with a bounded wait for each response.
pub struct ChannelPsp<L> {
    pub link: L,
    timeout_ns: u64,
    timeout_polls: u64,
    failure: Option<PspFailure>,
}

impl<L: PspLink> ChannelPsp<L> {
    /// The monitor's bounds: [`PSP_TIMEOUT_NS`], or [`PSP_TIMEOUT_POLLS`] without a clock.
    pub fn new(link: L) -> Self {
        Self::with_timeout(link, PSP_TIMEOUT_NS, PSP_TIMEOUT_POLLS)
    }

    pub fn with_timeout(link: L, timeout_ns: u64, timeout_polls: u64) -> Self {
        ChannelPsp {
            link,
            timeout_ns,
            timeout_polls,
            failure: None,
        }
    }

    /// Why the last request failed in transport, if it did.
    pub fn failure(&self) -> Option<&PspFailure> {
        self.failure.as_ref()
    }

    fn fail(&mut self, f: PspFailure) -> GhcbError {
        self.failure = Some(f);
        GhcbError::BadResponse
    }
}

impl<L: PspLink> GuestRequestTransport for ChannelPsp<L> {
    fn guest_request(
        &mut self,
        request: &[u8; MSG_PAGE_SIZE],
        response: &mut [u8; MSG_PAGE_SIZE],
    ) -> Result<u64, GhcbError> {
        self.failure = None;
        if let Err(e) = self.link.send_request(&request[..used_len(request)]) {
            return Err(self.fail(PspFailure::Send(e.to_string())));
        }
        let start = self.link.now_ns();
        let mut polls = 0u64;
        loop {
            if let Some(m) = self.link.poll_response() {
                // SECURITY: the host chooses the length; it is checked before the copy, and
                // the messenger authenticates every byte of the header and payload.
                if m.len() > MSG_PAGE_SIZE {
                    return Err(self.fail(PspFailure::TooLong(m.len())));
                }
                if m.len() < MSG_HDR_SIZE {
                    return Err(self.fail(PspFailure::TooShort(m.len())));
                }
                response.fill(0);
                response[..m.len()].copy_from_slice(&m);
                return Ok(0);
            }
            polls += 1;
            let expired = match (start, self.link.now_ns()) {
                (Some(s), Some(now)) => now.saturating_sub(s) >= self.timeout_ns,
                _ => polls >= self.timeout_polls,
            };
            if expired {
                return Err(self.fail(PspFailure::Timeout));
            }
        }
    }

    /// Never called: a response over the channel is never "busy" (`guest_request` returns
    /// 0 or fails), so there is no back-off to wait for.
    fn wait_ms(&mut self, _ms: u64) {}
}
