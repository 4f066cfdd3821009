//! The per-principal evidence bundle and the byte strings that are hashed and signed.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::EvidenceError;

pub type Hash = [u8; 32];

/// Bundle format version.
pub const BUNDLE_VERSION: u8 = 1;
/// Largest encoded bundle accepted (a report is 1184 bytes; proofs are ≤ 64 hashes).
pub const MAX_BUNDLE: usize = 64 * 1024;
/// Most root updates in one chain.
pub const MAX_UPDATES: usize = 256;
/// Most hashes in any proof.
pub const MAX_PROOF: usize = 64;
/// Most revoked indices in one update.
pub const MAX_REVOKED: usize = 1024;

/// Domain tags (NUL-terminated so no tag is a prefix of another).
pub const REPORT_DATA_TAG: &[u8] = b"omega/evidence/report-data/v1\0";
pub const ROOT_UPDATE_TAG: &[u8] = b"omega/evidence/root-update/v1\0";
pub const HEAD_TAG: &[u8] = b"omega/evidence/head/v1\0";

/// REPORT_DATA = SHA-512(tag ‖ nonce[32] ‖ root[32] ‖ SHA-256(monitor public key[32])).
/// All fields are fixed-length, so the concatenation is unambiguous.
pub fn report_data(nonce: &[u8; 32], root: &Hash, monitor_key: &[u8; 32]) -> [u8; 64] {
    let kh: [u8; 32] = Sha256::digest(monitor_key).into();
    let mut h = Sha512::new();
    h.update(REPORT_DATA_TAG);
    h.update(nonce);
    h.update(root);
    h.update(kh);
    h.finalize().into()
}

/// A monitor-signed extension of the evidence tree (later principals, revocations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootUpdate {
    /// 1, 2, 3, ... in chain order.
    pub seq: u32,
    pub new_size: u64,
    pub new_root: Hash,
    /// RFC 9162 consistency proof from the previous (size, root) to (new_size, new_root).
    pub consistency: Vec<Hash>,
    /// Leaf indices (all below the previous size) whose claims are superseded.
    pub revoked: Vec<u64>,
    /// Ed25519 over [`update_message`].
    pub signature: Vec<u8>,
}

/// tag ‖ REPORT_DATA[64] ‖ seq u32le ‖ old_size u64le ‖ old_root ‖ new_size u64le ‖ new_root
/// ‖ n_revoked u32le ‖ revoked u64le...
/// Binding REPORT_DATA (hence the report nonce and base root) makes an update from another
/// attestation session useless here.
pub fn update_message(
    report_data: &[u8; 64],
    seq: u32,
    old_size: u64,
    old_root: &Hash,
    new_size: u64,
    new_root: &Hash,
    revoked: &[u64],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(
        ROOT_UPDATE_TAG.len() + 64 + 4 + 8 + 32 + 8 + 32 + 4 + 8 * revoked.len(),
    );
    m.extend_from_slice(ROOT_UPDATE_TAG);
    m.extend_from_slice(report_data);
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&old_size.to_le_bytes());
    m.extend_from_slice(old_root);
    m.extend_from_slice(&new_size.to_le_bytes());
    m.extend_from_slice(new_root);
    m.extend_from_slice(&(revoked.len() as u32).to_le_bytes());
    for r in revoked {
        m.extend_from_slice(&r.to_le_bytes());
    }
    m
}

/// A monitor-signed statement that (seq, size, root) is the current head, for the
/// verifier's nonce: freshness when the hardware report is older than the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub nonce: [u8; 32],
    /// Ed25519 over [`head_message`].
    pub signature: Vec<u8>,
}

/// tag ‖ REPORT_DATA[64] ‖ nonce[32] ‖ seq u32le ‖ size u64le ‖ root.
pub fn head_message(
    report_data: &[u8; 64],
    nonce: &[u8; 32],
    seq: u32,
    size: u64,
    root: &Hash,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_TAG.len() + 64 + 32 + 4 + 8 + 32);
    m.extend_from_slice(HEAD_TAG);
    m.extend_from_slice(report_data);
    m.extend_from_slice(nonce);
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&size.to_le_bytes());
    m.extend_from_slice(root);
    m
}

/// How the base root is bound to the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binding {
    /// A raw SEV-SNP attestation report whose REPORT_DATA is [`report_data`].
    Snp { report: Vec<u8> },
    /// No confidential hardware: CLEARLY UNATTESTED. Carries the REPORT_DATA the monitor
    /// would have requested; verifiers refuse it unless explicitly allowed.
    Unattested { report_data: Vec<u8> },
}

/// Everything principal P needs to check its own claim, and nothing about the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub version: u8,
    /// The monitor's Ed25519 public key (its hash is in REPORT_DATA).
    pub monitor_key: [u8; 32],
    /// The nonce in REPORT_DATA.
    pub report_nonce: [u8; 32],
    /// The tree the hardware report attests.
    pub base_size: u64,
    pub base_root: Hash,
    /// Root updates since the report, in order.
    pub updates: Vec<RootUpdate>,
    /// Freshness for a verifier nonce other than `report_nonce` (or after updates).
    pub head: Option<Head>,
    /// P's leaf: index, encoded [`crate::SaltedLeaf`], inclusion proof in the final root.
    pub leaf_index: u64,
    pub leaf: Vec<u8>,
    pub inclusion: Vec<Hash>,
    pub binding: Binding,
}

impl Bundle {
    pub fn encode(&self) -> Result<Vec<u8>, EvidenceError> {
        postcard::to_allocvec(self).map_err(|_| EvidenceError::Invalid("bundle encoding"))
    }

    /// Strict decode of untrusted bytes: size cap, no trailing bytes, every length bounded.
    pub fn decode(bytes: &[u8]) -> Result<Self, EvidenceError> {
        // SECURITY: cap the input before postcard allocates anything for it.
        if bytes.len() > MAX_BUNDLE {
            return Err(EvidenceError::TooLarge("bundle"));
        }
        let (b, rest): (Bundle, _) =
            postcard::take_from_bytes(bytes).map_err(|_| EvidenceError::Decode("bundle"))?;
        if !rest.is_empty() {
            return Err(EvidenceError::Decode("trailing bytes after bundle"));
        }
        b.check_shape()?;
        Ok(b)
    }

    /// Bounds and lengths (not cryptography).
    pub fn check_shape(&self) -> Result<(), EvidenceError> {
        if self.version != BUNDLE_VERSION {
            return Err(EvidenceError::Invalid("unknown bundle version"));
        }
        if self.updates.len() > MAX_UPDATES {
            return Err(EvidenceError::TooLarge("root-update chain"));
        }
        if self.inclusion.len() > MAX_PROOF {
            return Err(EvidenceError::TooLarge("inclusion proof"));
        }
        for u in &self.updates {
            if u.consistency.len() > MAX_PROOF {
                return Err(EvidenceError::TooLarge("consistency proof"));
            }
            if u.revoked.len() > MAX_REVOKED {
                return Err(EvidenceError::TooLarge("revocation list"));
            }
            if u.signature.len() != 64 {
                return Err(EvidenceError::Invalid(
                    "root-update signature must be 64 bytes",
                ));
            }
        }
        if let Some(h) = &self.head
            && h.signature.len() != 64
        {
            return Err(EvidenceError::Invalid("head signature must be 64 bytes"));
        }
        if self.leaf.len() > crate::claim::MAX_LEAF {
            return Err(EvidenceError::TooLarge("leaf"));
        }
        match &self.binding {
            Binding::Snp { report } if report.len() != sev_snp::report::REPORT_LEN => {
                Err(EvidenceError::Invalid("SNP report must be 1184 bytes"))
            }
            Binding::Unattested { report_data } if report_data.len() != 64 => Err(
                EvidenceError::Invalid("unattested marker must carry 64 bytes"),
            ),
            _ => Ok(()),
        }
    }
}
