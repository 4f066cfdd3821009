//! The agents build to the same bytes from two checkouts in different directories with
//! different target directories, and every module passes the ABI check (which `build`
//! applies): imports only from the ABI module, except the forbidden-import agent.

use std::path::Path;

use omega_agent_abi as abi;
use omega_agents_build::{FORBIDDEN_IMPORT_AGENT, build};

/// Copies the checkout `from` to `to`, leaving out build outputs and git's store.
fn copy_tree(from: &Path, to: &Path) {
    if from.is_file() {
        std::fs::copy(from, to).unwrap();
        return;
    }
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "target" && entry.file_name() != ".git" {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    }
}

#[test]
fn agents_build_identically_in_two_directories() {
    let repo = omega_test_support::workspace_root();
    let scratch = tempfile::tempdir().unwrap();
    // Different depths and names, so any leaked path would change the bytes (and lengths).
    let checkouts = [
        scratch.path().join("a"),
        scratch.path().join("somewhere/much/deeper/omega-checkout"),
    ];
    // Both copies first, so the two builds read the same sources.
    for checkout in &checkouts {
        copy_tree(&repo, checkout);
    }
    // One target directory inside the checkout, one outside it.
    let targets = [
        checkouts[0].join("target/wasm"),
        scratch.path().join("elsewhere-target"),
    ];
    // Both at once: each build ends in single-threaded LTO links.
    let builds: Vec<_> = std::thread::scope(|s| {
        let running: Vec<_> = checkouts
            .iter()
            .zip(&targets)
            .map(|(checkout, target)| s.spawn(move || build(checkout, target).unwrap()))
            .collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    });

    let (first, second) = (&builds[0], &builds[1]);
    assert_eq!(
        first.iter().map(|b| &b.name).collect::<Vec<_>>(),
        second.iter().map(|b| &b.name).collect::<Vec<_>>()
    );
    for (a, b) in first.iter().zip(second) {
        assert!(a.wasm == b.wasm, "{}: the two builds differ", a.name);
        eprintln!("{}  {:>6} bytes  {}", a.pin(), a.wasm.len(), a.name);
        let foreign: Vec<_> = a
            .info
            .imports
            .iter()
            .filter(|i| i.module != abi::MODULE)
            .collect();
        if a.name == FORBIDDEN_IMPORT_AGENT {
            assert!(!foreign.is_empty());
        } else {
            assert!(foreign.is_empty(), "{}: {foreign:?}", a.name);
        }
    }
}
