//! Fixtures shared by several QEMU test files.
#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;

use sha2::{Digest, Sha256};

/// A bundle's files as the launcher reads them: (name, bytes), the manifest first.
pub type Files = Vec<(String, Vec<u8>)>;

/// A bundle of agents that return at once (distinct modules, so each agent claim has its
/// own hash), under a policy named `policy_name` that pins them.
pub fn agent_bundle(policy_name: &str, agents: &[&str]) -> Files {
    let mut src = format!("policy \"{policy_name}\"\n");
    let mut modules = Vec::new();
    for (i, name) in agents.iter().enumerate() {
        // A different memory size makes each module distinct.
        let wasm = wat::parse_str(format!(
            r#"(module (memory (export "memory") {}) (func (export "run")))"#,
            i + 1
        ))
        .unwrap();
        src += &format!(
            "agent {name} {{ hash \"sha256:{:x}\" cleared [] }}\n",
            Sha256::digest(&wasm)
        );
        modules.push((name.to_string(), format!("{name}.wasm"), wasm));
    }
    let policy = policy_compiler::compile(&format!("{policy_name}.policy"), &src, Path::new("."))
        .unwrap_or_else(|d| panic!("{}", d.render()))
        .to_bytes();
    let manifest = omega_bundle::Manifest::json(
        "policy.bin",
        modules.iter().map(|(n, m, _)| (n.as_str(), m.as_str())),
    );
    let mut files = vec![
        (omega_bundle::MANIFEST.to_string(), manifest),
        ("policy.bin".to_string(), policy),
    ];
    files.extend(modules.into_iter().map(|(_, m, wasm)| (m, wasm)));
    files
}
