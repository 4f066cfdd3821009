//! A minimal rustls crypto provider from RustCrypto primitives, for the bare-metal guest:
//! TLS 1.3 only, one cipher suite (TLS_CHACHA20_POLY1305_SHA256), one key exchange (X25519),
//! one signature scheme (Ed25519, verification only). ChaCha20-Poly1305 rather than AES-GCM:
//! its software implementation is constant-time and fast without AES-NI, which the kernel
//! target does not enable.
//!
//! Randomness (client random, X25519 ephemeral keys) comes from the caller's
//! [`SecureRandom`]: the kernel's entropy source in the guest, the OS in host tests.

use alloc::boxed::Box;
use alloc::sync::Arc;

use chacha20poly1305::aead::Buffer;
use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit};
use hmac::{Hmac, Mac};
use rustls::crypto::cipher::{
    AeadKey, BorrowedPayload, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter,
    MessageEncrypter, Nonce, OutboundOpaqueMessage, OutboundPlainMessage, PrefixedPayload,
    Tls13AeadAlgorithm, UnsupportedOperationError, make_tls13_aad,
};
use rustls::crypto::{
    ActiveKeyExchange, CipherSuiteCommon, CryptoProvider, GetRandomFailed, KeyProvider,
    SecureRandom, SharedSecret, SupportedKxGroup, WebPkiSupportedAlgorithms, hash, hmac as rhmac,
    tls13::HkdfUsingHmac,
};
use rustls::pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};
use rustls::{
    CipherSuite, ConnectionTrafficSecrets, ContentType, NamedGroup, PeerMisbehaved,
    ProtocolVersion, SignatureScheme, SupportedCipherSuite, Tls13CipherSuite,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// The provider: [`TLS13_CHACHA20_POLY1305_SHA256`], X25519, Ed25519; randomness from `random`.
pub fn provider(random: &'static dyn SecureRandom) -> CryptoProvider {
    CryptoProvider {
        cipher_suites: alloc::vec![TLS13_CHACHA20_POLY1305_SHA256],
        kx_groups: alloc::vec![Box::leak(Box::new(X25519 { random })) as &dyn SupportedKxGroup],
        signature_verification_algorithms: SIGNATURE_ALGORITHMS,
        secure_random: random,
        key_provider: &NoKeys,
    }
}

/// TLS_CHACHA20_POLY1305_SHA256 (RFC 8446 §B.4) over RustCrypto's `chacha20poly1305`,
/// `sha2` and `hmac`.
pub static TLS13_CHACHA20_POLY1305_SHA256: SupportedCipherSuite =
    SupportedCipherSuite::Tls13(&Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            hash_provider: &Sha256Hash,
            // RFC 8446 §5.5: ChaCha20-Poly1305 has no practical record limit.
            confidentiality_limit: u64::MAX,
        },
        hkdf_provider: &HkdfUsingHmac(&HmacSha256),
        aead_alg: &Chacha20Poly1305,
        quic: None,
    });

/// Ed25519, the proxy's key type (its evidence's `tls_spki`).
pub static SIGNATURE_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[&Ed25519Verify],
    mapping: &[(SignatureScheme::ED25519, &[&Ed25519Verify])],
};

// ---- hash and HMAC ----

struct Sha256Hash;

impl hash::Hash for Sha256Hash {
    fn start(&self) -> Box<dyn hash::Context> {
        Box::new(Sha256Context(Sha256::new()))
    }

    fn hash(&self, data: &[u8]) -> hash::Output {
        hash::Output::new(&Sha256::digest(data)[..])
    }

    fn algorithm(&self) -> hash::HashAlgorithm {
        hash::HashAlgorithm::SHA256
    }

    fn output_len(&self) -> usize {
        32
    }
}

struct Sha256Context(Sha256);

impl hash::Context for Sha256Context {
    fn fork_finish(&self) -> hash::Output {
        hash::Output::new(&self.0.clone().finalize()[..])
    }

    fn fork(&self) -> Box<dyn hash::Context> {
        Box::new(Sha256Context(self.0.clone()))
    }

    fn finish(self: Box<Self>) -> hash::Output {
        hash::Output::new(&self.0.finalize()[..])
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

struct HmacSha256;

impl rhmac::Hmac for HmacSha256 {
    fn with_key(&self, key: &[u8]) -> Box<dyn rhmac::Key> {
        // HMAC takes keys of any length (longer ones are hashed): this cannot fail.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        Box::new(HmacSha256Key(mac))
    }

    fn hash_output_len(&self) -> usize {
        32
    }
}

struct HmacSha256Key(Hmac<Sha256>);

impl rhmac::Key for HmacSha256Key {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> rhmac::Tag {
        let mut mac = self.0.clone();
        mac.update(first);
        for m in middle {
            mac.update(m);
        }
        mac.update(last);
        rhmac::Tag::new(&mac.finalize().into_bytes()[..])
    }

    fn tag_len(&self) -> usize {
        32
    }
}

// ---- AEAD ----

/// Poly1305's tag.
const TAG_LEN: usize = 16;

struct Chacha20Poly1305;

impl Chacha20Poly1305 {
    fn cipher(key: &AeadKey) -> Tls13Cipher {
        // rustls derives keys of `key_len()` bytes: the key size always matches.
        let key = chacha20poly1305::Key::from_slice(key.as_ref());
        Tls13Cipher(ChaCha20Poly1305::new(key))
    }
}

impl Tls13AeadAlgorithm for Chacha20Poly1305 {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Sealer(Self::cipher(&key), iv))
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Opener(Self::cipher(&key), iv))
    }

    fn key_len(&self) -> usize {
        32
    }

    fn extract_keys(
        &self,
        _key: AeadKey,
        _iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        // SECURITY: traffic secrets never leave the connection (no kTLS here).
        Err(UnsupportedOperationError)
    }
}

struct Tls13Cipher(ChaCha20Poly1305);
struct Sealer(Tls13Cipher, Iv);
struct Opener(Tls13Cipher, Iv);

impl MessageEncrypter for Sealer {
    fn encrypt(
        &mut self,
        m: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, rustls::Error> {
        let total_len = self.encrypted_payload_len(m.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        payload.extend_from_chunks(&m.payload);
        payload.extend_from_slice(&m.typ.to_array());
        let nonce = chacha20poly1305::Nonce::from(Nonce::new(&self.1, seq).0);
        let aad = make_tls13_aad(total_len);
        self.0
            .0
            .encrypt_in_place(&nonce, &aad, &mut SealBuffer(&mut payload))
            .map_err(|_| rustls::Error::EncryptError)?;
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + TAG_LEN
    }
}

impl MessageDecrypter for Opener {
    fn decrypt<'a>(
        &mut self,
        mut m: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, rustls::Error> {
        let payload = &mut m.payload;
        // SECURITY: a record shorter than the tag is refused before the cipher sees it.
        if payload.len() < TAG_LEN {
            return Err(rustls::Error::DecryptError);
        }
        let nonce = chacha20poly1305::Nonce::from(Nonce::new(&self.1, seq).0);
        let aad = make_tls13_aad(payload.len());
        self.0
            .0
            .decrypt_in_place(&nonce, &aad, &mut OpenBuffer(payload))
            .map_err(|_| rustls::Error::DecryptError)?;
        m.into_tls13_unpadded_message()
    }
}

struct SealBuffer<'a>(&'a mut PrefixedPayload);

impl AsRef<[u8]> for SealBuffer<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl AsMut<[u8]> for SealBuffer<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_mut()
    }
}

impl Buffer for SealBuffer<'_> {
    fn extend_from_slice(&mut self, other: &[u8]) -> chacha20poly1305::aead::Result<()> {
        self.0.extend_from_slice(other);
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        self.0.truncate(len)
    }
}

struct OpenBuffer<'a, 'p>(&'a mut BorrowedPayload<'p>);

impl AsRef<[u8]> for OpenBuffer<'_, '_> {
    fn as_ref(&self) -> &[u8] {
        self.0
    }
}

impl AsMut<[u8]> for OpenBuffer<'_, '_> {
    fn as_mut(&mut self) -> &mut [u8] {
        self.0
    }
}

impl Buffer for OpenBuffer<'_, '_> {
    fn extend_from_slice(&mut self, _: &[u8]) -> chacha20poly1305::aead::Result<()> {
        // decrypt_in_place only shrinks its buffer; refuse rather than panic if that changes.
        Err(chacha20poly1305::aead::Error)
    }

    fn truncate(&mut self, len: usize) {
        self.0.truncate(len)
    }
}

// ---- key exchange ----

#[derive(Debug)]
struct X25519 {
    random: &'static dyn SecureRandom,
}

impl SupportedKxGroup for X25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let mut seed = [0u8; 32];
        self.random.fill(&mut seed)?;
        let secret = x25519_dalek::StaticSecret::from(seed);
        seed.zeroize();
        let public = x25519_dalek::PublicKey::from(&secret);
        Ok(Box::new(X25519Exchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// One handshake's ephemeral key (zeroized when dropped: `x25519-dalek`'s `zeroize`).
struct X25519Exchange {
    secret: x25519_dalek::StaticSecret,
    public: x25519_dalek::PublicKey,
}

impl ActiveKeyExchange for X25519Exchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let peer: [u8; 32] = peer
            .try_into()
            .map_err(|_| rustls::Error::from(PeerMisbehaved::InvalidKeyShare))?;
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        // SECURITY: RFC 8446 §7.4.2 — a low-order peer point gives the all-zero secret,
        // which an attacker knows; refuse it.
        if !shared.was_contributory() {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        self.public.as_bytes()
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

// ---- signatures ----

/// Ed25519 verification (RFC 8032) with `ed25519-compact`, for rustls/webpki.
#[derive(Debug)]
struct Ed25519Verify;

impl SignatureVerificationAlgorithm for Ed25519Verify {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let pk =
            ed25519_compact::PublicKey::from_slice(public_key).map_err(|_| InvalidSignature)?;
        let sig =
            ed25519_compact::Signature::from_slice(signature).map_err(|_| InvalidSignature)?;
        pk.verify(message, &sig).map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        rustls::pki_types::alg_id::ED25519
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        rustls::pki_types::alg_id::ED25519
    }
}

/// The client has no key of its own (no client authentication).
#[derive(Debug)]
struct NoKeys;

impl KeyProvider for NoKeys {
    fn load_private_key(
        &self,
        _key_der: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General(
            "this provider loads no private keys".into(),
        ))
    }
}

/// A [`SecureRandom`] that always fails: a stand-in where no entropy exists, so a handshake
/// fails instead of using predictable bytes.
#[derive(Debug)]
pub struct NoRandom;

impl SecureRandom for NoRandom {
    fn fill(&self, _buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        Err(GetRandomFailed)
    }
}
