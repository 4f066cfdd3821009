//! The kernel's own GDT, TSS (with a separate stack for double faults) and IDT: the 32
//! exception vectors, the device-interrupt vectors of `omega_arch::interrupts` (which stop
//! the VM until the idle code registers a handler, see `hw::idle`) and the APIC's spurious
//! vector; every other gate is not present (`#NP`, a reported stop).

use core::cell::UnsafeCell;

use omega_arch::exceptions::{self, Gate, Idt};
use omega_arch::interrupts;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

/// A static written once during single-threaded boot, before interrupts are enabled.
struct BootCell<T>(UnsafeCell<T>);

// SAFETY: the kernel runs on one CPU; every BootCell is written only in `init`, before any
// interrupt or other CPU could observe it, and read-only afterwards (by the CPU itself).
unsafe impl<T> Sync for BootCell<T> {}

const DF_STACK_SIZE: usize = 16 * 1024;
/// IST slot (1-based in the gate) for the double-fault stack.
const DF_IST: u8 = 1;

#[repr(align(16))]
struct Stack(#[allow(dead_code, reason = "only the CPU uses the stack")] [u8; DF_STACK_SIZE]);

static DF_STACK: BootCell<Stack> = BootCell(UnsafeCell::new(Stack([0; DF_STACK_SIZE])));
static TSS: BootCell<TaskStateSegment> = BootCell(UnsafeCell::new(TaskStateSegment::new()));
static GDT: BootCell<GlobalDescriptorTable> =
    BootCell(UnsafeCell::new(GlobalDescriptorTable::new()));
static IDT: BootCell<Idt<256>> = BootCell(UnsafeCell::new(Idt {
    gates: [Gate::zero(); 256],
}));

/// Loads the GDT, TSS and IDT. Call once, first thing.
pub fn init() {
    // SAFETY: single-threaded boot (see BootCell); each static is borrowed mutably only
    // here, once, and then handed to the CPU, which needs it for the kernel's lifetime.
    unsafe {
        let tss = &mut *TSS.0.get();
        let df_top = VirtAddr::from_ptr(DF_STACK.0.get()) + DF_STACK_SIZE as u64;
        tss.interrupt_stack_table[usize::from(DF_IST - 1)] = df_top;

        let gdt = &mut *GDT.0.get();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(&*TSS.0.get()));
        (*GDT.0.get()).load();
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(tss_sel);

        let idt = &mut *IDT.0.get();
        exceptions::fill(idt, DF_IST);
        interrupts::fill_interrupts(idt);
        exceptions::load(&*IDT.0.get());
    }
}
