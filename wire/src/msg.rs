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
    /// Guest -> host: the policy decided `confirm` for an agent's call, which waits for the
    /// operator ([`confirm`]). The decision (with its rule) is already in the provenance
    /// log; `content` is that record's content digest. The host answers with one
    /// [`ControlMsg::ConfirmAnswer`] with the same `id`.
    ConfirmRequest {
        version: u16,
        id: u64,
        agent: &'a str,
        /// What the agent does: `tool` (the only kind confirmed today).
        action: &'a str,
        /// The tool (`server.tool`).
        target: &'a str,
        /// The policy rule that asked for confirmation.
        rule: &'a str,
        /// The call's arguments, cut to [`confirm::MAX_SUMMARY`] bytes (then ending `…`).
        summary: &'a str,
        content: [u8; 32],
    },
    /// Host -> guest: the operator's answer to the [`ControlMsg::ConfirmRequest`] `id`.
    /// SECURITY: this is what the host says the operator decided; the host is untrusted,
    /// so it is an operator control, not a guarantee. The monitor logs it before acting
    /// and refuses (denying the call) a duplicate, unsolicited or late answer.
    ConfirmAnswer {
        version: u16,
        id: u64,
        approve: bool,
    },
    /// Host -> guest, before the bundle: the peer channel's configuration
    /// (`omega-peer-channel`, the Peer stream): this node's name (its credential must name
    /// it), the one peer it talks to, and whether this end connects (`initiator`). Only the
    /// first one counts; the monitor then stays up (bounded) for the session before
    /// shutting down.
    PeerConfig {
        initiator: bool,
        node: &'a str,
        peer: &'a str,
    },
    /// Host -> guest, after [`ControlMsg::PeerConfig`] and the bundle: this node's own
    /// credential from the fleet coordinator (a signed `omega_fleet::Credential`, at most
    /// [`MAX_PEER_CREDENTIAL`] bytes), issued once the coordinator admitted the node on its
    /// evidence. SECURITY: the host only carries it; the monitor believes it only under
    /// the coordinator key its measured bundle names, for its own attested keys
    /// (docs/fleet.md), and starts the handshake with it.
    PeerCredential { credential: &'a [u8] },
}

/// Largest [`ControlMsg::PeerCredential`] (`omega_fleet::credential::MAX_CREDENTIAL`).
pub const MAX_PEER_CREDENTIAL: usize = 1024;

/// Operator confirmation ([`ControlMsg::ConfirmRequest`], [`ControlMsg::ConfirmAnswer`]):
/// the contract's version and bounds, checked by both sides.
pub mod confirm {
    /// Version of the confirmation messages; a message of another version is refused.
    pub const VERSION: u16 = 1;
    /// Longest agent, action, target or rule name in a request (bytes).
    pub const MAX_NAME: usize = 128;
    /// Longest arguments summary in a request (bytes).
    pub const MAX_SUMMARY: usize = 1024;

    /// A request's fields are within the bounds (names non-empty).
    pub fn request_ok(version: u16, names: [&str; 4], summary: &str) -> bool {
        version == VERSION
            && names.iter().all(|n| !n.is_empty() && n.len() <= MAX_NAME)
            && summary.len() <= MAX_SUMMARY
    }

    /// `s` cut to at most `max` bytes at a character boundary, and whether it was cut.
    pub fn cut(s: &str, max: usize) -> (&str, bool) {
        if s.len() <= max {
            return (s, false);
        }
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        (s.get(..end).unwrap_or(""), true)
    }
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
