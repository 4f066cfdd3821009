//! What a failed host call tells the agent.

use alloc::string::{String, ToString};

use omega_agent_abi::{ErrorCode, HostError};

/// A host call failed. [`Error::Denied`] names the policy rule that decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The policy denied the action (the provenance log has the same rule).
    #[error("denied by policy rule `{rule}`")]
    Denied { rule: String },
    /// The monitor could not decode the request, or a field is invalid.
    #[error("the monitor refused the request as malformed")]
    BadRequest,
    /// Nothing to receive yet, or the receiver's inbox is full.
    #[error("would block")]
    WouldBlock,
    /// A request, prompt, message or read above the ABI's limits (`limit` bytes; 0 if the
    /// monitor did not say).
    #[error("too large (limit {limit})")]
    TooLarge { limit: u32 },
    /// The service behind the call is not there (no inference proxy or tool gateway yet).
    #[error("unavailable: {reason}")]
    Unavailable { reason: String },
    /// The service ran and failed (a tool error, a proxy error).
    #[error("failed: {reason}")]
    Failed { reason: String },
    /// `result_take` found nothing held (an SDK bug if it ever shows).
    #[error("no held result")]
    NoResult,
    /// The monitor reported a bad pointer (it traps the agent instead, so this is not
    /// normally seen).
    #[error("bad pointer")]
    BadPointer,
    /// The monitor's answer did not decode as the ABI says it must.
    #[error("the monitor's answer did not decode")]
    Protocol,
}

impl Error {
    /// The ABI error code this error came from (`None` for [`Error::Protocol`]).
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Error::Denied { .. } => ErrorCode::Denied,
            Error::BadRequest => ErrorCode::BadRequest,
            Error::WouldBlock => ErrorCode::WouldBlock,
            Error::TooLarge { .. } => ErrorCode::TooLarge,
            Error::Unavailable { .. } => ErrorCode::Unavailable,
            Error::Failed { .. } => ErrorCode::Failed,
            Error::NoResult => ErrorCode::NoResult,
            Error::BadPointer => ErrorCode::BadPointer,
            Error::Protocol => return None,
        })
    }

    /// The error for `code` when its detail could not be fetched.
    pub(crate) fn from_code(code: ErrorCode) -> Error {
        match code {
            ErrorCode::Denied => Error::Denied {
                rule: String::from("?"),
            },
            ErrorCode::BadRequest => Error::BadRequest,
            ErrorCode::WouldBlock => Error::WouldBlock,
            ErrorCode::TooLarge => Error::TooLarge { limit: 0 },
            ErrorCode::Unavailable => Error::Unavailable {
                reason: String::new(),
            },
            ErrorCode::Failed => Error::Failed {
                reason: String::new(),
            },
            ErrorCode::NoResult => Error::NoResult,
            ErrorCode::BadPointer => Error::BadPointer,
        }
    }
}

impl From<HostError<'_>> for Error {
    fn from(e: HostError<'_>) -> Error {
        match e {
            HostError::Denied { rule } => Error::Denied {
                rule: rule.to_string(),
            },
            HostError::BadRequest => Error::BadRequest,
            HostError::WouldBlock => Error::WouldBlock,
            HostError::BadPointer => Error::BadPointer,
            HostError::TooLarge { limit } => Error::TooLarge { limit },
            HostError::Unavailable { reason } => Error::Unavailable {
                reason: reason.to_string(),
            },
            HostError::NoResult => Error::NoResult,
            HostError::Failed { reason } => Error::Failed {
                reason: reason.to_string(),
            },
        }
    }
}
