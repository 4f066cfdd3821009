//! Durable storage for the provenance log stream.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::files::{Dir, OpenError};
use crate::session::resume::{ResumeError, StoredLog, check_stored_log};

/// Where the Log stream's bytes go.
pub trait LogStore: Send {
    /// Appends bytes (not yet durable).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable. Only after it returns Ok does the host Ack.
    fn sync(&mut self) -> io::Result<()>;
    /// Durably replaces a file kept beside the log (`log.vkey`, `checkpoint.note`,
    /// `nonce.hex`).
    fn put_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Durably replaces one principal's evidence (`evidence/<file>`); `file` comes from
    /// [`evidence_file_name`].
    fn put_evidence(&mut self, file: &str, bytes: &[u8]) -> io::Result<()>;
    /// Durably replaces one agent's signed A2A card (`cards/<file>`); `file` comes from
    /// [`card_file_name`].
    fn put_card(&mut self, file: &str, bytes: &[u8]) -> io::Result<()>;
    /// After a failed `append` or `sync`: cuts the log back to its first `len` bytes (the
    /// last whole record) and makes that durable, so no partial record is left behind.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Bytes of the log (from its first byte) already held durably when the session
    /// starts: 0 for a new log; for a log directory reopened by `omega attach`, its whole
    /// entries. The host states it in its HelloAck and continues from there.
    fn stored(&self) -> u64 {
        0
    }
}

/// The log stream's file in the log directory.
pub const LOG_FILE: &str = "provenance.log";
/// The guest's log verifier key.
pub const KEY_FILE: &str = "log.vkey";
/// The latest signed checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.note";
/// The verifier's nonce this boot was challenged with (64 hex digits and a newline).
pub const NONCE_FILE: &str = "nonce.hex";
/// The directory of the monitor's evidence, one file per principal.
pub const EVIDENCE_DIR: &str = "evidence";
/// The directory of the agents' signed A2A cards, one file per agent (`<agent>.json`).
pub const CARDS_DIR: &str = "cards";
/// Every name the launcher writes in a log directory (the temporary names of
/// [`LogStore::put_file`]'s atomic replace included): if one exists, the directory is used.
pub const LOG_DIR_FILES: [&str; 9] = [
    LOG_FILE,
    KEY_FILE,
    CHECKPOINT_FILE,
    NONCE_FILE,
    EVIDENCE_DIR,
    CARDS_DIR,
    ".log.vkey.tmp",
    ".checkpoint.note.tmp",
    ".nonce.hex.tmp",
];

/// Longest principal name the host stores evidence for (bytes).
pub const MAX_PRINCIPAL: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("empty principal name")]
    Empty,
    #[error("principal name longer than {MAX_PRINCIPAL} bytes")]
    TooLong,
    #[error("principal name \"{0}\" contains '/' or a control character, or starts with '.'")]
    Refused(String),
}

/// The file name of `principal`'s evidence in [`EVIDENCE_DIR`]: `:` written as `_`, then
/// `.bin` (`agent:triage` → `agent_triage.bin`).
pub fn evidence_file_name(principal: &str) -> Result<String, PrincipalError> {
    if principal.is_empty() {
        return Err(PrincipalError::Empty);
    }
    if principal.len() > MAX_PRINCIPAL {
        return Err(PrincipalError::TooLong);
    }
    // SECURITY: the name comes over the channel and becomes a file name: no path
    // separators, no hidden or `.`/`..` names, nothing that garbles a terminal listing.
    if principal.contains('/')
        || principal.starts_with('.')
        || principal.chars().any(char::is_control)
    {
        return Err(PrincipalError::Refused(
            principal.escape_debug().to_string(),
        ));
    }
    Ok(format!("{}.bin", principal.replace(':', "_")))
}

/// The file name of `agent`'s card in [`CARDS_DIR`]: `<agent>.json`. The name comes from
/// the guest: it must be a bundle agent name (`omega_bundle::valid_agent_name`) not
/// starting with `.`.
pub fn card_file_name(agent: &str) -> Result<String, PrincipalError> {
    // SECURITY: a plain file name inside cards/: no separators, no hidden or `..` names.
    if !omega_bundle::valid_agent_name(agent) || agent.starts_with('.') {
        return Err(PrincipalError::Refused(agent.escape_debug().to_string()));
    }
    Ok(format!("{agent}.json"))
}

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
    /// Bytes held when the store was opened (whole entries of a reopened log).
    held: u64,
    /// `evidence/`, created when the first evidence arrives.
    evidence: Option<Dir>,
    /// `cards/`, created when the first card arrives.
    cards: Option<Dir>,
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
            held: 0,
            evidence: None,
            cards: None,
        })
    }

    /// Reopens the log directory of a boot that is still running, for a launcher that
    /// attaches to it after the earlier one died. The stored log is checked against the
    /// directory's key and last checkpoint ([`check_stored_log`]); a torn last entry is cut
    /// (durably) so that the monitor's resend continues at an entry boundary. Every file is
    /// opened as by [`FileLogStore::open`] (relative to the directory, `O_NOFOLLOW`,
    /// symlinks and special files refused).
    pub fn reopen(dir: &Path) -> Result<(Self, StoredLog), ReopenError> {
        let d = Dir::open(dir)?;
        let mut file = d.open_append(LOG_FILE)?;
        let mut log = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut log)?;
        let text = |name: &str| -> Result<Option<String>, ReopenError> {
            match d.kind(name)? {
                None => Ok(None),
                Some(_) => {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut d.open_regular(name)?, &mut s)?;
                    Ok(Some(s))
                }
            }
        };
        let stored = check_stored_log(
            &log,
            text(KEY_FILE)?.as_deref(),
            text(CHECKPOINT_FILE)?.as_deref(),
        )?;
        if stored.torn > 0 {
            file.set_len(stored.whole)?;
            file.sync_all()?;
        }
        let evidence = match d.kind(EVIDENCE_DIR)? {
            Some(_) => Some(d.subdir(EVIDENCE_DIR)?),
            None => None,
        };
        let cards = match d.kind(CARDS_DIR)? {
            Some(_) => Some(d.subdir(CARDS_DIR)?),
            None => None,
        };
        Ok((
            FileLogStore {
                path: dir.join(LOG_FILE),
                dir: d,
                file,
                held: stored.whole,
                evidence,
                cards,
            },
            stored,
        ))
    }
}

/// Why a log directory could not be reopened for an attach.
#[derive(Debug, thiserror::Error)]
pub enum ReopenError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{LOG_FILE}: {0}")]
    Open(#[from] OpenError),
    #[error("{0}")]
    Log(#[from] ResumeError),
}

impl LogStore for FileLogStore {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn put_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.dir.replace_file(name, bytes)
    }
    fn put_evidence(&mut self, file: &str, bytes: &[u8]) -> io::Result<()> {
        let dir = match &mut self.evidence {
            Some(d) => d,
            none => none.insert(self.dir.subdir(EVIDENCE_DIR)?),
        };
        dir.replace_file(file, bytes)
    }
    fn put_card(&mut self, file: &str, bytes: &[u8]) -> io::Result<()> {
        let dir = match &mut self.cards {
            Some(d) => d,
            none => none.insert(self.dir.subdir(CARDS_DIR)?),
        };
        dir.replace_file(file, bytes)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()
    }
    fn stored(&self) -> u64 {
        self.held
    }
}
