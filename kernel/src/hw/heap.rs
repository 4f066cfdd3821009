//! The kernel heap: `linked_list_allocator` over the largest free RAM range, reached
//! through the direct map.

use linked_list_allocator::LockedHeap;
use omega_boot_info::{BootInfo, PhysRange, virt};
use omega_kernel::heap_size::heap_size;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Where the heap went.
pub struct HeapInfo {
    pub phys_start: u64,
    pub size: u64,
}

/// Where the heap will go: the start of the largest free RAM range, page aligned, sized by
/// [`omega_kernel::heap_size::heap_size`] from that range (the memory the VM was given, the
/// rest left to the frame allocator); `None` if that is under 1 MiB.
pub fn choose(info: &BootInfo) -> Option<PhysRange> {
    let range = info.largest_free_range()?;
    let start = range.start.div_ceil(0x1000) * 0x1000;
    let size = heap_size(range.end.saturating_sub(start))?;
    Some(PhysRange {
        start,
        end: start + size,
    })
}

/// Sets up the heap over `range` (from [`choose`], accepted by the platform).
pub fn init(range: PhysRange) -> HeapInfo {
    // SAFETY: the range is usable RAM that overlaps no reserved range (loader memory,
    // kernel image, stack), the platform has accepted it, it is mapped writable in the
    // direct map, and `init` runs once.
    unsafe {
        ALLOCATOR.lock().init(
            (virt::DIRECT_MAP_BASE + range.start) as *mut u8,
            (range.end - range.start) as usize,
        )
    };
    HeapInfo {
        phys_start: range.start,
        size: range.end - range.start,
    }
}

/// Bytes currently free in the heap.
pub fn free() -> usize {
    ALLOCATOR.lock().free()
}

/// Bytes currently allocated from the heap.
pub fn used() -> usize {
    ALLOCATOR.lock().used()
}
