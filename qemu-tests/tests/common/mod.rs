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

/// A bundle of the built agents `agents` under the policy `template` (`${agent}`: that
/// agent's module pin).
pub fn agents_bundle(dir: &Path, template: &str, agents: &[&str]) {
    let built = omega_agents_build::built_for_tests(&omega_test_support::workspace_root());
    let src = omega_agents_build::pin_policy(template, built).unwrap();
    let policy = policy_compiler::compile("peer.policy", &src, Path::new("."))
        .unwrap_or_else(|d| panic!("{}", d.render()))
        .to_bytes();
    std::fs::create_dir_all(dir).unwrap();
    let mut modules = Vec::new();
    for name in agents {
        let b = built.iter().find(|b| b.name == *name).unwrap();
        std::fs::write(dir.join(b.file_name()), &b.wasm).unwrap();
        modules.push((name.to_string(), b.file_name()));
    }
    let manifest = omega_bundle::Manifest::json(
        "policy.bin",
        modules.iter().map(|(n, m)| (n.as_str(), m.as_str())),
    );
    std::fs::write(dir.join(omega_bundle::MANIFEST), manifest).unwrap();
    std::fs::write(dir.join("policy.bin"), policy).unwrap();
}

/// The cross-image demo (agents/ `courier` on node-a, `inbox` on node-b). Node A's policy: the courier may send to node-b's agents, but not to its archive.
pub const POLICY_A: &str = r#"policy "node-a"
agent courier { hash "${courier}" cleared [] }
agent node-b/inbox { hash "${inbox}" cleared [] }
agent node-b/vault { hash "${inbox}" cleared [] }
agent node-b/archive { hash "${inbox}" cleared [] }
rule no_archive { deny send node-b/archive agents [courier] }
rule to_node_b { allow send * agents [courier] }
"#;

/// Node B's policy: node-a's courier may reach the inbox, not the vault.
pub const POLICY_B: &str = r#"policy "node-b"
agent inbox { hash "${inbox}" cleared [] }
agent vault { hash "${inbox}" cleared [] }
agent node-a/courier { hash "${courier}" cleared [] }
rule no_vault { deny send vault agents [node-a/courier] }
rule from_node_a { allow send inbox agents [node-a/courier] }
"#;
