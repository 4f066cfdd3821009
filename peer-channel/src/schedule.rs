//! The key schedule (HKDF-SHA256 over the X25519 secret, labels bound to the transcript) and
//! the AEAD (ChaCha20-Poly1305) both the handshake and the records use.

use alloc::vec::Vec;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The protocol label: HKDF salt, prefix of every expand label and signed context.
pub(crate) const LABEL: &[u8] = b"omega-peer-channel/1";

pub(crate) type Key = Zeroizing<[u8; 32]>;

/// The pseudorandom key of one handshake.
pub(crate) struct Schedule {
    hk: Hkdf<Sha256>,
}

impl Schedule {
    /// SECURITY: `shared` must be contributory (the caller refuses low-order keys first).
    pub(crate) fn new(shared: &[u8; 32]) -> Self {
        Schedule {
            hk: Hkdf::<Sha256>::new(Some(LABEL), shared),
        }
    }

    /// `HKDF-Expand(prk, LABEL ‖ " " ‖ label ‖ transcript_hash, 32)`.
    pub(crate) fn key(&self, label: &[u8], th: &[u8; 32]) -> Key {
        let mut out = Zeroizing::new([0u8; 32]);
        let mut info = Vec::with_capacity(LABEL.len() + 1 + label.len() + 32);
        info.extend_from_slice(LABEL);
        info.push(b' ');
        info.extend_from_slice(label);
        info.extend_from_slice(th);
        // 32 bytes is far below HKDF-SHA256's 255 × 32 limit: expand cannot fail.
        let _ = self.hk.expand(&info, out.as_mut());
        out
    }
}

/// The running transcript hash.
#[derive(Clone)]
pub(crate) struct Transcript(Sha256);

impl Transcript {
    pub(crate) fn new() -> Self {
        let mut h = Sha256::new();
        h.update(LABEL);
        Transcript(h)
    }

    pub(crate) fn add(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn hash(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// 96-bit nonce: four zero bytes, then the 64-bit counter big-endian.
fn nonce(counter: u64) -> chacha20poly1305::Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n.into()
}

pub(crate) fn seal(key: &Key, counter: u64, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(key.as_ref().into());
    // Encryption only fails for lengths far above MAX_BODY.
    cipher
        .encrypt(
            &nonce(counter),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default()
}

pub(crate) fn open(key: &Key, counter: u64, aad: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
    let cipher = ChaCha20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt(
            &nonce(counter),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}
