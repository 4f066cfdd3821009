//! From the policy language to the GPU check: `model … { gpu { measurement … } }` compiled,
//! decoded as the monitor decodes it, turned into the session's expectations
//! ([`omega_inference_client::policy::expectations`]), and those expectations applied
//! (a) to NVIDIA's recorded sample evidence (a genuine Hopper report and chain, from
//! `nv-local-gpu-verifier` 2.7.3, fetched by scripts/fetch-nvidia-gpu-samples.sh) with
//! `omega_gpu_evidence::verify_parts`, since the sample was signed for NVIDIA's nonce, not a
//! session's; and (b) to proxy evidence through `check_each`, as the monitor's session does:
//! a proxy that says `gpu: none` is refused for the model that requires GPU evidence and
//! admitted for the one beside it that does not.

use std::path::{Path, PathBuf};

use omega_gpu_evidence::{self as gpu, GpuEvidenceError as E, Report};
use omega_inference_client::policy::expectations;
use omega_inference_client::session::check_each;
use omega_inference_client::{Refusal, check};
use omega_proxy_evidence::{CcMode, Gpu, ProxyEvidence, Tee, encode};

const NONCE: [u8; 32] = [0x42; 32];
/// The requester nonce inside NVIDIA's sample report.
const SAMPLE_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn spki() -> Vec<u8> {
    [
        &omega_inference_client::check::ED25519_SPKI_PREFIX[..],
        &[9u8; 32][..],
    ]
    .concat()
}

fn proxy_evidence(gpu: Gpu, gpu_evidence: Option<Vec<u8>>) -> ProxyEvidence {
    ProxyEvidence::new(
        [0x11; 32],
        [0x22; 32],
        "llama.cpp".into(),
        Tee::None,
        gpu,
        gpu_evidence,
        spki(),
        NONCE,
    )
}

/// `big` requires GPU evidence with these `measurement` lines; `small` pins the same proxy
/// without; both compiled and decoded.
fn policy_bytes(identity: &[u8; 32], measurements: &str) -> Vec<u8> {
    let src = format!(
        "policy \"gpu\"\n\
         model big {{\n  proxy \"sha256:{id}\"\n  gpu {{\n{measurements}  }}\n}}\n\
         model small {{ proxy \"sha256:{id}\" }}\n",
        id = hex::encode(identity)
    );
    policy_compiler::compile("gpu.policy", &src, Path::new("."))
        .unwrap_or_else(|d| panic!("{}\n{src}", d.render()))
        .to_bytes()
}

struct Sample {
    report: Vec<u8>,
    chain: Vec<u8>,
}

fn sample() -> Option<Sample> {
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
    let hex_report = std::fs::read_to_string(dir.join("hopperAttestationReport.txt")).unwrap();
    Some(Sample {
        report: hex::decode(hex_report.trim()).unwrap(),
        chain: std::fs::read(dir.join("hopperCertChain.txt")).unwrap(),
    })
}

/// The policy's reference values reach the verifier unchanged: NVIDIA's sample verifies
/// against a policy that lists its measurements 1, 2 (with an alternative) and 64, and is
/// refused, naming the block, when one digit of the policy's value differs or the policy
/// lists a block the report lacks.
#[test]
fn policy_reference_values_verify_nvidias_sample() {
    let Some(s) = sample() else { return };
    let report = Report::parse(&s.report).unwrap();
    let value = |i: u8| hex::encode(report.measurement(i).unwrap().value);
    let nonce: [u8; 32] = hex::decode(SAMPLE_NONCE).unwrap().try_into().unwrap();
    let identity = proxy_evidence(Gpu::None, None).identity();
    let verify = |measurements: &str| {
        let bytes = policy_bytes(&identity, measurements);
        let policy = omega_policy::decode(&bytes).unwrap();
        let expect = expectations(&policy);
        assert_eq!(expect.len(), 2);
        assert_eq!(expect[0].identity, identity);
        assert!(expect[1].require_confidential_gpu.is_none());
        let required = expect[0].require_confidential_gpu.clone().unwrap();
        assert_eq!(required.root_der, None, "NVIDIA's root");
        let gpu_policy = gpu::Policy::nvidia(&required.reference).unwrap();
        gpu::verify_parts(&s.report, &s.chain, &nonce, &gpu_policy)
    };
    let good = format!(
        "    measurement 64 \"{}\"\n    measurement 1 \"{}\"\n    measurement 2 [\"{}\", \"{}\"]\n",
        value(64),
        value(1).to_uppercase(),
        "00".repeat(48),
        value(2)
    );
    let v = verify(&good).unwrap();
    assert_eq!((v.measurements_checked, v.measurement_blocks), (3, 64));

    let mut wrong = value(2);
    wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
    let bad = format!(
        "    measurement 1 \"{}\"\n    measurement 2 \"{wrong}\"\n",
        value(1)
    );
    assert_eq!(verify(&bad), Err(E::MeasurementMismatch(2)));
    let missing = format!(
        "    measurement 1 \"{}\"\n    measurement 65 \"{}\"\n",
        value(1),
        value(1)
    );
    assert_eq!(verify(&missing), Err(E::MeasurementMissing(65)));
}

/// Through the session's check, as the monitor runs it: the real proxy's `gpu: none` is
/// refused for `big` (its GPU requirement) and admitted for `small` (the same pinned
/// identity, no requirement); the verdicts say which. NVIDIA's genuine sample carried by a
/// proxy is refused for `big`: it was signed for another nonce than this session's.
#[test]
fn a_proxy_without_gpu_evidence_is_refused_for_the_model_that_requires_it() {
    let none = proxy_evidence(Gpu::None, None);
    let identity = none.identity();
    let bytes = policy_bytes(
        &identity,
        &format!("    measurement 1 \"{}\"\n", "ab".repeat(48)),
    );
    let policy = omega_policy::decode(&bytes).unwrap();
    let expect = expectations(&policy);
    let evidence = encode(&none).unwrap();
    assert_eq!(
        check(&evidence, &NONCE, &expect[0]),
        Err(Refusal::NoConfidentialGpu)
    );
    let (proxy, verdicts) = check_each(&evidence, &NONCE, &expect);
    assert_eq!(proxy.unwrap().gpu_evidence_sha256, None);
    assert_eq!(verdicts, [Err(Refusal::NoConfidentialGpu), Ok(())]);
    // Only `big` in the policy: the session itself is refused, with the reason.
    let (proxy, _) = check_each(&evidence, &NONCE, &expect[..1]);
    assert_eq!(proxy.err(), Some(Refusal::NoConfidentialGpu));

    let Some(s) = sample() else { return };
    let bundle = gpu::GpuEvidence {
        report: s.report,
        cert_chain_pem: s.chain,
    }
    .encode()
    .unwrap();
    let hopper = proxy_evidence(
        Gpu::Nvidia {
            model: "NVIDIA H100 80GB HBM3".into(),
            cc_mode: CcMode::On,
        },
        Some(bundle),
    );
    let bytes = policy_bytes(
        &hopper.identity(),
        &format!("    measurement 1 \"{}\"\n", "ab".repeat(48)),
    );
    let expect = expectations(&omega_policy::decode(&bytes).unwrap());
    let (_, verdicts) = check_each(&encode(&hopper).unwrap(), &NONCE, &expect);
    assert_eq!(verdicts, [Err(Refusal::Gpu(E::NonceMismatch)), Ok(())]);
}
