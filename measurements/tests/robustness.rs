//! Stable-Rust stand-in for the cargo-fuzz targets (measurements/fuzz): throws many random
//! and mutated inputs at the report parser, the verifier and the image digest path. Any
//! panic fails the test. `OMEGA_TEST_SEED` changes the inputs; `OMEGA_ROBUSTNESS_ITERS`
//! scales the counts.

mod common;

use common::*;
use measurements::digest::{
    DigestOptions, KernelHashes, Measurer, VcpuType, inspect, launch_digest,
};
use measurements::report::{AttestationReport, REPORT_LEN};
use measurements::verify::{CaChain, CertSource, Family, VerifyOptions, verify_report};

fn iters(default: usize) -> usize {
    std::env::var("OMEGA_ROBUSTNESS_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_and_mutated_images_never_panic() {
    let mut rng = Rng::new(seed());
    let kh = KernelHashes::new(b"k", Some(b"i"), Some("a"));
    let mut ok = 0usize;
    let mut errors = 0usize;
    for i in 0..iters(3000) {
        let size = [0x2000usize, 0x3000, 0x10000][rng.below(3)];
        let with_hashes = rng.below(2) == 0;
        let table_at = 0x90_0000 + rng.below(0x1000) as u32;
        let mut img = synthetic_image(&mut rng, size, with_hashes.then_some(table_at));
        // Mostly hit the footer table and the metadata, which sit in the last 4 KiB.
        mutate_near(&mut rng, &mut img, size.saturating_sub(0x1000)..size);
        if i % 50 == 0 {
            img = {
                let n = rng.below(0x3000);
                rng.bytes(n)
            };
        }
        let _ = inspect(&img);
        let vcpus = rng.below(4) as u32;
        let opts = DigestOptions {
            kernel_hashes: (rng.below(2) == 0).then_some(kh),
        };
        match launch_digest(
            &img,
            vcpus,
            VcpuType::NAMED[rng.below(18)],
            rng.next_u64(),
            &opts,
        ) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                errors += 1;
            }
        }
    }
    eprintln!("{ok} images measured, {errors} refused");
    assert!(
        ok > 0 && errors > 0,
        "mutations should produce both outcomes ({ok} ok, {errors} errors)"
    );
}

#[test]
fn random_reports_never_panic() {
    let mut rng = Rng::new(seed() ^ 1);
    let (real, _) = embedded_milan();
    for _ in 0..iters(100_000) {
        let mut b = if rng.below(2) == 0 {
            real.clone()
        } else {
            rng.bytes(REPORT_LEN)
        };
        mutate(&mut rng, &mut b);
        if let Ok(r) = AttestationReport::parse(&b) {
            let _ = r.to_string();
            let _ = serde_json::to_string(&r).unwrap();
        }
    }
}

/// Mutated reports, VCEKs and certificates through the whole verifier.
#[test]
fn mutated_inputs_through_the_verifier() {
    let mut rng = Rng::new(seed() ^ 2);
    let (report, vcek) = embedded_milan();
    let opts = VerifyOptions::default();
    let ca = CaChain::new(CertSource::Family(Family::Milan), &opts);
    let trusted = ca.vcek(&vcek);
    assert!(trusted.verify_report(&report, &opts).verified());
    // Reports (the ECDSA check runs each time; debug builds are slow, so fewer). What the
    // signature covers, and the signature itself, must not change; the reserved tail after
    // it may (see report_verify's reserved_tail_is_not_signed).
    let checked = 0..sev_snp::report::SIGNATURE_S.end;
    for _ in 0..iters(300) / 3 {
        let mut r = report.clone();
        mutate_near(&mut rng, &mut r, checked.clone());
        if r.len() != report.len() || r[checked.clone()] != report[checked.clone()] {
            assert!(!trusted.verify_report(&r, &opts).verified());
        }
    }
    // VCEKs.
    for _ in 0..iters(300) {
        let mut v = vcek.clone();
        mutate(&mut rng, &mut v);
        if v != vcek {
            assert!(!ca.vcek(&v).verify_report(&report, &opts).verified());
        }
    }
    // Garbage certificates and PEMs.
    for _ in 0..iters(300) {
        let mut ark = Family::Milan.ark_pem().to_vec();
        mutate(&mut rng, &mut ark);
        let junk = {
            let n = rng.below(2000);
            rng.bytes(n)
        };
        let o = verify_report(
            &report,
            &junk,
            CertSource::Pem {
                ark: &ark,
                ask: &junk,
            },
            &opts,
        );
        assert!(!o.verified());
    }
}

#[test]
fn measurer_on_random_bytes_never_panics() {
    let mut rng = Rng::new(seed() ^ 3);
    for _ in 0..iters(2000) {
        let mut b = {
            let n = rng.below(0x2100);
            rng.bytes(n)
        };
        // Sometimes put the footer GUID where it belongs so parsing goes deeper.
        if b.len() >= 0x30 && rng.below(2) == 0 {
            let at = b.len() - 0x30;
            b[at..at + 16].copy_from_slice(&firmware_layout::FOOTER_GUID.to_bytes_le());
        }
        if let Ok(m) = Measurer::new(&b) {
            let _ = m.launch_digest(
                1 + rng.below(3) as u32,
                VcpuType::Epyc,
                1,
                &DigestOptions::default(),
            );
        }
    }
}
