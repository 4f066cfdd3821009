//! Physical memory after boot: the frame allocator and the pool of pages shared with the
//! host for DMA.

use omega_boot_info::{PhysRange, virt};
use omega_kernel::frames::{FRAME, FrameAllocator, FrameError};
use omega_kernel::platform::{Platform, PlatformError};

/// Pages in the shared DMA pool (1 MiB): virtio rings and bounce buffers live here.
pub const SHARED_POOL_PAGES: u64 = 256;

/// Pages the host may read and write. Nothing secret may ever be placed here.
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code, reason = "buffers are handed out to virtio (issue 7) and the test hooks"))]
pub struct SharedPool {
    pub range: PhysRange,
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

impl SharedPool {
    /// Takes frames from `frames` and converts them to shared.
    pub fn new(frames: &mut FrameAllocator, platform: &mut dyn Platform) -> Result<SharedPool, PoolError> {
        let start = frames.alloc(SHARED_POOL_PAGES, 2 << 20).map_err(PoolError::Frames)?;
        let range = PhysRange { start, end: start + SHARED_POOL_PAGES * FRAME };
        // Zero while still private, so nothing left in these frames reaches the host.
        // SAFETY: the frames were just allocated to us and are mapped RW in the direct map.
        unsafe { core::ptr::write_bytes((virt::DIRECT_MAP_BASE + start) as *mut u8, 0, (range.end - start) as usize) };
        platform.share(range).map_err(PoolError::Platform)?;
        let mut pool = FrameAllocator::new();
        pool.add(range).map_err(PoolError::Frames)?;
        Ok(SharedPool { range, frames: pool })
    }

    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code, reason = "used by virtio (issue 7) and the test hooks"))]
    /// A shared buffer of `pages` pages: its physical address and a slice through the
    /// direct map.
    pub fn alloc(&mut self, pages: u64) -> Result<(u64, &'static mut [u8]), FrameError> {
        let pa = self.frames.alloc(pages, FRAME)?;
        // SAFETY: these pool frames are handed out once (the allocator guarantees it) and
        // stay mapped in the direct map for the kernel's lifetime.
        let buf = unsafe { core::slice::from_raw_parts_mut((virt::DIRECT_MAP_BASE + pa) as *mut u8, (pages * FRAME) as usize) };
        Ok((pa, buf))
    }
}
