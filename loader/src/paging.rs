//! Four-level x86_64 page tables, built over any frame source. The loader's frames are
//! physical pages it reaches through the identity map; the tests use a vector.

pub const PRESENT: u64 = 1 << 0;
pub const WRITABLE: u64 = 1 << 1;
/// Write-through + cache-disable: for device registers.
pub const UNCACHED: u64 = (1 << 3) | (1 << 4);
pub const HUGE: u64 = 1 << 7;
pub const NO_EXECUTE: u64 = 1 << 63;
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

pub const SIZE_4K: u64 = 0x1000;
pub const SIZE_2M: u64 = 0x20_0000;

/// Where page-table frames come from.
pub trait Frames {
    /// A zeroed 4 KiB frame's physical address, or `None` when the pool is empty.
    fn alloc(&mut self) -> Option<u64>;
    /// The table stored in frame `pa` (a frame this source handed out, or the root).
    fn table(&mut self, pa: u64) -> &mut [u64; 512];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    OutOfFrames,
    AlreadyMapped(u64),
    HugePageInTheWay(u64),
    Unaligned(u64),
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::OutOfFrames => write!(f, "out of page-table frames"),
            MapError::AlreadyMapped(va) => write!(f, "{va:#x} is already mapped"),
            MapError::HugePageInTheWay(va) => write!(f, "a large page already covers {va:#x}"),
            MapError::Unaligned(va) => write!(f, "{va:#x} is not aligned to its page size"),
        }
    }
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 0x1ff) as usize
}

/// Maps one page of `size` (4 KiB or 2 MiB) at `va` to `pa` with the leaf `flags`
/// (PRESENT is added). Intermediate entries are present + writable; the leaf decides.
pub fn map(frames: &mut impl Frames, root: u64, va: u64, pa: u64, size: u64, flags: u64) -> Result<(), MapError> {
    if va % size != 0 || pa % size != 0 {
        return Err(MapError::Unaligned(va));
    }
    let leaf_level = if size == SIZE_2M { 1 } else { 0 };
    let mut table = root;
    for level in (leaf_level + 1..4).rev() {
        let i = index(va, level);
        let entry = frames.table(table)[i];
        table = if entry & PRESENT == 0 {
            let new = frames.alloc().ok_or(MapError::OutOfFrames)?;
            frames.table(table)[i] = new | PRESENT | WRITABLE;
            new
        } else if entry & HUGE != 0 {
            return Err(MapError::HugePageInTheWay(va));
        } else {
            entry & ADDR_MASK
        };
    }
    let i = index(va, leaf_level);
    let slot = &mut frames.table(table)[i];
    if *slot & PRESENT != 0 {
        return Err(MapError::AlreadyMapped(va));
    }
    *slot = pa | flags | PRESENT | if leaf_level == 1 { HUGE } else { 0 };
    Ok(())
}

/// Maps `[va, va+len)` to `[pa, pa+len)` with 4 KiB pages.
pub fn map_range(frames: &mut impl Frames, root: u64, va: u64, pa: u64, len: u64, flags: u64) -> Result<(), MapError> {
    let mut off = 0;
    while off < len {
        map(frames, root, va + off, pa + off, SIZE_4K, flags)?;
        off += SIZE_4K;
    }
    Ok(())
}

/// Walks the tables: the physical address and leaf flags `va` maps to.
pub fn translate(frames: &mut impl Frames, root: u64, va: u64) -> Option<(u64, u64)> {
    let mut table = root;
    for level in (0..4).rev() {
        let entry = frames.table(table)[index(va, level)];
        if entry & PRESENT == 0 {
            return None;
        }
        if level == 0 || entry & HUGE != 0 {
            let page = SIZE_4K << (9 * level);
            let flags = entry & !ADDR_MASK;
            return Some(((entry & ADDR_MASK & !(page - 1)) | (va & (page - 1)), flags));
        }
        table = entry & ADDR_MASK;
    }
    None
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    struct VecFrames {
        tables: Vec<Box<[u64; 512]>>,
        limit: usize,
    }

    impl Frames for VecFrames {
        fn alloc(&mut self) -> Option<u64> {
            if self.tables.len() >= self.limit {
                return None;
            }
            self.tables.push(Box::new([0; 512]));
            Some(self.tables.len() as u64 * SIZE_4K)
        }
        fn table(&mut self, pa: u64) -> &mut [u64; 512] {
            &mut self.tables[(pa / SIZE_4K) as usize - 1]
        }
    }

    fn setup(limit: usize) -> (VecFrames, u64) {
        let mut f = VecFrames { tables: Vec::new(), limit };
        let root = f.alloc().unwrap();
        (f, root)
    }

    #[test]
    fn maps_and_translates() {
        let (mut f, root) = setup(64);
        let kva = 0xffff_ffff_8100_0000;
        map_range(&mut f, root, kva, 0x100_0000, 0x3000, NO_EXECUTE | WRITABLE).unwrap();
        map(&mut f, root, 0xffff_8000_0000_0000, 0, SIZE_2M, WRITABLE | NO_EXECUTE).unwrap();
        assert_eq!(translate(&mut f, root, kva + 0x1234), Some((0x100_1234, NO_EXECUTE | WRITABLE | PRESENT)));
        assert_eq!(translate(&mut f, root, kva + 0x3000), None);
        let (pa, flags) = translate(&mut f, root, 0xffff_8000_0012_3456).unwrap();
        assert_eq!(pa, 0x12_3456);
        assert!(flags & HUGE != 0);
        assert_eq!(f.tables.len(), 1 + 3 + 2); // root, 3 levels for the kernel, 2 for the direct map
    }

    #[test]
    fn refuses_conflicts() {
        let (mut f, root) = setup(64);
        map(&mut f, root, 0x20_0000, 0x20_0000, SIZE_2M, 0).unwrap();
        assert_eq!(map(&mut f, root, 0x20_1000, 0, SIZE_4K, 0), Err(MapError::HugePageInTheWay(0x20_1000)));
        assert_eq!(map(&mut f, root, 0x20_0000, 0, SIZE_2M, 0), Err(MapError::AlreadyMapped(0x20_0000)));
        assert_eq!(map(&mut f, root, 0x1001, 0, SIZE_4K, 0), Err(MapError::Unaligned(0x1001)));
        let (mut f, root) = setup(2);
        assert_eq!(map(&mut f, root, 0, 0, SIZE_4K, 0), Err(MapError::OutOfFrames));
    }
}
