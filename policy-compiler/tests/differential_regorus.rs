//! The evaluator (on the decoded binary form) and regorus (on the emitted Rego) must make the
//! same decision — effect, rule and labels — for thousands of generated requests.

mod common;

use policy_compiler::request::eval_json;

#[test]
fn evaluator_and_regorus_agree_on_generated_requests() {
    for file in common::differential_files() {
        let compiled = common::load(&file);
        let bytes = compiled.to_bytes();
        let policy = omega_policy::decode(&bytes).expect("decodes");
        let mut engine = common::regorus_engine(&compiled);
        let mut generator = common::Gen::new(&compiled, 0x5eed_0001);
        let mut coverage = common::Coverage::default();
        for i in 0..common::DIFFERENTIAL_REQUESTS {
            let input = generator.request();
            let ours =
                eval_json(&compiled, &policy, &input).expect("generated requests are well-formed");
            let theirs = common::regorus_decide(&mut engine, &input);
            assert_eq!(
                ours,
                theirs,
                "{}: request #{i} disagrees\ninput: {input:#}",
                file.display()
            );
            coverage.record(&input, &ours);
        }
        coverage.assert_meaningful(&file, &compiled);
    }
}

/// The indexed rendering (`rego::indexed`, what the benchmark times) decides as the evaluator
/// does on the edge-case policy, whose model `m1` requires GPU evidence: 600 generated
/// requests, `gpu-evidence` among the outcomes. (The benchmark checks the same on the
/// healthcare example before timing.)
#[test]
fn indexed_rendering_agrees_on_the_edge_cases() {
    use policy_compiler::rego::indexed;
    let file = common::differential_files()
        .into_iter()
        .find(|f| f.ends_with("edge-cases.policy"))
        .expect("the edge-case policy");
    let compiled = common::load(&file);
    let bytes = compiled.to_bytes();
    let policy = omega_policy::decode(&bytes).unwrap();
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("indexed.rego".into(), indexed::module())
        .unwrap();
    engine
        .add_data(regorus::Value::from_json_str(&indexed::data(&compiled).to_string()).unwrap())
        .unwrap();
    let mut generator = common::Gen::new(&compiled, 0x1d3e_0003);
    let mut gpu_denied = 0;
    for i in 0..600 {
        let input = generator.request();
        let ours = eval_json(&compiled, &policy, &input).unwrap();
        engine.set_input(regorus::Value::from_json_str(&input.to_string()).unwrap());
        let v = engine
            .eval_rule(format!("data.{}", indexed::DECISION))
            .unwrap();
        let theirs: serde_json::Value = serde_json::from_str(&v.to_json_str().unwrap()).unwrap();
        assert_eq!(ours, theirs, "request #{i} disagrees\ninput: {input:#}");
        gpu_denied += usize::from(ours["rule"] == "gpu-evidence");
    }
    assert!(gpu_denied > 0, "no request was denied gpu-evidence");
}
