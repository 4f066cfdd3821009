//! Provenance log benchmarks: appends per second (frontier + encode + outbox) and bytes per
//! entry at rest. Run: `cargo bench -p omega-provenance --bench log`.

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use omega_provenance::entry::MAX_ENTRY;
use omega_provenance::note::{Checkpoint, LogKey};
use omega_provenance::verify::verify_stream;
use omega_provenance::{Action, Decision, Log, Record};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A plausible workload: 8 agents, 64 targets, 32 rules, mostly allow, ms clock with
/// 0..40 ms between interactions, a label bit on a third of the entries.
fn records(n: usize, digest: bool) -> Vec<Record<'static>> {
    let mut r = Rng(0x5eed);
    let mut t = 0;
    (0..n)
        .map(|_| {
            let x = r.next();
            t += x % 40;
            Record {
                time: t,
                agent: (x >> 8) as u32 % 8,
                action: Action::from_u8(((x >> 12) % 4) as u8).unwrap(),
                target: (x >> 16) as u32 % 64,
                decision: if x >> 24 & 15 == 0 {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
                rule: (x >> 28) as u32 % 32,
                labels: if (x >> 40).is_multiple_of(3) {
                    1 << ((x >> 44) % 4)
                } else {
                    0
                },
                content: digest.then_some([(x >> 50) as u8; 32]),
                name: None,
            }
        })
        .collect()
}

/// Appends all records, draining the outbox when it runs low; returns bytes produced.
fn run(recs: &[Record<'_>], sink: &mut [u8]) -> (usize, Log<65536>) {
    let mut log = Log::<65536>::new(0);
    let mut bytes = 0;
    for r in recs {
        if log.free() < MAX_ENTRY {
            bytes += log.drain(sink);
        }
        log.append(r).unwrap();
    }
    bytes += log.drain(sink);
    (bytes, log)
}

fn report_sizes() {
    let key = LogKey::from_seed("omega.bench/log", [1; 32]).unwrap();
    for (label, digest) in [("metadata-only", false), ("with content digest", true)] {
        for n in [1_000usize, 100_000, 1_000_000] {
            let recs = records(n, digest);
            let mut sink = vec![0u8; 65536];
            let (bytes, mut log) = run(&recs, &mut sink);
            let cp_every = 1000;
            let cp_len = log.checkpoint(&key).len();
            let per = bytes as f64 / n as f64;
            let amortised = per + cp_len as f64 / cp_every as f64;
            eprintln!(
                "bytes/entry {label:>20} n={n:>8}: {per:.2} B entries, +{:.3} B checkpoints (one {cp_len} B note per {cp_every}) = {amortised:.2} B",
                cp_len as f64 / cp_every as f64
            );
        }
    }
}

fn bench(c: &mut Criterion) {
    report_sizes();
    let mut g = c.benchmark_group("append");
    for (label, digest) in [("metadata", false), ("digest", true)] {
        let recs = records(100_000, digest);
        let mut sink = vec![0u8; 65536];
        g.throughput(Throughput::Elements(recs.len() as u64));
        g.bench_function(label, |b| {
            b.iter(|| black_box(run(black_box(&recs), &mut sink).0))
        });
    }
    g.finish();

    let recs = records(100_000, false);
    let mut sink = vec![0u8; 65536];
    let mut stream = Vec::new();
    let mut log = Log::<65536>::new(0);
    for r in &recs {
        if log.free() < MAX_ENTRY {
            let k = log.drain(&mut sink);
            stream.extend_from_slice(&sink[..k]);
        }
        log.append(r).unwrap();
    }
    let k = log.drain(&mut sink);
    stream.extend_from_slice(&sink[..k]);
    let cp = Checkpoint {
        origin: "b".into(),
        size: log.size(),
        root: log.root(),
    };
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("stream-100k", |b| {
        b.iter(|| assert!(verify_stream(black_box(&stream), &cp).failures.is_empty()))
    });
    g.finish();

    let key = LogKey::from_seed("omega.bench/log", [1; 32]).unwrap();
    c.bench_function("checkpoint-sign", |b| {
        b.iter_batched(
            || Log::<256>::new(0),
            |mut l| black_box(l.checkpoint(&key)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
