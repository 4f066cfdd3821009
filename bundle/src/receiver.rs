//! Receiving the bundle in the monitor: the [`crate::msg`] sequence, checked as it arrives
//! (bounded memory: each file is reserved exactly once its header is accepted) and as a
//! whole at `End` with [`crate::validate`], the check the launcher ran before sending.
//! Every file is hashed on arrival; nothing from the bundle is used before its digest is
//! known and logged.

use alloc::string::String;
use alloc::vec::Vec;

use omega_wire::msg::decode_exact;
use sha2::{Digest, Sha256};

use crate::error::BundleError;
use crate::limits::MAX_CHUNK;
use crate::manifest::Manifest;
use crate::msg::BundleMsg;
use crate::validate::{NamedFile, check_limits, check_name, validate};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    pub name: String,
    pub sha256: [u8; 32],
    pub bytes: Vec<u8>,
}

impl NamedFile for BundleFile {
    fn name(&self) -> &str {
        &self.name
    }
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    Header {
        files: u32,
        total: u64,
    },
    Content {
        files: u32,
        total: u64,
        name: String,
        size: u64,
        bytes: Vec<u8>,
    },
    Done,
}

/// What one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Started {
        files: u32,
        total_bytes: u64,
    },
    /// A file header or part of a file's contents; more of the file comes next.
    Receiving,
    /// A file arrived complete (index into [`BundleReceiver::files`]).
    File(usize),
    /// The bundle is complete and passed [`validate`].
    Finished,
}

#[derive(Debug, Default)]
pub struct BundleReceiver {
    state: State,
    pub files: Vec<BundleFile>,
    /// The manifest of a finished bundle.
    pub manifest: Option<Manifest>,
    received: u64,
}

impl BundleReceiver {
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Feeds one reassembled Bundle-stream message. On error a bundle in progress is
    /// abandoned (state reset), so a later `Begin` starts over cleanly; a delivered bundle
    /// stays delivered (one bundle per boot: everything after it is refused).
    pub fn on_message(&mut self, m: &[u8]) -> Result<Progress, BundleError> {
        if self.is_done() {
            // SECURITY: the bundle in force cannot be replaced: a second `Begin` (or anything
            // else) after a completed bundle is refused and changes nothing.
            return Err(match header(m) {
                Ok(BundleMsg::Begin { .. }) => BundleError::AlreadyDelivered,
                _ => BundleError::UnexpectedMessage("the bundle was already delivered"),
            });
        }
        let r = self.step(m);
        if r.is_err() {
            *self = BundleReceiver::default();
        }
        r
    }

    fn step(&mut self, m: &[u8]) -> Result<Progress, BundleError> {
        match core::mem::take(&mut self.state) {
            // `on_message` answers everything after a delivered bundle itself.
            State::Idle | State::Done => match header(m)? {
                BundleMsg::Begin { files, total_bytes } => {
                    check_limits(files as usize, total_bytes)?;
                    self.files.clear();
                    self.manifest = None;
                    self.received = 0;
                    self.state = State::Header {
                        files,
                        total: total_bytes,
                    };
                    Ok(Progress::Started { files, total_bytes })
                }
                _ => Err(BundleError::UnexpectedMessage("expected Begin")),
            },
            State::Header { files, total } => match header(m)? {
                BundleMsg::File { name, size } => {
                    check_name(name)?;
                    if self.files.iter().any(|f| f.name == name) {
                        return Err(BundleError::DuplicateName(String::from(name)));
                    }
                    let got = self.files.len() as u32 + 1;
                    if got > files {
                        return Err(BundleError::CountMismatch {
                            declared: files,
                            got,
                        });
                    }
                    let after = self
                        .received
                        .checked_add(size)
                        .ok_or(BundleError::TooLarge(u64::MAX))?;
                    if after > total {
                        return Err(BundleError::TooLarge(after));
                    }
                    // SECURITY: `size` is within the declared total, itself within
                    // MAX_TOTAL_BYTES: reserving it exactly (never doubling) is what keeps
                    // the monitor's heap within the arithmetic in `limits`.
                    let mut bytes = Vec::new();
                    bytes.reserve_exact(size as usize);
                    self.content(files, total, String::from(name), size, bytes)
                }
                BundleMsg::End => {
                    let got = self.files.len() as u32;
                    if got != files {
                        return Err(BundleError::CountMismatch {
                            declared: files,
                            got,
                        });
                    }
                    if self.received != total {
                        return Err(BundleError::SizeMismatch {
                            declared: total,
                            got: self.received,
                        });
                    }
                    self.manifest = Some(validate(&self.files)?);
                    self.state = State::Done;
                    Ok(Progress::Finished)
                }
                BundleMsg::Begin { .. } => {
                    Err(BundleError::UnexpectedMessage("Begin inside a bundle"))
                }
            },
            State::Content {
                files,
                total,
                name,
                size,
                mut bytes,
            } => {
                let expected = (size - bytes.len() as u64).min(MAX_CHUNK as u64);
                if m.len() as u64 != expected {
                    return Err(BundleError::ChunkSize {
                        expected,
                        got: m.len() as u64,
                    });
                }
                bytes.extend_from_slice(m);
                self.content(files, total, name, size, bytes)
            }
        }
    }

    /// After a file's header or a piece of its contents: the file is complete or more
    /// contents come next.
    fn content(
        &mut self,
        files: u32,
        total: u64,
        name: String,
        size: u64,
        bytes: Vec<u8>,
    ) -> Result<Progress, BundleError> {
        if (bytes.len() as u64) < size {
            self.state = State::Content {
                files,
                total,
                name,
                size,
                bytes,
            };
            return Ok(Progress::Receiving);
        }
        self.received += size;
        let sha256: [u8; 32] = Sha256::digest(&bytes).into();
        self.files.push(BundleFile {
            name,
            sha256,
            bytes,
        });
        self.state = State::Header { files, total };
        Ok(Progress::File(self.files.len() - 1))
    }
}

fn header(m: &[u8]) -> Result<BundleMsg<'_>, BundleError> {
    decode_exact(m).map_err(|_| BundleError::BadMessage)
}
