//! The `measurements` binary: exit codes, human and JSON output.

mod common;

use std::process::{Command, Output};

use common::*;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_measurements"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The embedded vector written to a scratch dir: (report path, vcek path).
fn files() -> (std::path::PathBuf, String, String) {
    let dir = scratch("cli");
    let (report, vcek) = embedded_milan();
    std::fs::write(dir.join("r.bin"), &report).unwrap();
    std::fs::write(dir.join("vcek.der"), &vcek).unwrap();
    let mut bad = report.clone();
    bad[0x90] ^= 1;
    std::fs::write(dir.join("bad.bin"), &bad).unwrap();
    (
        dir.clone(),
        path_str(&dir.join("r.bin")),
        path_str(&dir.join("vcek.der")),
    )
}

#[test]
fn verify_report_exit_codes_and_lines() {
    let (dir, r, v) = files();
    let o = run(&[
        "verify-report",
        "--report",
        &r,
        "--vcek",
        &v,
        "--family",
        "milan",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o)
            .lines()
            .all(|l| l.starts_with("PASS ") || l.starts_with("VERIFIED"))
    );

    let bad = path_str(&dir.join("bad.bin"));
    let o = run(&[
        "verify-report",
        "--report",
        &bad,
        "--vcek",
        &v,
        "--family",
        "milan",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let fails: Vec<_> = stdout(&o)
        .lines()
        .filter(|l| l.starts_with("FAIL "))
        .map(str::to_owned)
        .collect();
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(fails[0].starts_with("FAIL report.signature:"));

    // Wrong family.
    let o = run(&[
        "verify-report",
        "--report",
        &r,
        "--vcek",
        &v,
        "--family",
        "genoa",
    ]);
    assert_eq!(o.status.code(), Some(1));

    // Expectations: the real measurement passes, another fails; JSON lists the checks.
    let m = "a".repeat(96);
    let o = run(&[
        "verify-report",
        "--report",
        &r,
        "--vcek",
        &v,
        "--family",
        "milan",
        "--expect-measurement",
        &m,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["verified"], false);
    let failed: Vec<_> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["name"], "measurement");
    let real = j["report"]["measurement"].as_str().unwrap().to_owned();
    let data = j["report"]["report_data"].as_str().unwrap().to_owned();
    let o = run(&[
        "verify-report",
        "--report",
        &r,
        "--vcek",
        &v,
        "--family",
        "milan",
        "--expect-measurement",
        &real,
        "--expect-report-data",
        &data,
        "--min-tcb",
        "bl=3,tee=0,snp=8,ucode=115",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).ends_with("VERIFIED: all 18 checks passed\n"),
        "{}",
        stdout(&o)
    );
    // A different nonce fails exactly the report_data check.
    let other = format!("{}00", &data[..126]);
    let o = run(&[
        "verify-report",
        "--report",
        &r,
        "--vcek",
        &v,
        "--family",
        "milan",
        "--expect-report-data",
        &other,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o).lines().filter(|l| l.starts_with("FAIL")).count(),
        1
    );
    assert!(stdout(&o).contains("FAIL report_data:"));
    let o = run(&[
        "verify-report",
        "--report",
        &r,
        "--vcek",
        &v,
        "--family",
        "milan",
        "--min-tcb",
        "snp=9",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("FAIL min_tcb: reported TCB below minimum: snp 8 < 9"),
        "{}",
        stdout(&o)
    );

    // Usage errors exit 2.
    assert_eq!(
        run(&["verify-report", "--report", &r, "--vcek", &v])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&[
            "verify-report",
            "--report",
            "/nonexistent",
            "--vcek",
            &v,
            "--family",
            "milan"
        ])
        .status
        .code(),
        Some(2)
    );
    let o = run(&[
        "verify-report",
        "--report",
        &r,
        "--vcek",
        &v,
        "--family",
        "milan",
        "--expect-measurement",
        "abcd",
    ]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn verify_report_with_shared_pems() {
    let Some(d) = snp::shared_dir("this test needs its reports and PEMs") else {
        return;
    };
    let p = |n: &str| path_str(&d.join(n));
    let o = run(&[
        "verify-report",
        "--report",
        &p("genoa-v5-oak.report.bin"),
        "--vcek",
        &p("genoa-v5-oak.vcek.der"),
        "--ark",
        &p("genoa-ark.pem"),
        "--ask",
        &p("genoa-ask.pem"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = run(&[
        "verify-report",
        "--report",
        &p("milan-v2-gosevguest.report.bin"),
        "--vcek",
        &p("milan-v2-gosevguest.vcek.der"),
        "--family",
        "milan",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("FAIL policy.debug"));
    let o = run(&[
        "verify-report",
        "--report",
        &p("milan-v2-gosevguest.report.bin"),
        "--vcek",
        &p("milan-v2-gosevguest.vcek.der"),
        "--family",
        "milan",
        "--allow-debug",
    ]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn show_report_human_and_json() {
    let (dir, r, _) = files();
    let o = run(&["show-report", &r]);
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    assert!(text.contains("version:            2"), "{text}");
    assert!(
        text.contains("reported_tcb:       bl=3,tee=0,snp=8,ucode=115"),
        "{text}"
    );
    let o = run(&["show-report", "--json", &r]);
    assert_eq!(o.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["version"], 2);
    assert_eq!(j["vmpl"], 0);
    assert_eq!(j["policy"]["debug"], false);
    assert_eq!(j["measurement"].as_str().unwrap().len(), 96);
    assert_eq!(j["chip_id"].as_str().unwrap().len(), 128);
    assert_eq!(j["reported_tcb"]["snp"], 8);
    // Not a report.
    std::fs::write(dir.join("short.bin"), [0u8; 100]).unwrap();
    let o = run(&["show-report", &path_str(&dir.join("short.bin"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("1184 bytes, got 100"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn digest_errors_and_help() {
    let o = run(&[
        "digest",
        "--image",
        "/nonexistent",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&[
        "digest",
        "--image",
        "/dev/null",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-Nope",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown vCPU type"));
    let o = run(&[
        "digest",
        "--image",
        "/dev/null",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("too small"));
    for sub in [
        "digest",
        "show-report",
        "verify-report",
        "verify-log",
        "verify-evidence",
    ] {
        assert_eq!(run(&[sub, "--help"]).status.code(), Some(0), "{sub} --help");
    }
}
