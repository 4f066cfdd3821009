//! Physical memory after boot: the frame allocator and the pool of pages shared with the
//! host for DMA.

use core::ptr::NonNull;

use omega_boot_info::{PhysRange, virt};
use omega_kernel::frames::{FRAME, FrameAllocator, FrameError};
use omega_kernel::platform::{Platform, PlatformError};
use spin::Mutex;

/// Pages in the shared DMA pool (2 MiB): virtio rings, bounce buffers and the SNP guest
/// message pages live here. One whole 2 MiB page, because under SNP sharing flips the
/// C-bit of a 2 MiB direct-map page; a smaller pool would share its neighbours too.
pub const SHARED_POOL_PAGES: u64 = 512;

/// Pages the host may read and write. Nothing secret may ever be placed here.
pub struct SharedPool {
    frames: FrameAllocator,
}

#[derive(Debug)]
pub enum PoolError {
    Frames(FrameError),
    Platform(PlatformError),
}

impl core::fmt::Display for PoolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PoolError::Frames(e) => write!(f, "{e}"),
            PoolError::Platform(e) => write!(f, "{e}"),
        }
    }
}

/// The one shared pool; virtio's `Hal` reaches it from static functions.
static SHARED: Mutex<Option<SharedPool>> = Mutex::new(None);

/// Takes frames from `frames`, converts them to shared and makes them the DMA pool.
pub fn init_shared_pool(
    frames: &mut FrameAllocator,
    platform: &mut dyn Platform,
) -> Result<PhysRange, PoolError> {
    let start = frames
        .alloc(SHARED_POOL_PAGES, 2 << 20)
        .map_err(PoolError::Frames)?;
    let range = PhysRange {
        start,
        end: start + SHARED_POOL_PAGES * FRAME,
    };
    // Zero while still private, so nothing left in these frames reaches the host.
    // SAFETY: the frames were just allocated to us and are mapped RW in the direct map.
    unsafe {
        core::ptr::write_bytes(
            (virt::DIRECT_MAP_BASE + start) as *mut u8,
            0,
            (range.end - start) as usize,
        )
    };
    platform.share(range).map_err(PoolError::Platform)?;
    let mut pool = FrameAllocator::new();
    pool.add(range).map_err(PoolError::Frames)?;
    *SHARED.lock() = Some(SharedPool { frames: pool });
    Ok(range)
}

/// `pages` zeroed shared pages: physical address and direct-map pointer.
pub fn shared_alloc(pages: u64) -> Result<(u64, NonNull<u8>), FrameError> {
    let mut guard = SHARED.lock();
    let pool = guard.as_mut().ok_or(FrameError::OutOfMemory { pages })?;
    let pa = pool.frames.alloc(pages, FRAME)?;
    let va = (virt::DIRECT_MAP_BASE + pa) as *mut u8;
    // SAFETY: pool frames are handed out once (the allocator guarantees it) and are mapped
    // RW in the direct map; zeroing them gives the device no stale data.
    unsafe { core::ptr::write_bytes(va, 0, (pages * FRAME) as usize) };
    Ok((pa, NonNull::new(va).expect("direct map is never at 0")))
}

/// Returns pages from [`shared_alloc`].
pub fn shared_free(pa: u64, pages: u64) -> Result<(), FrameError> {
    let mut guard = SHARED.lock();
    let pool = guard.as_mut().ok_or(FrameError::DoubleFree { start: pa })?;
    pool.frames.free(pa, pages)
}
