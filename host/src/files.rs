//! Files the launcher reads and writes, opened so that it never touches a file it did not
//! mean to: everything goes through an opened directory descriptor (`openat`), no path
//! component the launcher names itself is a symlink it follows, and files it creates are
//! new (`O_EXCL`). The launcher often runs as root; without this, a symlink planted in a
//! log or bundle directory would make it overwrite (or read, or block on) any file.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Mode of the files the launcher creates (the log is public data, verified, not secret).
const FILE_MODE: libc::c_uint = 0o644;
/// Mode of the directories the launcher creates.
const DIR_MODE: u32 = 0o700;

fn c_name(name: &str) -> io::Result<CString> {
    // SECURITY: one path component only: `a/../b` or `/etc/x` would leave the directory.
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain file name"),
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

/// `r` as an `io::Result`: -1 is `errno`.
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// What is at a name in a directory (the name itself, not what a symlink points to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Regular,
    Directory,
    Symlink,
    /// FIFO, socket, character or block device.
    Special,
}

impl Kind {
    fn of(mode: libc::mode_t) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::Regular,
            libc::S_IFDIR => Kind::Directory,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Special,
        }
    }
}

/// An opened directory; every file operation is relative to its descriptor, so renaming
/// or replacing the directory's path afterwards changes nothing.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    pub path: PathBuf,
}

impl Dir {
    /// Opens the directory at `path`. Its last component must not be a symlink.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let p = c_path(path)?;
        // SAFETY: `p` is a valid NUL-terminated string; open returns a new descriptor or -1.
        let fd = cvt(unsafe {
            libc::open(
                p.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })
        .map_err(|e| {
            // O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR: say what it is.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                annotate(io::Error::from_raw_os_error(libc::ELOOP), path)
            } else {
                annotate(e, path)
            }
        })?;
        Ok(Dir {
            // SAFETY: `fd` was just returned by open and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    /// Opens the directory at `path`, creating it (mode 0700, parents as needed) if missing.
    pub fn create_or_open(path: &Path) -> io::Result<Dir> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Dir::open(path)
    }

    /// What `name` is, without following a symlink; None if there is nothing.
    pub fn kind(&self, name: &str) -> io::Result<Option<Kind>> {
        Ok(self.stat(name)?.map(|st| Kind::of(st.st_mode)))
    }

    fn stat(&self, name: &str) -> io::Result<Option<libc::stat>> {
        let n = c_name(name)?;
        // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open, `n` is NUL-terminated and `st` is writable.
        let r = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                n.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        match cvt(r) {
            Ok(_) => Ok(Some(st)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn openat(&self, name: &str, flags: libc::c_int) -> io::Result<File> {
        let n = c_name(name)?;
        // SAFETY: the descriptor is open and `n` is NUL-terminated; the mode argument is
        // read only with O_CREAT.
        let fd = cvt(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                n.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                FILE_MODE,
            )
        })
        .map_err(|e| annotate(e, &self.path.join(name)))?;
        // SAFETY: `fd` was just returned by openat and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Creates `name`, which must not exist (not even as a dangling symlink), for writing.
    pub fn create_new(&self, name: &str, append: bool) -> io::Result<File> {
        // SECURITY: O_EXCL with O_CREAT fails on any existing name, symlinks included, so a
        // planted link never redirects the write.
        let mut flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
        if append {
            flags |= libc::O_APPEND;
        }
        self.openat(name, flags)
    }

    /// Opens `name` for reading if it is a regular file. Symlinks and special files (FIFO,
    /// device, socket) are refused before anything is opened, and the opened file is checked
    /// again (it could have been swapped in between).
    pub fn open_regular(&self, name: &str) -> Result<File, OpenError> {
        match self.kind(name)? {
            Some(Kind::Regular) => {}
            None => {
                return Err(OpenError::Io(annotate(
                    io::Error::from(io::ErrorKind::NotFound),
                    &self.path.join(name),
                )));
            }
            Some(k) => return Err(OpenError::NotRegular(k)),
        }
        // SECURITY: O_NONBLOCK so that a FIFO swapped in after the check cannot block the
        // open; O_NOFOLLOW (in openat) for a symlink swapped in.
        let file = match self.openat(name, libc::O_RDONLY | libc::O_NONBLOCK) {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(OpenError::NotRegular(Kind::Symlink));
            }
            r => r?,
        };
        let kind = Kind::of(file.metadata()?.mode() as libc::mode_t);
        if kind != Kind::Regular {
            return Err(OpenError::NotRegular(kind));
        }
        Ok(file)
    }

    /// Opens the existing regular file `name` for reading and appending (never created,
    /// never followed if it is a symlink; special files refused as by
    /// [`Dir::open_regular`]).
    pub fn open_append(&self, name: &str) -> Result<File, OpenError> {
        drop(self.open_regular(name)?);
        let file = match self.openat(name, libc::O_RDWR | libc::O_APPEND | libc::O_NONBLOCK) {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(OpenError::NotRegular(Kind::Symlink));
            }
            r => r?,
        };
        let kind = Kind::of(file.metadata()?.mode() as libc::mode_t);
        if kind != Kind::Regular {
            return Err(OpenError::NotRegular(kind));
        }
        Ok(file)
    }

    /// Removes `name` (a symlink itself, never its target).
    pub fn unlink(&self, name: &str) -> io::Result<()> {
        let n = c_name(name)?;
        // SAFETY: the descriptor is open and `n` is NUL-terminated.
        cvt(unsafe { libc::unlinkat(self.fd.as_raw_fd(), n.as_ptr(), 0) }).map(drop)
    }

    /// Renames `from` to `to` within this directory, replacing `to` atomically. rename(2)
    /// replaces the name `to`: when it is a symlink, the link goes, its target is untouched.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (f, t) = (c_name(from)?, c_name(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: the descriptor is open and both names are NUL-terminated.
        cvt(unsafe { libc::renameat(fd, f.as_ptr(), fd, t.as_ptr()) }).map(drop)
    }

    /// Durably replaces `name` with `bytes`: written to `.NAME.tmp` (created with `O_EXCL`,
    /// a leftover or planted temporary name is removed first, never followed), fsynced, then
    /// renamed over `name`, so a reader sees the old file or the new one, never a torn one.
    pub fn replace_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let tmp = format!(".{name}.tmp");
        let mut f = match self.create_new(&tmp, false) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.unlink(&tmp)?;
                self.create_new(&tmp, false)?
            }
            r => r?,
        };
        let written = f
            .write_all(bytes)
            .and_then(|_| f.sync_all())
            .and_then(|_| self.rename(&tmp, name));
        if written.is_err() {
            let _ = self.unlink(&tmp);
        }
        written?;
        self.sync()
    }

    /// Opens the sub-directory `name`, creating it (mode 0700) when missing. It must be a
    /// directory, not a symlink to one.
    pub fn subdir(&self, name: &str) -> io::Result<Dir> {
        let n = c_name(name)?;
        // SAFETY: the descriptor is open and `n` is NUL-terminated.
        let made = cvt(unsafe { libc::mkdirat(self.fd.as_raw_fd(), n.as_ptr(), DIR_MODE) });
        match made {
            Ok(_) => self.sync()?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(annotate(e, &self.path.join(name))),
        }
        // SECURITY: O_NOFOLLOW|O_DIRECTORY: a symlink planted at `name` is refused.
        // SAFETY: the descriptor is open and `n` is NUL-terminated.
        let fd = cvt(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                n.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })
        .map_err(|e| annotate(e, &self.path.join(name)))?;
        Ok(Dir {
            // SAFETY: `fd` was just returned by openat and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: self.path.join(name),
        })
    }

    /// Makes the directory's entries durable (new and renamed names).
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: the descriptor is open.
        cvt(unsafe { libc::fsync(self.fd.as_raw_fd()) }).map(drop)
    }
}

/// Why a file to read was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a regular file ({0:?})")]
    NotRegular(Kind),
}

fn annotate(e: io::Error, path: &Path) -> io::Error {
    let what = if e.raw_os_error() == Some(libc::ELOOP) {
        "is a symlink (refused)".to_string()
    } else {
        e.to_string()
    };
    io::Error::new(e.kind(), format!("{}: {what}", path.display()))
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks that `dir` is a directory (not a symlink) owned by the effective user that no
/// one else can enter (mode `0700` or stricter), as a private place for the channel socket.
pub fn check_private_dir(dir: &Path) -> io::Result<()> {
    let md = std::fs::symlink_metadata(dir).map_err(|e| annotate(e, dir))?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: {why}; the channel socket needs a private directory (owned by uid {}, mode 0700)",
                dir.display(),
                euid()
            ),
        ))
    };
    if md.file_type().is_symlink() {
        return refuse("is a symlink".into());
    }
    if !md.is_dir() {
        return refuse("is not a directory".into());
    }
    if md.uid() != euid() {
        return refuse(format!("is owned by uid {}", md.uid()));
    }
    // SECURITY: nobody else may enter the directory, so nobody else can connect to the
    // socket, replace it, or see its name change.
    if md.mode() & 0o077 != 0 {
        return refuse(format!("has mode {:#o}", md.mode() & 0o7777));
    }
    Ok(())
}

/// Ensures `dir` exists as a private directory: creates it (mode 0700) when missing, then
/// checks it with [`check_private_dir`] either way.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(dir).is_err() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::DirBuilder::new().mode(DIR_MODE).create(dir)?;
    }
    check_private_dir(dir)
}

/// Creates a fresh private directory `omega-<random>` (mkdtemp-style: an unpredictable name,
/// mode 0700, created by mkdir, which never follows a symlink or reuses a name) under the
/// user's `XDG_RUNTIME_DIR` when it is private, else under the temporary directory.
pub fn fresh_private_dir() -> io::Result<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && check_private_dir(d).is_ok())
        .unwrap_or_else(std::env::temp_dir);
    let mut urandom = File::open("/dev/urandom")?;
    for _ in 0..16 {
        let mut r = [0u8; 8];
        urandom.read_exact(&mut r)?;
        let dir = base.join(format!("omega-{:016x}", u64::from_le_bytes(r)));
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(&dir) {
            Ok(()) => {
                check_private_dir(&dir)?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(annotate(e, &dir)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no fresh directory name under {}", base.display()),
    ))
}
