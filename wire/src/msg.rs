//! Payloads of messages with a defined structure (all postcard). The Bundle stream's
//! messages belong to the bundle contract, `omega-bundle`.

use serde::{Deserialize, Serialize};

use crate::WireError;

/// Longest message text in an Error frame (bytes of UTF-8).
pub const MAX_ERROR_MESSAGE: usize = 512;

/// The Echo stream's payloads (latency and throughput measurements): the host sends
/// `REQUEST ‖ data`, the monitor answers `REPLY ‖ data` with the same data.
pub mod echo {
    pub const REQUEST: u8 = b'Q';
    pub const REPLY: u8 = b'R';
}

/// Error codes carried in [`ErrorBody::code`].
pub mod code {
    /// Frames that failed to decode (CRC, header, garbage) were received.
    pub const MALFORMED: u16 = 1;
    /// The stream is not served here (no proxy, no tool gateway, echo disabled).
    pub const UNAVAILABLE: u16 = 2;
    /// No common protocol version.
    pub const NO_COMMON_VERSION: u16 = 3;
    /// The peer sent without credit.
    pub const CREDIT: u16 = 4;
    /// Data frames were lost (sequence gap); the partial message was dropped.
    pub const SEQUENCE: u16 = 5;
    /// A message exceeded a size limit.
    pub const TOO_LARGE: u16 = 6;
    /// The stream's backend failed (proxy connection, tool process, log storage).
    pub const BACKEND: u16 = 7;
    /// A frame or message broke the protocol rules.
    pub const PROTOCOL: u16 = 8;
    /// Anything else.
    pub const INTERNAL: u16 = 9;
}

/// Payload of an Error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    pub code: u16,
    pub message: &'a str,
}

impl<'a> ErrorBody<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let b: ErrorBody<'a> = decode_exact(payload)?;
        if b.message.len() > MAX_ERROR_MESSAGE {
            return Err(WireError::BadMessage);
        }
        Ok(b)
    }
}

/// Messages on the Control stream (Data frames, one message each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlMsg<'a> {
    /// The sender is shutting down; `status` 0 = success.
    Shutdown { status: u32 },
    /// A line for the operator (the host prints it).
    Notice { text: &'a str },
    /// Guest -> host: the provenance log's verifier key (C2SP vkey `<name>+<hash>+<base64>`).
    /// The host stores it beside the log (`log.vkey`).
    LogKey { vkey: &'a str },
    /// Guest -> host: a signed checkpoint (C2SP signed note) of the log so far. The host
    /// stores it (`checkpoint.note`) once every entry it covers is durable.
    Checkpoint { note: &'a str },
    /// Host -> guest, before the bundle: the verifier's nonce, bound into the monitor's
    /// evidence (REPORT_DATA). Only the first one counts; later ones are refused and logged.
    /// `simulated_psp`: the host answers [`ControlMsg::GuestRequest`]s with the simulated PSP
    /// (tests). Only test-hooks images can use it; production images refuse and say so.
    Challenge {
        nonce: [u8; 32],
        simulated_psp: bool,
    },
    /// Guest -> host: one principal's evidence bundle (`omega-evidence` `Bundle`, postcard).
    /// The host stores it beside the log (`evidence/<principal>.bin`, `:` written as `_`).
    Evidence {
        principal: &'a str,
        bundle: &'a [u8],
    },
    /// Guest -> host (test-hooks images only): an SNP guest-request message (header and
    /// encrypted payload, `sev_snp::guest_msg` layout) for the simulated PSP.
    GuestRequest { message: &'a [u8] },
    /// Host -> guest: the simulated PSP's response message to the last `GuestRequest`.
    GuestResponse { message: &'a [u8] },
    /// Guest -> host: the signed A2A agent card of a started agent (`omega-agent-card`,
    /// canonical JSON, at most `omega_agent_card::MAX_CARD` bytes). The host stores it
    /// beside the evidence (`cards/<agent>.json`); `measurements verify-card` checks it
    /// against the evidence.
    AgentCard { agent: &'a str, card: &'a str },
}

/// Encodes `msg` into `out`, returns the bytes used.
pub fn encode<'o, T: Serialize>(msg: &T, out: &'o mut [u8]) -> Result<&'o mut [u8], WireError> {
    postcard::to_slice(msg, out).map_err(|_| WireError::BufferTooSmall)
}

/// Decodes a whole payload as `T`; trailing bytes are an error.
pub fn decode_exact<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, WireError> {
    let (v, rest) = postcard::take_from_bytes::<T>(payload).map_err(|_| WireError::BadMessage)?;
    if !rest.is_empty() {
        return Err(WireError::BadMessage);
    }
    Ok(v)
}
