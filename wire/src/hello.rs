use serde::ser::SerializeTuple;
use serde::{Deserialize, Serialize};

use crate::WireError;

/// The frame format: the `version` field of every frame header. Protocol version 2 kept
/// the frame format of version 1.
pub const FRAME_FORMAT: u8 = 1;
/// Highest protocol version this crate speaks.
pub const VERSION: u8 = 2;
/// Versions this crate can speak, any order. Version 2 adds the log resume after a host
/// restart: [`HelloAck::log_stored`], an `Ack` counting bytes from the log's first byte
/// (not the connection's), and a new Hello from the guest whenever the host reconnects.
pub const SUPPORTED_VERSIONS: &[u8] = &[1, 2];
/// First version with [`HelloAck::log_stored`].
pub const RESUME_VERSION: u8 = 2;
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
///
/// Encoded as the postcard tuple `(version, versions, window)`, followed, when `version` is
/// [`RESUME_VERSION`] or higher, by `log_stored` (varint u64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloAck<'a> {
    /// Chosen version: the highest common one, or 0 if there is none (then the host
    /// closes the Control stream after this frame).
    pub version: u8,
    /// Versions the answering side speaks.
    pub versions: &'a [u8],
    /// Initial credit the answering side grants the peer on every stream.
    pub window: u32,
    /// Version 2: bytes of the guest's provenance log (from its first byte) the host holds
    /// durably: 0 on a first connection; after a host restart, what the new host read back
    /// from its log directory (whole entries). The guest resends everything after it, and
    /// refuses a claim beyond what it sent, below what it released, or inside an entry.
    /// Not on the wire in version 1 (decoded as 0).
    pub log_stored: u64,
}

/// The version-1 fields of a HelloAck, as they are on the wire.
#[derive(Deserialize)]
struct HelloAckFields<'a> {
    version: u8,
    versions: &'a [u8],
    window: u32,
}

impl Serialize for HelloAck<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let resume = self.version >= RESUME_VERSION;
        let mut t = s.serialize_tuple(if resume { 4 } else { 3 })?;
        t.serialize_element(&self.version)?;
        t.serialize_element(self.versions)?;
        t.serialize_element(&self.window)?;
        if resume {
            t.serialize_element(&self.log_stored)?;
        }
        t.end()
    }
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
        let (h, rest) = postcard::take_from_bytes::<HelloAckFields<'a>>(payload)
            .map_err(|_| WireError::BadMessage)?;
        check_list(h.versions)?;
        // SECURITY: exactly the fields of the chosen version, nothing trailing.
        let log_stored = if h.version >= RESUME_VERSION {
            crate::msg::decode_exact::<u64>(rest)?
        } else if rest.is_empty() {
            0
        } else {
            return Err(WireError::BadMessage);
        };
        Ok(HelloAck {
            version: h.version,
            versions: h.versions,
            window: h.window,
            log_stored,
        })
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
