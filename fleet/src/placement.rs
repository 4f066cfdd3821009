//! A placement signed by the coordinator: this bundle, on this node, in this role, answering
//! this challenge nonce. The scheduler proposes placements; only the coordinator's signature
//! makes one count, and its nonce is the challenge the node's evidence must bind.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::signed::{PLACEMENT_TAG, SigningKey, decode_body, open};
use crate::{DecodeError, Time, name_ok};

pub const PLACEMENT_FORMAT: u8 = 1;
pub const MAX_PLACEMENT: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub format: u8,
    pub fleet_id: String,
    /// The workload (stable across restarts on other nodes).
    pub workload: String,
    /// The node the coordinator admits under this placement.
    pub node_id: String,
    pub role: String,
    /// SHA-256 of the bundle's manifest (what the node's `bundle` evidence claims).
    pub bundle_digest: [u8; 32],
    /// The challenge: the node's evidence must bind it.
    pub nonce: [u8; 32],
    pub issued_at: Time,
    pub expires_at: Time,
    pub policy_version: u64,
}

impl Placement {
    fn validate(&self) -> Result<(), DecodeError> {
        let ok = self.format == PLACEMENT_FORMAT
            && name_ok(&self.fleet_id)
            && name_ok(&self.workload)
            && name_ok(&self.node_id)
            && name_ok(&self.role)
            && self.expires_at > self.issued_at;
        if ok {
            Ok(())
        } else {
            Err(DecodeError::Invalid {
                what: "placement",
                why: "format, names or times".into(),
            })
        }
    }

    pub fn sign(&self, coordinator: &SigningKey) -> Result<Vec<u8>, DecodeError> {
        self.validate()?;
        let body = postcard::to_allocvec(self).map_err(|_| DecodeError::Malformed("placement"))?;
        Ok(coordinator.seal(PLACEMENT_TAG, body))
    }

    /// Decodes and checks the coordinator's signature (a node boots nothing else).
    pub fn verify(bytes: &[u8], coordinator: &[u8; 32]) -> Result<Placement, DecodeError> {
        let body = open(
            bytes,
            MAX_PLACEMENT,
            PLACEMENT_TAG,
            coordinator,
            "placement",
        )?;
        Self::from_body(&body)
    }

    /// Strict decode of an (already signature-checked) placement body.
    pub fn from_body(body: &[u8]) -> Result<Placement, DecodeError> {
        let p: Placement = decode_body(body, "placement")?;
        p.validate()?;
        Ok(p)
    }
}
