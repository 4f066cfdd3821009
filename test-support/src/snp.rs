//! Real SEV-SNP attestation reports for tests.
//!
//! A clone alone has one: the Milan report and VCEK bundled with the `sev` crate 8.0.0
//! (copied under `data/virtee-sev-8.0.0`, see its README). The project's shared test data
//! (`<workspace>/../shared/testdata/snp`: Milan v2/v3, Genoa v5 reports with their VCEKs and
//! the ARK/ASK PEMs) adds the others; it is optional for a newcomer's clone and required
//! under CI ([`crate::require`]).

use std::path::{Path, PathBuf};

/// One report with the VCEK that signed it; `name` starts with the family (`milan-…`).
#[derive(Debug, Clone)]
pub struct Vector {
    pub name: String,
    pub report: Vec<u8>,
    pub vcek: Vec<u8>,
}

impl Vector {
    /// The product family the name starts with (`milan`, `genoa`, `turin`).
    pub fn family(&self) -> &str {
        self.name.split('-').next().unwrap_or_default()
    }
}

/// A real Turin VCEK (no report goes with it) from the same `sev` crate package.
pub const EMBEDDED_TURIN_VCEK: &[u8] = include_bytes!("../data/virtee-sev-8.0.0/vcek_turin.der");

/// The report bundled with the `sev` crate, as hex text (what the fuzz seeds include).
pub const EMBEDDED_MILAN_REPORT_HEX: &str =
    include_str!("../data/virtee-sev-8.0.0/report_milan.hex");
/// The VCEK that signed [`EMBEDDED_MILAN_REPORT_HEX`].
pub const EMBEDDED_MILAN_VCEK: &[u8] = include_bytes!("../data/virtee-sev-8.0.0/vcek_milan.der");

/// The Milan vector every clone has (the same as the shared `milan-v2-virtee`).
pub fn embedded_milan() -> Vector {
    Vector {
        name: "milan-v2-virtee-embedded".into(),
        report: hex::decode(EMBEDDED_MILAN_REPORT_HEX.trim()).expect("embedded report is hex"),
        vcek: EMBEDDED_MILAN_VCEK.to_vec(),
    }
}

/// `<workspace>/../shared/testdata/snp` if it is there (no policy: see [`shared_dir`]).
fn shared_dir_if_present() -> Option<PathBuf> {
    let d = crate::workspace_root().join("../shared/testdata/snp");
    d.join("README.md").is_file().then_some(d)
}

/// The shared test data directory: [`crate::require`]d (a failure under CI, else `SKIP:`
/// naming `skipped`, what the test leaves out without it).
#[track_caller]
pub fn shared_dir(skipped: &str) -> Option<PathBuf> {
    crate::require(
        shared_dir_if_present(),
        format_args!("../shared/testdata/snp is absent: {skipped}"),
    )
}

/// Every `<name>.report.bin` with its `<name>.vcek.der` in `dir`, sorted by name.
pub fn vectors_in(dir: &Path) -> Vec<Vector> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read the test data directory") {
        let p = e.expect("list the test data directory").path();
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        let Some(stem) = name.strip_suffix(".report.bin") else {
            continue;
        };
        let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        out.push(Vector {
            name: stem.to_owned(),
            report: read(&p),
            vcek: read(&dir.join(format!("{stem}.vcek.der"))),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// How many reports the shared test data holds (its README lists them).
pub const SHARED_REPORTS: usize = 4;

/// Real reports: the shared ones when present (required under CI), else only
/// [`embedded_milan`] (with a `SKIP:` line for the others).
#[track_caller]
pub fn real_vectors() -> Vec<Vector> {
    match shared_dir("only the embedded virtee Milan report is used") {
        Some(d) => {
            let v = vectors_in(&d);
            assert_eq!(
                v.len(),
                SHARED_REPORTS,
                "{}: expected the reports its README lists",
                d.display()
            );
            v
        }
        None => vec![embedded_milan()],
    }
}
