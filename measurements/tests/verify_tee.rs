//! `measurements verify-tee` on real TDX and Nitro evidence: exit codes, expectations, JSON.

mod common;

use common::*;
use omega_test_support::tee::{TDX, nitro};

#[test]
fn tdx_quote_verifies_and_expectations_bite() {
    let dir = scratch("tee");
    let v = &TDX[0];
    let (q, c) = (dir.join("q"), dir.join("c.json"));
    std::fs::write(&q, v.quote).unwrap();
    std::fs::write(&c, v.collateral).unwrap();
    let (q, c, at) = (path_str(&q), path_str(&c), v.as_of.to_string());
    let base = [
        "verify-tee",
        "--tdx",
        &q,
        "--collateral",
        &c,
        "--as-of",
        &at,
    ];
    let o = measurements(&[&base[..], &["--json"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["evidence"]["tee"], "tdx");
    assert_eq!(j["evidence"]["tcb"], "up to date");
    let mrtd = j["evidence"]["measurement"].as_str().unwrap().to_owned();

    let o = measurements(&[&base[..], &["--expect-measurement", &mrtd]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // SECURITY: another image's measurement is refused, naming both.
    let other = format!("{}00", &mrtd[..94]);
    let o = measurements(&[&base[..], &["--expect-measurement", &other]].concat());
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("is not the expected"), "{}", stdout(&o));
    // Today the 2025 collateral has expired.
    let o = measurements(&["verify-tee", "--tdx", &q, "--collateral", &c]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    // No evidence at all is a usage error.
    assert_eq!(measurements(&["verify-tee"]).status.code(), Some(2));
}

#[test]
fn nitro_document_verifies_as_of_its_time_only() {
    let Some(n) = nitro("verify-tee --nitro is not run") else {
        return;
    };
    let dir = scratch("nitro");
    let (d, r) = (dir.join("doc.cose"), dir.join("root.pem"));
    std::fs::write(&d, &n.document).unwrap();
    std::fs::write(&r, &n.root_pem).unwrap();
    let (d, r, at) = (path_str(&d), path_str(&r), n.as_of.to_string());
    // The recorded enclave ran in debug mode (PCR0..2 all zero): refused unless allowed.
    let o = measurements(&[
        "verify-tee",
        "--nitro",
        &d,
        "--nitro-root",
        &r,
        "--as-of",
        &at,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("nitro guest is debuggable"),
        "{}",
        stdout(&o)
    );
    let o = measurements(&[
        "verify-tee",
        "--nitro",
        &d,
        "--nitro-root",
        &r,
        "--as-of",
        &at,
        "--allow-debug",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("nitro module: i-0644948d93f19c17b-enc018a705a4fc6e067"));
    let o = measurements(&[
        "verify-tee",
        "--nitro",
        &d,
        "--nitro-root",
        &r,
        "--allow-debug",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expired certificates accepted today: {}",
        stdout(&o)
    );
}
