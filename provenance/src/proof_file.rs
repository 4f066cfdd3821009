//! Text files for proofs exchanged with verifiers (see docs/provenance.md):
//!
//! ```text
//! omega-inclusion-proof v1        omega-consistency-proof v1
//! index <decimal>                 old <decimal>
//! size <decimal>                  new <decimal>
//! <64 hex chars per hash>...      <64 hex chars per hash>...
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::merkle::{Hash, MAX_PROOF_LEN};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofFileError {
    #[error("proof file: {0}")]
    Malformed(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProofFile {
    pub index: u64,
    pub size: u64,
    pub hashes: Vec<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProofFile {
    pub old: u64,
    pub new: u64,
    pub hashes: Vec<Hash>,
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    s.chunks(2)
        .map(|p| Some((nib(p[0])? << 4) | nib(p[1])?))
        .collect()
}

fn render(magic: &str, a: (&str, u64), b: (&str, u64), hashes: &[Hash]) -> String {
    let mut s = format!("{magic}\n{} {}\n{} {}\n", a.0, a.1, b.0, b.1);
    for h in hashes {
        s.push_str(&hex(h));
        s.push('\n');
    }
    s
}

fn parse(
    text: &str,
    magic: &str,
    ka: &str,
    kb: &str,
) -> Result<(u64, u64, Vec<Hash>), ProofFileError> {
    let mut lines = text.lines();
    if lines.next() != Some(magic) {
        return Err(ProofFileError::Malformed("wrong header line"));
    }
    let mut num = |key: &str| -> Result<u64, ProofFileError> {
        let l = lines.next().ok_or(ProofFileError::Malformed("truncated"))?;
        let (k, v) = l
            .split_once(' ')
            .ok_or(ProofFileError::Malformed("expected 'key value'"))?;
        if k != key {
            return Err(ProofFileError::Malformed("unexpected key"));
        }
        v.parse()
            .map_err(|_| ProofFileError::Malformed("bad number"))
    };
    let a = num(ka)?;
    let b = num(kb)?;
    let mut hashes = Vec::new();
    for l in lines {
        if l.is_empty() {
            continue;
        }
        if hashes.len() >= MAX_PROOF_LEN {
            return Err(ProofFileError::Malformed("too many hashes"));
        }
        let v = unhex(l).ok_or(ProofFileError::Malformed("bad hex"))?;
        hashes.push(
            v.try_into()
                .map_err(|_| ProofFileError::Malformed("hash is not 32 bytes"))?,
        );
    }
    Ok((a, b, hashes))
}

impl InclusionProofFile {
    pub const MAGIC: &'static str = "omega-inclusion-proof v1";
    pub fn render(&self) -> String {
        render(
            Self::MAGIC,
            ("index", self.index),
            ("size", self.size),
            &self.hashes,
        )
    }
    pub fn parse(text: &str) -> Result<Self, ProofFileError> {
        let (index, size, hashes) = parse(text, Self::MAGIC, "index", "size")?;
        Ok(InclusionProofFile {
            index,
            size,
            hashes,
        })
    }
}

impl ConsistencyProofFile {
    pub const MAGIC: &'static str = "omega-consistency-proof v1";
    pub fn render(&self) -> String {
        render(
            Self::MAGIC,
            ("old", self.old),
            ("new", self.new),
            &self.hashes,
        )
    }
    pub fn parse(text: &str) -> Result<Self, ProofFileError> {
        let (old, new, hashes) = parse(text, Self::MAGIC, "old", "new")?;
        Ok(ConsistencyProofFile { old, new, hashes })
    }
}
