//! The fixed layout of the SEV-SNP attestation report (SNP ABI spec #56860, table
//! "ATTESTATION_REPORT Structure"), versions 2, 3 and 5: its size and where each field is.
//!
//! The one home of these numbers: the guest requests reports of [`REPORT_LEN`] bytes
//! ([`crate::guest_msg`], the kernel's platform), the evidence format binds to
//! [`REPORT_DATA`] and [`MEASUREMENT`], and the verifier (`measurements`) parses every field
//! from these offsets. Multi-byte integers are little-endian.

use core::ops::Range;

/// Size of a report (0x4A0).
pub const REPORT_LEN: usize = 0x4A0;
/// The signature covers bytes `0..SIGNED_LEN`.
pub const SIGNED_LEN: usize = 0x2A0;
/// Report versions whose layout this module describes.
pub const SUPPORTED_VERSIONS: [u32; 3] = [2, 3, 5];
/// The first version with [`CPUID_FAMILY`], [`CPUID_MODEL`] and [`CPUID_STEPPING`].
pub const FIRST_VERSION_WITH_CPUID: u32 = 3;
/// The first version with [`LAUNCH_MIT_VECTOR`] and [`CURRENT_MIT_VECTOR`].
pub const FIRST_VERSION_WITH_MIT_VECTORS: u32 = 5;

/// `VERSION` (u32).
pub const VERSION: usize = 0x00;
/// `GUEST_SVN` (u32).
pub const GUEST_SVN: usize = 0x04;
/// `POLICY` (u64).
pub const POLICY: usize = 0x08;
/// `FAMILY_ID` (16 bytes).
pub const FAMILY_ID: Range<usize> = 0x10..0x20;
/// `IMAGE_ID` (16 bytes).
pub const IMAGE_ID: Range<usize> = 0x20..0x30;
/// `VMPL` (u32).
pub const VMPL: usize = 0x30;
/// `SIGNATURE_ALGO` (u32; 1 = ECDSA P-384 with SHA-384).
pub const SIGNATURE_ALGO: usize = 0x34;
/// `CURRENT_TCB` (u64 TCB_VERSION).
pub const CURRENT_TCB: usize = 0x38;
/// `PLATFORM_INFO` (u64).
pub const PLATFORM_INFO: usize = 0x40;
/// Flags (u32): bit 0 `AUTHOR_KEY_EN`, bit 1 `MASK_CHIP_KEY`, bits 2..5 `SIGNING_KEY`.
pub const FLAGS: usize = 0x48;
/// `REPORT_DATA` (64 bytes chosen by the guest).
pub const REPORT_DATA: Range<usize> = 0x50..0x90;
/// `MEASUREMENT` (48 bytes: the launch digest).
pub const MEASUREMENT: Range<usize> = 0x90..0xC0;
/// `HOST_DATA` (32 bytes).
pub const HOST_DATA: Range<usize> = 0xC0..0xE0;
/// `ID_KEY_DIGEST` (48 bytes).
pub const ID_KEY_DIGEST: Range<usize> = 0xE0..0x110;
/// `AUTHOR_KEY_DIGEST` (48 bytes).
pub const AUTHOR_KEY_DIGEST: Range<usize> = 0x110..0x140;
/// `REPORT_ID` (32 bytes).
pub const REPORT_ID: Range<usize> = 0x140..0x160;
/// `REPORT_ID_MA` (32 bytes).
pub const REPORT_ID_MA: Range<usize> = 0x160..0x180;
/// `REPORTED_TCB` (u64).
pub const REPORTED_TCB: usize = 0x180;
/// `CPUID_FAM_ID` (u8, version 3+).
pub const CPUID_FAMILY: usize = 0x188;
/// `CPUID_MOD_ID` (u8, version 3+).
pub const CPUID_MODEL: usize = 0x189;
/// `CPUID_STEP` (u8, version 3+).
pub const CPUID_STEPPING: usize = 0x18A;
/// `CHIP_ID` (64 bytes).
pub const CHIP_ID: Range<usize> = 0x1A0..0x1E0;
/// `COMMITTED_TCB` (u64).
pub const COMMITTED_TCB: usize = 0x1E0;
/// `CURRENT_BUILD`, `CURRENT_MINOR`, `CURRENT_MAJOR` (one byte each, in this order).
pub const CURRENT_VERSION: usize = 0x1E8;
/// `COMMITTED_BUILD`, `COMMITTED_MINOR`, `COMMITTED_MAJOR` (one byte each, in this order).
pub const COMMITTED_VERSION: usize = 0x1EC;
/// `LAUNCH_TCB` (u64).
pub const LAUNCH_TCB: usize = 0x1F0;
/// `LAUNCH_MIT_VECTOR` (u64, version 5+).
pub const LAUNCH_MIT_VECTOR: usize = 0x1F8;
/// `CURRENT_MIT_VECTOR` (u64, version 5+).
pub const CURRENT_MIT_VECTOR: usize = 0x200;
/// Length of each signature component (R, then S), little-endian, zero-padded.
pub const SIGNATURE_COMPONENT_LEN: usize = 72;
/// `SIGNATURE.R`.
pub const SIGNATURE_R: Range<usize> = SIGNED_LEN..SIGNED_LEN + SIGNATURE_COMPONENT_LEN;
/// `SIGNATURE.S`.
pub const SIGNATURE_S: Range<usize> = SIGNATURE_R.end..SIGNATURE_R.end + SIGNATURE_COMPONENT_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_abi_table() {
        assert_eq!(REPORT_LEN, 1184);
        assert_eq!(REPORT_DATA.len(), 64);
        assert_eq!(MEASUREMENT.len(), 48);
        assert_eq!(HOST_DATA.len(), 32);
        assert_eq!(CHIP_ID.len(), 64);
        // Fields follow one another where the table has no reserved gap.
        assert_eq!(FAMILY_ID.end, IMAGE_ID.start);
        assert_eq!(REPORT_DATA.end, MEASUREMENT.start);
        assert_eq!(MEASUREMENT.end, HOST_DATA.start);
        assert_eq!(ID_KEY_DIGEST.end, AUTHOR_KEY_DIGEST.start);
        assert_eq!(REPORT_ID_MA.end, REPORTED_TCB);
        assert_eq!(CHIP_ID.end, COMMITTED_TCB);
        // The signature (R, S, reserved to 0x200 bytes) ends the report.
        assert_eq!(SIGNATURE_S.end, 0x330);
        assert_eq!(SIGNED_LEN + 0x200, REPORT_LEN);
    }
}
