//! QEMU's fw_cfg interface: the signature, the file directory, and the `etc/e820` memory
//! map. The host writes all of this, so every count and size is bounded before use.

use omega_boot_info::{E820Entry, MAX_E820};

pub const SELECTOR_PORT: u16 = 0x510;
pub const DATA_PORT: u16 = 0x511;
const KEY_SIGNATURE: u16 = 0x0000;
const KEY_FILE_DIR: u16 = 0x0019;
const FILE_ENTRY_LEN: usize = 64;
const FILE_NAME_LEN: usize = 56;
const E820_ENTRY_LEN: usize = 20;
/// SECURITY: a hostile host could claim billions of files; looking through more than this
/// many is refused (QEMU uses a few dozen).
pub const MAX_FILES: u32 = 1024;

/// Access to the fw_cfg device: the loader uses I/O ports, the tests a byte vector.
pub trait FwCfgIo {
    fn select(&mut self, key: u16);
    fn read(&mut self, buf: &mut [u8]);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FwCfgError {
    NoDevice,
    TooManyFiles(u32),
    NotFound,
    BadE820Size(u32),
    TooManyE820Entries(u32),
    FileTooLarge { size: u32, max: usize },
}

impl core::fmt::Display for FwCfgError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FwCfgError::NoDevice => write!(f, "no fw_cfg device (signature is not \"QEMU\")"),
            FwCfgError::TooManyFiles(n) => write!(f, "fw_cfg claims {n} files (limit {MAX_FILES})"),
            FwCfgError::NotFound => write!(f, "file not found"),
            FwCfgError::BadE820Size(n) => write!(f, "etc/e820 size {n} is not a multiple of 20"),
            FwCfgError::TooManyE820Entries(n) => {
                write!(f, "etc/e820 has {n} entries (limit {MAX_E820})")
            }
            FwCfgError::FileTooLarge { size, max } => {
                write!(f, "file of {size} bytes exceeds {max}")
            }
        }
    }
}

/// Checks the "QEMU" signature.
pub fn probe(io: &mut impl FwCfgIo) -> Result<(), FwCfgError> {
    let mut sig = [0u8; 4];
    io.select(KEY_SIGNATURE);
    io.read(&mut sig);
    if &sig == b"QEMU" {
        Ok(())
    } else {
        Err(FwCfgError::NoDevice)
    }
}

/// Finds a file by name: its selector key and size.
pub fn find_file(io: &mut impl FwCfgIo, name: &str) -> Result<(u16, u32), FwCfgError> {
    let mut count = [0u8; 4];
    io.select(KEY_FILE_DIR);
    io.read(&mut count);
    let count = u32::from_be_bytes(count);
    if count > MAX_FILES {
        return Err(FwCfgError::TooManyFiles(count));
    }
    let want = name.as_bytes();
    for _ in 0..count {
        let mut e = [0u8; FILE_ENTRY_LEN];
        io.read(&mut e);
        let size = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let key = u16::from_be_bytes([e[4], e[5]]);
        let raw = &e[8..8 + FILE_NAME_LEN];
        let len = raw.iter().position(|&c| c == 0).unwrap_or(FILE_NAME_LEN);
        if &raw[..len] == want {
            return Ok((key, size));
        }
    }
    Err(FwCfgError::NotFound)
}

/// Reads a whole file into `buf`, which must be large enough; returns its length.
pub fn read_file(io: &mut impl FwCfgIo, name: &str, buf: &mut [u8]) -> Result<usize, FwCfgError> {
    let (key, size) = find_file(io, name)?;
    let len = size as usize;
    if len > buf.len() {
        return Err(FwCfgError::FileTooLarge {
            size,
            max: buf.len(),
        });
    }
    io.select(key);
    io.read(&mut buf[..len]);
    Ok(len)
}

/// Reads `etc/e820` into `out`; returns the number of entries.
pub fn read_e820(
    io: &mut impl FwCfgIo,
    out: &mut [E820Entry; MAX_E820],
) -> Result<usize, FwCfgError> {
    let (key, size) = find_file(io, "etc/e820")?;
    if !(size as usize).is_multiple_of(E820_ENTRY_LEN) {
        return Err(FwCfgError::BadE820Size(size));
    }
    let n = size / E820_ENTRY_LEN as u32;
    if n as usize > MAX_E820 {
        return Err(FwCfgError::TooManyE820Entries(n));
    }
    io.select(key);
    for slot in out.iter_mut().take(n as usize) {
        let mut e = [0u8; E820_ENTRY_LEN];
        io.read(&mut e);
        *slot = E820Entry {
            addr: u64::from_le_bytes(e[0..8].try_into().unwrap()),
            len: u64::from_le_bytes(e[8..16].try_into().unwrap()),
            kind: u32::from_le_bytes(e[16..20].try_into().unwrap()),
            _pad: 0,
        };
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A fw_cfg device with some files, byte for byte as QEMU lays them out.
    struct Fake {
        items: Vec<(u16, Vec<u8>)>,
        cur: Vec<u8>,
        pos: usize,
    }

    impl Fake {
        fn new(files: &[(&str, Vec<u8>)], claimed: Option<u32>) -> Fake {
            let mut dir = Vec::new();
            dir.extend_from_slice(&claimed.unwrap_or(files.len() as u32).to_be_bytes());
            let mut items = std::vec![(0u16, b"QEMU".to_vec())];
            for (i, (name, data)) in files.iter().enumerate() {
                let key = 0x20 + i as u16;
                dir.extend_from_slice(&(data.len() as u32).to_be_bytes());
                dir.extend_from_slice(&key.to_be_bytes());
                dir.extend_from_slice(&[0, 0]);
                let mut n = [0u8; 56];
                n[..name.len()].copy_from_slice(name.as_bytes());
                dir.extend_from_slice(&n);
                items.push((key, data.clone()));
            }
            items.push((0x19, dir));
            Fake {
                items,
                cur: Vec::new(),
                pos: 0,
            }
        }
    }

    impl FwCfgIo for Fake {
        fn select(&mut self, key: u16) {
            self.cur = self
                .items
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, d)| d.clone())
                .unwrap_or_default();
            self.pos = 0;
        }
        fn read(&mut self, buf: &mut [u8]) {
            for b in buf {
                // Past the end, QEMU returns zeros.
                *b = self.cur.get(self.pos).copied().unwrap_or(0);
                self.pos += 1;
            }
        }
    }

    fn e820_bytes(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut v = Vec::new();
        for &(a, l, k) in entries {
            v.extend_from_slice(&a.to_le_bytes());
            v.extend_from_slice(&l.to_le_bytes());
            v.extend_from_slice(&k.to_le_bytes());
        }
        v
    }

    #[test]
    fn reads_e820_and_files() {
        let mut io = Fake::new(
            &[
                ("etc/boot-fail-wait", std::vec![0; 4]),
                (
                    "etc/e820",
                    e820_bytes(&[(0, 0x9fc00, 1), (0x100000, 0x7f00000, 1)]),
                ),
                ("opt/omega/cmdline", b"test=heap".to_vec()),
            ],
            None,
        );
        probe(&mut io).unwrap();
        let mut out = [E820Entry::default(); MAX_E820];
        assert_eq!(read_e820(&mut io, &mut out).unwrap(), 2);
        assert_eq!(
            out[1],
            E820Entry {
                addr: 0x100000,
                len: 0x7f00000,
                kind: 1,
                _pad: 0
            }
        );
        let mut buf = [0u8; 16];
        assert_eq!(
            read_file(&mut io, "opt/omega/cmdline", &mut buf).unwrap(),
            9
        );
        assert_eq!(&buf[..9], b"test=heap");
        assert_eq!(
            read_file(&mut io, "etc/nothing", &mut buf),
            Err(FwCfgError::NotFound)
        );
        let mut small = [0u8; 4];
        assert!(matches!(
            read_file(&mut io, "opt/omega/cmdline", &mut small),
            Err(FwCfgError::FileTooLarge { .. })
        ));
    }

    #[test]
    fn rejects_hostile_sizes() {
        let mut out = [E820Entry::default(); MAX_E820];
        let mut io = Fake::new(&[("etc/e820", std::vec![0; 21])], None);
        assert_eq!(
            read_e820(&mut io, &mut out),
            Err(FwCfgError::BadE820Size(21))
        );
        let mut io = Fake::new(&[("etc/e820", std::vec![0; 20 * (MAX_E820 + 1)])], None);
        assert_eq!(
            read_e820(&mut io, &mut out),
            Err(FwCfgError::TooManyE820Entries(MAX_E820 as u32 + 1))
        );
        let mut io = Fake::new(&[], Some(u32::MAX));
        assert_eq!(
            read_e820(&mut io, &mut out),
            Err(FwCfgError::TooManyFiles(u32::MAX))
        );
        let mut io = Fake::new(&[], None);
        io.items[0].1 = b"XXXX".to_vec();
        assert_eq!(probe(&mut io), Err(FwCfgError::NoDevice));
    }
}
