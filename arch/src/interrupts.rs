//! Device interrupts: the vectors the kernel may route devices and the local APIC timer to,
//! their entry stubs (in the assembly of [`crate::exceptions`]) and a table of handlers.
//!
//! A handler must be minimal: acknowledge the source, set a flag, send the APIC its EOI.
//! The work itself is done by whoever the interrupt woke (the kernel only enables
//! interrupts inside its idle `sti; hlt`). A vector that arrives without a handler (the
//! spurious vector included) is
//! unexpected (a bug, or under SEV-SNP a host injecting it) and stops the VM as an
//! unexpected exception does. The loader installs none of this.

use core::sync::atomic::{AtomicUsize, Ordering};

/// The first device vector: priority class 3, above the 32 exception vectors.
pub const FIRST_VECTOR: u8 = 48;
/// How many device vectors have a stub (48..56).
pub const VECTORS: usize = 8;
/// The local APIC's spurious-interrupt vector (its low four bits must be set on old APICs).
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// A registered handler's address, 0 for none: the device vectors, then the spurious one.
static HANDLERS: [AtomicUsize; VECTORS + 1] = [const { AtomicUsize::new(0) }; VECTORS + 1];

/// The slot of `vector` in the handler table, if it has a stub.
pub fn slot(vector: u64) -> Option<usize> {
    if vector == u64::from(SPURIOUS_VECTOR) {
        return Some(VECTORS);
    }
    let i = vector.checked_sub(u64::from(FIRST_VECTOR))?;
    (i < VECTORS as u64).then_some(i as usize)
}

/// Makes `handler` the one that runs when `vector` arrives. Register before the vector can
/// fire (before `sti`); panics on a vector without a stub (a kernel bug).
pub fn set_handler(vector: u8, handler: fn()) {
    let i = slot(u64::from(vector)).expect("a device vector (48..56) or the spurious one");
    HANDLERS[i].store(handler as usize, Ordering::Release);
}

/// The handler registered for `vector`, if any.
#[cfg_attr(
    not(target_os = "none"),
    allow(dead_code, reason = "called from the target's interrupt stubs")
)]
fn handler(vector: u64) -> Option<fn()> {
    let addr = HANDLERS[slot(vector)?].load(Ordering::Acquire);
    if addr == 0 {
        return None;
    }
    // SAFETY: the only non-zero values stored are `fn()` pointers cast to usize by
    // `set_handler`; a function pointer has the size of usize on x86-64.
    Some(unsafe { core::mem::transmute::<usize, fn()>(addr) })
}

#[cfg(target_os = "none")]
mod hw {
    use super::*;
    use crate::exceptions::{Gate, Idt};
    use x86_64::instructions::segmentation::Segment;

    unsafe extern "C" {
        /// The stubs of vectors 48..56, then the spurious vector's (exceptions.rs).
        static omega_irq_table: [u64; VECTORS + 1];
    }

    /// Installs the device-vector and spurious-vector gates in a full IDT.
    pub fn fill_interrupts(idt: &mut Idt<256>) {
        let cs = x86_64::instructions::segmentation::CS::get_reg().0;
        // SAFETY: `omega_irq_table` is a read-only table of VECTORS + 1 addresses emitted by
        // the assembly in exceptions.rs; reading it has no side effects.
        let stubs = unsafe { omega_irq_table };
        for (i, stub) in stubs[..VECTORS].iter().enumerate() {
            idt.gates[usize::from(FIRST_VECTOR) + i] = Gate::new(*stub, cs, 0);
        }
        idt.gates[usize::from(SPURIOUS_VECTOR)] = Gate::new(stubs[VECTORS], cs, 0);
    }

    /// Called by the stubs with the vector number.
    #[unsafe(no_mangle)]
    extern "C" fn omega_interrupt(vector: u64) {
        match handler(vector) {
            Some(h) => h(),
            // SECURITY: nothing routes this vector here, so the host injected it (SNP
            // without Restricted Injection) or the kernel is broken: stop, as for any
            // unexpected exception, and print nothing under SNP.
            None => {
                if crate::fatal::disclosure().exception_report() {
                    crate::serial_println!("omega: unexpected interrupt vector {vector}");
                }
                crate::fatal::stop_with(omega_boot_info::snp::terminate::EXCEPTION)
            }
        }
    }
}

#[cfg(target_os = "none")]
pub use hw::fill_interrupts;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_device_vectors_have_slots() {
        assert_eq!(slot(47), None);
        assert_eq!(slot(48), Some(0));
        assert_eq!(slot(55), Some(7));
        assert_eq!(slot(56), None);
        assert_eq!(slot(u64::from(SPURIOUS_VECTOR)), Some(VECTORS));
        assert_eq!(slot(254), None);
        assert_eq!(slot(0), None);
    }

    static HITS: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        HITS.fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn registered_handler_is_found_and_runs() {
        assert!(handler(54).is_none());
        set_handler(54, count);
        handler(54).expect("registered")();
        assert_eq!(HITS.load(Ordering::Relaxed), 1);
        assert!(handler(53).is_none());
    }

    #[test]
    fn a_full_idt_is_one_page() {
        assert_eq!(
            core::mem::size_of::<crate::exceptions::Idt<256>>(),
            4096,
            "256 gates of 16 bytes"
        );
    }
}
