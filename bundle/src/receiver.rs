//! Receiving the agent bundle from the host: `Begin`, then per file a `File` header and its
//! contents, then `End` (see docs/wire.md). Everything is bounded and every file is hashed
//! on arrival; nothing from the bundle is used before its digest is known and logged.

use alloc::string::String;
use alloc::vec::Vec;

use omega_wire::msg::{self, BundleMsg};
use sha2::{Digest, Sha256};

/// SECURITY: bounds on what the host may make the monitor hold.
pub const MAX_FILES: u32 = 64;
pub const MAX_TOTAL: u64 = 32 << 20;
pub const MAX_NAME: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    pub name: String,
    pub sha256: [u8; 32],
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleError {
    BadMessage,
    UnexpectedMessage(&'static str),
    TooManyFiles(u32),
    TooLarge(u64),
    BadName,
    DuplicateName,
    SizeMismatch { declared: u64, got: u64 },
    CountMismatch { declared: u32, got: u32 },
}

impl core::fmt::Display for BundleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BundleError::BadMessage => write!(f, "malformed bundle message"),
            BundleError::UnexpectedMessage(what) => write!(f, "unexpected bundle message: {what}"),
            BundleError::TooManyFiles(n) => write!(f, "{n} files (limit {MAX_FILES})"),
            BundleError::TooLarge(n) => write!(f, "{n} bytes (limit {MAX_TOTAL})"),
            BundleError::BadName => write!(
                f,
                "file name must be 1..={MAX_NAME} of [A-Za-z0-9._-], not starting with '.'"
            ),
            BundleError::DuplicateName => write!(f, "two files with one name"),
            BundleError::SizeMismatch { declared, got } => {
                write!(f, "file declared {declared} bytes, sent {got}")
            }
            BundleError::CountMismatch { declared, got } => {
                write!(f, "bundle declared {declared} files, sent {got}")
            }
        }
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
    /// A file's header; its contents come next.
    FileHeader,
    /// A file arrived complete (index into [`BundleReceiver::files`]).
    File(usize),
    Finished,
}

#[derive(Debug, Default)]
pub struct BundleReceiver {
    state: State,
    pub files: Vec<BundleFile>,
    received: u64,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME
        && !n.starts_with('.')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl BundleReceiver {
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Feeds one reassembled Bundle-stream message. On error the bundle is abandoned
    /// (state reset), so a later `Begin` starts over cleanly.
    pub fn on_message(&mut self, m: &[u8]) -> Result<Progress, BundleError> {
        let r = self.step(m);
        if r.is_err() {
            *self = BundleReceiver::default();
        }
        r
    }

    fn step(&mut self, m: &[u8]) -> Result<Progress, BundleError> {
        match core::mem::take(&mut self.state) {
            State::Idle | State::Done => {
                match msg::decode_exact::<BundleMsg<'_>>(m).map_err(|_| BundleError::BadMessage)? {
                    BundleMsg::Begin { files, total_bytes } => {
                        if files > MAX_FILES {
                            return Err(BundleError::TooManyFiles(files));
                        }
                        if total_bytes > MAX_TOTAL {
                            return Err(BundleError::TooLarge(total_bytes));
                        }
                        self.files.clear();
                        self.received = 0;
                        self.state = State::Header {
                            files,
                            total: total_bytes,
                        };
                        Ok(Progress::Started { files, total_bytes })
                    }
                    _ => Err(BundleError::UnexpectedMessage("expected Begin")),
                }
            }
            State::Header { files, total } => {
                match msg::decode_exact::<BundleMsg<'_>>(m).map_err(|_| BundleError::BadMessage)? {
                    BundleMsg::File { name, size } => {
                        if !valid_name(name) {
                            return Err(BundleError::BadName);
                        }
                        if self.files.iter().any(|f| f.name == name) {
                            return Err(BundleError::DuplicateName);
                        }
                        if self.files.len() as u32 >= files {
                            return Err(BundleError::CountMismatch {
                                declared: files,
                                got: self.files.len() as u32 + 1,
                            });
                        }
                        let after = self
                            .received
                            .checked_add(size)
                            .ok_or(BundleError::TooLarge(u64::MAX))?;
                        if after > total {
                            return Err(BundleError::TooLarge(after));
                        }
                        self.state = State::Content {
                            files,
                            total,
                            name: String::from(name),
                            size,
                        };
                        Ok(Progress::FileHeader)
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
                        self.state = State::Done;
                        Ok(Progress::Finished)
                    }
                    BundleMsg::Begin { .. } => {
                        Err(BundleError::UnexpectedMessage("Begin inside a bundle"))
                    }
                }
            }
            State::Content {
                files,
                total,
                name,
                size,
            } => {
                if m.len() as u64 != size {
                    return Err(BundleError::SizeMismatch {
                        declared: size,
                        got: m.len() as u64,
                    });
                }
                self.received += size;
                let sha256: [u8; 32] = Sha256::digest(m).into();
                self.files.push(BundleFile {
                    name,
                    sha256,
                    bytes: m.to_vec(),
                });
                self.state = State::Header { files, total };
                Ok(Progress::File(self.files.len() - 1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(m: &BundleMsg<'_>) -> Vec<u8> {
        let mut buf = [0u8; 256];
        msg::encode(m, &mut buf).unwrap().to_vec()
    }

    #[test]
    fn receives_and_hashes() {
        let mut r = BundleReceiver::default();
        assert_eq!(
            r.on_message(&enc(&BundleMsg::Begin {
                files: 2,
                total_bytes: 8
            })),
            Ok(Progress::Started {
                files: 2,
                total_bytes: 8
            })
        );
        r.on_message(&enc(&BundleMsg::File {
            name: "agent.wasm",
            size: 5,
        }))
        .unwrap();
        assert_eq!(r.on_message(b"hello"), Ok(Progress::File(0)));
        r.on_message(&enc(&BundleMsg::File {
            name: "policy.bin",
            size: 3,
        }))
        .unwrap();
        assert_eq!(r.on_message(b"abc"), Ok(Progress::File(1)));
        assert_eq!(r.on_message(&enc(&BundleMsg::End)), Ok(Progress::Finished));
        assert!(r.is_done());
        // SHA-256("hello")
        assert_eq!(r.files[0].sha256[..4], [0x2c, 0xf2, 0x4d, 0xba]);
        assert_eq!(r.files[1].bytes, b"abc");
    }

    #[test]
    fn refuses_hostile_bundles() {
        let begin = |files, total| {
            enc(&BundleMsg::Begin {
                files,
                total_bytes: total,
            })
        };
        let mut r = BundleReceiver::default();
        assert_eq!(
            r.on_message(&begin(MAX_FILES + 1, 0)),
            Err(BundleError::TooManyFiles(MAX_FILES + 1))
        );
        assert_eq!(
            r.on_message(&begin(1, MAX_TOTAL + 1)),
            Err(BundleError::TooLarge(MAX_TOTAL + 1))
        );
        assert_eq!(r.on_message(b"\xff\xff"), Err(BundleError::BadMessage));
        for bad in ["../etc", "", ".hidden", "a/b", "x y"] {
            r.on_message(&begin(1, 4)).unwrap();
            assert_eq!(
                r.on_message(&enc(&BundleMsg::File { name: bad, size: 1 })),
                Err(BundleError::BadName),
                "{bad:?}"
            );
        }
        r.on_message(&begin(1, 4)).unwrap();
        r.on_message(&enc(&BundleMsg::File { name: "a", size: 4 }))
            .unwrap();
        assert_eq!(
            r.on_message(b"abc"),
            Err(BundleError::SizeMismatch {
                declared: 4,
                got: 3
            })
        );
        r.on_message(&begin(1, 4)).unwrap();
        assert!(matches!(
            r.on_message(&enc(&BundleMsg::File { name: "a", size: 5 })),
            Err(BundleError::TooLarge(5))
        ));
        r.on_message(&begin(2, 2)).unwrap();
        r.on_message(&enc(&BundleMsg::File { name: "a", size: 1 }))
            .unwrap();
        r.on_message(b"x").unwrap();
        assert_eq!(
            r.on_message(&enc(&BundleMsg::File { name: "a", size: 1 })),
            Err(BundleError::DuplicateName)
        );
        r.on_message(&begin(2, 1)).unwrap();
        r.on_message(&enc(&BundleMsg::File { name: "a", size: 1 }))
            .unwrap();
        r.on_message(b"x").unwrap();
        assert_eq!(
            r.on_message(&enc(&BundleMsg::End)),
            Err(BundleError::CountMismatch {
                declared: 2,
                got: 1
            })
        );
        assert_eq!(
            r.on_message(&enc(&BundleMsg::End)),
            Err(BundleError::UnexpectedMessage("expected Begin"))
        );
    }
}
