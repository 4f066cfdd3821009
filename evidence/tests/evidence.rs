//! Differential attestation evidence: positive and negative tests.

use omega_evidence::bundle::Binding;
use omega_evidence::{Bundle, Claim, Issuer, Options, verify};
use omega_test_support::snp;
use sev_snp::report::{MEASUREMENT, REPORT_DATA, REPORT_LEN};

fn h(b: u8) -> [u8; 32] {
    [b; 32]
}

fn claims() -> Vec<Claim> {
    vec![
        Claim::Platform {
            tee: "sev-snp".into(),
            boot_id: [0x11; 16],
        },
        Claim::Agent {
            name: "triage".into(),
            module_hash: h(0x21),
            publisher: "acme-health".into(),
        },
        Claim::Agent {
            name: "billing".into(),
            module_hash: h(0x22),
            publisher: "acme-billing".into(),
        },
        Claim::Policy { digest: h(0x31) },
        Claim::Model {
            name: "smollm2".into(),
            proxy_identity: h(0x41),
            model_digest: h(0x42),
            gpu_evidence_digest: Some(h(0x43)),
        },
        Claim::Tool {
            name: "ehr.lookup".into(),
            pinned: h(0x51),
        },
        Claim::LogKey {
            public: h(0x61),
            boot_id: [0x11; 16],
        },
        Claim::Bundle {
            manifest_digest: h(0x71),
        },
        Claim::CardKey {
            public: h(0x81),
            boot_id: [0x11; 16],
        },
        Claim::ToolServer {
            server: "calendar".into(),
            tools: 1,
            pins_digest: h(0x91),
            identity: Some(omega_evidence::ToolIdentity {
                command: r#"["python3","/opt/calendar.py"]"#.into(),
                package: "clinic-calendar".into(),
                version: "1.0.0".into(),
            }),
        },
        Claim::PeerKey {
            public: h(0xA1),
            boot_id: [0x11; 16],
        },
        Claim::Coordinator {
            public: h(0xB1),
            owner: h(0xC1),
            min_policy_version: 2,
            boot_id: [0x11; 16],
        },
    ]
}

/// Distinct salt per principal.
fn salt(i: u8) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (j, b) in s.iter_mut().enumerate() {
        *b = i.wrapping_mul(31).wrapping_add(j as u8).wrapping_mul(197) ^ 0x5a;
    }
    s
}

/// A synthetic report: 1184 bytes with REPORT_DATA and MEASUREMENT set (its signature is
/// not valid; signature checks live in `measurements`).
fn synthetic_report(rd: &[u8; 64], measurement: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; REPORT_LEN];
    r[0] = 3;
    r[REPORT_DATA].copy_from_slice(rd);
    r[MEASUREMENT].copy_from_slice(measurement);
    r
}

const NONCE: [u8; 32] = [0xAB; 32];

fn setup() -> (Issuer, Vec<u8>) {
    let mut iss = Issuer::new([9; 32]).unwrap();
    for (i, c) in claims().into_iter().enumerate() {
        iss.add(c, salt(i as u8)).unwrap();
    }
    let rd = iss.attest(NONCE).unwrap();
    (iss, synthetic_report(&rd, &[0x11; 48]))
}

fn opts(p: &str) -> Options<'_> {
    Options {
        principal: p,
        nonce: Some(NONCE),
        ..Default::default()
    }
}

fn principals() -> Vec<String> {
    claims().iter().map(Claim::principal).collect()
}

fn assert_ok(b: &Bundle, o: &Options<'_>) {
    let out = verify(b, o);
    assert!(out.verified(), "{:?}", out.failures().collect::<Vec<_>>());
}

fn assert_fails(b: &Bundle, o: &Options<'_>, check: &str) {
    let out = verify(b, o);
    assert!(!out.verified());
    assert!(
        out.failures().any(|c| c.name == check),
        "expected failed check {check}, got {:?}",
        out.failures().collect::<Vec<_>>()
    );
}

#[test]
fn each_principal_verifies_its_own_claim() {
    let (iss, report) = setup();
    for (p, c) in principals().iter().zip(claims()) {
        let b = iss.bundle(p, Some(report.clone()), None).unwrap();
        let b = Bundle::decode(&b.encode().unwrap()).unwrap();
        let out = verify(&b, &opts(p));
        assert!(
            out.verified(),
            "{p}: {:?}",
            out.failures().collect::<Vec<_>>()
        );
        assert_eq!(out.claim, Some(c));
        assert_eq!(out.report.as_deref(), Some(&report[..]));
        // Bundle is for exactly one principal: asking as another one fails.
        for q in principals().iter().filter(|q| *q != p) {
            assert_fails(&b, &opts(q), "principal");
        }
    }
}

#[test]
fn bundle_discloses_nothing_about_other_principals() {
    let (iss, report) = setup();
    let all = claims();
    for (i, p) in principals().iter().enumerate() {
        let bytes = iss
            .bundle(p, Some(report.clone()), None)
            .unwrap()
            .encode()
            .unwrap();
        for (j, other) in all.iter().enumerate() {
            if i == j {
                continue;
            }
            let needles: Vec<Vec<u8>> = match other {
                Claim::Agent {
                    name,
                    module_hash,
                    publisher,
                } => {
                    vec![
                        name.clone().into(),
                        module_hash.to_vec(),
                        publisher.clone().into(),
                    ]
                }
                Claim::Model {
                    name, model_digest, ..
                } => vec![name.clone().into(), model_digest.to_vec()],
                Claim::Tool { name, pinned } => vec![name.clone().into(), pinned.to_vec()],
                Claim::Policy { digest } => vec![digest.to_vec()],
                Claim::LogKey { public, .. } => vec![public.to_vec()],
                Claim::Bundle { manifest_digest } => vec![manifest_digest.to_vec()],
                Claim::CardKey { public, .. } | Claim::PeerKey { public, .. } => {
                    vec![public.to_vec()]
                }
                Claim::Coordinator { public, owner, .. } => vec![public.to_vec(), owner.to_vec()],
                Claim::ToolServer {
                    server,
                    pins_digest,
                    ..
                } => vec![server.clone().into(), pins_digest.to_vec()],
                // The boot id is shared by the platform, log and card claims; the salt is not.
                Claim::Platform { tee, .. } => vec![tee.clone().into()],
            };
            let mut all_needles = needles;
            all_needles.push(salt(j as u8).to_vec());
            for n in all_needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                    "bundle for {p} leaks data of principal {j}"
                );
            }
        }
    }
}

#[test]
fn altered_claims_fail() {
    let (iss, report) = setup();
    let p = "agent:triage";
    let b = iss.bundle(p, Some(report), None).unwrap();
    assert_ok(&b, &opts(p));
    for i in 0..b.leaf.len() {
        let mut t = b.clone();
        t.leaf[i] ^= 0x01;
        assert!(
            !verify(&t, &opts(p)).verified(),
            "leaf byte {i} flip accepted"
        );
    }
    // Re-encoded different claim (as a malicious host would produce).
    let mut leaf = omega_evidence::SaltedLeaf::decode(&b.leaf).unwrap();
    leaf.claim = Claim::Agent {
        name: "triage".into(),
        module_hash: h(0x99),
        publisher: "acme-health".into(),
    };
    let mut t = b.clone();
    t.leaf = leaf.encode().unwrap();
    assert_fails(&t, &opts(p), "inclusion");
    // Altered proof, index, root, monitor key.
    let mut t = b.clone();
    t.inclusion[0][5] ^= 1;
    assert_fails(&t, &opts(p), "inclusion");
    let mut t = b.clone();
    t.leaf_index ^= 1;
    assert_fails(&t, &opts(p), "inclusion");
    let mut t = b.clone();
    t.base_root[0] ^= 1;
    assert_fails(&t, &opts(p), "binding");
    let mut t = b.clone();
    t.monitor_key = [3; 32];
    assert_fails(&t, &opts(p), "binding");
}

#[test]
fn wrong_nonce_fails() {
    let (iss, report) = setup();
    let p = "policy";
    let b = iss.bundle(p, Some(report), None).unwrap();
    let mut o = opts(p);
    o.nonce = Some([0xAC; 32]);
    assert_fails(&b, &o, "nonce");
    // A bundle whose report nonce is edited no longer matches REPORT_DATA.
    let mut t = b.clone();
    t.report_nonce = [0xAC; 32];
    assert_fails(&t, &o, "binding");
    // Without a nonce: verifies, but warns that freshness was not checked.
    o.nonce = None;
    let out = verify(&b, &o);
    assert!(out.verified());
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("freshness NOT checked"))
    );
}

#[test]
fn swapped_real_reports_fail() {
    let (iss, _) = setup();
    // Real reports (the shared ones are required under CI), and one from another session of
    // this same issuer setup.
    let mut reports: Vec<Vec<u8>> = snp::real_vectors().into_iter().map(|v| v.report).collect();
    let mut other = Issuer::new([9; 32]).unwrap();
    for (i, c) in claims().into_iter().enumerate() {
        other.add(c, salt(i as u8)).unwrap();
    }
    let rd = other.attest([0xEE; 32]).unwrap();
    reports.push(synthetic_report(&rd, &[0x11; 48]));
    for real in reports {
        assert_eq!(real.len(), REPORT_LEN);
        for p in principals() {
            let b = iss.bundle(&p, Some(real.clone()), None).unwrap();
            assert_fails(&b, &opts(&p), "binding");
            // Also when supplied separately.
            let (_, good) = setup();
            let b = iss.bundle(&p, Some(good), None).unwrap();
            let mut o = opts(&p);
            o.report = Some(&real);
            assert_fails(&b, &o, "binding");
        }
    }
}

/// The platform's tee must agree with its binding: "none" only without a report, and
/// "sev-snp" or "simulated" only with one (which of the two is the verifier's root choice).
#[test]
fn platform_tee_must_match_binding() {
    let (iss, report) = setup();
    let b = iss.bundle("platform", Some(report.clone()), None).unwrap();
    assert_ok(&b, &opts("platform"));
    let mut unattested = opts("platform");
    unattested.allow_unattested = true;
    let b = iss.bundle("platform", None, None).unwrap();
    assert_fails(&b, &unattested, "tee");

    for (tee, with_report, ok) in [
        ("none", false, true),
        ("none", true, false),
        ("simulated", true, true),
        ("simulated", false, false),
    ] {
        let mut iss = Issuer::new([9; 32]).unwrap();
        iss.add(
            Claim::Platform {
                tee: tee.into(),
                boot_id: [1; 16],
            },
            salt(0),
        )
        .unwrap();
        let rd = iss.attest(NONCE).unwrap();
        let r = with_report.then(|| synthetic_report(&rd, &[0x11; 48]));
        let b = iss.bundle("platform", r, None).unwrap();
        let out = verify(&b, &unattested);
        assert_eq!(
            out.verified(),
            ok,
            "{tee} report={with_report}: {:?}",
            out.checks
        );
        if !ok {
            assert_fails(&b, &unattested, "tee");
        }
    }
    // An unknown tee never encodes or decodes.
    let bad = Claim::Platform {
        tee: "tdx".into(),
        boot_id: [1; 16],
    };
    assert!(bad.validate().is_err());
    assert!(Issuer::new([9; 32]).unwrap().add(bad, salt(0)).is_err());
}

#[test]
fn unattested_refused_unless_allowed() {
    let (iss, _) = setup();
    let b = iss.bundle("log", None, None).unwrap();
    assert!(matches!(b.binding, Binding::Unattested { .. }));
    assert_fails(&b, &opts("log"), "platform");
    let mut o = opts("log");
    o.allow_unattested = true;
    let out = verify(&b, &o);
    assert!(out.verified(), "{:?}", out.failures().collect::<Vec<_>>());
    assert!(out.unattested);
    assert!(out.warnings.iter().any(|w| w.contains("UNATTESTED")));
    // A marker for another tree is rejected even when allowed.
    let mut t = b.clone();
    if let Binding::Unattested { report_data } = &mut t.binding {
        report_data[0] ^= 1;
    }
    assert_fails(&t, &o, "binding");
}

#[test]
fn root_updates_add_principals_and_stale_updates_fail() {
    let (mut iss, report) = setup();
    let old_policy = iss.bundle("policy", Some(report.clone()), None).unwrap();
    iss.add(
        Claim::Tool {
            name: "calendar".into(),
            pinned: h(0x52),
        },
        salt(100),
    )
    .unwrap();
    // Not published yet: no bundle.
    assert!(
        iss.bundle("tool:calendar", Some(report.clone()), None)
            .is_err()
    );
    iss.publish_update().unwrap();
    iss.add(
        Claim::Agent {
            name: "scheduler".into(),
            module_hash: h(0x23),
            publisher: "acme".into(),
        },
        salt(101),
    )
    .unwrap();
    iss.publish_update().unwrap();

    let n2 = [0x77; 32];
    let mut o = opts("tool:calendar");
    o.nonce = Some(n2);
    let cal = iss
        .bundle("tool:calendar", Some(report.clone()), Some(n2))
        .unwrap();
    assert_eq!(cal.updates.len(), 2);
    assert_ok(&cal, &o);
    let mut o = opts("agent:scheduler");
    o.nonce = Some(n2);
    assert_ok(
        &iss.bundle("agent:scheduler", Some(report.clone()), Some(n2))
            .unwrap(),
        &o,
    );
    // Earlier principals verify against the new root too.
    let mut o = opts("policy");
    o.nonce = Some(n2);
    let pol = iss
        .bundle("policy", Some(report.clone()), Some(n2))
        .unwrap();
    assert_ok(&pol, &o);

    // Stale: the bundle from before the updates, checked with the new nonce.
    assert_fails(&old_policy, &o, "nonce");
    // Stale: last update dropped (proof and head are for the newer root).
    let mut t = cal.clone();
    t.updates.pop();
    let mut oc = opts("tool:calendar");
    oc.nonce = Some(n2);
    assert!(!verify(&t, &oc).verified());
    // Reordered updates.
    let mut t = cal.clone();
    t.updates.swap(0, 1);
    assert_fails(&t, &oc, "root-updates");
    // Updates with the report nonce but no head: after updates, the report nonce alone is not
    // enough (the chain could be truncated).
    let mut t = cal.clone();
    t.head = None;
    let mut o0 = opts("tool:calendar");
    o0.nonce = Some(NONCE);
    assert_fails(&t, &o0, "nonce");
    // Tampered update content.
    let mut t = cal.clone();
    t.updates[0].new_size += 1;
    assert_fails(&t, &oc, "root-updates");
    let mut t = cal.clone();
    t.updates[1].signature[0] ^= 1;
    assert_fails(&t, &oc, "root-updates");

    // Foreign session: same monitor key, same claims, different report nonce. Its updates
    // are signed for a different REPORT_DATA and must not splice into ours.
    let mut other = Issuer::new([9; 32]).unwrap();
    for (i, c) in claims().into_iter().enumerate() {
        other.add(c, salt(i as u8)).unwrap();
    }
    other.attest([0xCD; 32]).unwrap();
    other
        .add(
            Claim::Tool {
                name: "calendar".into(),
                pinned: h(0x52),
            },
            salt(100),
        )
        .unwrap();
    other.publish_update().unwrap();
    other
        .add(
            Claim::Agent {
                name: "scheduler".into(),
                module_hash: h(0x23),
                publisher: "acme".into(),
            },
            salt(101),
        )
        .unwrap();
    other.publish_update().unwrap();
    let foreign = other.bundle("tool:calendar", None, Some(n2)).unwrap();
    let mut t = cal.clone();
    t.updates = foreign.updates.clone();
    assert_fails(&t, &oc, "root-updates");
}

#[test]
fn superseded_claim_fails() {
    let (mut iss, report) = setup();
    let old = iss
        .bundle("tool:ehr.lookup", Some(report.clone()), None)
        .unwrap();
    iss.replace(
        Claim::Tool {
            name: "ehr.lookup".into(),
            pinned: h(0x5F),
        },
        salt(50),
    )
    .unwrap();
    iss.publish_update().unwrap();
    let n2 = [0x78; 32];
    let new = iss
        .bundle("tool:ehr.lookup", Some(report.clone()), Some(n2))
        .unwrap();
    let mut o = opts("tool:ehr.lookup");
    o.nonce = Some(n2);
    let out = verify(&new, &o);
    assert!(out.verified(), "{:?}", out.failures().collect::<Vec<_>>());
    assert_eq!(
        out.claim,
        Some(Claim::Tool {
            name: "ehr.lookup".into(),
            pinned: h(0x5F)
        })
    );
    // The old leaf is still in the (append-only) tree; a host presenting it with a valid
    // proof against the new root is caught by the revocation list.
    let mut t = new.clone();
    t.leaf = old.leaf.clone();
    t.leaf_index = old.leaf_index;
    t.inclusion = iss.inclusion_proof(old.leaf_index).unwrap();
    let out = verify(&t, &o);
    assert!(
        out.failures().all(|c| c.name == "not-revoked"),
        "{:?}",
        out.failures().collect::<Vec<_>>()
    );
    assert_fails(&t, &o, "not-revoked");
}

#[test]
fn encoding_roundtrip_and_strictness() {
    let (iss, report) = setup();
    let b = iss
        .bundle("model:smollm2", Some(report), Some([1; 32]))
        .unwrap();
    let bytes = b.encode().unwrap();
    assert_eq!(Bundle::decode(&bytes).unwrap(), b);
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(Bundle::decode(&trailing).is_err());
    for cut in 0..bytes.len() {
        assert!(
            Bundle::decode(&bytes[..cut]).is_err(),
            "truncated at {cut} accepted"
        );
    }
    assert!(Bundle::decode(&vec![0u8; omega_evidence::bundle::MAX_BUNDLE + 1]).is_err());
}

/// The tool-server claim's digest is the SHA-256 of the pins-file lines, sorted: what a
/// tool provider recomputes from `policy-compiler pin` output for its server.
#[test]
fn a_tool_servers_pins_digest_is_its_sorted_pins_file_lines() {
    use sha2::{Digest, Sha256};
    let (a, b) = ([0xab; 32], [0x01; 32]);
    let d = omega_evidence::pins_digest([("fs.write", &a), ("fs.read", &b)]);
    let text = format!(
        "fs.read sha256:{}\nfs.write sha256:{}\n",
        "01".repeat(32),
        "ab".repeat(32)
    );
    assert_eq!(d, <[u8; 32]>::from(Sha256::digest(text.as_bytes())));
    assert_eq!(
        d,
        omega_evidence::pins_digest([("fs.read", &b), ("fs.write", &a)])
    );
    assert_ne!(
        d,
        omega_evidence::pins_digest([("fs.read", &a), ("fs.write", &b)])
    );
    let c = Claim::ToolServer {
        server: "fs".into(),
        tools: 2,
        pins_digest: d,
        identity: None,
    };
    assert_eq!(c.principal(), "tools:fs");
    assert!(c.validate().is_ok());
    for bad in ["", "a.b", "x\n"] {
        let c = Claim::ToolServer {
            server: bad.into(),
            tools: 0,
            pins_digest: d,
            identity: None,
        };
        assert!(c.validate().is_err(), "{bad:?}");
    }
    // An identity with an empty command or a control character in a field is refused.
    for (command, package) in [("", "p"), ("[\"node\"]", "p\n")] {
        let c = Claim::ToolServer {
            server: "fs".into(),
            tools: 0,
            pins_digest: d,
            identity: Some(omega_evidence::ToolIdentity {
                command: command.into(),
                package: package.into(),
                version: "1".into(),
            }),
        };
        assert!(c.validate().is_err(), "{command:?} {package:?}");
    }
}
