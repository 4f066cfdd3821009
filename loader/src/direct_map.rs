//! How the kernel's direct map covers RAM: 2 MiB pages, except around a page that must
//! have no private mapping at all.
//!
//! Under SNP that page is the GHCB: it is shared with the host, and a second, private
//! (C-bit) alias of it in the direct map would let a stray or attacker-steered access
//! through the alias touch a shared page as if it were private (on hardware, a `#VC` for
//! an unvalidated page at best). The loader maps the 2 MiB frame that holds it with
//! 4 KiB pages and leaves the GHCB's slot empty; the kernel reaches the GHCB only through
//! its own shared mapping (`virt::GHCB`).

/// 2 MiB.
pub const SIZE_2M: u64 = 0x20_0000;
/// 4 KiB.
pub const SIZE_4K: u64 = 0x1000;

/// The pages `(pa, size)` that map the 2 MiB frame at `base` into the direct map: the
/// frame as one large page, or, when `hole` lies in it, its 4 KiB pages without `hole`.
pub fn frame_pages(base: u64, hole: Option<u64>) -> impl Iterator<Item = (u64, u64)> {
    debug_assert!(base.is_multiple_of(SIZE_2M));
    let hole = hole
        .map(|h| h & !(SIZE_4K - 1))
        .filter(|h| (base..base + SIZE_2M).contains(h));
    let small = hole.map(|h| {
        (0..SIZE_2M / SIZE_4K)
            .map(move |i| base + i * SIZE_4K)
            .filter(move |&pa| pa != h)
            .map(|pa| (pa, SIZE_4K))
    });
    let large = hole.is_none().then_some((base, SIZE_2M));
    large.into_iter().chain(small.into_iter().flatten())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    const GHCB: u64 = 0x80_a000;

    #[test]
    fn a_frame_without_the_hole_is_one_large_page() {
        assert_eq!(
            frame_pages(0x60_0000, Some(GHCB)).collect::<Vec<_>>(),
            [(0x60_0000, SIZE_2M)]
        );
        assert_eq!(
            frame_pages(0x80_0000, None).collect::<Vec<_>>(),
            [(0x80_0000, SIZE_2M)]
        );
    }

    #[test]
    fn the_hole_has_no_mapping_and_its_neighbours_do() {
        let pages: Vec<_> = frame_pages(0x80_0000, Some(GHCB)).collect();
        assert_eq!(pages.len(), 511);
        assert!(pages.iter().all(|&(_, size)| size == SIZE_4K));
        assert!(!pages.iter().any(|&(pa, _)| pa == GHCB));
        // The secrets and CPUID pages and the loader's memory stay reachable.
        for pa in [
            0x80_0000,
            0x80_1000,
            GHCB - SIZE_4K,
            GHCB + SIZE_4K,
            0x9f_f000,
        ] {
            assert!(pages.contains(&(pa, SIZE_4K)), "{pa:#x}");
        }
        // Every byte of the frame but the hole's page is covered exactly once.
        let covered: u64 = pages.iter().map(|&(_, s)| s).sum();
        assert_eq!(covered, SIZE_2M - SIZE_4K);
        // An address inside the hole names the same page.
        assert_eq!(frame_pages(0x80_0000, Some(GHCB + 0x123)).count(), 511);
    }
}
