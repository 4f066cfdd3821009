//! Agent bundles on the host: a directory with `manifest.json`, the policy and the Wasm
//! modules, read and checked with the contract the monitor applies (`omega-bundle`), so a
//! bundle the monitor would refuse is refused here, before QEMU starts.

use std::io::Read;
use std::path::Path;

use crate::files::{Dir, Kind, OpenError};

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
    #[error("{0} is a symlink (refused: bundle files are read as they are, never through a link)")]
    Symlink(String),
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
        let dir = Dir::open(dir).map_err(|source| BundleError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let dir = &dir;
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

/// Reads `name` from the bundle directory once, through the descriptor it opened, adding
/// its size to `total`; refuses before reading past [`MAX_TOTAL_BYTES`] in all.
fn read_bounded(dir: &Dir, name: &str, total: &mut u64) -> Result<Vec<u8>, BundleError> {
    let io = |source| BundleError::Io {
        path: dir.path.join(name).display().to_string(),
        source,
    };
    // SECURITY: symlinks and special files (a FIFO would block the launcher, a device
    // could be endless or have side effects) are refused before anything is read.
    let file = dir.open_regular(name).map_err(|e| match e {
        OpenError::Io(e) => io(e),
        OpenError::NotRegular(Kind::Symlink) => BundleError::Symlink(name.to_string()),
        OpenError::NotRegular(_) => BundleError::NotAFile(name.to_string()),
    })?;
    let room = MAX_TOTAL_BYTES - *total;
    let mut bytes = Vec::new();
    // SECURITY: the size is checked while reading: at most one byte past the limit is read,
    // whatever the file's size said before or says now.
    file.take(room + 1).read_to_end(&mut bytes).map_err(io)?;
    *total += bytes.len() as u64;
    if *total > MAX_TOTAL_BYTES {
        return Err(omega_bundle::BundleError::TooLarge(*total).into());
    }
    Ok(bytes)
}
