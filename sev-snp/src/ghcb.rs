//! The GHCB page (GHCB spec rev 2.x, section 2.2 "GHCB Layout" and chapter 4 "GHCB Protocol").
//!
//! [`Ghcb`] is a typed, bounds-checked view over the 4 KiB GHCB page. The page is shared with
//! the hypervisor, so:
//! - every field the guest writes also sets its bit in the valid bitmap;
//! - every field the host writes is read only when the host marked it valid;
//! - every value read is checked before use, and buffers are copied out before they are parsed.
//!
//! The kernel supplies the page, its GPA and `VMGEXIT` through [`GhcbPlatform`]; the helpers at
//! the bottom of this module run one NAE each (IOIO, MMIO, CPUID, SNP guest request).

/// Size of the GHCB page.
pub const GHCB_SIZE: usize = 4096;
/// Offset of the valid bitmap (16 bytes, one bit per quadword of the save area).
pub const VALID_BITMAP_OFFSET: usize = 0x3F0;
/// Size of the valid bitmap.
pub const VALID_BITMAP_LEN: usize = 16;
/// Offset of the shared buffer.
pub const SHARED_BUFFER_OFFSET: usize = 0x800;
/// Size of the shared buffer (0x800..0xFF0).
pub const SHARED_BUFFER_LEN: usize = 2032;
/// Offset of the protocol version (u16).
pub const PROTOCOL_VERSION_OFFSET: usize = 0xFFA;
/// Offset of the GHCB usage (u32; 0 = standard usage).
pub const USAGE_OFFSET: usize = 0xFFC;
/// GHCB usage value for the standard format.
pub const USAGE_STANDARD: u32 = 0;

/// SW_EXITCODE values of the NAEs this crate prepares (APM vol. 2 appendix C for the SVM exit
/// codes; GHCB spec section 4.1 table "Non-Automatic Exit Events" for the 0x8000_xxxx ones).
pub mod exit_code {
    /// CPUID intercept.
    pub const CPUID: u64 = 0x72;
    /// IOIO intercept.
    pub const IOIO: u64 = 0x7B;
    /// MSR intercept.
    pub const MSR: u64 = 0x7C;
    /// MMIO read (GHCB-defined).
    pub const MMIO_READ: u64 = 0x8000_0001;
    /// MMIO write (GHCB-defined).
    pub const MMIO_WRITE: u64 = 0x8000_0002;
    /// SNP page state change.
    pub const SNP_PSC: u64 = 0x8000_0010;
    /// SNP guest request.
    pub const SNP_GUEST_REQUEST: u64 = 0x8000_0011;
    /// SNP extended guest request (not used by Omega).
    pub const SNP_EXT_GUEST_REQUEST: u64 = 0x8000_0012;
}

/// The save-area fields this crate reads or writes, with their offsets in the GHCB
/// (GHCB spec rev 2.03, section 2.2, table "GHCB Layout"; the same offsets as the VMSA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// RAX, 0x1F8.
    Rax,
    /// RCX, 0x308.
    Rcx,
    /// RDX, 0x310.
    Rdx,
    /// RBX, 0x318.
    Rbx,
    /// SW_EXITCODE, 0x390.
    SwExitCode,
    /// SW_EXITINFO1, 0x398.
    SwExitInfo1,
    /// SW_EXITINFO2, 0x3A0.
    SwExitInfo2,
    /// SW_SCRATCH, 0x3A8.
    SwScratch,
    /// XCR0, 0x3E8.
    XCr0,
}

impl Field {
    /// Byte offset of the field in the GHCB page.
    pub const fn offset(self) -> usize {
        match self {
            Field::Rax => 0x1F8,
            Field::Rcx => 0x308,
            Field::Rdx => 0x310,
            Field::Rbx => 0x318,
            Field::SwExitCode => 0x390,
            Field::SwExitInfo1 => 0x398,
            Field::SwExitInfo2 => 0x3A0,
            Field::SwScratch => 0x3A8,
            Field::XCr0 => 0x3E8,
        }
    }

    /// Index of the field's bit in the valid bitmap (offset / 8).
    pub const fn valid_bit(self) -> usize {
        self.offset() / 8
    }
}

/// Errors of GHCB NAEs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GhcbError {
    /// The host did not mark a field valid that it must return.
    #[error("host did not mark GHCB field {0:?} valid")]
    FieldNotValid(Field),
    /// SW_EXITINFO1[31:0] = 1: the host asks to inject an exception (event in SW_EXITINFO2).
    #[error("host requests exception injection, event {0:#x}")]
    ExceptionRequested(u64),
    /// SW_EXITINFO1[31:0] = 2: the host reports a GHCB error code (SW_EXITINFO2).
    #[error("host reports GHCB error {0:#x}")]
    HostError(u64),
    /// SW_EXITINFO1[31:0] has a value the spec does not define.
    #[error("host returned undefined SW_EXITINFO1 {0:#x}")]
    BadExitInfo1(u64),
    /// An argument is out of range (size not 1/2/4/8, buffer too long, address overflow).
    #[error("invalid NAE argument")]
    InvalidArgument,
    /// The host's answer is inconsistent with the request.
    #[error("inconsistent host response")]
    BadResponse,
    /// The protocol version in the page changed under us.
    #[error("GHCB protocol version or usage changed by the host")]
    HeaderChanged,
}

/// What the kernel supplies to run NAEs through the GHCB.
pub trait GhcbPlatform {
    /// Guest-physical address of the GHCB page (registered with the host, shared).
    fn ghcb_gpa(&self) -> u64;
    /// The GHCB page, mapped without the C-bit.
    fn ghcb_page(&mut self) -> &mut [u8; GHCB_SIZE];
    /// Execute `VMGEXIT` with the GHCB MSR holding [`GhcbPlatform::ghcb_gpa`].
    fn vmgexit(&mut self);
}

/// A typed view of one GHCB page.
pub struct Ghcb<'a> {
    page: &'a mut [u8; GHCB_SIZE],
}

impl<'a> Ghcb<'a> {
    /// View `page` as a GHCB.
    pub fn new(page: &'a mut [u8; GHCB_SIZE]) -> Self {
        Self { page }
    }

    /// The raw page (for tests and doubles).
    pub fn as_bytes(&self) -> &[u8; GHCB_SIZE] {
        self.page
    }

    /// Start a new NAE: clear the save area (0x000..0x800, including the valid bitmap) and
    /// write the protocol version and the standard usage.
    ///
    // SECURITY: clearing the bitmap first means no field left over from an earlier exit can be
    // mistaken for a valid input or output of this one.
    pub fn reset(&mut self, protocol_version: u16) {
        self.page[..SHARED_BUFFER_OFFSET].fill(0);
        self.page[PROTOCOL_VERSION_OFFSET..PROTOCOL_VERSION_OFFSET + 2]
            .copy_from_slice(&protocol_version.to_le_bytes());
        self.page[USAGE_OFFSET..USAGE_OFFSET + 4].copy_from_slice(&USAGE_STANDARD.to_le_bytes());
    }

    /// The protocol version field.
    pub fn protocol_version(&self) -> u16 {
        u16::from_le_bytes([
            self.page[PROTOCOL_VERSION_OFFSET],
            self.page[PROTOCOL_VERSION_OFFSET + 1],
        ])
    }

    /// The usage field.
    pub fn usage(&self) -> u32 {
        let o = USAGE_OFFSET;
        u32::from_le_bytes([
            self.page[o],
            self.page[o + 1],
            self.page[o + 2],
            self.page[o + 3],
        ])
    }

    /// Whether `field`'s bit is set in the valid bitmap.
    pub fn is_valid(&self, field: Field) -> bool {
        let bit = field.valid_bit();
        self.page[VALID_BITMAP_OFFSET + bit / 8] & (1 << (bit % 8)) != 0
    }

    /// Clear the valid bitmap (what a hypervisor does after consuming the inputs; used by
    /// test doubles).
    pub fn clear_valid_bitmap(&mut self) {
        self.page[VALID_BITMAP_OFFSET..VALID_BITMAP_OFFSET + VALID_BITMAP_LEN].fill(0);
    }

    fn mark_valid(&mut self, field: Field) {
        let bit = field.valid_bit();
        self.page[VALID_BITMAP_OFFSET + bit / 8] |= 1 << (bit % 8);
    }

    fn raw(&self, field: Field) -> u64 {
        let o = field.offset();
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.page[o..o + 8]);
        u64::from_le_bytes(b)
    }

    /// Write a field and mark it valid.
    pub fn set(&mut self, field: Field, value: u64) {
        let o = field.offset();
        self.page[o..o + 8].copy_from_slice(&value.to_le_bytes());
        self.mark_valid(field);
    }

    /// Read a field the host wrote; an error unless the host marked it valid.
    pub fn get(&self, field: Field) -> Result<u64, GhcbError> {
        if !self.is_valid(field) {
            return Err(GhcbError::FieldNotValid(field));
        }
        Ok(self.raw(field))
    }

    /// The shared buffer (0x800..0xFF0).
    pub fn shared_buffer(&self) -> &[u8; SHARED_BUFFER_LEN] {
        self.page[SHARED_BUFFER_OFFSET..SHARED_BUFFER_OFFSET + SHARED_BUFFER_LEN]
            .try_into()
            .expect("constant range")
    }

    /// The shared buffer, writable.
    pub fn shared_buffer_mut(&mut self) -> &mut [u8; SHARED_BUFFER_LEN] {
        (&mut self.page[SHARED_BUFFER_OFFSET..SHARED_BUFFER_OFFSET + SHARED_BUFFER_LEN])
            .try_into()
            .expect("constant range")
    }

    /// GPA of the shared buffer given the GHCB's GPA.
    pub fn shared_buffer_gpa(ghcb_gpa: u64) -> Result<u64, GhcbError> {
        ghcb_gpa
            .checked_add(SHARED_BUFFER_OFFSET as u64)
            .ok_or(GhcbError::InvalidArgument)
    }

    /// Set SW_EXITCODE, SW_EXITINFO1 and SW_EXITINFO2 (all three are always inputs).
    pub fn set_exit(&mut self, code: u64, info1: u64, info2: u64) {
        self.set(Field::SwExitCode, code);
        self.set(Field::SwExitInfo1, info1);
        self.set(Field::SwExitInfo2, info2);
    }

    /// Check the common NAE result (GHCB spec section 4.1.x, "SW_EXITINFO1 on return"):
    /// SW_EXITINFO1[31:0] 0 = success, 1 = inject the exception in SW_EXITINFO2,
    /// 2 = GHCB error code in SW_EXITINFO2. Also checks the version/usage the guest wrote are
    /// still there.
    pub fn check_exit_status(&self, protocol_version: u16) -> Result<(), GhcbError> {
        if self.protocol_version() != protocol_version || self.usage() != USAGE_STANDARD {
            return Err(GhcbError::HeaderChanged);
        }
        let info1 = self.get(Field::SwExitInfo1)?;
        match info1 & 0xFFFF_FFFF {
            0 => Ok(()),
            1 => Err(GhcbError::ExceptionRequested(self.get(Field::SwExitInfo2)?)),
            2 => Err(GhcbError::HostError(self.get(Field::SwExitInfo2)?)),
            _ => Err(GhcbError::BadExitInfo1(info1)),
        }
    }

    // ------------------------------------------------------------------------------------
    // IOIO (SW_EXITCODE 0x7B). SW_EXITINFO1 as the SVM IOIO intercept's EXITINFO1
    // (APM vol. 2, section 15.10.2): bit 0 IN, bits 4..6 operand size, bits 7..9 address
    // size, bits 31:16 port.

    /// Prepare `IN` of `size` bytes (1, 2, 4) from `port`.
    pub fn prepare_io_in(&mut self, version: u16, port: u16, size: u8) -> Result<(), GhcbError> {
        let info1 = ioio_exitinfo1(port, size, true)?;
        self.reset(version);
        self.set_exit(exit_code::IOIO, info1, 0);
        // RAX is an input too (GHCB spec table for IOIO lists RAX for IN and OUT).
        self.set(Field::Rax, 0);
        Ok(())
    }

    /// Read the result of `IN`: RAX masked to the operand size.
    pub fn finish_io_in(&self, version: u16, size: u8) -> Result<u32, GhcbError> {
        self.check_exit_status(version)?;
        let rax = self.get(Field::Rax)?;
        Ok((rax & size_mask(size)?) as u32)
    }

    /// Prepare `OUT` of `size` bytes (1, 2, 4) of `value` to `port`.
    pub fn prepare_io_out(
        &mut self,
        version: u16,
        port: u16,
        size: u8,
        value: u32,
    ) -> Result<(), GhcbError> {
        let info1 = ioio_exitinfo1(port, size, false)?;
        self.reset(version);
        self.set_exit(exit_code::IOIO, info1, 0);
        self.set(Field::Rax, value as u64 & size_mask(size)?);
        Ok(())
    }

    /// Check the result of `OUT`.
    pub fn finish_io_out(&self, version: u16) -> Result<(), GhcbError> {
        self.check_exit_status(version)
    }

    // ------------------------------------------------------------------------------------
    // MMIO (GHCB spec 4.1.5): SW_EXITINFO1 = GPA, SW_EXITINFO2 = length, SW_SCRATCH = GPA of
    // the data buffer, which we place at the start of the shared buffer.

    /// Prepare an MMIO read of `len` (1, 2, 4, 8) bytes at `gpa`.
    pub fn prepare_mmio_read(
        &mut self,
        version: u16,
        ghcb_gpa: u64,
        gpa: u64,
        len: usize,
    ) -> Result<(), GhcbError> {
        size_mask(u8::try_from(len).map_err(|_| GhcbError::InvalidArgument)?)?;
        let scratch = Self::shared_buffer_gpa(ghcb_gpa)?;
        self.reset(version);
        self.shared_buffer_mut()[..len].fill(0);
        self.set_exit(exit_code::MMIO_READ, gpa, len as u64);
        self.set(Field::SwScratch, scratch);
        Ok(())
    }

    /// Copy the result of an MMIO read out of the shared buffer into `out` (its length is the
    /// access size).
    pub fn finish_mmio_read(&self, version: u16, out: &mut [u8]) -> Result<(), GhcbError> {
        self.check_exit_status(version)?;
        if out.len() > 8 {
            return Err(GhcbError::InvalidArgument);
        }
        out.copy_from_slice(&self.shared_buffer()[..out.len()]);
        Ok(())
    }

    /// Prepare an MMIO write of `data` (1, 2, 4, 8 bytes) to `gpa`.
    pub fn prepare_mmio_write(
        &mut self,
        version: u16,
        ghcb_gpa: u64,
        gpa: u64,
        data: &[u8],
    ) -> Result<(), GhcbError> {
        size_mask(u8::try_from(data.len()).map_err(|_| GhcbError::InvalidArgument)?)?;
        let scratch = Self::shared_buffer_gpa(ghcb_gpa)?;
        self.reset(version);
        self.shared_buffer_mut()[..data.len()].copy_from_slice(data);
        self.set_exit(exit_code::MMIO_WRITE, gpa, data.len() as u64);
        self.set(Field::SwScratch, scratch);
        Ok(())
    }

    /// Check the result of an MMIO write.
    pub fn finish_mmio_write(&self, version: u16) -> Result<(), GhcbError> {
        self.check_exit_status(version)
    }

    // ------------------------------------------------------------------------------------
    // CPUID (SW_EXITCODE 0x72): RAX = leaf, RCX = sub-leaf, XCR0 for leaf 0xD; returns RAX,
    // RBX, RCX, RDX, all four of which must be marked valid.

    /// Prepare CPUID `leaf`/`subleaf`; `xcr0` is sent for leaf 0xD.
    pub fn prepare_cpuid(&mut self, version: u16, leaf: u32, subleaf: u32, xcr0: u64) {
        self.reset(version);
        self.set_exit(exit_code::CPUID, 0, 0);
        self.set(Field::Rax, leaf as u64);
        self.set(Field::Rcx, subleaf as u64);
        if leaf == 0xD {
            self.set(Field::XCr0, xcr0);
        }
    }

    /// Read the CPUID result `[eax, ebx, ecx, edx]`. Host-chosen: under SNP prefer the
    /// PSP-checked CPUID page.
    pub fn finish_cpuid(&self, version: u16) -> Result<[u32; 4], GhcbError> {
        self.check_exit_status(version)?;
        Ok([
            self.get(Field::Rax)? as u32,
            self.get(Field::Rbx)? as u32,
            self.get(Field::Rcx)? as u32,
            self.get(Field::Rdx)? as u32,
        ])
    }

    // ------------------------------------------------------------------------------------
    // SNP guest request (GHCB spec 4.1.7): SW_EXITINFO1 = request page GPA, SW_EXITINFO2 =
    // response page GPA (both shared pages). On return SW_EXITINFO2 holds the result:
    // [31:0] firmware (PSP) error, [63:32] hypervisor error (1 = invalid length, 2 = busy).

    /// Prepare an SNP guest request.
    pub fn prepare_guest_request(
        &mut self,
        version: u16,
        req_gpa: u64,
        resp_gpa: u64,
    ) -> Result<(), GhcbError> {
        if req_gpa & 0xFFF != 0 || resp_gpa & 0xFFF != 0 || req_gpa == resp_gpa {
            return Err(GhcbError::InvalidArgument);
        }
        self.reset(version);
        self.set_exit(exit_code::SNP_GUEST_REQUEST, req_gpa, resp_gpa);
        Ok(())
    }

    /// The host's SW_EXITINFO2 after an SNP guest request (interpreted by
    /// [`crate::guest_msg::GuestMessenger`]).
    pub fn finish_guest_request(&self, version: u16) -> Result<u64, GhcbError> {
        if self.protocol_version() != version || self.usage() != USAGE_STANDARD {
            return Err(GhcbError::HeaderChanged);
        }
        // For this NAE a non-zero SW_EXITINFO1[31:0] still means the NAE failed; the firmware
        // result is in SW_EXITINFO2.
        let info1 = self.get(Field::SwExitInfo1)?;
        match info1 & 0xFFFF_FFFF {
            0 => self.get(Field::SwExitInfo2),
            1 => Err(GhcbError::ExceptionRequested(self.get(Field::SwExitInfo2)?)),
            2 => Err(GhcbError::HostError(self.get(Field::SwExitInfo2)?)),
            _ => Err(GhcbError::BadExitInfo1(info1)),
        }
    }
}

fn size_mask(size: u8) -> Result<u64, GhcbError> {
    match size {
        1 => Ok(0xFF),
        2 => Ok(0xFFFF),
        4 => Ok(0xFFFF_FFFF),
        8 => Ok(u64::MAX),
        _ => Err(GhcbError::InvalidArgument),
    }
}

/// SW_EXITINFO1 of an IOIO NAE for a non-string `IN`/`OUT` in 64-bit mode.
pub fn ioio_exitinfo1(port: u16, size: u8, is_in: bool) -> Result<u64, GhcbError> {
    let size_bit = match size {
        1 => 1 << 4,
        2 => 1 << 5,
        4 => 1 << 6,
        _ => return Err(GhcbError::InvalidArgument),
    };
    const A64: u64 = 1 << 9;
    Ok(((port as u64) << 16) | A64 | size_bit | is_in as u64)
}

// ----------------------------------------------------------------------------------------
// One-call helpers over a platform.

/// `IN` through the GHCB.
pub fn io_in<P: GhcbPlatform>(
    p: &mut P,
    version: u16,
    port: u16,
    size: u8,
) -> Result<u32, GhcbError> {
    Ghcb::new(p.ghcb_page()).prepare_io_in(version, port, size)?;
    p.vmgexit();
    Ghcb::new(p.ghcb_page()).finish_io_in(version, size)
}

/// `OUT` through the GHCB.
pub fn io_out<P: GhcbPlatform>(
    p: &mut P,
    version: u16,
    port: u16,
    size: u8,
    value: u32,
) -> Result<(), GhcbError> {
    Ghcb::new(p.ghcb_page()).prepare_io_out(version, port, size, value)?;
    p.vmgexit();
    Ghcb::new(p.ghcb_page()).finish_io_out(version)
}

/// MMIO read of `out.len()` bytes (1, 2, 4, 8) at `gpa`.
pub fn mmio_read<P: GhcbPlatform>(
    p: &mut P,
    version: u16,
    gpa: u64,
    out: &mut [u8],
) -> Result<(), GhcbError> {
    let ghcb_gpa = p.ghcb_gpa();
    Ghcb::new(p.ghcb_page()).prepare_mmio_read(version, ghcb_gpa, gpa, out.len())?;
    p.vmgexit();
    Ghcb::new(p.ghcb_page()).finish_mmio_read(version, out)
}

/// MMIO write of `data` (1, 2, 4, 8 bytes) to `gpa`.
pub fn mmio_write<P: GhcbPlatform>(
    p: &mut P,
    version: u16,
    gpa: u64,
    data: &[u8],
) -> Result<(), GhcbError> {
    let ghcb_gpa = p.ghcb_gpa();
    Ghcb::new(p.ghcb_page()).prepare_mmio_write(version, ghcb_gpa, gpa, data)?;
    p.vmgexit();
    Ghcb::new(p.ghcb_page()).finish_mmio_write(version)
}

/// CPUID through the GHCB.
pub fn cpuid<P: GhcbPlatform>(
    p: &mut P,
    version: u16,
    leaf: u32,
    subleaf: u32,
    xcr0: u64,
) -> Result<[u32; 4], GhcbError> {
    Ghcb::new(p.ghcb_page()).prepare_cpuid(version, leaf, subleaf, xcr0);
    p.vmgexit();
    Ghcb::new(p.ghcb_page()).finish_cpuid(version)
}

/// SNP guest request NAE; returns the host's SW_EXITINFO2. The request and response pages
/// must be shared pages the kernel filled / will read.
pub fn guest_request<P: GhcbPlatform>(
    p: &mut P,
    version: u16,
    req_gpa: u64,
    resp_gpa: u64,
) -> Result<u64, GhcbError> {
    Ghcb::new(p.ghcb_page()).prepare_guest_request(version, req_gpa, resp_gpa)?;
    p.vmgexit();
    Ghcb::new(p.ghcb_page()).finish_guest_request(version)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::boxed::Box;

    pub(crate) fn page() -> Box<[u8; GHCB_SIZE]> {
        Box::new([0u8; GHCB_SIZE])
    }

    /// Offsets from GHCB spec rev 2.03, section 2.2, table 3 "GHCB Layout" (and the Linux
    /// `struct ghcb_save_area`, whose field order we checked them against).
    #[test]
    fn layout_matches_spec() {
        assert_eq!(Field::Rax.offset(), 0x1F8);
        assert_eq!(Field::Rcx.offset(), 0x308);
        assert_eq!(Field::Rdx.offset(), 0x310);
        assert_eq!(Field::Rbx.offset(), 0x318);
        assert_eq!(Field::SwExitCode.offset(), 0x390);
        assert_eq!(Field::SwExitInfo1.offset(), 0x398);
        assert_eq!(Field::SwExitInfo2.offset(), 0x3A0);
        assert_eq!(Field::SwScratch.offset(), 0x3A8);
        assert_eq!(Field::XCr0.offset(), 0x3E8);
        assert_eq!(VALID_BITMAP_OFFSET, 0x3F0);
        // The bitmap covers the save area up to (not including) itself: 0x3F0 / 8 = 126 bits.
        const { assert!(VALID_BITMAP_OFFSET / 8 <= VALID_BITMAP_LEN * 8) };
        assert_eq!(SHARED_BUFFER_OFFSET, 0x800);
        assert_eq!(SHARED_BUFFER_OFFSET + SHARED_BUFFER_LEN, 0xFF0);
        assert_eq!(PROTOCOL_VERSION_OFFSET, 0xFFA);
        assert_eq!(USAGE_OFFSET, 0xFFC);
        // Valid bits: RAX is quadword 63 (byte 7, bit 7), SW_EXITCODE quadword 114.
        assert_eq!(Field::Rax.valid_bit(), 63);
        assert_eq!(Field::SwExitCode.valid_bit(), 114);
        assert_eq!(Field::SwScratch.valid_bit(), 117);
    }

    #[test]
    fn set_marks_valid_and_get_requires_valid() {
        let mut p = page();
        let mut g = Ghcb::new(&mut p);
        g.reset(2);
        assert_eq!(g.get(Field::Rbx), Err(GhcbError::FieldNotValid(Field::Rbx)));
        g.set(Field::Rbx, 0x1122_3344_5566_7788);
        assert_eq!(g.get(Field::Rbx), Ok(0x1122_3344_5566_7788));
        let b = g.as_bytes();
        assert_eq!(&b[0x318..0x320], &0x1122_3344_5566_7788u64.to_le_bytes());
        // RBX = quadword 99 -> bitmap byte 12, bit 3
        assert_eq!(b[0x3F0 + 12], 1 << 3);
        assert_eq!(b[0xFFA], 2);
        assert_eq!(g.protocol_version(), 2);
        assert_eq!(g.usage(), 0);
        // A value the host wrote without marking it valid is never returned.
        let mut p = page();
        p[0x1F8] = 0x42;
        let g = Ghcb::new(&mut p);
        assert!(g.get(Field::Rax).is_err());
    }

    #[test]
    fn reset_clears_stale_state_but_not_shared_buffer_header() {
        let mut p = page();
        p.fill(0xAA);
        let mut g = Ghcb::new(&mut p);
        g.reset(2);
        assert!(g.as_bytes()[..0x800].iter().all(|&b| b == 0));
        assert_eq!(g.usage(), 0);
    }

    /// A fake hypervisor that answers NAEs in its own page.
    pub(crate) struct FakeHost {
        pub page: Box<[u8; GHCB_SIZE]>,
        pub gpa: u64,
        pub respond: fn(&mut Ghcb<'_>),
        pub exits: usize,
    }

    impl GhcbPlatform for FakeHost {
        fn ghcb_gpa(&self) -> u64 {
            self.gpa
        }
        fn ghcb_page(&mut self) -> &mut [u8; GHCB_SIZE] {
            &mut self.page
        }
        fn vmgexit(&mut self) {
            self.exits += 1;
            let mut g = Ghcb::new(&mut self.page);
            // Like KVM: consume the inputs, clear the bitmap, then set the outputs.
            (self.respond)(&mut g);
        }
    }

    fn host_ok(g: &mut Ghcb<'_>) {
        let code = g.get(Field::SwExitCode).unwrap();
        let info1 = g.get(Field::SwExitInfo1).unwrap();
        let rax = g.get(Field::Rax).ok();
        let rcx = g.get(Field::Rcx).ok();
        g.page[VALID_BITMAP_OFFSET..VALID_BITMAP_OFFSET + 16].fill(0);
        match code {
            exit_code::IOIO => {
                assert_eq!(info1 >> 16, 0x3F8);
                if info1 & 1 == 1 {
                    g.set(Field::Rax, 0xFFFF_FF41); // high garbage must be masked
                } else {
                    assert_eq!(rax, Some(0x5A));
                }
            }
            exit_code::CPUID => {
                assert_eq!(rax, Some(0x8000_001F));
                assert_eq!(rcx, Some(0));
                g.set(Field::Rax, 0x1B);
                g.set(Field::Rbx, 0x133);
                g.set(Field::Rcx, 0);
                g.set(Field::Rdx, 0);
            }
            exit_code::MMIO_READ => {
                let scratch = 0x7000 + 0x800;
                assert_eq!(g.page[0x3A8..0x3B0], (scratch as u64).to_le_bytes());
                g.shared_buffer_mut()[..4].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
            }
            exit_code::MMIO_WRITE => {
                assert_eq!(&g.shared_buffer()[..2], &[0x34, 0x12]);
            }
            exit_code::SNP_GUEST_REQUEST => {
                g.set(Field::SwExitInfo2, 0x2_0000_0000);
            }
            _ => panic!("unexpected exit {code:#x}"),
        }
        g.set(Field::SwExitInfo1, 0);
        if !g.is_valid(Field::SwExitInfo2) {
            g.set(Field::SwExitInfo2, 0);
        }
    }

    fn host() -> FakeHost {
        FakeHost {
            page: page(),
            gpa: 0x7000,
            respond: host_ok,
            exits: 0,
        }
    }

    #[test]
    fn ioio_encodings() {
        // IN al, dx from 0x3F8: port<<16 | A64 (bit 9) | SZ8 (bit 4) | IN (bit 0)
        assert_eq!(ioio_exitinfo1(0x3F8, 1, true), Ok(0x03F8_0211));
        assert_eq!(ioio_exitinfo1(0xF4, 4, false), Ok(0x00F4_0240));
        assert_eq!(
            ioio_exitinfo1(0xF4, 3, false),
            Err(GhcbError::InvalidArgument)
        );
        let mut h = host();
        assert_eq!(io_in(&mut h, 2, 0x3F8, 1), Ok(0x41));
        assert_eq!(io_out(&mut h, 2, 0x3F8, 1, 0x5A), Ok(()));
    }

    #[test]
    fn cpuid_mmio_guest_request() {
        let mut h = host();
        assert_eq!(cpuid(&mut h, 2, 0x8000_001F, 0, 0), Ok([0x1B, 0x133, 0, 0]));
        let mut out = [0u8; 4];
        mmio_read(&mut h, 2, 0xFEE0_0000, &mut out).unwrap();
        assert_eq!(u32::from_le_bytes(out), 0xDEAD_BEEF);
        mmio_write(&mut h, 2, 0xFEE0_0000, &[0x34, 0x12]).unwrap();
        assert_eq!(
            guest_request(&mut h, 2, 0x10_0000, 0x10_1000),
            Ok(0x2_0000_0000)
        );
        assert_eq!(
            guest_request(&mut h, 2, 0x10_0000, 0x10_0000),
            Err(GhcbError::InvalidArgument)
        );
        let mut out = [0u8; 3];
        assert_eq!(
            mmio_read(&mut h, 2, 0, &mut out),
            Err(GhcbError::InvalidArgument)
        );
    }

    #[test]
    fn host_errors_are_reported() {
        fn no_valid(g: &mut Ghcb<'_>) {
            g.page[VALID_BITMAP_OFFSET..VALID_BITMAP_OFFSET + 16].fill(0);
            g.page[0x398] = 0; // value written but not marked valid
        }
        let mut h = FakeHost {
            respond: no_valid,
            ..host()
        };
        assert_eq!(
            cpuid(&mut h, 2, 0, 0, 0),
            Err(GhcbError::FieldNotValid(Field::SwExitInfo1))
        );

        fn cpuid_missing_rdx(g: &mut Ghcb<'_>) {
            g.page[VALID_BITMAP_OFFSET..VALID_BITMAP_OFFSET + 16].fill(0);
            g.set(Field::SwExitInfo1, 0);
            g.set(Field::Rax, 1);
            g.set(Field::Rbx, 1);
            g.set(Field::Rcx, 1);
        }
        let mut h = FakeHost {
            respond: cpuid_missing_rdx,
            ..host()
        };
        assert_eq!(
            cpuid(&mut h, 2, 0, 0, 0),
            Err(GhcbError::FieldNotValid(Field::Rdx))
        );

        fn error2(g: &mut Ghcb<'_>) {
            g.set(Field::SwExitInfo1, 2);
            g.set(Field::SwExitInfo2, 5);
        }
        let mut h = FakeHost {
            respond: error2,
            ..host()
        };
        assert_eq!(io_out(&mut h, 2, 0x80, 1, 0), Err(GhcbError::HostError(5)));

        fn inject(g: &mut Ghcb<'_>) {
            g.set(Field::SwExitInfo1, 1);
            g.set(Field::SwExitInfo2, 0x8000_030D);
        }
        let mut h = FakeHost {
            respond: inject,
            ..host()
        };
        assert_eq!(
            io_out(&mut h, 2, 0x80, 1, 0),
            Err(GhcbError::ExceptionRequested(0x8000_030D))
        );

        fn weird(g: &mut Ghcb<'_>) {
            g.set(Field::SwExitInfo1, 7);
        }
        let mut h = FakeHost {
            respond: weird,
            ..host()
        };
        assert_eq!(
            io_out(&mut h, 2, 0x80, 1, 0),
            Err(GhcbError::BadExitInfo1(7))
        );

        fn version(g: &mut Ghcb<'_>) {
            g.set(Field::SwExitInfo1, 0);
            g.page[0xFFA] = 1;
        }
        let mut h = FakeHost {
            respond: version,
            ..host()
        };
        assert_eq!(io_out(&mut h, 2, 0x80, 1, 0), Err(GhcbError::HeaderChanged));
    }

    #[test]
    fn random_pages_never_panic() {
        let mut x = 0x0123_4567_89AB_CDEFu64;
        let mut p = page();
        for _ in 0..2000 {
            for chunk in p.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            let g = Ghcb::new(&mut p);
            let _ = g.finish_cpuid(2);
            let _ = g.finish_io_in(2, 4);
            let _ = g.finish_guest_request(2);
            let mut out = [0u8; 8];
            let _ = g.finish_mmio_read(2, &mut out);
            for f in [Field::Rax, Field::Rbx, Field::SwExitInfo2, Field::SwScratch] {
                let _ = g.get(f);
            }
        }
    }
}
