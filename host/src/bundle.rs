//! Agent bundles on the host: a directory with `manifest.json`, the policy and the Wasm
//! modules, read and checked with the contract the monitor applies (`omega-bundle`), so a
//! bundle the monitor would refuse is refused here, before QEMU starts.

use std::fs::File;
use std::io::Read;
use std::path::Path;

pub use omega_bundle::{AgentEntry, MANIFEST, MAX_TOTAL_BYTES, Manifest};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a regular file")]
    NotAFile(String),
    /// The bundle breaks the contract (the monitor would refuse it).
    #[error(transparent)]
    Contract(#[from] omega_bundle::BundleError),
}

impl From<omega_bundle::ManifestError> for BundleError {
    fn from(e: omega_bundle::ManifestError) -> Self {
        BundleError::Contract(e.into())
    }
}

/// A bundle read into memory, in sending order.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: Manifest,
    /// (file name, contents): manifest.json first, then the policy, then each module once
    /// in manifest order.
    pub files: Vec<(String, Vec<u8>)>,
}

impl Bundle {
    /// Reads a bundle directory and checks it with [`omega_bundle::validate`].
    pub fn read(dir: &Path) -> Result<Bundle, BundleError> {
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut total = 0;
        let manifest_bytes = read_bounded(dir, MANIFEST, &mut total)?;
        let manifest = Manifest::parse(&manifest_bytes)?;
        files.push((MANIFEST.to_string(), manifest_bytes));
        for name in &manifest.files()[1..] {
            let bytes = read_bounded(dir, name, &mut total)?;
            files.push((name.to_string(), bytes));
        }
        omega_bundle::validate(&files)?;
        Ok(Bundle { manifest, files })
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b.len() as u64).sum()
    }
}

/// Reads `dir/name`, adding its size to `total`; refuses before reading past
/// [`MAX_TOTAL_BYTES`] in all.
fn read_bounded(dir: &Path, name: &str, total: &mut u64) -> Result<Vec<u8>, BundleError> {
    let path = dir.join(name);
    let io = |source| BundleError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(&path).map_err(io)?;
    // Checked on the opened file, so it is the one read.
    if !file.metadata().map_err(io)?.is_file() {
        return Err(BundleError::NotAFile(name.to_string()));
    }
    let room = MAX_TOTAL_BYTES - *total;
    let mut bytes = Vec::new();
    // SECURITY: at most one byte past the limit is read, whatever the file's size says.
    file.take(room + 1).read_to_end(&mut bytes).map_err(io)?;
    *total += bytes.len() as u64;
    if *total > MAX_TOTAL_BYTES {
        return Err(omega_bundle::BundleError::TooLarge(*total).into());
    }
    Ok(bytes)
}
