//! What a `no_std` agent needs from its runtime library on `wasm32`: a global allocator that
//! grows the linear memory, and a panic handler that logs before trapping.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};

use linked_list_allocator::Heap;

/// A Wasm page.
const PAGE: usize = 65536;
/// Bytes the free list may need beside a block (its docs: at most three words).
const HOLE_BOOKKEEPING: usize = 4 * core::mem::size_of::<usize>();

/// A first-fit free-list heap from `__heap_base` (the end of the stack and static data, as
/// laid out by `wasm-ld`) to the end of linear memory, grown with `memory.grow` as needed:
/// freed memory is reused, so a long-running agent's memory follows its live data. Memory
/// grown by anyone else (a raw `memory.grow`) is not adjacent to the heap and is not used.
pub struct AgentAllocator {
    heap: UnsafeCell<Heap>,
}

// SAFETY: a wasm32-unknown-unknown agent has exactly one thread (the ABI has no threads), so
// the heap is never reached from two threads; `GlobalAlloc` calls do not nest.
unsafe impl Sync for AgentAllocator {}

unsafe extern "C" {
    /// First byte after the stack and static data (defined by `wasm-ld`).
    static __heap_base: u8;
}

impl AgentAllocator {
    pub const fn new() -> Self {
        AgentAllocator {
            heap: UnsafeCell::new(Heap::empty()),
        }
    }

    /// Grows linear memory by at least `bytes` and gives the new pages to `heap`; false when
    /// the monitor refuses (the agent's memory limit) or the pages do not adjoin the heap.
    fn grow(heap: &mut Heap, bytes: usize) -> bool {
        let pages = bytes.div_ceil(PAGE).max(1);
        let old_pages = wasm32::memory_grow(0, pages);
        if old_pages == usize::MAX {
            return false;
        }
        let (start, added) = (old_pages * PAGE, pages * PAGE);
        if heap.bottom().is_null() {
            let base = ptr::addr_of!(__heap_base) as usize;
            // SAFETY: [base, start + added) is linear memory that wasm-ld left to the heap
            // (above stack and data) plus the pages just grown; nothing else uses it, and
            // linear memory lives as long as the agent.
            unsafe { heap.init(base as *mut u8, start + added - base) };
            true
        } else if heap.top() as usize == start {
            // SAFETY: the new pages start exactly at the heap's top and belong to no one else.
            unsafe { heap.extend(added) };
            true
        } else {
            false
        }
    }
}

impl Default for AgentAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: allocations come from `Heap`, which hands out disjoint, suitably aligned blocks
// of memory it owns and takes back only blocks it handed out (the `GlobalAlloc` contract
// holds callers to passing back the same layout).
unsafe impl GlobalAlloc for AgentAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded and not re-entered (see `Sync` above): this is the only
        // reference to the heap while it lives.
        let heap = unsafe { &mut *self.heap.get() };
        loop {
            if !heap.bottom().is_null()
                && let Ok(p) = heap.allocate_first_fit(layout)
            {
                return p.as_ptr();
            }
            // Room for the block, its alignment padding and the free list's bookkeeping.
            let need = layout.size() + layout.align() + HOLE_BOOKKEEPING;
            if !Self::grow(heap, need) {
                return ptr::null_mut();
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`, the only reference to the heap.
        let heap = unsafe { &mut *self.heap.get() };
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` with this `layout` (GlobalAlloc contract).
            unsafe { heap.deallocate(p, layout) };
        }
    }
}

#[cfg(feature = "allocator")]
#[global_allocator]
static ALLOCATOR: AgentAllocator = AgentAllocator::new();

/// Logs the panic (location and message, cut to a log line) and traps: the monitor reports
/// the trap and applies the agent's restart policy.
#[cfg(feature = "panic-handler")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write as _;
    let mut line = LineBuf::default();
    let _ = write!(line, "{info}");
    let _ = crate::log(crate::Level::Error, line.as_str());
    wasm32::unreachable()
}

/// A log line built without allocating (the panic may be an allocation failure).
#[cfg(feature = "panic-handler")]
struct LineBuf {
    buf: [u8; omega_agent_abi::MAX_LOG],
    len: usize,
}

#[cfg(feature = "panic-handler")]
impl Default for LineBuf {
    fn default() -> Self {
        LineBuf {
            buf: [0; omega_agent_abi::MAX_LOG],
            len: 0,
        }
    }
}

#[cfg(feature = "panic-handler")]
impl LineBuf {
    fn as_str(&self) -> &str {
        // Only whole `str`s are ever copied in (see `write_str`).
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("panic")
    }
}

#[cfg(feature = "panic-handler")]
impl core::fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}
