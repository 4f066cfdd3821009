//! NVIDIA's own public sample evidence (a Hopper GPU's attestation report and certificate
//! chain) and test RIMs, from the PyPI wheel nv-local-gpu-verifier 2.7.3, fetched at test time
//! by scripts/fetch-nvidia-gpu-samples.sh (env OMEGA_NV_SAMPLES_DIR, default
//! ~/.cache/omega/nvidia-gpu-verifier-2.7.3). Never committed.

use std::path::PathBuf;

use omega_gpu_evidence::{
    self as gpu, GpuEvidence, GpuEvidenceError as E, Policy, ReferenceValue, Report, spdm,
};
use omega_test_support::require;

/// The requester nonce inside NVIDIA's sample report (the request's bytes 4..36). It is not
/// the default nonce NVIDIA's verifier uses in its test mode (`4cff7f53…`).
const SAMPLE_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn samples() -> Option<PathBuf> {
    let dir = std::env::var_os("OMEGA_NV_SAMPLES_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/omega/nvidia-gpu-verifier-2.7.3"))
        })
        .filter(|d| d.join(".complete").is_file());
    require(
        dir,
        "NVIDIA's sample GPU evidence (run scripts/fetch-nvidia-gpu-samples.sh, or set OMEGA_NV_SAMPLES_DIR)",
    )
}

struct Sample {
    report: Vec<u8>,
    chain: Vec<u8>,
    dir: PathBuf,
}

fn load() -> Option<Sample> {
    let dir = samples()?;
    let hex = std::fs::read_to_string(dir.join("hopperAttestationReport.txt")).unwrap();
    Some(Sample {
        report: hex::decode(hex.trim()).unwrap(),
        chain: std::fs::read(dir.join("hopperCertChain.txt")).unwrap(),
        dir,
    })
}

fn nonce() -> [u8; 32] {
    hex::decode(SAMPLE_NONCE).unwrap().try_into().unwrap()
}

/// The active measurements of one of NVIDIA's RIM files (`<Resource type="Measurement"
/// index=… active="True" … HashN="…"/>`), as SPDM indices (RIM index + 1).
fn rim_references(path: &std::path::Path) -> Vec<ReferenceValue> {
    let xml = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for element in xml.split("<ns0:Resource ").skip(1) {
        let element = &element[..element.find("/>").unwrap()];
        let attr = |name: &str| -> Option<&str> {
            let at = element.find(&format!(" {name}=\""))? + name.len() + 3;
            Some(&element[at..at + element[at..].find('"')?])
        };
        if attr("type") != Some("Measurement") && !element.starts_with("type=\"Measurement\"") {
            continue;
        }
        if attr("active") != Some("True") {
            continue;
        }
        let index: u8 = attr("index").unwrap().parse().unwrap();
        let alternatives: usize = attr("alternatives").unwrap().parse().unwrap();
        let allowed = (0..alternatives)
            .map(|i| hex::decode(attr(&format!("ns2:Hash{i}")).unwrap()).unwrap())
            .collect();
        out.push(ReferenceValue {
            index: index + 1,
            allowed,
        });
    }
    assert!(
        !out.is_empty(),
        "{} has active measurements",
        path.display()
    );
    out
}

#[test]
fn pinned_root_is_the_one_nvidia_ships() {
    let Some(s) = load() else { return };
    let theirs = std::fs::read_to_string(s.dir.join("verifier_device_root.pem")).unwrap();
    assert_eq!(theirs.trim(), gpu::NVIDIA_DEVICE_IDENTITY_ROOT_PEM.trim());
}

#[test]
fn sample_report_parses_as_nvidia_documents_it() {
    let Some(s) = load() else { return };
    let r = Report::parse(&s.report).unwrap();
    assert_eq!(s.report.len(), 4117);
    assert_eq!(r.spdm_version, 0x11);
    assert_eq!(r.requester_nonce, nonce());
    assert_eq!(r.measurements.len(), 64);
    assert!(r.measurements.iter().all(|m| m.value.len() == 48));
    assert_eq!(r.driver_version(), Some("550.90.07"));
    assert_eq!(r.opaque(spdm::OPAQUE_FWID).map(<[u8]>::len), Some(48));
    assert_eq!(r.signed.len(), s.report.len() - 96);
}

/// The sample verifies end to end: chain to NVIDIA's root, nonce, signature, FWID, and the
/// measurements of NVIDIA's test RIMs that this report matches.
#[test]
fn sample_verifies_with_nvidia_root() {
    let Some(s) = load() else { return };
    // NVIDIA's two test RIMs, restricted to the indices this sample report matches: the
    // wheel's RIMs were made for other firmware (see docs/inference.md).
    let report = Report::parse(&s.report).unwrap();
    let mut matching = Vec::new();
    let mut mismatching = Vec::new();
    for rim in [
        "Driver_RIM_test_no_gpu.swidtag",
        "1010_0200_882_96005E0001_test_no_gpu.swidtag",
    ] {
        for rv in rim_references(&s.dir.join(rim)) {
            let value = report.measurement(rv.index).unwrap().value;
            if rv.allowed.iter().any(|a| a == value) {
                matching.push(rv);
            } else {
                mismatching.push(rv);
            }
        }
    }
    assert_eq!((matching.len(), mismatching.len()), (13, 20));
    let policy = Policy::nvidia(&matching).unwrap();
    let v = gpu::verify_parts(&s.report, &s.chain, &nonce(), &policy).unwrap();
    assert_eq!(v.measurement_blocks, 64);
    assert_eq!(v.measurements_checked, 13);
    assert_eq!(v.driver_version.as_deref(), Some("550.90.07"));
    assert_eq!(
        hex::encode(&v.fwid),
        hex::encode(report.opaque(spdm::OPAQUE_FWID).unwrap())
    );

    // The bundle the proxy sends carries the same two parts.
    let encoded = GpuEvidence {
        report: s.report.clone(),
        cert_chain_pem: s.chain.clone(),
    }
    .encode()
    .unwrap();
    assert_eq!(gpu::verify(&encoded, &nonce(), &policy), Ok(v));

    // NVIDIA's full test RIMs: the first reference value the sample does not match is named.
    let all: Vec<ReferenceValue> = matching.iter().chain(&mismatching).cloned().collect();
    let first_bad = mismatching[0].index;
    assert_eq!(
        gpu::verify_parts(
            &s.report,
            &s.chain,
            &nonce(),
            &Policy::nvidia(&all).unwrap()
        ),
        Err(E::MeasurementMismatch(first_bad))
    );
    // Validity against a clock: NVIDIA's certificates run to 9999; before 2022 the
    // "GH100 Identity" CA (from 2022-01-12) was not valid yet.
    let mut timed = Policy::nvidia(&matching).unwrap();
    timed.now_unix = Some(1_800_000_000);
    assert!(gpu::verify_parts(&s.report, &s.chain, &nonce(), &timed).is_ok());
    timed.now_unix = Some(1_600_000_000);
    assert!(matches!(
        gpu::verify_parts(&s.report, &s.chain, &nonce(), &timed),
        Err(E::CertValidity { .. })
    ));
}

#[test]
fn sample_tampered_is_refused_precisely() {
    let Some(s) = load() else { return };
    let report = Report::parse(&s.report).unwrap();
    let rv = vec![ReferenceValue {
        index: 1,
        allowed: vec![report.measurement(1).unwrap().value.to_vec()],
    }];
    let policy = Policy::nvidia(&rv).unwrap();
    let check = |r: &[u8], c: &[u8], n: &[u8; 32]| gpu::verify_parts(r, c, n, &policy);
    assert!(check(&s.report, &s.chain, &nonce()).is_ok());

    // Another nonce (a replay for another session).
    let mut other = nonce();
    other[0] ^= 1;
    assert_eq!(check(&s.report, &s.chain, &other), Err(E::NonceMismatch));
    // A nonce changed inside the report: the signature covers the request.
    let mut r = s.report.clone();
    r[4] ^= 1;
    let mut n = nonce();
    n[0] ^= 1;
    assert_eq!(check(&r, &s.chain, &n), Err(E::ReportSignature));
    // The signature, a measurement value, the responder nonce, an opaque byte.
    for at in [
        s.report.len() - 1,
        s.report.len() - 60,
        37 + 8 + 7,
        s.report.len() - 96 - 30,
    ] {
        let mut r = s.report.clone();
        r[at] ^= 0x01;
        assert_eq!(
            check(&r, &s.chain, &nonce()),
            Err(E::ReportSignature),
            "byte {at}"
        );
    }
    // Truncated anywhere: refused, never a panic.
    for len in 0..s.report.len() {
        assert!(
            check(&s.report[..len], &s.chain, &nonce()).is_err(),
            "len {len}"
        );
    }
    // The chain without its root, or without its leaf.
    let pem = String::from_utf8(s.chain.clone()).unwrap();
    let blocks: Vec<&str> = pem
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("BEGIN"))
        .collect();
    assert_eq!(blocks.len(), 5);
    let no_root = blocks[..4].concat();
    assert_eq!(
        check(&s.report, no_root.as_bytes(), &nonce()),
        Err(E::UntrustedRoot)
    );
    // Without the leaf, the device (BROM) certificate would be the signer: its key usage
    // allows certificate signing only.
    let no_leaf = blocks[1..].concat();
    assert_eq!(
        check(&s.report, no_leaf.as_bytes(), &nonce()),
        Err(E::KeyUsage { index: 0 })
    );
    // An intermediate left out: the leaf's issuer is then not the next certificate.
    let gap = [blocks[0], blocks[2], blocks[3], blocks[4]].concat();
    assert_eq!(
        check(&s.report, gap.as_bytes(), &nonce()),
        Err(E::IssuerMismatch { index: 0 })
    );
}
