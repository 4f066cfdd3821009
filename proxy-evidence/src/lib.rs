//! The evidence Omega's inference proxy presents to a guest before any prompt leaves it: the
//! contract between `omega-proxy` (host or its own confidential VM) and the guest's client.
//!
//! [`ProxyEvidence`] names what answers the guest — the proxy binary's and the model file's
//! SHA-256, the backend, whether a TEE and a confidential GPU are behind it (`none` when not; the
//! proxy never pretends), the GPU's attestation evidence when there is some — and binds all of
//! that to the proxy's TLS key and the guest's nonce through [`report_data`]: on confidential
//! hardware that value is the user data of the proxy VM's SNP/TDX report, so a report for one
//! TLS key, GPU and nonce cannot be replayed for another.
//!
//! Encoding: postcard, [`decode`] is strict (size caps, every field bounded, no trailing bytes,
//! one encoding per value, `report_data` recomputed and compared), so the guest never acts on
//! an evidence it could not re-encode to the very same bytes.
#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// The format version [`encode`] writes and [`decode`] accepts.
pub const VERSION: u16 = 1;

/// Domain separation of [`report_data`]: the same key, evidence and nonce hashed for another
/// purpose never yield this value.
pub const REPORT_DATA_TAG: &[u8] = b"omega-proxy-evidence/v1/report-data";

/// The length of the guest's nonce (the same as the monitor's challenge nonce).
pub const NONCE_LEN: usize = 32;

/// The largest GPU evidence accepted: an SPDM measurement response with its certificate chain
/// (a few KiB per GPU), with room for eight GPUs.
pub const MAX_GPU_EVIDENCE: usize = 128 * 1024;
/// The largest TLS public key (SubjectPublicKeyInfo DER) accepted: RSA-4096 SPKI is 550 bytes.
pub const MAX_TLS_SPKI: usize = 1024;
/// The longest backend or GPU model name accepted.
pub const MAX_NAME: usize = 64;
/// The largest encoded evidence [`decode`] looks at.
pub const MAX_ENCODED: usize = MAX_GPU_EVIDENCE + MAX_TLS_SPKI + 4 * MAX_NAME + 512;

/// The trusted execution environment the proxy runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tee {
    /// None: the host that runs the proxy can read prompts and answers.
    None,
    /// An AMD SEV-SNP confidential VM (its report's user data is [`report_data`]).
    SevSnp,
    /// An Intel TDX trust domain (its quote's report data is [`report_data`]).
    Tdx,
}

/// The confidential-computing mode of an NVIDIA GPU, as its driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CcMode {
    /// Confidential computing off: the GPU's memory is readable by its host.
    Off,
    /// Confidential computing on (production).
    On,
    /// CC with developer tools enabled: attestable, but not for production secrets.
    DevTools,
}

/// The accelerator behind the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gpu {
    /// No GPU: inference runs on the CPU.
    None,
    /// An NVIDIA GPU.
    Nvidia {
        /// The product name, e.g. `NVIDIA H100 80GB HBM3`.
        model: String,
        /// Its confidential-computing mode.
        cc_mode: CcMode,
    },
}

/// What the proxy presents to a guest (see the crate documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyEvidence {
    /// [`VERSION`].
    pub version: u16,
    /// SHA-256 of the proxy's executable file.
    pub proxy_sha256: [u8; 32],
    /// SHA-256 of the model file it serves.
    pub model_sha256: [u8; 32],
    /// The inference backend, e.g. `llama.cpp-cpu`.
    pub backend: String,
    /// The TEE the proxy runs in.
    pub tee: Tee,
    /// The GPU behind the backend.
    pub gpu: Gpu,
    /// The GPU's attestation evidence (SPDM measurement response and certificate chain, as
    /// NVML returns them), present only with a GPU and never empty.
    pub gpu_evidence: Option<Vec<u8>>,
    /// The proxy's TLS public key, SubjectPublicKeyInfo DER.
    pub tls_spki: Vec<u8>,
    /// The guest's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// [`report_data`] of the fields above.
    #[serde(with = "bytes64")]
    pub report_data: [u8; 64],
}

/// Why an evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// The input is larger than [`MAX_ENCODED`].
    #[error("evidence is {0} bytes, more than the {MAX_ENCODED} accepted")]
    TooLarge(usize),
    /// Postcard could not decode it.
    #[error("evidence does not decode")]
    Malformed,
    /// Bytes follow the evidence.
    #[error("{0} bytes follow the evidence")]
    TrailingBytes(usize),
    /// The value has another, shorter encoding (e.g. an overlong varint).
    #[error("evidence is not canonically encoded")]
    NotCanonical,
    /// The version is not [`VERSION`].
    #[error("evidence version {0} is not supported (expected {VERSION})")]
    Version(u16),
    /// A field is over its cap.
    #[error("field {field} is {len} bytes, more than the {max} accepted")]
    FieldTooLarge {
        field: &'static str,
        len: usize,
        max: usize,
    },
    /// A field that must not be empty is.
    #[error("field {0} is empty")]
    Empty(&'static str),
    /// GPU evidence without a GPU.
    #[error("GPU evidence is present but the evidence names no GPU")]
    GpuEvidenceWithoutGpu,
    /// `report_data` is not the digest of the other fields.
    #[error("report_data does not commit to this TLS key, GPU evidence and nonce")]
    ReportData,
    /// Encoding failed (only with a value that breaks the caps).
    #[error("evidence does not encode")]
    Encode,
}

/// `SHA-512(REPORT_DATA_TAG ‖ SHA-256(tls_spki) ‖ SHA-256(gpu_evidence, or empty) ‖ nonce)`:
/// the 64 bytes a TEE report's user data carries to bind the TLS key, the GPU evidence and the
/// guest's nonce (an SNP report's REPORT_DATA and a TDX quote's REPORTDATA are both 64 bytes).
pub fn report_data(
    tls_spki: &[u8],
    gpu_evidence: Option<&[u8]>,
    nonce: &[u8; NONCE_LEN],
) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(REPORT_DATA_TAG);
    h.update(Sha256::digest(tls_spki));
    h.update(Sha256::digest(gpu_evidence.unwrap_or_default()));
    h.update(nonce);
    h.finalize().into()
}

/// `model_sha256` of a proxy that hashed no model file: one that forwards to an upstream
/// server (its backend is then `openai-upstream:<model name>`). A guest that requires a model
/// digest refuses it; a pinned identity still covers the backend string.
pub const MODEL_NOT_HASHED: [u8; 32] = [0; 32];

/// Domain separation of [`gpu_nonce`].
pub const GPU_NONCE_TAG: &[u8] = b"omega-proxy-evidence/v1/gpu-nonce";

/// The nonce the proxy hands the GPU for its SPDM measurement request (NVML's 32-byte nonce):
/// `SHA-256(GPU_NONCE_TAG ‖ SHA-256(tls_spki) ‖ nonce)`. The GPU signs it, so its evidence is
/// fresh for the guest's nonce and names the TLS key it was produced for; a verifier
/// recomputes it from the evidence's own `tls_spki` and `nonce` (`omega-gpu-evidence`).
pub fn gpu_nonce(tls_spki: &[u8], nonce: &[u8; NONCE_LEN]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(GPU_NONCE_TAG);
    h.update(Sha256::digest(tls_spki));
    h.update(nonce);
    h.finalize().into()
}

impl ProxyEvidence {
    /// An evidence with `version` = [`VERSION`] and `report_data` computed from the fields.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        proxy_sha256: [u8; 32],
        model_sha256: [u8; 32],
        backend: String,
        tee: Tee,
        gpu: Gpu,
        gpu_evidence: Option<Vec<u8>>,
        tls_spki: Vec<u8>,
        nonce: [u8; NONCE_LEN],
    ) -> Self {
        let report_data = report_data(&tls_spki, gpu_evidence.as_deref(), &nonce);
        Self {
            version: VERSION,
            proxy_sha256,
            model_sha256,
            backend,
            tee,
            gpu,
            gpu_evidence,
            tls_spki,
            nonce,
            report_data,
        }
    }

    /// Every structural rule [`decode`] enforces besides the encoding itself.
    pub fn check(&self) -> Result<(), EvidenceError> {
        if self.version != VERSION {
            return Err(EvidenceError::Version(self.version));
        }
        cap("backend", self.backend.len(), MAX_NAME)?;
        non_empty("backend", self.backend.len())?;
        if let Gpu::Nvidia { model, .. } = &self.gpu {
            cap("gpu.model", model.len(), MAX_NAME)?;
            non_empty("gpu.model", model.len())?;
        }
        if let Some(gpu_evidence) = &self.gpu_evidence {
            // SECURITY: an empty evidence would hash like an absent one in report_data.
            non_empty("gpu_evidence", gpu_evidence.len())?;
            cap("gpu_evidence", gpu_evidence.len(), MAX_GPU_EVIDENCE)?;
            if self.gpu == Gpu::None {
                return Err(EvidenceError::GpuEvidenceWithoutGpu);
            }
        }
        cap("tls_spki", self.tls_spki.len(), MAX_TLS_SPKI)?;
        non_empty("tls_spki", self.tls_spki.len())?;
        // SECURITY: a relay that swaps the TLS key or the GPU evidence, or replays an old
        // nonce, breaks this binding; a TEE report carrying report_data then proves all three.
        let expected = report_data(&self.tls_spki, self.gpu_evidence.as_deref(), &self.nonce);
        if expected != self.report_data {
            return Err(EvidenceError::ReportData);
        }
        Ok(())
    }
}

/// Serde for `[u8; 64]` (serde derives arrays up to 32): a 64-tuple, as postcard writes any
/// array (no length prefix).
mod bytes64 {
    use core::fmt;
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(64)?;
        for b in bytes {
            t.serialize_element(b)?;
        }
        t.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        struct Bytes64;
        impl<'de> Visitor<'de> for Bytes64 {
            type Value = [u8; 64];
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 64], A::Error> {
                let mut out = [0u8; 64];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(64, Bytes64)
    }
}

fn cap(field: &'static str, len: usize, max: usize) -> Result<(), EvidenceError> {
    if len > max {
        return Err(EvidenceError::FieldTooLarge { field, len, max });
    }
    Ok(())
}

fn non_empty(field: &'static str, len: usize) -> Result<(), EvidenceError> {
    if len == 0 {
        return Err(EvidenceError::Empty(field));
    }
    Ok(())
}

/// Domain separation of [`identity`].
pub const IDENTITY_TAG: &[u8] = b"omega-proxy-evidence/v1/identity";

/// The proxy's identity, what a policy's `model … { proxy "sha256:…" }` pins: SHA-256 of
/// [`IDENTITY_TAG`] ‖ `proxy_sha256` ‖ `model_sha256` ‖ len32(`backend`) ‖ `backend` ‖ tee byte
/// (0 none, 1 SEV-SNP, 2 TDX) ‖ GPU (0 none; 1 NVIDIA ‖ len32(model) ‖ model ‖ cc byte: 0 off,
/// 1 on, 2 devtools), lengths as big-endian u32. It names what answers (binary, model, backend,
/// TEE, GPU) and nothing per session (not the TLS key, the GPU evidence or the nonce), so one
/// pin holds across restarts of the same proxy on the same hardware.
pub fn identity(
    proxy_sha256: &[u8; 32],
    model_sha256: &[u8; 32],
    backend: &str,
    tee: Tee,
    gpu: &Gpu,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(IDENTITY_TAG);
    h.update(proxy_sha256);
    h.update(model_sha256);
    h.update(len32(backend.len()));
    h.update(backend.as_bytes());
    h.update([match tee {
        Tee::None => 0u8,
        Tee::SevSnp => 1,
        Tee::Tdx => 2,
    }]);
    match gpu {
        Gpu::None => h.update([0u8]),
        Gpu::Nvidia { model, cc_mode } => {
            h.update([1u8]);
            h.update(len32(model.len()));
            h.update(model.as_bytes());
            h.update([match cc_mode {
                CcMode::Off => 0u8,
                CcMode::On => 1,
                CcMode::DevTools => 2,
            }]);
        }
    }
    h.finalize().into()
}

fn len32(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

impl ProxyEvidence {
    /// [`identity`] of this evidence.
    pub fn identity(&self) -> [u8; 32] {
        identity(
            &self.proxy_sha256,
            &self.model_sha256,
            &self.backend,
            self.tee,
            &self.gpu,
        )
    }
}

/// The cleartext exchange that opens every connection to the proxy's TLS port, before the TLS
/// handshake: the guest sends [`request`] (a magic and its fresh nonce), the proxy answers
/// [`response`] (a magic, a big-endian u32 length, the encoded evidence for that nonce), then
/// the guest starts TLS on the same connection, having checked the evidence, and accepts
/// exactly the key the evidence names. Nothing in it is secret; the evidence is bound to the
/// nonce and the key, so a relay that alters it is refused by the guest.
pub mod exchange {
    use super::{EvidenceError, MAX_ENCODED, NONCE_LEN, ProxyEvidence, encode};
    use alloc::vec::Vec;

    /// The request's first bytes.
    pub const REQUEST_MAGIC: [u8; 8] = *b"OPEVREQ1";
    /// The response's first bytes.
    pub const RESPONSE_MAGIC: [u8; 8] = *b"OPEVRSP1";
    /// The request's length: magic and nonce.
    pub const REQUEST_LEN: usize = REQUEST_MAGIC.len() + NONCE_LEN;
    /// The response header's length: magic and evidence length.
    pub const RESPONSE_HEADER_LEN: usize = RESPONSE_MAGIC.len() + 4;

    /// Why an exchange message was refused.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum ExchangeError {
        /// The message does not start with its magic (e.g. a client that speaks TLS at once).
        #[error("not an evidence exchange message")]
        Magic,
        /// The announced evidence length is zero or over [`MAX_ENCODED`].
        #[error("announced evidence length {0} is not within 1..={MAX_ENCODED}")]
        Length(u32),
    }

    /// The guest's request for evidence bound to `nonce`.
    pub fn request(nonce: &[u8; NONCE_LEN]) -> [u8; REQUEST_LEN] {
        let mut out = [0u8; REQUEST_LEN];
        out[..REQUEST_MAGIC.len()].copy_from_slice(&REQUEST_MAGIC);
        out[REQUEST_MAGIC.len()..].copy_from_slice(nonce);
        out
    }

    /// The nonce in a request.
    pub fn parse_request(bytes: &[u8; REQUEST_LEN]) -> Result<[u8; NONCE_LEN], ExchangeError> {
        let (magic, nonce) = bytes.split_at(REQUEST_MAGIC.len());
        if magic != REQUEST_MAGIC {
            return Err(ExchangeError::Magic);
        }
        let mut out = [0u8; NONCE_LEN];
        out.copy_from_slice(nonce);
        Ok(out)
    }

    /// The proxy's response: header and encoded evidence.
    pub fn response(evidence: &ProxyEvidence) -> Result<Vec<u8>, EvidenceError> {
        let body = encode(evidence)?;
        let len = u32::try_from(body.len()).map_err(|_| EvidenceError::Encode)?;
        let mut out = Vec::with_capacity(RESPONSE_HEADER_LEN + body.len());
        out.extend_from_slice(&RESPONSE_MAGIC);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The evidence length a response header announces; the caller then reads exactly that
    /// many bytes and gives them to [`super::decode`].
    pub fn parse_response_header(
        header: &[u8; RESPONSE_HEADER_LEN],
    ) -> Result<usize, ExchangeError> {
        let (magic, len) = header.split_at(RESPONSE_MAGIC.len());
        if magic != RESPONSE_MAGIC {
            return Err(ExchangeError::Magic);
        }
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        // SECURITY: the guest allocates what the header announces; bound it first.
        match usize::try_from(len) {
            Ok(n) if (1..=MAX_ENCODED).contains(&n) => Ok(n),
            _ => Err(ExchangeError::Length(len)),
        }
    }
}

/// The bytes of `evidence`, after [`ProxyEvidence::check`].
pub fn encode(evidence: &ProxyEvidence) -> Result<Vec<u8>, EvidenceError> {
    evidence.check()?;
    postcard::to_allocvec(evidence).map_err(|_| EvidenceError::Encode)
}

/// Strictly decodes an evidence (see the crate documentation). It does not judge it: whether
/// the digests, TEE and GPU are acceptable is the guest's policy.
pub fn decode(bytes: &[u8]) -> Result<ProxyEvidence, EvidenceError> {
    // SECURITY: the cap bounds what postcard allocates for a hostile length prefix.
    if bytes.len() > MAX_ENCODED {
        return Err(EvidenceError::TooLarge(bytes.len()));
    }
    let (evidence, rest): (ProxyEvidence, _) =
        postcard::take_from_bytes(bytes).map_err(|_| EvidenceError::Malformed)?;
    if !rest.is_empty() {
        return Err(EvidenceError::TrailingBytes(rest.len()));
    }
    evidence.check()?;
    // SECURITY: one encoding per value (postcard accepts e.g. overlong varints), so two
    // parties hashing or logging the evidence never see two forms of one value.
    let again = postcard::to_allocvec(&evidence).map_err(|_| EvidenceError::Encode)?;
    if again != bytes {
        return Err(EvidenceError::NotCanonical);
    }
    Ok(evidence)
}

#[cfg(test)]
mod tests {

    #[test]
    fn gpu_nonce_binds_key_and_nonce() {
        let a = super::gpu_nonce(b"key a", &[1; 32]);
        assert_ne!(a, super::gpu_nonce(b"key b", &[1; 32]));
        assert_ne!(a, super::gpu_nonce(b"key a", &[2; 32]));
        assert_eq!(a, super::gpu_nonce(b"key a", &[1; 32]));
        assert_ne!(
            a, [1; 32],
            "the guest's nonce is hashed, not passed through"
        );
    }
    use super::*;
    use alloc::vec;

    fn sample(gpu: Gpu, gpu_evidence: Option<Vec<u8>>) -> ProxyEvidence {
        ProxyEvidence::new(
            [1; 32],
            [2; 32],
            "llama.cpp-cpu".into(),
            Tee::None,
            gpu,
            gpu_evidence,
            vec![0x30, 0x2a, 0x30, 0x05],
            [3; NONCE_LEN],
        )
    }

    fn h100() -> Gpu {
        Gpu::Nvidia {
            model: "NVIDIA H100 80GB HBM3".into(),
            cc_mode: CcMode::On,
        }
    }

    #[test]
    fn round_trips() {
        for e in [sample(Gpu::None, None), sample(h100(), Some(vec![9; 5000]))] {
            let bytes = encode(&e).unwrap();
            assert_eq!(decode(&bytes).unwrap(), e);
        }
    }

    #[test]
    fn report_data_is_the_documented_hash() {
        let spki = [7u8; 44];
        let nonce = [5u8; NONCE_LEN];
        let mut input = Vec::new();
        input.extend_from_slice(REPORT_DATA_TAG);
        input.extend_from_slice(&Sha256::digest(spki));
        input.extend_from_slice(&Sha256::digest(b"gpu"));
        input.extend_from_slice(&nonce);
        let expected: [u8; 64] = Sha512::digest(&input).into();
        assert_eq!(report_data(&spki, Some(b"gpu"), &nonce), expected);
        // No GPU evidence hashes the empty string.
        assert_ne!(report_data(&spki, None, &nonce), expected);
        assert_eq!(
            report_data(&spki, None, &nonce),
            report_data(&spki, Some(b""), &nonce)
        );
    }

    #[test]
    fn report_data_binds_key_evidence_and_nonce() {
        let e = sample(h100(), Some(vec![9; 64]));
        let base = e.report_data;
        let mut other = e.clone();
        other.tls_spki[0] ^= 1;
        assert_ne!(
            report_data(&other.tls_spki, other.gpu_evidence.as_deref(), &other.nonce),
            base
        );
        let mut other = e.clone();
        other.gpu_evidence.as_mut().unwrap()[3] ^= 1;
        assert_ne!(
            report_data(&other.tls_spki, other.gpu_evidence.as_deref(), &other.nonce),
            base
        );
        let mut other = e;
        other.nonce[31] ^= 1;
        assert_ne!(
            report_data(&other.tls_spki, other.gpu_evidence.as_deref(), &other.nonce),
            base
        );
    }

    #[test]
    fn every_tampered_binding_is_refused() {
        let good = sample(h100(), Some(vec![9; 64]));
        let tamper: [fn(&mut ProxyEvidence); 4] = [
            |e| e.tls_spki[1] ^= 1,
            |e| e.gpu_evidence.as_mut().unwrap()[0] ^= 1,
            |e| e.nonce[0] ^= 1,
            |e| e.report_data[63] ^= 1,
        ];
        for t in tamper {
            let mut e = good.clone();
            t(&mut e);
            let bytes = postcard::to_allocvec(&e).unwrap();
            assert_eq!(decode(&bytes), Err(EvidenceError::ReportData));
        }
    }

    #[test]
    fn structural_rules() {
        let mut e = sample(Gpu::None, Some(vec![1]));
        assert_eq!(e.check(), Err(EvidenceError::GpuEvidenceWithoutGpu));
        e = sample(h100(), Some(vec![]));
        assert_eq!(e.check(), Err(EvidenceError::Empty("gpu_evidence")));
        e = sample(Gpu::None, None);
        e.version = 2;
        assert_eq!(encode(&e), Err(EvidenceError::Version(2)));
        e = sample(Gpu::None, None);
        e.backend = "x".repeat(MAX_NAME + 1);
        assert!(matches!(
            e.check(),
            Err(EvidenceError::FieldTooLarge {
                field: "backend",
                ..
            })
        ));
        e = ProxyEvidence::new(
            [0; 32],
            [0; 32],
            "b".into(),
            Tee::Tdx,
            Gpu::None,
            None,
            vec![],
            [0; 32],
        );
        assert_eq!(e.check(), Err(EvidenceError::Empty("tls_spki")));
        e = sample(h100(), Some(vec![1; MAX_GPU_EVIDENCE + 1]));
        assert!(matches!(
            e.check(),
            Err(EvidenceError::FieldTooLarge {
                field: "gpu_evidence",
                ..
            })
        ));
    }

    #[test]
    fn strict_decoding() {
        let bytes = encode(&sample(Gpu::None, None)).unwrap();
        // Trailing bytes.
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(EvidenceError::TrailingBytes(1)));
        // Every truncation fails.
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
        }
        // An overlong varint for the version (1 = 0x01 → 0x81 0x00).
        assert_eq!(bytes[0], 1);
        let mut overlong = vec![0x81, 0x00];
        overlong.extend_from_slice(&bytes[1..]);
        assert!(matches!(
            decode(&overlong),
            Err(EvidenceError::NotCanonical | EvidenceError::Malformed)
        ));
        // Too large to look at.
        assert_eq!(
            decode(&vec![0; MAX_ENCODED + 1]),
            Err(EvidenceError::TooLarge(MAX_ENCODED + 1))
        );
    }

    #[test]
    fn identity_names_binary_model_backend_tee_and_gpu_only() {
        let e = sample(Gpu::None, None);
        let id = e.identity();
        // Not the session's key or nonce.
        let mut other = sample(Gpu::None, None);
        other.tls_spki[0] ^= 1;
        other.nonce = [9; NONCE_LEN];
        assert_eq!(other.identity(), id);
        // Everything else.
        let changes: [fn(&mut ProxyEvidence); 6] = [
            |e| e.proxy_sha256[0] ^= 1,
            |e| e.model_sha256[31] ^= 1,
            |e| e.backend.push('x'),
            |e| e.tee = Tee::SevSnp,
            |e| e.gpu = h100(),
            |e| e.tee = Tee::Tdx,
        ];
        for c in changes {
            let mut e = e.clone();
            c(&mut e);
            assert_ne!(e.identity(), id);
        }
        let mut dev = sample(h100(), None);
        let on = dev.identity();
        dev.gpu = Gpu::Nvidia {
            model: "NVIDIA H100 80GB HBM3".into(),
            cc_mode: CcMode::DevTools,
        };
        assert_ne!(dev.identity(), on);
        // The documented encoding.
        let mut input = Vec::new();
        input.extend_from_slice(IDENTITY_TAG);
        input.extend_from_slice(&[1; 32]);
        input.extend_from_slice(&[2; 32]);
        input.extend_from_slice(&13u32.to_be_bytes());
        input.extend_from_slice(b"llama.cpp-cpu");
        input.extend_from_slice(&[0, 0]);
        assert_eq!(id, <[u8; 32]>::from(Sha256::digest(&input)));
    }

    #[test]
    fn exchange_round_trips_and_refuses_garbage() {
        use exchange::*;
        let nonce = [7u8; NONCE_LEN];
        let req = request(&nonce);
        assert_eq!(parse_request(&req), Ok(nonce));
        let mut bad = req;
        bad[0] = 0x16; // a TLS ClientHello's first byte
        assert_eq!(parse_request(&bad), Err(ExchangeError::Magic));

        let e = sample(Gpu::None, None);
        let resp = response(&e).unwrap();
        let header: [u8; RESPONSE_HEADER_LEN] = resp[..RESPONSE_HEADER_LEN].try_into().unwrap();
        let n = parse_response_header(&header).unwrap();
        assert_eq!(n, resp.len() - RESPONSE_HEADER_LEN);
        assert_eq!(decode(&resp[RESPONSE_HEADER_LEN..]).unwrap(), e);

        let mut h = header;
        h[..4].copy_from_slice(b"HTTP");
        assert_eq!(parse_response_header(&h), Err(ExchangeError::Magic));
        for len in [0u32, MAX_ENCODED as u32 + 1, u32::MAX] {
            let mut h = header;
            h[8..].copy_from_slice(&len.to_be_bytes());
            assert_eq!(parse_response_header(&h), Err(ExchangeError::Length(len)));
        }
    }

    #[test]
    fn random_mutations_never_panic_and_never_decode_differently() {
        let bytes = encode(&sample(h100(), Some(vec![9; 300]))).unwrap();
        use omega_test_support::random::{Rng, mutate, seed};
        let mut rng = Rng::new(seed(14));
        for _ in 0..20_000 {
            let mut mutated = bytes.clone();
            mutate(&mut rng, &mut mutated);
            if let Ok(e) = decode(&mutated) {
                assert_eq!(postcard::to_allocvec(&e).unwrap(), mutated);
            }
        }
    }
}
