//! End-to-end decision latency from the same JSON request bytes: Omega (decode the JSON
//! request, build the evaluator's request and state, evaluate the binary form) against
//! regorus (parse the JSON into a regorus `Value`, evaluate), regorus on two Rego renderings
//! of the same policy — the emitted module (`rego::emit`) and the indexed, data-driven one
//! (`rego::indexed`, declarations and rules loaded once with `add_data`) — each with the
//! interpreter and with the RVM. Every engine is first checked to give the evaluator's
//! decision on every benchmark request; a disagreement aborts the bench.
//!
//! `cargo bench -p policy-compiler --bench decisions` prints p50/p99 per engine; figures are
//! recorded in docs/policy.md. Without `--bench` (as `cargo test --benches` runs it) only the
//! agreement check runs.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use omega_policy::{Effect, Policy, RuleRef};
use policy_compiler::Compiled;
use policy_compiler::rego::{self, indexed};
use policy_compiler::request::{Buffers, JsonRequest, decide, decision_json};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::RegoVM;
use serde_json::Value as Json;

/// Distinct requests in the mix.
const REQUESTS: usize = 1024;
/// Timed decisions per engine and table (whole passes over the mix), after the agreement
/// pass.
const TIMED: usize = 10_240;

/// An engine's own decision value.
enum Outcome {
    Omega(omega_policy::Decision),
    Regorus(regorus::Value),
}

/// One engine: decides a JSON request given as text.
type Engine<'a> = Box<dyn FnMut(&str) -> Outcome + 'a>;

/// The request mix: the generator's requests, kept so that about 60 % are decided by a rule
/// that lets them through (allow or confirm) and the rest spread over the deny classes.
fn request_mix(compiled: &Compiled, policy: &Policy<'_>) -> Vec<String> {
    let mut generator = common::Gen::new(compiled, 0xbe9c);
    let (mut granted, mut denied) = (Vec::new(), Vec::new());
    while granted.len() < REQUESTS * 6 / 10 || denied.len() < REQUESTS * 4 / 10 {
        let text = generator.request().to_string();
        let d = decide(policy, text.as_bytes()).expect("generated requests are well-formed");
        match d.effect {
            Effect::Deny => denied.push(text),
            _ => granted.push(text),
        }
    }
    granted.truncate(REQUESTS * 6 / 10);
    denied.truncate(REQUESTS - granted.len());
    // Interleave so that no engine sees long runs of one kind.
    let mut mix = Vec::with_capacity(REQUESTS);
    let (mut g, mut d) = (granted.into_iter(), denied.into_iter());
    for i in 0..REQUESTS {
        let next = if i % 5 < 3 { g.next() } else { d.next() };
        mix.extend(next.or_else(|| g.next()).or_else(|| d.next()));
    }
    mix
}

/// `rule class → count` for the header: allow, confirm, and deny by kind of check.
fn classes(policy: &Policy<'_>, mix: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for text in mix {
        let d = decide(policy, text.as_bytes()).unwrap();
        let class = match (d.effect, d.rule) {
            (Effect::Allow, _) => "allow".to_string(),
            (Effect::Confirm, _) => "confirm".to_string(),
            (_, RuleRef::Rule(_)) => "deny: deny rule".to_string(),
            (_, RuleRef::Limit(_)) => "deny: rate limit".to_string(),
            (_, RuleRef::Flow(_)) => "deny: flow".to_string(),
            (_, r) => format!("deny: {}", policy.rule_name(r)),
        };
        *out.entry(class).or_insert(0) += 1;
    }
    out
}

fn to_json(v: &regorus::Value) -> Json {
    serde_json::from_str(&v.to_json_str().unwrap()).unwrap()
}

/// regorus's interpreter on `module` (+ `data`), queried for `rule`.
fn interpreter(module: String, data: Option<&Json>, rule: &str) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("policy.rego".into(), module)
        .expect("regorus accepts the module");
    if let Some(data) = data {
        engine
            .add_data(regorus::Value::from_json_str(&data.to_string()).unwrap())
            .expect("regorus accepts the data");
    }
    // Surface a module error here rather than in the timed loop.
    engine.set_input(regorus::Value::new_object());
    engine.eval_rule(format!("data.{rule}")).unwrap();
    engine
}

/// regorus's RVM, compiled from the same engine for entry point `rule`.
fn rvm(engine: &mut regorus::Engine, data: Option<&Json>, rule: &str) -> RegoVM {
    let entry = format!("data.{rule}");
    let compiled = engine
        .compile_with_entrypoint(&entry.as_str().into())
        .expect("regorus compiles the module");
    let program = Compiler::compile_from_policy(&compiled, &[entry.as_str()])
        .expect("the RVM compiles the module");
    let mut vm = RegoVM::new();
    vm.load_program(program);
    if let Some(data) = data {
        vm.set_data(regorus::Value::from_json_str(&data.to_string()).unwrap())
            .expect("the RVM accepts the data");
    }
    vm
}

/// The interpreter as an engine: parse the request into a regorus value, evaluate `rule`.
fn on_interpreter<'a>(engine: &'a mut regorus::Engine, rule: &str) -> Engine<'a> {
    let rule = format!("data.{rule}");
    Box::new(move |text| {
        engine.set_input(regorus::Value::from_json_str(text).unwrap());
        Outcome::Regorus(engine.eval_rule(rule.clone()).unwrap())
    })
}

/// The RVM as an engine: parse the request into a regorus value, run the program.
fn on_rvm(vm: &mut RegoVM) -> Engine<'_> {
    Box::new(move |text| {
        vm.set_input(regorus::Value::from_json_str(text).unwrap());
        Outcome::Regorus(vm.execute().unwrap())
    })
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn main() {
    let compiled = common::load_example("healthcare.policy");
    let bytes = compiled.to_bytes();
    let policy = omega_policy::decode(&bytes).unwrap();
    let mix = request_mix(&compiled, &policy);

    let emitted = common::rego_of(&compiled);
    let data = indexed::data(&compiled);
    let mut emitted_interp = interpreter(emitted, None, rego::DECISION);
    let mut emitted_rvm = rvm(&mut emitted_interp, None, rego::DECISION);
    let mut indexed_interp = interpreter(indexed::module(), Some(&data), indexed::DECISION);
    let mut indexed_rvm = rvm(&mut indexed_interp, Some(&data), indexed::DECISION);

    let mut buffers = Buffers::default();
    let omega: Engine<'_> =
        Box::new(|text| Outcome::Omega(buffers.decide(&policy, text.as_bytes()).unwrap()));
    let mut engines: Vec<(&str, Engine<'_>)> = vec![
        ("omega (decode + evaluate)", omega),
        (
            "regorus interpreter, emitted Rego",
            on_interpreter(&mut emitted_interp, rego::DECISION),
        ),
        ("regorus RVM, emitted Rego", on_rvm(&mut emitted_rvm)),
        (
            "regorus interpreter, indexed data",
            on_interpreter(&mut indexed_interp, indexed::DECISION),
        ),
        ("regorus RVM, indexed data", on_rvm(&mut indexed_rvm)),
    ];

    // Agreement: every engine gives the decision of the evaluator on the request as read by
    // `eval` (via a `serde_json::Value`) on every request of the mix.
    for text in &mix {
        let input: Json = serde_json::from_str(text).unwrap();
        let reference = JsonRequest::from_json(&input).unwrap().evaluate(&policy);
        let reference = decision_json(&policy, &compiled, &reference);
        for (name, engine) in &mut engines {
            let theirs = match engine(text) {
                Outcome::Omega(d) => decision_json(&policy, &compiled, &d),
                Outcome::Regorus(v) => to_json(&v),
            };
            assert_eq!(reference, theirs, "{name} disagrees on {text}");
        }
    }
    let mix_classes = classes(&policy, &mix);
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "test mode: all engines agree on {} requests ({mix_classes:?}); run `cargo bench` for figures",
            mix.len()
        );
        return;
    }

    println!(
        "\nend-to-end latency from JSON request text, healthcare policy ({} rules, {} limits), \
         {} distinct requests, {TIMED} timed decisions per engine",
        compiled.rules.len(),
        compiled.limits.len(),
        mix.len()
    );
    println!("mix: {mix_classes:?}");
    // What reading the clock adds to every figure below (not subtracted).
    let mut clock: Vec<Duration> = (0..TIMED)
        .map(|_| {
            let t = Instant::now();
            black_box(());
            t.elapsed()
        })
        .collect();
    clock.sort();
    println!(
        "clock overhead per timed decision: p50 {:?}",
        percentile(&clock, 0.5)
    );
    // Steady state: each engine decides the whole mix on its own, as under a sustained load
    // of requests (its code and data stay in the caches); the engines take turns mix by mix
    // so that changes in the machine's load during the run fall on all of them alike.
    let mut times = vec![Vec::with_capacity(TIMED); engines.len()];
    for _ in 0..TIMED.div_ceil(mix.len()) {
        for ((_, engine), times) in engines.iter_mut().zip(&mut times) {
            for text in &mix {
                let t = Instant::now();
                let d = engine(black_box(text));
                times.push(t.elapsed());
                drop(black_box(d));
            }
        }
    }
    table("steady state (each engine on its own)", &engines, times);
    // Taking turns request by request: every engine finds the caches as the others left
    // them, as a decision made among other work would.
    let mut times = vec![Vec::with_capacity(TIMED); engines.len()];
    for text in mix.iter().cycle().take(TIMED) {
        for ((_, engine), times) in engines.iter_mut().zip(&mut times) {
            let t = Instant::now();
            let d = engine(black_box(text));
            times.push(t.elapsed());
            drop(black_box(d));
        }
    }
    table("cold caches (engines take turns)", &engines, times);
}

/// Prints p50/p99/mean per engine (the first is Omega) and the ratios to Omega.
fn table(title: &str, engines: &[(&str, Engine<'_>)], times: Vec<Vec<Duration>>) {
    println!("\n{title}");
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "engine", "p50", "p99", "mean", "p50 / omega", "p99 / omega"
    );
    let mut omega = None;
    let mut best_regorus = None::<(Duration, &str)>;
    for ((name, _), mut times) in engines.iter().zip(times) {
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        times.sort();
        let (p50, p99) = (percentile(&times, 0.50), percentile(&times, 0.99));
        let (base50, base99) = *omega.get_or_insert((p50, p99));
        println!(
            "{name:<36} {:>10.2?} {:>10.2?} {:>10.2?} {:>11.0}x {:>11.0}x",
            p50,
            p99,
            mean,
            p50.as_secs_f64() / base50.as_secs_f64(),
            p99.as_secs_f64() / base99.as_secs_f64()
        );
        if !name.starts_with("omega") && best_regorus.is_none_or(|(b, _)| p50 < b) {
            best_regorus = Some((p50, name));
        }
    }
    if let (Some((ours, _)), Some((best, name))) = (omega, best_regorus) {
        println!(
            "best regorus variant: {name}, p50 {:.0}x Omega's (target: at least 20x)",
            best.as_secs_f64() / ours.as_secs_f64()
        );
    }
}
