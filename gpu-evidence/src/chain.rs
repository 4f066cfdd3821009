//! The GPU's device certificate chain (leaf = the attestation key's certificate first, the
//! root last, as NVML's `attestationCertChain` lists them in PEM) and the FWID in its leaf.
//!
//! Checked: the root is byte for byte the pinned root; every other certificate names its
//! successor as issuer and carries an ECDSA P-384/SHA-384 signature that verifies with the
//! successor's P-384 key; issuers are CAs allowed to sign certificates; the leaf may sign;
//! no certificate has a critical extension this verifier does not understand; optionally,
//! validity periods against the caller's clock. Not checked: revocation (NVIDIA's OCSP
//! service is online; this verifier works offline), name constraints and path lengths
//! (NVIDIA's chain has none).

use alloc::vec::Vec;

use p384::ecdsa::signature::Verifier as _;
use x509_cert::Certificate;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};

use crate::GpuEvidenceError as E;

/// At most this many certificates in a chain (NVIDIA's is five).
pub const MAX_CERTS: usize = 8;
/// The largest PEM chain accepted (NVML's buffer is 5 KiB).
pub const MAX_CHAIN_PEM: usize = 32 * 1024;

const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
/// TCG DICE TcbInfo (Hopper's leaf) and the older arc NVIDIA's verifier also accepts.
const TCG_DICE_FWID: [ObjectIdentifier; 2] = [
    ObjectIdentifier::new_unwrap("2.23.133.5.4.1"),
    ObjectIdentifier::new_unwrap("2.23.133.5.4.1.1"),
];
/// SHA-384's OID, DER content bytes (2.16.840.1.101.3.4.2.2).
const SHA384_OID_DER: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];

/// The certificates of a PEM chain, leaf first; refuses anything but certificates.
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<Certificate>, E> {
    if pem.len() > MAX_CHAIN_PEM {
        return Err(E::TooLarge {
            what: "certificate chain",
            len: pem.len(),
            max: MAX_CHAIN_PEM,
        });
    }
    // The PEM decoder wants at least one block; counting first also bounds the work.
    let blocks = count(pem, b"-----BEGIN CERTIFICATE-----");
    if blocks == 0 || blocks > MAX_CERTS {
        return Err(E::ChainLength(blocks));
    }
    let certs = Certificate::load_pem_chain(pem).map_err(|_| E::ChainPem)?;
    if certs.len() != blocks {
        return Err(E::ChainPem);
    }
    Ok(certs)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Verifies the chain up to the pinned root (DER) and returns the leaf's P-384 key.
pub fn verify_chain(
    certs: &[Certificate],
    root_der: &[u8],
    now_unix: Option<u64>,
) -> Result<p384::ecdsa::VerifyingKey, E> {
    if certs.len() < 2 || certs.len() > MAX_CERTS {
        return Err(E::ChainLength(certs.len()));
    }
    let last = certs.len() - 1;
    // SECURITY: the trust anchor is the pinned root itself, not whatever the evidence
    // brought along that happens to be self-signed.
    let root_in_chain = certs[last].to_der().map_err(|_| E::ChainPem)?;
    if root_in_chain != root_der {
        return Err(E::UntrustedRoot);
    }
    for (index, cert) in certs.iter().enumerate() {
        check_extensions(index, cert, index == 0)?;
        if let Some(now) = now_unix {
            check_validity(index, cert, now)?;
        }
        let issuer = certs.get(index + 1).unwrap_or(cert);
        if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            return Err(E::IssuerMismatch { index });
        }
        verify_signature(index, cert, &public_key(index + 1, issuer)?)?;
    }
    public_key(0, &certs[0])
}

fn public_key(index: usize, cert: &Certificate) -> Result<p384::ecdsa::VerifyingKey, E> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY || curve != Some(SECP384R1) {
        return Err(E::KeyNotP384 { index });
    }
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or(E::KeyNotP384 { index })?;
    p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| E::KeyNotP384 { index })
}

fn verify_signature(
    index: usize,
    cert: &Certificate,
    key: &p384::ecdsa::VerifyingKey,
) -> Result<(), E> {
    if cert.signature_algorithm.oid != ECDSA_WITH_SHA384
        || cert.tbs_certificate.signature != cert.signature_algorithm
    {
        return Err(E::CertSignatureAlgorithm { index });
    }
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|_| E::CertSignature { index })?;
    let sig = cert
        .signature
        .as_bytes()
        .and_then(ecdsa_sig_from_der)
        .ok_or(E::CertSignature { index })?;
    key.verify(&tbs, &sig)
        .map_err(|_| E::CertSignature { index })
}

/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` into a P-384 signature.
fn ecdsa_sig_from_der(der: &[u8]) -> Option<p384::ecdsa::Signature> {
    let (tag, body, rest) = tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (rt, r, body) = tlv(body)?;
    let (st, s, body) = tlv(body)?;
    if rt != 0x02 || st != 0x02 || !body.is_empty() {
        return None;
    }
    let r = scalar48(r)?;
    let s = scalar48(s)?;
    p384::ecdsa::Signature::from_scalars(r, s).ok()
}

/// A positive DER INTEGER as 48 big-endian bytes.
fn scalar48(int: &[u8]) -> Option<[u8; 48]> {
    let int = match int {
        [0, rest @ ..] if rest.first().is_some_and(|b| b & 0x80 != 0) => rest,
        [b, ..] if b & 0x80 != 0 => return None,
        _ => int,
    };
    if int.is_empty() || int.len() > 48 {
        return None;
    }
    let mut out = [0u8; 48];
    out[48 - int.len()..].copy_from_slice(int);
    Some(out)
}

fn check_extensions(index: usize, cert: &Certificate, leaf: bool) -> Result<(), E> {
    let exts = cert.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
    let mut is_ca = false;
    let mut usage: Option<KeyUsage> = None;
    for ext in exts {
        let value = ext.extn_value.as_bytes();
        if ext.extn_id == BASIC_CONSTRAINTS {
            is_ca = BasicConstraints::from_der(value)
                .map_err(|_| E::CertExtension { index })?
                .ca;
        } else if ext.extn_id == KEY_USAGE {
            usage = Some(KeyUsage::from_der(value).map_err(|_| E::CertExtension { index })?);
        } else if ext.critical {
            // SECURITY: RFC 5280 §4.2 — a critical extension the verifier does not
            // understand makes the certificate unusable.
            return Err(E::UnknownCriticalExtension { index });
        }
    }
    if leaf {
        if usage.is_some_and(|u| !u.digital_signature()) {
            return Err(E::KeyUsage { index });
        }
    } else if !is_ca || usage.is_some_and(|u| !u.key_cert_sign()) {
        return Err(E::NotCa { index });
    }
    Ok(())
}

fn check_validity(index: usize, cert: &Certificate, now: u64) -> Result<(), E> {
    let v = &cert.tbs_certificate.validity;
    let from = v.not_before.to_unix_duration().as_secs();
    let until = v.not_after.to_unix_duration().as_secs();
    if now < from || now > until {
        return Err(E::CertValidity { index });
    }
    Ok(())
}

/// The SHA-384 FWID in the leaf's TCG DICE extension.
pub fn leaf_fwid(leaf: &Certificate) -> Result<Vec<u8>, E> {
    let exts = leaf.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
    let mut found: Option<Vec<u8>> = None;
    for ext in exts.iter().filter(|e| TCG_DICE_FWID.contains(&e.extn_id)) {
        let fwids = fwids_in(ext.extn_value.as_bytes()).ok_or(E::CertFwidMalformed)?;
        for fwid in fwids {
            // SECURITY: exactly one SHA-384 FWID; two would let the report match either.
            if found.replace(fwid.to_vec()).is_some() {
                return Err(E::CertFwidAmbiguous);
            }
        }
    }
    found.ok_or(E::CertFwidMissing)
}

/// The SHA-384 FWIDs of a TcbInfo-like value: `SEQUENCE { OID sha384, OCTET STRING (48) }`
/// items directly inside the outer SEQUENCE (Hopper) or inside its `[6]` fwids list (TCG
/// DiceTcbInfo).
fn fwids_in(value: &[u8]) -> Option<Vec<&[u8]>> {
    let (tag, body, rest) = tlv(value)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut items = body;
    while !items.is_empty() {
        let (tag, item, next) = tlv(items)?;
        items = next;
        match tag {
            0x30 => out.extend(fwid(item)),
            0xA6 => {
                let mut list = item;
                while !list.is_empty() {
                    let (t, f, next) = tlv(list)?;
                    list = next;
                    if t != 0x30 {
                        return None;
                    }
                    out.push(fwid(f)?);
                }
            }
            _ => {}
        }
    }
    Some(out)
}

/// `hashAlg OID, digest OCTET STRING` with SHA-384 and 48 bytes, else `None`.
fn fwid(body: &[u8]) -> Option<&[u8]> {
    let (t, oid, rest) = tlv(body)?;
    let (d, digest, rest) = tlv(rest)?;
    (t == 0x06 && oid == SHA384_OID_DER && d == 0x04 && digest.len() == 48 && rest.is_empty())
        .then_some(digest)
}

/// One DER TLV (single-byte tags, definite lengths up to 4 length bytes):
/// (tag, contents, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1F == 0x1F {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = len.checked_mul(256)?.checked_add(usize::from(b))?;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_refuses_truncation_and_long_forms() {
        assert_eq!(
            tlv(&[0x04, 0x02, 1, 2]),
            Some((0x04, &[1u8, 2][..], &[][..]))
        );
        assert_eq!(tlv(&[0x04, 0x03, 1, 2]), None);
        assert_eq!(tlv(&[0x04, 0x80]), None);
        assert_eq!(tlv(&[0x04, 0x85, 0, 0, 0, 0, 1]), None);
        assert_eq!(tlv(&[0x1F, 0x01, 0]), None);
        assert_eq!(tlv(&[]), None);
    }

    #[test]
    fn scalars_are_positive_and_at_most_48_bytes() {
        assert_eq!(scalar48(&[0x80]), None);
        assert_eq!(scalar48(&[0x00, 0x80]).map(|s| s[47]), Some(0x80));
        assert_eq!(scalar48(&[1; 49]), None);
        assert_eq!(scalar48(&[]), None);
    }
}
