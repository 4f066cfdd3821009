//! The SEV-SNP platform (`omega_kernel::platform::Platform` under SNP): the kernel's side of
//! the `sev-snp` crate. The loader validated
//! the kernel's own memory, shared and registered the GHCB and checked the C-bit; this
//! module validates the rest of RAM, converts the DMA pool, and talks to the PSP.
//!
//! None of this has run on SNP hardware (no SNP host was available; see docs/sev-snp.md).
//! Under plain QEMU the kernel picks `NoTee` and this code is never entered.

use omega_arch::sev::{self, HwGhcb, HwPvalidate, MmioWindow};
use omega_boot_info::snp::{self, terminate};
use omega_boot_info::{BootInfo, PhysRange, Tee, phys, virt};
use omega_kernel::platform::{Platform, PlatformError};
use omega_page_tables::{self as page_tables, TableAccess};
use sev_snp::guest_msg::{GhcbTransport, guest_field};
use sev_snp::report::REPORT_LEN;
use sev_snp::{DerivedKeyRequest, GhcbPageStateChange, GuestMessenger, MemRange, SecretsPage};

use crate::hw::shared_pool;

pub struct SevSnp {
    ghcb: HwGhcb,
    version: u16,
    /// Holds VMPCK0; after a failed exchange it has wiped the key and refuses.
    messenger: GuestMessenger,
    /// Two shared pages (request, response) for guest messages, taken on first use.
    msg_pages: Option<(u64, u64)>,
    pml4: u64,
}

/// The first thing the kernel does under SNP, before the console: point the #VC handler
/// at the CPUID page, the GHCB and the device window. Without this, the first port write
/// would end the guest.
pub fn init_vc(info: &BootInfo) {
    // SAFETY: the CPUID page is launch-validated private RAM, reserved by the loader,
    // mapped in the direct map; it is only read.
    let page = unsafe { &*((virt::DIRECT_MAP_BASE + phys::CPUID_PAGE) as *const [u8; 4096]) };
    sev::vc_init_from_cpuid_page(page);
    let version =
        u16::try_from(info.ghcb_version).unwrap_or_else(|_| sev::terminate(terminate::GHCB));
    sev::vc_set_ghcb(
        HwGhcb {
            va: virt::GHCB,
            gpa: info.ghcb_phys,
        },
        version,
    );
    sev::vc_set_mmio(MmioWindow {
        va_base: virt::MMIO_BASE,
        pa_start: virt::MMIO_PHYS_START,
        pa_end: virt::MMIO_PHYS_END,
    });
}

/// The back-off of a guest request the host answered "busy": PIT time, like the clock's
/// calibration (host-controlled under SNP without Secure TSC, as every clock here is; a
/// host that speeds it up only reaches the give-up point sooner, which it could do by
/// answering with an error anyway).
fn busy_wait_ms(ms: u64) {
    let _ = crate::hw::clock::pit_wait_tsc(ms);
}

/// Page tables reached through the direct map.
struct DirectMapTables;

impl TableAccess for DirectMapTables {
    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        // SAFETY: `pa` comes from a walk of the live tables starting at CR3 (frames the
        // loader built in its reserved pool), and the direct map covers them; one entry is
        // edited at a time on the only CPU.
        unsafe { &mut *((virt::DIRECT_MAP_BASE + pa) as *mut [u64; 512]) }
    }
}

fn host_err(what: &'static str) -> impl Fn(sev_snp::PvalidateError) -> PlatformError {
    move |_| PlatformError::Host(what)
}

impl SevSnp {
    /// Takes VMPCK0 out of the secrets page (wiping every VMPCK there).
    pub fn new(info: &BootInfo) -> Result<Self, PlatformError> {
        if info.check() != Ok(Tee::SevSnp) {
            return Err(PlatformError::Host("boot info is not an SNP boot"));
        }
        // The loader refused SEV_STATUS with features the monitor lacks; the boot info
        // carries the value it checked, so a kernel paired with another loader cannot skip it.
        sev_snp::features::check(info.sev_status, sev_snp::features::POLICY)
            .map_err(|_| PlatformError::Host("SEV_STATUS features"))?;
        // SAFETY: the secrets page is launch-validated private RAM the loader reserved and
        // nothing else references; this is its only mutable borrow.
        let page =
            unsafe { &mut *((virt::DIRECT_MAP_BASE + phys::SECRETS_PAGE) as *mut [u8; 4096]) };
        let mut secrets =
            SecretsPage::new(page).map_err(|_| PlatformError::Host("secrets page version"))?;
        let key = secrets
            .take_vmpck(0)
            .map_err(|_| PlatformError::Host("VMPCK0"))?;
        // SECURITY: one copy of VMPCK0 (in the messenger); the others are never needed.
        secrets.wipe_all_vmpcks();
        let (ghcb, version) = sev::ghcb().ok_or(PlatformError::Host("no GHCB"))?;
        Ok(SevSnp {
            ghcb,
            version,
            messenger: GuestMessenger::new(key),
            msg_pages: None,
            pml4: info.pml4_phys,
        })
    }

    fn range(r: PhysRange) -> Result<MemRange, PlatformError> {
        let len = r
            .end
            .checked_sub(r.start)
            .ok_or(PlatformError::Host("empty range"))?;
        MemRange::new(virt::DIRECT_MAP_BASE + r.start, r.start, len)
            .map_err(|_| PlatformError::Host("unaligned range"))
    }

    /// Flips the direct map's C-bit over `r` (2 MiB pages only) and flushes the TLB.
    fn set_private(&mut self, r: PhysRange, private: bool) -> Result<(), PlatformError> {
        if !r.start.is_multiple_of(page_tables::SIZE_2M)
            || !r.end.is_multiple_of(page_tables::SIZE_2M)
        {
            return Err(PlatformError::Host(
                "shared memory must be whole 2 MiB pages",
            ));
        }
        let mut pa = r.start;
        while pa < r.end {
            let va = virt::DIRECT_MAP_BASE + pa;
            page_tables::set_private_2m(
                &mut DirectMapTables,
                self.pml4,
                snp::C_BIT_MASK,
                va,
                private,
            )
            .map_err(|_| PlatformError::Host("direct map"))?;
            x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(va));
            pa += page_tables::SIZE_2M;
        }
        Ok(())
    }

    fn transport_pages(&mut self) -> Result<(u64, u64), PlatformError> {
        if let Some(p) = self.msg_pages {
            return Ok(p);
        }
        let (req, _) =
            shared_pool::alloc(1).map_err(|_| PlatformError::Host("shared pool full"))?;
        let (resp, _) =
            shared_pool::alloc(1).map_err(|_| PlatformError::Host("shared pool full"))?;
        self.msg_pages = Some((req, resp));
        Ok((req, resp))
    }

    fn with_transport<R>(
        &mut self,
        f: impl FnOnce(&mut GuestMessenger, &mut GhcbTransport<'_, HwGhcb>) -> R,
    ) -> Result<R, PlatformError> {
        let (req, resp) = self.transport_pages()?;
        // SAFETY: both pages came from the shared pool for this platform's exclusive use,
        // are mapped RW (shared) in the direct map and are distinct.
        let (request_page, response_page) = unsafe {
            (
                &mut *((virt::DIRECT_MAP_BASE + req) as *mut [u8; 4096]),
                &mut *((virt::DIRECT_MAP_BASE + resp) as *mut [u8; 4096]),
            )
        };
        let mut t = GhcbTransport {
            platform: &mut self.ghcb,
            version: self.version,
            request_page,
            request_gpa: req,
            response_page,
            response_gpa: resp,
            wait_ms: busy_wait_ms,
        };
        Ok(f(&mut self.messenger, &mut t))
    }
}

impl Platform for SevSnp {
    fn tee(&self) -> Tee {
        Tee::SevSnp
    }

    fn accept_memory(&mut self, range: PhysRange) -> Result<(), PlatformError> {
        // SECURITY: the private state first (a VMM need not have assigned this RAM to the
        // guest; Linux and OVMF ask first too), then PVALIDATE as fresh memory: "no
        // change" there means the host mapped a page we had already validated at this
        // address, a remapping attack, and `make_private` refuses.
        let mut psc = GhcbPageStateChange {
            platform: &mut self.ghcb,
            version: self.version,
        };
        sev_snp::pvalidate::make_private(&mut HwPvalidate, &mut psc, Self::range(range)?)
            .map_err(host_err("accepting fresh RAM"))?;
        Ok(())
    }

    fn share(&mut self, range: PhysRange) -> Result<(), PlatformError> {
        let r = Self::range(range)?;
        // Rescind while still mapped private, then the host's page-state change, then the
        // shared mapping; nothing touches the range in between.
        let mut psc = GhcbPageStateChange {
            platform: &mut self.ghcb,
            version: self.version,
        };
        sev_snp::pvalidate::make_shared(&mut HwPvalidate, &mut psc, r)
            .map_err(host_err("conversion to shared"))?;
        self.set_private(range, false)
    }

    fn unshare(&mut self, range: PhysRange) -> Result<(), PlatformError> {
        let r = Self::range(range)?;
        self.set_private(range, true)?;
        let mut psc = GhcbPageStateChange {
            platform: &mut self.ghcb,
            version: self.version,
        };
        sev_snp::pvalidate::make_private(&mut HwPvalidate, &mut psc, r)
            .map_err(host_err("conversion to private"))?;
        // SECURITY: the host chose these pages' contents while they were shared.
        // SAFETY: the range is now private, validated and mapped RW in the direct map.
        unsafe { core::ptr::write_bytes(r.va() as *mut u8, 0, r.len() as usize) };
        Ok(())
    }

    fn private_pte_bits(&self) -> u64 {
        snp::C_BIT_MASK
    }

    fn attestation_report(
        &mut self,
        report_data: &[u8; 64],
    ) -> Result<[u8; REPORT_LEN], PlatformError> {
        let rd = *report_data;
        self.with_transport(|m, t| m.attestation_report(t, rd))?
            .map_err(|_| PlatformError::Host("MSG_REPORT_REQ failed"))
    }

    fn sealing_key(&mut self) -> Result<[u8; 32], PlatformError> {
        // Bound to the launch measurement and the guest policy, derived from the VCEK.
        let req = DerivedKeyRequest {
            root_key_select: 0,
            guest_field_select: guest_field::MEASUREMENT | guest_field::GUEST_POLICY,
            vmpl: 0,
            guest_svn: 0,
            tcb_version: 0,
        };
        let key = self
            .with_transport(|m, t| m.derived_key(t, &req))?
            .map_err(|_| PlatformError::Host("MSG_KEY_REQ failed"))?;
        Ok(*key.as_bytes())
    }
}
