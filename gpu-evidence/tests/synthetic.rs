//! Synthetic evidence: a lab root → intermediate → leaf chain of P-384 keys shaped like
//! NVIDIA's (FWID in a TCG DICE extension of the leaf) and SPDM 1.1 reports signed by the
//! leaf, built here field by field. Each test tampers one thing and expects its own error.
//! These keys are not NVIDIA's: the policy pins the lab root, as a verifier would NVIDIA's.

use std::str::FromStr as _;
use std::time::Duration;

use omega_gpu_evidence::{
    self as gpu, GpuEvidence, GpuEvidenceError as E, Policy, ReferenceValue, Report, spdm,
};
use omega_proxy_evidence::{CcMode, Gpu, ProxyEvidence, Tee};
use omega_test_support::random::{Rng, mutate, seed};
use p384::ecdsa::SigningKey;
use p384::ecdsa::signature::Signer as _;
use x509_cert::der::asn1::{Any, BitString, GeneralizedTime, ObjectIdentifier, OctetString};
use x509_cert::der::{Encode as _, EncodePem as _, pem::LineEnding};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

const NONCE: [u8; 32] = [0x5a; 32];
const FWID: [u8; 48] = [0xf1; 48];
const BLOCKS: u8 = 8;

fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 48].into()).unwrap()
}

fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

/// The DER of an ECDSA signature (SEQUENCE of two positive INTEGERs).
fn sig_der(sig: &p384::ecdsa::Signature) -> Vec<u8> {
    fn int(b: &[u8]) -> Vec<u8> {
        let mut b: Vec<u8> = b.iter().copied().skip_while(|&x| x == 0).collect();
        if b.first().is_none_or(|&x| x & 0x80 != 0) {
            b.insert(0, 0);
        }
        let mut out = vec![0x02, b.len() as u8];
        out.extend(b);
        out
    }
    let (r, s) = sig.split_bytes();
    let body = [int(&r), int(&s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// Hopper's leaf FWID extension value: SEQUENCE { INTEGER 1, SEQUENCE { sha384, OCTET
/// STRING } … }, with as many FWIDs as given.
fn fwid_ext(fwids: &[[u8; 48]]) -> Extension {
    let mut body = vec![0x02, 0x01, 0x01];
    for f in fwids {
        body.extend([
            0x30, 0x3d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
        ]);
        body.extend([0x02, 0x04, 0x30]);
        body.extend(f);
    }
    let mut value = vec![0x30, 0x81, body.len() as u8];
    value.extend(body);
    Extension {
        extn_id: oid("2.23.133.5.4.1"),
        critical: false,
        extn_value: OctetString::new(value).unwrap(),
    }
}

fn ext<T: x509_cert::der::Encode>(id: &str, critical: bool, v: &T) -> Extension {
    Extension {
        extn_id: oid(id),
        critical,
        extn_value: OctetString::new(v.to_der().unwrap()).unwrap(),
    }
}

fn ca_exts() -> Vec<Extension> {
    vec![
        ext(
            "2.5.29.19",
            true,
            &BasicConstraints {
                ca: true,
                path_len_constraint: None,
            },
        ),
        ext(
            "2.5.29.15",
            true,
            &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
        ),
    ]
}

fn leaf_exts(fwids: &[[u8; 48]]) -> Vec<Extension> {
    vec![
        ext(
            "2.5.29.15",
            true,
            &KeyUsage(KeyUsages::DigitalSignature.into()),
        ),
        fwid_ext(fwids),
    ]
}

struct CertSpec {
    subject: &'static str,
    issuer: &'static str,
    key: SigningKey,
    signer: SigningKey,
    exts: Vec<Extension>,
    sig_alg: &'static str,
}

fn cert(c: &CertSpec) -> Certificate {
    let time = |secs| {
        Time::GeneralTime(GeneralizedTime::from_unix_duration(Duration::from_secs(secs)).unwrap())
    };
    let point = c.key.verifying_key().to_encoded_point(false);
    let alg = AlgorithmIdentifierOwned {
        oid: oid(c.sig_alg),
        parameters: None,
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[1, 2, 3]).unwrap(),
        signature: alg.clone(),
        issuer: Name::from_str(c.issuer).unwrap(),
        validity: Validity {
            not_before: time(1_600_000_000),
            not_after: time(2_000_000_000),
        },
        subject: Name::from_str(c.subject).unwrap(),
        subject_public_key_info: SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: oid("1.2.840.10045.2.1"),
                parameters: Some(Any::from(&oid("1.3.132.0.34"))),
            },
            subject_public_key: BitString::from_bytes(point.as_bytes()).unwrap(),
        },
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(c.exts.clone()),
    };
    let sig: p384::ecdsa::Signature = c.signer.sign(&tbs.to_der().unwrap());
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(&sig_der(&sig)).unwrap(),
    }
}

/// Root, intermediate and leaf specs, to tamper with before building.
fn chain_specs() -> [CertSpec; 3] {
    const SHA384: &str = "1.2.840.10045.4.3.3";
    [
        CertSpec {
            subject: "CN=Lab GPU Leaf,O=Omega",
            issuer: "CN=Lab GPU ICA,O=Omega",
            key: key(3),
            signer: key(2),
            exts: leaf_exts(&[FWID]),
            sig_alg: SHA384,
        },
        CertSpec {
            subject: "CN=Lab GPU ICA,O=Omega",
            issuer: "CN=Lab GPU Root,O=Omega",
            key: key(2),
            signer: key(1),
            exts: ca_exts(),
            sig_alg: SHA384,
        },
        CertSpec {
            subject: "CN=Lab GPU Root,O=Omega",
            issuer: "CN=Lab GPU Root,O=Omega",
            key: key(1),
            signer: key(1),
            exts: ca_exts(),
            sig_alg: SHA384,
        },
    ]
}

fn pem(certs: &[Certificate]) -> Vec<u8> {
    certs
        .iter()
        .map(|c| c.to_pem(LineEnding::LF).unwrap())
        .collect::<String>()
        .into_bytes()
}

fn root_der() -> Vec<u8> {
    cert(&chain_specs()[2]).to_der().unwrap()
}

fn measurement(i: u8) -> [u8; 48] {
    [i; 48]
}

/// The pieces of a report, to tamper with before [`ReportSpec::build`].
#[derive(Clone)]
struct ReportSpec {
    version: u8,
    request_code: u8,
    param1: u8,
    param2: u8,
    nonce: [u8; 32],
    response_code: u8,
    blocks: Vec<Vec<u8>>,
    declared_blocks: Option<u8>,
    record_extra: Vec<u8>,
    opaque: Vec<(u16, Vec<u8>)>,
    trailing: Vec<u8>,
}

fn block(index: u8, spec: u8, value: &[u8]) -> Vec<u8> {
    let mut m = vec![0x01];
    m.extend((value.len() as u16).to_le_bytes());
    m.extend(value);
    let mut b = vec![index, spec];
    b.extend((m.len() as u16).to_le_bytes());
    b.extend(m);
    b
}

impl ReportSpec {
    fn good() -> Self {
        Self {
            version: 0x11,
            request_code: 0xE0,
            param1: 0x01,
            param2: 0xFF,
            nonce: NONCE,
            response_code: 0x60,
            blocks: (1..=BLOCKS).map(|i| block(i, 1, &measurement(i))).collect(),
            declared_blocks: None,
            record_extra: vec![],
            opaque: vec![(3, b"570.00.01\0".to_vec()), (20, FWID.to_vec())],
            trailing: vec![],
        }
    }

    fn build(&self, signer: &SigningKey) -> Vec<u8> {
        let mut r = vec![self.version, self.request_code, self.param1, self.param2];
        r.extend(self.nonce);
        r.push(0);
        let record: Vec<u8> = self
            .blocks
            .concat()
            .into_iter()
            .chain(self.record_extra.clone())
            .collect();
        r.extend([self.version, self.response_code, 0, 0]);
        r.push(self.declared_blocks.unwrap_or(self.blocks.len() as u8));
        r.extend(&(record.len() as u32).to_le_bytes()[..3]);
        r.extend(record);
        r.extend([0xAB; 32]);
        let opaque: Vec<u8> = self
            .opaque
            .iter()
            .flat_map(|(t, d)| {
                let mut f = t.to_le_bytes().to_vec();
                f.extend((d.len() as u16).to_le_bytes());
                f.extend(d);
                f
            })
            .collect();
        r.extend((opaque.len() as u16).to_le_bytes());
        r.extend(opaque);
        let sig: p384::ecdsa::Signature = signer.sign(&r);
        r.extend(sig.to_bytes());
        r.extend(&self.trailing);
        r
    }
}

fn references() -> Vec<ReferenceValue> {
    (1..=BLOCKS)
        .map(|i| ReferenceValue {
            index: i,
            allowed: vec![vec![0u8; 48], measurement(i).to_vec()],
        })
        .collect()
}

fn good_chain() -> Vec<u8> {
    pem(&chain_specs().iter().map(cert).collect::<Vec<_>>())
}

fn check_with(
    report: &[u8],
    chain: &[u8],
    reference: &[ReferenceValue],
) -> Result<gpu::VerifiedGpu, E> {
    let policy = Policy {
        root_der: root_der(),
        reference,
        now_unix: None,
    };
    gpu::verify_parts(report, chain, &NONCE, &policy)
}

fn check(report: &[u8], chain: &[u8]) -> Result<gpu::VerifiedGpu, E> {
    check_with(report, chain, &references())
}

fn chain_with(f: impl FnOnce(&mut [CertSpec; 3])) -> Vec<u8> {
    let mut specs = chain_specs();
    f(&mut specs);
    pem(&specs.iter().map(cert).collect::<Vec<_>>())
}

fn report_with(f: impl FnOnce(&mut ReportSpec)) -> Vec<u8> {
    let mut spec = ReportSpec::good();
    f(&mut spec);
    spec.build(&key(3))
}

#[test]
fn good_evidence_verifies() {
    let v = check(&ReportSpec::good().build(&key(3)), &good_chain()).unwrap();
    assert_eq!(v.fwid, FWID);
    assert_eq!(v.measurement_blocks, 8);
    assert_eq!(v.measurements_checked, 8);
    assert_eq!(v.driver_version.as_deref(), Some("570.00.01"));
}

#[test]
fn report_tampering_is_refused() {
    let chain = good_chain();
    let good = ReportSpec::good().build(&key(3));
    // Signature: any byte of it, and a signature by another key.
    // (Every 5th / 11th byte: each try verifies three certificates, slow in debug builds.)
    for at in (good.len() - 96..good.len()).step_by(5) {
        let mut r = good.clone();
        r[at] ^= 0x40;
        assert_eq!(check(&r, &chain), Err(E::ReportSignature), "sig byte {at}");
    }
    assert_eq!(
        check(&ReportSpec::good().build(&key(9)), &chain),
        Err(E::ReportSignature)
    );
    // Any signed byte changed after signing.
    for at in (0..good.len() - 96).step_by(11) {
        let mut r = good.clone();
        r[at] ^= 0x01;
        assert!(check(&r, &chain).is_err(), "byte {at} accepted");
    }
    // The nonce: signed correctly, but not ours.
    assert_eq!(
        check(&report_with(|s| s.nonce[31] ^= 1), &chain),
        Err(E::NonceMismatch)
    );
    // The FWID: another one, none, or one twice.
    assert_eq!(
        check(&report_with(|s| s.opaque[1].1[0] ^= 1), &chain),
        Err(E::FwidMismatch)
    );
    assert_eq!(
        check(
            &report_with(|s| {
                s.opaque.pop();
            }),
            &chain
        ),
        Err(E::ReportFwidMissing)
    );
    assert_eq!(
        Report::parse(&report_with(|s| s.opaque.push((20, FWID.to_vec())))).err(),
        Some(E::DuplicateOpaqueField(20))
    );
    // Each measurement, signed by the genuine key but with a value the policy does not know.
    for i in 1..=BLOCKS {
        let r = report_with(|s| s.blocks[usize::from(i - 1)] = block(i, 1, &[0xEE; 48]));
        assert_eq!(
            check(&r, &chain),
            Err(E::MeasurementMismatch(i)),
            "block {i}"
        );
    }
    // A measurement the policy requires is missing.
    let r = report_with(|s| {
        s.blocks.pop();
    });
    assert_eq!(check(&r, &chain), Err(E::MeasurementMissing(BLOCKS)));
    // A policy without reference values does not mean "anything goes".
    assert_eq!(check_with(&good, &chain, &[]), Err(E::NoReferenceValues));
}

#[test]
fn report_structure_is_strict() {
    let parse = |f: fn(&mut ReportSpec)| Report::parse(&report_with(f)).err();
    assert_eq!(parse(|s| s.version = 0x12), Some(E::SpdmVersion(0x12)));
    assert_eq!(parse(|s| s.request_code = 0xE1), Some(E::RequestCode(0xE1)));
    assert_eq!(
        parse(|s| s.response_code = 0x61),
        Some(E::ResponseCode(0x61))
    );
    assert_eq!(parse(|s| s.param1 = 0), Some(E::SignatureNotRequested));
    assert_eq!(parse(|s| s.param2 = 1), Some(E::NotAllMeasurements(1)));
    assert_eq!(
        parse(|s| {
            s.blocks.clear();
        }),
        Some(E::NoMeasurements)
    );
    assert_eq!(
        parse(|s| s.blocks[1] = block(1, 1, &[0; 48])),
        Some(E::MeasurementIndexOrder(1))
    );
    assert_eq!(
        parse(|s| s.blocks[2] = block(2, 1, &[0; 48])),
        Some(E::MeasurementIndexOrder(2))
    );
    assert_eq!(
        parse(|s| s.blocks[0] = block(1, 2, &[0; 48])),
        Some(E::MeasurementSpec { index: 1, spec: 2 })
    );
    assert_eq!(
        parse(|s| {
            // The block says 4 more bytes than its DMTF value holds.
            let mut b = block(1, 1, &[0; 48]);
            b[2] += 4;
            b.extend([0; 4]);
            s.blocks[0] = b;
        }),
        Some(E::MeasurementSize { index: 1 })
    );
    assert_eq!(
        parse(|s| s.record_extra = vec![0; 3]),
        Some(E::MeasurementRecordLength {
            blocks: BLOCKS,
            extra: 3
        })
    );
    assert_eq!(
        parse(|s| s.declared_blocks = Some(BLOCKS + 1)),
        Some(E::Truncated {
            field: "measurement index"
        })
    );
    assert_eq!(parse(|s| s.trailing = vec![0]), Some(E::TrailingBytes(1)));
    // Truncated at every length: an error, never a panic.
    let good = ReportSpec::good().build(&key(3));
    for len in 0..good.len() {
        assert!(
            matches!(Report::parse(&good[..len]), Err(E::Truncated { .. })),
            "len {len}"
        );
    }
    assert!(matches!(
        Report::parse(&vec![0x11; spdm::MAX_REPORT + 1]),
        Err(E::TooLarge { .. })
    ));
}

#[test]
fn chain_tampering_is_refused() {
    let report = ReportSpec::good().build(&key(3));
    const SHA256: &str = "1.2.840.10045.4.3.2";
    // Another root (a self-signed look-alike with its own key).
    let other_root = chain_with(|c| {
        c[1].signer = key(7);
        c[2].key = key(7);
        c[2].signer = key(7);
    });
    assert_eq!(check(&report, &other_root), Err(E::UntrustedRoot));
    // The leaf or the intermediate signed by a key that is not its issuer's.
    assert_eq!(
        check(&report, &chain_with(|c| c[0].signer = key(8))),
        Err(E::CertSignature { index: 0 })
    );
    assert_eq!(
        check(&report, &chain_with(|c| c[1].signer = key(8))),
        Err(E::CertSignature { index: 1 })
    );
    // Issuer name that is not the next subject.
    assert_eq!(
        check(
            &report,
            &chain_with(|c| c[0].issuer = "CN=Someone Else,O=Omega")
        ),
        Err(E::IssuerMismatch { index: 0 })
    );
    // ECDSA with SHA-256 instead of SHA-384.
    assert_eq!(
        check(&report, &chain_with(|c| c[0].sig_alg = SHA256)),
        Err(E::CertSignatureAlgorithm { index: 0 })
    );
    // An intermediate that is not a CA, or may not sign certificates.
    assert_eq!(
        check(&report, &chain_with(|c| c[1].exts = leaf_exts(&[]))),
        Err(E::NotCa { index: 1 })
    );
    // An unknown critical extension.
    assert_eq!(
        check(
            &report,
            &chain_with(|c| c[1].exts.push(ext(
                "1.2.3.4",
                true,
                &OctetString::new(vec![1]).unwrap()
            )))
        ),
        Err(E::UnknownCriticalExtension { index: 1 })
    );
    // The leaf's FWID: another one, none, two.
    assert_eq!(
        check(
            &report,
            &chain_with(|c| c[0].exts = leaf_exts(&[[0xf2; 48]]))
        ),
        Err(E::FwidMismatch)
    );
    assert_eq!(
        check(&report, &chain_with(|c| c[0].exts = leaf_exts(&[]))),
        Err(E::CertFwidMissing)
    );
    assert_eq!(
        check(
            &report,
            &chain_with(|c| c[0].exts = leaf_exts(&[FWID, FWID]))
        ),
        Err(E::CertFwidAmbiguous)
    );
    // A leaf that may only sign certificates.
    assert_eq!(
        check(&report, &chain_with(|c| c[0].exts = ca_exts())),
        Err(E::KeyUsage { index: 0 })
    );
    // Not PEM, empty, too many certificates.
    assert_eq!(check(&report, b"garbage"), Err(E::ChainLength(0)));
    let one = String::from_utf8(good_chain()).unwrap();
    let nine = one.repeat(3);
    assert_eq!(check(&report, nine.as_bytes()), Err(E::ChainLength(9)));
    let broken = one.replacen("MII", "MIJ", 1);
    assert_eq!(check(&report, broken.as_bytes()), Err(E::ChainPem));
    // Validity against a clock.
    let policy = |now| Policy {
        root_der: root_der(),
        reference: &[],
        now_unix: Some(now),
    };
    let refs = references();
    let with_refs = |now| Policy {
        reference: &refs,
        ..policy(now)
    };
    assert!(gpu::verify_parts(&report, &good_chain(), &NONCE, &with_refs(1_700_000_000)).is_ok());
    assert_eq!(
        gpu::verify_parts(&report, &good_chain(), &NONCE, &with_refs(2_000_000_001)),
        Err(E::CertValidity { index: 0 })
    );
}

#[test]
fn bundle_encoding_is_strict() {
    let ev = GpuEvidence {
        report: ReportSpec::good().build(&key(3)),
        cert_chain_pem: good_chain(),
    };
    let bytes = ev.encode().unwrap();
    assert_eq!(GpuEvidence::decode(&bytes), Ok(ev.clone()));
    let policy = Policy {
        root_der: root_der(),
        reference: &references(),
        now_unix: None,
    };
    assert!(gpu::verify(&bytes, &NONCE, &policy).is_ok());
    let mut b = bytes.clone();
    b[0] ^= 1;
    assert_eq!(GpuEvidence::decode(&b), Err(E::Magic));
    let mut b = bytes.clone();
    b.push(0);
    assert_eq!(GpuEvidence::decode(&b), Err(E::TrailingBytes(1)));
    let mut b = bytes.clone();
    b[8..12].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(GpuEvidence::decode(&b), Err(E::Length("report")));
    for len in 0..bytes.len() {
        assert!(GpuEvidence::decode(&bytes[..len]).is_err(), "len {len}");
    }
    assert_eq!(
        GpuEvidence {
            report: vec![],
            cert_chain_pem: vec![1]
        }
        .encode(),
        Err(E::Length("report"))
    );
}

fn proxy_evidence(
    gpu: Gpu,
    gpu_ev: Option<Vec<u8>>,
    spki: &[u8],
    nonce: [u8; 32],
) -> ProxyEvidence {
    ProxyEvidence::new(
        [1; 32],
        [2; 32],
        "llama.cpp-cuda".into(),
        Tee::None,
        gpu,
        gpu_ev,
        spki.to_vec(),
        nonce,
    )
}

#[test]
fn proxy_gpu_is_bound_to_the_guest_nonce_and_tls_key() {
    let spki = b"tls key spki".to_vec();
    let guest_nonce = [7u8; 32];
    let gpu_nonce = omega_proxy_evidence::gpu_nonce(&spki, &guest_nonce);
    let encoded = GpuEvidence {
        report: report_with(|s| s.nonce = gpu_nonce),
        cert_chain_pem: good_chain(),
    }
    .encode()
    .unwrap();
    let h100 = |cc_mode| Gpu::Nvidia {
        model: "NVIDIA H100 80GB HBM3".into(),
        cc_mode,
    };
    let refs = references();
    let policy = Policy {
        root_der: root_der(),
        reference: &refs,
        now_unix: None,
    };
    let ok = proxy_evidence(h100(CcMode::On), Some(encoded.clone()), &spki, guest_nonce);
    assert!(gpu::verify_proxy_gpu(&ok, &policy).is_ok());
    // The same GPU evidence presented for another guest's nonce, or with another TLS key.
    let replay = proxy_evidence(h100(CcMode::On), Some(encoded.clone()), &spki, [8; 32]);
    assert_eq!(
        gpu::verify_proxy_gpu(&replay, &policy),
        Err(E::NonceMismatch)
    );
    let other_key = proxy_evidence(
        h100(CcMode::On),
        Some(encoded.clone()),
        b"another key",
        guest_nonce,
    );
    assert_eq!(
        gpu::verify_proxy_gpu(&other_key, &policy),
        Err(E::NonceMismatch)
    );
    // No GPU, CC off or devtools, no evidence.
    assert_eq!(
        gpu::verify_proxy_gpu(
            &proxy_evidence(Gpu::None, None, &spki, guest_nonce),
            &policy
        ),
        Err(E::NoGpu)
    );
    for cc in [CcMode::Off, CcMode::DevTools] {
        let e = proxy_evidence(h100(cc), Some(encoded.clone()), &spki, guest_nonce);
        assert_eq!(gpu::verify_proxy_gpu(&e, &policy), Err(E::CcModeOff));
    }
    let none = proxy_evidence(h100(CcMode::On), None, &spki, guest_nonce);
    assert_eq!(gpu::verify_proxy_gpu(&none, &policy), Err(E::NoGpuEvidence));
}

/// Seeded random mutations of a valid bundle: never a panic, and nothing but the untouched
/// bytes verifies (a mutation that leaves the signed parts intact may still verify).
#[test]
fn random_mutations_never_panic() {
    let ev = GpuEvidence {
        report: ReportSpec::good().build(&key(3)),
        cert_chain_pem: good_chain(),
    };
    let bytes = ev.encode().unwrap();
    let refs = references();
    let policy = Policy {
        root_der: root_der(),
        reference: &refs,
        now_unix: None,
    };
    let mut rng = Rng::new(seed(0x6770_7565));
    let rounds = if cfg!(debug_assertions) { 300 } else { 3000 };
    for _ in 0..rounds {
        let mut m = bytes.clone();
        mutate(&mut rng, &mut m);
        if let Ok(v) = gpu::verify(&m, &NONCE, &policy) {
            let d = GpuEvidence::decode(&m).unwrap();
            assert_eq!(d.report, ev.report, "a changed report verified");
            assert_eq!(v.fwid, FWID);
        }
    }
}
