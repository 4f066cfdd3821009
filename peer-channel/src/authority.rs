//! Who a peer key belongs to: the [`PeerAuthority`] trait and the pinned authority.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Longest node name.
pub const MAX_NAME: usize = 64;

/// A node's name as an authority vouches for it: 1..=[`MAX_NAME`] bytes of `a-z`, `0-9`,
/// `-`, `_`, `.` (no `/`: it addresses `node/agent` across images).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerName(String);

impl PeerName {
    /// `None` when `name` is empty, too long or has a byte outside the allowed set.
    pub fn new(name: &str) -> Option<Self> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        ok.then(|| PeerName(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an authority refused a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("credential malformed: {0}")]
    Malformed(&'static str),
    #[error("credential signature does not verify")]
    Signature,
    #[error("credential binds another key")]
    WrongKey,
    #[error("credential expired or not yet valid")]
    Expired,
    #[error("node not admitted")]
    NotAdmitted,
}

/// Decides whom a proven peer key belongs to. The channel calls it once per handshake,
/// after the peer's signature over the transcript verified under `peer_key`, with the
/// credential the peer sent (encrypted) and the caller's time. The fleet coordinator's
/// credentials implement it (they bind a node's attested Ed25519 key); so does
/// [`PinnedAuthority`].
pub trait PeerAuthority {
    fn check(
        &self,
        credential: &[u8],
        peer_key: &[u8; 32],
        now_s: u64,
    ) -> Result<PeerName, AuthorityError>;
}

/// Peers pinned by key: each admitted node's name and peer key, taken by whoever configures
/// the monitor from that node's verified evidence (its `PeerKey` claim). The credential a
/// peer presents is just its name (UTF-8); the authority accepts it only with the pinned key.
/// No expiry: pins live as long as the monitor's configuration (one boot).
#[derive(Debug, Clone, Default)]
pub struct PinnedAuthority {
    pins: Vec<(PeerName, [u8; 32])>,
}

impl PinnedAuthority {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pins `name` to `key` (replaces an earlier pin of the same name).
    pub fn pin(&mut self, name: PeerName, key: [u8; 32]) {
        self.pins.retain(|(n, _)| n != &name);
        self.pins.push((name, key));
    }

    pub fn len(&self) -> usize {
        self.pins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }
}

impl PeerAuthority for PinnedAuthority {
    fn check(
        &self,
        credential: &[u8],
        peer_key: &[u8; 32],
        _now_s: u64,
    ) -> Result<PeerName, AuthorityError> {
        let name = core::str::from_utf8(credential)
            .ok()
            .and_then(PeerName::new)
            .ok_or(AuthorityError::Malformed(
                "pinned credential is a node name",
            ))?;
        match self.pins.iter().find(|(n, _)| *n == name) {
            None => Err(AuthorityError::NotAdmitted),
            // SECURITY: the name is only a claim; the pinned key decides.
            Some((_, k)) if k != peer_key => Err(AuthorityError::WrongKey),
            Some(_) => Ok(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_plain() {
        assert!(PeerName::new("node-1.eu_west").is_some());
        for bad in ["", "Node", "a/b", "a b", "é", &"x".repeat(MAX_NAME + 1)] {
            assert!(PeerName::new(bad).is_none(), "{bad:?}");
        }
        assert!(PeerName::new(&"x".repeat(MAX_NAME)).is_some());
    }

    #[test]
    fn pinned_authority_checks_the_key_not_the_claim() {
        let mut a = PinnedAuthority::new();
        a.pin(PeerName::new("b").unwrap(), [2; 32]);
        assert_eq!(a.check(b"b", &[2; 32], 0).unwrap().as_str(), "b");
        assert_eq!(a.check(b"b", &[3; 32], 0), Err(AuthorityError::WrongKey));
        assert_eq!(a.check(b"c", &[2; 32], 0), Err(AuthorityError::NotAdmitted));
        assert!(matches!(
            a.check(&[0xff], &[2; 32], 0),
            Err(AuthorityError::Malformed(_))
        ));
        a.pin(PeerName::new("b").unwrap(), [3; 32]);
        assert_eq!(a.len(), 1);
        assert!(a.check(b"b", &[3; 32], 0).is_ok());
    }
}
