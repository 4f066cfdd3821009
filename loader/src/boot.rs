//! The loader on the hardware: the reset code (`reset.s`) and the 64-bit steps that load
//! the kernel.

use firmware_layout::GuidTable;
use omega_arch::exceptions::{self, Gate, Idt};
use omega_arch::sev::{self, HwGhcb, HwMsr, HwPvalidate};
use omega_arch::{cpu, serial, serial_print, serial_println};
use omega_boot_info::snp::{self, terminate};
use omega_boot_info::{BootInfo, E820_RAM, PhysRange, Tee, phys, virt};
use omega_loader::{direct_map, elf, fwcfg};
use omega_page_tables as page_tables;
use sha2::{Digest, Sha256};

core::arch::global_asm!(
    include_str!("reset.s"),
    stack_top = const phys::LOADER_STACK_TOP,
    idt32 = const phys::IDT32,
    pml4 = const phys::EARLY_PML4,
    pdpt = const phys::EARLY_PDPT,
    pd = const phys::EARLY_PD,
    pdpt_high = const phys::EARLY_PDPT_HIGH,
    cpuid_page = const phys::CPUID_PAGE,
    c_bit = const snp::C_BIT,
    term_c_bit = const sev::termination_request(terminate::C_BIT),
    term_snp_unsupported = const sev::termination_request(terminate::SNP_UNSUPPORTED),
    term_cpuid_page = const sev::termination_request(terminate::CPUID_PAGE),
    options(att_syntax)
);

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The ROM can be at most this large (and must be a multiple of 64 KiB).
const MAX_ROM: u32 = 16 << 20;
const FOUR_GIB: u64 = 1 << 32;
/// Never map more RAM than this into the direct map (64 GiB).
const MAX_DIRECT_MAP: u64 = 64 << 30;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    omega_arch::panic_report("omega-loader", info)
}

fn fatal(what: &str, err: impl core::fmt::Display) -> ! {
    omega_arch::fatal::fatal("omega-loader", what, err)
}

struct PortIo;

impl fwcfg::FwCfgIo for PortIo {
    fn select(&mut self, key: u16) {
        // SAFETY: the fw_cfg selector port only changes which item the data port reads.
        unsafe { x86_64::instructions::port::Port::<u16>::new(fwcfg::SELECTOR_PORT).write(key) }
    }
    fn read(&mut self, buf: &mut [u8]) {
        let mut port = x86_64::instructions::port::Port::<u8>::new(fwcfg::DATA_PORT);
        for b in buf {
            // SAFETY: reading the fw_cfg data port has no effect beyond advancing it.
            *b = unsafe { port.read() };
        }
    }
}

/// Page-table frames from the loader's pool, reached through the identity map.
struct Pool {
    next: u64,
    end: u64,
    /// The C-bit under SNP, else 0.
    enc: u64,
}

impl page_tables::FrameSource for Pool {
    fn alloc(&mut self) -> Option<u64> {
        if self.next + page_tables::SIZE_4K > self.end {
            return None;
        }
        let pa = self.next;
        self.next += page_tables::SIZE_4K;
        // SAFETY: the pool lies in the loader's reserved RAM (below 4 GiB, identity
        // mapped) and each frame is handed out once.
        unsafe { core::ptr::write_bytes(pa as *mut u8, 0, page_tables::SIZE_4K as usize) };
        Some(pa)
    }

    fn private_bits(&self) -> u64 {
        self.enc
    }
}

impl page_tables::TableAccess for Pool {
    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        // SAFETY: `pa` is a frame this pool handed out (all page aligned, identity mapped,
        // used only as page tables), and the mapper holds one table reference at a time.
        unsafe { &mut *(pa as *mut [u64; 512]) }
    }
}

/// The SNP steps before the console works (none of which may print): CPUID table for the
/// #VC handler, the SEV_STATUS feature check, GHCB protocol negotiation, and the GHCB page,
/// shared and registered. Returns the negotiated protocol version and the features found.
/// Each refusal is a distinct termination code.
fn snp_early() -> (u16, sev_snp::features::SnpFeatures) {
    // SAFETY: the CPUID page is launch-validated private memory at a fixed address in the
    // early identity map; it is only read.
    let page = unsafe { &*(phys::CPUID_PAGE as *const [u8; 4096]) };
    // The reset code checked the C-bit too; checking the parsed table keeps the two in step.
    sev::vc_init_from_cpuid_page(page);

    // SECURITY: the hypervisor picks the guest's SEV features; one the monitor does not
    // implement (alternate injection, vTOM, ...) would change how events reach it or what
    // "private" means. Refused like Linux's snp_check_features, before anything else.
    // SAFETY: the reset code read SEV_STATUS already (CPUID said SEV exists); reading it
    // has no side effects and, under SNP, raises no #VC.
    let status = unsafe { x86_64::registers::model_specific::Msr::new(cpu::MSR_SEV_STATUS).read() };
    let features = sev_snp::features::check(status, sev_snp::features::POLICY)
        .unwrap_or_else(|_| sev::terminate(terminate::SNP_UNSUPPORTED));

    let mut msr = HwMsr;
    let version = sev_snp::msr_protocol::negotiate_protocol(&mut msr, snp::C_BIT as u8)
        .unwrap_or_else(|e| {
            sev::terminate(match e {
                sev_snp::MsrError::CBitMismatch { .. } => terminate::C_BIT,
                _ => terminate::PROTOCOL_UNSUPPORTED,
            })
        });
    sev_snp::msr_protocol::require_snp_features(&mut msr)
        .unwrap_or_else(|_| sev::terminate(terminate::SNP_UNSUPPORTED));

    // The GHCB page: rescind its validation, have the host share it, then map it
    // without the C-bit by splitting the early 2 MiB identity page that holds it.
    let range = sev_snp::MemRange::new(phys::GHCB_PAGE, phys::GHCB_PAGE, page_tables::SIZE_4K)
        .unwrap_or_else(|_| sev::terminate(terminate::PSC));
    sev_snp::pvalidate::make_shared(
        &mut HwPvalidate,
        &mut sev_snp::MsrPageStateChange { msr: &mut msr },
        range,
    )
    .unwrap_or_else(|_| sev::terminate(terminate::PSC));
    let big = phys::GHCB_PAGE & !(page_tables::SIZE_2M - 1);
    // SAFETY: EARLY_PT is a launch-validated loader page used for nothing else; the early
    // PD is the reset code's, identity mapped. The new table maps the same 2 MiB as the
    // large page it replaces (so no live data moves), with only the GHCB shared; the CR3
    // reload flushes the old translation before the GHCB is touched.
    unsafe {
        let pt = &mut *(phys::EARLY_PT as *mut [u64; 512]);
        for (i, e) in pt.iter_mut().enumerate() {
            let pa = big + i as u64 * page_tables::SIZE_4K;
            let enc = if pa == phys::GHCB_PAGE {
                page_tables::NO_EXECUTE
            } else {
                snp::C_BIT_MASK
            };
            *e = pa | page_tables::PRESENT | page_tables::WRITABLE | enc;
        }
        let pd = &mut *(phys::EARLY_PD as *mut [u64; 512]);
        pd[(big / page_tables::SIZE_2M) as usize] =
            phys::EARLY_PT | page_tables::PRESENT | page_tables::WRITABLE | snp::C_BIT_MASK;
        let (frame, flags) = x86_64::registers::control::Cr3::read_raw();
        x86_64::registers::control::Cr3::write_raw(frame, flags);
        core::ptr::write_bytes(phys::GHCB_PAGE as *mut u8, 0, page_tables::SIZE_4K as usize);
    }
    sev_snp::msr_protocol::register_ghcb(&mut msr, phys::GHCB_PAGE)
        .unwrap_or_else(|_| sev::terminate(terminate::GHCB));
    sev::vc_set_ghcb(
        HwGhcb {
            va: phys::GHCB_PAGE,
            gpa: phys::GHCB_PAGE,
        },
        version,
    );
    (version, features)
}

/// The RAM entry that wholly contains `[start, end)`, if any.
fn in_ram(info: &BootInfo, start: u64, end: u64) -> bool {
    info.e820()
        .iter()
        .any(|e| e.kind == E820_RAM && e.addr <= start && end <= e.end())
}

/// `sev_status_low` is SEV_STATUS[31:0] as the reset code read it (0 without SEV); the
/// reset code let through only "no SEV" and SEV-SNP.
#[unsafe(no_mangle)]
extern "C" fn omega_loader_main(sev_status_low: u64) -> ! {
    unsafe extern "C" {
        static mut __loader_bss_start: u8;
        static mut __loader_bss_end: u8;
    }
    // SAFETY: the linker script places .bss in its own launch-validated RAM page
    // (phys::LOADER_BSS, mapped through the reset code's low alias); nothing has used a
    // static yet, and zeroing makes every one its initial value.
    unsafe {
        let start = &raw mut __loader_bss_start;
        let len = (&raw mut __loader_bss_end).offset_from(start) as usize;
        core::ptr::write_bytes(start, 0, len);
    }
    let snp_active = sev_status_low & 0b100 != 0;
    // What a stop may print is decided here, before the first exception could happen.
    omega_arch::fatal::set_platform(sev_status_low);
    if snp_active {
        // Port I/O raises #VC, which needs the GHCB set up below.
        serial::set_enabled(false);
    }
    // The IDT lives in this frame, which never returns.
    let mut idt = Idt {
        gates: [Gate::default(); 32],
    };
    exceptions::fill(&mut idt, 0);
    // SAFETY: `idt` stays in place until the kernel loads its own.
    unsafe { exceptions::load(&idt) };
    let snp = snp_active.then(snp_early);
    serial::set_enabled(true);
    serial::init();
    serial_println!("omega-loader {VERSION}: long mode");

    let sev = cpu::detect_sev();
    if sev.snp_active() != snp_active || (sev.sev_active() && !sev.snp_active()) {
        // The reset code refuses plain SEV and SEV-ES; reaching here means the checks disagree.
        fatal(
            "SEV",
            format_args!(
                "SEV_STATUS {:#x} disagrees with the reset code's {sev_status_low:#x}",
                sev.sev_status
            ),
        );
    }
    let enc = if snp_active { snp::C_BIT_MASK } else { 0 };

    let mut info = BootInfo::empty();
    info.tee = if snp_active { Tee::SevSnp } else { Tee::None } as u32;
    info.sev_status = sev.sev_status;
    if let Some((ghcb_version, features)) = snp {
        info.c_bit = snp::C_BIT;
        info.ghcb_phys = phys::GHCB_PAGE;
        info.ghcb_version = u32::from(ghcb_version);
        serial_println!(
            "omega-loader: SEV-SNP guest (SEV_STATUS {:#x}), GHCB protocol {ghcb_version}",
            sev.sev_status
        );
        serial_print!("omega-loader: optional SNP features:");
        for name in features.optional_present() {
            serial_print!(" {name}");
        }
        serial_println!(
            "{}",
            if features.optional_present().next().is_none() {
                " none"
            } else {
                ""
            }
        );
    }

    let mut io = PortIo;
    fwcfg::probe(&mut io).unwrap_or_else(|e| fatal("fw_cfg", e));
    let n = fwcfg::read_e820(&mut io, &mut info.e820)
        .unwrap_or_else(|e| fatal("memory map (fw_cfg etc/e820)", e));
    info.e820_count = n as u32;
    match fwcfg::read_file(&mut io, "opt/omega/cmdline", &mut info.cmdline) {
        Ok(len) => info.cmdline_len = len as u32,
        Err(fwcfg::FwCfgError::NotFound) => {}
        Err(e) => fatal("command line (fw_cfg opt/omega/cmdline)", e),
    }
    let ram = info.usable_ram();
    serial_println!("omega-loader: {} MiB RAM in {n} e820 entries", ram >> 20);
    if ram < phys::MIN_RAM {
        fatal(
            "memory",
            format_args!(
                "{} MiB RAM, at least {} MiB needed",
                ram >> 20,
                phys::MIN_RAM >> 20
            ),
        );
    }

    // The ROM: read the top page first to learn its size, then the whole of it.
    // SAFETY: the top 4 KiB below 4 GiB is always the firmware ROM (where the CPU reset),
    // identity mapped and never written.
    let top = unsafe { core::slice::from_raw_parts((FOUR_GIB - 0x1000) as *const u8, 0x1000) };
    let rom_size = GuidTable::parse(top)
        .and_then(|t| t.declared_image_size())
        .unwrap_or_else(|e| fatal("image footer", e));
    if !rom_size.is_multiple_of(0x1_0000) || !(0x1_0000..=MAX_ROM).contains(&rom_size) {
        fatal(
            "image footer",
            format_args!(
                "declared image size {rom_size:#x} is not a multiple of 64 KiB up to 16 MiB"
            ),
        );
    }
    // SAFETY: the ROM is mapped in full below 4 GiB; its size was just checked.
    let rom = unsafe {
        core::slice::from_raw_parts(
            (FOUR_GIB - u64::from(rom_size)) as *const u8,
            rom_size as usize,
        )
    };
    let table = GuidTable::parse(rom).unwrap_or_else(|e| fatal("image footer", e));
    let entry = table.kernel().unwrap_or_else(|e| fatal("image footer", e));
    let elf_bytes = &rom[entry.offset..entry.offset + entry.len];
    let digest: [u8; 32] = Sha256::digest(elf_bytes).into();
    // SECURITY: under plain QEMU nothing else notices a corrupted ROM; under SNP the launch
    // digest covers it, and this check costs little.
    if digest != entry.sha256 {
        fatal(
            "kernel",
            "SHA-256 of the kernel ELF does not match the image footer (corrupted image)",
        );
    }
    info.kernel_sha256 = digest;

    let kmin = virt::KERNEL_BASE + phys::KERNEL_PHYS_MIN;
    let kernel = elf::Kernel::parse(elf_bytes, kmin, virt::KERNEL_IMAGE_END)
        .unwrap_or_else(|e| fatal("kernel ELF", e));
    let phys_end = kernel.vend() - virt::KERNEL_BASE;
    let stack_phys = phys_end;
    let stack_end = stack_phys + virt::KERNEL_STACK_SIZE;
    if stack_end > FOUR_GIB || !in_ram(&info, phys::KERNEL_PHYS_MIN, stack_end) {
        fatal(
            "kernel",
            format_args!(
                "image and stack need RAM at {:#x}..{stack_end:#x}",
                phys::KERNEL_PHYS_MIN
            ),
        );
    }
    if let Some((ghcb_version, _)) = snp {
        // SECURITY: the kernel's frames were not part of the launch: ask the host for the
        // private state, then validate them as fresh memory ("no change" = remapped by the
        // host), before writing anything there (Linux and OVMF order).
        let range = sev_snp::MemRange::new(
            phys::KERNEL_PHYS_MIN,
            phys::KERNEL_PHYS_MIN,
            stack_end - phys::KERNEL_PHYS_MIN,
        )
        .unwrap_or_else(|e| fatal("PVALIDATE", e));
        let mut ghcb = HwGhcb {
            va: phys::GHCB_PAGE,
            gpa: phys::GHCB_PAGE,
        };
        let mut psc = sev_snp::GhcbPageStateChange {
            platform: &mut ghcb,
            version: ghcb_version,
        };
        sev_snp::pvalidate::make_private(&mut HwPvalidate, &mut psc, range).unwrap_or_else(|e| {
            let reason = match e {
                sev_snp::PvalidateError::Psc(_) => terminate::PSC,
                _ => terminate::PVALIDATE,
            };
            omega_arch::fatal::fatal_as(reason, "omega-loader", "accepting the kernel's memory", e)
        });
    }
    for seg in kernel.segments() {
        let pa = seg.vaddr - virt::KERNEL_BASE;
        let data = kernel.data(seg);
        // SAFETY: [pa, pa + mem_len) lies in RAM checked above, below 4 GiB (identity
        // mapped), above the loader's own memory, and segments do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), pa as *mut u8, data.len());
            core::ptr::write_bytes(
                (pa + data.len() as u64) as *mut u8,
                0,
                (seg.mem_len - data.len() as u64) as usize,
            );
        }
    }

    let mut pool = Pool {
        next: phys::PT_POOL_START,
        end: phys::PT_POOL_END,
        enc,
    };
    let root = page_tables::FrameSource::alloc(&mut pool)
        .unwrap_or_else(|| fatal("page tables", "pool empty"));
    let map_err = |e: page_tables::PageTableError| -> ! { fatal("page tables", e) };

    // Direct map of RAM: writable, never executable. SECURITY: under SNP the GHCB page has
    // no mapping there, so no private alias of a shared page exists (see `direct_map`).
    let hole = snp.map(|_| phys::GHCB_PAGE);
    for e in info.e820().iter().filter(|e| e.kind == E820_RAM) {
        let start = e.addr / page_tables::SIZE_2M * page_tables::SIZE_2M;
        let end = e.end().min(MAX_DIRECT_MAP).div_ceil(page_tables::SIZE_2M) * page_tables::SIZE_2M;
        for base in (start..end).step_by(page_tables::SIZE_2M as usize) {
            for (pa, size) in direct_map::frame_pages(base, hole) {
                match page_tables::map(
                    &mut pool,
                    root,
                    virt::DIRECT_MAP_BASE + pa,
                    pa,
                    size,
                    page_tables::WRITABLE | page_tables::NO_EXECUTE | enc,
                ) {
                    Ok(()) | Err(page_tables::PageTableError::AlreadyMapped(_)) => {}
                    Err(e) => map_err(e),
                }
            }
        }
    }
    // Device registers: uncached, never executable, shared (no C-bit: the host emulates
    // them, through #VC and the GHCB under SNP).
    let mut pa = virt::MMIO_PHYS_START;
    while pa < virt::MMIO_PHYS_END {
        let flags = page_tables::WRITABLE | page_tables::NO_EXECUTE | page_tables::UNCACHED;
        page_tables::map(
            &mut pool,
            root,
            virt::MMIO_BASE + pa,
            pa,
            page_tables::SIZE_2M,
            flags,
        )
        .unwrap_or_else(|e| map_err(e));
        pa += page_tables::SIZE_2M;
    }
    // Kernel segments with their own permissions: W^X, and NX on everything not code.
    for seg in kernel.segments() {
        let flags = match (seg.writable(), seg.executable()) {
            (true, _) => page_tables::WRITABLE | page_tables::NO_EXECUTE | enc,
            (false, true) => enc,
            (false, false) => page_tables::NO_EXECUTE | enc,
        };
        let len = seg.vend_page() - seg.vaddr;
        page_tables::map_range(
            &mut pool,
            root,
            seg.vaddr,
            seg.vaddr - virt::KERNEL_BASE,
            len,
            flags,
        )
        .unwrap_or_else(|e| map_err(e));
    }
    // The stack, with the page under it left unmapped as a guard.
    // SAFETY: the stack frames are RAM checked above and belong to nobody else.
    unsafe { core::ptr::write_bytes(stack_phys as *mut u8, 0, virt::KERNEL_STACK_SIZE as usize) };
    let stack_bottom = virt::KERNEL_STACK_TOP - virt::KERNEL_STACK_SIZE;
    page_tables::map_range(
        &mut pool,
        root,
        stack_bottom,
        stack_phys,
        virt::KERNEL_STACK_SIZE,
        page_tables::WRITABLE | page_tables::NO_EXECUTE | enc,
    )
    .unwrap_or_else(|e| map_err(e));
    if snp.is_some() {
        // The GHCB for the kernel: shared, never executable; its only mapping.
        page_tables::map(
            &mut pool,
            root,
            virt::GHCB,
            phys::GHCB_PAGE,
            page_tables::SIZE_4K,
            page_tables::WRITABLE | page_tables::NO_EXECUTE,
        )
        .unwrap_or_else(|e| map_err(e));
    }
    // The ROM's top 2 MiB, read-only and executable: this code runs from there while it
    // switches to the new tables.
    page_tables::map(
        &mut pool,
        root,
        virt::ROM_ALIAS_BASE,
        FOUR_GIB - page_tables::SIZE_2M,
        page_tables::SIZE_2M,
        enc,
    )
    .unwrap_or_else(|e| map_err(e));

    let info_pa = page_tables::FrameSource::alloc(&mut pool)
        .unwrap_or_else(|| fatal("boot info", "pool empty"));
    info.reserved[0] = PhysRange {
        start: phys::SECRETS_PAGE,
        end: phys::PT_POOL_END,
    };
    info.reserved[1] = PhysRange {
        start: phys::KERNEL_PHYS_MIN,
        end: stack_end,
    };
    info.reserved_count = 2;
    info.kernel_phys_end = stack_end;
    info.pml4_phys = root;
    // SAFETY: `info_pa` is a fresh, zeroed pool frame and BootInfo fits in 4 KiB.
    unsafe { core::ptr::write(info_pa as *mut BootInfo, info) };

    serial_println!(
        "omega-loader: kernel {} KiB at {:#x}, entry {:#x}; {} page-table frames; jumping",
        entry.len >> 10,
        phys::KERNEL_PHYS_MIN,
        kernel.entry,
        (pool.next - phys::PT_POOL_START) / page_tables::SIZE_4K
    );
    // SAFETY: the new tables map the kernel (entry included), its stack, the boot info
    // (direct map) and this code (ROM alias); after the CR3 write nothing here touches
    // memory before the jump. Under SNP the root itself is private (C-bit in CR3). The
    // fake return address keeps the ABI's stack alignment.
    unsafe {
        core::arch::asm!(
            "mov cr3, {root}",
            "mov rsp, {stack}",
            "push 0",
            "xor ebp, ebp",
            "jmp {entry}",
            root = in(reg) root | enc,
            stack = in(reg) virt::KERNEL_STACK_TOP,
            entry = in(reg) kernel.entry,
            in("rdi") virt::DIRECT_MAP_BASE + info_pa,
            options(noreturn)
        )
    }
}
