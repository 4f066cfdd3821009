//! The owner's endorsement of a coordinator: what lets nodes' bundles name the fleet's
//! **owner** instead of one coordinator boot's key. An in-image coordinator draws its key at
//! boot, so naming that key in every node's bundle means new bundles whenever the
//! coordinator restarts. Instead the owner verifies the coordinator's evidence (its
//! `coordinator` claim: this key, this owner), signs an [`Endorsement`] of that key for a
//! while, and hands it to the coordinator, which presents it with every credential it
//! issues ([`Presented`]). A monitor whose bundle names the owner ([`Root::Owner`]) accepts
//! a credential only under a coordinator key the owner endorsed for this fleet.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::credential::{Credential, CredentialError, MAX_CREDENTIAL};
use crate::signed::{ENDORSEMENT_TAG, SigningKey, decode_body, open};
use crate::{DecodeError, Time, name_ok};

/// Format of [`Endorsement`].
pub const ENDORSEMENT_FORMAT: u8 = 1;
/// Largest signed endorsement.
pub const MAX_ENDORSEMENT: usize = 512;
/// Largest [`Presented`] (what crosses the wire as a node's credential: at most
/// `omega_wire::msg::MAX_PEER_CREDENTIAL`).
pub const MAX_PRESENTED: usize = MAX_CREDENTIAL;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endorsement {
    pub format: u8,
    pub fleet_id: String,
    /// The coordinator's credential key, as its verified `coordinator` evidence claims it.
    pub coordinator: [u8; 32],
    /// The coordinator boot it was drawn in (its evidence's boot id).
    pub boot_id: [u8; 16],
    pub not_before: Time,
    pub not_after: Time,
}

/// What a node of an owner-rooted fleet presents: the owner's endorsement of the coordinator
/// key and the credential that key signed (both signed envelopes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presented {
    pub endorsement: Vec<u8>,
    pub credential: Vec<u8>,
}

/// Who a monitor's bundle says signs its fleet's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// One coordinator key (`fleet.coordinator`): credentials are its signed bytes.
    Coordinator([u8; 32]),
    /// The fleet's owner (`fleet.owner`): credentials are [`Presented`], under a coordinator
    /// key the owner endorsed.
    Owner([u8; 32]),
}

impl Endorsement {
    pub fn sign(&self, owner: &SigningKey) -> Result<Vec<u8>, DecodeError> {
        self.check()?;
        let body =
            postcard::to_allocvec(self).map_err(|_| DecodeError::Malformed("endorsement"))?;
        Ok(owner.seal(ENDORSEMENT_TAG, body))
    }

    /// The endorsement in `bytes` if the owner signed it (its window is the caller's to
    /// check: [`Endorsement::valid_at`]).
    pub fn decode(bytes: &[u8], owner: &[u8; 32]) -> Result<Endorsement, DecodeError> {
        let body = open(
            bytes,
            MAX_ENDORSEMENT,
            ENDORSEMENT_TAG,
            owner,
            "endorsement",
        )?;
        let e: Endorsement = decode_body(&body, "endorsement")?;
        e.check()?;
        Ok(e)
    }

    pub fn valid_at(&self, now: Time) -> bool {
        self.not_before <= now && now < self.not_after
    }

    fn check(&self) -> Result<(), DecodeError> {
        let bad = |why: &str| DecodeError::Invalid {
            what: "endorsement",
            why: why.into(),
        };
        if self.format != ENDORSEMENT_FORMAT {
            return Err(bad("unknown format"));
        }
        if !name_ok(&self.fleet_id) {
            return Err(bad("fleet id"));
        }
        if self.not_after <= self.not_before {
            return Err(bad("empty window"));
        }
        Ok(())
    }
}

impl Presented {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Strict decode, bounded before anything is allocated.
    pub fn decode(bytes: &[u8]) -> Result<Presented, DecodeError> {
        if bytes.len() > MAX_PRESENTED {
            return Err(DecodeError::TooLarge("presented credential"));
        }
        decode_body(bytes, "presented credential")
    }
}

/// Why a presented credential is refused under a [`Root`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresentedError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("endorsement: {0}")]
    Endorsement(DecodeError),
    #[error("the owner's endorsement is for fleet {0:?}")]
    OtherFleet(String),
    #[error("the owner's endorsement is not valid at {0}")]
    EndorsementExpired(Time),
}

/// The credential in `bytes` under `root`, its signatures checked (not its windows: the
/// caller checks them at its own time), and the endorsement that vouched for its signer.
/// SECURITY: under an owner root, the credential counts only if signed by the very key the
/// owner endorsed for `fleet_id`.
pub fn open_presented(
    bytes: &[u8],
    root: &Root,
    fleet_id: &str,
) -> Result<(Credential, Option<Endorsement>), PresentedError> {
    match root {
        Root::Coordinator(key) => Ok((
            Credential::decode(bytes, key).map_err(CredentialError::Decode)?,
            None,
        )),
        Root::Owner(owner) => {
            let p = Presented::decode(bytes).map_err(PresentedError::Endorsement)?;
            let e =
                Endorsement::decode(&p.endorsement, owner).map_err(PresentedError::Endorsement)?;
            if e.fleet_id != fleet_id {
                return Err(PresentedError::OtherFleet(e.fleet_id));
            }
            let c = Credential::decode(&p.credential, &e.coordinator)
                .map_err(CredentialError::Decode)?;
            Ok((c, Some(e)))
        }
    }
}

/// [`open_presented`] with both windows checked at `now`.
pub fn verify_presented(
    bytes: &[u8],
    root: &Root,
    fleet_id: &str,
    now: Time,
) -> Result<Credential, PresentedError> {
    let (c, e) = open_presented(bytes, root, fleet_id)?;
    if let Some(e) = e
        && !e.valid_at(now)
    {
        return Err(PresentedError::EndorsementExpired(now));
    }
    c.check_window(now)?;
    Ok(c)
}
