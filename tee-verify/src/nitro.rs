//! AWS Nitro Enclaves attestation documents: COSE_Sign1 (ES384) over a CBOR map, signed by a
//! certificate chain that starts at AWS's Nitro root.
//!
//! Checked: the COSE structure and algorithm (ES384 only), every field of the document with its
//! type and size (AWS's documented schema; unknown or repeated keys refused), the bundle's first
//! certificate is the pinned root (byte for byte), each certificate is signed by the previous
//! one with ECDSA P-384/SHA-384 and names it as issuer, every certificate is valid at the
//! caller's time, and the COSE signature verifies under the leaf's key.
//! Not checked: revocation (AWS publishes no CRL for this chain).

use alloc::{string::String, vec::Vec};

use p384::ecdsa::{Signature, VerifyingKey, signature::Verifier};
use x509_cert::{
    Certificate,
    der::{Decode, Encode, oid::ObjectIdentifier},
};

use crate::cbor::{self, Item};
use crate::{Error, TcbStatus, Tee, Verified};

/// COSE algorithm ES384 (RFC 9053).
const COSE_ES384: u64 = 34; // encoded as the negative integer -35 = -1 - 34
/// ecdsa-with-SHA384.
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
/// SECURITY: a document is a few KiB; anything far larger is refused before decoding.
pub const MAX_DOCUMENT: usize = 32 * 1024;
/// AWS documents at most 32 PCRs; each 32, 48 or 64 bytes.
const MAX_PCRS: u64 = 32;
const MAX_CHAIN: u64 = 8;
const MAX_USER_FIELD: usize = 1024;

/// The fields of a verified document that a policy looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NitroDocument {
    pub module_id: String,
    /// Milliseconds since the Unix epoch, as the Nitro hypervisor stamped it.
    pub timestamp_ms: u64,
    /// (index, value), in the document's order.
    pub pcrs: Vec<(u64, Vec<u8>)>,
    pub public_key: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    pub nonce: Option<Vec<u8>>,
}

/// AWS's Nitro root certificate (PEM, as AWS publishes it) in the DER form [`verify`] takes.
pub fn root_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    use x509_cert::der::{DecodePem as _, Encode as _};
    x509_cert::Certificate::from_pem(pem)
        .and_then(|c| c.to_der())
        .map_err(|e| alloc::format!("not a PEM certificate: {e}"))
}

/// Verifies `document` against the pinned Nitro root certificate (DER) as of `now_secs`.
pub fn verify(document: &[u8], root_der: &[u8], now_secs: u64) -> Result<Verified, Error> {
    let doc = verify_document(document, root_der, now_secs)?;
    let pcr = |i: u64| {
        doc.pcrs
            .iter()
            .find(|(n, _)| *n == i)
            .map(|(_, v)| v.clone())
    };
    let measurement = pcr(0).ok_or(Error::Nitro("document has no PCR0"))?;
    // user_data carries what the enclave binds (a key hash, our REPORT_DATA equivalent).
    let report_data = doc.user_data.clone().unwrap_or_default();
    Ok(Verified {
        tee: Tee::Nitro,
        // A debug-mode enclave reports PCR0..2 as zeros.
        debug: measurement.iter().all(|&b| b == 0),
        measurement,
        registers: doc
            .pcrs
            .iter()
            .map(|(i, v)| (alloc::format!("PCR{i}"), v.clone()))
            .collect(),
        report_data,
        tcb: TcbStatus::NotApplicable,
        nitro: Some(doc),
    })
}

/// The document's fields once every check has passed.
pub fn verify_document(
    document: &[u8],
    root_der: &[u8],
    now_secs: u64,
) -> Result<NitroDocument, Error> {
    if document.len() > MAX_DOCUMENT {
        return Err(Error::Nitro("document larger than 32 KiB"));
    }
    let outer = match cbor::decode(document)? {
        Item::Tag(18, _) => cbor::decode(tag_body(document)?)?,
        other => other,
    };
    let Item::Array(sign1) = outer else {
        return Err(Error::Nitro("not a COSE_Sign1 array"));
    };
    let parts: Vec<Item<'_>> = sign1.items().collect();
    let [
        Item::Bytes(protected),
        Item::Map(_),
        Item::Bytes(payload),
        Item::Bytes(signature),
    ] = parts[..]
    else {
        return Err(Error::Nitro(
            "COSE_Sign1 is not [protected, unprotected, payload, signature]",
        ));
    };
    check_protected(protected)?;
    let (doc, leaf_der, bundle) = parse_payload(payload)?;

    // The chain: pinned root first, then each certificate signed by the one before it.
    let first = bundle.first().ok_or(Error::Nitro("empty cabundle"))?;
    if *first != root_der {
        return Err(Error::Nitro(
            "cabundle does not start at the pinned Nitro root",
        ));
    }
    let mut issuer = parse_cert(root_der)?;
    check_validity(&issuer, now_secs)?;
    for der in bundle[1..]
        .iter()
        .copied()
        .chain(core::iter::once(leaf_der))
    {
        let cert = parse_cert(der)?;
        check_signed_by(&cert, &issuer)?;
        check_validity(&cert, now_secs)?;
        issuer = cert;
    }

    let mut message = Vec::with_capacity(payload.len() + protected.len() + 32);
    cbor::encode_head(&mut message, 4, 4);
    cbor::encode_head(&mut message, 3, 10);
    message.extend_from_slice(b"Signature1");
    cbor::encode_bytes(&mut message, protected);
    cbor::encode_bytes(&mut message, &[]);
    cbor::encode_bytes(&mut message, payload);
    let signature = Signature::from_slice(signature)
        .map_err(|_| Error::Nitro("COSE signature is not 96 bytes"))?;
    leaf_key(&issuer)?
        .verify(&message, &signature)
        .map_err(|_| Error::Nitro("COSE signature does not verify under the leaf certificate"))?;
    Ok(doc)
}

fn tag_body(document: &[u8]) -> Result<&[u8], Error> {
    match cbor::decode(document)? {
        Item::Tag(_, body) => Ok(body),
        _ => Err(Error::Nitro("not tagged")),
    }
}

fn check_protected(protected: &[u8]) -> Result<(), Error> {
    let Item::Map(map) = cbor::decode(protected)? else {
        return Err(Error::Nitro("protected header is not a map"));
    };
    let mut alg = None;
    for (key, value) in map.pairs() {
        if key == Item::Unsigned(1) {
            if alg.is_some() {
                return Err(Error::Nitro("protected header repeats alg"));
            }
            alg = Some(value);
        }
    }
    match alg {
        Some(Item::Negative(COSE_ES384)) => Ok(()),
        Some(_) => Err(Error::Nitro("COSE algorithm is not ES384")),
        None => Err(Error::Nitro("protected header has no algorithm")),
    }
}

type Payload<'a> = (NitroDocument, &'a [u8], Vec<&'a [u8]>);

fn parse_payload(payload: &[u8]) -> Result<Payload<'_>, Error> {
    let Item::Map(map) = cbor::decode(payload)? else {
        return Err(Error::Nitro("payload is not a map"));
    };
    let mut seen = 0u16;
    let mut module_id = None;
    let mut timestamp_ms = None;
    let mut pcrs = Vec::new();
    let mut certificate = None;
    let mut bundle = Vec::new();
    let (mut public_key, mut user_data, mut nonce) = (None, None, None);
    for (key, value) in map.pairs() {
        let Item::Text(key) = key else {
            return Err(Error::Nitro("payload key is not text"));
        };
        const KEYS: [&str; 9] = [
            "module_id",
            "digest",
            "timestamp",
            "pcrs",
            "certificate",
            "cabundle",
            "public_key",
            "user_data",
            "nonce",
        ];
        let bit = KEYS
            .iter()
            .position(|k| *k == key)
            .ok_or(Error::Nitro("unknown payload key"))?;
        // SECURITY: a repeated key would let two readers see two different documents.
        if seen & (1 << bit) != 0 {
            return Err(Error::Nitro("payload key repeated"));
        }
        seen |= 1 << bit;
        match (key, value) {
            ("module_id", Item::Text(t)) if !t.is_empty() && t.len() <= 256 => {
                module_id = Some(String::from(t))
            }
            ("digest", Item::Text("SHA384")) => {}
            ("digest", _) => return Err(Error::Nitro("digest is not SHA384")),
            ("timestamp", Item::Unsigned(t)) if t > 0 => timestamp_ms = Some(t),
            ("pcrs", Item::Map(m)) if m.len >= 1 && m.len <= MAX_PCRS => {
                for (index, value) in m.pairs() {
                    match (index, value) {
                        (Item::Unsigned(i), Item::Bytes(v)) if i < MAX_PCRS && v.len() == 48 => {
                            if pcrs.iter().any(|(n, _)| *n == i) {
                                return Err(Error::Nitro("PCR index repeated"));
                            }
                            pcrs.push((i, v.to_vec()))
                        }
                        _ => return Err(Error::Nitro("PCR entry is not index → 48 bytes")),
                    }
                }
            }
            ("certificate", Item::Bytes(c)) if !c.is_empty() && c.len() <= 1024 => {
                certificate = Some(c)
            }
            ("cabundle", Item::Array(a)) if a.len >= 1 && a.len <= MAX_CHAIN => {
                for c in a.items() {
                    match c {
                        Item::Bytes(c) if !c.is_empty() && c.len() <= 1024 => bundle.push(c),
                        _ => return Err(Error::Nitro("cabundle entry is not a certificate")),
                    }
                }
            }
            ("public_key" | "user_data" | "nonce", Item::Null) => {}
            ("public_key" | "user_data" | "nonce", Item::Bytes(b)) if b.len() <= MAX_USER_FIELD => {
                let slot = match key {
                    "public_key" => &mut public_key,
                    "user_data" => &mut user_data,
                    _ => &mut nonce,
                };
                *slot = Some(b.to_vec());
            }
            _ => return Err(Error::Nitro("payload field has the wrong type or size")),
        }
    }
    let doc = NitroDocument {
        module_id: module_id.ok_or(Error::Nitro("payload has no module_id"))?,
        timestamp_ms: timestamp_ms.ok_or(Error::Nitro("payload has no timestamp"))?,
        pcrs,
        public_key,
        user_data,
        nonce,
    };
    if seen & 0b11_1111 != 0b11_1111 {
        return Err(Error::Nitro("payload lacks a mandatory field"));
    }
    Ok((
        doc,
        certificate.ok_or(Error::Nitro("payload has no certificate"))?,
        bundle,
    ))
}

fn parse_cert(der: &[u8]) -> Result<Certificate, Error> {
    Certificate::from_der(der).map_err(|_| Error::Nitro("certificate is not DER X.509"))
}

fn leaf_key(cert: &Certificate) -> Result<VerifyingKey, Error> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or(Error::Nitro("public key has unused bits"))?;
    VerifyingKey::from_sec1_bytes(bits).map_err(|_| Error::Nitro("certificate key is not P-384"))
}

fn check_signed_by(cert: &Certificate, issuer: &Certificate) -> Result<(), Error> {
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err(Error::Nitro(
            "certificate's issuer is not the previous certificate",
        ));
    }
    if cert.signature_algorithm.oid != ECDSA_SHA384
        || cert.tbs_certificate.signature.oid != ECDSA_SHA384
    {
        return Err(Error::Nitro(
            "certificate is not signed with ECDSA P-384/SHA-384",
        ));
    }
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|_| Error::Nitro("certificate does not re-encode"))?;
    let sig = cert
        .signature
        .as_bytes()
        .ok_or(Error::Nitro("signature has unused bits"))?;
    let sig = Signature::from_der(sig)
        .map_err(|_| Error::Nitro("certificate signature is not DER ECDSA"))?;
    leaf_key(issuer)?
        .verify(&tbs, &sig)
        .map_err(|_| Error::Nitro("certificate signature does not verify under its issuer"))
}

fn check_validity(cert: &Certificate, now_secs: u64) -> Result<(), Error> {
    let v = &cert.tbs_certificate.validity;
    let from = v.not_before.to_unix_duration().as_secs();
    let to = v.not_after.to_unix_duration().as_secs();
    if now_secs < from || now_secs > to {
        return Err(Error::Nitro(
            "certificate not valid at the verification time",
        ));
    }
    Ok(())
}
