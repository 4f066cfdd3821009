//! Intel's PCS collateral for a quote: the TCB info and QE identity (JSON, each signed by
//! Intel's TCB signing key), the CRLs of Intel's root CA and of the PCK CA, and the issuer
//! chains, all checked up to Intel's SGX root key pinned here.

use alloc::{string::String, vec::Vec};

use p256::ecdsa::{Signature, VerifyingKey, signature::Verifier};
use serde::Deserialize;
use x509_cert::{
    Certificate,
    crl::CertificateList,
    der::{Decode, Encode, oid::ObjectIdentifier},
    serial_number::SerialNumber,
};

use super::Refused;

/// The public key (SEC1, uncompressed) of "Intel SGX Root CA", the anchor of every PCK,
/// TCB-signing and CRL chain. A test checks it against the root certificate `dcap-qvl` pins.
pub const INTEL_SGX_ROOT_KEY: [u8; 65] = [
    0x04, 0x0b, 0xa9, 0xc4, 0xc0, 0xc0, 0xc8, 0x61, 0x93, 0xa3, 0xfe, 0x23, 0xd6, 0xb0, 0x2c, 0xda,
    0x10, 0xa8, 0xbb, 0xd4, 0xe8, 0x8e, 0x48, 0xb4, 0x45, 0x85, 0x61, 0xa3, 0x6e, 0x70, 0x55, 0x25,
    0xf5, 0x67, 0x91, 0x8e, 0x2e, 0xdc, 0x88, 0xe4, 0x0d, 0x86, 0x0b, 0xd0, 0xcc, 0x4e, 0xe2, 0x6a,
    0xac, 0xc9, 0x88, 0xe5, 0x05, 0xa9, 0x53, 0x55, 0x8c, 0x45, 0x3f, 0x6b, 0x09, 0x04, 0xae, 0x73,
    0x94,
];
/// ecdsa-with-SHA256, the only signature algorithm in Intel's PKI.
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// SECURITY: Intel's chains are two or three certificates; a longer one is refused unread.
const MAX_CHAIN: usize = 4;

/// The collateral as Intel's PCCS and `dcap-qvl` serialise it (`QuoteCollateralV3`): the
/// JSON documents as strings (their exact bytes are what is signed), CRLs as DER hex.
#[derive(Deserialize)]
pub struct Collateral {
    pub pck_crl_issuer_chain: String,
    pub root_ca_crl: String,
    pub pck_crl: String,
    pub tcb_info_issuer_chain: String,
    pub tcb_info: String,
    pub tcb_info_signature: String,
    pub qe_identity_issuer_chain: String,
    pub qe_identity: String,
    pub qe_identity_signature: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcbInfo {
    pub id: String,
    pub version: u32,
    pub issue_date: String,
    pub next_update: String,
    pub fmspc: String,
    pub pce_id: String,
    pub tdx_module: Option<TdxModule>,
    #[serde(default)]
    pub tdx_module_identities: Vec<TdxModuleIdentity>,
    pub tcb_levels: Vec<TcbLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TdxModule {
    pub mrsigner: String,
    pub attributes: String,
    pub attributes_mask: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TdxModuleIdentity {
    pub id: String,
    pub mrsigner: String,
    pub attributes: String,
    pub attributes_mask: String,
    pub tcb_levels: Vec<IsvLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcbLevel {
    pub tcb: PlatformLevel,
    pub tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    pub advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
pub struct PlatformLevel {
    pub sgxtcbcomponents: Vec<Svn>,
    pub pcesvn: u16,
    #[serde(default)]
    pub tdxtcbcomponents: Vec<Svn>,
}

#[derive(Deserialize)]
pub struct Svn {
    pub svn: u8,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IsvLevel {
    pub tcb: IsvSvn,
    pub tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    pub advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
pub struct IsvSvn {
    pub isvsvn: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QeIdentity {
    pub id: String,
    pub version: u32,
    pub issue_date: String,
    pub next_update: String,
    pub miscselect: String,
    pub miscselect_mask: String,
    pub attributes: String,
    pub attributes_mask: String,
    pub mrsigner: String,
    pub isvprodid: u16,
    pub tcb_levels: Vec<IsvLevel>,
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time as Intel writes it
/// (`2025-06-19T10:16:03Z`, optionally with fractional seconds).
pub fn unix_time(s: &str) -> Result<u64, Refused> {
    let bad = Refused("collateral date is not RFC 3339 UTC");
    let b = s.as_bytes();
    let s = s.strip_suffix('Z').ok_or(bad)?;
    let s = s.split('.').next().ok_or(bad)?;
    if s.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad);
    }
    let num = |r: core::ops::Range<usize>| -> Result<u64, Refused> {
        s.as_bytes()[r].iter().try_fold(0u64, |n, &c| {
            c.is_ascii_digit()
                .then(|| n * 10 + (c - b'0') as u64)
                .ok_or(bad)
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return Err(bad);
    }
    // Days from the civil date (Howard Hinnant's algorithm, years from March).
    let (y, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + h * 3_600 + mi * 60 + sec)
}

/// Decodes Intel's upper- or lower-case hex into exactly `N` bytes.
pub fn hex<const N: usize>(s: &str) -> Result<[u8; N], Refused> {
    let v = hex_vec(s)?;
    v.try_into()
        .map_err(|_| Refused("collateral hex field has the wrong size"))
}

pub fn hex_vec(s: &str) -> Result<Vec<u8>, Refused> {
    let bad = Refused("collateral field is not hex");
    let digit = |c: u8| (c as char).to_digit(16).ok_or(bad);
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(bad);
    }
    b.chunks(2)
        .map(|p| Ok((digit(p[0])? << 4 | digit(p[1])?) as u8))
        .collect()
}

fn key_of(cert: &Certificate) -> Result<VerifyingKey, Refused> {
    let bits = cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or(Refused("certificate key has unused bits"))?;
    VerifyingKey::from_sec1_bytes(bits).map_err(|_| Refused("certificate key is not P-256"))
}

/// An ECDSA P-256/SHA-256 signature as DCAP writes it (r ‖ s, 32 bytes each).
pub fn check_raw_signature(key: &VerifyingKey, message: &[u8], raw: &[u8]) -> Result<(), Refused> {
    let sig = Signature::from_slice(raw).map_err(|_| Refused("signature is not r ‖ s"))?;
    key.verify(message, &sig)
        .map_err(|_| Refused("signature does not verify"))
}

fn check_der_signature(
    key: &VerifyingKey,
    message: &[u8],
    algorithm: &ObjectIdentifier,
    der: Option<&[u8]>,
) -> Result<(), Refused> {
    if *algorithm != ECDSA_SHA256 {
        return Err(Refused("not signed with ECDSA P-256/SHA-256"));
    }
    let sig = Signature::from_der(der.ok_or(Refused("signature has unused bits"))?)
        .map_err(|_| Refused("signature is not DER ECDSA"))?;
    key.verify(message, &sig)
        .map_err(|_| Refused("signature does not verify"))
}

/// The two CRLs, each verified under its issuer, and the root certificate they were checked
/// under (verified once; later chains ending in the same certificate skip its self-signature).
pub struct Crls {
    root: CertificateList,
    pck: CertificateList,
    anchor: Certificate,
}

fn revoked(crl: &CertificateList, serial: &SerialNumber) -> bool {
    crl.tbs_cert_list
        .revoked_certificates
        .iter()
        .flatten()
        .any(|r| r.serial_number == *serial)
}

fn check_crl(crl: &CertificateList, issuer: &Certificate, now: u64) -> Result<(), Refused> {
    if crl.tbs_cert_list.issuer != issuer.tbs_certificate.subject {
        return Err(Refused("CRL is not issued by the expected CA"));
    }
    let tbs = crl
        .tbs_cert_list
        .to_der()
        .map_err(|_| Refused("CRL does not re-encode"))?;
    check_der_signature(
        &key_of(issuer)?,
        &tbs,
        &crl.signature_algorithm.oid,
        crl.signature.as_bytes(),
    )
    .map_err(|_| Refused("CRL signature does not verify under its CA"))?;
    let from = crl.tbs_cert_list.this_update.to_unix_duration().as_secs();
    let to = crl
        .tbs_cert_list
        .next_update
        .map(|t| t.to_unix_duration().as_secs());
    // SECURITY: a stale CRL could hide a revocation made since; one not yet issued is forged
    // or the clock is wrong.
    if now < from || to.is_some_and(|to| now > to) {
        return Err(Refused("CRL not current at the verification time"));
    }
    Ok(())
}

/// A PEM chain, leaf first, at most [`MAX_CHAIN`] certificates.
pub fn pem_chain(pem: &[u8]) -> Result<Vec<Certificate>, Refused> {
    // Quotes end their PEM with a NUL; PCCS's JSON strings do not.
    let pem = pem.strip_suffix(&[0]).unwrap_or(pem);
    let certs = Certificate::load_pem_chain(pem)
        .map_err(|_| Refused("certificate chain is not PEM X.509"))?;
    if certs.is_empty() || certs.len() > MAX_CHAIN {
        return Err(Refused("certificate chain length is not 1 to 4"));
    }
    Ok(certs)
}

/// Checks `chain` (leaf first) up to Intel's SGX root key: names link, every signature is
/// ECDSA P-256/SHA-256 by the next certificate (the root's by itself), every certificate is
/// valid at `now`, the root carries the pinned key. Returns the leaf's key. A root equal to
/// `verified_root` (checked so already in this verification) is not checked again.
pub fn check_chain(
    chain: &[Certificate],
    now: u64,
    verified_root: Option<&Certificate>,
) -> Result<VerifyingKey, Refused> {
    let root = chain.last().ok_or(Refused("empty certificate chain"))?;
    let root_key = key_of(root)?;
    if root_key.to_encoded_point(false).as_bytes() != INTEL_SGX_ROOT_KEY {
        return Err(Refused(
            "certificate chain does not end at Intel's SGX root",
        ));
    }
    for (i, cert) in chain.iter().enumerate() {
        let issuer = match chain.get(i + 1) {
            Some(issuer) => issuer,
            None if verified_root == Some(root) => break,
            None => root,
        };
        check_validity(cert, now)?;
        if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            return Err(Refused("certificate's issuer is not the next certificate"));
        }
        if cert.tbs_certificate.signature.oid != cert.signature_algorithm.oid {
            return Err(Refused("certificate's two signature algorithms differ"));
        }
        let tbs = cert
            .tbs_certificate
            .to_der()
            .map_err(|_| Refused("certificate does not re-encode"))?;
        check_der_signature(
            &key_of(issuer)?,
            &tbs,
            &cert.signature_algorithm.oid,
            cert.signature.as_bytes(),
        )
        .map_err(|_| Refused("certificate signature does not verify under its issuer"))?;
    }
    key_of(&chain[0])
}

fn check_validity(cert: &Certificate, now: u64) -> Result<(), Refused> {
    let v = &cert.tbs_certificate.validity;
    let from = v.not_before.to_unix_duration().as_secs();
    let to = v.not_after.to_unix_duration().as_secs();
    if now < from || now > to {
        return Err(Refused("certificate not valid at the verification time"));
    }
    Ok(())
}

impl Crls {
    /// The root CA's CRL (signed by the root) and the PCK CA's (signed by the PCK CA, whose
    /// chain `pck_crl_issuer_chain` must reach the root).
    pub fn check(c: &Collateral, now: u64) -> Result<Self, Refused> {
        let der = |s: &str| -> Result<CertificateList, Refused> {
            CertificateList::from_der(&hex_vec(s)?).map_err(|_| Refused("CRL is not DER"))
        };
        let (root, pck) = (der(&c.root_ca_crl)?, der(&c.pck_crl)?);
        let issuer_chain = pem_chain(c.pck_crl_issuer_chain.as_bytes())?;
        check_chain(&issuer_chain, now, None)?;
        let root_cert = issuer_chain.last().expect("non-empty");
        check_crl(&root, root_cert, now)?;
        check_crl(&pck, &issuer_chain[0], now)?;
        let anchor = root_cert.clone();
        let crls = Crls { root, pck, anchor };
        crls.check_not_revoked(&issuer_chain)?;
        Ok(crls)
    }

    /// `chain` up to Intel's root ([`check_chain`]) and none of it revoked.
    pub fn check_chain(&self, chain: &[Certificate], now: u64) -> Result<VerifyingKey, Refused> {
        let key = check_chain(chain, now, Some(&self.anchor))?;
        self.check_not_revoked(chain)?;
        Ok(key)
    }

    /// SECURITY: a certificate Intel revoked (a leaked PCK, a compromised intermediate) must
    /// not vouch for anything. Intermediates are on the root's CRL, PCK leaves on the PCK CA's.
    pub fn check_not_revoked(&self, chain: &[Certificate]) -> Result<(), Refused> {
        for cert in chain {
            let tbs = &cert.tbs_certificate;
            let by_root = tbs.issuer == self.root.tbs_cert_list.issuer;
            let by_pck_ca = tbs.issuer == self.pck.tbs_cert_list.issuer;
            if (by_root && revoked(&self.root, &tbs.serial_number))
                || (by_pck_ca && revoked(&self.pck, &tbs.serial_number))
            {
                return Err(Refused("a certificate in the chain is revoked"));
            }
        }
        Ok(())
    }
}

/// A signed collateral document: its issuer chain checked and not revoked, its signature by
/// the chain's leaf over the document's exact bytes, and `now` inside its issue window.
pub fn check_signed<T: serde::de::DeserializeOwned>(
    document: &str,
    signature_hex: &str,
    chain_pem: &str,
    crls: &Crls,
    now: u64,
    dates: impl Fn(&T) -> (&str, &str),
) -> Result<T, Refused> {
    let key = crls.check_chain(&pem_chain(chain_pem.as_bytes())?, now)?;
    check_raw_signature(&key, document.as_bytes(), &hex_vec(signature_hex)?).map_err(|_| {
        Refused("collateral signature does not verify under Intel's TCB signing key")
    })?;
    let parsed: T = serde_json::from_str(document)
        .map_err(|_| Refused("collateral document is not the expected JSON"))?;
    let (issued, next) = dates(&parsed);
    if now < unix_time(issued)? || now > unix_time(next)? {
        return Err(Refused(
            "collateral is not current at the verification time (issueDate..nextUpdate)",
        ));
    }
    Ok(parsed)
}
