//! Physical frame allocator: a sorted list of free 4 KiB-aligned ranges, first fit, with
//! merging on free and detection of double frees. Small and boot-time oriented: the
//! monitor allocates frames for page tables, the DMA pool and agent memory, rarely.

use heapless::Vec;
use omega_boot_info::{BootInfo, E820_RAM, PhysRange};

pub const FRAME: u64 = 4096;
/// Free ranges tracked at most; more fragmentation than this is refused, not lost.
pub const MAX_RANGES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("no {pages} contiguous free frames")]
    OutOfMemory { pages: u64 },
    #[error("more than {} free ranges", MAX_RANGES)]
    TooFragmented,
    /// A free of frames that are already free (or overlap free frames).
    #[error("frames at {start:#x} freed twice")]
    DoubleFree { start: u64 },
    #[error("{addr:#x} is not frame aligned")]
    Unaligned { addr: u64 },
}

#[derive(Debug, Default)]
pub struct FrameAllocator {
    free: Vec<PhysRange, MAX_RANGES>,
}

impl FrameAllocator {
    pub const fn new() -> Self {
        FrameAllocator { free: Vec::new() }
    }

    /// Usable RAM from the boot info, minus its reserved ranges and `also_reserved` (the
    /// heap), minus the first MiB (legacy BIOS areas), in whole frames.
    pub fn from_boot_info(
        info: &BootInfo,
        also_reserved: &[PhysRange],
    ) -> Result<Self, FrameError> {
        let mut a = FrameAllocator::new();
        for e in info.e820().iter().filter(|e| e.kind == E820_RAM) {
            let start = e.addr.max(1 << 20).div_ceil(FRAME) * FRAME;
            let end = e.end() / FRAME * FRAME;
            if start < end {
                a.add(PhysRange { start, end })?;
            }
        }
        for r in info.reserved().iter().chain(also_reserved) {
            a.remove(*r)?;
        }
        Ok(a)
    }

    /// Adds a free range (merging with neighbours). Fails on overlap with free frames.
    pub fn add(&mut self, r: PhysRange) -> Result<(), FrameError> {
        if !r.start.is_multiple_of(FRAME) || !r.end.is_multiple_of(FRAME) {
            return Err(FrameError::Unaligned {
                addr: if !r.start.is_multiple_of(FRAME) {
                    r.start
                } else {
                    r.end
                },
            });
        }
        if r.start >= r.end {
            return Ok(());
        }
        let i = self
            .free
            .iter()
            .position(|f| f.start >= r.start)
            .unwrap_or(self.free.len());
        // SECURITY: freeing frames that are already free would hand one frame to two owners.
        if (i > 0 && self.free[i - 1].end > r.start)
            || (i < self.free.len() && self.free[i].start < r.end)
        {
            return Err(FrameError::DoubleFree { start: r.start });
        }
        let merge_left = i > 0 && self.free[i - 1].end == r.start;
        let merge_right = i < self.free.len() && self.free[i].start == r.end;
        match (merge_left, merge_right) {
            (true, true) => {
                self.free[i - 1].end = self.free[i].end;
                self.free.remove(i);
            }
            (true, false) => self.free[i - 1].end = r.end,
            (false, true) => self.free[i].start = r.start,
            (false, false) => self
                .free
                .insert(i, r)
                .map_err(|_| FrameError::TooFragmented)?,
        }
        Ok(())
    }

    /// Takes `r` out of the free list wherever it overlaps (it need not be free).
    pub fn remove(&mut self, r: PhysRange) -> Result<(), FrameError> {
        let start = r.start / FRAME * FRAME;
        let end = r.end.div_ceil(FRAME) * FRAME;
        let mut i = 0;
        while i < self.free.len() {
            let f = self.free[i];
            if f.end <= start || end <= f.start {
                i += 1;
                continue;
            }
            let left = PhysRange {
                start: f.start,
                end: start,
            };
            let right = PhysRange {
                start: end,
                end: f.end,
            };
            self.free.remove(i);
            if right.start < right.end {
                self.free
                    .insert(i, right)
                    .map_err(|_| FrameError::TooFragmented)?;
            }
            if left.start < left.end {
                self.free
                    .insert(i, left)
                    .map_err(|_| FrameError::TooFragmented)?;
                i += 1;
            }
        }
        Ok(())
    }

    /// `pages` contiguous frames aligned to `align` bytes (a power of two ≥ 4096).
    pub fn alloc(&mut self, pages: u64, align: u64) -> Result<u64, FrameError> {
        let len = pages
            .checked_mul(FRAME)
            .ok_or(FrameError::OutOfMemory { pages })?;
        let align = align.max(FRAME);
        for f in self.free.clone().iter() {
            let start = f.start.div_ceil(align) * align;
            if start.checked_add(len).is_some_and(|end| end <= f.end) {
                self.remove(PhysRange {
                    start,
                    end: start + len,
                })?;
                return Ok(start);
            }
        }
        Err(FrameError::OutOfMemory { pages })
    }

    /// Returns frames from [`alloc`](Self::alloc).
    pub fn free(&mut self, start: u64, pages: u64) -> Result<(), FrameError> {
        self.add(PhysRange {
            start,
            end: start + pages * FRAME,
        })
    }

    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|r| r.end - r.start).sum()
    }

    pub fn ranges(&self) -> &[PhysRange] {
        &self.free
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_boot_info::E820Entry;

    fn boot_info() -> BootInfo {
        let mut b = BootInfo::empty();
        b.e820[0] = E820Entry {
            addr: 0,
            len: 0x9fc00,
            kind: 1,
            _pad: 0,
        };
        b.e820[1] = E820Entry {
            addr: 0x100000,
            len: 0x7f00000,
            kind: 1,
            _pad: 0,
        };
        b.e820[2] = E820Entry {
            addr: 0xfeffc000,
            len: 0x4000,
            kind: 2,
            _pad: 0,
        };
        b.e820_count = 3;
        b.reserved[0] = PhysRange {
            start: 0x800000,
            end: 0x900000,
        };
        b.reserved[1] = PhysRange {
            start: 0x1000000,
            end: 0x1030000,
        };
        b.reserved_count = 2;
        b
    }

    #[test]
    fn builds_from_e820_minus_reserved() {
        let heap = PhysRange {
            start: 0x1030000,
            end: 0x2000000,
        };
        let a = FrameAllocator::from_boot_info(&boot_info(), &[heap]).unwrap();
        assert_eq!(
            a.ranges(),
            &[
                PhysRange {
                    start: 0x100000,
                    end: 0x800000
                },
                PhysRange {
                    start: 0x900000,
                    end: 0x1000000
                },
                PhysRange {
                    start: 0x2000000,
                    end: 0x8000000
                },
            ]
        );
    }

    #[test]
    fn alloc_free_merge_and_double_free() {
        let mut a = FrameAllocator::new();
        a.add(PhysRange {
            start: 0x10000,
            end: 0x20000,
        })
        .unwrap();
        let x = a.alloc(1, 4096).unwrap();
        let y = a.alloc(2, 0x4000).unwrap();
        assert_eq!((x, y), (0x10000, 0x14000));
        assert_eq!(a.free_bytes(), 0x10000 - 3 * FRAME);
        assert_eq!(a.free(x, 1), Ok(()));
        assert_eq!(a.free(x, 1), Err(FrameError::DoubleFree { start: x }));
        a.free(y, 2).unwrap();
        assert_eq!(
            a.ranges(),
            &[PhysRange {
                start: 0x10000,
                end: 0x20000
            }],
            "fully merged again"
        );
        assert_eq!(
            a.alloc(17, 4096),
            Err(FrameError::OutOfMemory { pages: 17 })
        );
        assert_eq!(
            a.alloc(u64::MAX, 4096),
            Err(FrameError::OutOfMemory { pages: u64::MAX })
        );
        assert!(matches!(
            a.add(PhysRange {
                start: 1,
                end: 4096
            }),
            Err(FrameError::Unaligned { .. })
        ));
    }

    /// Random alloc/free sequences against a page-level model.
    #[test]
    fn matches_a_page_model() {
        let mut a = FrameAllocator::new();
        a.add(PhysRange {
            start: 0,
            end: 256 * FRAME,
        })
        .unwrap();
        let mut owned = [false; 256];
        let mut live: std::vec::Vec<(u64, u64)> = std::vec::Vec::new();
        let mut seed = 7u64;
        for _ in 0..20_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if seed >> 63 == 0 || live.is_empty() {
                let pages = (seed >> 40) % 8 + 1;
                if let Ok(p) = a.alloc(pages, FRAME << ((seed >> 20) % 3)) {
                    for i in p / FRAME..p / FRAME + pages {
                        assert!(!owned[i as usize], "frame handed out twice");
                        owned[i as usize] = true;
                    }
                    live.push((p, pages));
                }
            } else {
                let (p, pages) = live.swap_remove((seed >> 33) as usize % live.len());
                a.free(p, pages).unwrap();
                for i in p / FRAME..p / FRAME + pages {
                    owned[i as usize] = false;
                }
            }
            let free_pages = owned.iter().filter(|o| !**o).count() as u64;
            assert_eq!(a.free_bytes(), free_pages * FRAME);
        }
    }

    extern crate std;
}
