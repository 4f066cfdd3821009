//! Durable storage for the provenance log stream.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where the Log stream's bytes go.
pub trait LogStore: Send {
    /// Appends bytes (not yet durable).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable. Only after it returns Ok does the host Ack.
    fn sync(&mut self) -> io::Result<()>;
    /// Durably replaces a file kept beside the log (`log.vkey`, `checkpoint.note`).
    fn put_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
}

/// `DIR/provenance.log`: the log stream's bytes, appended as they arrive, fsynced before
/// every Ack. The file is exactly the byte stream the guest's `Log::drain` produced.
pub struct FileLogStore {
    file: std::fs::File,
    pub path: PathBuf,
}

impl FileLogStore {
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("provenance.log");
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        if !existed {
            // Make the new directory entry durable too.
            file.sync_all()?;
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(FileLogStore { file, path })
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
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{name}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        // Atomic replace: a reader sees the old file or the new one, never a torn one.
        std::fs::rename(&tmp, dir.join(name))?;
        std::fs::File::open(dir)?.sync_all()
    }
}
