//! The one check of a whole bundle: the launcher runs it on what it read before sending,
//! the monitor on what it received before using any of it.

use alloc::collections::BTreeSet;
use alloc::string::ToString;

use crate::error::BundleError;
use crate::limits::{MAX_FILES, MAX_NAME, MAX_TOTAL_BYTES, WASM_MAGIC, valid_file_name};
use crate::manifest::Manifest;

/// A named file of a bundle.
pub trait NamedFile {
    fn name(&self) -> &str;
    fn bytes(&self) -> &[u8];
}

impl<N: AsRef<str>, B: AsRef<[u8]>> NamedFile for (N, B) {
    fn name(&self) -> &str {
        self.0.as_ref()
    }
    fn bytes(&self) -> &[u8] {
        self.1.as_ref()
    }
}

/// Checks a whole bundle, files in sending order, against every rule: the limits, the file
/// names, the manifest format, the file list the manifest implies, and Wasm modules.
/// Returns the parsed manifest.
pub fn validate<F: NamedFile>(files: &[F]) -> Result<Manifest, BundleError> {
    check_limits(
        files.len(),
        files.iter().map(|f| f.bytes().len() as u64).sum(),
    )?;
    let mut names = BTreeSet::new();
    for f in files {
        check_name(f.name())?;
        if !names.insert(f.name()) {
            return Err(BundleError::DuplicateName(f.name().to_string()));
        }
    }
    let first = files.first().ok_or(BundleError::CountMismatch {
        declared: 0,
        got: 0,
    })?;
    if first.name() != crate::MANIFEST {
        return Err(wrong_file(0, crate::MANIFEST, first.name()));
    }
    let manifest = Manifest::parse(first.bytes())?;
    let expected = manifest.files();
    for (position, want) in expected.iter().enumerate() {
        let got = files.get(position).map_or("(none)", |f| f.name());
        if got != *want {
            return Err(wrong_file(position, want, got));
        }
    }
    if let Some(extra) = files.get(expected.len()) {
        return Err(wrong_file(expected.len(), "(none)", extra.name()));
    }
    // After the manifest and the policy come the modules, then the data files, then the
    // tools file.
    let modules = expected.len() - 2 - manifest.data.len() - usize::from(manifest.tools.is_some());
    if let Some(f) = files[2..2 + modules]
        .iter()
        .find(|f| !f.bytes().starts_with(WASM_MAGIC))
    {
        return Err(BundleError::NotWasm(f.name().to_string()));
    }
    Ok(manifest)
}

/// The limits on the count and the total size, as `Begin` declares them.
pub(crate) fn check_limits(files: usize, total_bytes: u64) -> Result<(), BundleError> {
    if files > MAX_FILES as usize {
        return Err(BundleError::TooManyFiles(
            u32::try_from(files).unwrap_or(u32::MAX),
        ));
    }
    if total_bytes > MAX_TOTAL_BYTES {
        return Err(BundleError::TooLarge(total_bytes));
    }
    Ok(())
}

pub(crate) fn check_name(name: &str) -> Result<(), BundleError> {
    if valid_file_name(name) {
        Ok(())
    } else {
        // A hostile name may be long: the error (printed on the console) keeps its start.
        Err(BundleError::BadName(
            name.chars().take(MAX_NAME + 1).collect(),
        ))
    }
}

fn wrong_file(position: usize, expected: &str, got: &str) -> BundleError {
    BundleError::WrongFile {
        position,
        expected: expected.to_string(),
        got: got.to_string(),
    }
}
