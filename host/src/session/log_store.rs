//! Durable storage for the provenance log stream.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::files::Dir;

/// Where the Log stream's bytes go.
pub trait LogStore: Send {
    /// Appends bytes (not yet durable).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable. Only after it returns Ok does the host Ack.
    fn sync(&mut self) -> io::Result<()>;
    /// Durably replaces a file kept beside the log (`log.vkey`, `checkpoint.note`).
    fn put_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// After a failed `append` or `sync`: cuts the log back to its first `len` bytes (the
    /// last whole record) and makes that durable, so no partial record is left behind.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// The log stream's file in the log directory.
pub const LOG_FILE: &str = "provenance.log";
/// The guest's log verifier key.
pub const KEY_FILE: &str = "log.vkey";
/// The latest signed checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.note";
/// Every name the launcher writes in a log directory (the temporary names of
/// [`LogStore::put_file`]'s atomic replace included): if one exists, the directory is used.
pub const LOG_DIR_FILES: [&str; 5] = [
    LOG_FILE,
    KEY_FILE,
    CHECKPOINT_FILE,
    ".log.vkey.tmp",
    ".checkpoint.note.tmp",
];

/// `DIR/provenance.log`: the log stream's bytes, appended as they arrive, fsynced before
/// every Ack. The file is exactly the byte stream the guest's `Log::drain` produced.
///
/// A log directory belongs to one boot: [`FileLogStore::open`] refuses a directory that
/// holds any of [`LOG_DIR_FILES`], and creates `provenance.log` with `O_EXCL`, so two
/// launchers can never share one. Every file is opened relative to the directory's
/// descriptor with `O_NOFOLLOW`; see [`crate::files`].
pub struct FileLogStore {
    dir: Dir,
    file: std::fs::File,
    pub path: PathBuf,
}

impl FileLogStore {
    /// Claims `dir` for one boot (created with mode 0700 if missing; its last component
    /// must not be a symlink) and creates `provenance.log` in it.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let d = Dir::create_or_open(dir)?;
        for name in LOG_DIR_FILES {
            // SECURITY: a second boot into a used directory would start a new log at 0 and
            // overwrite the key and checkpoint, so that neither boot verifies.
            if d.kind(name)?.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "log directory {} already holds {name} from an earlier boot; a log \
                         directory belongs to one boot: choose a new --log-dir",
                        dir.display()
                    ),
                ));
            }
        }
        let file = d.create_new(LOG_FILE, true)?;
        // Make the new file and its directory entry durable.
        file.sync_all()?;
        d.sync()?;
        Ok(FileLogStore {
            path: dir.join(LOG_FILE),
            dir: d,
            file,
        })
    }
}

impl LogStore for FileLogStore {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn put_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = format!(".{name}.tmp");
        let mut f = match self.dir.create_new(&tmp, false) {
            // A leftover (or planted) temporary name: remove the name itself (a symlink's
            // target is untouched) and create it anew, still exclusively.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.dir.unlink(&tmp)?;
                self.dir.create_new(&tmp, false)?
            }
            r => r?,
        };
        let written = f
            .write_all(bytes)
            .and_then(|_| f.sync_all())
            // Atomic replace: a reader sees the old file or the new one, never a torn one.
            .and_then(|_| self.dir.rename(&tmp, name));
        if written.is_err() {
            let _ = self.dir.unlink(&tmp);
        }
        written?;
        self.dir.sync()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()
    }
}
