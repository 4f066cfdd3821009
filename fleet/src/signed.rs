//! The signed envelope every fleet object travels in: `{ body, signature }` in postcard, the
//! Ed25519 signature over `tag ‖ body`. Tags are NUL-terminated so no tag is a prefix of
//! another: a credential never verifies as a placement or a policy.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::DecodeError;

pub const POLICY_TAG: &[u8] = b"omega/fleet/policy/v1\0";
pub const CREDENTIAL_TAG: &[u8] = b"omega/fleet/credential/v1\0";
pub const PLACEMENT_TAG: &[u8] = b"omega/fleet/placement/v1\0";
pub const ENDORSEMENT_TAG: &[u8] = b"omega/fleet/endorsement/v1\0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
}

fn message(tag: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(tag.len() + body.len());
    m.extend_from_slice(tag);
    m.extend_from_slice(body);
    m
}

/// An Ed25519 signing key (the coordinator's or the policy owner's), from a 32-byte seed.
pub struct SigningKey(ed25519_compact::KeyPair);

impl SigningKey {
    /// `None` for an all-zero seed (SECURITY: a failed RNG; never sign with it).
    pub fn from_seed(seed: [u8; 32]) -> Option<Self> {
        if seed == [0; 32] {
            return None;
        }
        ed25519_compact::KeyPair::try_from_seed(ed25519_compact::Seed::new(seed))
            .ok()
            .map(SigningKey)
    }

    pub fn public(&self) -> [u8; 32] {
        *self.0.pk
    }

    /// The envelope of `body` under `tag`, encoded.
    pub fn seal(&self, tag: &[u8], body: Vec<u8>) -> Vec<u8> {
        let signature = self.0.sk.sign(message(tag, &body), None).to_vec();
        // Encoding a struct of two byte vectors into a Vec cannot fail.
        postcard::to_allocvec(&Envelope { body, signature }).unwrap_or_default()
    }
}

/// Decodes an envelope of at most `max` bytes and checks its signature under `public` and
/// `tag`; returns the body.
pub fn open(
    bytes: &[u8],
    max: usize,
    tag: &[u8],
    public: &[u8; 32],
    what: &'static str,
) -> Result<Vec<u8>, DecodeError> {
    // SECURITY: cap before postcard allocates anything.
    if bytes.len() > max {
        return Err(DecodeError::TooLarge(what));
    }
    let (env, rest): (Envelope, _) =
        postcard::take_from_bytes(bytes).map_err(|_| DecodeError::Malformed(what))?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(what));
    }
    let sig: [u8; 64] = env
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| DecodeError::Malformed(what))?;
    let pk = ed25519_compact::PublicKey::new(*public);
    pk.verify(
        message(tag, &env.body),
        &ed25519_compact::Signature::new(sig),
    )
    .map_err(|_| DecodeError::BadSignature(what))?;
    Ok(env.body)
}

/// Strict postcard decode of a body: no trailing bytes.
pub fn decode_body<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    what: &'static str,
) -> Result<T, DecodeError> {
    let (v, rest): (T, _) =
        postcard::take_from_bytes(body).map_err(|_| DecodeError::Malformed(what))?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(what));
    }
    Ok(v)
}
