//! Evidence benchmarks: bundle size, encode/decode and verification time.
//! Run: `cargo bench -p omega-evidence --bench evidence`.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use omega_evidence::{Bundle, Claim, Issuer, Options, verify};
use sev_snp::report::{REPORT_DATA, REPORT_LEN};

fn setup(n_tools: usize) -> (Issuer, Vec<u8>) {
    let mut iss = Issuer::new([1; 32]).unwrap();
    iss.add(
        Claim::Platform {
            tee: "sev-snp".into(),
            boot_id: [7; 16],
        },
        [1; 32],
    )
    .unwrap();
    iss.add(Claim::Policy { digest: [3; 32] }, [3; 32]).unwrap();
    iss.add(
        Claim::LogKey {
            public: [4; 32],
            boot_id: [7; 16],
        },
        [4; 32],
    )
    .unwrap();
    for i in 0..n_tools {
        iss.add(
            Claim::Tool {
                name: format!("tool-{i}"),
                pinned: [i as u8; 32],
            },
            [i as u8 ^ 0x55; 32],
        )
        .unwrap();
    }
    let rd = iss.attest([9; 32]).unwrap();
    let mut report = vec![0u8; REPORT_LEN];
    report[REPORT_DATA].copy_from_slice(&rd);
    (iss, report)
}

fn bench(c: &mut Criterion) {
    for n in [5usize, 100, 1000] {
        let (mut iss, report) = setup(n);
        let b = iss
            .bundle("tool:tool-0", Some(report.clone()), None)
            .unwrap();
        let unatt = iss.bundle("tool:tool-0", None, None).unwrap();
        iss.add(
            Claim::Agent {
                name: "late".into(),
                module_hash: [8; 32],
                publisher: "p".into(),
            },
            [8; 32],
        )
        .unwrap();
        iss.publish_update().unwrap();
        let upd = iss.bundle("agent:late", None, Some([2; 32])).unwrap();
        eprintln!(
            "bundle bytes, {} principals: {} with SNP report, {} unattested, {} after 1 root update (unattested)",
            n + 3,
            b.encode().unwrap().len(),
            unatt.encode().unwrap().len(),
            upd.encode().unwrap().len()
        );
        if n == 1000 {
            let bytes = b.encode().unwrap();
            let opts = Options {
                principal: "tool:tool-0",
                nonce: Some([9; 32]),
                ..Default::default()
            };
            c.bench_function("decode+verify/1003-principals", |bn| {
                bn.iter(|| {
                    let d = Bundle::decode(black_box(&bytes)).unwrap();
                    assert!(verify(&d, &opts).verified());
                })
            });
            let opts = Options {
                principal: "agent:late",
                nonce: Some([2; 32]),
                allow_unattested: true,
                report: None,
            };
            c.bench_function("verify/with-root-update", |bn| {
                bn.iter(|| assert!(verify(black_box(&upd), &opts).verified()))
            });
        }
    }
    c.bench_function("issuer/attest-100", |bn| {
        bn.iter(|| {
            let (iss, _) = setup(97);
            black_box(iss.monitor_public())
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
