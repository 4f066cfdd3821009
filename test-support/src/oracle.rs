//! Where the test oracles are: `scripts/test.sh` installs them (sev-snp-measure, the OPA
//! bindings) into `<workspace>/target/oracles-venv` and exports `PATH` and
//! `OMEGA_ORACLE_PYTHON`; a developer may instead put them on `PATH` or point
//! `OMEGA_ORACLE_PYTHON` at any Python that has them.

use std::path::PathBuf;
use std::process::Command;

/// The venv scripts/test.sh creates.
pub fn venv_bin() -> PathBuf {
    crate::workspace_root().join("target/oracles-venv/bin")
}

/// An executable named `name` on `PATH`, else in the oracle venv.
pub fn executable(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([venv_bin()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn imports(python: &PathBuf, module: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A Python that can `import module`: `OMEGA_ORACLE_PYTHON`, else the oracle venv's, else
/// `python3` on `PATH`.
///
/// # Panics
/// When `OMEGA_ORACLE_PYTHON` is set but cannot import `module`: a broken setup is not a
/// reason to skip.
pub fn python_importing(module: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OMEGA_ORACLE_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            imports(&p, module),
            "OMEGA_ORACLE_PYTHON={} cannot `import {module}`",
            p.display()
        );
        return Some(p);
    }
    [venv_bin().join("python")]
        .into_iter()
        .chain(executable("python3"))
        .find(|p| imports(p, module))
}
