//! How big the monitor's heap is: sized from the guest's memory map (E820 via `BootInfo`,
//! the largest free RAM range), never from anything measured at run time, so the same VM
//! shape always gets the same heap (the launch digest does not depend on it either way:
//! the image is the same bytes for every memory size).
//!
//! The heap holds everything the monitor allocates, agents included (their stores, linear
//! memories and queues), so it takes most of the guest's RAM: a 1 GiB guest gets about
//! 1 000 MiB of heap, enough for thousands of idle agents (`docs/agents.md`, density).

/// RAM of the heap's range left to the frame allocator: the shared DMA pool (2 MiB, 2 MiB
/// aligned) and later page-sized users. The frame allocator only gets RAM above 1 MiB, and
/// outside the largest range a small guest may have none.
pub const FRAMES_RESERVE: u64 = 16 << 20;

/// Smallest heap the monitor starts with.
pub const MIN_HEAP: u64 = 1 << 20;

/// Largest heap: 16 GiB = `omega_bundle::MAX_INSTANCES` (8 192) agents × 2 MiB, the monitor's
/// own worst case per agent rounded up (inbox of 16 × 64 KiB messages, a held 256 KiB
/// response, a 64 KiB request, a 256 KiB value stack: about 1.6 MiB) — what the most agents
/// the manifest allows can make the monitor hold besides their linear memories. A bigger
/// guest leaves the rest to the frame allocator. It also keeps the heap inside the loader's
/// direct map (64 GiB) and the heap's bookkeeping in `usize` on any target.
pub const MAX_HEAP: u64 = 16 << 30;

const PAGE: u64 = 0x1000;

/// Heap bytes for a free range of `range_len` bytes: all of it but [`FRAMES_RESERVE`] (half
/// of it when the range is under twice the reserve), at most [`MAX_HEAP`], whole pages;
/// `None` under [`MIN_HEAP`].
pub fn heap_size(range_len: u64) -> Option<u64> {
    let size = if range_len >= 2 * FRAMES_RESERVE {
        range_len - FRAMES_RESERVE
    } else {
        range_len / 2
    };
    let size = size.min(MAX_HEAP) / PAGE * PAGE;
    (size >= MIN_HEAP).then_some(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heap_follows_the_memory_map_within_its_bounds() {
        const MIB: u64 = 1 << 20;
        // The default 128 MiB guest (about 126 MiB free above the kernel), a 1 GiB guest.
        assert_eq!(heap_size(126 * MIB), Some(110 * MIB));
        assert_eq!(heap_size(1022 * MIB), Some(1006 * MIB));
        // A small range: half to each.
        assert_eq!(heap_size(20 * MIB), Some(10 * MIB));
        assert_eq!(heap_size(MIB), None);
        assert_eq!(heap_size(2 * MIB + 5), Some(MIB));
        // Huge and hostile lengths: capped, no overflow.
        assert_eq!(heap_size(64 << 30), Some(MAX_HEAP));
        assert_eq!(heap_size(u64::MAX), Some(MAX_HEAP));
        assert_eq!(heap_size(0), None);
        // Page aligned, and never the whole range.
        for len in [3 * MIB + 123, 40 * MIB + 4095, 777 * MIB + 1] {
            let h = heap_size(len).unwrap();
            assert_eq!(h % PAGE, 0);
            assert!(h < len);
        }
    }
}
