//! The simulated PSP's reports under the verifier: its lab chain verifies with the same
//! checks as AMD's (TCB and chip id bound by the VCEK, signature, policy), is accepted only
//! as `CertSource::Lab` / `--lab-root`, and a simulated run's evidence and log verify end to
//! end through the `measurements` binary with the output strings other tests grep.

mod common;

use std::path::Path;

use common::*;
use measurements::verify::{CertSource, Family, VerifyOptions, verify_report};
use omega_evidence::{Claim, Issuer};
use omega_provenance::entry::{Action, Decision, lifecycle};
use omega_provenance::note::{Checkpoint, LogKey};
use omega_provenance::{Log, Record};
use omega_sim_psp::{LAB_ARK_PEM, LAB_ASK_PEM, LAB_TCB, LAB_VCEK_DER, SimPsp};

const MEASUREMENT: [u8; 48] = [0x6D; 48];

fn opts(report_data: [u8; 64]) -> VerifyOptions {
    VerifyOptions {
        expect_measurement: Some(MEASUREMENT),
        expect_report_data: Some(report_data),
        min_tcb: Some("bl=3,tee=0,snp=20,ucode=209".parse().unwrap()),
        ..Default::default()
    }
}

fn failed(o: &measurements::VerifyOutcome) -> Vec<&str> {
    o.failures().map(|c| c.name).collect()
}

#[test]
fn lab_reports_verify_under_the_lab_root_only() {
    let rd = [0x11; 64];
    let report = SimPsp::new(MEASUREMENT).report(rd, 0);
    let o = verify_report(&report, LAB_VCEK_DER, CertSource::Lab, &opts(rd));
    assert!(o.verified(), "{:?}", failed(&o));
    // Every binding check ran and passed: the VCEK's extensions match the crate's constants.
    for name in ["vcek.tcb", "vcek.chip_id", "report.signature", "min_tcb"] {
        assert!(o.check(name).is_some_and(|c| c.passed), "{name}");
    }
    let r = o.report.unwrap();
    assert_eq!(r.reported_tcb.raw, LAB_TCB);
    assert_eq!(r.chip_id, sev_snp::lab::CHIP_ID);
    assert_eq!(CertSource::Lab.tee(), "simulated");

    // As PEM files it is just an unknown root...
    let pem = CertSource::Pem {
        ark: LAB_ARK_PEM,
        ask: LAB_ASK_PEM,
    };
    assert_eq!(pem.tee(), "sev-snp");
    let o = verify_report(&report, LAB_VCEK_DER, pem, &opts(rd));
    assert_eq!(failed(&o), ["ark.amd_root", "report.signature"]);
    // ... which only the test-chain escape hatch accepts.
    let o = verify_report(
        &report,
        LAB_VCEK_DER,
        pem,
        &VerifyOptions {
            allow_unknown_ark: true,
            ..opts(rd)
        },
    );
    assert!(o.verified());
    // No AMD family signed the lab VCEK.
    for f in Family::ALL {
        let o = verify_report(&report, LAB_VCEK_DER, CertSource::Family(f), &opts(rd));
        assert!(failed(&o).contains(&"vcek.signed_by_ask"), "{f}");
    }
    // A real VCEK does not verify a lab report either.
    let (_, real_vcek) = embedded_milan();
    let o = verify_report(&report, &real_vcek, CertSource::Lab, &opts(rd));
    assert!(failed(&o).contains(&"vcek.signed_by_ask"));
}

#[test]
fn lab_reports_fail_every_expectation_they_do_not_meet() {
    let rd = [0x22; 64];
    let report = SimPsp::new(MEASUREMENT).report(rd, 0);
    let run = |o: VerifyOptions| {
        failed(&verify_report(&report, LAB_VCEK_DER, CertSource::Lab, &o))
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        run(VerifyOptions {
            expect_measurement: Some([0; 48]),
            ..opts(rd)
        }),
        ["measurement"]
    );
    assert_eq!(run(opts([0; 64])), ["report_data"]);
    assert_eq!(
        run(VerifyOptions {
            min_tcb: Some("ucode=210".parse().unwrap()),
            ..opts(rd)
        }),
        ["min_tcb"]
    );
    let at_vmpl1 = SimPsp::new(MEASUREMENT).report(rd, 1);
    let o = verify_report(&at_vmpl1, LAB_VCEK_DER, CertSource::Lab, &opts(rd));
    assert_eq!(failed(&o), ["vmpl"]);
    let mut tampered = report;
    tampered[sev_snp::report::MEASUREMENT.start] ^= 1;
    let o = verify_report(
        &tampered,
        LAB_VCEK_DER,
        CertSource::Lab,
        &VerifyOptions {
            expect_measurement: None,
            ..opts(rd)
        },
    );
    assert_eq!(failed(&o), ["report.signature"]);
}

/// A simulated run as the launcher stores it: evidence per principal, the log (with the
/// monitor's `EVIDENCE` entry when `evidence_entry`) and its checkpoint (origin
/// `omega-monitor/<boot id>`).
fn simulated_run(dir: &Path, nonce: [u8; 32], evidence_entry: bool) {
    let boot_id = [0x0B; 16];
    let key = LogKey::from_seed("omega-monitor", [9; 32]).unwrap();
    let mut iss = Issuer::new([8; 32]).unwrap();
    for (i, c) in [
        Claim::Platform {
            tee: "simulated".into(),
            boot_id,
        },
        Claim::LogKey {
            public: key.public(),
            boot_id,
        },
        Claim::Bundle {
            manifest_digest: [0x33; 32],
        },
    ]
    .into_iter()
    .enumerate()
    {
        iss.add(c, [i as u8 + 1; 32]).unwrap();
    }
    let rd = iss.attest(nonce).unwrap();
    let report = SimPsp::new(MEASUREMENT).report(rd, 0).to_vec();
    let mut root = [0; 32];
    for p in ["platform", "log", "bundle"] {
        let b = iss.bundle(p, Some(report.clone()), None).unwrap();
        root = b.base_root;
        std::fs::write(dir.join(format!("{p}.bin")), b.encode().unwrap()).unwrap();
    }
    let mut log = Log::<4096>::new(0);
    log.append(&Record {
        time: 1,
        agent: 0,
        action: Action::Tool,
        target: 0,
        decision: Decision::Allow,
        rule: 0,
        labels: 0,
        content: None,
        name: None,
    })
    .unwrap();
    if evidence_entry {
        log.append(&Record {
            time: 2,
            agent: 0,
            action: Action::Lifecycle,
            target: 0,
            decision: Decision::Allow,
            rule: lifecycle::EVIDENCE,
            labels: 0,
            content: Some(root),
            name: Some(b"evidence"),
        })
        .unwrap();
    }
    let mut buf = [0u8; 4096];
    let n = log.drain(&mut buf);
    std::fs::write(dir.join("provenance.log"), &buf[..n]).unwrap();
    let cp = Checkpoint {
        origin: format!("omega-monitor/{}", hex::encode(boot_id)),
        size: log.size(),
        root: log.root(),
    };
    std::fs::write(dir.join("checkpoint.note"), cp.sign(&key)).unwrap();
    std::fs::write(dir.join("log.vkey"), key.verifier().encode()).unwrap();
}

#[test]
fn simulated_run_verifies_end_to_end_through_the_cli() {
    let dir = scratch("sim-run");
    let nonce = [0x5C; 32];
    simulated_run(&dir, nonce, true);
    let p = |n: &str| path_str(&dir.join(n));
    let (nonce, m) = (hex::encode(nonce), hex::encode(MEASUREMENT));
    let flags = ["--nonce", &nonce, "--lab-root", "--expect-measurement", &m];

    let ev = |principal: &str, extra: &[&str]| {
        let evidence = p(&format!("{principal}.bin"));
        let mut a = vec![
            "verify-evidence",
            "--evidence",
            &evidence,
            "--principal",
            principal,
        ];
        a.extend_from_slice(extra);
        measurements(&a)
    };
    let o = ev("platform", &flags);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("\ntee: simulated\n"), "{out}");
    assert!(out.contains(&format!("\nmeasurement: {m}\n")), "{out}");
    assert!(
        out.contains("\nboot_id: 0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b\n"),
        "{out}"
    );
    assert!(
        out.ends_with("VERIFIED (SIMULATED PLATFORM) claim of platform\n"),
        "{out}"
    );
    let o = ev("bundle", &flags);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // Without --lab-root the lab chain is refused; without a root or a measurement the
    // command is a usage error.
    let (ark, ask, vcek) = (p("ark.pem"), p("ask.pem"), p("vcek.der"));
    std::fs::write(&ark, LAB_ARK_PEM).unwrap();
    std::fs::write(&ask, LAB_ASK_PEM).unwrap();
    std::fs::write(&vcek, LAB_VCEK_DER).unwrap();
    let files = [
        "--nonce",
        &nonce,
        "--ark",
        &ark,
        "--ask",
        &ask,
        "--vcek",
        &vcek,
        "--expect-measurement",
        &m,
    ];
    let o = ev("platform", &files);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("FAIL ark.amd_root:"), "{}", stdout(&o));
    assert_eq!(ev("platform", &flags[..3]).status.code(), Some(2));
    assert_eq!(
        ev("platform", &["--nonce", &nonce, "--expect-measurement", &m])
            .status
            .code(),
        Some(2)
    );

    // The log, with the key from the log principal's evidence.
    let (evidence, checkpoint, entries) = (p("log.bin"), p("checkpoint.note"), p("provenance.log"));
    let log = |extra: &[&str]| {
        let mut a = vec![
            "verify-log",
            "--checkpoint",
            &checkpoint,
            "--entries",
            &entries,
        ];
        a.extend_from_slice(extra);
        measurements(&a)
    };
    let mut with_evidence = vec!["--evidence", evidence.as_str()];
    with_evidence.extend_from_slice(&flags);
    let o = log(&with_evidence);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).ends_with("\nVERIFIED (SIMULATED platform: lab PSP, no hardware)\n"),
        "{}",
        stdout(&o)
    );
    let out = stdout(&o);
    assert!(
        out.contains("\nPASS the log's EVIDENCE entry 1 records this evidence's root "),
        "{out}"
    );
    // A bare key file: refused, or UNATTESTED on request.
    let vkey = p("log.vkey");
    let o = log(&["--key", &vkey]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--unattested-key"));
    let o = log(&["--key", &vkey, "--unattested-key"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.lines().any(|l| l == "UNATTESTED"), "{out}");
    assert!(
        out.ends_with("\nVERIFIED (UNATTESTED key: the host could have signed this log)\n"),
        "{out}"
    );
    assert!(!out.lines().any(|l| l == "VERIFIED"));
    // --key and --evidence together are a usage error.
    let mut both = with_evidence.clone();
    both.extend_from_slice(&["--key", &vkey]);
    assert_eq!(log(&both).status.code(), Some(2));

    // The same run whose log lacks the EVIDENCE entry (its checkpoint is valid): refused.
    simulated_run(&dir, [0x5C; 32], false);
    let o = log(&with_evidence);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL the log has no EVIDENCE entry (evidence root "),
        "{out}"
    );
    assert!(!out.contains("VERIFIED"), "{out}");
    std::fs::remove_dir_all(dir).ok();
}
