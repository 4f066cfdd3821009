//! SEV-SNP on the hardware: the instructions behind the `sev-snp` crate's traits
//! (GHCB MSR, `VMGEXIT`, `PVALIDATE`) and the #VC handler's state. Shared by the loader
//! and the kernel, which both run as SNP guests.
//!
//! Nothing in this module has run on SNP hardware (see docs/sev-snp.md).

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use omega_boot_info::snp::{Termination, terminate};
use sev_snp::cpuid_page::{CpuState, CpuidTable};
use sev_snp::ghcb::GHCB_SIZE;
use sev_snp::pvalidate::{Pvalidate, PvalidateResult};
use sev_snp::vc::{Regs, VcEnv};
use sev_snp::{GhcbMsr, GhcbPlatform, PageSize};

use crate::exceptions::ExceptionFrame;

/// The GHCB MSR (AMD APM vol. 2, 15.35.5).
pub const MSR_GHCB: u32 = 0xc001_0130;

/// The GHCB MSR protocol through the real MSR and `VMGEXIT`.
pub struct HwMsr;

impl GhcbMsr for HwMsr {
    fn exchange(&mut self, request: u64) -> u64 {
        let mut msr = x86_64::registers::model_specific::Msr::new(MSR_GHCB);
        // SAFETY: the GHCB MSR exists on every SEV-ES/SNP guest (callers run only after
        // SEV_STATUS said SNP); writing it and exiting with VMGEXIT hands the request to
        // the hypervisor and touches no guest memory. The previous value (the registered
        // GHCB's address, if any) is restored, as the GHCB spec requires.
        unsafe {
            let saved = msr.read();
            msr.write(request);
            core::arch::asm!("rep vmmcall", options(nostack));
            let answer = msr.read();
            msr.write(saved);
            answer
        }
    }
}

/// The GHCB MSR value that asks for termination with `reason` (also what the reset
/// code writes, as an assembler constant).
pub const fn termination_request(reason: Termination) -> u64 {
    sev_snp::msr_protocol::termination_request(sev_snp::TerminationReason {
        set: reason.set,
        code: reason.code,
    })
}

/// Asks the hypervisor to end the guest with `reason` (one of
/// [`omega_boot_info::snp::terminate`]), then halts in case it does not.
pub fn terminate(reason: Termination) -> ! {
    let request = termination_request(reason);
    let _ = HwMsr.exchange(request);
    crate::exit::halt_forever()
}

/// `PVALIDATE` on the current page tables.
pub struct HwPvalidate;

impl Pvalidate for HwPvalidate {
    fn pvalidate(&mut self, va: u64, size: PageSize, validate: bool) -> PvalidateResult {
        let rax: u64;
        let cf: u8;
        // SAFETY: PVALIDATE only changes the RMP's validated bit of the page mapped at
        // `va` (the callers pass direct- or identity-mapped RAM that they own and hold no
        // references into while its state changes); it reads and writes no memory.
        unsafe {
            core::arch::asm!(
                ".byte 0xf2, 0x0f, 0x01, 0xff", // pvalidate
                "setc {cf}",
                inout("rax") va => rax,
                in("rcx") matches!(size, PageSize::Size2M) as u64,
                in("rdx") validate as u64,
                cf = out(reg_byte) cf,
                options(nostack)
            );
        }
        let result = PvalidateResult {
            rax: rax as u32,
            no_change: cf != 0,
        };
        if validate && result.rax == 0 && !result.no_change {
            // SECURITY: touch the page now, so a host that swapped the mapping faults here
            // rather than later inside unrelated code.
            // SAFETY: the page was just validated and is mapped readable at `va`.
            let _ = unsafe { core::ptr::read_volatile(va as *const u8) };
        }
        result
    }
}

/// The registered GHCB page.
#[derive(Debug, Clone, Copy)]
pub struct HwGhcb {
    /// Where the page is mapped, without the C-bit.
    pub va: u64,
    /// Its guest-physical address (what the GHCB MSR holds).
    pub gpa: u64,
}

impl GhcbPlatform for HwGhcb {
    fn ghcb_gpa(&self) -> u64 {
        self.gpa
    }

    fn ghcb_page(&mut self) -> &mut [u8; GHCB_SIZE] {
        // SAFETY: `va` maps the 4 KiB GHCB page (shared, RW) for as long as the guest runs;
        // only one CPU uses it and the #VC handler is not re-entered (see `IN_VC`). The
        // host may write the page while we read it: the `sev-snp` crate copies and checks
        // every field it uses, so a torn value is caught, never trusted.
        unsafe { &mut *(self.va as *mut [u8; GHCB_SIZE]) }
    }

    fn vmgexit(&mut self) {
        // SAFETY: as in `HwMsr::exchange`; the MSR holds the GHCB's address, which is what
        // the hypervisor reads the request from.
        unsafe {
            x86_64::registers::model_specific::Msr::new(MSR_GHCB).write(self.gpa);
            core::arch::asm!("rep vmmcall", options(nostack));
        }
    }
}

/// Maps the virtual device window to guest-physical addresses for emulated MMIO.
#[derive(Debug, Clone, Copy)]
pub struct MmioWindow {
    pub va_base: u64,
    pub pa_start: u64,
    pub pa_end: u64,
}

/// What the #VC handler needs besides the CPUID table and the GHCB.
#[derive(Debug, Clone, Copy)]
struct Env {
    mmio: Option<MmioWindow>,
}

impl VcEnv for Env {
    fn mmio_gpa(&self, va: u64, len: u64) -> Option<u64> {
        let w = self.mmio?;
        let pa = va.checked_sub(w.va_base)?;
        // SECURITY: only the device window is ever sent to the host as an MMIO address;
        // an access anywhere else (private RAM) must not become a host-visible request.
        (pa >= w.pa_start && pa.checked_add(len)? <= w.pa_end).then_some(pa)
    }

    fn cpu_state(&self) -> CpuState {
        let cr4 = x86_64::registers::control::Cr4::read_raw();
        CpuState {
            cr4_osxsave: cr4 & (1 << 18) != 0,
            ..CpuState::default()
        }
    }
}

struct VcState {
    cpuid: CpuidTable,
    ghcb: Option<(HwGhcb, u16)>,
    env: Env,
}

/// The state lives in zero-initialised statics only (`MaybeUninit` + a flag): the loader's
/// statics sit in a .bss page, and it has no .data.
struct VcCell(UnsafeCell<MaybeUninit<VcState>>);

// SAFETY: one CPU; the state is written during boot before anything can raise a #VC that
// needs the written part, and `IN_VC` keeps the handler from re-entering itself.
unsafe impl Sync for VcCell {}

static VC: VcCell = VcCell(UnsafeCell::new(MaybeUninit::uninit()));
static VC_READY: AtomicBool = AtomicBool::new(false);
static IN_VC: AtomicBool = AtomicBool::new(false);

fn with_state<R>(f: impl FnOnce(Option<&mut VcState>) -> R) -> R {
    if IN_VC.swap(true, Ordering::Acquire) {
        // A #VC while the state is in use: the handler itself faulted.
        terminate(terminate::VC);
    }
    let state = if VC_READY.load(Ordering::Acquire) {
        // SAFETY: `IN_VC` makes this the only live reference (one CPU, no re-entry), and
        // `VC_READY` is set only after `vc_init` wrote the state.
        Some(unsafe { (*VC.0.get()).assume_init_mut() })
    } else {
        None
    };
    let r = f(state);
    IN_VC.store(false, Ordering::Release);
    r
}

/// Installs the #VC handler's CPUID table: from now on `cpuid` is answered from the
/// PSP-checked CPUID page, never by the host.
pub fn vc_init(cpuid: CpuidTable) {
    if IN_VC.swap(true, Ordering::Acquire) {
        terminate(terminate::VC);
    }
    // SAFETY: as in `with_state`; the write makes the state initialised before the flag.
    unsafe {
        (*VC.0.get()).write(VcState {
            cpuid,
            ghcb: None,
            env: Env { mmio: None },
        })
    };
    VC_READY.store(true, Ordering::Release);
    IN_VC.store(false, Ordering::Release);
}

/// Parses the CPUID page, checks the pinned C-bit and installs the table ([`vc_init`]);
/// ends the guest (codes CPUID_PAGE / C_BIT) if either fails. Loader and kernel both
/// start their SNP set-up here.
pub fn vc_init_from_cpuid_page(page: &[u8; 4096]) {
    let table = CpuidTable::parse(page).unwrap_or_else(|_| terminate(terminate::CPUID_PAGE));
    table
        .check_c_bit(omega_boot_info::snp::C_BIT as u8)
        .unwrap_or_else(|_| terminate(terminate::C_BIT));
    vc_init(table);
}

/// Lets the #VC handler emulate port I/O and MMIO through `ghcb` (protocol `version`).
pub fn vc_set_ghcb(ghcb: HwGhcb, version: u16) {
    with_state(|s| {
        if let Some(s) = s {
            s.ghcb = Some((ghcb, version));
        }
    })
}

/// Lets the #VC handler emulate MMIO in `window` (nothing else).
pub fn vc_set_mmio(window: MmioWindow) {
    with_state(|s| {
        if let Some(s) = s {
            s.env.mmio = Some(window);
        }
    })
}

/// The registered GHCB and its protocol version, once there is one.
pub fn ghcb() -> Option<(HwGhcb, u16)> {
    with_state(|s| s.and_then(|s| s.ghcb))
}

fn regs_from(f: &ExceptionFrame) -> Regs {
    Regs {
        gpr: [
            f.rax, f.rcx, f.rdx, f.rbx, f.rsp, f.rbp, f.rsi, f.rdi, f.r8, f.r9, f.r10, f.r11,
            f.r12, f.r13, f.r14, f.r15,
        ],
        rip: f.rip,
    }
}

fn regs_into(regs: &Regs, f: &mut ExceptionFrame) {
    let g = &regs.gpr;
    (f.rax, f.rcx, f.rdx, f.rbx) = (g[0], g[1], g[2], g[3]);
    // g[4] (RSP) is never a destination of the emulated instructions; the CPU's stays.
    (f.rbp, f.rsi, f.rdi) = (g[5], g[6], g[7]);
    (f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15) =
        (g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
    f.rip = regs.rip;
}

/// Handles a #VC: emulates the instruction at the frame's RIP and advances it. Anything it
/// cannot handle ends the guest: the console itself may be what raised the #VC, so there is
/// no message, only the termination code [`terminate::VC`].
pub(crate) fn handle_vc(frame: &mut ExceptionFrame) {
    let exit_code = frame.error_code;
    let rip = frame.rip;
    let mut regs = regs_from(frame);
    let handled = with_state(|s| {
        let Some(VcState { cpuid, ghcb, env }) = s else {
            return false;
        };
        let (mut g, version) = match *ghcb {
            Some(pair) => pair,
            // CPUID needs no GHCB; everything else does.
            None if exit_code == sev_snp::vc::EXIT_CPUID => (HwGhcb { va: 0, gpa: 0 }, 0),
            None => return false,
        };
        // The instruction within its page first; only when that is too short, all 15
        // bytes (code is mapped contiguously, so an instruction that continues on the next
        // page finds it mapped).
        let in_page = (0x1000 - (rip & 0xfff)).min(15) as usize;
        for len in [in_page, 15] {
            // SAFETY: RIP points at the instruction that raised the #VC, in code mapped
            // executable and readable; `len` stays in its page unless the instruction
            // itself continues into the next one.
            let insn = unsafe { core::slice::from_raw_parts(rip as *const u8, len) };
            let mut attempt = regs;
            match sev_snp::vc::handle(exit_code, &mut attempt, insn, cpuid, env, &mut g, version) {
                Ok(()) => {
                    regs = attempt;
                    return true;
                }
                Err(sev_snp::vc::VcError::Decode(sev_snp::vc::DecodeError::Truncated))
                    if len < 15 =>
                {
                    continue;
                }
                Err(_) => return false,
            }
        }
        false
    });
    if !handled {
        terminate(terminate::VC);
    }
    regs_into(&regs, frame);
}
