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
    /// Bits that mark memory private: the C-bit under SEV-SNP, 0 elsewhere. Every
    /// table-to-table entry carries them (page tables are private memory); leaves carry
    /// them only where the caller's flags say so, and addresses read back never do.
    fn private_bits(&self) -> u64 {
        0
    }
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
pub fn map(
    frames: &mut impl Frames,
    root: u64,
    va: u64,
    pa: u64,
    size: u64,
    flags: u64,
) -> Result<(), MapError> {
    if va % size != 0 || pa % size != 0 {
        return Err(MapError::Unaligned(va));
    }
    let leaf_level = if size == SIZE_2M { 1 } else { 0 };
    let enc = frames.private_bits();
    let mut table = root;
    for level in (leaf_level + 1..4).rev() {
        let i = index(va, level);
        let entry = frames.table(table)[i];
        table = if entry & PRESENT == 0 {
            let new = frames.alloc().ok_or(MapError::OutOfFrames)?;
            frames.table(table)[i] = new | PRESENT | WRITABLE | enc;
            new
        } else if entry & HUGE != 0 {
            return Err(MapError::HugePageInTheWay(va));
        } else {
            entry & ADDR_MASK & !enc
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
pub fn map_range(
    frames: &mut impl Frames,
    root: u64,
    va: u64,
    pa: u64,
    len: u64,
    flags: u64,
) -> Result<(), MapError> {
    let mut off = 0;
    while off < len {
        map(frames, root, va + off, pa + off, SIZE_4K, flags)?;
        off += SIZE_4K;
    }
    Ok(())
}

/// Walks the tables: the physical address and leaf flags (private bits included) `va`
/// maps to.
pub fn translate(frames: &mut impl Frames, root: u64, va: u64) -> Option<(u64, u64)> {
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

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    struct VecFrames {
        tables: Vec<Box<[u64; 512]>>,
        limit: usize,
        enc: u64,
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
            assert_eq!(
                pa & self.enc,
                0,
                "a private bit leaked into a table address"
            );
            &mut self.tables[(pa / SIZE_4K) as usize - 1]
        }
        fn private_bits(&self) -> u64 {
            self.enc
        }
    }

    fn setup(limit: usize) -> (VecFrames, u64) {
        let mut f = VecFrames {
            tables: Vec::new(),
            limit,
            enc: 0,
        };
        let root = f.alloc().unwrap();
        (f, root)
    }

    #[test]
    fn maps_and_translates() {
        let (mut f, root) = setup(64);
        let kva = 0xffff_ffff_8100_0000;
        map_range(&mut f, root, kva, 0x100_0000, 0x3000, NO_EXECUTE | WRITABLE).unwrap();
        map(
            &mut f,
            root,
            0xffff_8000_0000_0000,
            0,
            SIZE_2M,
            WRITABLE | NO_EXECUTE,
        )
        .unwrap();
        assert_eq!(
            translate(&mut f, root, kva + 0x1234),
            Some((0x100_1234, NO_EXECUTE | WRITABLE | PRESENT))
        );
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
        assert_eq!(
            map(&mut f, root, 0x20_1000, 0, SIZE_4K, 0),
            Err(MapError::HugePageInTheWay(0x20_1000))
        );
        assert_eq!(
            map(&mut f, root, 0x20_0000, 0, SIZE_2M, 0),
            Err(MapError::AlreadyMapped(0x20_0000))
        );
        assert_eq!(
            map(&mut f, root, 0x1001, 0, SIZE_4K, 0),
            Err(MapError::Unaligned(0x1001))
        );
        let (mut f, root) = setup(2);
        assert_eq!(
            map(&mut f, root, 0, 0, SIZE_4K, 0),
            Err(MapError::OutOfFrames)
        );
    }

    #[test]
    fn snp_c_bit_on_tables_and_private_leaves_only() {
        const C: u64 = 1 << 51;
        let (mut f, root) = setup(64);
        f.enc = C;
        let kva = 0xffff_ffff_8100_0000;
        map_range(&mut f, root, kva, 0x100_0000, 0x2000, NO_EXECUTE | C).unwrap();
        map(
            &mut f,
            root,
            0xffff_c000_fe00_0000,
            0xfe00_0000,
            SIZE_2M,
            WRITABLE | NO_EXECUTE | UNCACHED,
        )
        .unwrap();
        // Private leaf: address without the bit, flags with it.
        assert_eq!(
            translate(&mut f, root, kva + 0x10),
            Some((0x100_0010, NO_EXECUTE | C | PRESENT))
        );
        // Shared device window: no C-bit on the leaf.
        let (pa, flags) = translate(&mut f, root, 0xffff_c000_fe00_1000).unwrap();
        assert_eq!((pa, flags & C), (0xfe00_1000, 0));
        // Every table-to-table entry is private.
        for t in &f.tables {
            for e in t
                .iter()
                .filter(|e| **e & PRESENT != 0 && **e & HUGE == 0 && **e & NO_EXECUTE == 0)
            {
                assert_ne!(e & C, 0, "table entry {e:#x} lacks the C-bit");
            }
        }
        // A second mapping under the same tables walks through the C-bit entries.
        map(&mut f, root, kva + 0x5000, 0x200_0000, SIZE_4K, C).unwrap();
        assert_eq!(
            translate(&mut f, root, kva + 0x5000).map(|t| t.0),
            Some(0x200_0000)
        );
    }
}
