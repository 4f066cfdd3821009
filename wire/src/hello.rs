use serde::{Deserialize, Serialize};

use crate::WireError;

/// Frame format and protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Versions this crate can speak, any order.
pub const SUPPORTED_VERSIONS: &[u8] = &[1];
/// Longest version list a peer may send.
pub const MAX_VERSIONS: usize = 16;

/// First frame of a connection (guest -> host, Control stream, kind Hello).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello<'a> {
    /// Protocol versions the sender speaks (1..=MAX_VERSIONS entries, 0 is not a version).
    pub versions: &'a [u8],
    /// Initial credit the sender grants the peer on every stream.
    pub window: u32,
}

/// Answer to Hello (host -> guest, Control stream, kind HelloAck).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck<'a> {
    /// Chosen version: the highest common one, or 0 if there is none (then the host
    /// closes the Control stream after this frame).
    pub version: u8,
    /// Versions the answering side speaks.
    pub versions: &'a [u8],
    /// Initial credit the answering side grants the peer on every stream.
    pub window: u32,
}

impl<'a> Hello<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let h: Hello<'a> = crate::msg::decode_exact(payload)?;
        check_list(h.versions)?;
        Ok(h)
    }
}

impl<'a> HelloAck<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let h: HelloAck<'a> = crate::msg::decode_exact(payload)?;
        check_list(h.versions)?;
        Ok(h)
    }
}

fn check_list(v: &[u8]) -> Result<(), WireError> {
    // SECURITY: bounded list, no version 0.
    if v.is_empty() || v.len() > MAX_VERSIONS || v.contains(&0) {
        return Err(WireError::BadMessage);
    }
    Ok(())
}

/// Highest version in both lists, or `NoCommonVersion`.
pub fn negotiate(ours: &[u8], theirs: &[u8]) -> Result<u8, WireError> {
    ours.iter()
        .copied()
        .filter(|v| *v != 0 && theirs.contains(v))
        .max()
        .ok_or(WireError::NoCommonVersion)
}
