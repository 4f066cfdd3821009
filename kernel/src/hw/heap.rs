//! The kernel heap: `talc` (binned free lists: allocation and free in constant time however
//! many blocks the agents hold) over the start of the largest free RAM range, reached
//! through the direct map.
//!
//! It replaced `linked_list_allocator`, whose allocation and free walk the whole free list:
//! with 1 000 agents' stores and queues in the heap, they took half of the monitor's time
//! under load (profile in `docs/monitor.md`).

use omega_boot_info::{BootInfo, PhysRange, virt};
use omega_kernel::heap_size::heap_size;
use talc::{ErrOnOom, Span, Talc, Talck};

#[global_allocator]
static ALLOCATOR: Talck<spinning_top::RawSpinlock, ErrOnOom> = Talc::new(ErrOnOom).lock();

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
    let base = (virt::DIRECT_MAP_BASE + range.start) as *mut u8;
    let size = (range.end - range.start) as usize;
    // SAFETY: the range is usable RAM that overlaps no reserved range (loader memory,
    // kernel image, stack), the platform has accepted it, it is mapped writable in the
    // direct map, nothing else refers to it, and `init` runs once, before any allocation.
    let claimed = unsafe { ALLOCATOR.lock().claim(Span::from_base_size(base, size)) };
    if claimed.is_err() {
        crate::monitor::fatal("heap", "the allocator could not claim its range");
    }
    HeapInfo {
        phys_start: range.start,
        size: range.end - range.start,
    }
}

/// Bytes currently free in the heap.
pub fn free() -> usize {
    ALLOCATOR.lock().get_counters().available_bytes
}

/// Bytes currently allocated from the heap.
pub fn used() -> usize {
    ALLOCATOR.lock().get_counters().allocated_bytes
}
