//! TDX quote verification time: our no_std DCAP verification (`omega_tee_verify::tdx`, what
//! the in-image coordinator runs) against the `dcap-qvl` crate, from the same bytes.
//!
//!     cargo bench -p omega-tee-verify --bench dcap
//!
//! Both sides get the recorded quote and its PCS collateral as JSON bytes and the same time,
//! and do the same work: parse the collateral JSON, verify the CRLs, the signed TCB info and
//! QE identity, the PCK chain, the QE report and the quote, and match the TCB levels. Rounds
//! alternate between the two; the median of each is printed (release build, one core).
//! docs/fleet.md has the figures.

use std::time::{Duration, Instant};

use omega_test_support::tee::TDX;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ours(quote: &[u8], collateral: &[u8], now: u64) -> bool {
    omega_tee_verify::tdx::verify(quote, collateral, now).is_ok()
}

fn dcap_qvl(quote: &[u8], collateral: &[u8], now: u64) -> bool {
    let c: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(collateral).unwrap();
    dcap_qvl::verify::verify(quote, &c, now).is_ok()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 20 } else { 200 };
    println!("TDX quote verification, median of {rounds} rounds each, same input, release build");
    println!(
        "{:<22} {:>12} {:>12} {:>8}",
        "quote", "omega (µs)", "dcap-qvl (µs)", "ratio"
    );
    for v in &TDX {
        // Both reach the same verdict (tests/dcap_oracle.rs checks it in depth).
        let verdict = ours(v.quote, v.collateral, v.as_of);
        assert_eq!(
            verdict,
            dcap_qvl(v.quote, v.collateral, v.as_of),
            "{}",
            v.name
        );
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            std::hint::black_box(ours(v.quote, v.collateral, v.as_of));
            a.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(dcap_qvl(v.quote, v.collateral, v.as_of));
            b.push(t.elapsed());
        }
        let (a, b) = (median(a), median(b));
        println!(
            "{:<22} {:>12.0} {:>12.0} {:>8.2}   ({})",
            v.name,
            a.as_secs_f64() * 1e6,
            b.as_secs_f64() * 1e6,
            a.as_secs_f64() / b.as_secs_f64(),
            if verdict {
                "verified"
            } else {
                "refused by both"
            }
        );
    }
}
