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
