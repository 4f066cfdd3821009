//! The trust chain end to end (issue 13, findings 1 and 2), with the real launcher, the
//! test-hooks image and the simulated PSP: the monitor attests itself (platform, log key,
//! bundle, policy, each agent) bound to the verifier's nonce, the launcher stores the
//! evidence and prints the verifier's commands, and `measurements` verifies every principal
//! and the log through the evidence. Then each forgery a host could try is performed and
//! refused. The simulated PSP is a lab chain with no hardware behind it: this proves the
//! evidence path, not confidentiality (docs/threat-model.md).

use std::path::{Path, PathBuf};

mod common;

use omega_provenance::{Checkpoint, LogKey};
use qemu_tests::cli::{flag, refused, text, verified, with};
use qemu_tests::{image, measurements, printed_verifier_commands, qemu_present, test_hooks_image};

const NONCE: &str = "6f6d6567612d747275737465642d636861696e2d746573742d6e6f6e63652121";
const OTHER_NONCE: &str = "0000000000000000000000000000000000000000000000000000000000000001";
const AGENTS: [&str; 2] = ["alpha", "beta"];

/// Two agents that return at once, under a policy that pins them, in `dir/bundle`.
fn bundle(dir: &Path) -> PathBuf {
    let b = dir.join("bundle");
    std::fs::create_dir(&b).unwrap();
    for (name, bytes) in common::agent_bundle("trust-chain", &AGENTS) {
        std::fs::write(b.join(name), bytes).unwrap();
    }
    b
}

/// `argv` without the flags `fs` and their values.
fn drop_valued(argv: &[String], fs: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if fs.contains(&a.as_str()) {
            it.next();
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// `argv` without the bare flag `f`.
fn without(argv: &[String], f: &str) -> Vec<String> {
    assert!(argv.iter().any(|a| a == f), "{f} in {argv:?}");
    argv.iter().filter(|a| *a != f).cloned().collect()
}

/// A copy of `file` with byte `at` flipped.
fn flipped(file: &Path, at: usize, dir: &Path, name: &str) -> String {
    let mut b = std::fs::read(file).unwrap();
    b[at] ^= 0x01;
    let p = dir.join(name);
    std::fs::write(&p, b).unwrap();
    p.display().to_string()
}

#[test]
fn a_simulated_psp_run_verifies_end_to_end_and_each_forgery_is_refused() {
    if !qemu_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let run = qemu_tests::run_with_simulated_psp(&bundle(dir.path()), &logs, NONCE);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(logs.join("nonce.hex")).unwrap(),
        format!("{NONCE}\n")
    );

    // Every principal's evidence was stored and has a printed command.
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let commands = printed_verifier_commands(&stdout);
    let mut principals: Vec<String> = ["platform", "log", "bundle", "policy", "peer"]
        .map(String::from)
        .into();
    principals.extend(AGENTS.map(|a| format!("agent:{a}")));
    let evidence = |p: &str| {
        logs.join("evidence")
            .join(format!("{}.bin", p.replace(':', "_")))
    };
    let evidence_cmd = |p: &str| {
        commands
            .iter()
            .find(|c| c[0] == "verify-evidence" && flag(c, "--principal") == p)
            .unwrap_or_else(|| panic!("no printed command for {p}\n{out}"))
            .clone()
    };
    for p in &principals {
        assert!(evidence(p).is_file(), "evidence of {p} stored\n{out}");
        let cmd = evidence_cmd(p);
        assert_eq!(flag(&cmd, "--evidence"), evidence(p).display().to_string());
        assert_eq!(flag(&cmd, "--nonce"), NONCE);
        assert!(cmd.iter().any(|a| a == "--lab-root"), "{cmd:?}");
        let v = verified(&cmd, p);
        assert!(
            v.lines()
                .any(|l| l.starts_with("VERIFIED") && l.contains("SIMULATED")),
            "{p}: verified, and as simulated: {v}"
        );
        // The peer-channel key: what a launcher pins for channels between images.
        if p == "peer" {
            assert!(
                v.lines().any(|l| l
                    .strip_prefix("peer_key: ")
                    .is_some_and(|k| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()))),
                "peer: the attested key is printed: {v}"
            );
        }
    }
    let log_cmd = commands
        .iter()
        .find(|c| c[0] == "verify-log")
        .unwrap_or_else(|| panic!("no printed verify-log command\n{out}"))
        .clone();
    let v = verified(&log_cmd, "the log through its evidence");
    assert!(
        v.lines()
            .any(|l| l == "VERIFIED (SIMULATED platform: lab PSP, no hardware)"),
        "the log verifies under the attested key, as simulated: {v}"
    );

    // The MEASUREMENT the launcher gave the simulated PSP is the digest a verifier
    // recomputes for the image and shape, and an explicit --expect-measurement works too.
    let digest = measurements([
        "digest",
        "--image",
        &test_hooks_image().display().to_string(),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
    ]);
    let digest = String::from_utf8_lossy(&digest.stdout).trim().to_string();
    assert!(out.contains(&format!("MEASUREMENT {digest}")), "{out}");
    let platform = evidence_cmd("platform");
    let pinned = [
        drop_valued(&platform, &["--image", "--vcpus", "--vcpu-type"]),
        vec!["--expect-measurement".into(), digest.clone()],
    ]
    .concat();
    verified(&pinned, "platform with --expect-measurement");

    // (a) The host signs a checkpoint of the stored log with its own key, named like the
    // monitor's, and hands its key over as the log key.
    let note = std::fs::read_to_string(logs.join("checkpoint.note")).unwrap();
    let body = note.split("\n\n").next().unwrap();
    let cp = Checkpoint::parse_text(&format!("{body}\n")).unwrap();
    assert!(cp.origin.starts_with("omega-monitor/"), "{}", cp.origin);
    let host_key = LogKey::from_seed("omega-monitor", [0x42; 32]).unwrap();
    let forged_note = dir.path().join("forged.note");
    let forged_key = dir.path().join("forged.vkey");
    std::fs::write(&forged_note, cp.sign(&host_key)).unwrap();
    std::fs::write(&forged_key, host_key.verifier().encode()).unwrap();
    let bare: Vec<String> = [
        "verify-log",
        "--checkpoint",
        &forged_note.display().to_string(),
        "--key",
        &forged_key.display().to_string(),
        "--entries",
        &logs.join("provenance.log").display().to_string(),
    ]
    .map(String::from)
    .into();
    refused(
        &bare,
        "(a) a bare key file without --unattested-key",
        "add --unattested-key",
    );
    let o = measurements([bare.clone(), vec!["--unattested-key".into()]].concat());
    let r = text(&o);
    assert!(
        r.contains("UNATTESTED") && !r.lines().any(|l| l == "VERIFIED"),
        "(a) a bare key is reported as UNATTESTED, never plain VERIFIED: {r}"
    );
    let via_evidence = with(&log_cmd, "--checkpoint", &forged_note.display().to_string());
    refused(
        &via_evidence,
        "(a) the host's checkpoint against the attested log key",
        "no signature by key \"omega-monitor\"",
    );

    // (b) The expected measurement of another image, or of another vCPU count.
    let other_image = with(&platform, "--image", &image().display().to_string());
    refused(
        &other_image,
        "(b) the production image's measurement",
        "FAIL measurement",
    );
    let two_vcpus = with(&platform, "--vcpus", "2");
    refused(
        &two_vcpus,
        "(b) the measurement for 2 vCPUs",
        "FAIL measurement",
    );
    refused(
        &with(&log_cmd, "--vcpus", "2"),
        "(b) the log's evidence for 2 vCPUs",
        "FAIL evidence measurement",
    );

    // (c) The lab chain without --lab-root.
    let choose_root = "choose the root of trust";
    refused(
        &without(&platform, "--lab-root"),
        "(c) lab chain without --lab-root",
        choose_root,
    );
    refused(
        &without(&log_cmd, "--lab-root"),
        "(c) the log's lab chain without --lab-root",
        choose_root,
    );
    // ... nor passed off as AMD's: under AMD's Milan root, or as PEMs of an unknown ARK.
    let lab = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let vcek = lab("lab-vcek.der", omega_sim_psp::LAB_VCEK_DER);
    let as_amd: Vec<String> = [
        without(&platform, "--lab-root"),
        ["--family", "milan", "--vcek", &vcek]
            .map(String::from)
            .into(),
    ]
    .concat();
    refused(
        &as_amd,
        "(c) the lab chain under AMD's Milan root",
        "FAIL vcek.signed_by_ask",
    );
    let as_pems: Vec<String> = [
        without(&platform, "--lab-root"),
        vec![
            "--ark".into(),
            lab("lab-ark.pem", omega_sim_psp::LAB_ARK_PEM),
            "--ask".into(),
            lab("lab-ask.pem", omega_sim_psp::LAB_ASK_PEM),
            "--allow-unknown-ark".into(),
            "--vcek".into(),
            vcek.clone(),
        ],
    ]
    .concat();
    refused(
        &as_pems,
        "(c) the lab chain given as ARK/ASK PEMs (reported as sev-snp)",
        "FAIL platform.tee",
    );

    // (d) This run's evidence checked against another nonce.
    for p in &principals {
        let cmd = with(&evidence_cmd(p), "--nonce", OTHER_NONCE);
        refused(&cmd, &format!("(d) {p} with another nonce"), "FAIL nonce");
    }
    refused(
        &with(&log_cmd, "--nonce", OTHER_NONCE),
        "(d) the log with another nonce",
        "FAIL evidence nonce",
    );

    // (e) One byte flipped: in the leaf (the claim), in the report's MEASUREMENT, and in
    // the report's signature. The report is the bundle's last field.
    let file = evidence("policy");
    let bytes = std::fs::read(&file).unwrap();
    let decoded = omega_evidence::Bundle::decode(&bytes).unwrap();
    let leaf_at = bytes
        .windows(decoded.leaf.len())
        .position(|w| w == decoded.leaf.as_slice())
        .unwrap();
    let report_at = bytes.len() - 1184;
    let bad_signature = "FAIL report.signature";
    for (at, what, because) in [
        (
            leaf_at + decoded.leaf.len() - 1,
            "the leaf's claim",
            "FAIL inclusion",
        ),
        (leaf_at + 2, "the leaf's salt", "FAIL inclusion"),
        (report_at + 0x90, "the report's MEASUREMENT", bad_signature),
        (report_at + 0x50, "the report's REPORT_DATA", "FAIL binding"),
        (
            report_at + 0x2A0 + 5,
            "the report's signature",
            bad_signature,
        ),
    ] {
        let f = flipped(&file, at, dir.path(), "flipped.bin");
        let cmd = with(&evidence_cmd("policy"), "--evidence", &f);
        refused(&cmd, &format!("(e) a byte flipped in {what}"), because);
    }

    // (f) One principal's evidence presented as another's.
    let agent = evidence(&format!("agent:{}", AGENTS[0]))
        .display()
        .to_string();
    for p in ["policy", "bundle", "platform"] {
        let cmd = with(&evidence_cmd(p), "--evidence", &agent);
        let because = format!(
            "FAIL principal: leaf is the claim of \"agent:{}\"",
            AGENTS[0]
        );
        refused(
            &cmd,
            &format!("(f) agent:{} evidence as {p}", AGENTS[0]),
            &because,
        );
    }
    let as_log = with(
        &log_cmd,
        "--evidence",
        &evidence("policy").display().to_string(),
    );
    refused(
        &as_log,
        "(f) the policy's evidence as the log key's",
        "FAIL evidence principal",
    );
}
