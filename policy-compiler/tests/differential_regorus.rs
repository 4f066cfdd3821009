//! The evaluator (on the decoded binary form) and regorus (on the emitted Rego) must make the
//! same decision — effect, rule and labels — for thousands of generated requests.

mod common;

use std::collections::BTreeMap;

use policy_compiler::request::eval_json;

const REQUESTS_PER_POLICY: u64 = 3000;

#[test]
fn evaluator_and_regorus_agree_on_generated_requests() {
    for file in common::differential_files() {
        let compiled = common::load(&file);
        let bytes = compiled.to_bytes();
        let policy = omega_policy::decode(&bytes).expect("decodes");
        let mut engine = common::regorus_engine(&compiled);
        let mut generator = common::Gen::new(&compiled, 0x5eed_0001);
        let mut rules_seen: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..REQUESTS_PER_POLICY {
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
            let key = format!(
                "{}:{}",
                ours["decision"].as_str().unwrap(),
                ours["rule"].as_str().unwrap()
            );
            *rules_seen.entry(key).or_default() += 1;
        }
        eprintln!("{}: {rules_seen:#?}", file.display());
        // The generator must reach every kind of outcome, or agreement proves little.
        for needle in [
            "allow:",
            "deny:default-deny",
            "deny:agent-pin",
            "deny:target-pin",
            "deny:unknown-target",
            "deny:flow:",
        ] {
            assert!(
                rules_seen.keys().any(|k| k.starts_with(needle)),
                "{}: no generated request ended in {needle}",
                file.display()
            );
        }
        let user_rules = compiled.rules.len() + compiled.limits.len();
        let user_hit = compiled
            .rules
            .iter()
            .map(|r| &r.name)
            .chain(compiled.limits.iter().map(|l| &l.name))
            .filter(|n| rules_seen.keys().any(|k| k.ends_with(&format!(":{n}"))))
            .count();
        assert!(
            user_hit * 10 >= user_rules * 8,
            "{}: only {user_hit} of {user_rules} rules and limits decided some request",
            file.display()
        );
    }
}
