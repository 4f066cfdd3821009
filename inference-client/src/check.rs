//! The evidence check: what the guest requires of the proxy before it trusts the channel.

use sha2::Digest as _;

use omega_gpu_evidence::{GpuEvidenceError, ReferenceValue};
use omega_proxy_evidence::{EvidenceError, Gpu, NONCE_LEN, ProxyEvidence, Tee, decode};

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4); the 32-byte key follows.
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What the guest's policy requires of the proxy serving one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// The proxy identity the policy pins (`model … { proxy "sha256:…" }`): see
    /// [`omega_proxy_evidence::identity`]. It covers the proxy binary, the model file, the
    /// backend, the TEE and the GPU.
    pub identity: [u8; 32],
    /// The model file's SHA-256, when the caller knows it separately (the identity already
    /// covers it; this gives a precise refusal).
    pub model_sha256: Option<[u8; 32]>,
    /// The proxy must run in a TEE whose report proves the evidence. No TEE report is verified
    /// yet (docs/inference.md), so today this refuses every proxy: `tee: none` as such, a
    /// claimed TEE as unproven.
    pub require_tee: bool,
    /// The proxy must use an NVIDIA GPU in confidential-computing mode whose evidence
    /// verifies ([`omega_gpu_evidence::verify_proxy_gpu`]: chain to the root, signature over
    /// this session's nonce and TLS key, FWID, these reference measurements).
    pub require_confidential_gpu: Option<GpuRequirement>,
}

/// What the policy requires of the proxy's GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRequirement {
    /// Reference measurements the GPU must report: SPDM block index → allowed values (at
    /// least one; NVIDIA's RIM index `i` is SPDM index `i + 1`). Whoever writes the policy
    /// vouches for them (the signed RIMs themselves are not checked here).
    pub reference: alloc::vec::Vec<ReferenceValue>,
    /// The device identity root (DER) the certificate chain must end in; `None` is
    /// NVIDIA's ("NVIDIA Device Identity CA", pinned in `omega-gpu-evidence`). Another root
    /// is for lab chains in tests.
    pub root_der: Option<alloc::vec::Vec<u8>>,
}

impl Expectations {
    /// The expectations a policy gives for a model pinned to `identity`: a confidential proxy
    /// is required when prompts to it may carry labelled data (`cleared` not empty), which is
    /// the policy's default for labelled data ("no, unless confidential").
    pub fn from_policy(identity: [u8; 32], cleared_labels: bool) -> Self {
        Self {
            identity,
            model_sha256: None,
            require_tee: cleared_labels,
            require_confidential_gpu: None,
        }
    }
}

/// Why the guest refused a proxy's evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The evidence does not decode or breaks its own rules (including `report_data`).
    #[error("evidence: {0}")]
    Evidence(EvidenceError),
    /// The evidence is for another nonce: replayed or meant for another session.
    #[error("evidence is for another nonce (replayed)")]
    Nonce,
    /// The model file is not the expected one.
    #[error("evidence names model {got:02x?}, the policy expects {expected:02x?}")]
    Model { expected: [u8; 32], got: [u8; 32] },
    /// The proxy's identity is not the pinned one.
    #[error("proxy identity {got:02x?} is not the pinned {expected:02x?}")]
    Identity { expected: [u8; 32], got: [u8; 32] },
    /// The policy requires a TEE and the proxy says it runs in none.
    #[error("the policy requires a TEE and the proxy runs in none")]
    NoTee,
    /// The proxy claims a TEE but nothing proves it (no report is carried or verified yet).
    #[error("the proxy claims a TEE but carries no verifiable report")]
    TeeUnproven,
    /// The policy requires a confidential GPU and the proxy says it has none.
    #[error("the policy requires a confidential GPU and the proxy has none")]
    NoConfidentialGpu,
    /// The proxy's GPU evidence does not prove a confidential GPU for this session: not in CC
    /// mode, no evidence, or the evidence fails verification (chain, nonce, signature,
    /// FWID, reference measurements).
    #[error("GPU evidence: {0}")]
    Gpu(GpuEvidenceError),
    /// The TLS key is not an Ed25519 SubjectPublicKeyInfo (the one type this client speaks).
    #[error("the evidence's TLS key is not an Ed25519 SubjectPublicKeyInfo")]
    KeyType,
}

/// Evidence that passed [`check`]: the key to pin and what to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProxy {
    /// The proxy's identity (what the policy pinned).
    pub identity: [u8; 32],
    /// The TLS key to accept, and no other: SubjectPublicKeyInfo DER.
    pub tls_spki: alloc::vec::Vec<u8>,
    /// The whole evidence.
    pub evidence: ProxyEvidence,
    /// SHA-256 of the evidence's encoding as received (what a log records of this session:
    /// it covers the binary, the model, the TLS key and the nonce).
    pub evidence_sha256: [u8; 32],
    /// SHA-256 of the GPU evidence, when the policy required it and it verified.
    pub gpu_evidence_sha256: Option<[u8; 32]>,
}

/// Decodes `bytes` strictly and checks them against the nonce the guest sent and its
/// expectations, in this order: decoding (structure, `report_data`), nonce, model, identity,
/// TEE, GPU, key type.
pub fn check(
    bytes: &[u8],
    nonce: &[u8; NONCE_LEN],
    expect: &Expectations,
) -> Result<VerifiedProxy, Refusal> {
    let evidence = decode(bytes).map_err(Refusal::Evidence)?;
    // SECURITY: freshness — an evidence for another nonce may be a replay of an old session
    // (an old key, a model since replaced).
    if !ct_eq(&evidence.nonce, nonce) {
        return Err(Refusal::Nonce);
    }
    if let Some(expected) = expect.model_sha256
        && evidence.model_sha256 != expected
    {
        return Err(Refusal::Model {
            expected,
            got: evidence.model_sha256,
        });
    }
    let identity = evidence.identity();
    if identity != expect.identity {
        return Err(Refusal::Identity {
            expected: expect.identity,
            got: identity,
        });
    }
    // SECURITY: a claimed TEE is only a claim until a report carrying report_data is verified;
    // that verifier does not exist yet, so a policy that requires a TEE refuses every proxy.
    if expect.require_tee {
        return Err(match evidence.tee {
            Tee::None => Refusal::NoTee,
            Tee::SevSnp | Tee::Tdx => Refusal::TeeUnproven,
        });
    }
    let mut gpu_evidence_sha256 = None;
    if let Some(required) = &expect.require_confidential_gpu {
        // SECURITY: `gpu` is a claim; only evidence that verifies for this session's nonce
        // and TLS key, against the root and the policy's reference values, proves a
        // confidential GPU. Without a CPU TEE around the proxy this proves who answered, not
        // that the proxy's host cannot read the prompts (docs/inference.md).
        if evidence.gpu == Gpu::None {
            return Err(Refusal::NoConfidentialGpu);
        }
        let mut policy =
            omega_gpu_evidence::Policy::nvidia(&required.reference).map_err(Refusal::Gpu)?;
        if let Some(root) = &required.root_der {
            policy.root_der = root.clone();
        }
        omega_gpu_evidence::verify_proxy_gpu(&evidence, &policy).map_err(Refusal::Gpu)?;
        gpu_evidence_sha256 = evidence
            .gpu_evidence
            .as_deref()
            .map(|g| sha2::Sha256::digest(g).into());
    }
    if evidence.tls_spki.len() != ED25519_SPKI_PREFIX.len() + 32
        || !evidence.tls_spki.starts_with(&ED25519_SPKI_PREFIX)
    {
        return Err(Refusal::KeyType);
    }
    Ok(VerifiedProxy {
        identity,
        tls_spki: evidence.tls_spki.clone(),
        evidence,
        evidence_sha256: sha2::Sha256::digest(bytes).into(),
        gpu_evidence_sha256,
    })
}

fn ct_eq(a: &[u8; NONCE_LEN], b: &[u8; NONCE_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
