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
    /// An entry the emulation needs is missing: an XSAVE component enabled in XCR0/XSS
    /// without its leaf 0xD sub-leaf.
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
    /// Leaf 0xD sub-leaf 1 reports neither XSAVEC nor XSAVES, so its compacted size is
    /// undefined (SNP-capable parts have both).
    #[error("CPUID leaf 0xd sub-leaf 1 without XSAVEC/XSAVES")]
    NoCompaction,
}

/// Live CPU state that some leaves reflect.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuState {
    /// CR4.OSXSAVE (reported in leaf 1 ECX bit 27; without it XCR0 counts as 1).
    pub cr4_osxsave: bool,
    /// XCR0 (sizes in leaf 0xD sub-leaves 0 and 1), used only when `cr4_osxsave`.
    pub xcr0: u64,
    /// IA32_XSS (sizes in leaf 0xD sub-leaf 1), used only when the table reports XSAVES.
    pub xss: u64,
    /// This CPU's APIC ID: leaf 1 EBX[31:24] (low 8 bits), leaves 0xB/0x1F EDX and
    /// 0x8000001E EAX (all 32 bits).
    pub apic_id: u32,
    /// CR4.PKE (reported in leaf 7 sub-leaf 0 ECX bit 4, OSPKE).
    pub cr4_pke: bool,
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
        0x4 | 0x7
            | 0xB
            | 0xD
            | 0xF
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1D
            | 0x1E
            | 0x1F
            | 0x24
            | 0x8000_001D
            | 0x8000_0020
            | 0x8000_0026
    )
}

/// Size of the legacy XSAVE area plus header.
const XSAVE_LEGACY_AND_HEADER: u32 = 0x240;
/// Leaf 0xD sub-leaf 1 EAX bits.
const XSAVEC: u32 = 1 << 1;
const XSAVES: u32 = 1 << 3;

/// Leaf 0xD sub-leaves 0 and 1 count only in the entry recorded for the base state
/// (XCR0_IN 1 or 3, XSS_IN 0; QEMU records XCR0_IN = 1): their sizes are recomputed for the
/// live state anyway, and other entries would be ambiguous.
fn base_xsave_state(e: &CpuidEntry) -> bool {
    e.eax_in != 0xD || e.ecx_in > 1 || (matches!(e.xcr0_in, 1 | 3) && e.xss_in == 0)
}

impl CpuidTable {
    /// Parses the page into a private copy: later lookups do not depend on the page.
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
        Ok(Self {
            entries,
            count: count as usize,
        })
    }

    /// The entries of the page.
    pub fn entries(&self) -> &[CpuidEntry] {
        &self.entries[..self.count]
    }

    fn find(&self, leaf: u32, subleaf: u32) -> Option<&CpuidEntry> {
        let indexed = is_indexed(leaf);
        self.entries()
            .iter()
            .find(|e| e.eax_in == leaf && (!indexed || e.ecx_in == subleaf) && base_xsave_state(e))
    }

    /// Whether `leaf` lies in a range the table advertises: standard up to leaf 0's EAX,
    /// hypervisor up to 0x40000000's EAX, extended up to 0x80000000's EAX.
    fn in_range(&self, leaf: u32) -> bool {
        let base = match leaf {
            0..0x4000_0000 => 0,
            0x4000_0000..0x8000_0000 => 0x4000_0000,
            _ => 0x8000_0000,
        };
        self.find(base, 0).is_some_and(|e| leaf <= e.eax)
    }

    /// XSAVE area size for the enabled `features` (bits 0 and 1 are in the legacy area):
    /// standard format (offset + size from the table) or compacted (sizes summed, 64-byte
    /// aligned where sub-leaf ECX bit 1 asks for it).
    fn xsave_size(&self, features: u64, compacted: bool) -> Result<u32, CpuidError> {
        let mut size = XSAVE_LEGACY_AND_HEADER;
        for bit in 2..64u32 {
            if features & (1 << bit) == 0 {
                continue;
            }
            let e = self.find(0xD, bit).ok_or(CpuidError::Missing {
                leaf: 0xD,
                subleaf: bit,
            })?;
            size = if compacted {
                let start = if e.ecx & 2 != 0 {
                    size.saturating_add(63) & !63
                } else {
                    size
                };
                start.saturating_add(e.eax)
            } else {
                size.max(e.ebx.saturating_add(e.eax))
            };
        }
        Ok(size)
    }

    /// CPUID emulation: `[eax, ebx, ecx, edx]` for `leaf`/`subleaf`.
    ///
    /// The sub-leaf counts only for indexed leaves. A leaf absent from the table reads as
    /// zeros (hypervisors leave all-zero leaves out: QEMU does); inside an advertised range
    /// the zeros are then completed like a present entry. Completed from live state: leaf 1
    /// APIC ID and OSXSAVE, leaf 7 OSPKE, leaves 0xB/0x1F x2APIC ID, 0x8000001E extended
    /// APIC ID, and leaf 0xD sub-leaves 0/1 XSAVE sizes, computed from the table's
    /// sub-leaves for the live XCR0/XSS (an enabled component missing from the table is
    /// [`CpuidError::Missing`]).
    pub fn lookup(
        &self,
        leaf: u32,
        subleaf: u32,
        state: &CpuState,
    ) -> Result<[u32; 4], CpuidError> {
        let subleaf = if is_indexed(leaf) { subleaf } else { 0 };
        // SECURITY: reading an absent leaf as zeros gives the host nothing it could not get
        // by clearing bits in a present entry (the PSP only refuses bits the hardware
        // lacks); code that needs a feature must check for it either way.
        let mut out = match self.find(leaf, subleaf) {
            Some(e) => [e.eax, e.ebx, e.ecx, e.edx],
            None if self.in_range(leaf) => [0; 4],
            None => return Ok([0; 4]),
        };
        match (leaf, subleaf) {
            (1, _) => {
                out[1] = (out[1] & 0x00FF_FFFF) | ((state.apic_id & 0xFF) << 24);
                out[2] = (out[2] & !(1 << 27)) | (u32::from(state.cr4_osxsave) << 27);
            }
            (7, 0) => out[2] = (out[2] & !(1 << 4)) | (u32::from(state.cr4_pke) << 4),
            (0xB | 0x1F, _) => out[3] = state.apic_id,
            (0x8000_001E, _) => out[0] = state.apic_id,
            (0xD, 0 | 1) => {
                // Without CR4.OSXSAVE, XCR0 keeps its reset value (x87 only).
                let xcr0 = if state.cr4_osxsave { state.xcr0 } else { 1 };
                out[1] = if subleaf == 0 {
                    self.xsave_size(xcr0, false)?
                } else {
                    if out[0] & (XSAVEC | XSAVES) == 0 {
                        return Err(CpuidError::NoCompaction);
                    }
                    let xss = if out[0] & XSAVES != 0 { state.xss } else { 0 };
                    self.xsave_size(xcr0 | xss, true)?
                };
            }
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
            return Err(CpuidError::CBitMismatch {
                expected: pinned,
                found,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::boxed::Box;

    /// A page holding exactly `entries`, each at its spec offsets.
    pub(crate) fn page_of(entries: &[CpuidEntry]) -> Box<[u8; 4096]> {
        let mut p = Box::new([0u8; 4096]);
        p[0..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        for (i, e) in entries.iter().enumerate() {
            let o = ENTRIES_OFFSET + i * ENTRY_SIZE;
            p[o..o + 4].copy_from_slice(&e.eax_in.to_le_bytes());
            p[o + 4..o + 8].copy_from_slice(&e.ecx_in.to_le_bytes());
            p[o + 8..o + 0x10].copy_from_slice(&e.xcr0_in.to_le_bytes());
            p[o + 0x10..o + 0x18].copy_from_slice(&e.xss_in.to_le_bytes());
            p[o + 0x18..o + 0x1C].copy_from_slice(&e.eax.to_le_bytes());
            p[o + 0x1C..o + 0x20].copy_from_slice(&e.ebx.to_le_bytes());
            p[o + 0x20..o + 0x24].copy_from_slice(&e.ecx.to_le_bytes());
            p[o + 0x24..o + 0x28].copy_from_slice(&e.edx.to_le_bytes());
        }
        p
    }

    fn entry(leaf: u32, sub: u32, [eax, ebx, ecx, edx]: [u32; 4]) -> CpuidEntry {
        // XCR0_IN = 1 on 0xD sub-leaves 0/1, as QEMU fills them.
        let xcr0_in = u64::from(leaf == 0xD && sub <= 1);
        CpuidEntry {
            eax_in: leaf,
            ecx_in: sub,
            xcr0_in,
            xss_in: 0,
            eax,
            ebx,
            ecx,
            edx,
        }
    }

    /// A page with the given entries `(eax_in, ecx_in, [eax, ebx, ecx, edx])`.
    pub(crate) fn page(entries: &[(u32, u32, [u32; 4])]) -> Box<[u8; 4096]> {
        let all: std::vec::Vec<_> = entries.iter().map(|&(l, s, r)| entry(l, s, r)).collect();
        page_of(&all)
    }

    fn milan_like() -> CpuidTable {
        CpuidTable::parse(&page(&[
            (0, 0, [0xD, 0x6874_7541, 0x444D_4163, 0x6974_6E65]), // "AuthenticAMD", max leaf 0xD
            (
                1,
                0,
                [
                    0x00A0_0F11,
                    0x0F80_0800,
                    0xFEDA_3203 | (1 << 27),
                    0x178B_FBFF,
                ],
            ),
            (7, 0, [0, 0x219C_97A9, 0x0040_069C | (1 << 4), 0x10]),
            (0xB, 0, [1, 2, 0x100, 0x55]),
            (0xD, 0, [0x207, 0x240, 0x988, 0]),
            (0xD, 1, [0xF, 0x240, 0x1800, 0]), // XSAVEOPT, XSAVEC, XGETBV1, XSAVES
            (0xD, 2, [0x100, 0x240, 0, 0]),    // AVX: 256 bytes at 576
            (0xD, 9, [0x8, 0x980, 0, 0]),      // PKRU: 8 bytes at 0x980
            (0xD, 11, [0x10, 0, 1, 0]),        // CET_U (supervisor, XSS)
            (
                0x8000_0000,
                0,
                [0x8000_0021, 0x6874_7541, 0x444D_4163, 0x6974_6E65],
            ),
            (0x8000_001E, 0, [0x33, 0x0000_0101, 0x0000_0100, 0]),
            (0x8000_001F, 0, [0x0001_B59F, 0x4100 | 51, 0x1FD, 1]),
        ]))
        .unwrap()
    }

    #[test]
    fn parse_checks_count_and_reads_fields() {
        assert_eq!(
            CpuidTable::parse(&page(&[])).unwrap_err(),
            CpuidError::Empty
        );
        let mut p = page(&[(0, 0, [1, 2, 3, 4])]);
        p[0..4].copy_from_slice(&65u32.to_le_bytes());
        assert_eq!(
            CpuidTable::parse(&p).unwrap_err(),
            CpuidError::TooManyEntries(65)
        );
        p[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            CpuidTable::parse(&p).unwrap_err(),
            CpuidError::TooManyEntries(u32::MAX)
        );
        // Every field at its offset, written with literal offsets (not the helper).
        let mut p = Box::new([0u8; 4096]);
        p[0] = 1;
        p[0x4] = 0xEE; // reserved: ignored
        for (i, b) in p[0x10..0x40].iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        let t = CpuidTable::parse(&p).unwrap();
        let e = t.entries()[0];
        assert_eq!(
            e,
            CpuidEntry {
                eax_in: 0x0403_0201,
                ecx_in: 0x0807_0605,
                xcr0_in: 0x100F_0E0D_0C0B_0A09,
                xss_in: 0x1817_1615_1413_1211,
                eax: 0x1C1B_1A19,
                ebx: 0x201F_1E1D,
                ecx: 0x2423_2221,
                edx: 0x2827_2625,
            }
        );
        // A full page of 64 entries parses; the 65th slot is never read.
        let all: std::vec::Vec<_> = (0..64).map(|i| (i, 0, [i; 4])).collect();
        let mut p = page(&all);
        p[0x10 + 64 * 0x30..0x10 + 64 * 0x30 + 4].copy_from_slice(&99u32.to_le_bytes());
        let t = CpuidTable::parse(&p).unwrap();
        assert_eq!(t.entries().len(), 64);
        assert_eq!(t.entries()[63].ebx, 63);
    }

    #[test]
    fn plain_and_indexed_leaves() {
        let t = milan_like();
        let s = CpuState::default();
        assert_eq!(
            t.lookup(0, 0, &s).unwrap(),
            [0xD, 0x6874_7541, 0x444D_4163, 0x6974_6E65]
        );
        // Non-indexed: the sub-leaf is ignored.
        assert_eq!(t.lookup(0x8000_0000, 7, &s).unwrap()[0], 0x8000_0021);
        assert_eq!(
            t.lookup(0x8000_001F, 0xFFFF_FFFF, &s).unwrap()[1],
            0x4100 | 51
        );
        // Indexed: the sub-leaf selects.
        assert_eq!(t.lookup(0xD, 2, &s).unwrap(), [0x100, 0x240, 0, 0]);
        assert_eq!(t.lookup(0xD, 9, &s).unwrap(), [0x8, 0x980, 0, 0]);
        // Past the end of an indexed leaf's list: zeros.
        assert_eq!(t.lookup(7, 1, &s).unwrap(), [0; 4]);
        assert_eq!(t.lookup(0xD, 3, &s).unwrap(), [0; 4]);
        // Absent leaves in range (left out because all-zero): zeros.
        assert_eq!(t.lookup(6, 0, &s).unwrap(), [0; 4]);
        assert_eq!(t.lookup(0x8000_0001, 0, &s).unwrap(), [0; 4]);
        // Out of range and hypervisor range: zeros.
        assert_eq!(t.lookup(0x20, 0, &s).unwrap(), [0; 4]);
        assert_eq!(t.lookup(0x8000_0030, 0, &s).unwrap(), [0; 4]);
        assert_eq!(t.lookup(0x4000_0000, 0, &s).unwrap(), [0; 4]);
        // A hypervisor leaf the table does hold is returned.
        let hv = CpuidTable::parse(&page(&[(0x4000_0000, 0, [0x4000_0001, 1, 2, 3])])).unwrap();
        assert_eq!(
            hv.lookup(0x4000_0000, 0, &s).unwrap(),
            [0x4000_0001, 1, 2, 3]
        );
        // The first matching entry wins.
        let dup = CpuidTable::parse(&page(&[(5, 0, [1; 4]), (5, 0, [2; 4])])).unwrap();
        assert_eq!(dup.lookup(5, 0, &s).unwrap(), [1; 4]);
    }

    #[test]
    fn live_state_completes_the_table() {
        let t = milan_like();
        let s = CpuState {
            cr4_osxsave: false,
            apic_id: 0x1_0003,
            ..Default::default()
        };
        let r = t.lookup(1, 0, &s).unwrap();
        assert_eq!(r[2] & (1 << 27), 0, "OSXSAVE cleared");
        assert_eq!(r[1] >> 24, 3, "initial APIC ID: low 8 bits");
        assert_eq!(r[1] & 0xFF_FFFF, 0x80_0800);
        assert_eq!(
            t.lookup(0xB, 0, &s).unwrap(),
            [1, 2, 0x100, 0x1_0003],
            "x2APIC ID"
        );
        assert_eq!(
            t.lookup(0x8000_001E, 0, &s).unwrap(),
            [0x1_0003, 0x101, 0x100, 0]
        );
        assert_eq!(
            t.lookup(7, 0, &s).unwrap()[2] & (1 << 4),
            0,
            "OSPKE cleared"
        );
        let s = CpuState {
            cr4_osxsave: true,
            cr4_pke: true,
            ..Default::default()
        };
        assert_ne!(t.lookup(1, 0, &s).unwrap()[2] & (1 << 27), 0);
        assert_ne!(t.lookup(7, 0, &s).unwrap()[2] & (1 << 4), 0);
        assert_eq!(
            t.lookup(7, 1, &s).unwrap(),
            [0; 4],
            "only sub-leaf 0 has OSPKE"
        );
        // Absent but in range: zeros, completed (0xB sub-leaf 1 here); out of range: zeros only.
        let s = CpuState {
            apic_id: 9,
            ..Default::default()
        };
        assert_eq!(t.lookup(0xB, 1, &s).unwrap(), [0, 0, 0, 9]);
        let short = CpuidTable::parse(&page(&[(0, 0, [7, 0, 0, 0])])).unwrap();
        assert_eq!(short.lookup(0xB, 0, &s).unwrap(), [0; 4]);
        assert_eq!(short.lookup(1, 0, &s).unwrap(), [0, 9 << 24, 0, 0]);
    }

    #[test]
    fn xsave_sizes_follow_xcr0_and_xss() {
        let t = milan_like();
        let on = |xcr0, xss| CpuState {
            cr4_osxsave: true,
            xcr0,
            xss,
            ..Default::default()
        };
        assert_eq!(
            t.lookup(0xD, 0, &on(0b11, 0)).unwrap(),
            [0x207, 0x240, 0x988, 0]
        );
        assert_eq!(t.lookup(0xD, 0, &on(0b111, 0)).unwrap()[1], 0x340);
        assert_eq!(
            t.lookup(0xD, 0, &on(0b111 | (1 << 9), 0)).unwrap()[1],
            0x988
        );
        // Without CR4.OSXSAVE the XCR0 given is ignored: x87 only.
        let off = CpuState {
            xcr0: 0b111 | (1 << 9),
            ..Default::default()
        };
        assert_eq!(t.lookup(0xD, 0, &off).unwrap()[1], 0x240);
        // Compacted (sub-leaf 1): sizes summed, XSS included when XSAVES exists.
        assert_eq!(
            t.lookup(0xD, 1, &on(0b111, 1 << 11)).unwrap()[1],
            0x240 + 0x100 + 0x10
        );
        assert_eq!(
            t.lookup(0xD, 1, &on(0b111 | (1 << 9), 0)).unwrap()[1],
            0x240 + 0x100 + 8
        );
        // A feature enabled but missing from the table: refused, not guessed.
        assert_eq!(
            t.lookup(0xD, 0, &on(0b111 | (1 << 5), 0)),
            Err(CpuidError::Missing {
                leaf: 0xD,
                subleaf: 5
            })
        );
        assert_eq!(
            t.lookup(0xD, 1, &on(0b11, 1 << 12)),
            Err(CpuidError::Missing {
                leaf: 0xD,
                subleaf: 12
            })
        );
    }

    #[test]
    fn xsave_compaction_rules() {
        let s = CpuState {
            cr4_osxsave: true,
            xcr0: 0b111 | (1 << 9),
            xss: 1 << 11,
            ..Default::default()
        };
        let with = |sub1_eax: u32, pkru_ecx: u32| {
            CpuidTable::parse(&page(&[
                (0, 0, [0xD, 0, 0, 0]),
                (0xD, 1, [sub1_eax, 0, 0, 0]),
                (0xD, 2, [0x100, 0x240, 0, 0]),
                (0xD, 9, [0x8, 0x980, pkru_ecx, 0]),
                (0xD, 11, [0x10, 0, 1, 0]),
            ]))
            .unwrap()
        };
        // XSAVEC only: XSS does not count.
        assert_eq!(
            with(XSAVEC, 0).lookup(0xD, 1, &s).unwrap()[1],
            0x240 + 0x100 + 8
        );
        // Neither XSAVEC nor XSAVES: no defined compacted size.
        assert_eq!(with(1, 0).lookup(0xD, 1, &s), Err(CpuidError::NoCompaction));
        // Sub-leaf 1 absent but in range: zeros, so also no compaction.
        let no1 = CpuidTable::parse(&page(&[(0, 0, [0xD, 0, 0, 0])])).unwrap();
        assert_eq!(no1.lookup(0xD, 1, &s), Err(CpuidError::NoCompaction));
        // ECX bit 1 of a component: it starts 64-byte aligned in the compacted form.
        // 0x240 + 0x100 = 0x340 is aligned already; PKRU (8) then CET_U after it.
        assert_eq!(
            with(XSAVES, 2).lookup(0xD, 1, &s).unwrap()[1],
            0x340 + 8 + 0x10
        );
        let odd = CpuidTable::parse(&page(&[
            (0xD, 1, [XSAVES, 0, 0, 0]),
            (0xD, 9, [0x8, 0x980, 0, 0]),
            (0xD, 11, [0x10, 0, 1 | 2, 0]), // CET_U aligned
        ]))
        .unwrap();
        let s = CpuState {
            cr4_osxsave: true,
            xcr0: 0b11 | (1 << 9),
            xss: 1 << 11,
            ..Default::default()
        };
        assert_eq!(odd.lookup(0xD, 1, &s).unwrap()[1], 0x280 + 0x10);
    }

    #[test]
    fn leaf_0xd_base_entries_need_base_xcr0_and_xss() {
        let s = CpuState {
            cr4_osxsave: true,
            xcr0: 0b11,
            ..Default::default()
        };
        let e = |xcr0_in, xss_in, eax| CpuidEntry {
            eax_in: 0xD,
            ecx_in: 0,
            xcr0_in,
            xss_in,
            eax,
            ..Default::default()
        };
        let leaf0 = CpuidEntry {
            eax_in: 0,
            eax: 0xD,
            ..Default::default()
        };
        // Entries recorded for another XCR0/XSS are skipped; XCR0_IN 1 and 3 both count.
        let t = CpuidTable::parse(&page_of(&[
            leaf0,
            e(7, 0, 0xBAD),
            e(1, 4, 0xBAD),
            e(3, 0, 0x207),
        ]))
        .unwrap();
        assert_eq!(t.lookup(0xD, 0, &s).unwrap(), [0x207, 0x240, 0, 0]);
        // Only unusable entries: as if absent (zeros, sizes still computed).
        let t = CpuidTable::parse(&page_of(&[leaf0, e(0, 0, 0xBAD)])).unwrap();
        assert_eq!(t.lookup(0xD, 0, &s).unwrap(), [0, 0x240, 0, 0]);
        // XCR0_IN/XSS_IN do not matter for the component sub-leaves.
        let comp = CpuidEntry {
            eax_in: 0xD,
            ecx_in: 2,
            xcr0_in: 0x207,
            xss_in: 9,
            eax: 0x100,
            ebx: 0x240,
            ..Default::default()
        };
        let t = CpuidTable::parse(&page_of(&[comp])).unwrap();
        assert_eq!(t.lookup(0xD, 2, &s).unwrap(), [0x100, 0x240, 0, 0]);
    }

    #[test]
    fn c_bit_is_read_and_checked() {
        let t = milan_like();
        assert_eq!(t.c_bit(), Ok(51));
        assert_eq!(t.check_c_bit(PINNED_C_BIT), Ok(()));
        let moved = CpuidTable::parse(&page(&[(0x8000_001F, 0, [0x2, 47, 0, 0])])).unwrap();
        assert_eq!(
            moved.check_c_bit(51),
            Err(CpuidError::CBitMismatch {
                expected: 51,
                found: 47
            })
        );
        // Only EBX[5:0] is the C-bit.
        let high =
            CpuidTable::parse(&page(&[(0x8000_001F, 0, [0x2, 0xFFFF_FFC0 | 51, 0, 0])])).unwrap();
        assert_eq!(high.check_c_bit(51), Ok(()));
        let no_sev = CpuidTable::parse(&page(&[(0x8000_001F, 0, [0x1, 51, 0, 0])])).unwrap();
        assert_eq!(no_sev.c_bit(), Err(CpuidError::NoSev));
        assert_eq!(no_sev.check_c_bit(51), Err(CpuidError::NoSev));
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
        let mut parsed = 0;
        for _ in 0..100_000 {
            let n = (next() % 70) as usize;
            // Random bytes over the header and the entries COUNT may cover; leaf numbers
            // drawn from a small set so lookups hit entries.
            for chunk in p[..0x10 + 66 * 0x30].chunks_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes()[..chunk.len()]);
            }
            p[0..4].copy_from_slice(&(n as u32).to_le_bytes());
            for i in 0..n.min(64) {
                let o = 0x10 + i * 0x30;
                let leaf = [0, 1, 7, 0xB, 0xD, 0x8000_0000, 0x8000_001F, 0x4000_0000]
                    [(next() % 8) as usize];
                p[o..o + 4].copy_from_slice(&u32::to_le_bytes(leaf));
                p[o + 4..o + 8].copy_from_slice(&((next() % 66) as u32).to_le_bytes());
                p[o + 8..o + 16].copy_from_slice(&(next() % 4).to_le_bytes());
            }
            if let Ok(t) = CpuidTable::parse(&p) {
                parsed += 1;
                let s = CpuState {
                    xcr0: next(),
                    xss: next(),
                    cr4_osxsave: next() & 1 == 0,
                    apic_id: next() as u32,
                    cr4_pke: true,
                };
                let _ = t.lookup(next() as u32 % 0x20, next() as u32 % 4, &s);
                let _ = t.lookup(next() as u32, next() as u32, &s);
                let _ = t.lookup(0xD, (next() % 3) as u32, &s);
                let _ = t.check_c_bit(PINNED_C_BIT);
            }
        }
        assert!(parsed > 80_000, "most pages should parse ({parsed})");
    }
}
