//! Edits of the running page tables that the SNP platform needs: flipping the C-bit of
//! one 2 MiB direct-map page when it becomes shared or private again. Pure logic over a
//! table accessor, so the walk is tested on the host.

const PRESENT: u64 = 1 << 0;
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
pub const SIZE_2M: u64 = 0x20_0000;

/// Reaches the table in a physical frame.
pub trait Tables {
    fn table(&mut self, pa: u64) -> &mut [u64; 512];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageTableError {
    Unaligned(u64),
    NotMapped(u64),
    /// The address is mapped with 4 KiB pages (or a 1 GiB page), not one 2 MiB page.
    NotA2MiBPage(u64),
}

impl core::fmt::Display for PageTableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PageTableError::Unaligned(va) => write!(f, "{va:#x} is not 2 MiB aligned"),
            PageTableError::NotMapped(va) => write!(f, "{va:#x} is not mapped"),
            PageTableError::NotA2MiBPage(va) => {
                write!(f, "{va:#x} is not mapped by one 2 MiB page")
            }
        }
    }
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 0x1ff) as usize
}

/// Sets (`private`) or clears the `enc` bits of the 2 MiB page mapping `va`. The caller
/// flushes the TLB entry afterwards. Table-to-table entries keep their bits: the tables
/// themselves stay private.
pub fn set_private_2m(
    t: &mut impl Tables,
    root: u64,
    enc: u64,
    va: u64,
    private: bool,
) -> Result<(), PageTableError> {
    if va % SIZE_2M != 0 {
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
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeMap;

    const C: u64 = 1 << 51;
    const DIRECT: u64 = 0xffff_8000_0000_0000;

    #[derive(Default)]
    struct Model(BTreeMap<u64, [u64; 512]>);

    impl Tables for Model {
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
}
