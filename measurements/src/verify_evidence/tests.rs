use super::fixture::{self, MEASUREMENT, NONCE};
use super::*;
use measurements::verify::Family;
use omega_evidence::Issuer;
use omega_sim_psp::{LAB_POLICY, SimPsp};

use omega_test_support::snp;

/// Writes `v`'s report and VCEK into `dir`; returns their paths.
fn write_vector(dir: &Path, v: &snp::Vector) -> (PathBuf, PathBuf) {
    let (report, vcek) = (
        dir.join(format!("{}.report.bin", v.name)),
        dir.join(format!("{}.vcek.der", v.name)),
    );
    std::fs::write(&report, &v.report).unwrap();
    std::fs::write(&vcek, &v.vcek).unwrap();
    (report, vcek)
}

/// A simulated run's `model:llm` evidence (platform, log, policy and the model claim
/// naming `proxy`, model file `model`), and its report.
fn model_evidence(proxy: [u8; 32], model: [u8; 32]) -> (omega_evidence::Bundle, Vec<u8>) {
    let mut iss = Issuer::new([5; 32]).unwrap();
    let claims = [
        Claim::Platform {
            tee: "simulated".into(),
            boot_id: fixture::BOOT_ID,
        },
        Claim::Policy { digest: [3; 32] },
        Claim::Model {
            name: "llm".into(),
            proxy_identity: proxy,
            model_digest: model,
            gpu_evidence_digest: None,
        },
    ];
    for (i, c) in claims.into_iter().enumerate() {
        iss.add(c, [i as u8 + 1; 32]).unwrap();
    }
    let rd = iss.attest(NONCE).unwrap();
    let report = SimPsp::new(MEASUREMENT).report(rd, 0).to_vec();
    let b = iss.bundle("model:llm", Some(report.clone()), None).unwrap();
    (b, report)
}

fn setup(tag: &str) -> (PathBuf, Issuer, [u8; 32]) {
    let dir = std::env::temp_dir().join(format!("omega-verify-ev-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut iss = Issuer::new([5; 32]).unwrap();
    iss.add(
        Claim::Platform {
            tee: "sev-snp".into(),
            boot_id: [1; 16],
        },
        [1; 32],
    )
    .unwrap();
    iss.add(
        Claim::Agent {
            name: "triage".into(),
            module_hash: [2; 32],
            publisher: "acme".into(),
        },
        [2; 32],
    )
    .unwrap();
    iss.add(Claim::Policy { digest: [3; 32] }, [3; 32]).unwrap();
    let nonce = [0x42; 32];
    iss.attest(nonce).unwrap();
    (dir, iss, nonce)
}

fn args(dir: &Path, principal: &str, nonce: Option<[u8; 32]>) -> VerifyEvidenceArgs {
    VerifyEvidenceArgs {
        evidence: dir.join("ev.bin"),
        principal: principal.into(),
        check: EvidenceCheckArgs {
            nonce: nonce.map(hex::encode),
            ..Default::default()
        },
        expect_pins: None,
        expect_tools: None,
        expect_proxy: None,
        expect_model_digest: None,
        json: false,
    }
}

/// The names of the failed checks.
fn failed(r: &EvidenceResult) -> Vec<&str> {
    r.lines
        .iter()
        .filter(|l| !l.0)
        .map(|l| l.1.as_str())
        .collect()
}

/// A tool provider checks the monitor pins exactly its server's tools: its pins file
/// (other servers' lines ignored) against the `tools:SERVER` claim.
#[test]
fn a_tool_provider_checks_its_pins() {
    let (dir, mut iss, nonce) = setup("pins");
    let pins = format!(
        "# pins\nfs.read sha256:{}\nfs.write sha256:{}\nother.x sha256:{}\n",
        "11".repeat(32),
        "22".repeat(32),
        "33".repeat(32)
    );
    let (n, digest) = server_pins(&pins, "fs").unwrap();
    assert_eq!(n, 2);
    let claim = Claim::ToolServer {
        server: "fs".into(),
        tools: n,
        pins_digest: digest,
        identity: Some(omega_evidence::ToolIdentity {
            command: r#"["node","/x.js"]"#.into(),
            package: "@mcp/fs".into(),
            version: "1.2.3".into(),
        }),
    };
    iss.add(claim, [9; 32]).unwrap();
    iss.publish_update().unwrap();
    std::fs::write(
        dir.join("ev.bin"),
        iss.bundle("tools:fs", None, Some(nonce))
            .unwrap()
            .encode()
            .unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("pins.txt"), &pins).unwrap();
    let mut a = args(&dir, "tools:fs", Some(nonce));
    a.check.allow_unattested = true;
    a.expect_pins = Some(dir.join("pins.txt"));
    assert!(run(&a).unwrap());
    // One pin changed (a rug pull the provider did not publish): fails.
    std::fs::write(
        dir.join("pins.txt"),
        pins.replace(&"22".repeat(32), &"23".repeat(32)),
    )
    .unwrap();
    assert!(!run(&a).unwrap());
    // A pin missing: fails.
    std::fs::write(dir.join("pins.txt"), pins.replace("fs.write", "fz.write")).unwrap();
    assert!(!run(&a).unwrap());
    // Garbage is an input error; another principal's claim fails the check.
    std::fs::write(dir.join("pins.txt"), "fs.read 1234").unwrap();
    assert!(run(&a).is_err());
    std::fs::write(dir.join("pins.txt"), &pins).unwrap();
    // The server's identity: the bundle's tools file must name what the claim says.
    let tools = r#"{"servers":[{"name":"fs","command":"node","args":["/x.js"],"package":"@mcp/fs","version":"1.2.3"}]}"#;
    std::fs::write(dir.join("tools.json"), tools).unwrap();
    a.expect_tools = Some(dir.join("tools.json"));
    assert!(run(&a).unwrap());
    // A host that swapped the server (another command, package or version in the file
    // the verifier holds than in the claim): fails.
    for (from, to) in [
        ("/x.js", "/evil.js"),
        ("1.2.3", "1.2.4"),
        ("@mcp/fs", "@evil/fs"),
    ] {
        std::fs::write(dir.join("tools.json"), tools.replace(from, to)).unwrap();
        assert!(!run(&a).unwrap(), "{to}");
    }
    std::fs::write(dir.join("tools.json"), tools).unwrap();
    a.principal = "policy".into();
    assert!(!run(&a).unwrap());
}

/// The proxy the monitor proved, as a model provider checks it: a simulated run's
/// evidence with a `model:llm` claim, verified with `--expect-proxy` (and the model
/// digest); another proxy, another model file, evidence of another principal, a missing
/// claim, and flags that are not digests all fail, each saying why.
#[test]
fn a_model_provider_checks_the_proxy_the_monitor_proved() {
    const GENUINE: [u8; 32] = [0x61; 32];
    const MODEL: [u8; 32] = [0x63; 32];
    let dir = std::env::temp_dir().join(format!("omega-ev-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ev, report) = model_evidence(GENUINE, MODEL);
    std::fs::write(dir.join("model_llm.bin"), ev.encode().unwrap()).unwrap();
    std::fs::write(dir.join("report.bin"), &report).unwrap();
    let mut a = VerifyEvidenceArgs {
        evidence: dir.join("model_llm.bin"),
        principal: "model:llm".into(),
        check: fixture::lab_args(),
        expect_pins: None,
        expect_tools: None,
        expect_proxy: Some(format!("sha256:{}", hex::encode(GENUINE))),
        expect_model_digest: Some(format!("sha256:{}", hex::encode(MODEL))),
        json: false,
    };
    assert!(run(&a).unwrap());
    let lines = |a: &VerifyEvidenceArgs| {
        let r = check(&a.evidence, &a.principal, &a.check).unwrap();
        let mut l = r.lines.clone();
        l.extend(model_lines(
            r.claim.as_ref(),
            &a.principal,
            a.expect_proxy
                .as_deref()
                .map(|s| parse_sha256("p", s).unwrap()),
            a.expect_model_digest
                .as_deref()
                .map(|s| parse_sha256("m", s).unwrap()),
        ));
        l
    };
    let failed =
        |l: &[Line]| -> Vec<String> { l.iter().filter(|l| !l.0).map(|l| l.1.clone()).collect() };
    // Another proxy: the verifier expected one, the monitor proved another.
    a.expect_proxy = Some(format!("sha256:{}", hex::encode([0x62; 32])));
    assert!(!run(&a).unwrap());
    let l = lines(&a);
    assert_eq!(failed(&l), ["model.proxy"]);
    assert!(
        l.iter()
            .any(|x| x.2.contains("another proxy") && x.2.contains(&hex::encode(GENUINE))),
        "{l:?}"
    );
    // Another model file.
    a.expect_proxy = Some(hex::encode(GENUINE));
    a.expect_model_digest = Some(format!("sha256:{}", hex::encode([0x64; 32])));
    assert_eq!(failed(&lines(&a)), ["model.digest"]);
    assert!(!run(&a).unwrap());
    a.expect_model_digest = None;
    assert!(run(&a).unwrap());
    // Not digests: input errors.
    a.expect_proxy = Some("sha256:1234".into());
    assert!(run(&a).is_err());
    a.expect_proxy = Some(format!("sha256:{}", hex::encode(GENUINE)));
    // Evidence of another principal given for the model: no claim for it.
    let fx = fixture::simulated("model-other");
    a.evidence = fx.join("platform.ev");
    let l = lines(&a);
    assert_eq!(failed(&l), ["principal", "model.claim"]);
    assert!(
        l.iter()
            .any(|x| x.2.starts_with("no claim for model:llm in this evidence")),
        "{l:?}"
    );
    assert!(!run(&a).unwrap());
    // No evidence file for the model: the monitor issued no claim; said so.
    a.evidence = dir.join("model_other.bin");
    a.principal = "model:other".into();
    let e = run(&a).unwrap_err().to_string();
    assert!(e.contains("issued no claim for this principal"), "{e}");
}

/// Forged and edited model claims: the host (without the monitor's key) issues its own
/// evidence naming the genuine proxy and hands it over with the genuine run's report,
/// or edits the claim in the genuine run's evidence file: the verifier expecting the
/// genuine proxy refuses both (binding, inclusion).
#[test]
fn a_forged_or_edited_model_claim_fails_even_with_the_expected_proxy() {
    const GENUINE: [u8; 32] = [0x61; 32];
    const SUBSTITUTE: [u8; 32] = [0x71; 32];
    const MODEL: [u8; 32] = [0x63; 32];
    let dir = std::env::temp_dir().join(format!("omega-ev-forged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = VerifyEvidenceArgs {
        evidence: dir.join("model_llm.bin"),
        principal: "model:llm".into(),
        check: fixture::lab_args(),
        expect_pins: None,
        expect_tools: None,
        expect_proxy: Some(format!("sha256:{}", hex::encode(GENUINE))),
        expect_model_digest: None,
        json: false,
    };
    // The run really served the substitute (the monitor proved it and said so).
    let (substituted, report) = model_evidence(SUBSTITUTE, MODEL);
    std::fs::write(&a.evidence, substituted.encode().unwrap()).unwrap();
    assert!(!run(&a).unwrap());

    // 1. Edit the claim in the file: the identity bytes replaced by the genuine ones.
    let mut bytes = substituted.encode().unwrap();
    let at = bytes
        .windows(32)
        .position(|w| w == SUBSTITUTE)
        .expect("the identity is in the file");
    bytes[at..at + 32].copy_from_slice(&GENUINE);
    std::fs::write(&a.evidence, &bytes).unwrap();
    let r = check(&a.evidence, &a.principal, &a.check).unwrap();
    assert!(!r.verified());
    assert!(
        r.lines.iter().any(|l| !l.0 && l.1 == "inclusion"),
        "{:?}",
        r.lines
    );
    assert!(!run(&a).unwrap());

    // 2. A forged evidence tree: the host's own issuer claims the genuine proxy, bound
    // to the genuine run's report (the host cannot get another one from a real PSP).
    let mut forger = Issuer::new([0x77; 32]).unwrap();
    forger
        .add(
            Claim::Model {
                name: "llm".into(),
                proxy_identity: GENUINE,
                model_digest: MODEL,
                gpu_evidence_digest: None,
            },
            [1; 32],
        )
        .unwrap();
    forger.attest(NONCE).unwrap();
    let forged = forger.bundle("model:llm", Some(report), None).unwrap();
    std::fs::write(&a.evidence, forged.encode().unwrap()).unwrap();
    let r = check(&a.evidence, &a.principal, &a.check).unwrap();
    assert!(!r.verified());
    assert!(
        r.lines.iter().any(|l| !l.0 && l.1 == "binding"),
        "{:?}",
        r.lines
    );
    assert!(!run(&a).unwrap());
}

/// A node's peer key counts only from its verified `peer` evidence.
#[test]
fn the_peer_key_verifies_as_principal_peer() {
    let dir = fixture::simulated("peer");
    let mut a = fixture::lab_args();
    let r = check(&dir.join("peer.ev"), "peer", &a).unwrap();
    assert!(r.verified(), "{:?}", r.lines);
    assert_eq!(
        r.claim,
        Some(Claim::PeerKey {
            public: fixture::PEER_KEY,
            boot_id: fixture::BOOT_ID
        })
    );
    // Another principal's evidence does not stand for it; another nonce fails.
    assert!(!check(&dir.join("card.ev"), "peer", &a).unwrap().verified());
    a.nonce = Some(hex::encode([0x43; 32]));
    assert!(!check(&dir.join("peer.ev"), "peer", &a).unwrap().verified());
}

/// A coordinator's key and owner count only from its verified `coordinator` evidence.
#[test]
fn the_coordinator_claim_verifies_as_principal_coordinator() {
    let dir = fixture::simulated("coordinator");
    let mut a = fixture::lab_args();
    let r = check(&dir.join("coordinator.ev"), "coordinator", &a).unwrap();
    assert!(r.verified(), "{:?}", r.lines);
    assert_eq!(
        r.claim,
        Some(Claim::Coordinator {
            public: fixture::COORDINATOR_KEY,
            owner: fixture::OWNER_KEY,
            min_policy_version: 4,
            boot_id: fixture::BOOT_ID
        })
    );
    assert!(
        !check(&dir.join("peer.ev"), "coordinator", &a)
            .unwrap()
            .verified()
    );
    a.nonce = Some(hex::encode([0x43; 32]));
    assert!(
        !check(&dir.join("coordinator.ev"), "coordinator", &a)
            .unwrap()
            .verified()
    );
}

#[test]
fn unattested_needs_flag() {
    let (dir, iss, nonce) = setup("unatt");
    std::fs::write(
        dir.join("ev.bin"),
        iss.bundle("agent:triage", None, None)
            .unwrap()
            .encode()
            .unwrap(),
    )
    .unwrap();
    let mut a = args(&dir, "agent:triage", Some(nonce));
    assert!(!run(&a).unwrap());
    a.check.allow_unattested = true;
    assert!(run(&a).unwrap());
    a.json = true;
    assert!(run(&a).unwrap());
    a.json = false;
    a.principal = "policy".into();
    assert!(!run(&a).unwrap());
    a.principal = "agent:triage".into();
    a.check.nonce = Some(hex::encode([0x43; 32]));
    assert!(!run(&a).unwrap());
    // Undecodable evidence is an input error.
    std::fs::write(dir.join("ev.bin"), b"garbage").unwrap();
    assert!(run(&a).is_err());
}

#[test]
fn swapped_real_report_fails_binding_and_signature_not_trusted() {
    let (dir, iss, nonce) = setup("swap");
    for v in snp::real_vectors() {
        let (report, vcek) = write_vector(&dir, &v);
        let family: Family = v.family().parse().unwrap();
        let measurement = hex::encode(&v.report[sev_snp::report::MEASUREMENT]);
        std::fs::write(
            dir.join("ev.bin"),
            iss.bundle("policy", Some(v.report.clone()), None)
                .unwrap()
                .encode()
                .unwrap(),
        )
        .unwrap();
        let mut a = args(&dir, "policy", Some(nonce));
        // Without a pinned root and measurement a report is not checked at all.
        assert!(run(&a).is_err(), "{}", v.name);
        a.check.pin.vcek = Some(vcek.clone());
        a.check.pin.family = Some(family);
        assert!(run(&a).is_err(), "{}", v.name);
        a.check.pin.expect_measurement = Some(measurement.clone());
        a.check.pin.allow_debug = true;
        assert!(!run(&a).unwrap(), "{}", v.name);
        // Even with --allow-unattested, a swapped report does not pass.
        a.check.allow_unattested = true;
        assert!(!run(&a).unwrap(), "{}", v.name);
        // A report given on the command line is checked the same way.
        std::fs::write(
            dir.join("ev.bin"),
            iss.bundle("policy", None, None).unwrap().encode().unwrap(),
        )
        .unwrap();
        let mut b = args(&dir, "policy", Some(nonce));
        b.check.report = Some(report);
        b.check.pin = a.check.pin.clone();
        assert!(!run(&b).unwrap(), "{}", v.name);
    }
}

#[test]
fn forged_report_with_matching_report_data_is_refused() {
    let (dir, iss, nonce) = setup("forged");
    // Recompute REPORT_DATA for this tree and splice it into a genuine report: the binding
    // check passes, the AMD signature over the report must then fail.
    let Binding::Unattested { report_data: rd } = iss.bundle("policy", None, None).unwrap().binding
    else {
        unreachable!("no report given")
    };
    // A genuine Milan report whose policy does not allow debugging (not go-sev-guest's).
    let genuine = snp::real_vectors()
        .into_iter()
        .rfind(|v| v.family() == "milan")
        .unwrap();
    let (_, vcek) = write_vector(&dir, &genuine);
    let measurement = hex::encode(&genuine.report[sev_snp::report::MEASUREMENT]);
    let mut forged = genuine.report;
    forged[sev_snp::report::REPORT_DATA].copy_from_slice(&rd);
    let b = iss.bundle("policy", Some(forged), None).unwrap();
    assert_eq!(
        omega_evidence::verify(
            &b,
            &Options {
                principal: "policy",
                nonce: Some(nonce),
                ..Default::default()
            }
        )
        .failures()
        .count(),
        0
    );
    std::fs::write(dir.join("ev.bin"), b.encode().unwrap()).unwrap();
    let mut a = args(&dir, "policy", Some(nonce));
    a.check.pin.vcek = Some(vcek);
    a.check.pin.family = Some(Family::Milan);
    a.check.pin.expect_measurement = Some(measurement);
    let r = check(&a.evidence, "policy", &a.check).unwrap();
    assert_eq!(failed(&r), ["report.signature"]);
    assert!(!run(&a).unwrap());
}

#[test]
fn simulated_run_verifies_only_with_lab_root() {
    let dir = fixture::simulated("sim");
    for p in ["platform", "log", "policy"] {
        let r = check(&dir.join(format!("{p}.ev")), p, &fixture::lab_args()).unwrap();
        assert!(r.verified(), "{p}: {:?}", failed(&r));
        assert_eq!(r.tee, "simulated");
        assert_eq!(r.measurement, Some(MEASUREMENT));
        assert_eq!(r.qualifier(), " (SIMULATED PLATFORM)");
    }
    let platform = dir.join("platform.ev");
    let mut a = VerifyEvidenceArgs {
        evidence: platform.clone(),
        principal: "platform".into(),
        check: fixture::lab_args(),
        expect_pins: None,
        expect_tools: None,
        expect_proxy: None,
        expect_model_digest: None,
        json: false,
    };
    assert!(run(&a).unwrap());
    a.json = true;
    assert!(run(&a).unwrap());

    // The lab chain given as files: not an AMD root.
    std::fs::write(dir.join("ark.pem"), omega_sim_psp::LAB_ARK_PEM).unwrap();
    std::fs::write(dir.join("ask.pem"), omega_sim_psp::LAB_ASK_PEM).unwrap();
    std::fs::write(dir.join("vcek.der"), omega_sim_psp::LAB_VCEK_DER).unwrap();
    let mut files = fixture::lab_args();
    files.pin.lab_root = false;
    files.pin.ark = Some(dir.join("ark.pem"));
    files.pin.ask = Some(dir.join("ask.pem"));
    files.pin.vcek = Some(dir.join("vcek.der"));
    let r = check(&dir.join("log.ev"), "log", &files).unwrap();
    assert_eq!(failed(&r), ["ark.amd_root", "report.signature"]);
    // The platform's own claim ("simulated") also contradicts AMD roots.
    let r = check(&platform, "platform", &files).unwrap();
    assert_eq!(
        failed(&r),
        ["ark.amd_root", "report.signature", "platform.tee"]
    );
    // With --allow-unknown-ark the chain passes as if it were AMD's, and the platform's
    // own claim ("simulated") then contradicts the roots.
    files.pin.allow_unknown_ark = true;
    let r = check(&platform, "platform", &files).unwrap();
    assert_eq!(failed(&r), ["platform.tee"]);
    assert_eq!(r.tee, "sev-snp");
    // An AMD family does not sign lab reports.
    let mut amd = fixture::lab_args();
    amd.pin.lab_root = false;
    amd.pin.family = Some(Family::Milan);
    amd.pin.vcek = Some(dir.join("vcek.der"));
    let r = check(&platform, "platform", &amd).unwrap();
    assert!(
        failed(&r).contains(&"vcek.signed_by_ask"),
        "{:?}",
        failed(&r)
    );
}

#[test]
fn platform_claiming_hardware_under_the_lab_root_fails() {
    let dir = fixture::write("claims-snp", "sev-snp", Some(SimPsp::new(MEASUREMENT)));
    let r = check(&dir.join("platform.ev"), "platform", &fixture::lab_args()).unwrap();
    assert_eq!(failed(&r), ["platform.tee"]);
    // Other principals do not see the platform claim; their tee is the roots'.
    let r = check(&dir.join("log.ev"), "log", &fixture::lab_args()).unwrap();
    assert!(r.verified());
    assert_eq!(r.tee, "simulated");
}

#[test]
fn measurement_and_root_are_required_and_pinned() {
    let dir = fixture::simulated("pin");
    let log = dir.join("log.ev");
    let mut a = fixture::lab_args();
    a.pin.expect_measurement = None;
    assert!(check(&log, "log", &a).is_err());
    let mut a = fixture::lab_args();
    a.pin.lab_root = false;
    assert!(check(&log, "log", &a).is_err());
    // Evidence for another image.
    let mut a = fixture::lab_args();
    a.pin.expect_measurement = Some(hex::encode([0x4E; 48]));
    assert_eq!(failed(&check(&log, "log", &a).unwrap()), ["measurement"]);
    // Recomputed from an image that is not the one launched.
    let mut a = fixture::lab_args();
    a.pin.expect_measurement = None;
    a.pin.image = Some(PathBuf::from("/nonexistent/omega.bin"));
    a.pin.vcpus = Some(1);
    a.pin.vcpu_type = Some("EPYC-v4".parse().unwrap());
    assert!(check(&log, "log", &a).is_err());
    // The TCB minimum.
    let mut a = fixture::lab_args();
    a.pin.min_tcb = Some("snp=21".parse().unwrap());
    assert_eq!(failed(&check(&log, "log", &a).unwrap()), ["min_tcb"]);
    a.pin.min_tcb = Some("bl=3,tee=0,snp=20,ucode=209".parse().unwrap());
    assert!(check(&log, "log", &a).unwrap().verified());
    // The nonce.
    let mut a = fixture::lab_args();
    a.nonce = Some(hex::encode([0; 32]));
    assert_eq!(failed(&check(&log, "log", &a).unwrap()), ["nonce"]);
    assert_ne!(NONCE, [0; 32]);
}

#[test]
fn debug_and_migration_agent_policies_refused_by_default() {
    use measurements::report::Policy;
    for (bit, check_name) in [
        (Policy::DEBUG, "policy.debug"),
        (Policy::MIGRATE_MA, "policy.migrate_ma"),
    ] {
        let psp = SimPsp::with_policy(MEASUREMENT, LAB_POLICY | bit);
        let dir = fixture::write(check_name, "simulated", Some(psp));
        let log = dir.join("log.ev");
        let mut a = fixture::lab_args();
        assert_eq!(failed(&check(&log, "log", &a).unwrap()), [check_name]);
        if bit == Policy::DEBUG {
            a.pin.allow_debug = true;
        } else {
            a.pin.allow_migration_agent = true;
        }
        assert!(check(&log, "log", &a).unwrap().verified(), "{check_name}");
    }
}
