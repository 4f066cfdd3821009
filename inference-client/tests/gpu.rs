//! The guest's GPU requirement: `check` calls `omega_gpu_evidence::verify_proxy_gpu` when the
//! policy requires a confidential GPU. Refused: `gpu: none`; a GPU not in CC mode; NVIDIA's
//! own sample evidence (a genuine Hopper report and chain, from `nv-local-gpu-verifier`
//! 2.7.3, fetched by scripts/fetch-nvidia-gpu-samples.sh) replayed into a proxy's evidence:
//! it was signed for another nonce, not this session's; the same with a byte of the report
//! or of the chain flipped, and garbage instead of GPU evidence. Without the requirement the
//! same evidence passes: the GPU is the policy's choice. (A GPU evidence that verifies for a
//! fresh nonce needs a live GPU or a lab chain: the lab case is `omega-gpu-evidence`'s
//! `proxy_gpu_is_bound_to_the_guest_nonce_and_tls_key`.)

use std::path::PathBuf;

use omega_gpu_evidence::{GpuEvidence, GpuEvidenceError as E, ReferenceValue};
use omega_inference_client::{Expectations, GpuRequirement, Refusal, check};
use omega_proxy_evidence::{CcMode, Gpu, ProxyEvidence, Tee, encode};

const NONCE: [u8; 32] = [0x5a; 32];

fn spki() -> Vec<u8> {
    [
        &omega_inference_client::check::ED25519_SPKI_PREFIX[..],
        &[7u8; 32][..],
    ]
    .concat()
}

fn hopper() -> Gpu {
    Gpu::Nvidia {
        model: "NVIDIA H100 80GB HBM3".into(),
        cc_mode: CcMode::On,
    }
}

/// A proxy evidence with this GPU and GPU evidence (report_data computed over them), and
/// the expectations pinning its identity, with or without the GPU requirement.
fn evidence(gpu: Gpu, gpu_evidence: Option<Vec<u8>>) -> (Vec<u8>, [u8; 32]) {
    let e = ProxyEvidence::new(
        [0x11; 32],
        [0x22; 32],
        "llama.cpp-cuda".into(),
        Tee::None,
        gpu,
        gpu_evidence,
        spki(),
        NONCE,
    );
    let identity = e.identity();
    (encode(&e).unwrap(), identity)
}

fn requiring(identity: [u8; 32], gpu: bool) -> Expectations {
    Expectations {
        identity,
        model_sha256: None,
        require_tee: false,
        require_confidential_gpu: gpu.then(|| GpuRequirement {
            reference: vec![ReferenceValue {
                index: 1,
                allowed: vec![vec![0; 48]],
            }],
            root_der: None,
        }),
    }
}

/// NVIDIA's sample, as the proxy would carry it (`OGPUEV1` bundle).
fn sample() -> Option<Vec<u8>> {
    let dir = std::env::var_os("OMEGA_NV_SAMPLES_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/omega/nvidia-gpu-verifier-2.7.3"))
        })
        .filter(|d| d.join(".complete").is_file());
    let dir = omega_test_support::require(
        dir,
        "NVIDIA's sample GPU evidence (run scripts/fetch-nvidia-gpu-samples.sh, or set OMEGA_NV_SAMPLES_DIR)",
    )?;
    let hex = std::fs::read_to_string(dir.join("hopperAttestationReport.txt")).unwrap();
    let ev = GpuEvidence {
        report: hex::decode(hex.trim()).unwrap(),
        cert_chain_pem: std::fs::read(dir.join("hopperCertChain.txt")).unwrap(),
    };
    Some(ev.encode().unwrap())
}

#[test]
fn a_proxy_without_a_gpu_is_refused_where_the_policy_requires_one() {
    let (bytes, identity) = evidence(Gpu::None, None);
    assert_eq!(
        check(&bytes, &NONCE, &requiring(identity, true)),
        Err(Refusal::NoConfidentialGpu)
    );
    assert!(check(&bytes, &NONCE, &requiring(identity, false)).is_ok());
}

#[test]
fn nvidias_sample_evidence_replayed_into_a_session_is_refused() {
    let Some(sample) = sample() else {
        return;
    };
    let (bytes, identity) = evidence(hopper(), Some(sample.clone()));
    // Genuine, chained to NVIDIA's root, signed by the GPU: for another nonce than
    // gpu_nonce(this TLS key, this session's nonce).
    assert_eq!(
        check(&bytes, &NONCE, &requiring(identity, true)),
        Err(Refusal::Gpu(E::NonceMismatch))
    );
    // Not required: the evidence passes (the policy did not ask about the GPU), and no GPU
    // digest is reported as verified.
    let v = check(&bytes, &NONCE, &requiring(identity, false)).unwrap();
    assert_eq!(v.gpu_evidence_sha256, None);
    // CC mode off or in developer mode: refused before the evidence is looked at.
    for cc_mode in [CcMode::Off, CcMode::DevTools] {
        let gpu = Gpu::Nvidia {
            model: "NVIDIA H100 80GB HBM3".into(),
            cc_mode,
        };
        let (bytes, identity) = evidence(gpu, Some(sample.clone()));
        assert_eq!(
            check(&bytes, &NONCE, &requiring(identity, true)),
            Err(Refusal::Gpu(E::CcModeOff))
        );
    }
    // Tampered: a byte of the report's signature, a byte inside the chain's PEM, garbage.
    let report_end = 12 + u32::from_be_bytes(sample[8..12].try_into().unwrap()) as usize;
    let mut tampered = Vec::new();
    for at in [report_end - 5, report_end + 300, 0] {
        let mut t = sample.clone();
        t[at] ^= 0x01;
        tampered.push(t);
    }
    tampered.push(b"not GPU evidence".to_vec());
    for t in tampered {
        let (bytes, identity) = evidence(hopper(), Some(t));
        match check(&bytes, &NONCE, &requiring(identity, true)) {
            Err(Refusal::Gpu(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
