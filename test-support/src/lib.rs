//! Helpers shared by the tests of several Omega crates (a dev-dependency only).
//!
//! **Prerequisites.** A test that needs something outside its crate (an oracle, Omega's
//! built image, QEMU, a tool such as GNU `as`, the shared test data) gets it through
//! [`require`]: when it is missing, the test FAILS if env `CI` is set, and otherwise prints a
//! `SKIP:` line and returns early. No test skips silently.
//!
//! ```no_run
//! use omega_test_support::require;
//! let Some(image) = require(std::env::var_os("OMEGA_IMAGE"), "Omega's image (OMEGA_IMAGE)")
//! else {
//!     return; // skipped loudly; under CI `require` has already panicked
//! };
//! # let _ = image;
//! ```
//!
//! [`oracle`] finds the test oracles scripts/test.sh installs; [`snp`] holds the real SNP
//! attestation reports the tests verify; [`random`] gives seeded random bytes and mutations
//! for the robustness tests.

use std::fmt::Display;
use std::io::Write as _;
use std::path::PathBuf;

pub mod etcd;
pub mod oracle;
pub mod random;
pub mod snp;
pub mod tee;

/// Whether env `CI` is set (to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A prerequisite is missing: panics under CI, otherwise prints a `SKIP:` line.
#[track_caller]
pub fn missing(what: impl Display) {
    if in_ci() {
        panic!("missing prerequisite: {what} (env CI is set, so this is a failure)");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!`, and a skip
    // must show in a normal `cargo test` run.
    let _ = writeln!(std::io::stderr(), "SKIP: {what} (set CI to make this fail)");
}

/// `found`, or — when it is `None` — [`missing`]`(what)` and `None`.
#[track_caller]
pub fn require<T>(found: Option<T>, what: impl Display) -> Option<T> {
    if found.is_none() {
        missing(what);
    }
    found
}

/// The workspace root (this crate sits directly under it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The firmware images of Debian's `ovmf` package that the tests measure and parse.
pub const DEBIAN_OVMF: [&str; 3] = [
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/OVMF/OVMF_CODE_4M.fd",
    "/usr/share/OVMF/OVMF_CODE.fd",
];

/// All of [`DEBIAN_OVMF`], [`require`]d (scripts/setup.sh installs the package).
#[track_caller]
pub fn debian_ovmf() -> Option<Vec<PathBuf>> {
    let found: Vec<PathBuf> = DEBIAN_OVMF.iter().map(PathBuf::from).collect();
    let all = found.iter().all(|p| p.is_file());
    require(
        all.then_some(found),
        "Debian's ovmf package is not installed (scripts/setup.sh installs it)",
    )
}

/// A Python with the official A2A SDK and its signing extra (`OMEGA_A2A_PYTHON`, else
/// `target/a2a-venv`): required under CI, else the caller skips loudly.
pub fn a2a_signing_python() -> Option<PathBuf> {
    let p = std::env::var_os("OMEGA_A2A_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/a2a-venv/bin/python"));
    let ok = std::process::Command::new(&p)
        .args(["-c", "import a2a.utils.signing, jwt, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    require(
        ok.then_some(p),
        "a Python with a2a-sdk[signing] (python3 -m venv target/a2a-venv && target/a2a-venv/bin/pip install -r bench/a2a/requirements.txt)",
    )
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    /// Runs this test binary's `child_requires_nothing_there` with `CI` set to `ci`.
    fn child(ci: &str) -> std::process::Output {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::child_requires_nothing_there",
                "--nocapture",
            ])
            .env("CI", ci)
            .env("OMEGA_TEST_SUPPORT_CHILD", "1")
            .output()
            .unwrap()
    }

    /// Only does something when run by [`child`].
    #[test]
    fn child_requires_nothing_there() {
        if std::env::var_os("OMEGA_TEST_SUPPORT_CHILD").is_some() {
            assert!(super::require(None::<()>, "the thing").is_none());
        }
    }

    #[test]
    fn require_fails_under_ci_and_skips_loudly_otherwise() {
        let o = child("1");
        let stderr = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{stderr}");
        assert!(
            stderr.contains("missing prerequisite: the thing"),
            "{stderr}"
        );
        for ci in ["", "0", "false"] {
            let o = child(ci);
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "CI={ci:?}: {stderr}");
            assert!(
                stderr.contains("SKIP: the thing (set CI to make this fail)"),
                "{stderr}"
            );
        }
    }
}
