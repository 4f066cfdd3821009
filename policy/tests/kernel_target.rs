//! The evaluator builds for the kernel's target (`x86_64-unknown-none`, no std).
//! Uses its own target dir so it never waits on the lock of the `cargo test` running it.

use std::path::Path;
use std::process::Command;

#[test]
fn builds_for_x86_64_unknown_none() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = manifest.join("../target/omega-policy-nostd");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(manifest)
        .args([
            "build",
            "--quiet",
            "-p",
            "omega-policy",
            "--target",
            "x86_64-unknown-none",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "omega-policy does not build for x86_64-unknown-none:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rlib = std::fs::read_dir(target_dir.join("x86_64-unknown-none/debug"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("libomega_policy")
        });
    assert!(rlib, "no libomega_policy rlib for the kernel target");
}
