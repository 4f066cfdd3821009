//! x86_64 four-level page tables, shared by the loader (which builds the kernel's tables
//! from a pool of frames it reaches through the identity map) and the kernel (which flips
//! the C-bit of direct-map pages through the direct map).
//!
//! Pure logic over two small traits, so it runs in the loader's early environment (no heap,
//! no statics it must initialise) and is tested on the host with tables in a vector.
#![no_std]
#![forbid(unsafe_code)]

pub const PRESENT: u64 = 1 << 0;
pub const WRITABLE: u64 = 1 << 1;
/// Write-through + cache-disable: for device registers.
pub const UNCACHED: u64 = (1 << 3) | (1 << 4);
pub const HUGE: u64 = 1 << 7;
pub const NO_EXECUTE: u64 = 1 << 63;
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

pub const SIZE_4K: u64 = 0x1000;
pub const SIZE_2M: u64 = 0x20_0000;

/// Reaches the page table stored in a physical frame (through the identity map in the
/// loader, the direct map in the kernel).
pub trait TableAccess {
    /// The table in frame `pa` (an address read from a live entry or the root, without
    /// private bits).
    fn table(&mut self, pa: u64) -> &mut [u64; 512];
}

/// Table access plus a source of fresh frames, for building tables.
pub trait FrameSource: TableAccess {
    /// A zeroed 4 KiB frame's physical address, or `None` when the pool is empty.
    fn alloc(&mut self) -> Option<u64>;
    /// Bits that mark memory private: the C-bit under SEV-SNP, 0 elsewhere. Every
    /// table-to-table entry carries them (page tables are private memory); leaves carry
    /// them only where the caller's flags say so, and addresses read back never do.
    fn private_bits(&self) -> u64 {
        0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageTableError {
    #[error("out of page-table frames")]
    OutOfFrames,
    #[error("{0:#x} is already mapped")]
    AlreadyMapped(u64),
    #[error("a large page already covers {0:#x}")]
    HugePageInTheWay(u64),
    #[error("{0:#x} is not aligned to its page size")]
    Unaligned(u64),
    #[error("{0:#x} is not mapped")]
    NotMapped(u64),
    /// The address is mapped with 4 KiB pages (or a 1 GiB page), not one 2 MiB page.
    #[error("{0:#x} is not mapped by one 2 MiB page")]
    NotA2MiBPage(u64),
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 0x1ff) as usize
}

/// Maps one page of `size` (4 KiB or 2 MiB) at `va` to `pa` with the leaf `flags`
/// (PRESENT is added). Intermediate entries are present + writable; the leaf decides.
pub fn map(
    frames: &mut impl FrameSource,
    root: u64,
    va: u64,
    pa: u64,
    size: u64,
    flags: u64,
) -> Result<(), PageTableError> {
    if !va.is_multiple_of(size) || !pa.is_multiple_of(size) {
        return Err(PageTableError::Unaligned(va));
    }
    let leaf_level = if size == SIZE_2M { 1 } else { 0 };
    let enc = frames.private_bits();
    let mut table = root;
    for level in (leaf_level + 1..4).rev() {
        let i = index(va, level);
        let entry = frames.table(table)[i];
        table = if entry & PRESENT == 0 {
            let new = frames.alloc().ok_or(PageTableError::OutOfFrames)?;
            frames.table(table)[i] = new | PRESENT | WRITABLE | enc;
            new
        } else if entry & HUGE != 0 {
            return Err(PageTableError::HugePageInTheWay(va));
        } else {
            entry & ADDR_MASK & !enc
        };
    }
    let i = index(va, leaf_level);
    let slot = &mut frames.table(table)[i];
    if *slot & PRESENT != 0 {
        return Err(PageTableError::AlreadyMapped(va));
    }
    *slot = pa | flags | PRESENT | if leaf_level == 1 { HUGE } else { 0 };
    Ok(())
}

/// Maps `[va, va+len)` to `[pa, pa+len)` with 4 KiB pages.
pub fn map_range(
    frames: &mut impl FrameSource,
    root: u64,
    va: u64,
    pa: u64,
    len: u64,
    flags: u64,
) -> Result<(), PageTableError> {
    let mut off = 0;
    while off < len {
        map(frames, root, va + off, pa + off, SIZE_4K, flags)?;
        off += SIZE_4K;
    }
    Ok(())
}

/// Walks the tables: the physical address and leaf flags (private bits included) `va`
/// maps to.
pub fn translate(frames: &mut impl FrameSource, root: u64, va: u64) -> Option<(u64, u64)> {
    let enc = frames.private_bits();
    let mut table = root;
    for level in (0..4).rev() {
        let entry = frames.table(table)[index(va, level)];
        if entry & PRESENT == 0 {
            return None;
        }
        if level == 0 || entry & HUGE != 0 {
            let page = SIZE_4K << (9 * level);
            let flags = (entry & !ADDR_MASK) | (entry & enc);
            return Some((
                (entry & ADDR_MASK & !enc & !(page - 1)) | (va & (page - 1)),
                flags,
            ));
        }
        table = entry & ADDR_MASK & !enc;
    }
    None
}

/// Sets (`private`) or clears the `enc` bits of the 2 MiB page mapping `va`: what the SNP
/// platform does when a direct-map page becomes shared or private again. The caller
/// flushes the TLB entry afterwards. Table-to-table entries keep their bits: the tables
/// themselves stay private.
pub fn set_private_2m(
    t: &mut impl TableAccess,
    root: u64,
    enc: u64,
    va: u64,
    private: bool,
) -> Result<(), PageTableError> {
    if !va.is_multiple_of(SIZE_2M) {
        return Err(PageTableError::Unaligned(va));
    }
    let mut table = root;
    for level in [3, 2] {
        let e = t.table(table)[index(va, level)];
        if e & PRESENT == 0 {
            return Err(PageTableError::NotMapped(va));
        }
        if e & HUGE != 0 {
            return Err(PageTableError::NotA2MiBPage(va));
        }
        table = e & ADDR_MASK & !enc;
    }
    let slot = &mut t.table(table)[index(va, 1)];
    if *slot & PRESENT == 0 {
        return Err(PageTableError::NotMapped(va));
    }
    if *slot & HUGE == 0 {
        return Err(PageTableError::NotA2MiBPage(va));
    }
    *slot = if private { *slot | enc } else { *slot & !enc };
    Ok(())
}

#[cfg(test)]
mod tests;
