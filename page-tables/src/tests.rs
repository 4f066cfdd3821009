//! Host tests: building tables from a pool (the loader's use) and flipping the C-bit of a
//! direct-map page (the kernel's).
extern crate std;

use super::*;
use std::boxed::Box;
use std::collections::BTreeMap;
use std::vec::Vec;

struct VecFrames {
    tables: Vec<Box<[u64; 512]>>,
    limit: usize,
    enc: u64,
}

impl TableAccess for VecFrames {
    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        assert_eq!(
            pa & self.enc,
            0,
            "a private bit leaked into a table address"
        );
        &mut self.tables[(pa / SIZE_4K) as usize - 1]
    }
}

impl FrameSource for VecFrames {
    fn alloc(&mut self) -> Option<u64> {
        if self.tables.len() >= self.limit {
            return None;
        }
        self.tables.push(Box::new([0; 512]));
        Some(self.tables.len() as u64 * SIZE_4K)
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
        Err(PageTableError::HugePageInTheWay(0x20_1000))
    );
    assert_eq!(
        map(&mut f, root, 0x20_0000, 0, SIZE_2M, 0),
        Err(PageTableError::AlreadyMapped(0x20_0000))
    );
    assert_eq!(
        map(&mut f, root, 0x1001, 0, SIZE_4K, 0),
        Err(PageTableError::Unaligned(0x1001))
    );
    let (mut f, root) = setup(2);
    assert_eq!(
        map(&mut f, root, 0, 0, SIZE_4K, 0),
        Err(PageTableError::OutOfFrames)
    );
}

#[test]
fn snp_c_bit_on_tables_and_private_leaves_only() {
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

const C: u64 = 1 << 51;
const DIRECT: u64 = 0xffff_8000_0000_0000;

#[derive(Default)]
struct Model(BTreeMap<u64, [u64; 512]>);

impl TableAccess for Model {
    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        assert_eq!(pa & C, 0, "C-bit leaked into a table address");
        self.0
            .get_mut(&pa)
            .expect("walk reached a frame that is not a table")
    }
}

/// PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 mapping DIRECT + 0..1 GiB with 2 MiB
/// private pages, and a PT at 0x4000 under the PD's slot 5 (4 KiB pages).
fn model() -> Model {
    let mut m = Model::default();
    let mut pml4 = [0; 512];
    pml4[index(DIRECT, 3)] = 0x2000 | PRESENT | 2 | C;
    let mut pdpt = [0; 512];
    pdpt[0] = 0x3000 | PRESENT | 2 | C;
    pdpt[1] = 0x4000_0000 | PRESENT | HUGE | C; // a 1 GiB page
    let mut pd = [0; 512];
    for (i, e) in pd.iter_mut().enumerate().take(8) {
        *e = (i as u64 * SIZE_2M) | PRESENT | 2 | HUGE | (1 << 63) | C;
    }
    pd[5] = 0x4000 | PRESENT | 2 | C;
    m.0.insert(0x1000, pml4);
    m.0.insert(0x2000, pdpt);
    m.0.insert(0x3000, pd);
    m.0.insert(0x4000, [0; 512]);
    m
}

#[test]
fn flips_only_the_c_bit_of_one_leaf() {
    let mut m = model();
    let before = m.0.clone();
    set_private_2m(&mut m, 0x1000, C, DIRECT + 2 * SIZE_2M, false).unwrap();
    let pd = m.0[&0x3000];
    assert_eq!(pd[2], (2 * SIZE_2M) | PRESENT | 2 | HUGE | (1 << 63));
    assert_eq!(pd[1], before[&0x3000][1]);
    assert_eq!(m.0[&0x1000], before[&0x1000], "upper tables stay private");
    set_private_2m(&mut m, 0x1000, C, DIRECT + 2 * SIZE_2M, true).unwrap();
    assert_eq!(m.0, before);
}

#[test]
fn refuses_what_it_cannot_flip_whole() {
    let mut m = model();
    assert_eq!(
        set_private_2m(&mut m, 0x1000, C, DIRECT + 0x1000, false),
        Err(PageTableError::Unaligned(DIRECT + 0x1000))
    );
    assert_eq!(
        set_private_2m(&mut m, 0x1000, C, DIRECT + 5 * SIZE_2M, false),
        Err(PageTableError::NotA2MiBPage(DIRECT + 5 * SIZE_2M))
    );
    assert_eq!(
        set_private_2m(&mut m, 0x1000, C, DIRECT + 9 * SIZE_2M, false),
        Err(PageTableError::NotMapped(DIRECT + 9 * SIZE_2M))
    );
    assert_eq!(
        set_private_2m(&mut m, 0x1000, C, DIRECT + (1 << 30), false),
        Err(PageTableError::NotA2MiBPage(DIRECT + (1 << 30)))
    );
    assert_eq!(
        set_private_2m(&mut m, 0x1000, C, 0, false),
        Err(PageTableError::NotMapped(0))
    );
}
