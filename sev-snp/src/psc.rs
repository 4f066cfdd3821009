//! SNP page state change (GHCB spec rev 2.x, section 4.1.6 "SNP Page State Change").
//!
//! The NAE (SW_EXITCODE 0x8000_0010) takes a descriptor in the GHCB shared buffer
//! (SW_SCRATCH points at it):
//!
//! ```text
//! header   0x0  u16 cur_entry      first entry still to process
//!          0x2  u16 end_entry      last entry (inclusive)
//!          0x4  u32 reserved
//! entry i  0x8 + 8*i, a u64:
//!          [11:0]  cur_page        4 KiB pages of this entry already processed
//!          [51:12] gfn
//!          [55:52] operation       1 = private, 2 = shared (3/4 PSMASH/UNSMASH hints unused)
//!          [56]    page size       0 = 4 KiB, 1 = 2 MiB
//!          [63:57] reserved
//! ```
//!
//! At most 253 entries fit (8 + 253*8 = 2032 bytes, the whole shared buffer). The host may
//! process only part of a descriptor and return; the guest then resubmits. SW_EXITINFO2 is 0
//! on success, otherwise an error.
//!
//! The host's answer is checked against the guest's own copy of the descriptor: the host may
//! only advance `cur_entry` and the `cur_page` counters; any other change is an error.
//! This module never PVALIDATEs: see [`crate::pvalidate`] for the conversions.

use crate::ghcb::{self, Field, Ghcb, GhcbError, GhcbPlatform, SHARED_BUFFER_LEN};
use crate::msr_protocol::{self, GhcbMsr, MsrError};
use crate::{PAGE_SIZE_2M, PAGE_SIZE_4K, PageSize, PageState};

/// Maximum number of entries in one descriptor.
pub const PSC_MAX_ENTRIES: usize = 253;
/// Size of the descriptor header.
pub const PSC_HEADER_LEN: usize = 8;
/// Largest GFN an entry can carry (40 bits).
pub const PSC_MAX_GFN: u64 = (1 << 40) - 1;

/// Errors of page state changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PscError {
    /// The descriptor already holds [`PSC_MAX_ENTRIES`] entries.
    #[error("page state change descriptor is full")]
    Full,
    /// Nothing to submit.
    #[error("page state change descriptor is empty")]
    Empty,
    /// Address not aligned to the page size, GFN too large, or range overflow.
    #[error("invalid page state change argument")]
    InvalidArgument,
    /// SW_EXITINFO2 was not zero.
    #[error("host reports page state change error {0:#x}")]
    HostError(u64),
    /// The header's reserved field is not zero or `cur_entry` is past `end_entry + 1`.
    #[error("malformed page state change header from host")]
    BadHeader,
    /// The host changed `end_entry`.
    #[error("host changed end_entry of the descriptor")]
    EndEntryChanged,
    /// The host moved `cur_entry` or a `cur_page` backwards.
    #[error("host moved page state change progress backwards")]
    WentBackwards,
    /// The host changed the GFN, operation, size or reserved bits of an entry, or set a
    /// `cur_page` beyond the entry's size.
    #[error("host altered page state change entry {0}")]
    EntryChanged(usize),
    /// The host returned success but processed nothing.
    #[error("host made no page state change progress")]
    NoProgress,
    /// The NAE itself failed.
    #[error("GHCB: {0}")]
    Ghcb(#[from] GhcbError),
    /// The MSR protocol request failed.
    #[error("GHCB MSR protocol: {0}")]
    Msr(#[from] MsrError),
}

/// One descriptor entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PscEntry {
    /// 4 KiB pages of this entry already processed (0..=1 for 4 KiB, 0..=512 for 2 MiB).
    pub cur_page: u16,
    /// Guest frame number (of the first 4 KiB page).
    pub gfn: u64,
    /// Requested state.
    pub state: PageState,
    /// Page size.
    pub size: PageSize,
}

impl PscEntry {
    /// Encode as the spec's 64-bit entry.
    pub fn encode(&self) -> u64 {
        (self.cur_page as u64 & 0xFFF)
            | ((self.gfn & PSC_MAX_GFN) << 12)
            | (self.state.op() << 52)
            | (((self.size == PageSize::Size2M) as u64) << 56)
    }

    /// Decode a 64-bit entry; unknown operations and reserved bits are errors.
    pub fn decode(raw: u64) -> Option<Self> {
        if raw >> 57 != 0 {
            return None;
        }
        let state = match (raw >> 52) & 0xF {
            1 => PageState::Private,
            2 => PageState::Shared,
            _ => return None,
        };
        let size = if (raw >> 56) & 1 == 1 {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        };
        Some(Self {
            cur_page: (raw & 0xFFF) as u16,
            gfn: (raw >> 12) & PSC_MAX_GFN,
            state,
            size,
        })
    }

    fn pages(&self) -> u16 {
        match self.size {
            PageSize::Size4K => 1,
            PageSize::Size2M => 512,
        }
    }
}

/// Progress after one NAE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PscProgress {
    /// Every entry processed.
    Complete,
    /// The host stopped early; resubmit.
    Partial,
}

/// The guest's own (private) copy of a descriptor.
#[derive(Clone, Debug)]
pub struct PscDescriptor {
    entries: [PscEntry; PSC_MAX_ENTRIES],
    len: usize,
    cur_entry: u16,
}

impl Default for PscDescriptor {
    fn default() -> Self {
        Self::new()
    }
}

impl PscDescriptor {
    /// An empty descriptor.
    pub const fn new() -> Self {
        const EMPTY: PscEntry = PscEntry {
            cur_page: 0,
            gfn: 0,
            state: PageState::Private,
            size: PageSize::Size4K,
        };
        Self {
            entries: [EMPTY; PSC_MAX_ENTRIES],
            len: 0,
            cur_entry: 0,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries.
    pub fn entries(&self) -> &[PscEntry] {
        &self.entries[..self.len]
    }

    /// Add an entry for the page at guest-physical `pa`.
    pub fn push(&mut self, pa: u64, size: PageSize, state: PageState) -> Result<(), PscError> {
        if self.len == PSC_MAX_ENTRIES {
            return Err(PscError::Full);
        }
        if !pa.is_multiple_of(size.bytes()) || (pa >> 12) > PSC_MAX_GFN {
            return Err(PscError::InvalidArgument);
        }
        self.entries[self.len] = PscEntry {
            cur_page: 0,
            gfn: pa >> 12,
            state,
            size,
        };
        self.len += 1;
        Ok(())
    }

    /// Write the descriptor (with the current progress) into a shared buffer.
    pub fn write_to(&self, buf: &mut [u8; SHARED_BUFFER_LEN]) -> Result<(), PscError> {
        if self.len == 0 {
            return Err(PscError::Empty);
        }
        buf.fill(0);
        buf[0..2].copy_from_slice(&self.cur_entry.to_le_bytes());
        buf[2..4].copy_from_slice(&((self.len - 1) as u16).to_le_bytes());
        for (i, e) in self.entries().iter().enumerate() {
            let o = PSC_HEADER_LEN + 8 * i;
            buf[o..o + 8].copy_from_slice(&e.encode().to_le_bytes());
        }
        Ok(())
    }

    /// Check the host's answer (`buf`: a private snapshot of the shared buffer taken after
    /// the exit, `exit_info2`: SW_EXITINFO2) and take over the progress it reports.
    ///
    // SECURITY: the host is only allowed to move progress forward. It cannot redirect an
    // entry to another GFN, change the operation or size, or shrink the descriptor: we
    // compare with our private copy and resubmit our copy, never the host's bytes.
    pub fn check_response(
        &mut self,
        buf: &[u8; SHARED_BUFFER_LEN],
        exit_info2: u64,
    ) -> Result<PscProgress, PscError> {
        if exit_info2 != 0 {
            return Err(PscError::HostError(exit_info2));
        }
        if self.len == 0 {
            return Err(PscError::Empty);
        }
        let cur_entry = u16::from_le_bytes([buf[0], buf[1]]);
        let end_entry = u16::from_le_bytes([buf[2], buf[3]]);
        let reserved = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if reserved != 0 {
            return Err(PscError::BadHeader);
        }
        if end_entry as usize != self.len - 1 {
            return Err(PscError::EndEntryChanged);
        }
        if cur_entry < self.cur_entry {
            return Err(PscError::WentBackwards);
        }
        if cur_entry as usize > self.len {
            return Err(PscError::BadHeader);
        }
        // First pass: check every entry; nothing is taken over unless all are consistent.
        let mut progressed = cur_entry != self.cur_entry;
        for (i, ours) in self.entries().iter().enumerate() {
            let o = PSC_HEADER_LEN + 8 * i;
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[o..o + 8]);
            let theirs =
                PscEntry::decode(u64::from_le_bytes(raw)).ok_or(PscError::EntryChanged(i))?;
            if theirs.gfn != ours.gfn || theirs.state != ours.state || theirs.size != ours.size {
                return Err(PscError::EntryChanged(i));
            }
            if theirs.cur_page > ours.pages() {
                return Err(PscError::EntryChanged(i));
            }
            if theirs.cur_page < ours.cur_page {
                return Err(PscError::WentBackwards);
            }
            progressed |= theirs.cur_page != ours.cur_page;
        }
        if cur_entry as usize == self.len {
            self.take_progress(buf, cur_entry);
            return Ok(PscProgress::Complete);
        }
        if !progressed {
            return Err(PscError::NoProgress);
        }
        self.take_progress(buf, cur_entry);
        Ok(PscProgress::Partial)
    }

    fn take_progress(&mut self, buf: &[u8; SHARED_BUFFER_LEN], cur_entry: u16) {
        self.cur_entry = cur_entry;
        for i in 0..self.len {
            let o = PSC_HEADER_LEN + 8 * i;
            self.entries[i].cur_page = u16::from_le_bytes([buf[o], buf[o + 1]]) & 0xFFF;
        }
    }
}

/// Submit `desc` through the GHCB NAE until the host reports it complete.
///
/// Terminates: every round must make progress (else [`PscError::NoProgress`]), and progress
/// is bounded by the number of pages in the descriptor.
pub fn run_descriptor<P: GhcbPlatform>(
    p: &mut P,
    version: u16,
    desc: &mut PscDescriptor,
) -> Result<(), PscError> {
    let scratch = Ghcb::shared_buffer_gpa(p.ghcb_gpa())?;
    loop {
        {
            let mut g = Ghcb::new(p.ghcb_page());
            g.reset(version);
            desc.write_to(g.shared_buffer_mut())?;
            g.set_exit(ghcb::exit_code::SNP_PSC, 0, 0);
            g.set(Field::SwScratch, scratch);
        }
        p.vmgexit();
        let (snapshot, info2) = {
            let g = Ghcb::new(p.ghcb_page());
            g.check_exit_status(version)?;
            let info2 = g.get(Field::SwExitInfo2)?;
            // SECURITY: copy the shared buffer once; the host cannot change what we check
            // between the check and the use.
            (*g.shared_buffer(), info2)
        };
        match desc.check_response(&snapshot, info2)? {
            PscProgress::Complete => return Ok(()),
            PscProgress::Partial => continue,
        }
    }
}

/// Asking the host to change the RMP state of guest-physical memory. Does not PVALIDATE.
pub trait PageStateChange {
    /// Change `[pa, pa + len)` (4 KiB aligned) to `state`.
    fn change(&mut self, pa: u64, len: u64, state: PageState) -> Result<(), PscError>;
}

/// Split `[pa, pa + len)` into 2 MiB chunks where aligned and 4 KiB chunks elsewhere.
pub(crate) fn chunks(pa: u64, len: u64) -> Result<impl Iterator<Item = (u64, PageSize)>, PscError> {
    if !pa.is_multiple_of(PAGE_SIZE_4K) || !len.is_multiple_of(PAGE_SIZE_4K) {
        return Err(PscError::InvalidArgument);
    }
    let end = pa.checked_add(len).ok_or(PscError::InvalidArgument)?;
    let mut at = pa;
    Ok(core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let size = if at.is_multiple_of(PAGE_SIZE_2M) && end - at >= PAGE_SIZE_2M {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        };
        let chunk = (at, size);
        at += size.bytes();
        Some(chunk)
    }))
}

/// Page state changes through the GHCB NAE, batched (up to 253 entries, 2 MiB where aligned).
pub struct GhcbPageStateChange<'a, P: GhcbPlatform> {
    /// The platform.
    pub platform: &'a mut P,
    /// Negotiated GHCB protocol version.
    pub version: u16,
}

impl<P: GhcbPlatform> PageStateChange for GhcbPageStateChange<'_, P> {
    fn change(&mut self, pa: u64, len: u64, state: PageState) -> Result<(), PscError> {
        let mut desc = PscDescriptor::new();
        for (at, size) in chunks(pa, len)? {
            if desc.len() == PSC_MAX_ENTRIES {
                run_descriptor(self.platform, self.version, &mut desc)?;
                desc = PscDescriptor::new();
            }
            desc.push(at, size, state)?;
        }
        if !desc.is_empty() {
            run_descriptor(self.platform, self.version, &mut desc)?;
        }
        Ok(())
    }
}

/// Page state changes through the MSR protocol, one 4 KiB page per request (before a GHCB
/// page exists).
pub struct MsrPageStateChange<'a, M: GhcbMsr> {
    /// The GHCB MSR.
    pub msr: &'a mut M,
}

impl<M: GhcbMsr> PageStateChange for MsrPageStateChange<'_, M> {
    fn change(&mut self, pa: u64, len: u64, state: PageState) -> Result<(), PscError> {
        if !pa.is_multiple_of(PAGE_SIZE_4K) || !len.is_multiple_of(PAGE_SIZE_4K) {
            return Err(PscError::InvalidArgument);
        }
        let end = pa.checked_add(len).ok_or(PscError::InvalidArgument)?;
        let mut at = pa;
        while at < end {
            msr_protocol::page_state_change(self.msr, at >> 12, state)?;
            at += PAGE_SIZE_4K;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ghcb::tests::{FakeHost, page};
    use crate::ghcb::{GHCB_SIZE, SHARED_BUFFER_OFFSET};
    use std::vec::Vec;

    #[test]
    fn entry_encoding_known_values() {
        // GHCB spec 4.1.6: GFN 0x12345 private, 4 KiB: op 1 at bit 52, GFN at bit 12.
        let e = PscEntry {
            cur_page: 0,
            gfn: 0x12345,
            state: PageState::Private,
            size: PageSize::Size4K,
        };
        assert_eq!(e.encode(), 0x0010_0000_1234_5000);
        // 2 MiB shared at GFN 0x200 with 3 pages done: size bit 56, op 2.
        let e = PscEntry {
            cur_page: 3,
            gfn: 0x200,
            state: PageState::Shared,
            size: PageSize::Size2M,
        };
        assert_eq!(e.encode(), 0x0120_0000_0020_0003);
        assert_eq!(PscEntry::decode(0x0120_0000_0020_0003), Some(e));
        assert_eq!(PscEntry::decode(0x0220_0000_0020_0003), None); // reserved bit 57
        assert_eq!(PscEntry::decode(0x0030_0000_0020_0003), None); // op 3 (PSMASH hint) unused
        assert_eq!(PSC_HEADER_LEN + PSC_MAX_ENTRIES * 8, SHARED_BUFFER_LEN);
    }

    #[test]
    fn descriptor_layout() {
        let mut d = PscDescriptor::new();
        d.push(0x20_0000, PageSize::Size2M, PageState::Shared)
            .unwrap();
        d.push(0x40_1000, PageSize::Size4K, PageState::Shared)
            .unwrap();
        assert_eq!(
            d.push(0x40_1000, PageSize::Size2M, PageState::Shared),
            Err(PscError::InvalidArgument)
        );
        let mut buf = [0xEEu8; SHARED_BUFFER_LEN];
        d.write_to(&mut buf).unwrap();
        assert_eq!(&buf[0..8], &[0, 0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(
            u64::from_le_bytes(buf[8..16].try_into().unwrap()),
            0x0120_0000_0020_0000
        );
        assert_eq!(
            u64::from_le_bytes(buf[16..24].try_into().unwrap()),
            0x0020_0000_0040_1000
        );
        assert!(buf[24..].iter().all(|&b| b == 0));
        let mut full = PscDescriptor::new();
        for i in 0..PSC_MAX_ENTRIES as u64 {
            full.push(i << 12, PageSize::Size4K, PageState::Private)
                .unwrap();
        }
        assert_eq!(
            full.push(0, PageSize::Size4K, PageState::Private),
            Err(PscError::Full)
        );
        assert_eq!(
            PscDescriptor::new().write_to(&mut buf),
            Err(PscError::Empty)
        );
    }

    fn two_entries() -> (PscDescriptor, [u8; SHARED_BUFFER_LEN]) {
        let mut d = PscDescriptor::new();
        d.push(0x20_0000, PageSize::Size2M, PageState::Private)
            .unwrap();
        d.push(0x40_0000, PageSize::Size4K, PageState::Private)
            .unwrap();
        let mut buf = [0u8; SHARED_BUFFER_LEN];
        d.write_to(&mut buf).unwrap();
        (d, buf)
    }

    fn set_cur_entry(buf: &mut [u8; SHARED_BUFFER_LEN], v: u16) {
        buf[0..2].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn response_checks() {
        // Complete.
        let (mut d, mut buf) = two_entries();
        set_cur_entry(&mut buf, 2);
        assert_eq!(d.check_response(&buf, 0), Ok(PscProgress::Complete));
        // Host error code.
        let (mut d, buf) = two_entries();
        assert_eq!(
            d.check_response(&buf, 0x1_0000_0000),
            Err(PscError::HostError(0x1_0000_0000))
        );
        // No progress.
        let (mut d, buf) = two_entries();
        assert_eq!(d.check_response(&buf, 0), Err(PscError::NoProgress));
        // Partial: half of the 2 MiB entry, then the rest.
        let (mut d, mut buf) = two_entries();
        buf[8..10].copy_from_slice(&256u16.to_le_bytes());
        assert_eq!(d.check_response(&buf, 0), Ok(PscProgress::Partial));
        assert_eq!(d.entries()[0].cur_page, 256);
        let mut again = [0u8; SHARED_BUFFER_LEN];
        d.write_to(&mut again).unwrap();
        assert_eq!(again, buf); // we resubmit our copy with the progress taken over
        buf[8..10].copy_from_slice(&100u16.to_le_bytes());
        assert_eq!(d.check_response(&buf, 0), Err(PscError::WentBackwards));
        // cur_page beyond the entry size.
        let (mut d, mut buf) = two_entries();
        buf[16..18].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(d.check_response(&buf, 0), Err(PscError::EntryChanged(1)));
        // GFN redirected.
        let (mut d, mut buf) = two_entries();
        set_cur_entry(&mut buf, 2);
        buf[18] ^= 0x10;
        assert_eq!(d.check_response(&buf, 0), Err(PscError::EntryChanged(1)));
        // end_entry shrunk, reserved set, cur_entry past the end, cur_entry backwards.
        let (mut d, mut buf) = two_entries();
        buf[2] = 0;
        assert_eq!(d.check_response(&buf, 0), Err(PscError::EndEntryChanged));
        let (mut d, mut buf) = two_entries();
        buf[5] = 1;
        assert_eq!(d.check_response(&buf, 0), Err(PscError::BadHeader));
        let (mut d, mut buf) = two_entries();
        set_cur_entry(&mut buf, 3);
        assert_eq!(d.check_response(&buf, 0), Err(PscError::BadHeader));
        let (mut d, mut buf) = two_entries();
        set_cur_entry(&mut buf, 1);
        assert_eq!(d.check_response(&buf, 0), Ok(PscProgress::Partial));
        set_cur_entry(&mut buf, 0);
        assert_eq!(d.check_response(&buf, 0), Err(PscError::WentBackwards));
    }

    #[test]
    fn chunking() {
        let c: Vec<_> = chunks(0x1F_F000, 0x40_2000).unwrap().collect();
        assert_eq!(
            c,
            [
                (0x1F_F000, PageSize::Size4K),
                (0x20_0000, PageSize::Size2M),
                (0x40_0000, PageSize::Size2M),
                (0x60_0000, PageSize::Size4K),
            ]
        );
        assert!(chunks(0x1001, 0x1000).is_err());
        assert!(chunks(!0xFFF, 0x2000).is_err());
    }

    /// A host that completes exactly one entry per exit and returns, like a hypervisor that
    /// yields between entries.
    fn one_entry_per_exit(g: &mut Ghcb<'_>) {
        assert_eq!(g.get(Field::SwExitCode), Ok(ghcb::exit_code::SNP_PSC));
        assert_eq!(
            g.get(Field::SwScratch),
            Ok(0x7000 + SHARED_BUFFER_OFFSET as u64)
        );
        g.clear_valid_bitmap();
        let buf = g.shared_buffer_mut();
        let cur = u16::from_le_bytes([buf[0], buf[1]]);
        let o = PSC_HEADER_LEN + 8 * cur as usize;
        let e = PscEntry::decode(u64::from_le_bytes(buf[o..o + 8].try_into().unwrap())).unwrap();
        let done = PscEntry {
            cur_page: e.pages(),
            ..e
        };
        buf[o..o + 8].copy_from_slice(&done.encode().to_le_bytes());
        buf[0..2].copy_from_slice(&(cur + 1).to_le_bytes());
        g.set(Field::SwExitInfo1, 0);
        g.set(Field::SwExitInfo2, 0);
    }

    #[test]
    fn ghcb_psc_runs_to_completion_over_partial_answers() {
        let mut h = FakeHost {
            page: page(),
            gpa: 0x7000,
            respond: one_entry_per_exit,
            exits: 0,
        };
        // 300 entries -> two descriptors (253 + 47), one exit per entry.
        let mut psc = GhcbPageStateChange {
            platform: &mut h,
            version: 2,
        };
        psc.change(0x1000, 300 * 0x1000, PageState::Shared).unwrap();
        assert_eq!(h.exits, 300);
    }

    #[test]
    fn ghcb_psc_lying_host_is_caught() {
        fn redirect(g: &mut Ghcb<'_>) {
            g.clear_valid_bitmap();
            let buf = g.shared_buffer_mut();
            buf[0] = 1;
            buf[9] ^= 0x40; // another GFN
            g.set(Field::SwExitInfo1, 0);
            g.set(Field::SwExitInfo2, 0);
        }
        let mut h = FakeHost {
            page: page(),
            gpa: 0x7000,
            respond: redirect,
            exits: 0,
        };
        let mut psc = GhcbPageStateChange {
            platform: &mut h,
            version: 2,
        };
        assert_eq!(
            psc.change(0x1000, 0x1000, PageState::Shared),
            Err(PscError::EntryChanged(0))
        );
        fn stall(g: &mut Ghcb<'_>) {
            g.clear_valid_bitmap();
            g.set(Field::SwExitInfo1, 0);
            g.set(Field::SwExitInfo2, 0);
        }
        let mut h = FakeHost {
            page: page(),
            gpa: 0x7000,
            respond: stall,
            exits: 0,
        };
        let mut psc = GhcbPageStateChange {
            platform: &mut h,
            version: 2,
        };
        assert_eq!(
            psc.change(0x1000, 0x1000, PageState::Shared),
            Err(PscError::NoProgress)
        );
        assert_eq!(h.exits, 1);
    }

    #[test]
    fn msr_psc() {
        struct H(Vec<u64>, u32);
        impl GhcbMsr for H {
            fn exchange(&mut self, request: u64) -> u64 {
                self.0.push(request);
                msr_protocol::encode_psc_response(self.1)
            }
        }
        let mut h = H(Vec::new(), 0);
        MsrPageStateChange { msr: &mut h }
            .change(0x2000, 0x2000, PageState::Shared)
            .unwrap();
        assert_eq!(h.0, [0x0020_0000_0000_2014, 0x0020_0000_0000_3014]);
        let mut h = H(Vec::new(), 3);
        assert_eq!(
            MsrPageStateChange { msr: &mut h }.change(0x2000, 0x2000, PageState::Shared),
            Err(PscError::Msr(MsrError::PscFailed(3)))
        );
        assert_eq!(h.0.len(), 1);
    }

    #[test]
    fn random_responses_never_panic() {
        let mut x = 0xDEAD_BEEF_0BAD_F00Du64;
        let mut buf = [0u8; SHARED_BUFFER_LEN];
        for round in 0..3000 {
            let (mut d, good) = two_entries();
            buf.copy_from_slice(&good);
            // Mutate a few bytes, mostly in the header and the two entries.
            for _ in 0..(round % 7 + 1) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize >> 8) % 24;
                buf[i] = x as u8;
            }
            let _ = d.check_response(&buf, x & 1);
        }
        let _ = GHCB_SIZE;
    }
}
