//! Verification of real SNP attestation reports, and that every tampering is caught.

mod common;

use std::path::Path;

use common::*;
use measurements::report::{AttestationReport, REPORT_LEN, SIGNED_LEN};
use measurements::verify::{CaChain, CertSource, Family, MinTcb, VerifyOptions, verify_report};

struct Vector {
    name: String,
    family: Family,
    report: Vec<u8>,
    vcek: Vec<u8>,
}

fn vector(v: snp::Vector) -> Vector {
    Vector {
        family: v.family().parse().unwrap(),
        name: v.name,
        report: v.report,
        vcek: v.vcek,
    }
}

/// The real reports of `../shared/testdata/snp` (README there), by file name.
fn shared_vectors(dir: &Path) -> Vec<Vector> {
    snp::vectors_in(dir).into_iter().map(vector).collect()
}

/// The shared vectors when present (required under CI), else the embedded Milan one.
fn vectors() -> Vec<Vector> {
    snp::real_vectors().into_iter().map(vector).collect()
}

fn embedded() -> Vec<Vector> {
    vec![vector(snp::embedded_milan())]
}

/// The go-sev-guest report was taken from a guest whose policy allows debugging.
fn opts_for(v: &Vector) -> VerifyOptions {
    VerifyOptions {
        allow_debug: v.name.contains("gosevguest"),
        ..Default::default()
    }
}

fn exhaustive() -> bool {
    std::env::var_os("OMEGA_EXHAUSTIVE_FLIPS").is_some_and(|v| !v.is_empty() && v != "0")
}

fn failed_names(o: &measurements::VerifyOutcome) -> Vec<&'static str> {
    o.failures().map(|c| c.name).collect()
}

#[test]
fn embedded_milan_report_verifies() {
    for v in embedded() {
        let o = verify_report(
            &v.report,
            &v.vcek,
            CertSource::Family(v.family),
            &opts_for(&v),
        );
        assert!(o.verified(), "{}: {:?}", v.name, o.checks);
        assert_eq!(o.checks.len(), 16, "{:?}", o.checks);
    }
}

#[test]
fn all_shared_reports_verify() {
    let Some(dir) = snp::shared_dir("this test needs its reports") else {
        return;
    };
    let vs = shared_vectors(&dir);
    assert_eq!(vs.len(), snp::SHARED_REPORTS);
    let mut versions = Vec::new();
    for v in &vs {
        // With the builtin certificates of the family...
        let o = verify_report(
            &v.report,
            &v.vcek,
            CertSource::Family(v.family),
            &opts_for(v),
        );
        assert!(o.verified(), "{}: {:?}", v.name, failed_names(&o));
        // ...and with the PEM files shipped beside the reports.
        let ark = std::fs::read(dir.join(format!("{}-ark.pem", v.family))).unwrap();
        let ask = std::fs::read(dir.join(format!("{}-ask.pem", v.family))).unwrap();
        let o = verify_report(
            &v.report,
            &v.vcek,
            CertSource::Pem {
                ark: &ark,
                ask: &ask,
            },
            &opts_for(v),
        );
        assert!(o.verified(), "{} (PEM): {:?}", v.name, failed_names(&o));
        versions.push(o.report.unwrap().version);
    }
    versions.sort();
    assert_eq!(versions, [2, 2, 3, 5]);
}

#[test]
fn debug_policy_refused_by_default() {
    let Some(dir) = snp::shared_dir("this test needs its reports") else {
        return;
    };
    let v = shared_vectors(&dir)
        .into_iter()
        .find(|v| v.name.contains("gosevguest"))
        .unwrap();
    let o = verify_report(
        &v.report,
        &v.vcek,
        CertSource::Family(v.family),
        &VerifyOptions::default(),
    );
    assert!(!o.verified());
    assert_eq!(failed_names(&o), ["policy.debug"]);
}

#[test]
fn builtin_certs_equal_shared_pems() {
    let Some(dir) = snp::shared_dir("this test needs its reports") else {
        return;
    };
    for f in Family::ALL {
        let norm = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .replace("\r\n", "\n")
                .trim()
                .to_owned()
        };
        assert_eq!(
            norm(f.ark_pem()),
            norm(&std::fs::read(dir.join(format!("{f}-ark.pem"))).unwrap()),
            "{f} ARK"
        );
        assert_eq!(
            norm(f.ask_pem()),
            norm(&std::fs::read(dir.join(format!("{f}-ask.pem"))).unwrap()),
            "{f} ASK"
        );
    }
}

#[test]
fn wrong_family_certs_fail() {
    for v in vectors() {
        for f in Family::ALL.into_iter().filter(|&f| f != v.family) {
            let o = verify_report(&v.report, &v.vcek, CertSource::Family(f), &opts_for(&v));
            assert!(!o.verified(), "{} verified under {f}", v.name);
            let failed = failed_names(&o);
            assert!(
                failed.contains(&"vcek.signed_by_ask"),
                "{} under {f}: {failed:?}",
                v.name
            );
            assert!(
                failed.contains(&"report.signature"),
                "{} under {f}: {failed:?}",
                v.name
            );
        }
    }
}

/// Flips one byte at a time over the signed part and the signature (R and S) of every
/// report; every single one must make verification fail. The chain is verified once
/// ([`CaChain`] → [`Vcek`]), the report checks run per flip (`verify_report` is exactly that
/// composition, checked below).
#[test]
fn every_report_byte_flip_fails() {
    let signature_end = SIGNED_LEN + 2 * 72;
    for (n, v) in vectors().into_iter().enumerate() {
        let opts = opts_for(&v);
        let vcek = CaChain::new(CertSource::Family(v.family), &opts).vcek(&v.vcek);
        assert!(vcek.trusted());
        assert!(vcek.verify_report(&v.report, &opts).verified());
        // Every byte of the first vector; on the others every byte of the signature and
        // every 5th of the signed part (crypto in debug builds is slow), unless
        // OMEGA_EXHAUSTIVE_FLIPS is set.
        let step = if n == 0 || exhaustive() { 1 } else { 5 };
        let offsets = (0..SIGNED_LEN)
            .step_by(step)
            .chain(SIGNED_LEN..signature_end);
        for i in offsets {
            let mask = if i % 2 == 0 { 0x01u8 } else { 0x80 };
            let mut r = v.report.clone();
            r[i] ^= mask;
            let o = vcek.verify_report(&r, &opts);
            assert!(
                !o.verified(),
                "{}: flipping byte {i:#x} with {mask:#x} still verifies",
                v.name
            );
            if i >= 0x50 {
                // Past the fields other checks look at, only the signature can notice.
                assert!(
                    failed_names(&o).contains(&"report.signature"),
                    "{} {i:#x}: {:?}",
                    v.name,
                    failed_names(&o)
                );
            }
        }
        // A few flips through the one-shot API, which must agree.
        for i in [0, 0x90, SIGNED_LEN - 1, SIGNED_LEN, signature_end - 1] {
            let mut r = v.report.clone();
            r[i] ^= 1;
            let a = verify_report(&r, &v.vcek, CertSource::Family(v.family), &opts);
            let b = vcek.verify_report(&r, &opts);
            assert_eq!(a.checks, b.checks);
        }
    }
}

/// Bytes after the signature are reserved and not signed: flipping them changes nothing.
#[test]
fn reserved_tail_is_not_signed() {
    let v = vectors().remove(0);
    let mut r = v.report.clone();
    r[REPORT_LEN - 1] ^= 0xff;
    assert!(verify_report(&r, &v.vcek, CertSource::Family(v.family), &opts_for(&v)).verified());
}

/// Flips every byte of the VCEK certificate, one at a time: verification must fail.
#[test]
fn every_vcek_byte_flip_fails() {
    let vs = vectors();
    // All flips on the first vector, every 7th byte on the others (debug-build crypto is
    // slow), unless OMEGA_EXHAUSTIVE_FLIPS is set.
    for (n, v) in vs.iter().enumerate() {
        let opts = opts_for(v);
        let ca = CaChain::new(CertSource::Family(v.family), &opts);
        assert!(ca.trusted());
        assert!(ca.vcek(&v.vcek).verify_report(&v.report, &opts).verified());
        let step = if n == 0 || exhaustive() { 1 } else { 7 };
        for i in (0..v.vcek.len()).step_by(step) {
            let mut der = v.vcek.clone();
            der[i] ^= 0x01;
            let o = ca.vcek(&der).verify_report(&v.report, &opts);
            assert!(
                !o.verified(),
                "{}: flipping VCEK byte {i:#x} still verifies",
                v.name
            );
        }
    }
}

/// Tampered CA certificates fail too (explicit PEMs re-encoded after a flip in the DER).
#[test]
fn tampered_ask_fails() {
    let v = vectors().remove(0);
    let pem = String::from_utf8(v.family.ask_pem().to_vec()).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64_decode(&b64);
    for i in (0..der.len()).step_by(97) {
        let mut d = der.clone();
        d[i] ^= 1;
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64_encode(&d)
        );
        let o = verify_report(
            &v.report,
            &v.vcek,
            CertSource::Pem {
                ark: v.family.ark_pem(),
                ask: pem.as_bytes(),
            },
            &opts_for(&v),
        );
        assert!(!o.verified(), "ASK flip at {i:#x} still verifies");
    }
}

#[test]
fn expectations_are_enforced() {
    let v = vectors().remove(0);
    let r = AttestationReport::parse(&v.report).unwrap();
    let certs = CertSource::Family(v.family);
    let base = opts_for(&v);
    let run = |o: &VerifyOptions| verify_report(&v.report, &v.vcek, certs, o);

    let good = VerifyOptions {
        expect_measurement: Some(r.measurement),
        expect_report_data: Some(r.report_data),
        min_tcb: Some(MinTcb {
            bootloader: Some(r.reported_tcb.bootloader),
            tee: Some(r.reported_tcb.tee),
            snp: Some(r.reported_tcb.snp),
            microcode: Some(r.reported_tcb.microcode),
            fmc: None,
        }),
        ..base.clone()
    };
    let o = run(&good);
    assert!(o.verified(), "{:?}", failed_names(&o));
    assert_eq!(o.checks.len(), 19);

    let mut m = r.measurement;
    m[47] ^= 1;
    let o = run(&VerifyOptions {
        expect_measurement: Some(m),
        ..good.clone()
    });
    assert_eq!(failed_names(&o), ["measurement"]);

    let mut d = r.report_data;
    d[0] ^= 1;
    let o = run(&VerifyOptions {
        expect_report_data: Some(d),
        ..good.clone()
    });
    assert_eq!(failed_names(&o), ["report_data"]);

    let snp = r.reported_tcb.snp.checked_add(1).unwrap();
    let o = run(&VerifyOptions {
        min_tcb: Some(MinTcb {
            snp: Some(snp),
            ..Default::default()
        }),
        ..good.clone()
    });
    assert_eq!(failed_names(&o), ["min_tcb"]);
    assert!(
        o.check("min_tcb")
            .unwrap()
            .message
            .contains(&format!("snp {} < {snp}", r.reported_tcb.snp))
    );

    let o = run(&VerifyOptions {
        min_tcb: Some("fmc=1".parse().unwrap()),
        ..good.clone()
    });
    assert_eq!(failed_names(&o), ["min_tcb"], "Milan has no FMC component");
}

#[test]
fn unknown_ark_refused_unless_allowed() {
    // A real ASK presented as the root: not one of AMD's ARKs, and not self-signed.
    let v = vectors().remove(0);
    let ask = v.family.ask_pem();
    let o = verify_report(
        &v.report,
        &v.vcek,
        CertSource::Pem { ark: ask, ask },
        &opts_for(&v),
    );
    let failed = failed_names(&o);
    assert!(
        failed.contains(&"ark.amd_root") && failed.contains(&"ark.self_signed"),
        "{failed:?}"
    );
    let o = verify_report(
        &v.report,
        &v.vcek,
        CertSource::Pem { ark: ask, ask },
        &VerifyOptions {
            allow_unknown_ark: true,
            ..opts_for(&v)
        },
    );
    assert!(!failed_names(&o).contains(&"ark.amd_root"));
    assert!(!o.verified());
}

#[test]
fn vmpl_and_version_checks() {
    let v = vectors().remove(0);
    let certs = CertSource::Family(v.family);
    // Version 4 does not exist: refused at parse.
    let mut r = v.report.clone();
    r[0] = 4;
    let o = verify_report(&r, &v.vcek, certs, &opts_for(&v));
    assert!(failed_names(&o).contains(&"report.parse"));
    // Truncated.
    let o = verify_report(&v.report[..1000], &v.vcek, certs, &opts_for(&v));
    assert!(!o.check("report.parse").unwrap().passed);
    // VMPL 1 (signature then fails too, but the vmpl check names it).
    let mut r = v.report.clone();
    r[0x30] = 1;
    let o = verify_report(&r, &v.vcek, certs, &opts_for(&v));
    assert!(failed_names(&o).contains(&"vmpl"));
}

/// The `sev` crate (virtee, crypto_nossl) agrees on the real reports and on flips.
#[test]
fn sev_crate_agrees() {
    use sev::certs::snp::{Chain, Verifiable};
    use sev::parser::ByteParser;
    for v in vectors() {
        let chain =
            Chain::from_pem(v.family.ark_pem(), v.family.ask_pem(), &pem_of(&v.vcek)).unwrap();
        let parse = |b: &[u8]| sev::firmware::guest::AttestationReport::from_bytes(b);
        let theirs = parse(&v.report)
            .map(|r| (&chain, &r).verify().is_ok())
            .unwrap_or(false);
        assert!(theirs, "{}: sev crate refuses a real report", v.name);
        let ca = CaChain::new(CertSource::Family(v.family), &VerifyOptions::default());
        let vcek = ca.vcek(&v.vcek);
        for i in (0..SIGNED_LEN + 144)
            .step_by(41)
            .chain([SIGNED_LEN + 60, SIGNED_LEN + 72 + 50])
        {
            let mut r = v.report.clone();
            r[i] ^= 0x10;
            let theirs = parse(&r)
                .map(|rep| (&chain, &rep).verify().is_ok())
                .unwrap_or(false);
            let ours = vcek.verify_report(&r, &opts_for(&v));
            assert!(
                !ours.check("report.signature").is_some_and(|c| c.passed),
                "{} {i:#x}",
                v.name
            );
            // Known difference: sev 8.0.0 reads only the low 48 bytes of the 72-byte R and S
            // fields and so accepts non-zero padding (bytes 48..72 of each); we refuse it.
            let in_padding =
                (SIGNED_LEN..SIGNED_LEN + 144).contains(&i) && (i - SIGNED_LEN) % 72 >= 48;
            if !in_padding {
                assert!(!theirs, "{}: sev crate accepts flip at {i:#x}", v.name);
            }
        }
    }
}

fn pem_of(der: &[u8]) -> Vec<u8> {
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64_encode(der)
    )
    .into_bytes()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(d: &[u8]) -> String {
    let mut out = String::new();
    for (n, c) in d.chunks(3).enumerate() {
        if n > 0 && n % 16 == 0 {
            out.push('\n');
        }
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= c.len() {
                out.push(B64[(v >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for ch in s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()) {
        let v = B64.iter().position(|&b| b == ch).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A real Turin VCEK (from the sev crate) against a synthetic version-3 Turin report: the
/// chain verifies under the Turin roots, the Turin TCB layout and the 8-byte hwID bind, and
/// the (synthetic) signature of course fails.
#[test]
fn turin_vcek_binding() {
    let vcek = snp::EMBEDDED_TURIN_VCEK;
    let (milan, _) = embedded_milan();
    let mut r = milan.clone();
    r[0] = 3; // version
    r[0x188] = 0x1A; // CPUID family: Turin
    r[0x189] = 0x02;
    // REPORTED_TCB, Turin layout: fmc, bl, tee, snp, 3 reserved, ucode. The VCEK says
    // fmc=0, bl=0, tee=0, snp=0, ucode=9.
    r[0x180..0x188].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]);
    r[0x1A0..0x1E0].fill(0);
    r[0x1A0..0x1A8].copy_from_slice(&[0x1E, 0x55, 0x0A, 0x8E, 0xE5, 0xCF, 0x9F, 0x4D]);
    let opts = VerifyOptions::default();
    let o = verify_report(&r, vcek, CertSource::Family(Family::Turin), &opts);
    assert_eq!(failed_names(&o), ["report.signature"], "{:?}", o.checks);
    let report = o.report.unwrap();
    assert!(report.is_turin());
    assert_eq!(report.reported_tcb.fmc, Some(0));
    assert_eq!(report.reported_tcb.microcode, 9);

    // fmc=1 in the report: the VCEK was not issued for it.
    let mut r2 = r.clone();
    r2[0x180] = 1;
    let o = verify_report(&r2, vcek, CertSource::Family(Family::Turin), &opts);
    let tcb = o.check("vcek.tcb").unwrap();
    assert!(
        !tcb.passed && tcb.message.contains("fmc: VCEK 0, report 1"),
        "{tcb:?}"
    );

    // A different chip id, or non-zero bytes after the 8 Turin uses.
    let mut r3 = r.clone();
    r3[0x1A8] = 1;
    let o = verify_report(&r3, vcek, CertSource::Family(Family::Turin), &opts);
    assert!(failed_names(&o).contains(&"vcek.chip_id"));

    // Under the Milan roots the chain fails.
    let o = verify_report(&r, vcek, CertSource::Family(Family::Milan), &opts);
    assert!(failed_names(&o).contains(&"vcek.signed_by_ask"));
}
