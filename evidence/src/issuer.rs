//! Monitor side: builds the evidence tree, binds it to a report, signs root updates and
//! cuts per-principal bundles.

use alloc::string::String;
use alloc::vec::Vec;

use omega_provenance::merkle::{Tree, leaf_hash};
use omega_provenance::note::LogKey;

use crate::EvidenceError;
use crate::bundle::{
    BUNDLE_VERSION, Binding, Bundle, Hash, Head, MAX_UPDATES, RootUpdate, head_message,
    report_data, update_message,
};
use crate::claim::{Claim, LEAF_VERSION, SaltedLeaf};

struct Published {
    seq: u32,
    size: u64,
    root: Hash,
}

/// The monitor's evidence state.
pub struct Issuer {
    key: LogKey,
    leaves: Vec<Vec<u8>>,
    principals: Vec<String>,
    revoked: Vec<bool>,
    tree: Tree,
    pending_revoked: Vec<u64>,
    base: Option<([u8; 32], u64, Hash, [u8; 64])>,
    updates: Vec<RootUpdate>,
    head: Option<Published>,
}

impl Issuer {
    /// `seed`: the monitor key seed (from the monitor's RNG; never leaves the guest).
    /// An all-zero seed (failed RNG) is refused.
    pub fn new(seed: [u8; 32]) -> Result<Self, EvidenceError> {
        let key = LogKey::from_seed("omega-monitor", seed)
            .ok_or(EvidenceError::Invalid("all-zero monitor key seed"))?;
        Ok(Issuer {
            key,
            leaves: Vec::new(),
            principals: Vec::new(),
            revoked: Vec::new(),
            tree: Tree::new(),
            pending_revoked: Vec::new(),
            base: None,
            updates: Vec::new(),
            head: None,
        })
    }

    pub fn monitor_public(&self) -> [u8; 32] {
        self.key.public()
    }

    fn live_index(&self, principal: &str) -> Option<u64> {
        self.principals
            .iter()
            .zip(&self.revoked)
            .rposition(|(p, r)| p == principal && !r)
            .map(|i| i as u64)
    }

    /// Adds a principal's claim with its salt (32 fresh random bytes). Fails if the principal
    /// already has a live claim (use [`Issuer::replace`]).
    pub fn add(&mut self, claim: Claim, salt: [u8; 32]) -> Result<u64, EvidenceError> {
        let principal = claim.principal();
        if self.live_index(&principal).is_some() {
            return Err(EvidenceError::Invalid("principal already has a claim"));
        }
        let bytes = SaltedLeaf {
            version: LEAF_VERSION,
            salt,
            claim,
        }
        .encode()?;
        self.tree.push_leaf_hash(leaf_hash(&bytes));
        self.leaves.push(bytes);
        self.principals.push(principal);
        self.revoked.push(false);
        Ok(self.tree.len() - 1)
    }

    /// Supersedes a principal's claim: the old leaf is revoked in the next root update.
    pub fn replace(&mut self, claim: Claim, salt: [u8; 32]) -> Result<u64, EvidenceError> {
        let principal = claim.principal();
        let old = self
            .live_index(&principal)
            .ok_or(EvidenceError::UnknownPrincipal)?;
        if self.head.as_ref().is_none_or(|h| old >= h.size) {
            return Err(EvidenceError::Invalid("can only replace a published claim"));
        }
        self.revoked[old as usize] = true;
        self.pending_revoked.push(old);
        self.add(claim, salt)
    }

    /// Freezes the current tree as the attested base; returns the REPORT_DATA to put in the
    /// hardware report request.
    pub fn attest(&mut self, nonce: [u8; 32]) -> Result<[u8; 64], EvidenceError> {
        if self.base.is_some() {
            return Err(EvidenceError::Invalid("already attested; use root updates"));
        }
        if self.tree.is_empty() {
            return Err(EvidenceError::Invalid("no claims"));
        }
        let root = self.tree.root();
        let rd = report_data(&nonce, &root, &self.key.public());
        self.base = Some((nonce, self.tree.len(), root, rd));
        self.head = Some(Published {
            seq: 0,
            size: self.tree.len(),
            root,
        });
        Ok(rd)
    }

    /// Signs a root update covering everything added or replaced since the last head.
    pub fn publish_update(&mut self) -> Result<RootUpdate, EvidenceError> {
        let (_, _, _, rd) = self
            .base
            .ok_or(EvidenceError::Invalid("not attested yet"))?;
        let head = self
            .head
            .as_ref()
            .ok_or(EvidenceError::Invalid("not attested yet"))?;
        if self.updates.len() >= MAX_UPDATES {
            return Err(EvidenceError::TooLarge("root-update chain"));
        }
        let new_size = self.tree.len();
        let new_root = self.tree.root();
        let seq = head.seq + 1;
        let consistency = self
            .tree
            .consistency_proof(head.size, new_size)
            .map_err(|_| EvidenceError::Invalid("consistency proof"))?;
        let revoked = core::mem::take(&mut self.pending_revoked);
        let msg = update_message(
            &rd, seq, head.size, &head.root, new_size, &new_root, &revoked,
        );
        let u = RootUpdate {
            seq,
            new_size,
            new_root,
            consistency,
            revoked,
            signature: self.key.sign_raw(&msg).to_vec(),
        };
        self.updates.push(u.clone());
        self.head = Some(Published {
            seq,
            size: new_size,
            root: new_root,
        });
        Ok(u)
    }

    /// Inclusion proof of leaf `index` in the current published head (hashes only).
    pub fn inclusion_proof(&self, index: u64) -> Option<alloc::vec::Vec<Hash>> {
        let head = self.head.as_ref()?;
        self.tree.inclusion_proof(index, head.size).ok()
    }

    /// Cuts principal `principal`'s bundle. `binding` is the hardware report obtained for the
    /// REPORT_DATA from [`Issuer::attest`] or `None` for an unattested platform. `fresh_nonce`:
    /// a verifier nonce to sign the current head for.
    pub fn bundle(
        &self,
        principal: &str,
        report: Option<Vec<u8>>,
        fresh_nonce: Option<[u8; 32]>,
    ) -> Result<Bundle, EvidenceError> {
        let (nonce, base_size, base_root, rd) = self
            .base
            .ok_or(EvidenceError::Invalid("not attested yet"))?;
        let head = self
            .head
            .as_ref()
            .ok_or(EvidenceError::Invalid("not attested yet"))?;
        let index = self
            .live_index(principal)
            .ok_or(EvidenceError::UnknownPrincipal)?;
        if index >= head.size {
            return Err(EvidenceError::Invalid(
                "principal not yet published in a root update",
            ));
        }
        let inclusion = self
            .tree
            .inclusion_proof(index, head.size)
            .map_err(|_| EvidenceError::Invalid("inclusion proof"))?;
        let head_sig = fresh_nonce.map(|n| Head {
            nonce: n,
            signature: self
                .key
                .sign_raw(&head_message(&rd, &n, head.seq, head.size, &head.root))
                .to_vec(),
        });
        Ok(Bundle {
            version: BUNDLE_VERSION,
            monitor_key: self.key.public(),
            report_nonce: nonce,
            base_size,
            base_root,
            updates: self.updates.clone(),
            head: head_sig,
            leaf_index: index,
            leaf: self.leaves[index as usize].clone(),
            inclusion,
            binding: match report {
                Some(r) => Binding::Snp { report: r },
                None => Binding::Unattested {
                    report_data: rd.to_vec(),
                },
            },
        })
    }
}
