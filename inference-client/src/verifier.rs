//! The server-certificate verifier: exactly the key the verified evidence names.
//!
//! The proxy presents a raw public key (RFC 7250; TLS 1.3 only), the SubjectPublicKeyInfo its
//! evidence commits to. No CA, no name, no validity period: the evidence check, done before
//! the handshake, is what makes the key trusted, and this verifier accepts that one key only.

use alloc::vec::Vec;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, PeerIncompatible, SignatureScheme};

use crate::provider::SIGNATURE_ALGORITHMS;

/// Accepts the handshake only from the holder of `spki`'s private key.
#[derive(Debug)]
pub struct PinnedKey {
    spki: Vec<u8>,
}

impl PinnedKey {
    /// Pins `spki` (SubjectPublicKeyInfo DER, from verified evidence).
    pub fn new(spki: Vec<u8>) -> Self {
        Self { spki }
    }
}

impl ServerCertVerifier for PinnedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // SECURITY: the one key the evidence named; anything else (another key, a chain) is
        // refused before the client sends anything encrypted.
        if intermediates.is_empty() && end_entity.as_ref() == self.spki.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // SECURITY: the signature is checked against the pinned key, not whatever was sent.
        if cert.as_ref() != self.spki.as_slice() {
            return Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(self.spki.as_slice()),
            dss,
            &SIGNATURE_ALGORITHMS,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        alloc::vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}
