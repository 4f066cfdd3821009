//! GHCB MSR protocol (GHCB spec rev 2.x, section 2.3.1 "GHCB MSR Protocol").
//!
//! Before a GHCB page is registered (and for a few requests that never need one) the guest
//! talks to the hypervisor through the GHCB MSR (`0xC001_0130`) itself: it writes a request
//! value, executes `VMGEXIT`, and reads the response value. Bits `[11:0]` (GHCBInfo) name the
//! request or response, bits `[63:12]` (GHCBData) carry the data.
//!
//! Everything the host writes back is hostile input: every response is decoded with its
//! response code, reserved bits and echoed fields checked; a mismatch is an error, never a
//! panic.

use crate::{GHCB_PROTOCOL_MAX, GHCB_PROTOCOL_MIN, PageState};

/// Index of the GHCB MSR (APM vol. 2, "SEV-ES"; GHCB spec section 2.2).
pub const GHCB_MSR_INDEX: u32 = 0xC001_0130;

/// GHCBInfo values, bits `[11:0]` of the MSR (GHCB spec section 2.3.1, table "GHCB MSR
/// Protocol").
pub mod info {
    /// SEV information (hypervisor -> guest).
    pub const SEV_INFO_RESP: u64 = 0x001;
    /// SEV information request (guest -> hypervisor).
    pub const SEV_INFO_REQ: u64 = 0x002;
    /// CPUID request.
    pub const CPUID_REQ: u64 = 0x004;
    /// CPUID response.
    pub const CPUID_RESP: u64 = 0x005;
    /// GHCB guest physical address registration request.
    pub const REGISTER_GPA_REQ: u64 = 0x012;
    /// GHCB guest physical address registration response.
    pub const REGISTER_GPA_RESP: u64 = 0x013;
    /// SNP page state change request.
    pub const PSC_REQ: u64 = 0x014;
    /// SNP page state change response.
    pub const PSC_RESP: u64 = 0x015;
    /// Hypervisor feature support request.
    pub const HV_FEATURES_REQ: u64 = 0x080;
    /// Hypervisor feature support response.
    pub const HV_FEATURES_RESP: u64 = 0x081;
    /// Termination request.
    pub const TERMINATE_REQ: u64 = 0x100;
}

const INFO_MASK: u64 = 0xFFF;
/// Largest guest frame number the PSC MSR request can carry (GHCBData[51:12], 40 bits).
pub const PSC_MSR_MAX_GFN: u64 = (1 << 40) - 1;
/// Largest GFN of the GHCB GPA registration (GHCBData[63:12], 52 bits).
pub const REGISTER_MAX_GFN: u64 = (1 << 52) - 1;

/// Errors decoding a host response of the MSR protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MsrError {
    /// The response code (GHCBInfo) is not the one that answers the request.
    #[error("GHCB MSR response code {got:#x}, expected {expected:#x}")]
    WrongResponseCode {
        /// The code expected.
        expected: u64,
        /// The code received.
        got: u64,
    },
    /// Bits the spec reserves (must be zero) are set in the response.
    #[error("GHCB MSR response {value:#x} has reserved bits set")]
    ReservedBitsSet {
        /// The whole response.
        value: u64,
    },
    /// The response does not echo the field of the request (register, GFN).
    #[error("GHCB MSR response does not echo the request")]
    EchoMismatch,
    /// The hypervisor's protocol range does not overlap ours.
    #[error("GHCB protocol versions {min}..={max} offered, {ours_min}..={ours_max} supported")]
    ProtocolUnsupported {
        /// Hypervisor minimum.
        min: u16,
        /// Hypervisor maximum.
        max: u16,
        /// Our minimum.
        ours_min: u16,
        /// Our maximum.
        ours_max: u16,
    },
    /// The hypervisor's minimum exceeds its maximum.
    #[error("GHCB protocol range {min}..={max} is empty")]
    ProtocolRangeEmpty {
        /// Hypervisor minimum.
        min: u16,
        /// Hypervisor maximum.
        max: u16,
    },
    /// The C-bit position reported by the hypervisor differs from the pinned one.
    #[error("C-bit position {reported} reported by the host, {pinned} pinned")]
    CBitMismatch {
        /// From the host.
        reported: u8,
        /// From CPUID 0x8000001F (PSP-checked CPUID page under SNP) or the build.
        pinned: u8,
    },
    /// The hypervisor refused to register the GHCB (it answered with another GFN).
    #[error("GHCB registration refused (host answered GFN {got:#x}, requested {requested:#x})")]
    RegistrationRefused {
        /// Requested GFN.
        requested: u64,
        /// GFN in the response.
        got: u64,
    },
    /// The hypervisor reported an error for a page state change.
    #[error("page state change failed, host error {0:#x}")]
    PscFailed(u32),
    /// An argument cannot be encoded (address not page aligned, GFN too large).
    #[error("argument cannot be encoded in the MSR protocol")]
    InvalidArgument,
    /// The hypervisor does not advertise SNP support (feature bit 0).
    #[error("hypervisor features {0:#x} lack SEV-SNP support")]
    SnpNotSupported(u64),
}

/// The platform operation behind the MSR protocol, supplied by the kernel.
pub trait GhcbMsr {
    /// Write `request` to the GHCB MSR, execute `VMGEXIT`, read the GHCB MSR back and return it.
    ///
    /// After a GHCB page is registered the implementation must save the GHCB MSR before and
    /// restore it after the exchange (the MSR then holds the GHCB's GPA).
    fn exchange(&mut self, request: u64) -> u64;
}

fn check_code(value: u64, expected: u64) -> Result<(), MsrError> {
    let got = value & INFO_MASK;
    if got != expected {
        return Err(MsrError::WrongResponseCode { expected, got });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SEV information

/// The SEV information response (GHCBInfo 0x001): GHCBData[63:48] maximum protocol version,
/// [47:32] minimum protocol version, [31:24] C-bit position, [23:12] reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevInfo {
    /// Highest GHCB protocol version the hypervisor supports.
    pub max_protocol: u16,
    /// Lowest GHCB protocol version the hypervisor supports.
    pub min_protocol: u16,
    /// Position of the encryption bit in page table entries.
    pub c_bit: u8,
}

/// Encode the SEV information request (GHCBInfo 0x002, GHCBData 0).
pub const fn sev_info_request() -> u64 {
    info::SEV_INFO_REQ
}

/// Encode a SEV information response (what a hypervisor sends; used by tests and doubles).
pub const fn encode_sev_info(info: SevInfo) -> u64 {
    ((info.max_protocol as u64) << 48)
        | ((info.min_protocol as u64) << 32)
        | ((info.c_bit as u64) << 24)
        | info::SEV_INFO_RESP
}

/// Decode and check a SEV information response.
pub fn decode_sev_info(value: u64) -> Result<SevInfo, MsrError> {
    check_code(value, info::SEV_INFO_RESP)?;
    if value & 0x00FF_F000 != 0 {
        return Err(MsrError::ReservedBitsSet { value });
    }
    let info = SevInfo {
        max_protocol: (value >> 48) as u16,
        min_protocol: (value >> 32) as u16,
        c_bit: (value >> 24) as u8,
    };
    if info.min_protocol > info.max_protocol {
        return Err(MsrError::ProtocolRangeEmpty {
            min: info.min_protocol,
            max: info.max_protocol,
        });
    }
    Ok(info)
}

impl SevInfo {
    /// The highest protocol version both sides support, if any.
    pub fn negotiate(&self) -> Result<u16, MsrError> {
        let version = self.max_protocol.min(GHCB_PROTOCOL_MAX);
        if version < GHCB_PROTOCOL_MIN || version < self.min_protocol {
            return Err(MsrError::ProtocolUnsupported {
                min: self.min_protocol,
                max: self.max_protocol,
                ours_min: GHCB_PROTOCOL_MIN,
                ours_max: GHCB_PROTOCOL_MAX,
            });
        }
        Ok(version)
    }

    /// Check the C-bit position against the pinned one.
    ///
    // SECURITY: the host reports the C-bit; a wrong position would make the guest build page
    // tables that map private memory as shared. Compare with CPUID 0x8000001F EBX[5:0] taken
    // from the PSP-checked CPUID page (or a value pinned at build time), never trust the host.
    pub fn check_c_bit(&self, pinned: u8) -> Result<(), MsrError> {
        if self.c_bit != pinned {
            return Err(MsrError::CBitMismatch {
                reported: self.c_bit,
                pinned,
            });
        }
        Ok(())
    }
}

/// Request SEV information and negotiate the protocol version, pinning the C-bit.
pub fn negotiate_protocol<M: GhcbMsr>(msr: &mut M, pinned_c_bit: u8) -> Result<u16, MsrError> {
    let info = decode_sev_info(msr.exchange(sev_info_request()))?;
    info.check_c_bit(pinned_c_bit)?;
    info.negotiate()
}

// ---------------------------------------------------------------------------------------------
// CPUID

/// Register selector of the CPUID MSR request (GHCBData[31:30]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuidReg {
    /// EAX (0).
    Eax = 0,
    /// EBX (1).
    Ebx = 1,
    /// ECX (2).
    Ecx = 2,
    /// EDX (3).
    Edx = 3,
}

/// Encode a CPUID request: GHCBData[63:32] function, [31:30] register, [29:12] reserved.
/// (The MSR form has no sub-leaf: ECX is 0.)
pub const fn cpuid_request(function: u32, reg: CpuidReg) -> u64 {
    ((function as u64) << 32) | ((reg as u64) << 30) | info::CPUID_REQ
}

/// Encode a CPUID response (for tests and doubles).
pub const fn encode_cpuid_response(value: u32, reg: CpuidReg) -> u64 {
    ((value as u64) << 32) | ((reg as u64) << 30) | info::CPUID_RESP
}

/// Decode a CPUID response: GHCBData[63:32] the register value, [31:30] the register echoed.
pub fn decode_cpuid_response(value: u64, reg: CpuidReg) -> Result<u32, MsrError> {
    check_code(value, info::CPUID_RESP)?;
    if value & 0x3FFF_F000 != 0 {
        return Err(MsrError::ReservedBitsSet { value });
    }
    if (value >> 30) & 0x3 != reg as u64 {
        return Err(MsrError::EchoMismatch);
    }
    Ok((value >> 32) as u32)
}

/// CPUID through the MSR protocol: four exchanges, EAX, EBX, ECX, EDX.
///
/// The result is host-chosen: under SNP use the PSP-checked CPUID page for anything that
/// matters for security.
pub fn cpuid<M: GhcbMsr>(msr: &mut M, function: u32) -> Result<[u32; 4], MsrError> {
    let mut out = [0u32; 4];
    for (slot, reg) in
        out.iter_mut()
            .zip([CpuidReg::Eax, CpuidReg::Ebx, CpuidReg::Ecx, CpuidReg::Edx])
    {
        *slot = decode_cpuid_response(msr.exchange(cpuid_request(function, reg)), reg)?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// GHCB GPA registration

/// Encode the GHCB GPA registration request: GHCBData[63:12] the GFN of the GHCB page.
pub fn register_ghcb_request(ghcb_gpa: u64) -> Result<u64, MsrError> {
    if ghcb_gpa & INFO_MASK != 0 {
        return Err(MsrError::InvalidArgument);
    }
    Ok(ghcb_gpa | info::REGISTER_GPA_REQ)
}

/// Decode the registration response: it must echo the requested GFN (a hypervisor that
/// refuses answers with all ones).
pub fn decode_register_ghcb_response(value: u64, ghcb_gpa: u64) -> Result<(), MsrError> {
    check_code(value, info::REGISTER_GPA_RESP)?;
    let got = value >> 12;
    let requested = ghcb_gpa >> 12;
    if got != requested {
        return Err(MsrError::RegistrationRefused { requested, got });
    }
    Ok(())
}

/// Register the GHCB page at `ghcb_gpa` (must already be shared and mapped unencrypted).
pub fn register_ghcb<M: GhcbMsr>(msr: &mut M, ghcb_gpa: u64) -> Result<(), MsrError> {
    let request = register_ghcb_request(ghcb_gpa)?;
    decode_register_ghcb_response(msr.exchange(request), ghcb_gpa)
}

// ---------------------------------------------------------------------------------------------
// Hypervisor features

/// Hypervisor feature bit 0: SEV-SNP support (GHCB spec 2.3.1, "Hypervisor Feature Support").
pub const HV_FEATURE_SNP: u64 = 1 << 0;

/// Encode the hypervisor feature request (GHCBInfo 0x080).
pub const fn hv_features_request() -> u64 {
    info::HV_FEATURES_REQ
}

/// Decode the hypervisor feature response: GHCBData[63:12] the feature bitmap.
pub fn decode_hv_features(value: u64) -> Result<u64, MsrError> {
    check_code(value, info::HV_FEATURES_RESP)?;
    Ok(value >> 12)
}

/// Query hypervisor features and require SNP support.
pub fn require_snp_features<M: GhcbMsr>(msr: &mut M) -> Result<u64, MsrError> {
    let features = decode_hv_features(msr.exchange(hv_features_request()))?;
    if features & HV_FEATURE_SNP == 0 {
        return Err(MsrError::SnpNotSupported(features));
    }
    Ok(features)
}

// ---------------------------------------------------------------------------------------------
// SNP page state change (MSR form)

/// Encode an SNP page state change request: GHCBData[55:52] operation, [51:12] GFN,
/// [63:56] reserved.
pub fn psc_request(gfn: u64, state: PageState) -> Result<u64, MsrError> {
    if gfn > PSC_MSR_MAX_GFN {
        return Err(MsrError::InvalidArgument);
    }
    Ok((state.op() << 52) | (gfn << 12) | info::PSC_REQ)
}

/// Encode a page state change response (for tests and doubles).
pub const fn encode_psc_response(error: u32) -> u64 {
    ((error as u64) << 32) | info::PSC_RESP
}

/// Decode a page state change response: GHCBData[63:32] error code (0 = success),
/// [31:12] reserved.
pub fn decode_psc_response(value: u64) -> Result<(), MsrError> {
    check_code(value, info::PSC_RESP)?;
    if value & 0xFFFF_F000 != 0 {
        return Err(MsrError::ReservedBitsSet { value });
    }
    match (value >> 32) as u32 {
        0 => Ok(()),
        e => Err(MsrError::PscFailed(e)),
    }
}

/// Change the state of one 4 KiB page through the MSR protocol. This does not PVALIDATE:
/// use [`crate::pvalidate::make_private`] / [`crate::pvalidate::make_shared`].
pub fn page_state_change<M: GhcbMsr>(
    msr: &mut M,
    gfn: u64,
    state: PageState,
) -> Result<(), MsrError> {
    decode_psc_response(msr.exchange(psc_request(gfn, state)?))
}

// ---------------------------------------------------------------------------------------------
// Termination

/// A termination reason: reason code set (4 bits) and reason code (8 bits). The values
/// Omega uses, set 0 (the GHCB spec's general set) included, are listed once, in
/// `omega_boot_info::snp::terminate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminationReason {
    /// Reason code set, GHCBData[15:12]: 0 is the GHCB spec's general set (code 0 general,
    /// 1 protocol range unsupported, 2 SNP features unsupported).
    pub set: u8,
    /// Reason code, GHCBData[23:16].
    pub code: u8,
}

/// Encode a termination request: GHCBData[23:16] reason code, [15:12] reason code set.
/// Out-of-range values are masked to the field width (set: 4 bits).
pub const fn termination_request(reason: TerminationReason) -> u64 {
    (((reason.code as u64) & 0xFF) << 16)
        | (((reason.set as u64) & 0xF) << 12)
        | info::TERMINATE_REQ
}

/// Ask the hypervisor to terminate the guest. The hypervisor should not return; if it does,
/// the caller must halt forever (never continue).
pub fn request_termination<M: GhcbMsr>(msr: &mut M, reason: TerminationReason) {
    let _ = msr.exchange(termination_request(reason));
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known values computed by hand from the bit layouts of GHCB spec rev 2.03, section 2.3.1
    // (table "GHCB MSR Protocol"), and cross-checked against Linux's sev-common.h macros.

    #[test]
    fn sev_info_known_values() {
        assert_eq!(sev_info_request(), 0x002);
        // max 2, min 1, C-bit 51 (0x33): 0x0002_0001_3300_0001
        let v = 0x0002_0001_3300_0001u64;
        let info = decode_sev_info(v).unwrap();
        assert_eq!(
            info,
            SevInfo {
                max_protocol: 2,
                min_protocol: 1,
                c_bit: 51
            }
        );
        assert_eq!(encode_sev_info(info), v);
        assert_eq!(info.negotiate(), Ok(2));
        assert_eq!(info.check_c_bit(51), Ok(()));
        assert!(matches!(
            info.check_c_bit(47),
            Err(MsrError::CBitMismatch {
                reported: 51,
                pinned: 47
            })
        ));
    }

    #[test]
    fn sev_info_rejects() {
        assert!(matches!(
            decode_sev_info(0x0002_0001_3300_0002),
            Err(MsrError::WrongResponseCode { .. })
        ));
        assert!(matches!(
            decode_sev_info(0x0002_0001_3300_1001),
            Err(MsrError::ReservedBitsSet { .. })
        ));
        assert!(matches!(
            decode_sev_info(0x0001_0002_3300_0001),
            Err(MsrError::ProtocolRangeEmpty { .. })
        ));
        // Hypervisor only speaks version 1 (SEV-ES without SNP): refused.
        let v1 = decode_sev_info(0x0001_0001_3300_0001).unwrap();
        assert!(matches!(
            v1.negotiate(),
            Err(MsrError::ProtocolUnsupported { .. })
        ));
        // Hypervisor needs at least 3: refused.
        let v3 = decode_sev_info(0x0004_0003_3300_0001).unwrap();
        assert!(matches!(
            v3.negotiate(),
            Err(MsrError::ProtocolUnsupported { .. })
        ));
    }

    #[test]
    fn cpuid_known_values() {
        // CPUID 0x8000_001F, EBX: 0x8000_001F_4000_0004
        assert_eq!(
            cpuid_request(0x8000_001F, CpuidReg::Ebx),
            0x8000_001F_4000_0004
        );
        assert_eq!(cpuid_request(0, CpuidReg::Edx), 0x0000_0000_C000_0004);
        let resp = 0x0000_0133_4000_0005u64; // EBX = 0x133, register 1 echoed
        assert_eq!(encode_cpuid_response(0x133, CpuidReg::Ebx), resp);
        assert_eq!(decode_cpuid_response(resp, CpuidReg::Ebx), Ok(0x133));
        assert_eq!(
            decode_cpuid_response(resp, CpuidReg::Ecx),
            Err(MsrError::EchoMismatch)
        );
        assert!(matches!(
            decode_cpuid_response(resp | 0x1000, CpuidReg::Ebx),
            Err(MsrError::ReservedBitsSet { .. })
        ));
        assert!(matches!(
            decode_cpuid_response(resp & !0xFFF | 0x4, CpuidReg::Ebx),
            Err(MsrError::WrongResponseCode { .. })
        ));
    }

    #[test]
    fn register_known_values() {
        assert_eq!(register_ghcb_request(0x7_F000), Ok(0x7_F012));
        assert_eq!(
            register_ghcb_request(0x7_F800),
            Err(MsrError::InvalidArgument)
        );
        assert_eq!(decode_register_ghcb_response(0x7_F013, 0x7_F000), Ok(()));
        assert!(matches!(
            decode_register_ghcb_response(0xFFFF_FFFF_FFFF_F013, 0x7_F000),
            Err(MsrError::RegistrationRefused {
                requested: 0x7F,
                ..
            })
        ));
        assert!(matches!(
            decode_register_ghcb_response(0x7_F012, 0x7_F000),
            Err(MsrError::WrongResponseCode { .. })
        ));
    }

    #[test]
    fn psc_known_values() {
        // GFN 0x800 to shared: op 2 at [55:52] = 0x0020_0000_0000_0000, GFN << 12 = 0x80_0000.
        assert_eq!(
            psc_request(0x800, PageState::Shared),
            Ok(0x0020_0000_0080_0014)
        );
        assert_eq!(
            psc_request(0x800, PageState::Private),
            Ok(0x0010_0000_0080_0014)
        );
        assert_eq!(
            psc_request(PSC_MSR_MAX_GFN + 1, PageState::Private),
            Err(MsrError::InvalidArgument)
        );
        assert_eq!(decode_psc_response(0x015), Ok(()));
        assert_eq!(
            decode_psc_response(encode_psc_response(0x10)),
            Err(MsrError::PscFailed(0x10))
        );
        assert!(matches!(
            decode_psc_response(0x8015),
            Err(MsrError::ReservedBitsSet { .. })
        ));
        assert!(matches!(
            decode_psc_response(0x014),
            Err(MsrError::WrongResponseCode { .. })
        ));
    }

    #[test]
    fn termination_known_values() {
        assert_eq!(
            termination_request(TerminationReason { set: 0, code: 0 }),
            0x100
        );
        // set 0, code 2 (the spec's "SEV-SNP features not supported"): 0x0002_0100
        assert_eq!(
            termination_request(TerminationReason { set: 0, code: 2 }),
            0x0002_0100
        );
        // set 1, code 1 (the loader's "SEV refused"): 0x0001_1100
        assert_eq!(
            termination_request(TerminationReason { set: 1, code: 1 }),
            0x0001_1100
        );
        assert_eq!(
            termination_request(TerminationReason {
                set: 0xF,
                code: 0xFF
            }),
            0x00FF_F100
        );
        // set is 4 bits wide: masked, never spills into the code
        assert_eq!(
            termination_request(TerminationReason { set: 0x1F, code: 0 }),
            0x0000_F100
        );
    }

    #[test]
    fn hv_features() {
        assert_eq!(decode_hv_features(0x3081), Ok(3));
        assert!(decode_hv_features(0x3080).is_err());
    }

    struct Script<'a>(&'a [(u64, u64)], usize);
    impl GhcbMsr for Script<'_> {
        fn exchange(&mut self, request: u64) -> u64 {
            let (want, resp) = self.0[self.1];
            assert_eq!(request, want);
            self.1 += 1;
            resp
        }
    }

    #[test]
    fn flows_over_a_scripted_host() {
        let mut s = Script(&[(0x002, 0x0002_0001_3300_0001)], 0);
        assert_eq!(negotiate_protocol(&mut s, 51), Ok(2));
        let mut s = Script(&[(0x002, 0x0002_0001_2F00_0001)], 0);
        assert!(negotiate_protocol(&mut s, 51).is_err());
        let mut s = Script(
            &[
                (
                    cpuid_request(1, CpuidReg::Eax),
                    encode_cpuid_response(10, CpuidReg::Eax),
                ),
                (
                    cpuid_request(1, CpuidReg::Ebx),
                    encode_cpuid_response(11, CpuidReg::Ebx),
                ),
                (
                    cpuid_request(1, CpuidReg::Ecx),
                    encode_cpuid_response(12, CpuidReg::Ecx),
                ),
                (
                    cpuid_request(1, CpuidReg::Edx),
                    encode_cpuid_response(13, CpuidReg::Edx),
                ),
            ],
            0,
        );
        assert_eq!(cpuid(&mut s, 1), Ok([10, 11, 12, 13]));
        // A host that answers EDX for EBX is caught.
        let mut s = Script(
            &[
                (
                    cpuid_request(1, CpuidReg::Eax),
                    encode_cpuid_response(10, CpuidReg::Eax),
                ),
                (
                    cpuid_request(1, CpuidReg::Ebx),
                    encode_cpuid_response(11, CpuidReg::Edx),
                ),
            ],
            0,
        );
        assert_eq!(cpuid(&mut s, 1), Err(MsrError::EchoMismatch));
        let mut s = Script(&[(0x080, 0x2081)], 0);
        assert!(matches!(
            require_snp_features(&mut s),
            Err(MsrError::SnpNotSupported(2))
        ));
        let mut s = Script(&[(0x080, 0x3081)], 0);
        assert_eq!(require_snp_features(&mut s), Ok(3));
    }

    #[test]
    fn random_responses_never_panic() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let _ = decode_sev_info(x).map(|i| i.negotiate());
            let _ = decode_cpuid_response(x, CpuidReg::Ecx);
            let _ = decode_register_ghcb_response(x, 0x1000);
            let _ = decode_psc_response(x);
            let _ = decode_hv_features(x);
        }
    }
}
