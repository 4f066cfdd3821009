//! Builds the example agents in `agents/` to `wasm32-unknown-unknown`, the same bytes in any
//! checkout directory and any target directory, and checks each module against the agent
//! ABI ([`check`]) before handing it out.
//!
//! Reproducibility comes from the workspace's `agent` profile (one codegen unit, fat LTO,
//! `opt-level = "z"`, no debug info, symbols stripped, `panic = "abort"`), `Cargo.lock`
//! (`--locked`), the pinned toolchain (`rust-toolchain.toml`) and, here,
//! `--remap-path-prefix` for every absolute path that could reach the output (the checkout,
//! cargo's registry, the target directory), with the caller's `RUSTFLAGS`-style overrides
//! removed from cargo's environment. Nothing in the build reads the clock.
//!
//! The agents are a member of the main workspace, not a workspace of their own, on purpose:
//! cargo derives each crate's symbol-name hash (`-C metadata`) from its path relative to the
//! workspace root, but from the absolute path for a path dependency outside it, and those
//! hashes order functions in the module. As a separate workspace, the SDK (outside it) made
//! the bytes depend on the checkout's location.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

mod bundle;
mod module;

pub use bundle::{
    DEMO_AGENTS, DEMO_DATA, DEMO_POLICY, NO_PROXY, data_entries, demo_agent_entry, demo_policy,
    demo_policy_with, pin_policy, pin_policy_with, write_bundle_of, write_demo_bundle,
    write_demo_bundle_with,
};
pub use module::{Import, ModuleError, ModuleInfo, check};

/// The agents' package directory, relative to the repository root.
pub const AGENTS_DIR: &str = "agents";
/// The agents' package.
pub const PACKAGE: &str = "omega-example-agents";
/// The feature that turns the agents' bins on (they are wasm32-only).
pub const FEATURE: &str = "wasm-agents";
/// The workspace profile the agents are built with.
pub const PROFILE: &str = "agent";
/// The target the agents are built for.
pub const TARGET: &str = "wasm32-unknown-unknown";
/// The hostile agent that imports from outside the ABI (and must).
pub const FORBIDDEN_IMPORT_AGENT: &str = "forbidden-import";

/// One built agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The bin's name: `agents/src/bin/NAME.rs`.
    pub name: String,
    pub wasm: Vec<u8>,
    pub info: ModuleInfo,
}

impl Built {
    /// SHA-256 of the module, as the policy's `agent … hash` pins it.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.wasm).into()
    }

    /// `sha256:<hex>`, the policy's pin syntax.
    pub fn pin(&self) -> String {
        format!("sha256:{}", hex::encode(self.sha256()))
    }

    /// The module's file name.
    pub fn file_name(&self) -> String {
        format!("{}.wasm", self.name)
    }
}

/// Why the agents could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not valid UTF-8 (the path is passed to rustc in a TOML string)")]
    NonUtf8Path(PathBuf),
    #[error("no agents in {0} (expected src/bin/NAME.rs files)")]
    NoAgents(PathBuf),
    #[error("cargo build of the agents failed ({0})")]
    Cargo(std::process::ExitStatus),
    #[error("demo policy: {0}")]
    Template(String),
    #[error("agent `{agent}`: {source}")]
    Module { agent: String, source: ModuleError },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The agents' names: the stems of `agents/src/bin/*.rs` under `repo`, sorted.
pub fn agent_names(repo: &Path) -> Result<Vec<String>, BuildError> {
    let bin = repo.join(AGENTS_DIR).join("src/bin");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&bin).map_err(io(&bin))? {
        let path = entry.map_err(io(&bin))?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.push(stem.to_string());
        }
    }
    if names.is_empty() {
        return Err(BuildError::NoAgents(bin));
    }
    names.sort();
    Ok(names)
}

fn utf8(path: &Path) -> Result<&str, BuildError> {
    path.to_str()
        .ok_or_else(|| BuildError::NonUtf8Path(path.to_path_buf()))
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Where cargo keeps downloaded crate sources.
fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// `--remap-path-prefix` flags for the absolute paths of this build. rustc applies the last
/// matching one, so the more specific (a target directory inside the checkout) comes last.
fn remap_flags(repo: &Path, target_dir: &Path) -> Result<Vec<String>, BuildError> {
    let mut maps = Vec::new();
    if let Some(home) = cargo_home() {
        maps.push((home, "/cargo"));
    }
    maps.push((repo.to_path_buf(), "/omega"));
    maps.push((target_dir.to_path_buf(), "/target"));
    maps.into_iter()
        .map(|(from, to)| Ok(format!("--remap-path-prefix={}={to}", utf8(&from)?)))
        .collect()
}

/// Environment variables that would change what cargo builds (flags, profile, target,
/// wrappers): removed, so the caller's environment cannot change the bytes.
fn overrides_build(var: &str) -> bool {
    matches!(
        var,
        "RUSTFLAGS"
            | "CARGO_ENCODED_RUSTFLAGS"
            | "RUSTC_WRAPPER"
            | "RUSTC_WORKSPACE_WRAPPER"
            | "CARGO_INCREMENTAL"
    ) || var.starts_with("CARGO_BUILD_")
        || var.starts_with("CARGO_PROFILE_")
        || (var.starts_with("CARGO_TARGET_") && var != "CARGO_TARGET_DIR")
}

/// The agents of `repo`, built once per process into `agents-runtime-test` under
/// `$CARGO_TARGET_DIR` (or `repo/target`): what every test that runs the real agents shares,
/// so one test run builds them once (cargo's lock serialises concurrent test binaries).
/// Panics when the build fails: for tests only.
pub fn built_for_tests(repo: &Path) -> &'static [Built] {
    static BUILT: std::sync::OnceLock<Vec<Built>> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| repo.join("target"));
        build(repo, &target.join("agents-runtime-test")).expect("the agents build")
    })
}

/// Builds every agent of the checkout at `repo` with cargo's target directory `target_dir`,
/// and checks each module ([`check`]).
pub fn build(repo: &Path, target_dir: &Path) -> Result<Vec<Built>, BuildError> {
    let repo = std::path::absolute(repo).map_err(io(repo))?;
    let target_dir = std::path::absolute(target_dir).map_err(io(target_dir))?;
    let names = agent_names(&repo)?;
    let flags: Vec<String> = remap_flags(&repo, &target_dir)?
        .iter()
        .map(|f| toml_string(f))
        .collect();

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&repo)
        .args(["build", "--locked", "--bins", "--target", TARGET])
        .args([
            "--package",
            PACKAGE,
            "--features",
            FEATURE,
            "--profile",
            PROFILE,
        ])
        .arg("--config")
        .arg(format!("build.rustflags=[{}]", flags.join(", ")))
        .env("CARGO_TARGET_DIR", &target_dir);
    for (var, _) in std::env::vars_os() {
        if let Some(v) = var.to_str().filter(|v| overrides_build(v)) {
            cmd.env_remove(v);
        }
    }
    let status = cmd.status().map_err(io(&repo))?;
    if !status.success() {
        return Err(BuildError::Cargo(status));
    }

    let out = target_dir.join(TARGET).join(PROFILE);
    names
        .into_iter()
        .map(|name| {
            let path = out.join(format!("{name}.wasm"));
            // Missing: a src/bin file without its [[bin]] entry in agents/Cargo.toml.
            let wasm = std::fs::read(&path).map_err(io(&path))?;
            let info = check(&name, &wasm).map_err(|source| BuildError::Module {
                agent: name.clone(),
                source,
            })?;
            Ok(Built { name, wasm, info })
        })
        .collect()
}

/// Writes each module to `out_dir/NAME.wasm` and their hashes to `out_dir/SHA256SUMS`
/// (`sha256sum -c` format).
pub fn write(out_dir: &Path, built: &[Built]) -> Result<(), BuildError> {
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let mut sums = String::new();
    for b in built {
        let path = out_dir.join(b.file_name());
        std::fs::write(&path, &b.wasm).map_err(io(&path))?;
        sums += &format!("{}  {}\n", hex::encode(b.sha256()), b.file_name());
    }
    let path = out_dir.join("SHA256SUMS");
    std::fs::write(&path, sums).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaps_put_the_most_specific_path_last() {
        let flags = remap_flags(Path::new("/src/omega"), Path::new("/src/omega/target/x")).unwrap();
        assert_eq!(
            flags[flags.len() - 2..],
            [
                "--remap-path-prefix=/src/omega=/omega",
                "--remap-path-prefix=/src/omega/target/x=/target"
            ]
        );
    }

    #[test]
    fn build_overrides_are_recognised() {
        for v in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_PROFILE_RELEASE_OPT_LEVEL",
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
        ] {
            assert!(overrides_build(v), "{v}");
        }
        for v in ["CARGO_TARGET_DIR", "CARGO_HOME", "PATH", "RUSTUP_TOOLCHAIN"] {
            assert!(!overrides_build(v), "{v}");
        }
    }

    #[test]
    fn toml_strings_escape_quotes_and_backslashes() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn agent_names_are_the_bins_sorted() {
        let names = agent_names(&omega_test_support::workspace_root()).unwrap();
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        for expected in ["triage", "summariser", "scheduler", FORBIDDEN_IMPORT_AGENT] {
            assert!(names.iter().any(|n| n == expected), "{expected}");
        }
    }
}
