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
    for file in common::example_files() {
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
