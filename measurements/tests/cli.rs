//! The `measurements` binary: exit codes, human and JSON output.

mod common;

use std::process::Output;

use common::*;

use common::measurements as run;

/// The embedded vector written to a scratch dir: (dir, report path, vcek path, the
/// report's MEASUREMENT as hex).
fn files() -> (std::path::PathBuf, String, String, String) {
    let dir = scratch("cli");
    let (report, vcek) = embedded_milan();
    std::fs::write(dir.join("r.bin"), &report).unwrap();
    std::fs::write(dir.join("vcek.der"), &vcek).unwrap();
    let mut bad = report.clone();
    bad[0x100] ^= 1;
    std::fs::write(dir.join("bad.bin"), &bad).unwrap();
    (
        dir.clone(),
        path_str(&dir.join("r.bin")),
        path_str(&dir.join("vcek.der")),
        hex::encode(&report[0x90..0xC0]),
    )
}

/// `verify-report --report R --vcek V --family F --expect-measurement M` and `extra`.
fn verify_report(r: &str, v: &str, family: &str, m: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "verify-report",
        "--report",
        r,
        "--vcek",
        v,
        "--family",
        family,
        "--expect-measurement",
        m,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn fails(o: &Output) -> Vec<String> {
    stdout(o)
        .lines()
        .filter(|l| l.starts_with("FAIL "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn verify_report_exit_codes_and_lines() {
    let (dir, r, v, real) = files();
    let o = verify_report(&r, &v, "milan", &real, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o)
            .lines()
            .all(|l| l.starts_with("PASS ") || l.starts_with("VERIFIED") || l == "tee: sev-snp")
    );

    let bad = path_str(&dir.join("bad.bin"));
    let o = verify_report(&bad, &v, "milan", &real, &[]);
    assert_eq!(o.status.code(), Some(1));
    let f = fails(&o);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].starts_with("FAIL report.signature:"));

    // Wrong family.
    let o = verify_report(&r, &v, "genoa", &real, &[]);
    assert_eq!(o.status.code(), Some(1));

    // Expectations: the real measurement passes, another fails; JSON lists the checks.
    let m = "a".repeat(96);
    let o = verify_report(&r, &v, "milan", &m, &["--json"]);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["verified"], false);
    assert_eq!(j["tee"], "sev-snp");
    let failed: Vec<_> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["name"], "measurement");
    assert_eq!(j["report"]["measurement"].as_str().unwrap(), real);
    let data = j["report"]["report_data"].as_str().unwrap().to_owned();
    let o = verify_report(
        &r,
        &v,
        "milan",
        &real,
        &[
            "--expect-report-data",
            &data,
            "--min-tcb",
            "bl=3,tee=0,snp=8,ucode=115",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).ends_with("tee: sev-snp\nVERIFIED: all 19 checks passed\n"),
        "{}",
        stdout(&o)
    );
    // A different nonce fails exactly the report_data check.
    let other = format!("{}00", &data[..126]);
    let o = verify_report(&r, &v, "milan", &real, &["--expect-report-data", &other]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(fails(&o).len(), 1);
    assert!(stdout(&o).contains("FAIL report_data:"));
    let o = verify_report(&r, &v, "milan", &real, &["--min-tcb", "snp=9"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("FAIL min_tcb: reported TCB below minimum: snp 8 < 9"),
        "{}",
        stdout(&o)
    );

    // Usage errors exit 2: no root, no measurement, no VCEK, the image without its VM shape,
    // two roots, a missing file, bad hex.
    let (no_root, no_measurement, no_vcek, no_shape): (&[&str], &[&str], &[&str], &[&str]) = (
        &["--vcek", &v, "--expect-measurement", &real],
        &["--vcek", &v, "--family", "milan"],
        &["--family", "milan", "--expect-measurement", &real],
        &["--vcek", &v, "--family", "milan", "--image", &r],
    );
    for args in [no_root, no_measurement, no_vcek, no_shape] {
        let o = run(&[&["verify-report", "--report", &r], args].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    for (report, m, extra) in [
        (r.as_str(), real.as_str(), &["--lab-root"][..]),
        ("/nonexistent", &real, &[]),
        (&r, "abcd", &[]),
    ] {
        let o = verify_report(report, &v, "milan", m, extra);
        assert_eq!(o.status.code(), Some(2), "{report} {m} {extra:?}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn verify_report_with_shared_pems() {
    let Some(d) = snp::shared_dir("this test needs its reports and PEMs") else {
        return;
    };
    let p = |n: &str| path_str(&d.join(n));
    let m = |n: &str| hex::encode(&std::fs::read(d.join(n)).unwrap()[0x90..0xC0]);
    let oak = "genoa-v5-oak.report.bin";
    let o = run(&[
        "verify-report",
        "--report",
        &p(oak),
        "--vcek",
        &p("genoa-v5-oak.vcek.der"),
        "--ark",
        &p("genoa-ark.pem"),
        "--ask",
        &p("genoa-ask.pem"),
        "--expect-measurement",
        &m(oak),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let go = "milan-v2-gosevguest.report.bin";
    let vcek = p("milan-v2-gosevguest.vcek.der");
    let o = verify_report(&p(go), &vcek, "milan", &m(go), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("FAIL policy.debug"));
    let o = verify_report(&p(go), &vcek, "milan", &m(go), &["--allow-debug"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn show_report_human_and_json() {
    let (dir, r, _, _) = files();
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
