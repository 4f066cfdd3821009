//! The host channel's transport (`omega_kernel::channel::Transport`): serial port 1 of a multiport virtio console over
//! virtio-mmio on QEMU's `microvm`, driven by polling; its interrupt only wakes the idle
//! vCPU (`hw::idle`), so the device asks for one only when it fills a receive buffer.
//!
//! `virtio-drivers` provides the MMIO transport and the split virtqueues (which keep
//! shadow descriptors, so the host cannot redirect them). The console driver on top is
//! ours: the crate's own asserts on lengths the host reports, which would let the host
//! panic the monitor. Here every length from the host is checked and an impossible one
//! is an error the caller reports.
//!
//! All DMA goes through [`OmegaHal`]: rings live in the shared pool, and every buffer is
//! bounced through shared pages, so the device never sees (or writes) private memory. The
//! same path runs with and without SNP.

use alloc::boxed::Box;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use omega_arch::serial_println;
use omega_boot_info::virt;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

use omega_kernel::channel;

use crate::hw::shared_pool;

/// microvm's virtio-mmio slots: 512 bytes each from 0xfeb00000.
const MMIO_SLOTS_BASE: u64 = 0xfeb0_0000;
const MMIO_SLOT_SIZE: u64 = 0x200;
const MMIO_SLOTS: u64 = 32;
const VIRTIO_MAGIC: u32 = 0x7472_6976;
const DEVICE_CONSOLE: u32 = 3;
/// virtio-mmio InterruptStatus and InterruptACK (virtio 1.2, 4.2.2).
const REG_INTERRUPT_STATUS: u64 = 0x60;
const REG_INTERRUPT_ACK: u64 = 0x64;
/// No channel device (yet).
const NO_SLOT: u64 = u64::MAX;

/// The channel device's slot, for its interrupt handler: set once by [`probe`].
static CHANNEL_SLOT: AtomicU64 = AtomicU64::new(NO_SLOT);
/// Receives that found input (bytes, or a bad length): `hw::idle` halts only after a
/// run of receives that found none.
static RX_ACTIVITY: AtomicU64 = AtomicU64::new(0);

const QUEUE_SIZE: usize = 8;
const RX_SLOTS: usize = 4;
const RX_BUF: usize = 4096;
/// Bytes per transmit descriptor.
pub const TX_CHUNK: usize = 16 * 1024;

bitflags::bitflags! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Features: u64 {
        const MULTIPORT = 1 << 1;
        const VERSION_1 = 1 << 32;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("no virtio console on the virtio-mmio bus")]
    NoDevice,
    #[error("virtio: {0}")]
    Virtio(#[from] virtio_drivers::Error),
    /// The host reported a receive length that cannot be (0, or past the buffer).
    #[error("host reported an impossible receive length {0}")]
    BadLength(u32),
    /// The host completed a buffer we never gave it.
    #[error("host completed unknown descriptor {0}")]
    UnknownToken(u16),
    /// The console does not offer multiple ports (a virtconsole instead of a serial port).
    #[error("the virtio console has no multiport support (use -device virtserialport,nr=1)")]
    NoMultiport,
    /// The device never added the channel port.
    #[error("the virtio console never added serial port {}", CHANNEL_PORT)]
    NoPort,
}

/// DMA through the shared pool; buffers are bounced.
pub struct OmegaHal;

/// Most bounce buffers in flight at once: every descriptor of the four queues.
const MAX_BOUNCES: usize = 4 * QUEUE_SIZE;

/// The bounce buffers the device holds now (physical address, pages): after a device reset
/// it never returns them, so [`Console::reset`] frees them from here.
static BOUNCES: spin::Mutex<heapless::Vec<(u64, u64), MAX_BOUNCES>> =
    spin::Mutex::new(heapless::Vec::new());

/// Frees every bounce buffer still lent to the device (after a reset: it holds none).
fn free_bounces() {
    for (pa, pages) in BOUNCES.lock().drain(..) {
        let _ = shared_pool::free(pa, pages);
    }
}

fn pages_for(len: usize) -> u64 {
    len.div_ceil(PAGE_SIZE).max(1) as u64
}

// SAFETY: dma_alloc returns zeroed, page-aligned, exclusively owned pool pages; share
// returns the physical address of a bounce copy that stays valid until unshare; no
// pointer handed out aliases another live allocation.
unsafe impl Hal for OmegaHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // Running out is a monitor bug (fixed ring count), not something the host controls.
        shared_pool::alloc(pages as u64).expect("shared DMA pool exhausted")
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        match shared_pool::free(paddr, pages as u64) {
            Ok(()) => 0,
            Err(_) => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let end = paddr
            .checked_add(size as u64)
            .expect("MMIO range overflows");
        assert!(
            paddr >= virt::MMIO_PHYS_START && end <= virt::MMIO_PHYS_END,
            "MMIO outside the mapped window"
        );
        NonNull::new((virt::MMIO_BASE + paddr) as *mut u8).expect("MMIO window is never at 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        let (pa, bounce) = shared_pool::alloc(pages_for(len)).expect("shared DMA pool exhausted");
        // Never full: each descriptor lends at most one bounce buffer (one buffer per add).
        let _ = BOUNCES.lock().push((pa, pages_for(len)));
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller guarantees `buffer` is valid for `len` bytes; the bounce
            // pages are fresh and at least `len` long.
            unsafe {
                core::ptr::copy_nonoverlapping(buffer.as_ptr() as *const u8, bounce.as_ptr(), len)
            };
        }
        pa
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let len = buffer.len();
        if direction != BufferDirection::DriverToDevice {
            // SECURITY: one copy out of shared memory; later host writes to the bounce page
            // cannot change what the monitor already read (no double fetch).
            // SAFETY: `paddr` is the bounce buffer from `share` (mapped in the direct map,
            // `len` bytes), and the caller guarantees `buffer` is valid for writes.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    (virt::DIRECT_MAP_BASE + paddr) as *const u8,
                    buffer.as_ptr() as *mut u8,
                    len,
                )
            };
        }
        BOUNCES.lock().retain(|&(pa, _)| pa != paddr);
        let _ = shared_pool::free(paddr, pages_for(len));
    }
}

/// virtio-console control messages (virtio spec 5.3.6.2).
mod ctl {
    pub const DEVICE_READY: u16 = 0;
    pub const DEVICE_ADD: u16 = 1;
    pub const PORT_READY: u16 = 3;
    pub const PORT_OPEN: u16 = 6;
    pub const LEN: usize = 8;
}

/// The channel is serial port 1 (`-device virtserialport,nr=1`). Port 0 would be a
/// virtconsole, whose data QEMU drops when the host socket is full; a serial port is
/// throttled instead, so backpressure reaches the guest and nothing is lost.
pub const CHANNEL_PORT: u32 = 1;
const CTRL_RX_QUEUE: u16 = 2;
const CTRL_TX_QUEUE: u16 = 3;
const PORT_RX_QUEUE: u16 = 2 * CHANNEL_PORT as u16 + 2;
const PORT_TX_QUEUE: u16 = 2 * CHANNEL_PORT as u16 + 3;
const CTRL_SLOTS: usize = 4;
const CTRL_BUF: usize = 128;
/// Control-queue polls to wait for the device to add and open the port.
const SETUP_SPINS: u64 = 5_000_000;
/// Polls of the transmit queue after the host side went away before the buffer in flight
/// counts as dropped by the device.
const LOST_SEND_SPINS: u64 = 100_000;

/// A device-to-driver queue with `SLOTS` buffers of `LEN` bytes, each either posted to
/// the device or back with us.
struct RxQueue<const LEN: usize, const SLOTS: usize> {
    queue: VirtQueue<OmegaHal, QUEUE_SIZE>,
    index: u16,
    bufs: [Box<[u8; LEN]>; SLOTS],
    /// The descriptor each posted buffer went out with.
    tokens: [Option<u16>; SLOTS],
}

impl<const LEN: usize, const SLOTS: usize> RxQueue<LEN, SLOTS> {
    fn new(transport: &mut MmioTransport<'static>, index: u16) -> Result<Self, ConsoleError> {
        Ok(RxQueue {
            queue: VirtQueue::new(transport, index, false, false)?,
            index,
            bufs: core::array::from_fn(|_| Box::new([0u8; LEN])),
            tokens: [None; SLOTS],
        })
    }

    /// Hands buffer `slot` to the device.
    fn post(
        &mut self,
        transport: &mut MmioTransport<'static>,
        slot: usize,
    ) -> Result<(), ConsoleError> {
        // SAFETY: the buffer is owned by `self` and not touched until `pop_used` returns it.
        let token = unsafe { self.queue.add(&[], &mut [self.bufs[slot].as_mut_slice()])? };
        self.tokens[slot] = Some(token);
        if self.queue.should_notify() {
            transport.notify(self.index);
        }
        Ok(())
    }

    /// Takes back the next buffer the device filled: its slot and the length the device
    /// reports (the host's word, for the caller to check). The buffer stays with us until
    /// posted again.
    fn take_filled(&mut self) -> Result<Option<(usize, u32)>, ConsoleError> {
        let Some(token) = self.queue.peek_used() else {
            return Ok(None);
        };
        let slot = self
            .tokens
            .iter()
            .position(|t| *t == Some(token))
            .ok_or(ConsoleError::UnknownToken(token))?;
        // SAFETY: `token` is the descriptor `post` added with exactly this buffer, passed
        // back unchanged as `pop_used` requires; the device is done with it.
        let len = unsafe {
            self.queue
                .pop_used(token, &[], &mut [self.bufs[slot].as_mut_slice()])?
        };
        self.tokens[slot] = None;
        Ok(Some((slot, len)))
    }
}

/// The channel device: one port of a multiport virtio console.
pub struct Console {
    transport: MmioTransport<'static>,
    rx: RxQueue<RX_BUF, RX_SLOTS>,
    tx: VirtQueue<OmegaHal, QUEUE_SIZE>,
    ctrl_rx: RxQueue<CTRL_BUF, CTRL_SLOTS>,
    ctrl_tx: VirtQueue<OmegaHal, QUEUE_SIZE>,
    /// Slot being read: (slot, next byte, valid length).
    current: Option<(usize, usize, usize)>,
    port_ready: bool,
    /// The host side of the port is open (its chardev is connected).
    pub host_open: bool,
    /// The host side has been open once (the first launcher).
    host_was_open: bool,
    /// Times the host side went away (closed, or opened again without a close we saw).
    host_closes: u64,
    /// Device resets after a send the device dropped (see [`Console::send`]).
    pub resets: u64,
    /// The host side closed and opened again since [`channel::Transport::reconnected`]
    /// last said so: a new launcher attached.
    reopened: bool,
    pub slot: u64,
}

/// Finds the multiport console among microvm's virtio-mmio slots and opens port 1.
pub fn probe() -> Result<Console, ConsoleError> {
    for slot in 0..MMIO_SLOTS {
        let pa = MMIO_SLOTS_BASE + slot * MMIO_SLOT_SIZE;
        let va = (virt::MMIO_BASE + pa) as *mut u32;
        // SAFETY: the slot lies in the MMIO window the loader mapped uncached; reading the
        // magic and device-id registers has no side effects.
        let (magic, device) = unsafe { (va.read_volatile(), va.add(2).read_volatile()) };
        if magic != VIRTIO_MAGIC || device != DEVICE_CONSOLE {
            continue;
        }
        let header = NonNull::new(va as *mut VirtIOHeader).expect("not null");
        // SAFETY: a virtio-mmio register block of MMIO_SLOT_SIZE bytes, mapped for the
        // kernel's lifetime and owned by this driver alone.
        let transport = unsafe { MmioTransport::new(header, MMIO_SLOT_SIZE as usize) }
            .map_err(|_| ConsoleError::NoDevice)?;
        if transport.device_type() != DeviceType::Console {
            continue;
        }
        let console = Console::new(transport, slot)?;
        CHANNEL_SLOT.store(slot, Ordering::Release);
        return Ok(console);
    }
    Err(ConsoleError::NoDevice)
}

/// The virtio-mmio slot of the channel device, once [`probe`] found it (slot n raises
/// its own interrupt line; `hw::idle` routes it).
pub fn channel_slot() -> Option<u64> {
    let slot = CHANNEL_SLOT.load(Ordering::Acquire);
    (slot != NO_SLOT).then_some(slot)
}

/// A count that changes whenever a receive on the channel found input.
pub fn rx_activity() -> u64 {
    RX_ACTIVITY.load(Ordering::Relaxed)
}

/// Acknowledges the channel device's interrupt so that its (level-triggered) line drops;
/// for the interrupt handler, so register access only: the queues are the poller's.
pub fn ack_interrupt() {
    let Some(slot) = channel_slot() else {
        return;
    };
    let regs = virt::MMIO_BASE + MMIO_SLOTS_BASE + slot * MMIO_SLOT_SIZE;
    // SAFETY: the registers of the slot `probe` found the console in, inside the uncached
    // device window; InterruptStatus is read-only and writing its value to InterruptACK
    // only clears those interrupt bits (the queues are not touched).
    unsafe {
        let status = ((regs + REG_INTERRUPT_STATUS) as *const u32).read_volatile();
        if status != 0 {
            ((regs + REG_INTERRUPT_ACK) as *mut u32).write_volatile(status);
        }
    }
}

fn control(id: u32, event: u16, value: u16) -> [u8; ctl::LEN] {
    let mut m = [0u8; ctl::LEN];
    m[0..4].copy_from_slice(&id.to_le_bytes());
    m[4..6].copy_from_slice(&event.to_le_bytes());
    m[6..8].copy_from_slice(&value.to_le_bytes());
    m
}

/// The four queues, set up on a device that has just been reset.
struct Queues {
    rx: RxQueue<RX_BUF, RX_SLOTS>,
    tx: VirtQueue<OmegaHal, QUEUE_SIZE>,
    ctrl_rx: RxQueue<CTRL_BUF, CTRL_SLOTS>,
    ctrl_tx: VirtQueue<OmegaHal, QUEUE_SIZE>,
}

impl Queues {
    /// Initialises the device (`begin_init` resets it first) and its queues.
    fn new(transport: &mut MmioTransport<'static>) -> Result<Queues, ConsoleError> {
        let features = transport.begin_init(Features::VERSION_1 | Features::MULTIPORT);
        if !features.contains(Features::MULTIPORT) {
            return Err(ConsoleError::NoMultiport);
        }
        let ctrl_rx = RxQueue::new(transport, CTRL_RX_QUEUE)?;
        let mut ctrl_tx = VirtQueue::new(transport, CTRL_TX_QUEUE, false, false)?;
        let rx = RxQueue::new(transport, PORT_RX_QUEUE)?;
        let mut tx = VirtQueue::new(transport, PORT_TX_QUEUE, false, false)?;
        // Sends wait for the device in place: no interrupt needed when it is done.
        tx.set_dev_notify(false);
        ctrl_tx.set_dev_notify(false);
        transport.finish_init();
        Ok(Queues {
            rx,
            tx,
            ctrl_rx,
            ctrl_tx,
        })
    }
}

impl Console {
    fn new(mut transport: MmioTransport<'static>, slot: u64) -> Result<Console, ConsoleError> {
        let Queues {
            rx,
            tx,
            ctrl_rx,
            ctrl_tx,
        } = Queues::new(&mut transport)?;
        let mut c = Console {
            transport,
            rx,
            tx,
            ctrl_rx,
            ctrl_tx,
            current: None,
            port_ready: false,
            host_open: false,
            host_was_open: false,
            host_closes: 0,
            reopened: false,
            resets: 0,
            slot,
        };
        c.bring_up()?;
        Ok(c)
    }

    /// Posts every receive buffer, tells the device the driver is ready and waits for it
    /// to add (and so open) the channel port.
    fn bring_up(&mut self) -> Result<(), ConsoleError> {
        for i in 0..CTRL_SLOTS {
            self.ctrl_rx.post(&mut self.transport, i)?;
        }
        for i in 0..RX_SLOTS {
            self.rx.post(&mut self.transport, i)?;
        }
        self.send_control(control(0, ctl::DEVICE_READY, 1))?;
        for _ in 0..SETUP_SPINS {
            self.poll_control()?;
            if self.port_ready {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(ConsoleError::NoPort)
    }

    /// Resets the device and brings the port up again, for a send the device will never
    /// give back (see [`Console::send`]). Everything in flight either way is dropped, as
    /// on any reconnect; the host's side of the port is closed until QEMU says otherwise,
    /// and its next open counts as a reconnect.
    fn reset(&mut self) -> Result<(), ConsoleError> {
        self.transport.set_status(DeviceStatus::empty());
        // The device holds no buffer now: what it was lent goes back to the pool.
        free_bounces();
        let Queues {
            rx,
            tx,
            ctrl_rx,
            ctrl_tx,
        } = Queues::new(&mut self.transport)?;
        // The old rings are freed here, after the reset: the device no longer uses them.
        (self.rx, self.tx, self.ctrl_rx, self.ctrl_tx) = (rx, tx, ctrl_rx, ctrl_tx);
        self.current = None;
        self.port_ready = false;
        self.host_open = false;
        self.resets += 1;
        self.bring_up()
    }

    fn send_control(&mut self, m: [u8; ctl::LEN]) -> Result<(), ConsoleError> {
        self.ctrl_tx
            .add_notify_wait_pop(&[&m], &mut [], &mut self.transport)?;
        Ok(())
    }

    /// Handles the device's control messages: port added, opened, closed.
    fn poll_control(&mut self) -> Result<(), ConsoleError> {
        while let Some((slot, len)) = self.ctrl_rx.take_filled()? {
            let m = *self.ctrl_rx.bufs[slot];
            self.ctrl_rx.post(&mut self.transport, slot)?;
            // SECURITY: a control message shorter than its header is the host's error.
            if (len as usize) < ctl::LEN || len as usize > CTRL_BUF {
                return Err(ConsoleError::BadLength(len));
            }
            let id = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
            let event = u16::from_le_bytes([m[4], m[5]]);
            let value = u16::from_le_bytes([m[6], m[7]]);
            match (event, id == CHANNEL_PORT) {
                (ctl::DEVICE_ADD, true) => {
                    self.send_control(control(id, ctl::PORT_READY, 1))?;
                    // We are ready to use the port: tell the host it is open on our side.
                    self.send_control(control(id, ctl::PORT_OPEN, 1))?;
                    self.port_ready = true;
                }
                // Ports other than ours are declined.
                (ctl::DEVICE_ADD, false) => self.send_control(control(id, ctl::PORT_READY, 0))?,
                (ctl::PORT_OPEN, true) => {
                    // QEMU sends PORT_OPEN 0 when the launcher's socket closes and 1 when a
                    // new one connects (the chardev is a listening socket).
                    let open = value != 0;
                    // An open while open: the close between them was lost (the device
                    // drops control messages when no buffer is posted).
                    if self.host_was_open && (!open || self.host_open) {
                        self.host_closes += 1;
                    }
                    self.reopened |= open && !self.host_open && self.host_was_open;
                    self.host_was_open |= open;
                    self.host_open = open;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Copies received bytes into `out`; returns how many (0 when nothing is pending).
    pub fn recv(&mut self, out: &mut [u8]) -> Result<usize, ConsoleError> {
        if self.current.is_none() {
            self.poll_control()?;
            let Some((slot, len)) = self.rx.take_filled()? else {
                return Ok(0);
            };
            // SECURITY: the length is the host's word; check it before indexing with it.
            if len == 0 || len as usize > RX_BUF {
                self.rx.post(&mut self.transport, slot)?;
                return Err(ConsoleError::BadLength(len));
            }
            self.current = Some((slot, 0, len as usize));
        }
        let (slot, pos, len) = self.current.expect("set above");
        let n = out.len().min(len - pos);
        out[..n].copy_from_slice(&self.rx.bufs[slot][pos..pos + n]);
        if pos + n == len {
            self.current = None;
            self.rx.post(&mut self.transport, slot)?;
        } else {
            self.current = Some((slot, pos + n, len));
        }
        Ok(n)
    }

    /// Sends all of `data`, waiting for the device to take each chunk (QEMU throttles a
    /// serial port whose host side is full, so this is where backpressure lands).
    pub fn send(&mut self, data: &[u8]) -> Result<(), ConsoleError> {
        for chunk in data.chunks(TX_CHUNK) {
            if !self.send_chunk(chunk)? {
                // The host went away: the rest would go to nobody (or, worse, start the
                // next host's stream mid-message).
                return Ok(());
            }
        }
        Ok(())
    }

    /// Hands `chunk` to the device and waits until it gives the buffer back. False when the
    /// host side went away first and the device had to be reset: QEMU's virtio-serial,
    /// when the host closes while it holds a buffer it could not write (the port was
    /// throttled), drops that buffer without returning it (`discard_throttle_data`
    /// detaches it); waiting for it would hang the monitor for good (a known QEMU
    /// behaviour; Linux guests soft-lock in the same place).
    fn send_chunk(&mut self, chunk: &[u8]) -> Result<bool, ConsoleError> {
        let closes = self.host_closes;
        // SAFETY: `chunk` is only read (bounced into shared pages by `OmegaHal::share`) and
        // stays borrowed until this function returns: after `pop_used` gave it back, or
        // after `reset`, when the device holds no buffer.
        let token = unsafe { self.tx.add(&[chunk], &mut [])? };
        if self.tx.should_notify() {
            self.transport.notify(PORT_TX_QUEUE);
        }
        let mut spins_after_close = 0u64;
        loop {
            if self.tx.can_pop() {
                // SAFETY: the same buffers `add` took above, still valid and untouched.
                unsafe { self.tx.pop_used(token, &[chunk], &mut [])? };
                return Ok(true);
            }
            if self.host_closes == closes {
                self.poll_control()?;
            } else {
                // A close returns queued buffers at once; one it dropped never returns.
                // The grace covers a notification the device has not handled yet.
                spins_after_close += 1;
                if spins_after_close > LOST_SEND_SPINS {
                    serial_println!(
                        "omega: host channel: the host went away holding a send QEMU will never return; device reset"
                    );
                    self.reset()?;
                    return Ok(false);
                }
            }
            core::hint::spin_loop();
        }
    }
}

/// The channel's byte pipe: the serial port, polled.
impl channel::Transport for Console {
    type Error = ConsoleError;

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, ConsoleError> {
        let got = Console::recv(self, buf);
        if !matches!(got, Ok(0)) {
            RX_ACTIVITY.fetch_add(1, Ordering::Relaxed);
        }
        got
    }

    fn send(&mut self, data: &[u8]) -> Result<(), ConsoleError> {
        Console::send(self, data)
    }

    fn reconnected(&mut self) -> bool {
        core::mem::take(&mut self.reopened)
    }
}
