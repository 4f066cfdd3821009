//! RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and a frontier.
//!
//! leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ left ‖ right); the tree over `n` leaves
//! splits at the largest power of two strictly below `n` (RFC 9162 §2.1.1).

use alloc::vec::Vec;
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Maximum number of hashes in any proof (trees are limited to 2^63 leaves).
pub const MAX_PROOF_LEN: usize = 64;

/// Proof verification failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesReversed { old: u64, new: u64 },
    #[error("recomputed root does not match")]
    RootMismatch,
}

/// Hash of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// RFC 9162 leaf hash: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 9162 interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The right edge of an append-only tree: one perfect-subtree root per set bit of `size`.
/// O(log n) memory (64 × 32 B); this is all the monitor keeps.
#[derive(Clone)]
pub struct Frontier {
    size: u64,
    nodes: [Hash; 64],
}

impl Default for Frontier {
    fn default() -> Self {
        Self::new()
    }
}

impl Frontier {
    pub const fn new() -> Self {
        Frontier {
            size: 0,
            nodes: [[0; 32]; 64],
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash. Returns `false` (and changes nothing) if the tree is full (2^63).
    pub fn push_leaf_hash(&mut self, leaf: Hash) -> bool {
        if self.size >= 1 << 63 {
            return false;
        }
        let mut carry = leaf;
        let mut level = 0;
        while self.size & (1 << level) != 0 {
            carry = node_hash(&self.nodes[level], &carry);
            level += 1;
        }
        self.nodes[level] = carry;
        self.size += 1;
        true
    }

    /// Root hash of the current tree.
    pub fn root(&self) -> Hash {
        let mut acc: Option<Hash> = None;
        for level in 0..64 {
            if self.size & (1 << level) != 0 {
                acc = Some(match acc {
                    None => self.nodes[level],
                    Some(right) => node_hash(&self.nodes[level], &right),
                });
            }
        }
        acc.unwrap_or_else(empty_root)
    }
}

fn largest_pow2_below(n: u64) -> u64 {
    // n >= 2
    1 << (63 - (n - 1).leading_zeros())
}

/// A whole tree held in memory (verifier / host side): all levels of perfect subtrees.
#[derive(Clone, Default)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new() -> Self {
        Tree { levels: Vec::new() }
    }

    pub fn from_leaf_hashes(hashes: impl IntoIterator<Item = Hash>) -> Self {
        let mut t = Tree::new();
        for h in hashes {
            t.push_leaf_hash(h);
        }
        t
    }

    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push_leaf_hash(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let l = &self.levels[level];
            let parent = node_hash(&l[l.len() - 2], &l[l.len() - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
    }

    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        self.levels
            .first()?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// MTH(D[lo : lo+n]) for ranges produced by the RFC recursion (n >= 1, in range).
    fn mth(&self, lo: u64, n: u64) -> Hash {
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            return self.levels[level][(lo / n) as usize];
        }
        let k = largest_pow2_below(n);
        node_hash(&self.mth(lo, k), &self.mth(lo + k, n - k))
    }

    /// Root of the first `size` leaves (`size <= len`).
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        if size > self.len() {
            return None;
        }
        if size == 0 {
            return Some(empty_root());
        }
        Some(self.mth(0, size))
    }

    pub fn root(&self) -> Hash {
        self.root_at(self.len()).unwrap_or_else(empty_root)
    }

    /// RFC 9162 §2.1.3.1 inclusion proof for leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if index >= size || size > self.len() {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut out = Vec::new();
        self.path(index, 0, size, &mut out);
        Ok(out)
    }

    fn path(&self, m: u64, lo: u64, n: u64, out: &mut Vec<Hash>) {
        if n == 1 {
            return;
        }
        let k = largest_pow2_below(n);
        if m < k {
            self.path(m, lo, k, out);
            out.push(self.mth(lo + k, n - k));
        } else {
            self.path(m - k, lo + k, n - k, out);
            out.push(self.mth(lo, k));
        }
    }

    /// RFC 9162 §2.1.4.1 consistency proof from the first `old` leaves to the first `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        if old > new {
            return Err(ProofError::SizesReversed { old, new });
        }
        if new > self.len() {
            return Err(ProofError::IndexOutOfRange {
                index: new,
                size: self.len(),
            });
        }
        let mut out = Vec::new();
        if old == 0 || old == new {
            return Ok(out);
        }
        self.subproof(old, 0, new, true, &mut out);
        Ok(out)
    }

    fn subproof(&self, m: u64, lo: u64, n: u64, b: bool, out: &mut Vec<Hash>) {
        if m == n {
            if !b {
                out.push(self.mth(lo, n));
            }
            return;
        }
        let k = largest_pow2_below(n);
        if m <= k {
            self.subproof(m, lo, k, b, out);
            out.push(self.mth(lo + k, n - k));
        } else {
            self.subproof(m - k, lo + k, n - k, false, out);
            out.push(self.mth(lo, k));
        }
    }
}

/// RFC 9162 §2.1.3.2: verify that `leaf` is leaf `index` of the tree of `size` with `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::WrongLength);
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if !ct_eq(&r, root) {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: verify that the tree (`new`, `new_root`) extends (`old`, `old_root`).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesReversed { old, new });
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::WrongLength);
    }
    if old == new {
        // SECURITY: equal sizes must have an empty proof and identical roots.
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if ct_eq(old_root, new_root) {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old == 0 {
        // Every tree extends the empty tree; the proof is empty.
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if ct_eq(old_root, &empty_root()) {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut iter: &[Hash] = proof;
    let first: Hash = if old.is_power_of_two() {
        *old_root
    } else {
        let h = iter[0];
        iter = &iter[1..];
        h
    };
    let mut f = old - 1;
    let mut s = new - 1;
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut fr = first;
    let mut sr = first;
    for c in iter {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if !ct_eq(&fr, old_root) || !ct_eq(&sr, new_root) {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Constant-time equality for digests (roots are public, but keep comparisons uniform).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut d = 0u8;
    for (x, y) in a.iter().zip(b) {
        d |= x ^ y;
    }
    d == 0
}
