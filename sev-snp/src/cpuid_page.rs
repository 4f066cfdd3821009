//! The SNP CPUID page (SEV-SNP Firmware ABI spec #56860, "CPUID page"; GHCB spec 2.x,
//! "SEV-SNP CPUID"): the host proposes CPUID values at launch and the PSP checks them
//! against what the hardware allows. Under SNP the guest answers `CPUID` from this table,
//! never from the host at run time.
//!
//! Layout: u32 count at 0x0, reserved to 0x10, then up to 64 entries of 0x30 bytes:
//! EAX_IN 0x00, ECX_IN 0x04, XCR0_IN 0x08, XSS_IN 0x10, EAX 0x18, EBX 0x1C, ECX 0x20,
//! EDX 0x24, reserved 0x28.

/// Most entries the page holds.
pub const CPUID_PAGE_MAX_ENTRIES: usize = 64;
const ENTRIES_OFFSET: usize = 0x10;
const ENTRY_SIZE: usize = 0x30;

/// The C-bit position on every SNP-capable AMD part so far (Milan, Genoa, Bergamo, Siena,
/// Turin).
pub const PINNED_C_BIT: u8 = 51;

/// One CPUID function as the page records it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    /// Leaf (EAX input).
    pub eax_in: u32,
    /// Sub-leaf (ECX input), meaningful for indexed leaves.
    pub ecx_in: u32,
    /// XCR0 the values were computed for (leaf 0xD).
    pub xcr0_in: u64,
    /// XSS the values were computed for (leaf 0xD).
    pub xss_in: u64,
    /// Output EAX.
    pub eax: u32,
    /// Output EBX.
    pub ebx: u32,
    /// Output ECX.
    pub ecx: u32,
    /// Output EDX.
    pub edx: u32,
}

/// Errors of the CPUID page and of CPUID emulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CpuidError {
    /// COUNT exceeds the 64 entries a page can hold.
    #[error("CPUID page claims {0} entries (at most 64)")]
    TooManyEntries(u32),
    /// COUNT is 0: no CPUID page was provided.
    #[error("CPUID page is empty")]
    Empty,
    /// A leaf inside the ranges the table advertises is missing from it.
    #[error("CPUID leaf {leaf:#x} sub-leaf {subleaf:#x} missing from the CPUID page")]
    Missing {
        /// Leaf.
        leaf: u32,
        /// Sub-leaf.
        subleaf: u32,
    },
    /// The table puts the C-bit somewhere other than the pinned position.
    #[error("C-bit at {found}, expected {expected}")]
    CBitMismatch {
        /// Pinned position.
        expected: u8,
        /// Position in the table.
        found: u8,
    },
    /// Leaf 0x8000001F is missing or does not report SEV.
    #[error("CPUID page does not report SEV")]
    NoSev,
}

/// Live CPU state that some leaves reflect.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuState {
    /// CR4.OSXSAVE (reported in leaf 1 ECX bit 27).
    pub cr4_osxsave: bool,
    /// XCR0 (sizes in leaf 0xD sub-leaf 0).
    pub xcr0: u64,
    /// IA32_XSS (sizes in leaf 0xD sub-leaf 1).
    pub xss: u64,
    /// This CPU's initial APIC ID (leaf 1 EBX[31:24]).
    pub apic_id: u32,
}

/// A private copy of the CPUID page.
#[derive(Clone, Debug)]
pub struct CpuidTable {
    entries: [CpuidEntry; CPUID_PAGE_MAX_ENTRIES],
    count: usize,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | (u64::from(u32_at(b, off + 4)) << 32)
}

/// Leaves whose output depends on ECX (Intel SDM / AMD APM CPUID lists).
fn is_indexed(leaf: u32) -> bool {
    matches!(
        leaf,
        0x4 | 0x7 | 0xB | 0xD | 0xF | 0x10 | 0x12 | 0x14 | 0x17 | 0x18 | 0x1D | 0x1E | 0x1F | 0x24
            | 0x8000_001D
            | 0x8000_0020
            | 0x8000_0026
    )
}

/// Size of the legacy XSAVE area plus header.
const XSAVE_LEGACY_AND_HEADER: u32 = 0x240;

impl CpuidTable {
    /// Parses the page, copying it once (the page stays writable by nobody else, but the
    /// copy keeps lookups independent of it).
    pub fn parse(page: &[u8; 4096]) -> Result<Self, CpuidError> {
        let count = u32_at(page, 0);
        if count == 0 {
            return Err(CpuidError::Empty);
        }
        if count as usize > CPUID_PAGE_MAX_ENTRIES {
            return Err(CpuidError::TooManyEntries(count));
        }
        let mut entries = [CpuidEntry::default(); CPUID_PAGE_MAX_ENTRIES];
        for (i, e) in entries.iter_mut().enumerate().take(count as usize) {
            let b = &page[ENTRIES_OFFSET + i * ENTRY_SIZE..][..ENTRY_SIZE];
            *e = CpuidEntry {
                eax_in: u32_at(b, 0x00),
                ecx_in: u32_at(b, 0x04),
                xcr0_in: u64_at(b, 0x08),
                xss_in: u64_at(b, 0x10),
                eax: u32_at(b, 0x18),
                ebx: u32_at(b, 0x1C),
                ecx: u32_at(b, 0x20),
                edx: u32_at(b, 0x24),
            };
        }
        Ok(Self { entries, count: count as usize })
    }

    /// The entries of the page.
    pub fn entries(&self) -> &[CpuidEntry] {
        &self.entries[..self.count]
    }

    fn find(&self, leaf: u32, subleaf: u32) -> Option<&CpuidEntry> {
        let indexed = is_indexed(leaf);
        self.entries().iter().find(|e| e.eax_in == leaf && (!indexed || e.ecx_in == subleaf))
    }

    /// Whether `leaf` lies in a range the table advertises (standard up to leaf 0's EAX,
    /// extended up to 0x80000000's EAX). Leaves outside read as zeros, like on AMD parts.
    fn in_range(&self, leaf: u32) -> bool {
        let max = |base: u32| self.find(base, 0).map(|e| e.eax);
        if leaf < 0x4000_0000 {
            max(0).is_some_and(|m| leaf <= m)
        } else if leaf >= 0x8000_0000 {
            max(0x8000_0000).is_some_and(|m| leaf <= m)
        } else {
            // The hypervisor range: whatever the table has, else zeros.
            false
        }
    }

    /// XSAVE area size for the enabled `features`: standard format (offsets from the
    /// table) or compacted (sizes summed).
    fn xsave_size(&self, features: u64, compacted: bool) -> Result<u32, CpuidError> {
        let mut size = XSAVE_LEGACY_AND_HEADER;
        for bit in 2..64u32 {
            if features & (1 << bit) == 0 {
                continue;
            }
            let e = self.find(0xD, bit).ok_or(CpuidError::Missing { leaf: 0xD, subleaf: bit })?;
            size = if compacted {
                size.saturating_add(e.eax)
            } else {
                size.max(e.ebx.saturating_add(e.eax))
            };
        }
        Ok(size)
    }

    /// CPUID emulation: `[eax, ebx, ecx, edx]` for `leaf`/`subleaf`.
    ///
    /// Leaves outside the advertised ranges read as zeros; a leaf inside them that the table
    /// lacks is an error (the caller stops rather than guess). Leaf 1 reflects CR4.OSXSAVE
    /// and the APIC ID; leaf 0xD sub-leaves 0 and 1 report XSAVE sizes for the live XCR0/XSS.
    pub fn lookup(&self, leaf: u32, subleaf: u32, state: &CpuState) -> Result<[u32; 4], CpuidError> {
        let subleaf = if is_indexed(leaf) { subleaf } else { 0 };
        let Some(e) = self.find(leaf, subleaf) else {
            if self.in_range(leaf) {
                // Indexed leaves end their sub-leaf lists with zeros on real CPUs.
                if is_indexed(leaf) && self.find(leaf, 0).is_some() {
                    return Ok([0; 4]);
                }
                return Err(CpuidError::Missing { leaf, subleaf });
            }
            return Ok([0; 4]);
        };
        let mut out = [e.eax, e.ebx, e.ecx, e.edx];
        match (leaf, subleaf) {
            (1, _) => {
                out[1] = (out[1] & 0x00FF_FFFF) | ((state.apic_id & 0xFF) << 24);
                out[2] = (out[2] & !(1 << 27)) | (u32::from(state.cr4_osxsave) << 27);
            }
            (0xD, 0) => out[1] = self.xsave_size(state.xcr0, false)?,
            // EBX is meaningful only when XSAVES is supported (EAX bit 3).
            (0xD, 1) if out[0] & (1 << 3) != 0 => out[1] = self.xsave_size(state.xcr0 | state.xss, true)?,
            _ => {}
        }
        Ok(out)
    }

    /// The C-bit position: leaf 0x8000001F EBX[5:0], when EAX bit 1 reports SEV.
    pub fn c_bit(&self) -> Result<u8, CpuidError> {
        let e = self.find(0x8000_001F, 0).ok_or(CpuidError::NoSev)?;
        if e.eax & (1 << 1) == 0 {
            return Err(CpuidError::NoSev);
        }
        Ok((e.ebx & 0x3F) as u8)
    }

    /// Checks that the C-bit is where it is pinned.
    // SECURITY: a host that moved the C-bit would have the guest write "private" data
    // through mappings that are in fact shared.
    pub fn check_c_bit(&self, pinned: u8) -> Result<(), CpuidError> {
        let found = self.c_bit()?;
        if found != pinned {
            return Err(CpuidError::CBitMismatch { expected: pinned, found });
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::boxed::Box;

    /// A page with the given entries `(eax_in, ecx_in, [eax, ebx, ecx, edx])`.
    pub(crate) fn page(entries: &[(u32, u32, [u32; 4])]) -> Box<[u8; 4096]> {
        let mut p = Box::new([0u8; 4096]);
        p[0..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        for (i, (leaf, sub, regs)) in entries.iter().enumerate() {
            let o = ENTRIES_OFFSET + i * ENTRY_SIZE;
            p[o..o + 4].copy_from_slice(&leaf.to_le_bytes());
            p[o + 4..o + 8].copy_from_slice(&sub.to_le_bytes());
            for (j, r) in regs.iter().enumerate() {
                p[o + 0x18 + 4 * j..o + 0x1C + 4 * j].copy_from_slice(&r.to_le_bytes());
            }
        }
        p
    }

    fn milan_like() -> CpuidTable {
        CpuidTable::parse(&page(&[
            (0, 0, [0xD, 0x6874_7541, 0x444D_4163, 0x6974_6E65]), // "AuthenticAMD", max leaf 0xD
            (1, 0, [0x00A0_0F11, 0x0F80_0800, 0xFEDA_3203 | (1 << 27), 0x178B_FBFF]),
            (7, 0, [0, 0x219C_97A9, 0x0040_069C, 0x10]),
            (0xD, 0, [0x207, 0x340, 0, 0]),
            (0xD, 1, [0xF, 0x340, 0x1800, 0]),
            (0xD, 2, [0x100, 0x240, 0, 0]),  // AVX: 256 bytes at 576
            (0xD, 9, [0x8, 0x980, 0, 0]),    // PKRU: 8 bytes at 0x980
            (0xD, 11, [0x10, 0, 1, 0]),      // CET_U (supervisor, XSS)
            (0x8000_0000, 0, [0x8000_0021, 0x6874_7541, 0x444D_4163, 0x6974_6E65]),
            (0x8000_001F, 0, [0x0001_B59F, 0x4100 | 51, 0x1FD, 1]),
        ]))
        .unwrap()
    }

    #[test]
    fn parse_checks_count_and_reads_fields() {
        assert_eq!(CpuidTable::parse(&page(&[])).unwrap_err(), CpuidError::Empty);
        let mut p = page(&[(0, 0, [1, 2, 3, 4])]);
        p[0..4].copy_from_slice(&65u32.to_le_bytes());
        assert_eq!(CpuidTable::parse(&p).unwrap_err(), CpuidError::TooManyEntries(65));
        let mut p = page(&[(0x8000_0008, 0, [0x3030, 0, 0, 0])]);
        p[0x18..0x20].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes()); // XCR0_IN
        let t = CpuidTable::parse(&p).unwrap();
        assert_eq!(t.entries().len(), 1);
        assert_eq!(t.entries()[0].xcr0_in, 0x1122_3344_5566_7788);
        assert_eq!(t.entries()[0].eax, 0x3030);
        // A full page of 64 entries parses.
        let all: std::vec::Vec<_> = (0..64).map(|i| (i, 0, [i; 4])).collect();
        assert_eq!(CpuidTable::parse(&page(&all)).unwrap().entries().len(), 64);
    }

    #[test]
    fn plain_and_indexed_leaves() {
        let t = milan_like();
        let s = CpuState::default();
        assert_eq!(t.lookup(0, 0, &s).unwrap()[1], 0x6874_7541);
        // Non-indexed: the sub-leaf is ignored.
        assert_eq!(t.lookup(0x8000_0000, 7, &s).unwrap()[0], 0x8000_0021);
        // Indexed: the sub-leaf selects.
        assert_eq!(t.lookup(0xD, 2, &s).unwrap(), [0x100, 0x240, 0, 0]);
        assert_eq!(t.lookup(0xD, 9, &s).unwrap(), [0x8, 0x980, 0, 0]);
        // Past the end of an indexed leaf's list: zeros.
        assert_eq!(t.lookup(7, 1, &s).unwrap(), [0; 4]);
        // In range but missing: refused.
        assert_eq!(t.lookup(6, 0, &s), Err(CpuidError::Missing { leaf: 6, subleaf: 0 }));
        assert_eq!(t.lookup(0x8000_0001, 0, &s), Err(CpuidError::Missing { leaf: 0x8000_0001, subleaf: 0 }));
        // Out of range and hypervisor range: zeros.
        assert_eq!(t.lookup(0x20, 0, &s).unwrap(), [0; 4]);
        assert_eq!(t.lookup(0x8000_0030, 0, &s).unwrap(), [0; 4]);
        assert_eq!(t.lookup(0x4000_0000, 0, &s).unwrap(), [0; 4]);
    }

    #[test]
    fn leaf_1_reflects_live_state() {
        let t = milan_like();
        let r = t.lookup(1, 0, &CpuState { cr4_osxsave: false, apic_id: 3, ..Default::default() }).unwrap();
        assert_eq!(r[2] & (1 << 27), 0);
        assert_eq!(r[1] >> 24, 3);
        assert_eq!(r[1] & 0xFF_FFFF, 0x80_0800);
        let r = t.lookup(1, 0, &CpuState { cr4_osxsave: true, ..Default::default() }).unwrap();
        assert_ne!(r[2] & (1 << 27), 0);
    }

    #[test]
    fn xsave_sizes_follow_xcr0_and_xss() {
        let t = milan_like();
        let x87_sse = CpuState { xcr0: 0b11, ..Default::default() };
        assert_eq!(t.lookup(0xD, 0, &x87_sse).unwrap()[1], 0x240);
        let avx = CpuState { xcr0: 0b111, ..Default::default() };
        assert_eq!(t.lookup(0xD, 0, &avx).unwrap()[1], 0x340);
        let pkru = CpuState { xcr0: 0b111 | (1 << 9), ..Default::default() };
        assert_eq!(t.lookup(0xD, 0, &pkru).unwrap()[1], 0x988);
        // Compacted (sub-leaf 1, XSAVES supported): sizes summed, XSS included.
        let cet = CpuState { xcr0: 0b111, xss: 1 << 11, ..Default::default() };
        assert_eq!(t.lookup(0xD, 1, &cet).unwrap()[1], 0x240 + 0x100 + 0x10);
        // A feature enabled but missing from the table: refused, not guessed.
        let bad = CpuState { xcr0: 0b111 | (1 << 5), ..Default::default() };
        assert_eq!(t.lookup(0xD, 0, &bad), Err(CpuidError::Missing { leaf: 0xD, subleaf: 5 }));
    }

    #[test]
    fn c_bit_is_read_and_checked() {
        let t = milan_like();
        assert_eq!(t.c_bit(), Ok(51));
        assert_eq!(t.check_c_bit(PINNED_C_BIT), Ok(()));
        let moved = CpuidTable::parse(&page(&[(0x8000_001F, 0, [0x2, 47, 0, 0])])).unwrap();
        assert_eq!(moved.check_c_bit(51), Err(CpuidError::CBitMismatch { expected: 51, found: 47 }));
        let no_sev = CpuidTable::parse(&page(&[(0x8000_001F, 0, [0x1, 51, 0, 0])])).unwrap();
        assert_eq!(no_sev.c_bit(), Err(CpuidError::NoSev));
        let absent = CpuidTable::parse(&page(&[(0, 0, [0; 4])])).unwrap();
        assert_eq!(absent.c_bit(), Err(CpuidError::NoSev));
    }

    #[test]
    fn random_pages_never_panic() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut p = Box::new([0u8; 4096]);
        for _ in 0..100_000 {
            for chunk in p[..0x40].chunks_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes()[..chunk.len()]);
            }
            p[0] = (next() % 70) as u8;
            p[1..4].fill(0);
            if let Ok(t) = CpuidTable::parse(&p) {
                let s = CpuState { xcr0: next(), xss: next(), cr4_osxsave: true, apic_id: next() as u32 };
                let _ = t.lookup(next() as u32 % 0x20, next() as u32 % 4, &s);
                let _ = t.lookup(0xD, (next() % 3) as u32, &s);
                let _ = t.c_bit();
            }
        }
    }
}
