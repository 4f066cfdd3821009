//! Verification of an SEV-SNP attestation report against AMD's certificate chain and the
//! verifier's expectations (no_std: the `measurements` CLI and, next, a monitor).
//!
//! [`verify_report`] never stops at the first problem: it runs every check it can and
//! returns a [`VerifyOutcome`] listing each with pass/fail and a message, so that a
//! verifier sees *all* reasons a report is refused. The report is verified only when every
//! check passed ([`VerifyOutcome::verified`]).
//!
//! Checks, in order (names are stable, tests and scripts may match on them):
//!
//! | name | what |
//! |---|---|
//! | `report.parse` | 1184 bytes, version 2, 3 or 5 |
//! | `ca.parse` | ARK and ASK PEM decode as X.509 |
//! | `ark.amd_root` | the ARK is one of AMD's published roots the caller lists ([`Roots::amd_arks`]), or, only when [`Roots::lab`], the simulated PSP's lab root |
//! | `ark.self_signed` | the ARK's RSA-PSS/SHA-384 self-signature |
//! | `ask.signed_by_ark` | the ASK's issuer is the ARK and the ARK signed it |
//! | `vcek.parse` | the VCEK DER decodes as X.509 |
//! | `vcek.signed_by_ask` | the VCEK's issuer is the ASK and the ASK signed it |
//! | `report.signature_algo` | 1 (ECDSA P-384 with SHA-384) |
//! | `report.signing_key` | the report says it was signed with a VCEK (not a VLEK) |
//! | `report.signature` | ECDSA P-384/SHA-384 by the VCEK over bytes `0..0x2A0` (only tried when the chain verified) |
//! | `vcek.tcb` | the VCEK's SPL extensions equal the report's `REPORTED_TCB` |
//! | `vcek.chip_id` | the VCEK's hwID extension equals the report's `CHIP_ID` |
//! | `policy.debug` | the guest policy forbids debugging (unless `allow_debug`) |
//! | `policy.migrate_ma` | the guest policy allows no migration agent (unless `allow_migration_agent`) |
//! | `policy.reserved` | policy bit 17 (must be one) is set |
//! | `vmpl` | the report was requested from VMPL 0 |
//! | `measurement` | equals the expected launch digest (only when expected) |
//! | `report_data` | equals the expected report data (only when expected) |
//! | `min_tcb` | `REPORTED_TCB` is at least the given minimum (only when given) |
//!
//! Bytes `0x330..0x4A0` (reserved, after the signature) are not covered by the signature
//! and are ignored. Certificate validity periods are not checked: AMD's VCEKs are issued
//! per TCB and reports carry no time to check them against.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::str::FromStr;

use p384::ecdsa::signature::Verifier as _;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use serde::Serialize;
use x509_cert::Certificate;
use x509_cert::der::{Decode as _, DecodePem as _, Encode as _, asn1::ObjectIdentifier};

use crate::report::{AttestationReport, Tcb};

/// The ARK and ASK a report's chain is checked under (PEM), and what the ARK may be.
#[derive(Debug, Clone, Copy)]
pub struct Roots<'a> {
    pub ark: &'a [u8],
    pub ask: &'a [u8],
    /// AMD's published ARKs (a generation's name, its PEM): `ark.amd_root` passes when the
    /// ARK is one of them.
    pub amd_arks: &'a [(&'static str, &'a [u8])],
    /// The verifier chose the simulated PSP's lab root: the only way it passes
    /// `ark.amd_root` (no hardware behind it).
    pub lab: bool,
}

/// A minimum TCB: each component given must be at least this.
///
/// Parsed from `bl=3,tee=0,snp=8,ucode=115` (and `fmc=N` on Turin); omitted components
/// are not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MinTcb {
    pub fmc: Option<u8>,
    pub bootloader: Option<u8>,
    pub tee: Option<u8>,
    pub snp: Option<u8>,
    pub microcode: Option<u8>,
}

impl FromStr for MinTcb {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut m = MinTcb::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("expected KEY=N, got {part:?}"))?;
            let v: u8 = v
                .trim()
                .parse()
                .map_err(|_| format!("{k}: {v:?} is not a number 0..=255"))?;
            let slot = match k.trim() {
                "fmc" => &mut m.fmc,
                "bl" | "bootloader" => &mut m.bootloader,
                "tee" => &mut m.tee,
                "snp" => &mut m.snp,
                "ucode" | "microcode" => &mut m.microcode,
                other => {
                    return Err(format!(
                        "unknown TCB component {other:?} (fmc, bl, tee, snp, ucode)"
                    ));
                }
            };
            *slot = Some(v);
        }
        Ok(m)
    }
}

impl MinTcb {
    /// The components of `tcb` below the minimum, as `name actual < min`.
    pub fn shortfalls(&self, tcb: &Tcb) -> Vec<String> {
        let mut out = Vec::new();
        let mut cmp = |name: &str, actual: Option<u8>, min: Option<u8>| {
            if let Some(min) = min {
                match actual {
                    Some(a) if a >= min => {}
                    Some(a) => out.push(format!("{name} {a} < {min}")),
                    None => out.push(format!("{name} absent (required >= {min})")),
                }
            }
        };
        cmp("fmc", tcb.fmc, self.fmc);
        cmp("bl", Some(tcb.bootloader), self.bootloader);
        cmp("tee", Some(tcb.tee), self.tee);
        cmp("snp", Some(tcb.snp), self.snp);
        cmp("ucode", Some(tcb.microcode), self.microcode);
        out
    }
}

/// What the verifier expects beyond a genuine report.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The launch digest the report must carry (the launch digest).
    pub expect_measurement: Option<[u8; 48]>,
    /// The 64 bytes of `REPORT_DATA` the report must carry (e.g. nonce || key hash).
    pub expect_report_data: Option<[u8; 64]>,
    /// Minimum `REPORTED_TCB`.
    pub min_tcb: Option<MinTcb>,
    /// Accept guests whose policy allows debugging (their memory is readable by the host).
    pub allow_debug: bool,
    /// Accept guests whose policy allows a migration agent (it can export guest memory).
    pub allow_migration_agent: bool,
    /// Accept an ARK that is not one of AMD's published roots (labs, test chains).
    pub allow_unknown_ark: bool,
}

/// One check and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub message: String,
}

/// Every check run on a report.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyOutcome {
    pub verified: bool,
    pub checks: Vec<Check>,
    /// The parsed report when it could be parsed.
    #[serde(skip)]
    pub report: Option<AttestationReport>,
}

impl VerifyOutcome {
    /// True when every check passed (and there was at least one).
    pub fn verified(&self) -> bool {
        self.verified
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// The check named `name`, if it ran.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

struct Checks(Vec<Check>);

impl Checks {
    fn push(&mut self, name: &'static str, result: Result<String, String>) -> bool {
        let passed = result.is_ok();
        let message = result.unwrap_or_else(|e| e);
        self.0.push(Check {
            name,
            passed,
            message,
        });
        passed
    }
}

const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");

/// `signer` signed `signee` with RSASSA-PSS/SHA-384 (AMD's scheme for ARK, ASK and VCEK).
fn rsa_pss_signed(signer: &Certificate, signee: &Certificate) -> Result<(), String> {
    let alg = &signee.signature_algorithm;
    if alg.oid != RSASSA_PSS {
        return Err(format!("signature algorithm {} is not RSASSA-PSS", alg.oid));
    }
    // RFC 5280: the outer algorithm must equal the signed one.
    if *alg != signee.tbs_certificate.signature {
        return Err("outer signature algorithm differs from the signed one".into());
    }
    let spki = &signer.tbs_certificate.subject_public_key_info;
    let key_bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or("signer public key is not whole bytes")?;
    let key = rsa::RsaPublicKey::from_pkcs1_der(key_bytes)
        .map_err(|e| format!("signer key is not RSA: {e}"))?;
    let vk = rsa::pss::VerifyingKey::<sha2::Sha384>::new(key);
    let tbs = signee
        .tbs_certificate
        .to_der()
        .map_err(|e| format!("cannot re-encode certificate: {e}"))?;
    let sig_bytes = signee
        .signature
        .as_bytes()
        .ok_or("signature is not whole bytes")?;
    let sig = rsa::pss::Signature::try_from(sig_bytes)
        .map_err(|e| format!("malformed signature: {e}"))?;
    vk.verify(&tbs, &sig)
        .map_err(|_| "RSA-PSS/SHA-384 signature does not verify".to_owned())
}

fn issued_by(signer: &Certificate, signee: &Certificate) -> Result<(), String> {
    if signee.tbs_certificate.issuer != signer.tbs_certificate.subject {
        return Err(format!(
            "issuer \"{}\" is not the signer \"{}\"",
            signee.tbs_certificate.issuer, signer.tbs_certificate.subject
        ));
    }
    Ok(())
}

fn chain_link(signer: &Certificate, signee: &Certificate) -> Result<String, String> {
    issued_by(signer, signee)?;
    rsa_pss_signed(signer, signee)?;
    Ok(format!(
        "\"{}\" signed by \"{}\"",
        signee.tbs_certificate.subject, signer.tbs_certificate.subject
    ))
}

fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}

fn ext_u8(cert: &Certificate, oid: ObjectIdentifier, name: &str) -> Result<u8, String> {
    let v = extension(cert, oid).ok_or_else(|| format!("VCEK has no {name} extension ({oid})"))?;
    u8::from_der(v).map_err(|e| format!("VCEK {name} extension is not a small INTEGER: {e}"))
}

/// The VCEK's hwID: the raw chip id (64 bytes on Milan/Genoa, 8 on Turin), possibly
/// wrapped in an OCTET STRING.
fn vcek_hw_id(cert: &Certificate) -> Result<Vec<u8>, String> {
    let v = extension(cert, OID_HW_ID).ok_or("VCEK has no hwID extension")?;
    if v.len() == 64 || v.len() == 8 {
        return Ok(v.to_vec());
    }
    x509_cert::der::asn1::OctetString::from_der(v)
        .map(|o| o.as_bytes().to_vec())
        .map_err(|_| format!("VCEK hwID extension of {} bytes is not a chip id", v.len()))
}

fn check_tcb(vcek: &Certificate, report: &AttestationReport) -> Result<String, String> {
    let t = report.reported_tcb;
    let mut want = vec![
        ("bl", OID_BL_SPL, t.bootloader),
        ("tee", OID_TEE_SPL, t.tee),
        ("snp", OID_SNP_SPL, t.snp),
        ("ucode", OID_UCODE_SPL, t.microcode),
    ];
    if let Some(fmc) = t.fmc {
        want.push(("fmc", OID_FMC_SPL, fmc));
    }
    let mut bad = Vec::new();
    for (name, oid, reported) in want {
        let cert = ext_u8(vcek, oid, name)?;
        if cert != reported {
            bad.push(format!("{name}: VCEK {cert}, report {reported}"));
        }
    }
    if bad.is_empty() {
        Ok(format!("VCEK issued for reported TCB {t}"))
    } else {
        Err(bad.join("; "))
    }
}

fn check_chip_id(vcek: &Certificate, report: &AttestationReport) -> Result<String, String> {
    if report.mask_chip_key || report.chip_id == [0; 64] {
        return Err(
            "the report masks its chip id (MASK_CHIP_ID): cannot bind it to the VCEK".into(),
        );
    }
    let hw = vcek_hw_id(vcek)?;
    let matches = match hw.len() {
        64 => hw == report.chip_id,
        // Turin: the VCEK carries the first 8 bytes; the report pads with zeros.
        8 => hw == report.chip_id[..8] && report.chip_id[8..].iter().all(|&b| b == 0),
        _ => false,
    };
    if matches {
        Ok(format!("chip id {}", crate::hex(&hw)))
    } else {
        Err(format!(
            "VCEK hwID {} != report chip id {}",
            crate::hex(&hw),
            crate::hex(&report.chip_id)
        ))
    }
}

fn check_signature(vcek: &Certificate, report: &AttestationReport) -> Result<String, String> {
    let spki = &vcek.tbs_certificate.subject_public_key_info;
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or("VCEK public key is not whole bytes")?;
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
        .map_err(|_| "VCEK public key is not a P-384 point".to_owned())?;
    // r and s are 72-byte little-endian fields; P-384 scalars use the low 48 bytes.
    let (r_hi, r) = report.signature_r.split_at(24);
    let (s_hi, s) = report.signature_s.split_at(24);
    if r_hi.iter().chain(s_hi).any(|&b| b != 0) {
        return Err("signature R or S has non-zero bytes beyond 48".into());
    }
    let sig = p384::ecdsa::Signature::from_scalars(
        *p384::FieldBytes::from_slice(r),
        *p384::FieldBytes::from_slice(s),
    )
    .map_err(|_| "signature R or S is out of range".to_owned())?;
    vk.verify(report.signed_bytes(), &sig)
        .map(|()| "ECDSA P-384/SHA-384 over bytes 0x000..0x2A0 verifies with the VCEK".to_owned())
        .map_err(|_| "ECDSA P-384/SHA-384 signature does not verify with the VCEK".to_owned())
}

fn parse_pem(name: &str, pem: &[u8]) -> Result<Certificate, String> {
    Certificate::from_pem(pem).map_err(|e| format!("{name}: not a PEM X.509 certificate: {e}"))
}

/// AMD's ARK and ASK, checked once: parse, AMD root, self-signature, ARK → ASK.
///
/// Verifying many reports (or VCEKs) under one root needs this only once; see
/// [`CaChain::vcek`] and [`Vcek::verify_report`]. [`verify_report`] does all three steps.
#[derive(Debug, Clone)]
pub struct CaChain {
    ask: Option<Certificate>,
    checks: Vec<Check>,
    trusted: bool,
}

impl CaChain {
    /// Checks `ca.parse`, `ark.amd_root`, `ark.self_signed`, `ask.signed_by_ark`.
    pub fn new(roots: &Roots<'_>, opts: &VerifyOptions) -> Self {
        let mut c = Checks(Vec::new());
        let parsed =
            parse_pem("ARK", roots.ark).and_then(|ark| Ok((ark, parse_pem("ASK", roots.ask)?)));
        let (ark, ask) = match parsed {
            Ok(t) => {
                c.push("ca.parse", Ok("ARK and ASK decode".into()));
                t
            }
            Err(e) => {
                c.push("ca.parse", Err(e));
                return CaChain {
                    ask: None,
                    checks: c.0,
                    trusted: false,
                };
            }
        };
        let ark_der = ark.to_der().unwrap_or_default();
        let known = roots.amd_arks.iter().find(|(_, pem)| {
            parse_pem("ARK", pem)
                .ok()
                .and_then(|a| a.to_der().ok())
                .is_some_and(|d| d == ark_der)
        });
        // SECURITY: the lab root's private key is gone but its VCEK key is public, so a
        // chain under it proves nothing about hardware; it passes only when the verifier
        // chose it (`--lab-root`), never as an `--ark` file.
        let root_ok = c.push(
            "ark.amd_root",
            match known {
                _ if roots.lab => Ok(
                    "ARK is the simulated PSP's lab root, as asked (tee: simulated, no hardware)"
                        .into(),
                ),
                Some((name, _)) => Ok(format!("ARK is AMD's {name} root")),
                None if opts.allow_unknown_ark => Ok(format!(
                    "ARK \"{}\" is not an AMD root; accepted as asked",
                    ark.tbs_certificate.subject
                )),
                None => Err(format!(
                    "ARK \"{}\" is not one of AMD's roots",
                    ark.tbs_certificate.subject
                )),
            },
        );
        let ark_ok = c.push(
            "ark.self_signed",
            chain_link(&ark, &ark).map(|_| "ARK is self-signed".into()),
        );
        let ask_ok = c.push("ask.signed_by_ark", chain_link(&ark, &ask));
        CaChain {
            ask: Some(ask),
            checks: c.0,
            trusted: root_ok && ark_ok && ask_ok,
        }
    }

    /// The checks run so far.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// Whether every CA check passed.
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// Checks `vcek.parse` and `vcek.signed_by_ask` for a chip's VCEK (DER).
    pub fn vcek(&self, vcek_der: &[u8]) -> Vcek {
        let mut c = Checks(self.checks.clone());
        let cert = match Certificate::from_der(vcek_der) {
            Ok(v) => {
                c.push("vcek.parse", Ok("VCEK decodes".into()));
                Some(v)
            }
            Err(e) => {
                c.push(
                    "vcek.parse",
                    Err(format!("VCEK: not a DER X.509 certificate: {e}")),
                );
                None
            }
        };
        let mut trusted = false;
        if let Some(vcek) = &cert {
            let link = match &self.ask {
                Some(ask) => chain_link(ask, vcek),
                None => Err("no ASK to check against".into()),
            };
            trusted = c.push("vcek.signed_by_ask", link) && self.trusted;
        }
        Vcek {
            cert,
            checks: c.0,
            trusted,
        }
    }
}

/// A chip's VCEK, checked against a [`CaChain`].
#[derive(Debug, Clone)]
pub struct Vcek {
    cert: Option<Certificate>,
    checks: Vec<Check>,
    trusted: bool,
}

impl Vcek {
    /// Whether the VCEK and the whole chain above it verified.
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// The checks run so far (CA and VCEK).
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// Runs the report checks; the outcome lists the chain checks too.
    pub fn verify_report(&self, report: &[u8], opts: &VerifyOptions) -> VerifyOutcome {
        let mut c = Checks(Vec::new());
        let parsed = match AttestationReport::parse(report) {
            Ok(r) => {
                c.push("report.parse", Ok(format!("version {} report", r.version)));
                Some(r)
            }
            Err(e) => {
                c.push("report.parse", Err(e.to_string()));
                None
            }
        };
        c.0.extend(self.checks.iter().cloned());
        report_checks(&mut c, parsed.as_ref(), self, opts);
        let verified = !c.0.is_empty() && c.0.iter().all(|x| x.passed);
        VerifyOutcome {
            verified,
            checks: c.0,
            report: parsed,
        }
    }
}

/// Verifies `report` (raw 1184 bytes) with the chip's VCEK (`vcek_der`) under `roots`, and
/// the expectations of `opts`. Never panics, whatever the bytes.
pub fn verify_report(
    report: &[u8],
    vcek_der: &[u8],
    roots: &Roots<'_>,
    opts: &VerifyOptions,
) -> VerifyOutcome {
    CaChain::new(roots, opts)
        .vcek(vcek_der)
        .verify_report(report, opts)
}

fn report_checks(
    c: &mut Checks,
    parsed: Option<&AttestationReport>,
    vcek: &Vcek,
    opts: &VerifyOptions,
) {
    if let Some(r) = parsed {
        c.push(
            "report.signature_algo",
            if r.signature_algo == 1 {
                Ok("ECDSA P-384 with SHA-384".into())
            } else {
                Err(format!(
                    "signature algorithm {} is not 1 (ECDSA P-384/SHA-384)",
                    r.signature_algo
                ))
            },
        );
        c.push(
            "report.signing_key",
            if r.signing_key == 0 {
                Ok("signed with a VCEK".into())
            } else {
                Err(format!(
                    "signing key {} is not the VCEK (0); VLEK reports are not supported",
                    r.signing_key
                ))
            },
        );
        match (&vcek.cert, vcek.trusted) {
            (Some(cert), true) => {
                c.push("report.signature", check_signature(cert, r));
            }
            _ => {
                c.push(
                    "report.signature",
                    Err("not checked: the VCEK is not trusted (see the chain checks)".into()),
                );
            }
        }
        if let Some(cert) = &vcek.cert {
            c.push("vcek.tcb", check_tcb(cert, r));
            c.push("vcek.chip_id", check_chip_id(cert, r));
        }
        let p = r.policy;
        c.push(
            "policy.debug",
            match (p.debug, opts.allow_debug) {
                (false, _) => Ok("debugging forbidden".into()),
                (true, true) => {
                    Ok("debugging allowed by policy; accepted as asked (--allow-debug)".into())
                }
                (true, false) => Err(format!(
                    "policy {:#x} allows debugging (host can read guest memory)",
                    p.raw
                )),
            },
        );
        c.push(
            "policy.migrate_ma",
            match (p.migrate_ma, opts.allow_migration_agent) {
                (false, _) => Ok("no migration agent".into()),
                (true, true) => Ok(
                    "migration agent allowed by policy; accepted as asked (--allow-migration-agent)"
                        .into(),
                ),
                (true, false) => Err(format!(
                    "policy {:#x} allows a migration agent (it can export guest memory)",
                    p.raw
                )),
            },
        );
        c.push(
            "policy.reserved",
            if p.raw & crate::report::Policy::RESERVED_ONE != 0 {
                Ok("bit 17 set".into())
            } else {
                Err(format!("policy {:#x}: reserved bit 17 must be one", p.raw))
            },
        );
        c.push(
            "vmpl",
            if r.vmpl == 0 {
                Ok("VMPL 0".into())
            } else {
                Err(format!("report requested from VMPL {}, not 0", r.vmpl))
            },
        );
        if let Some(m) = &opts.expect_measurement {
            c.push(
                "measurement",
                if *m == r.measurement {
                    Ok(format!("measurement {}", crate::hex(m)))
                } else {
                    Err(format!(
                        "measurement {} != expected {}",
                        crate::hex(&r.measurement),
                        crate::hex(m)
                    ))
                },
            );
        }
        if let Some(d) = &opts.expect_report_data {
            c.push(
                "report_data",
                if *d == r.report_data {
                    Ok("report data as expected".into())
                } else {
                    Err(format!(
                        "report data {} != expected {}",
                        crate::hex(&r.report_data),
                        crate::hex(d)
                    ))
                },
            );
        }
        if let Some(min) = &opts.min_tcb {
            let short = min.shortfalls(&r.reported_tcb);
            c.push(
                "min_tcb",
                if short.is_empty() {
                    Ok(format!("reported TCB {} meets the minimum", r.reported_tcb))
                } else {
                    Err(format!("reported TCB below minimum: {}", short.join(", ")))
                },
            );
        }
    }
}
