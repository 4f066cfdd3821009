//! The OVMF-compatible GUID table at the end of a firmware image, and the SEV metadata
//! ("ASEV") it points to.
//!
//! Layout, from the end of the image backwards:
//!
//! ```text
//! size-0x10 .. size        reset vector (16 bytes, executed at 0xFFFF_FFF0)
//! size-0x20 .. size-0x10   padding
//! size-0x30 .. size-0x20   footer GUID 96b582de-1fb2-45f7-baea-a366c55a082d
//! size-0x32 .. size-0x30   u16: length of the whole table, footer entry included
//! below that               entries, each laid out as [data][u16 length][GUID],
//!                          length counting data + 18 header bytes, packed backwards
//! ```
//!
//! The parser takes the image as untrusted bytes: every length and offset is checked and
//! every error names the offset where parsing stopped. It does not allocate, so the
//! loader uses the same code on its own ROM.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod guid;
pub use guid::Guid;

/// Footer GUID that marks the table; at `size - 0x30`.
pub const FOOTER_GUID: Guid = Guid::parse("96b582de-1fb2-45f7-baea-a366c55a082d");
/// SEV metadata entry: a u32 offset of the "ASEV" header, counted from the end of the image.
pub const SEV_METADATA_GUID: Guid = Guid::parse("dc886566-984a-4798-a75e-5585a7bf67cc");
/// SEV-ES reset block: a u32 guest-physical address where application processors start.
pub const SEV_ES_RESET_BLOCK_GUID: Guid = Guid::parse("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
/// SEV hash table (kernel hashes, QEMU `kernel-hashes=on`): u32 gpa, u32 size.
pub const SEV_HASH_TABLE_RV_GUID: Guid = Guid::parse("7255371f-3a3b-4b04-927b-1da6efa8d454");
/// Omega's own entry: where the kernel ELF lies in the image (see [`KernelEntry`]).
pub const OMEGA_KERNEL_GUID: Guid = Guid::parse("4f6d6567-612d-4b65-726e-656c2d454c46");

/// Bytes between the end of the table and the end of the image.
pub const TABLE_END_FROM_IMAGE_END: usize = 0x20;
/// Size of an entry header (u16 length + GUID).
pub const ENTRY_HEADER_LEN: usize = 18;
/// "ASEV"
pub const SEV_METADATA_SIGNATURE: [u8; 4] = *b"ASEV";
/// Header length of the SEV metadata: signature, length, version, item count.
pub const SEV_METADATA_HEADER_LEN: usize = 16;
/// Length of one SEV metadata section descriptor: gpa, size, type.
pub const SEV_METADATA_SECTION_LEN: usize = 12;

/// Why an image's footer could not be read. Offsets are from the start of the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("image of {len} bytes is too small to hold a footer table")]
    TooSmall { len: usize },
    #[error("no footer GUID at offset {offset:#x} (not an OVMF-compatible image)")]
    NoFooter { offset: usize },
    #[error("footer at offset {offset:#x} declares a table of {len} bytes, which does not fit")]
    BadTableLength { offset: usize, len: usize },
    #[error("table entry ending at offset {offset:#x} declares length {len}, outside 18..={max}")]
    BadEntryLength {
        offset: usize,
        len: usize,
        max: usize,
    },
    #[error(
        "entry {guid} at offset {offset:#x} has {len} data bytes, expected at least {expected}"
    )]
    ShortEntry {
        guid: Guid,
        offset: usize,
        len: usize,
        expected: usize,
    },
    #[error("no {0} entry in the footer table")]
    MissingEntry(Guid),
    #[error("SEV metadata offset {from_end:#x} (from end) lies outside the {len}-byte image")]
    MetadataOutside { from_end: u32, len: usize },
    #[error("no \"ASEV\" signature at offset {offset:#x}")]
    BadMetadataSignature { offset: usize },
    #[error("SEV metadata at offset {offset:#x}: version {version} is not 1")]
    BadMetadataVersion { offset: usize, version: u32 },
    #[error(
        "SEV metadata at offset {offset:#x}: length {len} does not match {items} sections or leaves the image"
    )]
    BadMetadataLength { offset: usize, len: u32, items: u32 },
    #[error("SEV metadata section at offset {offset:#x}: unknown section type {kind:#x}")]
    UnknownSectionType { offset: usize, kind: u32 },
    #[error(
        "SEV metadata section at offset {offset:#x}: gpa {gpa:#x} + size {size:#x} overflows 4 GiB"
    )]
    SectionOverflow { offset: usize, gpa: u32, size: u32 },
    #[error(
        "kernel entry at offset {offset:#x}: kernel at offset {kernel_offset:#x}, {len} bytes, overlaps the table or leaves the image"
    )]
    KernelOutside {
        offset: usize,
        kernel_offset: u32,
        len: u32,
    },
    #[error(
        "kernel entry at offset {offset:#x} declares an image of {declared} bytes, but it is {len} bytes"
    )]
    ImageSizeMismatch {
        offset: usize,
        declared: u32,
        len: usize,
    },
}

/// One entry of the footer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub guid: Guid,
    pub data: &'a [u8],
    /// Offset of `data` in the image.
    pub offset: usize,
}

/// The parsed footer table of an image: a view, no copies.
#[derive(Debug, Clone, Copy)]
pub struct GuidTable<'a> {
    image_len: usize,
    /// Offset in the image of the first byte of the table (lowest entry).
    start: usize,
    /// The table, footer entry excluded.
    bytes: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> GuidTable<'a> {
    /// Finds and checks the footer table at the end of `image`.
    pub fn parse(image: &'a [u8]) -> Result<Self, LayoutError> {
        let len = image.len();
        let footer_end = len
            .checked_sub(TABLE_END_FROM_IMAGE_END)
            .filter(|&e| e >= ENTRY_HEADER_LEN)
            .ok_or(LayoutError::TooSmall { len })?;
        let footer_start = footer_end - ENTRY_HEADER_LEN;
        let guid = Guid::from_bytes_le(&image[footer_start + 2..footer_end]);
        if guid != FOOTER_GUID {
            return Err(LayoutError::NoFooter {
                offset: footer_start + 2,
            });
        }
        let table_len = usize::from(u16_at(image, footer_start));
        let body_len = table_len
            .checked_sub(ENTRY_HEADER_LEN)
            .filter(|&b| b <= footer_start)
            .ok_or(LayoutError::BadTableLength {
                offset: footer_start,
                len: table_len,
            })?;
        let start = footer_start - body_len;
        let table = GuidTable {
            image_len: len,
            start,
            bytes: &image[start..footer_start],
        };
        // Walk once so that every later lookup sees a well-formed table.
        for entry in table.entries() {
            entry?;
        }
        Ok(table)
    }

    /// The entries, last (highest) first, as they are laid out.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            bytes: self.bytes,
            base: self.start,
        }
    }

    /// The first entry with `guid`.
    pub fn find(&self, guid: Guid) -> Option<Entry<'a>> {
        self.entries()
            .filter_map(Result::ok)
            .find(|e| e.guid == guid)
    }

    /// The data of `guid`'s entry, at least `min_len` bytes long.
    pub fn require(&self, guid: Guid, min_len: usize) -> Result<Entry<'a>, LayoutError> {
        let entry = self.find(guid).ok_or(LayoutError::MissingEntry(guid))?;
        if entry.data.len() < min_len {
            return Err(LayoutError::ShortEntry {
                guid,
                offset: entry.offset,
                len: entry.data.len(),
                expected: min_len,
            });
        }
        Ok(entry)
    }

    /// Length of the image the table was read from.
    pub fn image_len(&self) -> usize {
        self.image_len
    }

    /// The SEV-ES reset block: where application processors start, if present.
    pub fn sev_es_reset_eip(&self) -> Result<u32, LayoutError> {
        let entry = self.require(SEV_ES_RESET_BLOCK_GUID, 4)?;
        Ok(u32_at(entry.data, 0))
    }

    /// The SEV hash table entry (QEMU `kernel-hashes=on`): its guest-physical address and
    /// size, or `None` if the image has no such entry.
    pub fn sev_hash_table(&self) -> Result<Option<(u32, u32)>, LayoutError> {
        if self.find(SEV_HASH_TABLE_RV_GUID).is_none() {
            return Ok(None);
        }
        let entry = self.require(SEV_HASH_TABLE_RV_GUID, 8)?;
        Ok(Some((u32_at(entry.data, 0), u32_at(entry.data, 4))))
    }

    /// The SEV metadata ("ASEV") the table points to.
    pub fn sev_metadata(&self, image: &'a [u8]) -> Result<SevMetadata<'a>, LayoutError> {
        let entry = self.require(SEV_METADATA_GUID, 4)?;
        let from_end = u32_at(entry.data, 0);
        let offset = usize::try_from(from_end)
            .ok()
            .and_then(|f| image.len().checked_sub(f))
            .filter(|&o| o + SEV_METADATA_HEADER_LEN <= image.len())
            .ok_or(LayoutError::MetadataOutside {
                from_end,
                len: image.len(),
            })?;
        SevMetadata::parse(image, offset)
    }

    /// Omega's kernel entry: where the kernel ELF lies and its SHA-256.
    pub fn kernel(&self) -> Result<KernelEntry, LayoutError> {
        let entry = self.require(OMEGA_KERNEL_GUID, KernelEntry::LEN)?;
        let image_size = u32_at(entry.data, 0);
        let offset = u32_at(entry.data, 4);
        let len = u32_at(entry.data, 8);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&entry.data[12..44]);
        if image_size as usize != self.image_len {
            return Err(LayoutError::ImageSizeMismatch {
                offset: entry.offset,
                declared: image_size,
                len: self.image_len,
            });
        }
        // SECURITY: the kernel must lie wholly below the table, so no entry can alias it.
        if u64::from(offset) + u64::from(len) > self.start as u64 {
            return Err(LayoutError::KernelOutside {
                offset: entry.offset,
                kernel_offset: offset,
                len,
            });
        }
        Ok(KernelEntry {
            image_size,
            offset: offset as usize,
            len: len as usize,
            sha256,
        })
    }

    /// The image size Omega's kernel entry declares, read without the rest of the image: the
    /// loader sees only the top of its ROM until it knows how large the ROM is.
    pub fn declared_image_size(&self) -> Result<u32, LayoutError> {
        Ok(u32_at(
            self.require(OMEGA_KERNEL_GUID, KernelEntry::LEN)?.data,
            0,
        ))
    }
}

/// Iterator over the entries of a [`GuidTable`].
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    base: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, LayoutError>;

    fn next(&mut self) -> Option<Self::Item> {
        let n = self.bytes.len();
        if n < ENTRY_HEADER_LEN {
            return None;
        }
        let header = n - ENTRY_HEADER_LEN;
        let entry_len = usize::from(u16_at(self.bytes, header));
        if entry_len < ENTRY_HEADER_LEN || entry_len > n {
            self.bytes = &[];
            return Some(Err(LayoutError::BadEntryLength {
                offset: self.base + n,
                len: entry_len,
                max: n,
            }));
        }
        let start = n - entry_len;
        let entry = Entry {
            guid: Guid::from_bytes_le(&self.bytes[header + 2..n]),
            data: &self.bytes[start..header],
            offset: self.base + start,
        };
        self.bytes = &self.bytes[..start];
        Some(Ok(entry))
    }
}

/// Type of an SEV metadata section: how the launch measures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SectionKind {
    /// Zeroed memory validated at launch.
    SnpSecMem = 1,
    /// The SNP secrets page (VMPCKs).
    SnpSecrets = 2,
    /// The CPUID page the hypervisor fills and the PSP checks.
    Cpuid = 3,
    /// The SVSM calling area.
    SvsmCaa = 4,
    /// QEMU's kernel/initrd/cmdline hashes.
    SnpKernelHashes = 0x10,
}

impl SectionKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::SnpSecMem,
            2 => Self::SnpSecrets,
            3 => Self::Cpuid,
            4 => Self::SvsmCaa,
            0x10 => Self::SnpKernelHashes,
            _ => return None,
        })
    }
}

/// One SEV metadata section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub gpa: u32,
    pub size: u32,
    pub kind: SectionKind,
}

impl Section {
    /// One past the last byte, as u64 (never overflows).
    pub fn end(&self) -> u64 {
        u64::from(self.gpa) + u64::from(self.size)
    }
}

/// The SEV metadata block of an image.
#[derive(Debug, Clone, Copy)]
pub struct SevMetadata<'a> {
    /// Offset of the "ASEV" header in the image.
    pub offset: usize,
    items: &'a [u8],
}

impl<'a> SevMetadata<'a> {
    fn parse(image: &'a [u8], offset: usize) -> Result<Self, LayoutError> {
        let h = &image[offset..offset + SEV_METADATA_HEADER_LEN];
        if h[..4] != SEV_METADATA_SIGNATURE {
            return Err(LayoutError::BadMetadataSignature { offset });
        }
        let len = u32_at(h, 4);
        let version = u32_at(h, 8);
        let items = u32_at(h, 12);
        if version != 1 {
            return Err(LayoutError::BadMetadataVersion { offset, version });
        }
        let expected =
            u64::from(items) * SEV_METADATA_SECTION_LEN as u64 + SEV_METADATA_HEADER_LEN as u64;
        if u64::from(len) != expected || offset as u64 + expected > image.len() as u64 {
            return Err(LayoutError::BadMetadataLength { offset, len, items });
        }
        let items = &image[offset + SEV_METADATA_HEADER_LEN..offset + len as usize];
        let meta = SevMetadata { offset, items };
        for s in meta.sections() {
            s?;
        }
        Ok(meta)
    }

    /// The sections in the order the launch measures them.
    pub fn sections(&self) -> impl Iterator<Item = Result<Section, LayoutError>> + 'a {
        let base = self.offset + SEV_METADATA_HEADER_LEN;
        self.items
            .chunks_exact(SEV_METADATA_SECTION_LEN)
            .enumerate()
            .map(move |(i, d)| {
                let offset = base + i * SEV_METADATA_SECTION_LEN;
                let (gpa, size, kind) = (u32_at(d, 0), u32_at(d, 4), u32_at(d, 8));
                let kind = SectionKind::from_u32(kind)
                    .ok_or(LayoutError::UnknownSectionType { offset, kind })?;
                if u64::from(gpa) + u64::from(size) > 1 << 32 {
                    return Err(LayoutError::SectionOverflow { offset, gpa, size });
                }
                Ok(Section { gpa, size, kind })
            })
    }
}

/// Where the kernel ELF lies in the image, and its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelEntry {
    /// Size of the whole image (so the loader can find its own ROM's start).
    pub image_size: u32,
    /// Offset of the ELF in the image.
    pub offset: usize,
    pub len: usize,
    pub sha256: [u8; 32],
}

impl KernelEntry {
    /// Data bytes of the entry: u32 image size, u32 offset, u32 length, SHA-256 of the ELF.
    pub const LEN: usize = 44;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0..4].copy_from_slice(&self.image_size.to_le_bytes());
        out[4..8].copy_from_slice(&(self.offset as u32).to_le_bytes());
        out[8..12].copy_from_slice(&(self.len as u32).to_le_bytes());
        out[12..44].copy_from_slice(&self.sha256);
        out
    }
}

#[cfg(feature = "alloc")]
mod builder;
#[cfg(feature = "alloc")]
pub use builder::{FooterBuilder, encode_sev_metadata};

#[cfg(all(test, feature = "alloc"))]
mod tests;
