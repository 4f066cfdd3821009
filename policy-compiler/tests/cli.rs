//! The three commands, run as the built binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_policy-compiler"))
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("omega-policy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn check_accepts_the_examples() {
    for f in ["healthcare.policy", "coding-assistant.policy"] {
        let out = bin().arg("check").arg(example(f)).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
    }
}

#[test]
fn check_reports_file_line_col_with_a_caret() {
    let src = std::fs::read_to_string(example("healthcare.policy")).unwrap();
    let bad = src.replace("when args.limit <= 50", "when args.limt <= 50");
    assert_ne!(bad, src);
    let path = tmp("bad.policy");
    std::fs::write(&path, &bad).unwrap();
    std::fs::create_dir_all(path.parent().unwrap().join("schemas")).unwrap();
    std::fs::copy(
        example("schemas/fhir_search_patients.json"),
        path.parent()
            .unwrap()
            .join("schemas/fhir_search_patients.json"),
    )
    .unwrap();
    let out = bin().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = bad.lines().position(|l| l.contains("args.limt")).unwrap() + 1;
    let col = bad.lines().nth(line - 1).unwrap().find("limt").unwrap() + 1;
    let head = format!(
        "{}:{line}:{col}: error: tool `fhir.search_patients` has no argument `limt`",
        path.display()
    );
    assert!(err.starts_with(&head), "{err}");
    assert!(err.contains("did you mean `limit`?"), "{err}");
    assert!(
        err.contains(&format!("{line} |   when args.limt <= 50")),
        "{err}"
    );
    assert!(err.contains("^^^^"), "{err}");
}

#[test]
fn compile_writes_binary_and_rego_and_prints_the_identity() {
    let out_bin = tmp("h.bin");
    let out_rego = tmp("h.rego");
    let out = bin()
        .args(["compile"])
        .arg(example("healthcare.policy"))
        .arg("--out")
        .arg(&out_bin)
        .arg("--rego")
        .arg(&out_rego)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&out_bin).unwrap();
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("sha256:{digest}")
    );
    let policy = omega_policy::decode(&bytes).unwrap();
    assert_eq!(policy.name, "healthcare");
    let rego = std::fs::read_to_string(&out_rego).unwrap();
    assert!(rego.contains("package omega.policy") && rego.contains(&digest));
    for line in rego.lines().filter(|l| !l.trim_start().starts_with('#')) {
        // Drop string literals, then look for the keyword.
        let code: String = line.split('"').step_by(2).collect::<Vec<_>>().join(" ");
        assert!(
            !code
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .any(|w| w == "with"),
            "`with` in: {line}"
        );
    }
    // Deterministic: the same source compiles to the same bytes.
    let again = tmp("h2.bin");
    let st = bin()
        .arg("compile")
        .arg(example("healthcare.policy"))
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(st.status.success());
    assert_eq!(std::fs::read(&again).unwrap(), bytes);
}

#[test]
fn eval_prints_the_decision() {
    let policy = policy_compiler::compile::compile(
        "healthcare.policy",
        &std::fs::read_to_string(example("healthcare.policy")).unwrap(),
        &example(""),
    )
    .unwrap();
    let hex = policy_compiler::compile::hex;
    let triage = policy.agents.iter().find(|a| a.name == "triage").unwrap();
    let input = serde_json::json!({
        "agent": {"name": "triage", "hash": hex(&triage.hash)},
        "action": "read", "target": "ehr", "path": "/patients/9",
        "context": {"labels": ["untrusted"]}
    });
    let path = tmp("req.json");
    std::fs::write(&path, input.to_string()).unwrap();
    let out = bin()
        .arg("eval")
        .arg(example("healthcare.policy"))
        .arg("--input")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"decision": "allow", "rule": "triage_reads_ehr", "labels": ["phi", "untrusted", "pii"]})
    );
    // A malformed request is an error, not a decision.
    std::fs::write(
        &path,
        r#"{"agent": {"name": "triage"}, "action": "fly", "target": "x"}"#,
    )
    .unwrap();
    let out = bin()
        .arg("eval")
        .arg(example("healthcare.policy"))
        .arg("--input")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`action` must be one of"));
}

#[test]
fn help_lists_the_commands() {
    let out = bin().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["check", "compile", "eval"] {
        assert!(text.contains(cmd), "{text}");
    }
}

#[test]
fn pin_hashes_tools_list_entries_like_the_compiler() {
    let c = policy_compiler::compile::compile(
        "healthcare.policy",
        &std::fs::read_to_string(example("healthcare.policy")).unwrap(),
        &example(""),
    )
    .unwrap();
    let tool = c
        .tools
        .iter()
        .find(|t| t.name == "fhir.update_record")
        .unwrap();
    // A tools/list result as an MCP server would send it, keys in another order.
    let listing = serde_json::json!({ "tools": [
        { "inputSchema": tool.schema, "name": "update_record",
          "description": "Update a field of a patient record" },
        { "name": "update_record_v2", "description": "Update a field of a patient record!",
          "inputSchema": tool.schema },
    ]});
    let path = tmp("tools.json");
    std::fs::write(&path, serde_json::to_string_pretty(&listing).unwrap()).unwrap();
    let out = bin().arg("pin").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let pin = policy_compiler::compile::hex(&tool.hash);
    assert_eq!(lines[0], format!("update_record sha256:{pin}"));
    assert!(lines[1].starts_with("update_record_v2 sha256:") && !lines[1].ends_with(&pin));
}
