//! The pool of pages shared with the host for DMA (virtio rings, bounce buffers, SNP guest
//! messages), carved out of the frame allocator and shared through the platform.

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

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{0}")]
    Frames(#[from] FrameError),
    #[error("{0}")]
    Platform(#[from] PlatformError),
}

/// The one shared pool; virtio's `Hal` reaches it from static functions.
static SHARED: Mutex<Option<SharedPool>> = Mutex::new(None);

/// Takes frames from `frames`, converts them to shared and makes them the DMA pool.
pub fn init(
    frames: &mut FrameAllocator,
    platform: &mut dyn Platform,
) -> Result<PhysRange, PoolError> {
    let start = frames.alloc(SHARED_POOL_PAGES, 2 << 20)?;
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
    platform.share(range)?;
    let mut pool = FrameAllocator::new();
    pool.add(range)?;
    *SHARED.lock() = Some(SharedPool { frames: pool });
    Ok(range)
}

/// `pages` zeroed shared pages: physical address and direct-map pointer.
pub fn alloc(pages: u64) -> Result<(u64, NonNull<u8>), FrameError> {
    let mut guard = SHARED.lock();
    let pool = guard.as_mut().ok_or(FrameError::OutOfMemory { pages })?;
    let pa = pool.frames.alloc(pages, FRAME)?;
    let va = (virt::DIRECT_MAP_BASE + pa) as *mut u8;
    // SAFETY: pool frames are handed out once (the allocator guarantees it) and are mapped
    // RW in the direct map; zeroing them gives the device no stale data.
    unsafe { core::ptr::write_bytes(va, 0, (pages * FRAME) as usize) };
    Ok((pa, NonNull::new(va).expect("direct map is never at 0")))
}

/// Returns pages from [`alloc`].
pub fn free(pa: u64, pages: u64) -> Result<(), FrameError> {
    let mut guard = SHARED.lock();
    let pool = guard.as_mut().ok_or(FrameError::DoubleFree { start: pa })?;
    pool.frames.free(pa, pages)
}
