//! The kernel heap: `linked_list_allocator` over the largest free RAM range, reached
//! through the direct map.

use linked_list_allocator::LockedHeap;
use omega_boot_info::{BootInfo, virt};

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Heap bytes: everything free up to this cap; later issues give the rest to a frame
/// allocator.
const MAX_HEAP: u64 = 64 << 20;

/// Where the heap went.
pub struct HeapInfo {
    pub phys_start: u64,
    pub size: u64,
}

/// Sets up the heap over free RAM; `None` if there is none.
pub fn init(info: &BootInfo) -> Option<HeapInfo> {
    let range = info.largest_free_range()?;
    let size = (range.end - range.start).min(MAX_HEAP);
    if size < 1 << 20 {
        return None;
    }
    // SAFETY: the range is usable RAM that overlaps no reserved range (loader memory,
    // kernel image, stack), it is mapped writable in the direct map, and `init` runs once.
    unsafe { ALLOCATOR.lock().init((virt::DIRECT_MAP_BASE + range.start) as *mut u8, size as usize) };
    Some(HeapInfo { phys_start: range.start, size })
}

/// Bytes currently free in the heap.
pub fn free() -> usize {
    ALLOCATOR.lock().free()
}
