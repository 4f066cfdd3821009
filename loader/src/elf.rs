//! A minimal, bounds-checked ELF64 reader for the kernel image: just the header and the
//! PT_LOAD program headers. The kernel sits in the measured ROM, but the loader still
//! treats it as bytes to check: a corrupt image must stop with a clear message.

/// Page size the kernel segments are aligned to.
pub const PAGE: u64 = 4096;

pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;
const PT_LOAD: u32 = 1;
const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
/// More program headers than this is not a kernel we built.
pub const MAX_PHDRS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    TooShort,
    BadMagic,
    NotElf64LittleEndian,
    NotX86_64Executable,
    BadProgramHeaders,
    SegmentOutsideFile { index: usize },
    SegmentBadSize { index: usize },
    SegmentNotAligned { index: usize },
    SegmentOutsideKernelRange { index: usize },
    WritableAndExecutable { index: usize },
    SegmentsOverlap { index: usize },
    EntryNotExecutable,
    NoLoadSegments,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::TooShort => write!(f, "file shorter than an ELF header"),
            ElfError::BadMagic => write!(f, "no ELF magic"),
            ElfError::NotElf64LittleEndian => write!(f, "not a little-endian ELF64 file"),
            ElfError::NotX86_64Executable => write!(f, "not an x86_64 executable (ET_EXEC)"),
            ElfError::BadProgramHeaders => {
                write!(f, "program header table malformed or outside the file")
            }
            ElfError::SegmentOutsideFile { index } => {
                write!(f, "segment {index}: file bytes outside the file")
            }
            ElfError::SegmentBadSize { index } => write!(
                f,
                "segment {index}: file size exceeds memory size, or size overflows"
            ),
            ElfError::SegmentNotAligned { index } => write!(f, "segment {index}: not page aligned"),
            ElfError::SegmentOutsideKernelRange { index } => {
                write!(f, "segment {index}: outside the kernel's virtual range")
            }
            ElfError::WritableAndExecutable { index } => {
                write!(f, "segment {index}: writable and executable (W^X)")
            }
            ElfError::SegmentsOverlap { index } => {
                write!(f, "segment {index}: overlaps an earlier segment")
            }
            ElfError::EntryNotExecutable => {
                write!(f, "entry point is not in an executable segment")
            }
            ElfError::NoLoadSegments => write!(f, "no loadable segments"),
        }
    }
}

/// A loadable segment, already checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub file_offset: usize,
    pub file_len: usize,
    pub mem_len: u64,
    pub flags: u32,
}

impl Segment {
    pub fn writable(&self) -> bool {
        self.flags & PF_W != 0
    }
    pub fn executable(&self) -> bool {
        self.flags & PF_X != 0
    }
    /// One past the last mapped byte, rounded up to a page.
    pub fn vend_page(&self) -> u64 {
        (self.vaddr + self.mem_len).div_ceil(PAGE) * PAGE
    }
}

/// A checked kernel ELF.
#[derive(Debug, Clone)]
pub struct Kernel<'a> {
    pub bytes: &'a [u8],
    pub entry: u64,
    segments: [Option<Segment>; MAX_PHDRS],
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl<'a> Kernel<'a> {
    /// Parses and checks `bytes`; every segment must lie in `[vmin, vmax)`, page aligned,
    /// not both writable and executable, and not overlap another.
    pub fn parse(bytes: &'a [u8], vmin: u64, vmax: u64) -> Result<Self, ElfError> {
        if bytes.len() < EHDR_LEN {
            return Err(ElfError::TooShort);
        }
        if bytes[..4] != *b"\x7fELF" {
            return Err(ElfError::BadMagic);
        }
        if bytes[4] != 2 || bytes[5] != 1 || bytes[6] != 1 {
            return Err(ElfError::NotElf64LittleEndian);
        }
        if u16_at(bytes, 16) != 2 || u16_at(bytes, 18) != 0x3e {
            return Err(ElfError::NotX86_64Executable);
        }
        let entry = u64_at(bytes, 24);
        let phoff = u64_at(bytes, 32);
        let phentsize = usize::from(u16_at(bytes, 54));
        let phnum = usize::from(u16_at(bytes, 56));
        if phentsize != PHDR_LEN || phnum == 0 || phnum > MAX_PHDRS {
            return Err(ElfError::BadProgramHeaders);
        }
        let phoff = usize::try_from(phoff).map_err(|_| ElfError::BadProgramHeaders)?;
        let table_end = phoff
            .checked_add(phnum * PHDR_LEN)
            .ok_or(ElfError::BadProgramHeaders)?;
        if table_end > bytes.len() {
            return Err(ElfError::BadProgramHeaders);
        }
        let mut segments = [None; MAX_PHDRS];
        let mut count = 0;
        for index in 0..phnum {
            let ph = &bytes[phoff + index * PHDR_LEN..phoff + (index + 1) * PHDR_LEN];
            if u32_at(ph, 0) != PT_LOAD {
                continue;
            }
            let flags = u32_at(ph, 4);
            let offset = u64_at(ph, 8);
            let vaddr = u64_at(ph, 16);
            let filesz = u64_at(ph, 32);
            let memsz = u64_at(ph, 40);
            if memsz == 0 {
                continue;
            }
            let file_end = offset
                .checked_add(filesz)
                .ok_or(ElfError::SegmentOutsideFile { index })?;
            if file_end > bytes.len() as u64 {
                return Err(ElfError::SegmentOutsideFile { index });
            }
            if filesz > memsz {
                return Err(ElfError::SegmentBadSize { index });
            }
            let vend = vaddr
                .checked_add(memsz)
                .ok_or(ElfError::SegmentBadSize { index })?;
            if !vaddr.is_multiple_of(PAGE) || offset % PAGE != vaddr % PAGE {
                return Err(ElfError::SegmentNotAligned { index });
            }
            if vaddr < vmin || vend > vmax {
                return Err(ElfError::SegmentOutsideKernelRange { index });
            }
            // SECURITY: W^X; a segment that is both would let a memory bug become code.
            if flags & PF_W != 0 && flags & PF_X != 0 {
                return Err(ElfError::WritableAndExecutable { index });
            }
            let seg = Segment {
                vaddr,
                file_offset: offset as usize,
                file_len: filesz as usize,
                mem_len: memsz,
                flags,
            };
            for other in segments.iter().flatten() {
                let o: &Segment = other;
                if seg.vaddr < o.vend_page() && o.vaddr < seg.vend_page() {
                    return Err(ElfError::SegmentsOverlap { index });
                }
            }
            segments[count] = Some(seg);
            count += 1;
        }
        if count == 0 {
            return Err(ElfError::NoLoadSegments);
        }
        let kernel = Kernel {
            bytes,
            entry,
            segments,
        };
        if !kernel
            .segments()
            .any(|s| s.executable() && s.vaddr <= entry && entry < s.vaddr + s.mem_len)
        {
            return Err(ElfError::EntryNotExecutable);
        }
        Ok(kernel)
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().flatten()
    }

    /// The file bytes of `seg`.
    pub fn data(&self, seg: &Segment) -> &'a [u8] {
        &self.bytes[seg.file_offset..seg.file_offset + seg.file_len]
    }

    /// One past the highest mapped virtual address, page aligned.
    pub fn vend(&self) -> u64 {
        self.segments().map(Segment::vend_page).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    const BASE: u64 = 0xffff_ffff_8100_0000;

    /// Builds an ELF with the given (flags, vaddr, filesz, memsz) segments.
    fn elf(entry: u64, segs: &[(u32, u64, u64, u64)]) -> Vec<u8> {
        let mut b = std::vec![0u8; 0x1000];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&0x3eu16.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        let mut data_off = 0x1000u64;
        for (i, &(flags, vaddr, filesz, memsz)) in segs.iter().enumerate() {
            let ph = 64 + i * 56;
            b[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
            b[ph + 4..ph + 8].copy_from_slice(&flags.to_le_bytes());
            b[ph + 8..ph + 16].copy_from_slice(&data_off.to_le_bytes());
            b[ph + 16..ph + 24].copy_from_slice(&vaddr.to_le_bytes());
            b[ph + 32..ph + 40].copy_from_slice(&filesz.to_le_bytes());
            b[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
            b.resize(
                b.len() + filesz.div_ceil(PAGE) as usize * PAGE as usize,
                0xcc,
            );
            data_off += filesz.div_ceil(PAGE) * PAGE;
        }
        b
    }

    fn parse(b: &[u8]) -> Result<Kernel<'_>, ElfError> {
        Kernel::parse(b, BASE, BASE + 0x100_0000)
    }

    #[test]
    fn accepts_a_w_xor_x_kernel() {
        let b = elf(
            BASE,
            &[
                (PF_R | PF_X, BASE, 0x1800, 0x1800),
                (PF_R | PF_W, BASE + 0x2000, 0x100, 0x3000),
            ],
        );
        let k = parse(&b).unwrap();
        assert_eq!(k.segments().count(), 2);
        assert_eq!(k.vend(), BASE + 0x5000);
        assert_eq!(k.data(k.segments().next().unwrap()).len(), 0x1800);
    }

    #[test]
    fn rejects_what_it_must() {
        let ok = elf(BASE, &[(PF_R | PF_X, BASE, 0x100, 0x100)]);
        let mut b = ok.clone();
        b[0] = 0;
        assert_eq!(parse(&b).unwrap_err(), ElfError::BadMagic);
        assert_eq!(parse(&ok[..10]).unwrap_err(), ElfError::TooShort);
        let mut b = ok.clone();
        b[18] = 0x28; // ARM
        assert_eq!(parse(&b).unwrap_err(), ElfError::NotX86_64Executable);
        let rwx = elf(BASE, &[(PF_R | PF_W | PF_X, BASE, 0x100, 0x100)]);
        assert_eq!(
            parse(&rwx).unwrap_err(),
            ElfError::WritableAndExecutable { index: 0 }
        );
        let outside = elf(BASE, &[(PF_R | PF_X, BASE - 0x1000, 0x100, 0x100)]);
        assert_eq!(
            parse(&outside).unwrap_err(),
            ElfError::SegmentOutsideKernelRange { index: 0 }
        );
        let unaligned = elf(BASE + 8, &[(PF_R | PF_X, BASE + 8, 0x100, 0x100)]);
        assert_eq!(
            parse(&unaligned).unwrap_err(),
            ElfError::SegmentNotAligned { index: 0 }
        );
        let fat = elf(BASE, &[(PF_R | PF_X, BASE, 0x200, 0x100)]);
        assert_eq!(
            parse(&fat).unwrap_err(),
            ElfError::SegmentBadSize { index: 0 }
        );
        let overlap = elf(
            BASE,
            &[
                (PF_R | PF_X, BASE, 0x100, 0x100),
                (PF_R, BASE, 0x100, 0x100),
            ],
        );
        assert_eq!(
            parse(&overlap).unwrap_err(),
            ElfError::SegmentsOverlap { index: 1 }
        );
        let bad_entry = elf(BASE + 0x2000, &[(PF_R | PF_X, BASE, 0x100, 0x100)]);
        assert_eq!(parse(&bad_entry).unwrap_err(), ElfError::EntryNotExecutable);
        let mut b = ok.clone();
        b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse(&b).unwrap_err(), ElfError::BadProgramHeaders);
        let mut b = ok.clone();
        b[64 + 8..64 + 16].copy_from_slice(&(u64::MAX - 4).to_le_bytes());
        assert_eq!(
            parse(&b).unwrap_err(),
            ElfError::SegmentOutsideFile { index: 0 }
        );
    }

    #[test]
    fn corrupted_headers_never_panic() {
        let ok = elf(
            BASE,
            &[
                (PF_R | PF_X, BASE, 0x1800, 0x1800),
                (PF_R | PF_W, BASE + 0x2000, 0x100, 0x3000),
            ],
        );
        let mut seed = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            let mut b = ok.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % 200) as usize;
                b[at] = (seed >> 32) as u8;
            }
            if let Ok(k) = parse(&b) {
                for s in k.segments() {
                    assert!(s.vaddr >= BASE && s.vaddr + s.mem_len <= BASE + 0x100_0000);
                    let _ = k.data(s);
                }
            }
        }
    }
}
