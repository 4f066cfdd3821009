//! The interrupt controllers `microvm` has: the local APIC (xAPIC MMIO at 0xfee00000), its
//! timer, the I/O APICs that route device lines to vectors, and the legacy 8259 PICs,
//! which are only masked. Registers per the Intel SDM vol. 3 ch. 10 and the 82093AA
//! datasheet; everything is reached through the loader's uncached device window.
//! Not used under SEV-SNP (see `hw::idle`).

use omega_boot_info::virt;
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
/// Where `microvm` (and every PC) puts the local APIC.
const LAPIC_PHYS: u64 = 0xfee0_0000;

mod reg {
    pub const ID: u64 = 0x20;
    pub const TPR: u64 = 0x80;
    pub const EOI: u64 = 0xb0;
    pub const SVR: u64 = 0xf0;
    pub const LVT_TIMER: u64 = 0x320;
    pub const LVT_LINT0: u64 = 0x350;
    pub const LVT_ERROR: u64 = 0x370;
    pub const TIMER_INITIAL: u64 = 0x380;
    pub const TIMER_CURRENT: u64 = 0x390;
    pub const TIMER_DIVIDE: u64 = 0x3e0;
}
const LVT_MASKED: u32 = 1 << 16;
const SVR_ENABLE: u32 = 1 << 8;
/// Divide configuration 0b0011: the timer counts at the APIC bus clock / 16.
const DIVIDE_BY_16: u32 = 0b0011;

/// `microvm`'s second I/O APIC, GSIs 24..47 (QEMU's `IO_APIC_SECONDARY_ADDRESS`; the first,
/// GSIs 0..23, is at 0xfec00000).
pub const IOAPIC2_PHYS: u64 = 0xfec1_0000;
pub const IOAPIC_PINS: u32 = 24;
const IOAPIC_VERSION: u32 = 0x01;
const IOREDTBL: u32 = 0x10;
const REDIR_LEVEL: u32 = 1 << 15;
const REDIR_MASKED: u32 = 1 << 16;

fn mmio(pa: u64, offset: u64) -> *mut u32 {
    debug_assert!(pa + offset + 4 <= virt::MMIO_PHYS_END && pa >= virt::MMIO_PHYS_START);
    (virt::MMIO_BASE + pa + offset) as *mut u32
}

fn lapic_read(r: u64) -> u32 {
    // SAFETY: the local APIC's register page lies in the device window the loader mapped
    // uncached; `LocalApic::find` checked the APIC sits there in xAPIC mode; reading an
    // APIC register has no side effect the monitor relies on.
    unsafe { mmio(LAPIC_PHYS, r).read_volatile() }
}

fn lapic_write(r: u64, v: u32) {
    // SAFETY: as `lapic_read`; the monitor owns the local APIC (one vCPU, no other user).
    unsafe { mmio(LAPIC_PHYS, r).write_volatile(v) }
}

/// The local APIC, found in xAPIC mode at its usual address.
pub struct LocalApic(());

impl LocalApic {
    /// The local APIC if it is enabled, in xAPIC mode, at 0xfee00000 (where the device
    /// window maps it); `None` otherwise (the caller keeps polling).
    pub fn find() -> Option<LocalApic> {
        // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU with an APIC (all of them);
        // reading it has no side effects. Never called under SNP (where it would #VC).
        let base = unsafe { Msr::new(IA32_APIC_BASE).read() };
        let xapic_at_default = base & APIC_BASE_ENABLE != 0
            && base & APIC_BASE_X2APIC == 0
            && base & 0x000f_ffff_ffff_f000 == LAPIC_PHYS;
        xapic_at_default.then_some(LocalApic(()))
    }

    /// Software-enables the APIC: every priority accepted, LINT0 (the 8259's ExtINT path)
    /// and error interrupts masked, the timer masked and stopped, `spurious` as the
    /// spurious vector.
    pub fn enable(&self, spurious: u8) {
        lapic_write(reg::LVT_LINT0, LVT_MASKED);
        lapic_write(reg::LVT_ERROR, LVT_MASKED);
        lapic_write(reg::LVT_TIMER, LVT_MASKED);
        lapic_write(reg::TIMER_INITIAL, 0);
        lapic_write(reg::TIMER_DIVIDE, DIVIDE_BY_16);
        lapic_write(reg::TPR, 0);
        lapic_write(reg::SVR, SVR_ENABLE | u32::from(spurious));
    }

    /// This CPU's APIC ID (the I/O APIC's destination).
    pub fn id(&self) -> u8 {
        (lapic_read(reg::ID) >> 24) as u8
    }

    /// Starts the timer counting down from `count` with its interrupt masked (for
    /// calibration); [`LocalApic::elapsed`] tells how far it got.
    pub fn start_masked(&self, count: u32) {
        lapic_write(reg::LVT_TIMER, LVT_MASKED);
        lapic_write(reg::TIMER_INITIAL, count);
    }

    /// Counts since `start_masked(count)`.
    pub fn elapsed(&self, count: u32) -> u32 {
        count - lapic_read(reg::TIMER_CURRENT).min(count)
    }

    /// One-shot: `vector` after `count` timer counts.
    pub fn arm_oneshot(&self, vector: u8, count: u32) {
        lapic_write(reg::LVT_TIMER, u32::from(vector));
        lapic_write(reg::TIMER_INITIAL, count);
    }

    /// Stops the timer (a zero initial count stops it, SDM 10.5.4).
    pub fn stop_timer(&self) {
        lapic_write(reg::TIMER_INITIAL, 0);
    }
}

/// End of interrupt, from a handler (level-triggered I/O APIC lines are re-armed by it).
pub fn eoi() {
    lapic_write(reg::EOI, 0);
}

/// An I/O APIC.
pub struct IoApic {
    phys: u64,
}

/// The EOI register of a version-0x20 I/O APIC (82093AA successors, QEMU's default):
/// writing a vector clears the Remote IRR of the lines routed to it.
const IOAPIC_EOI: u64 = 0x40;

/// Directed end of interrupt to the I/O APIC at `phys` (as [`IoApic::directed_eoi`] says
/// it supports), from a handler.
pub fn ioapic_eoi(phys: u64, vector: u8) {
    // SAFETY: the EOI register of an I/O APIC `IoApic::probe` found at `phys`, in the
    // uncached device window; the write only clears Remote IRR bits for `vector`.
    unsafe { mmio(phys, IOAPIC_EOI).write_volatile(u32::from(vector)) }
}

impl IoApic {
    /// The I/O APIC at `phys` if one answers there with QEMU's 24 pins (an empty address
    /// reads as 0 or all-ones, neither of which passes).
    pub fn probe(phys: u64) -> Option<IoApic> {
        let io = IoApic { phys };
        let version = io.read(IOAPIC_VERSION);
        let pins = ((version >> 16) & 0xff) + 1;
        let ok = matches!(version & 0xff, 0x11 | 0x20) && pins == IOAPIC_PINS;
        ok.then_some(io)
    }

    /// Where to send a directed EOI ([`ioapic_eoi`]): `Some(phys)` for a version-0x20
    /// I/O APIC, which has the EOI register.
    pub fn directed_eoi(&self) -> Option<u64> {
        (self.read(IOAPIC_VERSION) & 0xff == 0x20).then_some(self.phys)
    }

    fn read(&self, index: u32) -> u32 {
        // SAFETY: IOREGSEL (offset 0) and IOWIN (0x10) of an I/O APIC address in the
        // uncached device window; the index write selects, the read has no side effect.
        unsafe {
            mmio(self.phys, 0).write_volatile(index);
            mmio(self.phys, 0x10).read_volatile()
        }
    }

    fn write(&self, index: u32, value: u32) {
        // SAFETY: as `read`; the monitor is the I/O APIC's only user.
        unsafe {
            mmio(self.phys, 0).write_volatile(index);
            mmio(self.phys, 0x10).write_volatile(value);
        }
    }

    /// Routes `pin` (level-triggered, active high: a virtio-mmio line) to `vector` on the
    /// APIC `dest`, unmasked.
    pub fn route_level(&self, pin: u32, vector: u8, dest: u8) {
        let index = IOREDTBL + 2 * pin;
        // Masked while the halves are inconsistent.
        self.write(index, REDIR_MASKED);
        self.write(index + 1, u32::from(dest) << 24);
        self.write(index, REDIR_LEVEL | u32::from(vector));
    }
}

/// Masks every line of both 8259 PICs. Left as reset, the PIC would deliver the PIT's
/// IRQ 0 through LINT0 as vector 0 (`#DE`) once interrupts are on.
pub fn mask_legacy_pic() {
    // SAFETY: OCW1 writes to the PICs' data ports only set their interrupt masks; the
    // monitor uses no PIC line.
    unsafe {
        Port::<u8>::new(0x21).write(0xff);
        Port::<u8>::new(0xa1).write(0xff);
    }
}
