//! The launcher reads bundles with the monitor's limits: the largest bundle of each kind is
//! accepted, one more (byte, agent, character) is refused before anything is sent.

use std::path::Path;

use omega_bundle::{BundleError as Contract, MAX_AGENTS, MAX_NAME, MAX_TOTAL_BYTES, ManifestError};
use omega_host::bundle::{Bundle, BundleError};

fn module(size: usize) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.resize(size.max(8), 7);
    m
}

/// Writes a bundle of `agents` (name, module file) with `policy.bin`; returns its size.
fn write(dir: &Path, agents: &[(String, String)], module_size: usize) -> u64 {
    let manifest = omega_bundle::Manifest::json(
        "policy.bin",
        agents.iter().map(|(n, m)| (n.as_str(), m.as_str())),
    );
    std::fs::write(dir.join("manifest.json"), &manifest).unwrap();
    std::fs::write(dir.join("policy.bin"), b"OMPL").unwrap();
    let mut total = manifest.len() as u64 + 4;
    for (_, m) in agents {
        if !dir.join(m).exists() {
            std::fs::write(dir.join(m), module(module_size)).unwrap();
            total += module_size as u64;
        }
    }
    total
}

fn agents(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("agent-{i}"), format!("m{i}.wasm")))
        .collect()
}

fn contract(r: Result<Bundle, BundleError>) -> Contract {
    match r {
        Err(BundleError::Contract(e)) => e,
        other => panic!("expected a contract error, got {other:?}"),
    }
}

#[test]
fn largest_total_accepted_one_byte_more_refused() {
    let dir = tempfile::tempdir().unwrap();
    let one = agents(1);
    let small = write(dir.path(), &one, 8);
    // The one module takes all the room the manifest and the policy leave.
    let rest = (MAX_TOTAL_BYTES - small + 8) as usize;
    std::fs::write(dir.path().join("m0.wasm"), module(rest)).unwrap();
    let b = Bundle::read(dir.path()).unwrap();
    assert_eq!(b.total_bytes(), MAX_TOTAL_BYTES);
    std::fs::write(dir.path().join("m0.wasm"), module(rest + 1)).unwrap();
    assert!(matches!(
        contract(Bundle::read(dir.path())),
        Contract::TooLarge(n) if n > MAX_TOTAL_BYTES
    ));
}

#[test]
fn most_agents_accepted_one_more_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &agents(MAX_AGENTS), 8);
    assert_eq!(
        Bundle::read(dir.path()).unwrap().files.len(),
        MAX_AGENTS + 2
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &agents(MAX_AGENTS + 1), 8);
    assert_eq!(
        contract(Bundle::read(dir.path())),
        Contract::Manifest(ManifestError::AgentCount(MAX_AGENTS + 1))
    );
}

#[test]
fn longest_names_accepted_one_more_refused() {
    let a = |n: usize| "a".repeat(n);
    let dir = tempfile::tempdir().unwrap();
    let module_name = format!("{}.wasm", a(MAX_NAME - 5));
    write(dir.path(), &[(a(MAX_NAME), module_name)], 8);
    Bundle::read(dir.path()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[(a(MAX_NAME + 1), "m.wasm".into())], 8);
    assert_eq!(
        contract(Bundle::read(dir.path())),
        Contract::Manifest(ManifestError::BadAgentName(a(MAX_NAME + 1)))
    );

    let dir = tempfile::tempdir().unwrap();
    let module_name = format!("{}.wasm", a(MAX_NAME - 4));
    write(dir.path(), &[("x".into(), module_name.clone())], 8);
    assert_eq!(
        contract(Bundle::read(dir.path())),
        Contract::Manifest(ManifestError::BadModuleName(module_name))
    );
}

#[test]
fn hidden_files_are_refused_as_the_monitor_would() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("a".into(), ".hidden.wasm".into())], 8);
    assert_eq!(
        contract(Bundle::read(dir.path())),
        Contract::Manifest(ManifestError::BadModuleName(".hidden.wasm".into()))
    );
}

#[test]
fn special_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &agents(1), 8);
    std::fs::remove_file(dir.path().join("m0.wasm")).unwrap();
    std::fs::create_dir(dir.path().join("m0.wasm")).unwrap();
    assert!(matches!(
        Bundle::read(dir.path()),
        Err(BundleError::NotAFile(n)) if n == "m0.wasm"
    ));
}
