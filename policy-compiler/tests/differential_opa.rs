//! The evaluator and real OPA (through the PyPI package `opa-golib-python-bindings`, run by
//! tests/opa_oracle.py) must make the same decision for generated requests.
//!
//! The oracle's Python comes from `OMEGA_ORACLE_PYTHON` or `<repo>/target/oracles-venv/bin/python`
//! (scripts/test.sh installs it). Without it the test fails when `CI` is set and is skipped
//! (with a "SKIPPED:" line) otherwise.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use policy_compiler::request::eval_json;
use serde_json::{Value as Json, json};

const REQUESTS_PER_POLICY: u64 = 3000;

fn oracle_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OMEGA_ORACLE_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/oracles-venv/bin/python");
    p.exists().then_some(p)
}

fn opa_decide(python: &Path, rego: &str, inputs: &[Json]) -> Vec<Json> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/opa_oracle.py");
    let mut child = Command::new(python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let job =
        json!({ "rego": rego, "document": policy_compiler::rego::DECISION, "inputs": inputs });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "OPA oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle prints a JSON array")
}

#[test]
fn evaluator_and_opa_agree_on_generated_requests() {
    let Some(python) = oracle_python() else {
        if std::env::var_os("CI").is_some() {
            panic!("OPA oracle missing: set OMEGA_ORACLE_PYTHON or run scripts/test.sh");
        }
        println!(
            "SKIPPED: OPA oracle not installed (set OMEGA_ORACLE_PYTHON or run scripts/test.sh)"
        );
        return;
    };
    for file in common::differential_files() {
        let compiled = common::load(&file);
        let bytes = compiled.to_bytes();
        let policy = omega_policy::decode(&bytes).unwrap();
        let mut generator = common::Gen::new(&compiled, 0x0da0_0002);
        let inputs: Vec<Json> = (0..REQUESTS_PER_POLICY)
            .map(|_| generator.request())
            .collect();
        let theirs = opa_decide(&python, &common::rego_of(&compiled), &inputs);
        assert_eq!(theirs.len(), inputs.len());
        let mut allowed = 0;
        for (i, (input, opa)) in inputs.iter().zip(&theirs).enumerate() {
            let ours = eval_json(&compiled, &policy, input).unwrap();
            assert_eq!(
                &ours,
                opa,
                "{}: request #{i} disagrees\ninput: {input:#}",
                file.display()
            );
            allowed += usize::from(ours["decision"] != "deny");
        }
        assert!(
            allowed > 100,
            "{}: too few allowed requests to mean much",
            file.display()
        );
    }
}

#[test]
fn opa_oracle_rejects_a_broken_module() {
    // The oracle must not silently accept anything: a syntax error has to fail it.
    let Some(python) = oracle_python() else {
        assert!(std::env::var_os("CI").is_none(), "OPA oracle missing in CI");
        println!("SKIPPED: OPA oracle not installed");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/opa_oracle.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let job = json!({ "rego": "package omega.policy\ndecision := {", "document": "omega.policy.decision", "inputs": [{}] });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    assert!(!child.wait().unwrap().success());
}

/// Integers at the edge of the exact range, written as integers and as integral floats.
/// serde_json's default float parser is not correctly rounded and reads
/// `9007199254740991.0` as a neighbour; policy-compiler enables `float_roundtrip`, so the
/// text means what it says (for the evaluator's JSON front end and for regorus alike).
#[test]
fn integer_edges_match_opa() {
    let Some(python) = oracle_python() else {
        assert!(std::env::var_os("CI").is_none(), "OPA oracle missing in CI");
        println!("SKIPPED: OPA oracle not installed");
        return;
    };
    let src = r#"
agent a { hash "0101010101010101010101010101010101010101010101010101010101010101" }
tool s.t {
  description "t"
  schema { "type": "object", "properties": { "n": { "type": "integer" } } }
}
rule edge_in { allow call s.t when args.n in [9007199254740991, -9007199254740992] }
rule edge_ge { confirm call s.t when args.n >= 9007199254740992 }
"#;
    let compiled = policy_compiler::compile("edge.policy", src, Path::new(".")).unwrap();
    let bytes = compiled.to_bytes();
    let policy = omega_policy::decode(&bytes).unwrap();
    let pin = policy_compiler::compile::hex(&compiled.tools[0].hash);
    let values = [
        "9007199254740991",
        "9007199254740991.0",
        "9007199254740992",
        "9007199254740992.0",
        "9007199254740993",
        "-9007199254740992",
        "-9007199254740992.0",
        "-9007199254740993",
        "1e300",
        "18446744073709551616",
        "9007199254740991.5",
    ];
    let inputs: Vec<Json> = values
        .iter()
        .map(|n| {
            serde_json::from_str(&format!(
                r#"{{"agent": {{"name": "a", "hash": "{}"}}, "action": "call", "target": "s.t",
                    "target_hash": "{pin}", "args": {{"n": {n}}}}}"#,
                "01".repeat(32)
            ))
            .unwrap()
        })
        .collect();
    let theirs = opa_decide(&python, &common::rego_of(&compiled), &inputs);
    let mut rules = Vec::new();
    for ((input, opa), n) in inputs.iter().zip(&theirs).zip(values) {
        let ours = eval_json(&compiled, &policy, input).unwrap();
        assert_eq!(&ours, opa, "n = {n}");
        rules.push(ours["rule"].as_str().unwrap().to_string());
    }
    assert_eq!(rules[0], "edge_in");
    assert_eq!(rules[1], "edge_in");
    assert_eq!(rules[2], "edge_ge");
    assert_eq!(rules[4], "default-deny", "beyond 2^53 is not an integer");
}
