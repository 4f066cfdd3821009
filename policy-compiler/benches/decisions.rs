//! Decisions per second and latency percentiles: the no_std evaluator on the binary form vs
//! regorus (interpreter and RVM) on the emitted Rego, same policy (examples/healthcare.policy)
//! and the same generated requests.
//!
//! `cargo bench -p policy-compiler --bench decisions` runs criterion (throughput) and then
//! prints a p50/p99 table. Figures are recorded in docs/policy.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use omega_policy::{Arg, Decision, Policy, Request, State};
use policy_compiler::request::OwnedRequest;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::RegoVM;

const REQUESTS: usize = 512;

struct Prepared {
    requests: Vec<Request<'static>>,
    states: Vec<(u64, Vec<u32>)>,
    inputs: Vec<regorus::Value>,
}

fn prepare(policy: &Policy<'static>, compiled: &'static policy_compiler::Compiled) -> Prepared {
    let mut generator = common::Gen::new(compiled, 0xbe9c);
    let mut requests = Vec::new();
    let mut states = Vec::new();
    let mut inputs = Vec::new();
    for _ in 0..REQUESTS {
        let json = generator.request();
        let owned: &'static OwnedRequest =
            Box::leak(Box::new(OwnedRequest::from_json(&json).unwrap()));
        let args: &'static [Arg<'static>] = Box::leak(owned.args_view().into_boxed_slice());
        requests.push(owned.request(args));
        states.push(owned.state_parts(policy));
        inputs.push(regorus::Value::from_json_str(&json.to_string()).unwrap());
    }
    Prepared {
        requests,
        states,
        inputs,
    }
}

fn decide(policy: &Policy<'_>, p: &Prepared, i: usize) -> Decision {
    let (labels, counts) = &p.states[i];
    policy.evaluate(
        &p.requests[i],
        &State {
            labels: *labels,
            counts,
        },
    )
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    (at(0.50), at(0.99), mean)
}

fn main() {
    let compiled: &'static policy_compiler::Compiled =
        Box::leak(Box::new(common::load_example("healthcare.policy")));
    let bytes: &'static [u8] = Box::leak(compiled.to_bytes().into_boxed_slice());
    let policy: &'static Policy<'static> =
        Box::leak(Box::new(omega_policy::decode(bytes).unwrap()));
    let prep = prepare(policy, compiled);

    let mut interp = common::regorus_engine(compiled);
    let entry = format!("data.{}", policy_compiler::rego::DECISION);
    let rvm = {
        let mut engine = common::regorus_engine(compiled);
        let compiled_policy = engine
            .compile_with_entrypoint(&entry.as_str().into())
            .and_then(|cp| {
                Compiler::compile_from_policy(&cp, &[entry.as_str()])
                    .map_err(|e| anyhow::anyhow!("{e}"))
            });
        match compiled_policy {
            Ok(program) => {
                let mut vm = RegoVM::new();
                vm.load_program(program);
                Some(vm)
            }
            Err(e) => {
                eprintln!("regorus RVM unavailable for this policy: {e}");
                None
            }
        }
    };
    let mut rvm = rvm;
    // Sanity: all three engines agree on the benchmark inputs.
    for i in 0..REQUESTS {
        let ours =
            policy_compiler::request::decision_json(policy, compiled, &decide(policy, &prep, i));
        interp.set_input(prep.inputs[i].clone());
        let theirs: serde_json::Value = serde_json::from_str(
            &interp
                .eval_rule(entry.clone())
                .unwrap()
                .to_json_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(ours, theirs, "interpreter disagrees on input {i}");
        if let Some(vm) = rvm.as_mut() {
            vm.set_input(prep.inputs[i].clone());
            match vm.execute() {
                Ok(v) => {
                    let v: serde_json::Value =
                        serde_json::from_str(&v.to_json_str().unwrap()).unwrap();
                    if v != ours {
                        eprintln!("RVM disagrees on input {i} ({v} vs {ours}); leaving RVM out");
                        rvm = None;
                    }
                }
                Err(e) => {
                    eprintln!("RVM failed on input {i}: {e}; leaving RVM out");
                    rvm = None;
                }
            }
        }
    }

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1));
    {
        let mut g = c.benchmark_group("decision");
        g.throughput(Throughput::Elements(REQUESTS as u64));
        g.bench_function("omega-evaluator/512-requests", |b| {
            b.iter(|| {
                for i in 0..REQUESTS {
                    black_box(decide(black_box(policy), &prep, i));
                }
            })
        });
        g.sample_size(10);
        g.bench_function("regorus-interpreter/512-requests", |b| {
            b.iter(|| {
                for i in 0..REQUESTS {
                    interp.set_input(prep.inputs[i].clone());
                    black_box(interp.eval_rule(entry.clone()).unwrap());
                }
            })
        });
        if let Some(vm) = rvm.as_mut() {
            g.bench_function("regorus-rvm/512-requests", |b| {
                b.iter(|| {
                    for i in 0..REQUESTS {
                        vm.set_input(prep.inputs[i].clone());
                        black_box(vm.execute().unwrap());
                    }
                })
            });
        }
        g.finish();
    }
    c.final_summary();
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs benches once in test mode, unoptimised: the
        // agreement check above ran; latency figures would only mislead.
        println!("test mode: engines agree on {REQUESTS} requests; run `cargo bench` for figures");
        return;
    }

    // Per-decision latency. The evaluator is timed in batches of 64 identical decisions
    // (one clock read costs about as much as a decision); regorus one decision at a time.
    let rounds = 20;
    let mut ours = Vec::new();
    for _ in 0..rounds {
        for i in 0..REQUESTS {
            let t = Instant::now();
            for _ in 0..64 {
                black_box(decide(black_box(policy), &prep, i));
            }
            ours.push(t.elapsed() / 64);
        }
    }
    let mut interp_t = Vec::new();
    for _ in 0..2 {
        for i in 0..REQUESTS {
            let t = Instant::now();
            interp.set_input(prep.inputs[i].clone());
            black_box(interp.eval_rule(entry.clone()).unwrap());
            interp_t.push(t.elapsed());
        }
    }
    let mut rvm_t = Vec::new();
    if let Some(vm) = rvm.as_mut() {
        for _ in 0..2 {
            for i in 0..REQUESTS {
                let t = Instant::now();
                vm.set_input(prep.inputs[i].clone());
                black_box(vm.execute().unwrap());
                rvm_t.push(t.elapsed());
            }
        }
    }
    let (o50, o99, omean) = percentiles(ours);
    println!(
        "\nper-decision latency, healthcare policy ({} rules, {} limits), {REQUESTS} generated requests",
        compiled.rules.len(),
        compiled.limits.len()
    );
    println!(
        "{:<22} {:>12} {:>12} {:>14} {:>16}",
        "engine", "p50", "p99", "decisions/s", "p50 vs omega"
    );
    let row = |name: &str, p50: Duration, p99: Duration, mean: Duration| {
        println!(
            "{name:<22} {:>12?} {:>12?} {:>14.0} {:>15.1}x",
            p50,
            p99,
            1.0 / mean.as_secs_f64(),
            p50.as_secs_f64() / o50.as_secs_f64()
        );
    };
    row("omega-evaluator", o50, o99, omean);
    let (i50, i99, imean) = percentiles(interp_t);
    row("regorus-interpreter", i50, i99, imean);
    if !rvm_t.is_empty() {
        let (r50, r99, rmean) = percentiles(rvm_t);
        row("regorus-rvm", r50, r99, rmean);
    }
}
