//! CPU exceptions: assembly entry stubs for vectors 0..32 that save the registers and call
//! `omega_exception`, which prints a diagnosis on the serial port (only where
//! [`crate::fatal::disclosure`] allows: never under SNP) and stops the VM
//! ([`crate::fatal::stop_with`], termination code `EXCEPTION` under SNP). No exception but
//! #VC is resumed: in the monitor every other one is a bug or an attack, and stopping beats
//! running on with corrupted state. #VC is how an SNP guest does CPUID, port I/O and MMIO
//! (see `crate::sev`, target-only). The same assembly holds the resuming stubs of the
//! device-interrupt vectors ([`crate::interrupts`]), which share the register macros.

use core::fmt;

/// Names of the architectural exceptions, by vector.
pub const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved (15)",
    "#MF x87 floating point",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating point",
    "#VE virtualization",
    "#CP control protection",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved (31)",
];

/// Vectors for which the CPU pushes an error code.
pub const fn has_error_code(vector: usize) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// The registers as the entry stub leaves them on the stack.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ExceptionFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Explains a page-fault error code.
pub struct PageFaultCause(pub u64);

impl fmt::Display for PageFaultCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        let what = if e & 0x10 != 0 {
            "instruction fetch"
        } else if e & 0x2 != 0 {
            "write"
        } else {
            "read"
        };
        let why = if e & 0x1 != 0 {
            "protection violation"
        } else {
            "page not present"
        };
        write!(f, "{what}, {why}")?;
        if e & 0x8 != 0 {
            write!(f, ", reserved bit set")?;
        }
        if e & (1 << 31) != 0 {
            write!(f, ", RMP violation (SNP)")?;
        }
        Ok(())
    }
}

/// An interrupt gate (16 bytes).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    _reserved: u32,
}

impl Gate {
    /// A not-present gate.
    pub const fn zero() -> Gate {
        Gate {
            offset_low: 0,
            selector: 0,
            ist: 0,
            type_attr: 0,
            offset_mid: 0,
            offset_high: 0,
            _reserved: 0,
        }
    }

    /// A present ring-0 64-bit interrupt gate.
    pub fn new(handler: u64, selector: u16, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector,
            ist: ist & 0x7,
            type_attr: 0x8e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            _reserved: 0,
        }
    }
}

/// An IDT of `N` gates: the loader's holds the 32 exception vectors only; the kernel's
/// holds all 256, with [`crate::interrupts`]' device and spurious vectors.
#[derive(Debug, Clone)]
#[repr(C, align(16))]
pub struct Idt<const N: usize = 32> {
    pub gates: [Gate; N],
}

#[cfg(target_os = "none")]
mod hw {
    use super::*;
    use crate::serial_println;
    use x86_64::instructions::segmentation::Segment;

    core::arch::global_asm!(
        r#"
.macro OMEGA_ISR n, err
    .balign 16
omega_isr_\n:
    .if \err == 0
    push 0
    .endif
    push \n
    jmp omega_isr_common
.endm

/* The general registers in ExceptionFrame's order (R15 ends up lowest). */
.macro OMEGA_SAVE_GPRS
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
.endm
.macro OMEGA_RESTORE_GPRS
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
.endm

.section .text.omega_isr, "ax"
.irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
    OMEGA_ISR \n, 0
.endr
.irp n, 8,10,11,12,13,14,17,21,30
    OMEGA_ISR \n, 1
.endr

/* #VC is the one exception that resumes: the handler emulates the instruction (through
 * the GHCB under SNP), updates the saved registers, and the stub returns past it. */
    .balign 16
.global omega_isr_29
omega_isr_29:
    push 29
    OMEGA_SAVE_GPRS
    mov rdi, rsp
    mov rbx, rsp
    and rsp, -16
    call omega_vc
    mov rsp, rbx
    OMEGA_RESTORE_GPRS
    add rsp, 16
    iretq

omega_isr_common:
    OMEGA_SAVE_GPRS
    mov rdi, rsp
    and rsp, -16
    call omega_exception
    ud2

/* Device interrupts (crate::interrupts): they resume. The handler only acknowledges and
 * sets a flag; the registers are saved all the same, so the stub does not depend on which
 * ones the Rust code clobbers. The kernel target has no SSE, so there is no vector state.
 * Sections of their own, so the loader (which installs none of them) drops them. */
.section .text.omega_irq, "ax"
.irp n, 48,49,50,51,52,53,54,55
    .balign 16
omega_irq_\n:
    push \n
    jmp omega_irq_common
.endr

omega_irq_common:
    OMEGA_SAVE_GPRS
    cld
    mov rdi, [rsp + 15 * 8]
    mov rbx, rsp
    and rsp, -16
    call omega_interrupt
    mov rsp, rbx
    OMEGA_RESTORE_GPRS
    add rsp, 8
    iretq

/* The local APIC's spurious vector: through the same path, so that it too stops the VM
 * unless the kernel registered a handler (which must not send an EOI, SDM 10.9). */
    .balign 16
omega_irq_spurious:
    push 255
    jmp omega_irq_common

.section .rodata.omega_isr_table, "a"
.balign 8
.global omega_isr_table
omega_isr_table:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad omega_isr_\n
.endr

.section .rodata.omega_irq_table, "a"
.balign 8
.global omega_irq_table
omega_irq_table:
.irp n, 48,49,50,51,52,53,54,55
    .quad omega_irq_\n
.endr
    .quad omega_irq_spurious
"#
    );

    unsafe extern "C" {
        static omega_isr_table: [u64; 32];
    }

    /// Fills the first 32 gates of `idt` with the exception stubs; vector 8 (double fault)
    /// uses `df_ist` (0 = the current stack).
    pub fn fill<const N: usize>(idt: &mut Idt<N>, df_ist: u8) {
        let cs = x86_64::instructions::segmentation::CS::get_reg().0;
        for (v, gate) in idt.gates.iter_mut().take(32).enumerate() {
            // SAFETY: `omega_isr_table` is a read-only table of 32 addresses emitted by the
            // assembly above; reading it has no side effects.
            let handler = unsafe { omega_isr_table[v] };
            *gate = Gate::new(handler, cs, if v == 8 { df_ist } else { 0 });
        }
    }

    /// Loads `idt`.
    ///
    /// # Safety
    /// `idt` must stay where it is, unchanged, for as long as it is loaded.
    pub unsafe fn load<const N: usize>(idt: &Idt<N>) {
        let ptr = x86_64::structures::DescriptorTablePointer {
            limit: (core::mem::size_of::<Idt<N>>() - 1) as u16,
            base: x86_64::VirtAddr::new(idt as *const Idt<N> as u64),
        };
        // SAFETY: the caller keeps `idt` alive and in place; its gates point at the stubs.
        unsafe { x86_64::instructions::tables::lidt(&ptr) };
    }

    /// #VC (vector 29): only an SNP guest gets one; emulate and resume, or terminate.
    #[unsafe(no_mangle)]
    extern "C" fn omega_vc(frame: &mut ExceptionFrame) {
        crate::sev::handle_vc(frame);
    }

    #[unsafe(no_mangle)]
    extern "C" fn omega_exception(frame: &ExceptionFrame) -> ! {
        // SECURITY: under SNP the console is the host's and the host may have injected
        // this exception (NMI, #PF) to catch secrets in registers: nothing is printed,
        // the code alone tells the operator what happened.
        if crate::fatal::disclosure().exception_report() {
            report(frame);
        }
        crate::fatal::stop_with(omega_boot_info::snp::terminate::EXCEPTION)
    }

    fn report(frame: &ExceptionFrame) {
        let vector = frame.vector as usize;
        let name = NAMES.get(vector).copied().unwrap_or("unknown");
        serial_println!(
            "omega: CPU EXCEPTION {name} (vector {vector}) at rip={:#018x}",
            frame.rip
        );
        if vector == 14 {
            let cr2 = x86_64::registers::control::Cr2::read_raw();
            serial_println!(
                "omega:   page fault at address {cr2:#018x}: {}",
                PageFaultCause(frame.error_code)
            );
        } else if vector == 8 {
            // Most double faults here are a page fault that could not be delivered, such as
            // a stack overflow into a guard page; CR2 still names its address.
            let cr2 = x86_64::registers::control::Cr2::read_raw();
            serial_println!("omega:   last page-fault address (CR2) {cr2:#018x}");
        } else if has_error_code(vector) {
            serial_println!("omega:   error code {:#x}", frame.error_code);
        }
        serial_println!(
            "omega:   rsp={:#018x} rflags={:#x} cs={:#x} ss={:#x}",
            frame.rsp,
            frame.rflags,
            frame.cs,
            frame.ss
        );
        serial_println!(
            "omega:   rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x}",
            frame.rax,
            frame.rbx,
            frame.rcx,
            frame.rdx,
            frame.rsi,
            frame.rdi,
            frame.rbp
        );
    }
}

#[cfg(target_os = "none")]
pub use hw::{fill, load};

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn frame_layout_matches_stub() {
        // 15 pushed registers, vector, error code, then the CPU's 5-word frame.
        assert_eq!(core::mem::size_of::<ExceptionFrame>(), 22 * 8);
        assert_eq!(core::mem::size_of::<Gate>(), 16);
        assert_eq!(core::mem::size_of::<Idt>(), 512);
    }

    #[test]
    fn gate_splits_address() {
        let g = Gate::new(0xffff_ffff_8123_4567, 0x08, 1);
        assert_eq!(
            (g.offset_low, g.offset_mid, g.offset_high),
            (0x4567, 0x8123, 0xffff_ffff)
        );
        assert_eq!((g.selector, g.ist, g.type_attr), (0x08, 1, 0x8e));
    }

    #[test]
    fn page_fault_causes_read_well() {
        assert_eq!(
            format!("{}", PageFaultCause(0x2)),
            "write, page not present"
        );
        assert_eq!(
            format!("{}", PageFaultCause(0x11)),
            "instruction fetch, protection violation"
        );
        assert_eq!(NAMES[14], "#PF page fault");
        assert!(has_error_code(14) && !has_error_code(6));
    }
}
