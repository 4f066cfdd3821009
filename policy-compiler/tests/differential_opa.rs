//! The evaluator and real OPA (through the PyPI package `opa-golib-python-bindings`, run by
//! tests/opa_oracle.py) must make the same decision for generated requests, held to the same
//! coverage as the regorus differential test (`common::Coverage`).
//!
//! The oracle's Python comes from `OMEGA_ORACLE_PYTHON`, `<repo>/target/oracles-venv` or
//! `python3` on PATH (scripts/test.sh installs it); without it the tests fail when `CI` is
//! set and skip with a "SKIP:" line otherwise.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use policy_compiler::request::eval_json;
use serde_json::{Value as Json, json};

fn opa_python() -> Option<PathBuf> {
    omega_test_support::require(
        omega_test_support::oracle::python_importing("opa_bindings"),
        "the OPA oracle (PyPI opa-golib-python-bindings) is not installed: set OMEGA_ORACLE_PYTHON or run scripts/test.sh",
    )
}

/// Runs tests/opa_oracle.py on `rego`: the decisions for `inputs`, or the oracle's stderr
/// when it fails (OPA refused the module).
fn run_oracle(
    python: &Path,
    rego: &str,
    document: &str,
    inputs: &[Json],
) -> Result<Vec<Json>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/opa_oracle.py");
    let mut child = Command::new(python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let job = json!({ "rego": rego, "document": document, "inputs": inputs });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("oracle prints a JSON array"))
}

fn opa_decide(python: &Path, rego: &str, inputs: &[Json]) -> Vec<Json> {
    run_oracle(python, rego, policy_compiler::rego::DECISION, inputs)
        .unwrap_or_else(|stderr| panic!("OPA oracle failed: {stderr}"))
}

#[test]
fn evaluator_and_opa_agree_on_generated_requests() {
    let Some(python) = opa_python() else {
        return;
    };
    for file in common::differential_files() {
        let compiled = common::load(&file);
        let bytes = compiled.to_bytes();
        let policy = omega_policy::decode(&bytes).unwrap();
        let mut generator = common::Gen::new(&compiled, 0x0da0_0002);
        let inputs: Vec<Json> = (0..common::DIFFERENTIAL_REQUESTS)
            .map(|_| generator.request())
            .collect();
        let theirs = opa_decide(&python, &common::rego_of(&compiled), &inputs);
        assert_eq!(theirs.len(), inputs.len());
        let mut coverage = common::Coverage::default();
        for (i, (input, opa)) in inputs.iter().zip(&theirs).enumerate() {
            let ours = eval_json(&compiled, &policy, input).unwrap();
            assert_eq!(
                &ours,
                opa,
                "{}: request #{i} disagrees\ninput: {input:#}",
                file.display()
            );
            coverage.record(input, &ours);
        }
        coverage.assert_meaningful(&file, &compiled);
    }
}

#[test]
fn opa_oracle_rejects_a_broken_module() {
    let Some(python) = opa_python() else {
        return;
    };
    // First prove OPA is loaded and evaluates: a valid module gives its decision...
    let valid = "package omega.policy\ndecision := {\"decision\": \"allow\", \"n\": input.n}";
    let decisions = run_oracle(
        &python,
        valid,
        "omega.policy.decision",
        &[json!({ "n": 7 })],
    )
    .unwrap_or_else(|stderr| panic!("OPA refused a valid module: {stderr}"));
    assert_eq!(decisions, [json!({ "decision": "allow", "n": 7 })]);
    // ...then the same oracle must not silently accept anything: a syntax error fails it, and
    // for that reason (not, say, a missing module).
    let stderr = run_oracle(
        &python,
        "package omega.policy\ndecision := {",
        "omega.policy.decision",
        &[json!({})],
    )
    .expect_err("OPA accepted a module with a syntax error");
    assert!(stderr.contains("rego_parse_error"), "{stderr}");
}

/// Integers at the edge of the exact range, written as integers and as integral floats.
/// serde_json's default float parser is not correctly rounded and reads
/// `9007199254740991.0` as a neighbour; policy-compiler enables `float_roundtrip`, so the
/// text means what it says (for the evaluator's JSON front end and for regorus alike).
#[test]
fn integer_edges_match_opa() {
    let Some(python) = opa_python() else {
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
