//! Offline verification of an NVIDIA GPU's attestation (Hopper-class: H100/H200 in
//! confidential-computing mode), as Omega's guest checks the inference proxy's GPU.
//!
//! Design principles:
//! - **Offline.** Nothing here reaches a network: the trust anchor is NVIDIA's device identity
//!   root, pinned in this crate ([`NVIDIA_DEVICE_IDENTITY_ROOT_PEM`], the root NVIDIA's own
//!   verifier ships); reference measurements come from the caller's policy. What the online
//!   parts of NVIDIA's verifier add (OCSP revocation, fetching and checking signed RIMs) is
//!   left to whoever writes the policy.
//! - **One reading of the evidence.** The report parser ([`spdm`]) and the bundle decoder
//!   ([`GpuEvidence::decode`]) are strict: exact lengths, no duplicates, nothing trailing.
//! - **Precise refusals.** Every check has its own [`GpuEvidenceError`] variant.
//! - no_std + alloc, no `unsafe`; fuzzed (`fuzz/`).
//!
//! What [`verify`] checks, in order: the bundle and the report parse; the certificate chain
//! verifies up to the pinned root ([`chain`]); the report's requester nonce is the expected
//! one; the report's ECDSA P-384/SHA-384 signature over request ‖ response (as NVIDIA's
//! verifier computes it, SPDM 1.1) verifies with the leaf's key; the leaf's FWID equals the
//! report's; every reference measurement of the policy is present and equals one of its
//! allowed values.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod chain;
pub mod spdm;

use alloc::string::{String, ToString as _};
use alloc::vec::Vec;

use p384::ecdsa::signature::Verifier as _;
use x509_cert::Certificate;
use x509_cert::der::{DecodePem as _, Encode as _};

use omega_proxy_evidence::{CcMode, Gpu, ProxyEvidence};

pub use spdm::Report;

/// NVIDIA's device identity root CA ("NVIDIA Device Identity CA"), as shipped in NVIDIA's
/// verifier (`nv-local-gpu-verifier` 2.7.3, `verifier/certs/verifier_device_root.pem`; the
/// sample test compares the two).
pub const NVIDIA_DEVICE_IDENTITY_ROOT_PEM: &str = include_str!("nvidia_device_identity_root.pem");

/// The magic that opens an encoded [`GpuEvidence`].
pub const MAGIC: &[u8; 8] = b"OGPUEV1\0";
/// The largest encoded [`GpuEvidence`] (the proxy evidence's cap for its `gpu_evidence`).
pub const MAX_ENCODED: usize = omega_proxy_evidence::MAX_GPU_EVIDENCE;

/// Why GPU evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuEvidenceError {
    #[error("{what} is {len} bytes, more than the {max} accepted")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("GPU evidence does not start with the OGPUEV1 magic")]
    Magic,
    #[error("GPU evidence: bad length for {0}")]
    Length(&'static str),
    #[error("truncated at {field}")]
    Truncated { field: &'static str },
    #[error("{0} bytes follow the signature or the evidence")]
    TrailingBytes(usize),
    #[error("SPDM version {0:#04x} is not supported (only 1.1, 0x11)")]
    SpdmVersion(u8),
    #[error("request code {0:#04x} is not GET_MEASUREMENTS")]
    RequestCode(u8),
    #[error("response code {0:#04x} is not MEASUREMENTS")]
    ResponseCode(u8),
    #[error("the request did not ask the GPU to sign (param1 bit 0 clear)")]
    SignatureNotRequested,
    #[error("the request asked for measurement operation {0:#04x}, not all (0xFF)")]
    NotAllMeasurements(u8),
    #[error("the response has no measurement blocks")]
    NoMeasurements,
    #[error("measurement block {index} uses specification {spec:#04x}, not DMTF")]
    MeasurementSpec { index: u8, spec: u8 },
    #[error("measurement block {index}: its size does not match its value")]
    MeasurementSize { index: u8 },
    #[error("measurement index {0} repeats or is out of order")]
    MeasurementIndexOrder(u8),
    #[error("measurement record: {extra} bytes after the {blocks} declared blocks")]
    MeasurementRecordLength { blocks: u8, extra: usize },
    #[error("opaque field type {0} appears twice")]
    DuplicateOpaqueField(u16),
    #[error("the certificate chain is not a list of PEM certificates")]
    ChainPem,
    #[error("the certificate chain has {0} certificates (2 to 8 accepted)")]
    ChainLength(usize),
    #[error("the chain's root is not the pinned NVIDIA device identity root")]
    UntrustedRoot,
    #[error("certificate {index}: its issuer is not the next certificate's subject")]
    IssuerMismatch { index: usize },
    #[error("certificate {index}: not signed with ECDSA P-384/SHA-384")]
    CertSignatureAlgorithm { index: usize },
    #[error("certificate {index}: its signature does not verify with its issuer's key")]
    CertSignature { index: usize },
    #[error("certificate {index}: its key is not a P-384 key")]
    KeyNotP384 { index: usize },
    #[error("certificate {index}: a malformed basic-constraints or key-usage extension")]
    CertExtension { index: usize },
    #[error("certificate {index}: a critical extension this verifier does not understand")]
    UnknownCriticalExtension { index: usize },
    #[error("certificate {index}: issues certificates but is not a CA allowed to sign them")]
    NotCa { index: usize },
    #[error("certificate {index}: its key usage does not allow signatures")]
    KeyUsage { index: usize },
    #[error("certificate {index}: outside its validity period")]
    CertValidity { index: usize },
    #[error("the pinned root certificate does not parse")]
    RootPem,
    #[error("the report's nonce is not the expected one (stale or for another session)")]
    NonceMismatch,
    #[error("the report's signature does not verify with the attestation certificate's key")]
    ReportSignature,
    #[error("the attestation certificate has no SHA-384 FWID")]
    CertFwidMissing,
    #[error("the attestation certificate's FWID extension is malformed")]
    CertFwidMalformed,
    #[error("the attestation certificate has more than one SHA-384 FWID")]
    CertFwidAmbiguous,
    #[error("the report has no FWID opaque field")]
    ReportFwidMissing,
    #[error("the report's FWID is not the attestation certificate's")]
    FwidMismatch,
    #[error("the policy supplies no reference measurements")]
    NoReferenceValues,
    #[error("the report has no measurement block {0} that the policy requires")]
    MeasurementMissing(u8),
    #[error("measurement block {0} matches none of the policy's reference values")]
    MeasurementMismatch(u8),
    #[error("the proxy's evidence names no NVIDIA GPU")]
    NoGpu,
    #[error("the proxy's GPU is not in confidential-computing mode (on)")]
    CcModeOff,
    #[error("the proxy's evidence carries no GPU evidence")]
    NoGpuEvidence,
}

/// A GPU's evidence as Omega's proxy sends it (the proxy evidence's `gpu_evidence` bytes):
/// NVML's attestation report and attestation certificate chain, unchanged.
///
/// Encoding: [`MAGIC`] ‖ u32 BE length ‖ report ‖ u32 BE length ‖ PEM chain, both lengths
/// non-zero, nothing after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuEvidence {
    /// `nvmlDeviceGetConfComputeGpuAttestationReport`'s `attestationReport`: SPDM
    /// GET_MEASUREMENTS request ‖ MEASUREMENTS response.
    pub report: Vec<u8>,
    /// `nvmlDeviceGetConfComputeGpuCertificate`'s `attestationCertChain`: PEM, leaf first.
    pub cert_chain_pem: Vec<u8>,
}

impl GpuEvidence {
    /// The encoding described on [`GpuEvidence`].
    pub fn encode(&self) -> Result<Vec<u8>, GpuEvidenceError> {
        let mut out = Vec::with_capacity(16 + self.report.len() + self.cert_chain_pem.len());
        out.extend_from_slice(MAGIC);
        for (what, part) in [("report", &self.report), ("chain", &self.cert_chain_pem)] {
            let len = u32::try_from(part.len()).map_err(|_| GpuEvidenceError::Length(what))?;
            if len == 0 {
                return Err(GpuEvidenceError::Length(what));
            }
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
        if out.len() > MAX_ENCODED {
            return Err(GpuEvidenceError::TooLarge {
                what: "GPU evidence",
                len: out.len(),
                max: MAX_ENCODED,
            });
        }
        Ok(out)
    }

    /// Decodes [`GpuEvidence::encode`]'s output, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, GpuEvidenceError> {
        if bytes.len() > MAX_ENCODED {
            return Err(GpuEvidenceError::TooLarge {
                what: "GPU evidence",
                len: bytes.len(),
                max: MAX_ENCODED,
            });
        }
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(GpuEvidenceError::Magic)?;
        let (report, rest) = part(rest, "report", spdm::MAX_REPORT)?;
        let (chain, rest) = part(rest, "chain", chain::MAX_CHAIN_PEM)?;
        if !rest.is_empty() {
            return Err(GpuEvidenceError::TrailingBytes(rest.len()));
        }
        Ok(Self {
            report: report.to_vec(),
            cert_chain_pem: chain.to_vec(),
        })
    }
}

fn part<'a>(
    bytes: &'a [u8],
    what: &'static str,
    max: usize,
) -> Result<(&'a [u8], &'a [u8]), GpuEvidenceError> {
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(GpuEvidenceError::Truncated { field: what })?;
    let len =
        usize::try_from(u32::from_be_bytes(*len)).map_err(|_| GpuEvidenceError::Length(what))?;
    if len == 0 || len > max {
        return Err(GpuEvidenceError::Length(what));
    }
    if rest.len() < len {
        return Err(GpuEvidenceError::Truncated { field: what });
    }
    Ok(rest.split_at(len))
}

/// One measurement the policy requires: the SPDM block `index` (1-based) must equal one of
/// `allowed`. (NVIDIA's RIMs number from 0: RIM index `i` is SPDM index `i + 1`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceValue {
    /// SPDM measurement block index.
    pub index: u8,
    /// The acceptable values (a RIM's alternatives).
    pub allowed: Vec<Vec<u8>>,
}

/// What the verifier accepts.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    /// The trust anchor, DER. [`Policy::nvidia`] pins NVIDIA's device identity root.
    pub root_der: Vec<u8>,
    /// Reference measurements; at least one (an empty list is refused, not "anything goes").
    pub reference: &'a [ReferenceValue],
    /// When set (seconds since the epoch), every certificate must be valid at that time.
    pub now_unix: Option<u64>,
}

impl<'a> Policy<'a> {
    /// NVIDIA's device identity root and these reference values, no clock.
    pub fn nvidia(reference: &'a [ReferenceValue]) -> Result<Self, GpuEvidenceError> {
        let root = Certificate::from_pem(NVIDIA_DEVICE_IDENTITY_ROOT_PEM)
            .map_err(|_| GpuEvidenceError::RootPem)?;
        Ok(Self {
            root_der: root.to_der().map_err(|_| GpuEvidenceError::RootPem)?,
            reference,
            now_unix: None,
        })
    }
}

/// What a verified evidence established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedGpu {
    /// The firmware ID (SHA-384) that report and certificate agree on.
    pub fwid: Vec<u8>,
    /// The driver version the report names, if any (signed, not compared with anything).
    pub driver_version: Option<String>,
    /// How many measurement blocks the report has.
    pub measurement_blocks: usize,
    /// How many of them the policy compared.
    pub measurements_checked: usize,
}

/// Verifies NVML's report and PEM chain for `nonce` against `policy` (see the crate docs).
pub fn verify_parts(
    report: &[u8],
    cert_chain_pem: &[u8],
    nonce: &[u8; spdm::NONCE_LEN],
    policy: &Policy<'_>,
) -> Result<VerifiedGpu, GpuEvidenceError> {
    let report = Report::parse(report)?;
    let certs = chain::parse_pem_chain(cert_chain_pem)?;
    let leaf_key = chain::verify_chain(&certs, &policy.root_der, policy.now_unix)?;
    if report.requester_nonce != *nonce {
        return Err(GpuEvidenceError::NonceMismatch);
    }
    let sig = p384::ecdsa::Signature::from_slice(report.signature)
        .map_err(|_| GpuEvidenceError::ReportSignature)?;
    leaf_key
        .verify(report.signed, &sig)
        .map_err(|_| GpuEvidenceError::ReportSignature)?;
    let cert_fwid = chain::leaf_fwid(&certs[0])?;
    // SECURITY: NVIDIA's verifier skips this comparison when the report has no FWID; here a
    // report without one is refused, so the firmware the report describes is the one the
    // certificate (signed by NVIDIA's chain) was issued to.
    let report_fwid = report
        .opaque(spdm::OPAQUE_FWID)
        .ok_or(GpuEvidenceError::ReportFwidMissing)?;
    if report_fwid != cert_fwid.as_slice() {
        return Err(GpuEvidenceError::FwidMismatch);
    }
    if policy.reference.is_empty() {
        return Err(GpuEvidenceError::NoReferenceValues);
    }
    for rv in policy.reference {
        let m = report
            .measurement(rv.index)
            .ok_or(GpuEvidenceError::MeasurementMissing(rv.index))?;
        if !rv.allowed.iter().any(|a| a.as_slice() == m.value) {
            return Err(GpuEvidenceError::MeasurementMismatch(rv.index));
        }
    }
    Ok(VerifiedGpu {
        fwid: cert_fwid,
        driver_version: report.driver_version().map(|s| s.to_string()),
        measurement_blocks: report.measurements.len(),
        measurements_checked: policy.reference.len(),
    })
}

/// [`verify_parts`] on an encoded [`GpuEvidence`].
pub fn verify(
    encoded: &[u8],
    nonce: &[u8; spdm::NONCE_LEN],
    policy: &Policy<'_>,
) -> Result<VerifiedGpu, GpuEvidenceError> {
    let ev = GpuEvidence::decode(encoded)?;
    verify_parts(&ev.report, &ev.cert_chain_pem, nonce, policy)
}

/// The guest's check of a proxy's GPU: the evidence names an NVIDIA GPU with CC on, carries
/// GPU evidence, and that evidence verifies for
/// [`omega_proxy_evidence::gpu_nonce`]`(tls_spki, nonce)` — fresh for this guest's nonce and
/// produced for this TLS key. Call it on an evidence that `omega_proxy_evidence::decode`
/// accepted (which checked `report_data`) and whose nonce the caller checked.
pub fn verify_proxy_gpu(
    evidence: &ProxyEvidence,
    policy: &Policy<'_>,
) -> Result<VerifiedGpu, GpuEvidenceError> {
    match &evidence.gpu {
        Gpu::None => return Err(GpuEvidenceError::NoGpu),
        Gpu::Nvidia { cc_mode, .. } if *cc_mode != CcMode::On => {
            return Err(GpuEvidenceError::CcModeOff);
        }
        Gpu::Nvidia { .. } => {}
    }
    let encoded = evidence
        .gpu_evidence
        .as_deref()
        .ok_or(GpuEvidenceError::NoGpuEvidence)?;
    let nonce = omega_proxy_evidence::gpu_nonce(&evidence.tls_spki, &evidence.nonce);
    verify(encoded, &nonce, policy)
}
