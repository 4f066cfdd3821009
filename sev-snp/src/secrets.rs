//! The SNP secrets page (SEV-SNP Firmware ABI spec #56860, section 8.17.2.5 in rev 1.55,
//! "PAGE_TYPE_SECRETS", table "Secrets Page Format"; GHCB spec section 2.7 for the guest OS
//! area).
//!
//! ```text
//! 0x000  u32      VERSION          2 (ABI 1.51), 3 (ABI 1.55+, adds TSC_FACTOR), or later
//! 0x004  u32      bit 0 IMIEN      launched with the IMI (migration) flag
//! 0x008  u32      FMS              family/model/stepping
//! 0x00C  u32      reserved
//! 0x010  [u8;16]  GOSVW            guest OS visible workarounds
//! 0x020  [u8;32]  VMPCK0           VM platform communication keys, one per VMPL
//! 0x040  [u8;32]  VMPCK1
//! 0x060  [u8;32]  VMPCK2
//! 0x080  [u8;32]  VMPCK3
//! 0x0A0  [u8;96]  GUEST_OS_AREA    guest-defined (GHCB spec 2.7: message sequence numbers...)
//! 0x100  [u8;64]  VMSA_TWEAK_BITMAP
//! 0x140  [u8;32]  reserved
//! 0x160  u32      TSC_FACTOR       (version 3)
//! ```
//!
//! Omega's memory plan puts the page at GPA 0x800000 (docs/boot.md). The PSP fills it at
//! launch; it is private, validated memory.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Omega's secrets page GPA (docs/boot.md, SEV metadata section SNP_SECRETS).
pub const OMEGA_SECRETS_PAGE_GPA: u64 = 0x80_0000;
/// The oldest secrets page layout with the VMPCKs where this crate reads them.
pub const MIN_VERSION: u32 = 2;
/// Offset of VERSION.
pub const VERSION_OFFSET: usize = 0x000;
/// Offset of the IMIEN word.
pub const IMIEN_OFFSET: usize = 0x004;
/// Offset of FMS.
pub const FMS_OFFSET: usize = 0x008;
/// Offset of GOSVW.
pub const GOSVW_OFFSET: usize = 0x010;
/// Offset of VMPCK0; VMPCKn is at `VMPCK0_OFFSET + 32 * n`.
pub const VMPCK0_OFFSET: usize = 0x020;
/// Length of a VMPCK (AES-256 key).
pub const VMPCK_LEN: usize = 32;
/// Offset of the guest OS area.
pub const OS_AREA_OFFSET: usize = 0x0A0;
/// Length of the guest OS area.
pub const OS_AREA_LEN: usize = 96;
/// Offset of the VMSA tweak bitmap.
pub const VMSA_TWEAK_BITMAP_OFFSET: usize = 0x100;
/// Offset of TSC_FACTOR (version 3).
pub const TSC_FACTOR_OFFSET: usize = 0x160;

/// Errors reading the secrets page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// The VERSION field is not one whose layout we know.
    #[error("unsupported secrets page version {0}")]
    UnsupportedVersion(u32),
    /// VMPCK index beyond 3.
    #[error("no VMPCK{0}")]
    BadIndex(u8),
    /// The key is all zeros: not provisioned, or already taken.
    #[error("VMPCK{0} is absent (all zeros) or already taken")]
    KeyAbsent(u8),
}

/// A VM platform communication key. Wiped on drop; never printed; not `Clone`.
pub struct Vmpck {
    key: [u8; VMPCK_LEN],
    id: u8,
}

impl Vmpck {
    /// A key with its index (0..=3). For tests and for callers that keep the page elsewhere.
    pub fn new(key: [u8; VMPCK_LEN], id: u8) -> Result<Self, SecretsError> {
        if id > 3 {
            return Err(SecretsError::BadIndex(id));
        }
        Ok(Self { key, id })
    }

    /// The VMPCK index (goes into `msg_vmpck` of guest messages).
    pub fn id(&self) -> u8 {
        self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; VMPCK_LEN] {
        &self.key
    }
}

impl Drop for Vmpck {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl ZeroizeOnDrop for Vmpck {}

impl core::fmt::Debug for Vmpck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Vmpck{}(<redacted>)", self.id)
    }
}

/// A view of the secrets page.
pub struct SecretsPage<'a> {
    page: &'a mut [u8; 4096],
}

fn u32_at(page: &[u8; 4096], o: usize) -> u32 {
    u32::from_le_bytes([page[o], page[o + 1], page[o + 2], page[o + 3]])
}

impl<'a> SecretsPage<'a> {
    /// View `page`, checking the version: 2 or later. Later versions only append fields
    /// (3 added TSC_FACTOR after the fields version 2 has), so every offset this crate
    /// reads is the same in all of them; version 0 and 1 predate the SNP layout.
    pub fn new(page: &'a mut [u8; 4096]) -> Result<Self, SecretsError> {
        let version = u32_at(page, VERSION_OFFSET);
        if version < MIN_VERSION {
            return Err(SecretsError::UnsupportedVersion(version));
        }
        Ok(Self { page })
    }

    /// VERSION.
    pub fn version(&self) -> u32 {
        u32_at(self.page, VERSION_OFFSET)
    }

    /// IMIEN (bit 0 of the word at 0x004).
    pub fn imi_enabled(&self) -> bool {
        u32_at(self.page, IMIEN_OFFSET) & 1 == 1
    }

    /// FMS (family/model/stepping).
    pub fn fms(&self) -> u32 {
        u32_at(self.page, FMS_OFFSET)
    }

    /// GOSVW.
    pub fn gosvw(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out.copy_from_slice(&self.page[GOSVW_OFFSET..GOSVW_OFFSET + 16]);
        out
    }

    /// TSC_FACTOR (version 3 only).
    pub fn tsc_factor(&self) -> Option<u32> {
        (self.version() >= 3).then(|| u32_at(self.page, TSC_FACTOR_OFFSET))
    }

    /// Copy VMPCK`id` out and wipe it in the page.
    ///
    // SECURITY: the secrets page stays mapped in the kernel's direct map. Taking the key out
    // and zeroing every copy left in the page means exactly one copy exists, owned by the
    // `GuestMessenger` that wipes it on error, so no second user can reuse a sequence number
    // (GCM nonce) with the same key, and a later memory disclosure cannot find it in the page.
    pub fn take_vmpck(&mut self, id: u8) -> Result<Vmpck, SecretsError> {
        if id > 3 {
            return Err(SecretsError::BadIndex(id));
        }
        let o = VMPCK0_OFFSET + VMPCK_LEN * id as usize;
        let slot = &mut self.page[o..o + VMPCK_LEN];
        if slot.iter().all(|&b| b == 0) {
            return Err(SecretsError::KeyAbsent(id));
        }
        let mut key = [0u8; VMPCK_LEN];
        key.copy_from_slice(slot);
        slot.zeroize();
        Ok(Vmpck { key, id })
    }

    /// Wipe every VMPCK in the page (e.g. VMPCK1..3, which a VMPL0-only monitor never uses).
    pub fn wipe_all_vmpcks(&mut self) {
        self.page[VMPCK0_OFFSET..VMPCK0_OFFSET + 4 * VMPCK_LEN].zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::format;

    fn sample() -> Box<[u8; 4096]> {
        let mut p = Box::new([0u8; 4096]);
        p[0] = 3;
        p[4] = 1;
        p[8..12].copy_from_slice(&0x00A1_0F11u32.to_le_bytes());
        for (i, b) in p[0x20..0xA0].iter_mut().enumerate() {
            *b = (i / 32 + 1) as u8; // VMPCK0 = all 1s, VMPCK1 = all 2s, ...
        }
        p[0x160..0x164].copy_from_slice(&7u32.to_le_bytes());
        p
    }

    /// Offsets from the SNP ABI spec (rev 1.55, "Secrets Page Format"), also equal to the
    /// Linux `struct snp_secrets_page` field order: 4+4+4+4+16+4*32+96+64+32 = 0x160.
    #[test]
    fn layout_matches_spec() {
        assert_eq!(VMPCK0_OFFSET, 0x20);
        assert_eq!(VMPCK0_OFFSET + VMPCK_LEN, 0x40);
        assert_eq!(VMPCK0_OFFSET + 3 * VMPCK_LEN, 0x80);
        assert_eq!(OS_AREA_OFFSET, VMPCK0_OFFSET + 4 * VMPCK_LEN);
        assert_eq!(VMSA_TWEAK_BITMAP_OFFSET, OS_AREA_OFFSET + OS_AREA_LEN);
        assert_eq!(TSC_FACTOR_OFFSET, VMSA_TWEAK_BITMAP_OFFSET + 64 + 32);
    }

    #[test]
    fn reads_fields_and_takes_keys() {
        let mut p = sample();
        let mut s = SecretsPage::new(&mut p).unwrap();
        assert_eq!(s.version(), 3);
        assert!(s.imi_enabled());
        assert_eq!(s.fms(), 0x00A1_0F11);
        assert_eq!(s.tsc_factor(), Some(7));
        let k = s.take_vmpck(0).unwrap();
        assert_eq!(k.bytes(), &[1u8; 32]);
        assert_eq!(k.id(), 0);
        assert_eq!(format!("{k:?}"), "Vmpck0(<redacted>)");
        // Taken: wiped in the page, a second take fails.
        assert_eq!(s.take_vmpck(0).unwrap_err(), SecretsError::KeyAbsent(0));
        assert_eq!(s.take_vmpck(4).unwrap_err(), SecretsError::BadIndex(4));
        s.wipe_all_vmpcks();
        assert!(p[0x20..0xA0].iter().all(|&b| b == 0));
        assert_eq!(p[0xA0], 0);
        assert_eq!(p[0], 3);
    }

    #[test]
    fn accepts_version_2_and_later() {
        for v in [2u32, 3, 4, 5, 0xFFFF_FFFF] {
            let mut p = sample();
            p[0..4].copy_from_slice(&v.to_le_bytes());
            let mut s = SecretsPage::new(&mut p).unwrap();
            assert_eq!(s.version(), v);
            // The key is where version 2 put it, in every later version.
            assert_eq!(s.take_vmpck(0).unwrap().bytes(), &[1u8; 32]);
            assert_eq!(s.tsc_factor(), (v >= 3).then_some(7));
        }
    }

    #[test]
    fn refuses_versions_before_2() {
        for v in [0u32, 1] {
            let mut p = sample();
            p[0..4].copy_from_slice(&v.to_le_bytes());
            assert_eq!(
                SecretsPage::new(&mut p).err(),
                Some(SecretsError::UnsupportedVersion(v))
            );
        }
        let mut p = sample();
        p[0] = 2;
        assert_eq!(SecretsPage::new(&mut p).unwrap().tsc_factor(), None);
    }
}
