//! The node credential: short-lived, bound to the node's attested Ed25519 key, signed by the
//! coordinator. A monitor (no_std) checks a peer's credential with [`Credential::verify`]:
//! bytes in, identity out.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::signed::{CREDENTIAL_TAG, SigningKey, decode_body, open};
use crate::{DecodeError, MEASUREMENT_LEN, Tee, Time, name_ok};

/// Format of [`Credential`].
pub const CREDENTIAL_FORMAT: u8 = 2;
/// Largest signed credential accepted.
pub const MAX_CREDENTIAL: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub format: u8,
    pub fleet_id: String,
    pub node_id: String,
    pub role: String,
    /// The node's attested Ed25519 key (an Omega node: its evidence's monitor key).
    pub node_key: [u8; 32],
    /// The key the node signs peer-channel handshakes with, as attested: an Omega node's
    /// `PeerKey` claim (principal `peer`, same evidence tree as the monitor key); another
    /// guest's bound key (`node_key`). `None`: no peer evidence was submitted, and no
    /// channel accepts this credential ([`crate::peer::CredentialAuthority`]).
    pub peer_key: Option<[u8; 32]>,
    pub tee: Tee,
    pub launch_digest: Vec<u8>,
    /// Valid for `not_before <= now < not_after`.
    pub not_before: Time,
    pub not_after: Time,
    /// Unique per coordinator key.
    pub serial: u64,
    /// The fleet policy version it was issued under.
    pub policy_version: u64,
}

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("credential not valid before {not_before} (now {now})")]
    NotYetValid { not_before: Time, now: Time },
    #[error("credential expired at {not_after} (now {now})")]
    Expired { not_after: Time, now: Time },
}

impl Credential {
    fn validate(&self) -> Result<(), DecodeError> {
        let bad = |why: &str| DecodeError::Invalid {
            what: "credential",
            why: why.into(),
        };
        if self.format != CREDENTIAL_FORMAT {
            return Err(bad("unknown format"));
        }
        if !name_ok(&self.fleet_id) || !name_ok(&self.node_id) || !name_ok(&self.role) {
            return Err(bad("fleet, node or role name"));
        }
        if self.launch_digest.len() != MEASUREMENT_LEN {
            return Err(bad("launch digest length"));
        }
        if self.not_after <= self.not_before {
            return Err(bad("empty validity window"));
        }
        Ok(())
    }

    /// Signs the credential with the coordinator's key.
    pub fn sign(&self, coordinator: &SigningKey) -> Result<Vec<u8>, DecodeError> {
        self.validate()?;
        let body = postcard::to_allocvec(self).map_err(|_| DecodeError::Malformed("credential"))?;
        Ok(coordinator.seal(CREDENTIAL_TAG, body))
    }

    /// Decodes and checks signature and structure, not time (for logs and tests; peers
    /// use [`Credential::verify`]).
    pub fn decode(bytes: &[u8], coordinator: &[u8; 32]) -> Result<Credential, DecodeError> {
        let body = open(
            bytes,
            MAX_CREDENTIAL,
            CREDENTIAL_TAG,
            coordinator,
            "credential",
        )?;
        Self::from_body(&body)
    }

    /// Strict decode of an (already signature-checked) credential body.
    pub fn from_body(body: &[u8]) -> Result<Credential, DecodeError> {
        let c: Credential = decode_body(body, "credential")?;
        c.validate()?;
        Ok(c)
    }

    /// Decodes `bytes`, checks the coordinator's signature and that `now` is within the
    /// validity window: the identity of the peer holding `node_key`.
    pub fn verify(
        bytes: &[u8],
        coordinator: &[u8; 32],
        now: Time,
    ) -> Result<Credential, CredentialError> {
        let c = Self::decode(bytes, coordinator)?;
        c.check_window(now)?;
        Ok(c)
    }

    /// `now` is within the validity window.
    pub fn check_window(&self, now: Time) -> Result<(), CredentialError> {
        if now < self.not_before {
            return Err(CredentialError::NotYetValid {
                not_before: self.not_before,
                now,
            });
        }
        if now >= self.not_after {
            return Err(CredentialError::Expired {
                not_after: self.not_after,
                now,
            });
        }
        Ok(())
    }
}
