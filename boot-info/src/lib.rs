//! What the loader and the kernel agree on: the fixed physical memory plan of the image,
//! the virtual layout, and the [`BootInfo`] the loader leaves for the kernel.
//!
//! Everything here is plain data (`#[repr(C)]`, no pointers), so a kernel built from a
//! different commit than the loader is caught by [`BootInfo::check`] instead of
//! misreading memory.
#![no_std]
#![forbid(unsafe_code)]

/// Guest-physical memory plan. The first three regions are declared in the image's SEV
/// metadata, so under SNP they are validated (and measured) by the launch itself.
pub mod phys {
    /// SNP secrets page (SEV metadata type 2).
    pub const SECRETS_PAGE: u64 = 0x80_0000;
    /// SNP CPUID page (SEV metadata type 3).
    pub const CPUID_PAGE: u64 = 0x80_1000;
    /// Start of the loader's pre-validated working memory (SEV metadata type 1).
    pub const SEC_MEM_START: u64 = 0x80_2000;
    /// End (exclusive) of the loader's working memory.
    pub const SEC_MEM_END: u64 = 0x90_0000;
    /// Early identity page tables built by the reset code: PML4, PDPT, 4 PDs, high PDPT.
    pub const EARLY_PML4: u64 = 0x80_2000;
    pub const EARLY_PDPT: u64 = 0x80_3000;
    pub const EARLY_PD: u64 = 0x80_4000;
    pub const EARLY_PDPT_HIGH: u64 = 0x80_8000;
    /// 32-bit IDT used only by the reset code (SEV detection).
    pub const IDT32: u64 = 0x80_9000;
    /// Under SNP: the GHCB page the loader shares with the host and hands to the kernel.
    pub const GHCB_PAGE: u64 = 0x80_a000;
    /// Under SNP: a 4 KiB page table that splits the early identity map's 2 MiB page
    /// around [`GHCB_PAGE`], so the GHCB alone is mapped without the C-bit.
    pub const EARLY_PT: u64 = 0x80_b000;
    /// The loader's zero-initialised statics (.bss, at most 4 KiB: the `#VC` handler's
    /// state); the loader reaches it through [`LOADER_LOW_ALIAS`].
    pub const LOADER_BSS: u64 = 0x80_c000;
    /// The reset code maps physical 0..1 GiB here too, so the loader (linked in the top
    /// 2 GiB) can address its .bss; the kernel's page tables drop this alias.
    pub const LOADER_LOW_ALIAS: u64 = 0xffff_ffff_8000_0000;
    /// Loader stack: grows down from `LOADER_STACK_TOP`.
    pub const LOADER_STACK_BOTTOM: u64 = 0x80_d000;
    pub const LOADER_STACK_TOP: u64 = 0x82_0000;
    /// Frames for the kernel's page tables and the boot info.
    pub const PT_POOL_START: u64 = 0x82_0000;
    pub const PT_POOL_END: u64 = SEC_MEM_END;
    /// Lowest physical address a kernel segment may occupy.
    pub const KERNEL_PHYS_MIN: u64 = 0x100_0000;
    /// The RAM the image needs at least (kernel above 16 MiB + stack + heap).
    pub const MIN_RAM: u64 = 64 << 20;
}

/// Virtual layout the loader sets up for the kernel.
pub mod virt {
    /// All RAM is mapped here (read/write, never executable).
    pub const DIRECT_MAP_BASE: u64 = 0xffff_8000_0000_0000;
    /// The kernel is linked at `KERNEL_BASE + physical address`.
    pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
    /// Kernel segments must lie in `[KERNEL_BASE + KERNEL_PHYS_MIN, KERNEL_IMAGE_END)`.
    pub const KERNEL_IMAGE_END: u64 = 0xffff_ffff_9000_0000;
    /// The boot stack's top; a 4 KiB unmapped guard page sits under its bottom.
    pub const KERNEL_STACK_TOP: u64 = 0xffff_ffff_a000_0000;
    pub const KERNEL_STACK_SIZE: u64 = 128 << 10;
    /// Device MMIO (virtio-mmio, APIC, HPET) is mapped here at `MMIO_BASE + physical`,
    /// uncached, never executable; only `[MMIO_PHYS_START, MMIO_PHYS_END)` is mapped.
    pub const MMIO_BASE: u64 = 0xffff_c000_0000_0000;
    pub const MMIO_PHYS_START: u64 = 0xfe00_0000;
    pub const MMIO_PHYS_END: u64 = 0xff00_0000;
    /// The ROM's top 2 MiB stay mapped here read-only + executable: the loader's last
    /// instructions (the CR3 switch) run from there. The kernel may unmap it.
    pub const ROM_ALIAS_BASE: u64 = 0xffff_ffff_ffe0_0000;
    /// Under SNP: the GHCB page (`phys::GHCB_PAGE`), mapped without the C-bit, never
    /// executable. Not mapped on other platforms.
    pub const GHCB: u64 = 0xffff_ffff_b000_0000;
}

/// SEV-SNP constants the loader and the kernel share.
pub mod snp {
    /// The C-bit position every SNP-capable AMD part so far uses (Milan, Genoa, Bergamo,
    /// Siena, Turin). SECURITY: pinned, and checked against the PSP-validated CPUID page,
    /// so a host cannot move encryption to another bit.
    pub const C_BIT: u32 = 51;
    /// The page-table bit that marks a mapping private (encrypted).
    pub const C_BIT_MASK: u64 = 1 << C_BIT;
    /// Why an SNP guest asked the hypervisor to end it: the GHCB termination request's
    /// reason code set (4 bits) and reason code (8 bits) (GHCB spec 4.1.13 / 2.3.1). The
    /// host sees only this pair, so each condition has its own, and nothing else (no
    /// register, no address) travels with it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Termination {
        pub set: u8,
        pub code: u8,
    }

    /// Every termination reason the image uses. Set 0 is the GHCB spec's general set (its
    /// codes mean the same to every hypervisor); set 1 is Omega's own (the spec leaves
    /// other sets to the guest; Linux uses set 1 for its own codes, so a host decoding
    /// Omega's must know it is running Omega). These values never change meaning.
    pub mod terminate {
        use super::Termination;

        /// GHCB spec set 0, code 0: general termination request.
        pub const GENERAL: Termination = Termination { set: 0, code: 0 };
        /// GHCB spec set 0, code 1: the hypervisor's GHCB protocol range does not include
        /// version 2.
        pub const PROTOCOL_UNSUPPORTED: Termination = Termination { set: 0, code: 1 };
        /// GHCB spec set 0, code 2: SEV-SNP features not supported: SEV-ES without SNP,
        /// a hypervisor without the SNP feature bit, or SEV_STATUS with a feature the
        /// monitor does not implement or without one the policy requires
        /// (`sev_snp::features`).
        pub const SNP_UNSUPPORTED: Termination = Termination { set: 0, code: 2 };
        /// Omega set 1, code 1: the CPUID page is missing, malformed, or lacks a leaf the
        /// reset code asks for.
        pub const CPUID_PAGE: Termination = Termination { set: 1, code: 1 };
        /// PVALIDATE failed or reported "no change" on fresh memory.
        pub const PVALIDATE: Termination = Termination { set: 1, code: 2 };
        /// A page-state change failed or the host answered inconsistently.
        pub const PSC: Termination = Termination { set: 1, code: 3 };
        /// GHCB registration failed (or the boot info's GHCB version is unusable).
        pub const GHCB: Termination = Termination { set: 1, code: 4 };
        /// The CPUID page puts the C-bit somewhere other than [`super::C_BIT`].
        pub const C_BIT: Termination = Termination { set: 1, code: 5 };
        /// A #VC the monitor cannot handle (unknown exit, undecodable instruction, MMIO
        /// outside the device window, host error).
        pub const VC: Termination = Termination { set: 1, code: 6 };
        /// A fatal error or a panic (a short fixed line went to the console first).
        pub const FATAL: Termination = Termination { set: 1, code: 7 };
        /// An unexpected CPU exception (any vector but #VC, including an NMI or #PF the
        /// host injected): the monitor stops without printing anything.
        pub const EXCEPTION: Termination = Termination { set: 1, code: 8 };

        /// All of them, for tests and tools that decode a termination.
        pub const ALL: [(&str, Termination); 11] = [
            ("general", GENERAL),
            ("GHCB protocol unsupported", PROTOCOL_UNSUPPORTED),
            ("SNP features unsupported", SNP_UNSUPPORTED),
            ("CPUID page", CPUID_PAGE),
            ("PVALIDATE", PVALIDATE),
            ("page-state change", PSC),
            ("GHCB", GHCB),
            ("C-bit position", C_BIT),
            ("unhandled #VC", VC),
            ("fatal error", FATAL),
            ("unexpected exception", EXCEPTION),
        ];
    }
}

pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"OMEGABI\x01");
pub const BOOT_INFO_VERSION: u32 = 2;
pub const MAX_E820: usize = 64;
pub const MAX_CMDLINE: usize = 256;
pub const MAX_RESERVED: usize = 8;

/// The TEE the loader found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Tee {
    None = 0,
    Sev = 1,
    SevEs = 2,
    SevSnp = 3,
}

impl Tee {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Tee::None,
            1 => Tee::Sev,
            2 => Tee::SevEs,
            3 => Tee::SevSnp,
            _ => return None,
        })
    }

    /// The name used in banners and evidence.
    pub fn name(self) -> &'static str {
        match self {
            Tee::None => "none",
            Tee::Sev => "sev",
            Tee::SevEs => "sev-es",
            Tee::SevSnp => "sev-snp",
        }
    }
}

/// E820 memory type: usable RAM.
pub const E820_RAM: u32 = 1;

/// One E820 entry, as QEMU's fw_cfg `etc/e820` file stores it (20 bytes, little endian).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct E820Entry {
    pub addr: u64,
    pub len: u64,
    pub kind: u32,
    pub _pad: u32,
}

impl E820Entry {
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.len)
    }
}

/// A physical range `[start, end)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PhysRange {
    pub start: u64,
    pub end: u64,
}

impl PhysRange {
    pub fn overlaps(&self, other: &PhysRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// What the loader leaves for the kernel, in a page of its own.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct BootInfo {
    pub magic: u64,
    pub version: u32,
    /// A [`Tee`] value.
    pub tee: u32,
    /// The SEV_STATUS MSR (0 without SEV).
    pub sev_status: u64,
    pub e820_count: u32,
    pub reserved_count: u32,
    pub e820: [E820Entry; MAX_E820],
    /// Physical ranges the kernel must not reuse (loader memory, kernel image and stack).
    pub reserved: [PhysRange; MAX_RESERVED],
    /// First physical address after everything the loader placed for the kernel.
    pub kernel_phys_end: u64,
    /// Physical address of the page-table root the kernel runs on.
    pub pml4_phys: u64,
    pub cmdline_len: u32,
    pub _pad: u32,
    pub cmdline: [u8; MAX_CMDLINE],
    /// SHA-256 of the kernel ELF, as checked by the loader.
    pub kernel_sha256: [u8; 32],
    /// Under SNP: the C-bit position ([`snp::C_BIT`]); 0 on other platforms.
    pub c_bit: u32,
    /// Under SNP: the negotiated GHCB protocol version.
    pub ghcb_version: u32,
    /// Under SNP: the registered GHCB page (mapped at `virt::GHCB`); 0 otherwise.
    pub ghcb_phys: u64,
}

/// Why a boot info is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInfoError {
    BadMagic,
    BadVersion(u32),
    BadTee(u32),
    BadCounts,
}

impl BootInfo {
    pub const fn empty() -> Self {
        BootInfo {
            magic: BOOT_INFO_MAGIC,
            version: BOOT_INFO_VERSION,
            tee: Tee::None as u32,
            sev_status: 0,
            e820_count: 0,
            reserved_count: 0,
            e820: [E820Entry {
                addr: 0,
                len: 0,
                kind: 0,
                _pad: 0,
            }; MAX_E820],
            reserved: [PhysRange { start: 0, end: 0 }; MAX_RESERVED],
            kernel_phys_end: 0,
            pml4_phys: 0,
            cmdline_len: 0,
            _pad: 0,
            cmdline: [0; MAX_CMDLINE],
            kernel_sha256: [0; 32],
            c_bit: 0,
            ghcb_version: 0,
            ghcb_phys: 0,
        }
    }

    /// Checks the header and counts; the kernel calls this before trusting anything else.
    pub fn check(&self) -> Result<Tee, BootInfoError> {
        if self.magic != BOOT_INFO_MAGIC {
            return Err(BootInfoError::BadMagic);
        }
        if self.version != BOOT_INFO_VERSION {
            return Err(BootInfoError::BadVersion(self.version));
        }
        if self.e820_count as usize > MAX_E820
            || self.reserved_count as usize > MAX_RESERVED
            || self.cmdline_len as usize > MAX_CMDLINE
        {
            return Err(BootInfoError::BadCounts);
        }
        let tee = Tee::from_u32(self.tee).ok_or(BootInfoError::BadTee(self.tee))?;
        let snp_fields_ok = match tee {
            Tee::SevSnp => {
                self.c_bit == snp::C_BIT
                    && self.ghcb_phys == phys::GHCB_PAGE
                    && self.ghcb_version >= 2
            }
            Tee::None => self.c_bit == 0 && self.ghcb_phys == 0,
            // The loader refuses SEV and SEV-ES.
            Tee::Sev | Tee::SevEs => false,
        };
        if !snp_fields_ok {
            return Err(BootInfoError::BadTee(self.tee));
        }
        Ok(tee)
    }

    /// The bits that mark a mapping private: the C-bit under SNP, nothing otherwise.
    pub fn private_pte_bits(&self) -> u64 {
        if self.c_bit == 0 {
            0
        } else {
            1u64 << self.c_bit
        }
    }

    pub fn e820(&self) -> &[E820Entry] {
        &self.e820[..(self.e820_count as usize).min(MAX_E820)]
    }

    pub fn reserved(&self) -> &[PhysRange] {
        &self.reserved[..(self.reserved_count as usize).min(MAX_RESERVED)]
    }

    pub fn cmdline(&self) -> &str {
        let b = &self.cmdline[..(self.cmdline_len as usize).min(MAX_CMDLINE)];
        core::str::from_utf8(b).unwrap_or("")
    }

    /// Bytes of usable RAM the E820 map reports.
    pub fn usable_ram(&self) -> u64 {
        self.e820()
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.len)
            .fold(0, u64::saturating_add)
    }

    /// The largest usable RAM range that overlaps no reserved range, after cutting the
    /// reserved ranges out of every usable entry. Used for the boot heap.
    pub fn largest_free_range(&self) -> Option<PhysRange> {
        let mut best: Option<PhysRange> = None;
        for e in self.e820().iter().filter(|e| e.kind == E820_RAM) {
            // Split the entry at reserved ranges: walk candidate starts.
            let mut start = e.addr.max(0x1000);
            let end = e.end();
            while start < end {
                let mut piece_end = end;
                let mut blocked = None;
                for r in self.reserved() {
                    if r.start <= start && start < r.end {
                        blocked = Some(r.end);
                        break;
                    }
                    if r.start > start && r.start < piece_end {
                        piece_end = r.start;
                    }
                }
                if let Some(next) = blocked {
                    start = next;
                    continue;
                }
                let piece = PhysRange {
                    start,
                    end: piece_end,
                };
                if best.is_none_or(|b| piece.end - piece.start > b.end - b.start) {
                    best = Some(piece);
                }
                start = piece_end;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(e820: &[(u64, u64, u32)], reserved: &[(u64, u64)]) -> BootInfo {
        let mut b = BootInfo::empty();
        for (i, &(addr, len, kind)) in e820.iter().enumerate() {
            b.e820[i] = E820Entry {
                addr,
                len,
                kind,
                _pad: 0,
            };
        }
        b.e820_count = e820.len() as u32;
        for (i, &(start, end)) in reserved.iter().enumerate() {
            b.reserved[i] = PhysRange { start, end };
        }
        b.reserved_count = reserved.len() as u32;
        b
    }

    #[test]
    fn check_rejects_bad_headers() {
        let mut b = BootInfo::empty();
        assert_eq!(b.check(), Ok(Tee::None));
        b.e820_count = MAX_E820 as u32 + 1;
        assert_eq!(b.check(), Err(BootInfoError::BadCounts));
        b.e820_count = 0;
        b.tee = 9;
        assert_eq!(b.check(), Err(BootInfoError::BadTee(9)));
        b.magic = 0;
        assert_eq!(b.check(), Err(BootInfoError::BadMagic));
    }

    #[test]
    fn check_ties_snp_fields_to_the_tee() {
        let mut b = BootInfo::empty();
        b.tee = Tee::SevSnp as u32;
        assert_eq!(
            b.check(),
            Err(BootInfoError::BadTee(3)),
            "SNP without C-bit and GHCB"
        );
        b.c_bit = snp::C_BIT;
        b.ghcb_phys = phys::GHCB_PAGE;
        b.ghcb_version = 2;
        assert_eq!(b.check(), Ok(Tee::SevSnp));
        assert_eq!(b.private_pte_bits(), 1 << 51);
        b.c_bit = 47;
        assert_eq!(b.check(), Err(BootInfoError::BadTee(3)), "unpinned C-bit");
        b.c_bit = snp::C_BIT;
        b.tee = Tee::None as u32;
        assert_eq!(
            b.check(),
            Err(BootInfoError::BadTee(0)),
            "no TEE but a C-bit"
        );
        b.tee = Tee::SevEs as u32;
        assert_eq!(
            b.check(),
            Err(BootInfoError::BadTee(2)),
            "SEV-ES is refused"
        );
        assert_eq!(BootInfo::empty().private_pte_bits(), 0);
    }

    #[test]
    fn snp_pages_lie_in_launch_validated_memory() {
        for pa in [
            phys::GHCB_PAGE,
            phys::EARLY_PT,
            phys::IDT32,
            phys::LOADER_BSS,
            phys::LOADER_STACK_BOTTOM,
        ] {
            assert!(
                (phys::SEC_MEM_START..phys::SEC_MEM_END).contains(&pa),
                "{pa:#x}"
            );
        }
        // Checked at compile time: a wrong layout does not build.
        const {
            assert!(
                phys::GHCB_PAGE + 0x1000 <= phys::EARLY_PT
                    && phys::EARLY_PT + 0x1000 <= phys::LOADER_BSS
            );
            assert!(phys::LOADER_BSS + 0x1000 <= phys::LOADER_STACK_BOTTOM);
        }
        // The early identity map splits exactly one 2 MiB page for the GHCB.
        assert_eq!(
            phys::GHCB_PAGE & !0x1f_ffff,
            phys::SEC_MEM_START & !0x1f_ffff
        );
    }

    #[test]
    fn free_range_skips_reserved() {
        let b = info(
            &[
                (0, 0x9fc00, 1),
                (0x100000, 0x7f00000, 1),
                (0xfeffc000, 0x4000, 2),
            ],
            &[(0x800000, 0x900000), (0x1000000, 0x1200000)],
        );
        assert_eq!(b.usable_ram(), 0x9fc00 + 0x7f00000);
        assert_eq!(
            b.largest_free_range(),
            Some(PhysRange {
                start: 0x1200000,
                end: 0x8000000
            })
        );
        // A reserved range covering everything leaves only the low piece.
        let b = info(
            &[(0, 0x9fc00, 1), (0x100000, 0x1000000, 1)],
            &[(0x100000, 0x1100000)],
        );
        assert_eq!(
            b.largest_free_range(),
            Some(PhysRange {
                start: 0x1000,
                end: 0x9fc00
            })
        );
        assert_eq!(info(&[], &[]).largest_free_range(), None);
    }

    #[test]
    fn termination_reasons_are_distinct_and_fit_the_fields() {
        use snp::terminate::*;
        for (i, (_, a)) in ALL.iter().enumerate() {
            assert!(a.set <= 0xf, "the reason code set is 4 bits");
            for (_, b) in &ALL[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The GHCB spec's general set: these three numbers are the spec's, not ours.
        assert_eq!((GENERAL.set, GENERAL.code), (0, 0));
        assert_eq!(
            (PROTOCOL_UNSUPPORTED.set, PROTOCOL_UNSUPPORTED.code),
            (0, 1)
        );
        assert_eq!((SNP_UNSUPPORTED.set, SNP_UNSUPPORTED.code), (0, 2));
        assert!(ALL[3..].iter().all(|(_, t)| t.set == 1));
    }

    #[test]
    fn layout_is_consistent() {
        use phys::*;
        // Checked at compile time: a wrong layout does not build.
        const {
            assert!(SECRETS_PAGE < CPUID_PAGE && CPUID_PAGE < SEC_MEM_START);
            assert!(EARLY_PDPT_HIGH + 0x1000 <= IDT32 && IDT32 + 0x1000 <= LOADER_STACK_BOTTOM);
            assert!(LOADER_STACK_TOP <= PT_POOL_START && PT_POOL_END <= KERNEL_PHYS_MIN);
            assert!(core::mem::size_of::<BootInfo>() <= 4096);
        }
    }
}
