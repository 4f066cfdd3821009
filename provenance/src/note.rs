//! Signed checkpoints in the C2SP `signed-note` / `tlog-checkpoint` formats, Ed25519.
//!
//! ```text
//! <origin>\n<decimal tree size>\n<base64 root hash>\n
//! \n
//! — <key name> <base64(key hash[4] ‖ Ed25519 signature[64])>\n
//! ```
//! key hash = SHA-256(key name ‖ "\n" ‖ 0x01 ‖ public key)[..4]; verifier key string =
//! `<name>+<hex key hash>+<base64(0x01 ‖ public key)>`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use sha2::{Digest, Sha256};

use crate::b64;
use crate::merkle::Hash;

/// Signature algorithm byte for Ed25519 in C2SP signed notes.
pub const ALG_ED25519: u8 = 0x01;
/// Largest note accepted by the parser.
pub const MAX_NOTE: usize = 16 * 1024;
const SIG_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("note too large")]
    TooLarge,
    #[error("note is not UTF-8")]
    NotUtf8,
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("malformed verifier key: {0}")]
    BadKey(&'static str),
    #[error("no signature by key {0:?}")]
    NoSignature(String),
    #[error("signature by key {0:?} does not verify")]
    BadSignature(String),
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
}

/// Key name rules from C2SP: non-empty, no whitespace, no '+'.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The monitor's log signing key (Ed25519), derived from a 32-byte seed.
pub struct LogKey {
    name: String,
    kp: ed25519_compact::KeyPair,
}

impl LogKey {
    /// Returns `None` if `name` is not a valid note key name or the seed is all zeros
    /// (SECURITY: a zero seed means the RNG failed; never sign with it).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Option<Self> {
        if !valid_name(name) {
            return None;
        }
        let kp = ed25519_compact::KeyPair::try_from_seed(ed25519_compact::Seed::new(seed)).ok()?;
        Some(LogKey {
            name: name.to_string(),
            kp,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public(&self) -> [u8; 32] {
        *self.kp.pk
    }

    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            public: self.public(),
        }
    }

    /// Raw Ed25519 signature (deterministic, RFC 8032).
    pub fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        *self.kp.sk.sign(msg, None)
    }

    /// Signs `text` (must end with '\n') as a C2SP note.
    pub fn sign_note(&self, text: &str) -> String {
        let sig = self.sign_raw(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&key_hash(&self.name, &self.public()));
        blob.extend_from_slice(&sig);
        format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, b64::encode(&blob))
    }
}

/// A note verifier key (name + Ed25519 public key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub public: [u8; 32],
}

/// Verifies a raw Ed25519 signature.
pub fn verify_raw(public: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let pk = ed25519_compact::PublicKey::new(*public);
    pk.verify(msg, &ed25519_compact::Signature::new(*sig))
        .is_ok()
}

impl VerifierKey {
    /// `<name>+<8 hex key hash>+<base64(0x01 ‖ key)>`.
    pub fn encode(&self) -> String {
        let mut k = Vec::with_capacity(33);
        k.push(ALG_ED25519);
        k.extend_from_slice(&self.public);
        let h = key_hash(&self.name, &self.public);
        format!(
            "{}+{:02x}{:02x}{:02x}{:02x}+{}",
            self.name,
            h[0],
            h[1],
            h[2],
            h[3],
            b64::encode(&k)
        )
    }

    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let s = s.trim();
        // The base64 key may itself contain '+': split at the first two only (as Go's
        // golang.org/x/mod/sumdb/note does).
        let mut parts = s.splitn(3, '+');
        let name = parts.next().ok_or(NoteError::BadKey("empty"))?;
        let hash_hex = parts.next().ok_or(NoteError::BadKey("missing key hash"))?;
        let key_b64 = parts.next().ok_or(NoteError::BadKey("missing key"))?;
        if !valid_name(name) {
            return Err(NoteError::BadKey("invalid name"));
        }
        let raw = b64::decode(key_b64.as_bytes()).ok_or(NoteError::BadKey("bad base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(NoteError::BadKey("not an Ed25519 key (alg 0x01, 32 bytes)"));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&raw[1..]);
        let h = key_hash(name, &public);
        let want = format!("{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3]);
        if hash_hex != want {
            return Err(NoteError::BadKey("key hash does not match name and key"));
        }
        Ok(VerifierKey {
            name: name.to_string(),
            public,
        })
    }

    /// Verifies a signed note; returns the signed text. Signatures by other keys are ignored.
    pub fn verify_note<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        if note.len() > MAX_NOTE {
            return Err(NoteError::TooLarge);
        }
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no signature block"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block must end with newline",
            ));
        }
        let want_hash = key_hash(&self.name, &self.public);
        let mut saw_ours = false;
        for line in sigs[..sigs.len() - 1].split('\n') {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
                "signature line must start with an em dash",
            ))?;
            let (name, b) = rest
                .split_once(' ')
                .ok_or(NoteError::Malformed("signature line"))?;
            let blob = b64::decode(b.as_bytes()).ok_or(NoteError::Malformed("signature base64"))?;
            if blob.len() < 5 {
                return Err(NoteError::Malformed("signature too short"));
            }
            if name != self.name || blob[..4] != want_hash {
                continue;
            }
            saw_ours = true;
            if blob.len() != 68 {
                return Err(NoteError::BadSignature(self.name.clone()));
            }
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&blob[4..]);
            if verify_raw(&self.public, text.as_bytes(), &sig) {
                return Ok(text);
            }
        }
        if saw_ours {
            Err(NoteError::BadSignature(self.name.clone()))
        } else {
            Err(NoteError::NoSignature(self.name.clone()))
        }
    }
}

/// A tlog checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            b64::encode(&self.root)
        )
    }

    pub fn sign(&self, key: &LogKey) -> String {
        key.sign_note(&self.text())
    }

    /// Parses a checkpoint body (extension lines after the root are allowed and ignored).
    pub fn parse_text(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("missing origin"))?;
        if origin.is_empty() {
            return Err(NoteError::BadCheckpoint("empty origin"));
        }
        let size_s = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("missing size"))?;
        // SECURITY: canonical decimal only (no sign, no leading zeros) so that one tree state
        // has one signed text.
        if size_s.is_empty()
            || !size_s.bytes().all(|b| b.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(NoteError::BadCheckpoint("size is not a canonical decimal"));
        }
        let size: u64 = size_s
            .parse()
            .map_err(|_| NoteError::BadCheckpoint("size overflow"))?;
        let root_s = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("missing root"))?;
        let root_v =
            b64::decode(root_s.as_bytes()).ok_or(NoteError::BadCheckpoint("root base64"))?;
        let root: Hash = root_v
            .try_into()
            .map_err(|_| NoteError::BadCheckpoint("root length"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// Verifies the signature with `key` and parses the body.
    pub fn verify(note: &str, key: &VerifierKey) -> Result<Self, NoteError> {
        let text = key.verify_note(note)?;
        Self::parse_text(text)
    }
}
