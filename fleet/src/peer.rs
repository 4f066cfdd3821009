//! The node credential as the peer channel's [`PeerAuthority`]: a monitor holding the
//! coordinator's public key and its fleet id decides whom a proven peer key belongs to.
//!
//! Which key: the channel proves possession of the key that signed the handshake (the
//! monitor's `BootKeys::peer_key`, claimed in its evidence as `PeerKey`, principal `peer`).
//! The coordinator admits a node on its `platform` evidence, whose REPORT_DATA binds the
//! *monitor* key and the nonce; the `peer` leaf is in the same attested tree (same monitor
//! key, root and nonce: checked by the host's verifier, as the `bundle` leaf is), so the
//! coordinator writes that peer key into the credential ([`Credential::peer_key`]). The
//! channel's peer key must equal it; the monitor key never signs handshakes.

use alloc::string::String;

pub use omega_peer_channel::{AuthorityError, PeerAuthority, PeerName};

use crate::credential::{Credential, CredentialError};
use crate::endorsement::{PresentedError, Root, verify_presented};
use crate::{DecodeError, Time};

/// Peers are the nodes this fleet's coordinator admitted: credentials verify under its key,
/// name this fleet and bind the channel's peer key; the node id is the peer's name.
#[derive(Debug, Clone)]
pub struct CredentialAuthority {
    root: Root,
    fleet_id: String,
}

impl CredentialAuthority {
    /// Credentials signed by the coordinator key `coordinator`.
    pub fn new(coordinator: [u8; 32], fleet_id: &str) -> Self {
        Self::rooted(Root::Coordinator(coordinator), fleet_id)
    }

    /// Credentials under `root`: one coordinator's key, or any coordinator key the owner
    /// endorsed for this fleet ([`crate::endorsement`]).
    pub fn rooted(root: Root, fleet_id: &str) -> Self {
        CredentialAuthority {
            root,
            fleet_id: fleet_id.into(),
        }
    }

    /// The whole credential of the peer proving `peer_key` (its role, for route decisions
    /// with [`crate::authorize`]), checked as [`PeerAuthority::check`] checks it.
    pub fn credential(
        &self,
        credential: &[u8],
        peer_key: &[u8; 32],
        now: Time,
    ) -> Result<Credential, AuthorityError> {
        let c =
            verify_presented(credential, &self.root, &self.fleet_id, now).map_err(|e| match e {
                PresentedError::Credential(CredentialError::Decode(DecodeError::BadSignature(
                    _,
                )))
                | PresentedError::Endorsement(DecodeError::BadSignature(_)) => {
                    AuthorityError::Signature
                }
                PresentedError::Credential(CredentialError::Decode(_))
                | PresentedError::Endorsement(_) => AuthorityError::Malformed("fleet credential"),
                PresentedError::Credential(
                    CredentialError::NotYetValid { .. } | CredentialError::Expired { .. },
                )
                | PresentedError::EndorsementExpired(_) => AuthorityError::Expired,
                PresentedError::OtherFleet(_) => AuthorityError::NotAdmitted,
            })?;
        // SECURITY: one coordinator key could serve several fleets; a node of another
        // fleet is not a peer.
        if c.fleet_id != self.fleet_id {
            return Err(AuthorityError::NotAdmitted);
        }
        // SECURITY: the key that signed the handshake must be the attested peer key the
        // credential names; a credential without one admits no channel.
        if c.peer_key.as_ref() != Some(peer_key) {
            return Err(AuthorityError::WrongKey);
        }
        Ok(c)
    }
}

impl PeerAuthority for CredentialAuthority {
    fn check(
        &self,
        credential: &[u8],
        peer_key: &[u8; 32],
        now_s: u64,
    ) -> Result<PeerName, AuthorityError> {
        let c = self.credential(credential, peer_key, now_s)?;
        PeerName::new(&c.node_id).ok_or(AuthorityError::Malformed(
            "node id is not a peer name (lowercase)",
        ))
    }
}
