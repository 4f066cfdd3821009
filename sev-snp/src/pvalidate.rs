//! PVALIDATE policy (AMD APM vol. 3, "PVALIDATE"; GHCB spec section 4.1.6 for the ordering).
//!
//! The instruction stays behind [`Pvalidate`]: the kernel executes it (rAX = virtual address,
//! rCX = page size, rDX = validate) and reports rAX and rFLAGS.CF. This module decides what to
//! do with the result:
//!
//! - validate with 2 MiB pages where the range is 2 MiB aligned (both VA and PA), fall back to
//!   512 × 4 KiB when the RMP holds 4 KiB entries there (`FAIL_SIZEMISMATCH`, 6);
//! - "no change" (CF = 1: the page already had the requested validated state) on memory that
//!   must be fresh is an attack, reported as its own error;
//! - private -> shared: rescind validation first, then ask the host to make the pages shared;
//! - shared -> private: ask the host to assign the pages, then validate them (fresh).

use crate::psc::{PageStateChange, PscError};
use crate::{PAGE_SIZE_2M, PAGE_SIZE_4K, PageSize, PageState};

/// PVALIDATE return code: success.
pub const PVALIDATE_SUCCESS: u32 = 0;
/// PVALIDATE return code: invalid input (address not aligned, or not a guest-owned page).
pub const PVALIDATE_FAIL_INPUT: u32 = 1;
/// PVALIDATE return code: page size does not match the RMP entry.
pub const PVALIDATE_FAIL_SIZEMISMATCH: u32 = 6;

/// What the instruction reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PvalidateResult {
    /// rAX after PVALIDATE (the return code).
    pub rax: u32,
    /// rFLAGS.CF after PVALIDATE: set when the validated state did not change.
    pub no_change: bool,
}

/// The PVALIDATE instruction, supplied by the kernel.
pub trait Pvalidate {
    /// Execute PVALIDATE on the page mapped at `va` (aligned to `size`).
    ///
    /// After a successful validation the implementation should touch the page (read one
    /// byte through the new private mapping) so that a host which remaps it is noticed early.
    fn pvalidate(&mut self, va: u64, size: PageSize, validate: bool) -> PvalidateResult;
}

/// Errors of validation and conversions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PvalidateError {
    /// The range is not 4 KiB aligned or overflows.
    #[error("invalid memory range")]
    InvalidRange,
    /// PVALIDATE changed nothing while validating memory that must be fresh.
    #[error(
        "PVALIDATE of fresh page va {va:#x} pa {pa:#x} reported no change: possible remapping attack"
    )]
    AlreadyValidated {
        /// Virtual address.
        va: u64,
        /// Guest-physical address.
        pa: u64,
    },
    /// PVALIDATE changed nothing while rescinding: the page was not validated.
    #[error("rescinding va {va:#x} pa {pa:#x} reported no change: page was not validated")]
    NotValidated {
        /// Virtual address.
        va: u64,
        /// Guest-physical address.
        pa: u64,
    },
    /// A 4 KiB PVALIDATE reported `FAIL_SIZEMISMATCH` (the RMP holds a 2 MiB entry there).
    #[error("4 KiB PVALIDATE at pa {pa:#x} hit a 2 MiB RMP entry")]
    SizeMismatch {
        /// Guest-physical address.
        pa: u64,
    },
    /// PVALIDATE failed with another code.
    #[error("PVALIDATE at pa {pa:#x} failed with {code}")]
    Failed {
        /// Guest-physical address.
        pa: u64,
        /// rAX.
        code: u32,
    },
    /// The host refused or botched the page state change.
    #[error("page state change: {0}")]
    Psc(#[from] PscError),
}

/// A range of memory mapped at `va` and backed by guest-physical `pa`, `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRange {
    va: u64,
    pa: u64,
    len: u64,
}

impl MemRange {
    /// A range; `va`, `pa` and `len` must be 4 KiB aligned and neither end may overflow.
    pub fn new(va: u64, pa: u64, len: u64) -> Result<Self, PvalidateError> {
        if !va.is_multiple_of(PAGE_SIZE_4K)
            || !pa.is_multiple_of(PAGE_SIZE_4K)
            || !len.is_multiple_of(PAGE_SIZE_4K)
        {
            return Err(PvalidateError::InvalidRange);
        }
        va.checked_add(len).ok_or(PvalidateError::InvalidRange)?;
        pa.checked_add(len).ok_or(PvalidateError::InvalidRange)?;
        Ok(Self { va, pa, len })
    }

    /// Virtual start.
    pub fn va(&self) -> u64 {
        self.va
    }
    /// Guest-physical start.
    pub fn pa(&self) -> u64 {
        self.pa
    }
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Counts of PVALIDATE executions (for logs and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PvalidateStats {
    /// 2 MiB pages processed.
    pub pages_2m: u64,
    /// 4 KiB pages processed.
    pub pages_4k: u64,
    /// 2 MiB attempts that fell back to 4 KiB.
    pub fallbacks: u64,
}

fn one<C: Pvalidate + ?Sized>(
    cpu: &mut C,
    va: u64,
    pa: u64,
    size: PageSize,
    validate: bool,
) -> Result<(), PvalidateError> {
    check(cpu.pvalidate(va, size, validate), va, pa, size, validate)
}

fn check(
    r: PvalidateResult,
    va: u64,
    pa: u64,
    size: PageSize,
    validate: bool,
) -> Result<(), PvalidateError> {
    match r.rax {
        PVALIDATE_SUCCESS if !r.no_change => Ok(()),
        // SECURITY: validating memory that should be fresh and finding it already validated
        // means the host has mapped a page we validated earlier at this GPA (or replayed an
        // RMP state): a remapping attack. Continuing would let the host alias guest memory.
        PVALIDATE_SUCCESS if validate => Err(PvalidateError::AlreadyValidated { va, pa }),
        // SECURITY: rescinding a page that was not validated means our view of the RMP is
        // wrong; refuse to go on converting.
        PVALIDATE_SUCCESS => Err(PvalidateError::NotValidated { va, pa }),
        PVALIDATE_FAIL_SIZEMISMATCH if size == PageSize::Size4K => {
            Err(PvalidateError::SizeMismatch { pa })
        }
        code => Err(PvalidateError::Failed { pa, code }),
    }
}

/// PVALIDATE (validate or rescind) every page of `range`: 2 MiB where VA and PA are 2 MiB
/// aligned and at least 2 MiB remain, 4 KiB elsewhere and on `FAIL_SIZEMISMATCH`.
/// "No change" is an error in both directions (see [`PvalidateError`]).
pub fn pvalidate_range<C: Pvalidate + ?Sized>(
    cpu: &mut C,
    range: MemRange,
    validate: bool,
) -> Result<PvalidateStats, PvalidateError> {
    let mut stats = PvalidateStats::default();
    let mut off = 0u64;
    while off < range.len {
        let (va, pa) = (range.va + off, range.pa + off);
        let left = range.len - off;
        if va % PAGE_SIZE_2M == 0 && pa % PAGE_SIZE_2M == 0 && left >= PAGE_SIZE_2M {
            let r = cpu.pvalidate(va, PageSize::Size2M, validate);
            if r.rax == PVALIDATE_FAIL_SIZEMISMATCH {
                // The RMP has 4 KiB entries here: nothing changed, redo as 512 small pages.
                stats.fallbacks += 1;
                for i in 0..PAGE_SIZE_2M / PAGE_SIZE_4K {
                    one(
                        cpu,
                        va + i * PAGE_SIZE_4K,
                        pa + i * PAGE_SIZE_4K,
                        PageSize::Size4K,
                        validate,
                    )?;
                    stats.pages_4k += 1;
                }
            } else {
                check(r, va, pa, PageSize::Size2M, validate)?;
                stats.pages_2m += 1;
            }
            off += PAGE_SIZE_2M;
        } else {
            one(cpu, va, pa, PageSize::Size4K, validate)?;
            stats.pages_4k += 1;
            off += PAGE_SIZE_4K;
        }
    }
    Ok(stats)
}

/// Validate memory that must be fresh (never validated before in this guest): boot-time
/// acceptance of RAM the launch did not measure.
pub fn validate_fresh<C: Pvalidate + ?Sized>(
    cpu: &mut C,
    range: MemRange,
) -> Result<PvalidateStats, PvalidateError> {
    pvalidate_range(cpu, range, true)
}

/// Convert private memory to shared: rescind validation, then ask the host to make it shared.
///
// SECURITY: the order matters. Rescinding first guarantees that, whatever the host does with
// the page afterwards, the guest never again treats it as validated private memory: a page
// the host maps back later would fail validation checks instead of being silently trusted.
// The caller must already have removed every private mapping of the range and scrubbed any
// secrets from it, and must map it without the C-bit only after this returns.
pub fn make_shared<C: Pvalidate + ?Sized, H: PageStateChange + ?Sized>(
    cpu: &mut C,
    host: &mut H,
    range: MemRange,
) -> Result<(), PvalidateError> {
    pvalidate_range(cpu, range, false)?;
    host.change(range.pa, range.len, PageState::Shared)?;
    Ok(())
}

/// Convert shared memory to private: ask the host to assign it, then validate it (fresh).
/// This is also how fresh RAM is accepted at boot (the loader's kernel frames, the
/// kernel's heap and free frames): Linux (`early_set_pages_state`) and OVMF
/// (`MemEncryptSevSnpPreValidateSystemRam`) ask for the private state first too, since a
/// VMM need not have assigned RAM outside the launch ranges to the guest.
///
// SECURITY: after the host assigns the pages they must not be validated yet; PVALIDATE's
// "no change" here is the remapping attack and fails the conversion. The caller must map the
// range with the C-bit (private) before calling (PVALIDATE takes the virtual address) and
// must not trust its contents afterwards (zero it).
pub fn make_private<C: Pvalidate + ?Sized, H: PageStateChange + ?Sized>(
    cpu: &mut C,
    host: &mut H,
    range: MemRange,
) -> Result<(), PvalidateError> {
    host.change(range.pa, range.len, PageState::Private)?;
    pvalidate_range(cpu, range, true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;
    use std::vec::Vec;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Pv {
            va: u64,
            size: PageSize,
            validate: bool,
        },
        Psc {
            pa: u64,
            len: u64,
            state: PageState,
        },
    }

    /// A recording double with a tiny RMP model: which 4 KiB pages are validated, and which
    /// 2 MiB regions are backed by 4 KiB RMP entries (so 2 MiB PVALIDATE fails there).
    struct Cpu {
        log: Rc<RefCell<Vec<Ev>>>,
        validated: BTreeMap<u64, bool>,
        small_rmp: Vec<u64>,
        fail_at: Option<(u64, u32)>,
    }

    impl Cpu {
        fn new(log: &Rc<RefCell<Vec<Ev>>>) -> Self {
            Self {
                log: log.clone(),
                validated: BTreeMap::new(),
                small_rmp: Vec::new(),
                fail_at: None,
            }
        }
    }

    impl Pvalidate for Cpu {
        fn pvalidate(&mut self, va: u64, size: PageSize, validate: bool) -> PvalidateResult {
            self.log.borrow_mut().push(Ev::Pv { va, size, validate });
            if let Some((at, code)) = self.fail_at
                && at == va
            {
                return PvalidateResult {
                    rax: code,
                    no_change: false,
                };
            }
            if size == PageSize::Size2M && self.small_rmp.contains(&va) {
                return PvalidateResult {
                    rax: PVALIDATE_FAIL_SIZEMISMATCH,
                    no_change: false,
                };
            }
            let pages = size.bytes() / PAGE_SIZE_4K;
            let first = *self.validated.get(&va).unwrap_or(&false);
            for i in 0..pages {
                self.validated.insert(va + i * PAGE_SIZE_4K, validate);
            }
            PvalidateResult {
                rax: 0,
                no_change: first == validate,
            }
        }
    }

    struct Host {
        log: Rc<RefCell<Vec<Ev>>>,
        fail: bool,
    }

    impl PageStateChange for Host {
        fn change(&mut self, pa: u64, len: u64, state: PageState) -> Result<(), PscError> {
            self.log.borrow_mut().push(Ev::Psc { pa, len, state });
            if self.fail {
                Err(PscError::HostError(1))
            } else {
                Ok(())
            }
        }
    }

    const M2: u64 = PAGE_SIZE_2M;
    const K4: u64 = PAGE_SIZE_4K;

    #[test]
    fn uses_2m_where_aligned() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut cpu = Cpu::new(&log);
        // 4 KiB below the 2 MiB boundary, two 2 MiB pages, one 4 KiB page after.
        let r = MemRange::new(0xFFFF_8000_0000_0000 + M2 - K4, M2 - K4, K4 + 2 * M2 + K4).unwrap();
        let s = validate_fresh(&mut cpu, r).unwrap();
        assert_eq!(
            s,
            PvalidateStats {
                pages_2m: 2,
                pages_4k: 2,
                fallbacks: 0
            }
        );
        let sizes: Vec<_> = log
            .borrow()
            .iter()
            .map(|e| match e {
                Ev::Pv { size, .. } => *size,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            sizes,
            [
                PageSize::Size4K,
                PageSize::Size2M,
                PageSize::Size2M,
                PageSize::Size4K
            ]
        );
    }

    #[test]
    fn va_pa_misaligned_uses_4k() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut cpu = Cpu::new(&log);
        // VA 2 MiB aligned, PA not: only 4 KiB pages are legal.
        let r = MemRange::new(0x4000_0000, 0x20_1000, M2).unwrap();
        let s = validate_fresh(&mut cpu, r).unwrap();
        assert_eq!(s.pages_2m, 0);
        assert_eq!(s.pages_4k, 512);
    }

    #[test]
    fn sizemismatch_falls_back_to_4k() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut cpu = Cpu::new(&log);
        cpu.small_rmp.push(M2);
        let r = MemRange::new(M2, M2, 2 * M2).unwrap();
        let s = validate_fresh(&mut cpu, r).unwrap();
        assert_eq!(
            s,
            PvalidateStats {
                pages_2m: 1,
                pages_4k: 512,
                fallbacks: 1
            }
        );
        let l = log.borrow();
        assert_eq!(
            l[0],
            Ev::Pv {
                va: M2,
                size: PageSize::Size2M,
                validate: true
            }
        );
        assert_eq!(
            l[1],
            Ev::Pv {
                va: M2,
                size: PageSize::Size4K,
                validate: true
            }
        );
        assert_eq!(
            l[512],
            Ev::Pv {
                va: M2 + 511 * K4,
                size: PageSize::Size4K,
                validate: true
            }
        );
        assert_eq!(
            l[513],
            Ev::Pv {
                va: 2 * M2,
                size: PageSize::Size2M,
                validate: true
            }
        );
        assert!(
            (M2..3 * M2)
                .step_by(K4 as usize)
                .all(|va| cpu.validated[&va])
        );
    }

    #[test]
    fn no_change_on_fresh_memory_is_an_attack() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut cpu = Cpu::new(&log);
        cpu.validated.insert(0x5000, true); // the host remapped an already validated page here
        let r = MemRange::new(0x3000, 0x3000, 4 * K4).unwrap();
        assert_eq!(
            validate_fresh(&mut cpu, r),
            Err(PvalidateError::AlreadyValidated {
                va: 0x5000,
                pa: 0x5000
            })
        );
        // Stops at the attack: the page after it is never touched.
        assert_eq!(log.borrow().len(), 3);
        // Same for a 2 MiB page and inside the 4 KiB fallback.
        let mut cpu = Cpu::new(&log);
        cpu.validated.insert(M2, true);
        assert!(matches!(
            validate_fresh(&mut cpu, MemRange::new(M2, M2, M2).unwrap()),
            Err(PvalidateError::AlreadyValidated { .. })
        ));
        let mut cpu = Cpu::new(&log);
        cpu.small_rmp.push(M2);
        cpu.validated.insert(M2 + 7 * K4, true);
        assert_eq!(
            validate_fresh(&mut cpu, MemRange::new(M2, M2, M2).unwrap()),
            Err(PvalidateError::AlreadyValidated {
                va: M2 + 7 * K4,
                pa: M2 + 7 * K4
            })
        );
    }

    #[test]
    fn other_failures() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut cpu = Cpu::new(&log);
        cpu.fail_at = Some((0x2000, PVALIDATE_FAIL_INPUT));
        assert_eq!(
            validate_fresh(&mut cpu, MemRange::new(0x1000, 0x1000, 3 * K4).unwrap()),
            Err(PvalidateError::Failed {
                pa: 0x2000,
                code: 1
            })
        );
        let mut cpu = Cpu::new(&log);
        cpu.fail_at = Some((0x2000, PVALIDATE_FAIL_SIZEMISMATCH));
        assert_eq!(
            validate_fresh(&mut cpu, MemRange::new(0x1000, 0x1000, 3 * K4).unwrap()),
            Err(PvalidateError::SizeMismatch { pa: 0x2000 })
        );
        assert_eq!(
            MemRange::new(0x1001, 0, K4),
            Err(PvalidateError::InvalidRange)
        );
        assert_eq!(
            MemRange::new(!0xFFF, 0, 2 * K4),
            Err(PvalidateError::InvalidRange)
        );
    }

    #[test]
    fn make_shared_rescinds_before_psc() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut cpu = Cpu::new(&log);
        let mut host = Host {
            log: log.clone(),
            fail: false,
        };
        let r = MemRange::new(0x10_0000, 0x10_0000, 2 * K4).unwrap();
        validate_fresh(&mut cpu, r).unwrap();
        log.borrow_mut().clear();
        make_shared(&mut cpu, &mut host, r).unwrap();
        assert_eq!(
            *log.borrow(),
            [
                Ev::Pv {
                    va: 0x10_0000,
                    size: PageSize::Size4K,
                    validate: false
                },
                Ev::Pv {
                    va: 0x10_1000,
                    size: PageSize::Size4K,
                    validate: false
                },
                Ev::Psc {
                    pa: 0x10_0000,
                    len: 2 * K4,
                    state: PageState::Shared
                },
            ]
        );
        // Rescinding a page that was never validated: refused before asking the host.
        log.borrow_mut().clear();
        let mut cpu = Cpu::new(&log);
        assert!(matches!(
            make_shared(&mut cpu, &mut host, r),
            Err(PvalidateError::NotValidated { .. })
        ));
        assert!(!log.borrow().iter().any(|e| matches!(e, Ev::Psc { .. })));
    }

    #[test]
    fn make_private_psc_before_validate() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut cpu = Cpu::new(&log);
        let mut host = Host {
            log: log.clone(),
            fail: false,
        };
        let r = MemRange::new(0x20_0000, 0x20_0000, M2).unwrap();
        make_private(&mut cpu, &mut host, r).unwrap();
        assert_eq!(
            *log.borrow(),
            [
                Ev::Psc {
                    pa: 0x20_0000,
                    len: M2,
                    state: PageState::Private
                },
                Ev::Pv {
                    va: 0x20_0000,
                    size: PageSize::Size2M,
                    validate: true
                },
            ]
        );
        // Host failure: nothing validated.
        log.borrow_mut().clear();
        let mut host = Host {
            log: log.clone(),
            fail: true,
        };
        let mut cpu = Cpu::new(&log);
        assert_eq!(
            make_private(&mut cpu, &mut host, r),
            Err(PvalidateError::Psc(PscError::HostError(1)))
        );
        assert_eq!(log.borrow().len(), 1);
        // Host "converts" a page that is still validated from before: attack detected.
        let mut host = Host {
            log: log.clone(),
            fail: false,
        };
        let mut cpu = Cpu::new(&log);
        cpu.validated.insert(0x20_0000, true);
        assert!(matches!(
            make_private(&mut cpu, &mut host, r),
            Err(PvalidateError::AlreadyValidated { .. })
        ));
    }

    /// The RMP as hardware keeps it, per 4 KiB page: assigned to the guest (private) or
    /// not, validated or not. PVALIDATE of a page the guest does not own fails with
    /// FAIL_INPUT, as on hardware; a page-state change to private clears "validated".
    #[derive(Default)]
    struct Rmp {
        private: std::collections::BTreeSet<u64>,
        validated: std::collections::BTreeSet<u64>,
        log: Vec<Ev>,
    }
    struct RmpCpu<'a>(&'a RefCell<Rmp>);
    struct RmpHost<'a>(&'a RefCell<Rmp>);

    impl Pvalidate for RmpCpu<'_> {
        fn pvalidate(&mut self, va: u64, size: PageSize, validate: bool) -> PvalidateResult {
            let mut rmp = self.0.borrow_mut();
            rmp.log.push(Ev::Pv { va, size, validate });
            let pages: Vec<u64> = (0..size.bytes() / K4).map(|i| va + i * K4).collect();
            if !pages.iter().all(|p| rmp.private.contains(p)) {
                return PvalidateResult {
                    rax: PVALIDATE_FAIL_INPUT,
                    no_change: false,
                };
            }
            let no_change = rmp.validated.contains(&va) == validate;
            for p in pages {
                if validate {
                    rmp.validated.insert(p);
                } else {
                    rmp.validated.remove(&p);
                }
            }
            PvalidateResult { rax: 0, no_change }
        }
    }

    impl PageStateChange for RmpHost<'_> {
        fn change(&mut self, pa: u64, len: u64, state: PageState) -> Result<(), PscError> {
            let mut rmp = self.0.borrow_mut();
            rmp.log.push(Ev::Psc { pa, len, state });
            for p in (pa..pa + len).step_by(K4 as usize) {
                rmp.validated.remove(&p);
                if state == PageState::Private {
                    rmp.private.insert(p);
                } else {
                    rmp.private.remove(&p);
                }
            }
            Ok(())
        }
    }

    #[test]
    fn accepting_fresh_memory_changes_its_state_before_validating() {
        // RAM outside the launch ranges that the VMM left shared (identity-mapped, as the
        // loader's kernel frames: VA = PA).
        let r = MemRange::new(0x100_0000, 0x100_0000, M2 + 2 * K4).unwrap();
        let rmp = RefCell::new(Rmp::default());
        // PVALIDATE alone, the order the loader and the kernel used before: refused.
        assert_eq!(
            validate_fresh(&mut RmpCpu(&rmp), r),
            Err(PvalidateError::Failed {
                pa: 0x100_0000,
                code: PVALIDATE_FAIL_INPUT
            })
        );
        // The page-state change first, then PVALIDATE: accepted, every page validated.
        rmp.borrow_mut().log.clear();
        make_private(&mut RmpCpu(&rmp), &mut RmpHost(&rmp), r).unwrap();
        let rmp = rmp.into_inner();
        assert_eq!(
            rmp.log,
            [
                Ev::Psc {
                    pa: 0x100_0000,
                    len: M2 + 2 * K4,
                    state: PageState::Private
                },
                Ev::Pv {
                    va: 0x100_0000,
                    size: PageSize::Size2M,
                    validate: true
                },
                Ev::Pv {
                    va: 0x100_0000 + M2,
                    size: PageSize::Size4K,
                    validate: true
                },
                Ev::Pv {
                    va: 0x100_0000 + M2 + K4,
                    size: PageSize::Size4K,
                    validate: true
                },
            ]
        );
        assert_eq!(rmp.validated.len() as u64, (M2 + 2 * K4) / K4);
        // RAM the VMM had already assigned private (KVM with guest_memfd does): the
        // page-state change is a no-op for the host and the same sequence still works.
        let rmp = RefCell::new(Rmp::default());
        rmp.borrow_mut()
            .private
            .extend((0..512).map(|i| M2 + i * K4));
        make_private(
            &mut RmpCpu(&rmp),
            &mut RmpHost(&rmp),
            MemRange::new(M2, M2, M2).unwrap(),
        )
        .unwrap();
    }
}
