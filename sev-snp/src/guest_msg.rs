//! SNP guest messages (SEV-SNP Firmware ABI spec #56860, chapter 8 "Guest Messages": section
//! "Message Header Format", "MSG_REPORT_REQ/RSP", "MSG_KEY_REQ/RSP"; GHCB spec 4.1.7 for the
//! SNP guest request NAE that carries them).
//!
//! A message is one 4 KiB page: a 0x60-byte header, then the payload encrypted with
//! AES-256-GCM under a VMPCK. The IV is the 64-bit message sequence number (little endian,
//! zero-extended to 96 bits); the additional data is the header from offset 0x30 to 0x60; the
//! 16-byte tag goes in the first 16 bytes of the 32-byte AUTHTAG field.
//!
//! ```text
//! 0x00 [u8;32] AUTHTAG      0x34 u8  MSG_TYPE      0x3C u8      MSG_VMPCK
//! 0x20 u64     MSG_SEQNO    0x35 u8  MSG_VERSION   0x3D [u8;35] reserved
//! 0x28 [u8;8]  reserved     0x36 u16 MSG_SZ        0x60         payload (up to 4000 bytes)
//! 0x30 u8      ALGO (1)     0x38 u32 reserved
//! 0x31 u8      HDR_VERSION (1)
//! 0x32 u16     HDR_SZ (0x60)
//! ```
//!
//! The guest and the PSP share one counter per VMPCK: a request carries counter+1, the PSP's
//! response carries counter+2, and after a good response the counter advances by two.
//! [`GuestMessenger`] owns VMPCK0 and that counter and wipes the key on any error that leaves
//! the counter unknown, or shows tampering.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ghcb::{self, GhcbError, GhcbPlatform};
use crate::report::REPORT_LEN;
use crate::secrets::{VMPCK_LEN, Vmpck};

/// Size of a message page.
pub const MSG_PAGE_SIZE: usize = 4096;
/// Size of the message header.
pub const MSG_HDR_SIZE: usize = 0x60;
/// Maximum payload size.
pub const MSG_PAYLOAD_MAX: usize = MSG_PAGE_SIZE - MSG_HDR_SIZE;
/// Offset of AUTHTAG (32 bytes; AES-GCM uses the first 16).
pub const AUTHTAG_OFFSET: usize = 0x00;
/// Length of the AUTHTAG field.
pub const AUTHTAG_FIELD_LEN: usize = 32;
/// Length of the AES-GCM tag.
pub const GCM_TAG_LEN: usize = 16;
/// Offset of MSG_SEQNO.
pub const SEQNO_OFFSET: usize = 0x20;
/// Offset of ALGO; the additional authenticated data starts here.
pub const ALGO_OFFSET: usize = 0x30;
/// Offset of HDR_VERSION.
pub const HDR_VERSION_OFFSET: usize = 0x31;
/// Offset of HDR_SZ.
pub const HDR_SZ_OFFSET: usize = 0x32;
/// Offset of MSG_TYPE.
pub const MSG_TYPE_OFFSET: usize = 0x34;
/// Offset of MSG_VERSION.
pub const MSG_VERSION_OFFSET: usize = 0x35;
/// Offset of MSG_SZ.
pub const MSG_SZ_OFFSET: usize = 0x36;
/// Offset of MSG_VMPCK.
pub const MSG_VMPCK_OFFSET: usize = 0x3C;
/// The additional authenticated data: header bytes 0x30..0x60.
pub const AAD_RANGE: core::ops::Range<usize> = 0x30..0x60;
/// ALGO value for AES-256-GCM.
pub const AEAD_AES_256_GCM: u8 = 1;
/// HDR_VERSION this crate speaks.
pub const HDR_VERSION: u8 = 1;

/// MSG_TYPE values (ABI spec, table "Message Type Encodings").
pub mod msg_type {
    /// MSG_CPUID_REQ.
    pub const CPUID_REQ: u8 = 1;
    /// MSG_CPUID_RSP.
    pub const CPUID_RSP: u8 = 2;
    /// MSG_KEY_REQ.
    pub const KEY_REQ: u8 = 3;
    /// MSG_KEY_RSP.
    pub const KEY_RSP: u8 = 4;
    /// MSG_REPORT_REQ.
    pub const REPORT_REQ: u8 = 5;
    /// MSG_REPORT_RSP.
    pub const REPORT_RSP: u8 = 6;
}

/// MSG_REPORT_REQ payload: REPORT_DATA[64] at 0x00, VMPL (u32) at 0x40, KEY_SEL (u32,
/// bits 1:0) at 0x44, reserved to 0x60 (see [`ReportRequest`]).
pub const REPORT_REQ_SIZE: usize = 0x60;
/// MSG_REPORT_RSP payload: STATUS (u32) at 0x00, REPORT_SIZE (u32) at 0x04, reserved to 0x20,
/// the report at 0x20.
pub const REPORT_RSP_SIZE: usize = 0x20 + REPORT_LEN;
/// MSG_KEY_REQ payload size: ROOT_KEY_SELECT (u32) 0x00, reserved 0x04, GUEST_FIELD_SELECT
/// (u64) 0x08, VMPL (u32) 0x10, GUEST_SVN (u32) 0x14, TCB_VERSION (u64) 0x18.
pub const KEY_REQ_SIZE: usize = 0x20;
/// MSG_KEY_RSP payload: STATUS (u32) 0x00, reserved to 0x20, DERIVED_KEY[32] at 0x20.
pub const KEY_RSP_SIZE: usize = 0x40;

/// Hypervisor error in SW_EXITINFO2[63:32] (GHCB spec 4.1.7): the certificate buffer of an
/// extended request is too small.
pub const VMM_ERR_INVALID_LEN: u32 = 1;
/// Hypervisor error in SW_EXITINFO2[63:32]: the PSP is busy (or the host throttles the
/// guest), retry the same request.
pub const VMM_ERR_BUSY: u32 = 2;
/// The wait before a request answered "busy" is resent (Linux's sev-guest:
/// `SNP_REQ_RETRY_DELAY`, 2 s).
pub const BUSY_RETRY_DELAY_MS: u64 = 2_000;
/// How long a request may stay "busy", in waits of [`BUSY_RETRY_DELAY_MS`], before the
/// messenger gives up and wipes the key (Linux: `SNP_REQ_MAX_RETRY_DURATION`, 60 s).
/// The time is the sum of the waits asked for, not a clock reading, so the number of
/// resends (31 at most) does not depend on a clock the host can skew.
pub const BUSY_TIMEOUT_MS: u64 = 60_000;

/// Errors of guest messages. Those marked "wipes" leave the messenger without its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestMsgError {
    /// The key was wiped earlier; no further requests.
    #[error("VMPCK wiped after an earlier error; guest messages disabled")]
    Disabled,
    /// The next sequence number would wrap (wipes).
    #[error("message sequence numbers exhausted")]
    SequenceExhausted,
    /// The transport (GHCB NAE) failed (wipes).
    #[error("guest request NAE failed: {0}")]
    Transport(GhcbError),
    /// Non-zero SW_EXITINFO2 from the host: [63:32] hypervisor, [31:0] firmware error (wipes).
    #[error("guest request failed, SW_EXITINFO2 {0:#x}")]
    HostError(u64),
    /// The host stayed busy for [`BUSY_TIMEOUT_MS`] (wipes).
    #[error("PSP busy for 60 s")]
    Busy,
    /// The response header does not answer our request: algo, versions, size, type, VMPCK,
    /// reserved bytes (wipes).
    #[error("malformed response header")]
    BadHeader,
    /// The response carries the wrong sequence number (wipes).
    #[error("response sequence number {got}, expected {expected}")]
    WrongSeqno {
        /// counter + 2.
        expected: u64,
        /// From the response.
        got: u64,
    },
    /// The response failed AES-GCM authentication (wipes).
    #[error("response authentication failed")]
    AuthFailed,
    /// The authenticated response reports a firmware error in its STATUS field (the counter
    /// advanced normally; the key is kept).
    #[error("firmware status {0:#x}")]
    FirmwareStatus(u32),
    /// The authenticated response payload is too short or has an unexpected REPORT_SIZE (the
    /// key is kept).
    #[error("malformed response payload")]
    BadPayload,
    /// The payload does not fit a message.
    #[error("payload too large")]
    PayloadTooLarge,
    /// AES-GCM refused the operation (cannot happen for in-range sizes).
    #[error("AES-GCM error")]
    Crypto,
}

/// Performs the SNP guest request NAE; supplied by the kernel (or use [`GhcbTransport`]).
pub trait GuestRequestTransport {
    /// Copy `request` into the shared request page, run the SNP guest request NAE
    /// (SW_EXITCODE 0x8000_0011, SW_EXITINFO1 = request GPA, SW_EXITINFO2 = response GPA),
    /// copy the shared response page into `response`, and return the host's SW_EXITINFO2.
    fn guest_request(
        &mut self,
        request: &[u8; MSG_PAGE_SIZE],
        response: &mut [u8; MSG_PAGE_SIZE],
    ) -> Result<u64, GhcbError>;

    /// Waits `ms` milliseconds: the back-off before a request the host answered "busy" is
    /// resent.
    fn wait_ms(&mut self, ms: u64);
}

/// [`GuestRequestTransport`] over a GHCB and two shared pages.
pub struct GhcbTransport<'a, P: GhcbPlatform> {
    /// The GHCB platform.
    pub platform: &'a mut P,
    /// Negotiated GHCB protocol version.
    pub version: u16,
    /// Shared request page (mapped without the C-bit).
    pub request_page: &'a mut [u8; MSG_PAGE_SIZE],
    /// Its GPA.
    pub request_gpa: u64,
    /// Shared response page (mapped without the C-bit).
    pub response_page: &'a mut [u8; MSG_PAGE_SIZE],
    /// Its GPA.
    pub response_gpa: u64,
    /// Waits this many milliseconds (the busy back-off).
    pub wait_ms: fn(u64),
}

impl<P: GhcbPlatform> GuestRequestTransport for GhcbTransport<'_, P> {
    fn guest_request(
        &mut self,
        request: &[u8; MSG_PAGE_SIZE],
        response: &mut [u8; MSG_PAGE_SIZE],
    ) -> Result<u64, GhcbError> {
        self.request_page.copy_from_slice(request);
        self.response_page.fill(0);
        let info2 = ghcb::guest_request(
            self.platform,
            self.version,
            self.request_gpa,
            self.response_gpa,
        )?;
        // SECURITY: one copy out of shared memory; everything after works on the private copy.
        response.copy_from_slice(self.response_page);
        Ok(info2)
    }

    fn wait_ms(&mut self, ms: u64) {
        (self.wait_ms)(ms)
    }
}

/// KEY_SEL of MSG_REPORT_REQ (ABI spec 1.55+, table "MSG_REPORT_REQ Message Structure"):
/// which key signs the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySel {
    /// 0: the VLEK if the host installed one, else the VCEK (the firmware chooses).
    Either = 0,
    /// 1: the VCEK, the chip-unique key whose certificate chain AMD's KDS serves.
    Vcek = 1,
    /// 2: the VLEK (fails when none is installed).
    Vlek = 2,
}

/// A MSG_REPORT_REQ payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportRequest {
    /// REPORT_DATA: the guest's 64 bytes, bound into the signed report.
    pub report_data: [u8; 64],
    /// VMPL of the report (the caller's or higher; Omega runs at VMPL 0).
    pub vmpl: u32,
    /// KEY_SEL.
    pub key_sel: KeySel,
}

impl ReportRequest {
    /// What the monitor asks for: VMPL 0, signed with the VCEK.
    ///
    // SECURITY: with KEY_SEL 0 the firmware signs with the VLEK whenever the host
    // installed one, and a verifier that expects a VCEK chain must then cope with either;
    // naming the key makes the report's signer a choice of the measured guest, not of the
    // host. (Firmware older than ABI 1.54 treats 0x44 as reserved; see docs/sev-snp.md.)
    pub fn vcek(report_data: [u8; 64]) -> Self {
        Self {
            report_data,
            vmpl: 0,
            key_sel: KeySel::Vcek,
        }
    }

    /// The 0x60-byte payload.
    pub fn encode(&self) -> [u8; REPORT_REQ_SIZE] {
        let mut p = [0u8; REPORT_REQ_SIZE];
        p[..64].copy_from_slice(&self.report_data);
        p[0x40..0x44].copy_from_slice(&self.vmpl.to_le_bytes());
        p[0x44..0x48].copy_from_slice(&(self.key_sel as u32).to_le_bytes());
        p
    }
}

/// Header fields of a message (what is written, or what a response must carry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgHeader {
    /// MSG_SEQNO (also the IV).
    pub seqno: u64,
    /// MSG_TYPE.
    pub msg_type: u8,
    /// MSG_VERSION.
    pub msg_version: u8,
    /// MSG_SZ (payload length).
    pub msg_sz: u16,
    /// MSG_VMPCK.
    pub vmpck: u8,
}

/// The 96-bit IV for sequence number `seqno`.
pub fn iv_from_seqno(seqno: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&seqno.to_le_bytes());
    iv
}

/// AES-256-GCM, in place, detached tag.
pub fn gcm_seal(
    key: &[u8; 32],
    iv: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; GCM_TAG_LEN], GuestMsgError> {
    let cipher = Aes256Gcm::new(key.into());
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(iv), aad, buf)
        .map_err(|_| GuestMsgError::Crypto)?;
    Ok(tag.into())
}

/// AES-256-GCM open, in place. On failure the buffer is left as it was.
pub fn gcm_open(
    key: &[u8; 32],
    iv: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; GCM_TAG_LEN],
) -> Result<(), GuestMsgError> {
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt_in_place_detached(Nonce::from_slice(iv), aad, buf, Tag::from_slice(tag))
        .map_err(|_| GuestMsgError::AuthFailed)
}

/// Build a message page: header `hdr` (MSG_SZ taken from `payload`), `payload` encrypted
/// under `key` with IV = `hdr.seqno`. Used by the messenger for requests, and by tests to
/// play the PSP.
pub fn seal_message(
    key: &[u8; 32],
    hdr: &MsgHeader,
    payload: &[u8],
    page: &mut [u8; MSG_PAGE_SIZE],
) -> Result<(), GuestMsgError> {
    if payload.len() > MSG_PAYLOAD_MAX {
        return Err(GuestMsgError::PayloadTooLarge);
    }
    page.fill(0);
    page[SEQNO_OFFSET..SEQNO_OFFSET + 8].copy_from_slice(&hdr.seqno.to_le_bytes());
    page[ALGO_OFFSET] = AEAD_AES_256_GCM;
    page[HDR_VERSION_OFFSET] = HDR_VERSION;
    page[HDR_SZ_OFFSET..HDR_SZ_OFFSET + 2].copy_from_slice(&(MSG_HDR_SIZE as u16).to_le_bytes());
    page[MSG_TYPE_OFFSET] = hdr.msg_type;
    page[MSG_VERSION_OFFSET] = hdr.msg_version;
    page[MSG_SZ_OFFSET..MSG_SZ_OFFSET + 2].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    page[MSG_VMPCK_OFFSET] = hdr.vmpck;
    let (head, body) = page.split_at_mut(MSG_HDR_SIZE);
    let body = &mut body[..payload.len()];
    body.copy_from_slice(payload);
    let tag = gcm_seal(key, &iv_from_seqno(hdr.seqno), &head[AAD_RANGE], body)?;
    head[AUTHTAG_OFFSET..AUTHTAG_OFFSET + GCM_TAG_LEN].copy_from_slice(&tag);
    Ok(())
}

fn u16_at(p: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([p[o], p[o + 1]])
}

fn u32_at(p: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([p[o], p[o + 1], p[o + 2], p[o + 3]])
}

fn u64_at(p: &[u8], o: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[o..o + 8]);
    u64::from_le_bytes(b)
}

/// Check a response page against `expected` (MSG_SZ at least `expected.msg_sz`) and decrypt
/// it in place. Returns the payload length. Every header byte is checked: the fixed fields,
/// the echoed ones, and the reserved ones (including the unused second half of AUTHTAG and
/// the reserved bytes 0x28..0x30, which the AAD does not cover).
pub fn open_message(
    key: &[u8; 32],
    expected: &MsgHeader,
    page: &mut [u8; MSG_PAGE_SIZE],
) -> Result<usize, GuestMsgError> {
    let seqno = u64_at(page, SEQNO_OFFSET);
    if seqno != expected.seqno {
        return Err(GuestMsgError::WrongSeqno {
            expected: expected.seqno,
            got: seqno,
        });
    }
    let msg_sz = u16_at(page, MSG_SZ_OFFSET) as usize;
    let header_ok = page[AUTHTAG_OFFSET + GCM_TAG_LEN..AUTHTAG_OFFSET + AUTHTAG_FIELD_LEN]
        .iter()
        .all(|&b| b == 0)
        && page[0x28..0x30].iter().all(|&b| b == 0)
        && page[ALGO_OFFSET] == AEAD_AES_256_GCM
        && page[HDR_VERSION_OFFSET] == HDR_VERSION
        && u16_at(page, HDR_SZ_OFFSET) as usize == MSG_HDR_SIZE
        && page[MSG_TYPE_OFFSET] == expected.msg_type
        && page[MSG_VERSION_OFFSET] == expected.msg_version
        && msg_sz >= expected.msg_sz as usize
        && msg_sz <= MSG_PAYLOAD_MAX
        && u32_at(page, 0x38) == 0
        && page[MSG_VMPCK_OFFSET] == expected.vmpck
        && page[0x3D..MSG_HDR_SIZE].iter().all(|&b| b == 0);
    if !header_ok {
        return Err(GuestMsgError::BadHeader);
    }
    let mut tag = [0u8; GCM_TAG_LEN];
    tag.copy_from_slice(&page[AUTHTAG_OFFSET..AUTHTAG_OFFSET + GCM_TAG_LEN]);
    let (head, body) = page.split_at_mut(MSG_HDR_SIZE);
    gcm_open(
        key,
        &iv_from_seqno(seqno),
        &head[AAD_RANGE],
        &mut body[..msg_sz],
        &tag,
    )?;
    Ok(msg_sz)
}

/// Parse a decrypted MSG_REPORT_RSP payload into the report.
pub fn parse_report_response(payload: &[u8]) -> Result<[u8; REPORT_LEN], GuestMsgError> {
    if payload.len() < 8 {
        return Err(GuestMsgError::BadPayload);
    }
    let status = u32_at(payload, 0);
    if status != 0 {
        return Err(GuestMsgError::FirmwareStatus(status));
    }
    let size = u32_at(payload, 4) as usize;
    if size != REPORT_LEN || payload.len() < REPORT_RSP_SIZE {
        return Err(GuestMsgError::BadPayload);
    }
    let mut report = [0u8; REPORT_LEN];
    report.copy_from_slice(&payload[0x20..REPORT_RSP_SIZE]);
    Ok(report)
}

/// Parse a decrypted MSG_KEY_RSP payload into the key.
pub fn parse_key_response(payload: &[u8]) -> Result<DerivedKey, GuestMsgError> {
    if payload.len() < KEY_RSP_SIZE {
        return Err(GuestMsgError::BadPayload);
    }
    let status = u32_at(payload, 0);
    if status != 0 {
        return Err(GuestMsgError::FirmwareStatus(status));
    }
    let mut key = DerivedKey([0u8; 32]);
    key.0.copy_from_slice(&payload[0x20..0x40]);
    Ok(key)
}

/// GUEST_FIELD_SELECT bits of MSG_KEY_REQ (ABI spec, table "GUEST_FIELD_SELECT").
pub mod guest_field {
    /// Mix in the guest policy.
    pub const GUEST_POLICY: u64 = 1 << 0;
    /// Mix in IMAGE_ID.
    pub const IMAGE_ID: u64 = 1 << 1;
    /// Mix in FAMILY_ID.
    pub const FAMILY_ID: u64 = 1 << 2;
    /// Mix in the launch measurement.
    pub const MEASUREMENT: u64 = 1 << 3;
    /// Mix in GUEST_SVN.
    pub const GUEST_SVN: u64 = 1 << 4;
    /// Mix in TCB_VERSION.
    pub const TCB_VERSION: u64 = 1 << 5;
}

/// MSG_KEY_REQ fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DerivedKeyRequest {
    /// ROOT_KEY_SELECT: bit 0 = 0 derive from the VCEK, 1 from the VMRK; bits 2:1 KEY_SEL.
    pub root_key_select: u32,
    /// GUEST_FIELD_SELECT (see [`guest_field`]).
    pub guest_field_select: u64,
    /// VMPL to mix in (must be >= the caller's VMPL).
    pub vmpl: u32,
    /// GUEST_SVN to mix in (must be <= the guest's).
    pub guest_svn: u32,
    /// TCB_VERSION to mix in (must be <= the committed TCB).
    pub tcb_version: u64,
}

impl DerivedKeyRequest {
    /// The 32-byte payload.
    pub fn encode(&self) -> [u8; KEY_REQ_SIZE] {
        let mut p = [0u8; KEY_REQ_SIZE];
        p[0x00..0x04].copy_from_slice(&self.root_key_select.to_le_bytes());
        p[0x08..0x10].copy_from_slice(&self.guest_field_select.to_le_bytes());
        p[0x10..0x14].copy_from_slice(&self.vmpl.to_le_bytes());
        p[0x14..0x18].copy_from_slice(&self.guest_svn.to_le_bytes());
        p[0x18..0x20].copy_from_slice(&self.tcb_version.to_le_bytes());
        p
    }
}

/// A key derived by the PSP. Wiped on drop; never printed.
pub struct DerivedKey([u8; 32]);

impl DerivedKey {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for DerivedKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for DerivedKey {}

impl core::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DerivedKey(<redacted>)")
    }
}

/// Owner of one VMPCK and its message counter.
pub struct GuestMessenger {
    key: Option<Vmpck>,
    vmpck_id: u8,
    seqno: u64,
}

impl core::fmt::Debug for GuestMessenger {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GuestMessenger")
            .field("vmpck_id", &self.vmpck_id)
            .field("seqno", &self.seqno)
            .field("usable", &self.key.is_some())
            .finish()
    }
}

/// Buffers that may hold plaintext; wiped when the request ends, however it ends.
struct Scratch {
    request: [u8; MSG_PAGE_SIZE],
    response: [u8; MSG_PAGE_SIZE],
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.request.zeroize();
        self.response.zeroize();
    }
}

impl GuestMessenger {
    /// A messenger for a fresh launch: the PSP's counter for this VMPCK starts at 0.
    pub fn new(key: Vmpck) -> Self {
        Self::with_seqno(key, 0)
    }

    /// A messenger continuing after `last_seqno` (the last sequence number used, i.e. the
    /// last response's).
    pub fn with_seqno(key: Vmpck, last_seqno: u64) -> Self {
        Self {
            vmpck_id: key.id(),
            key: Some(key),
            seqno: last_seqno,
        }
    }

    /// Whether the key is still there.
    pub fn is_usable(&self) -> bool {
        self.key.is_some()
    }

    /// The last sequence number used (0 before the first request).
    pub fn last_seqno(&self) -> u64 {
        self.seqno
    }

    /// Wipe the key: no further requests.
    ///
    // SECURITY: AES-GCM must never see two different plaintexts under one (key, IV). After a
    // request whose ciphertext the host has seen but whose response we could not accept, the
    // PSP's counter is unknown: the next request would either reuse an IV (catastrophic for
    // GCM: it leaks the XOR of plaintexts and the GHASH key, enabling forgeries) or be
    // refused forever. A tampered response also means an active attacker. Dropping the key
    // (zeroized by `Vmpck`'s Drop) is the only safe state; Linux's sev-guest does the same.
    pub fn wipe(&mut self) {
        self.key = None;
    }

    fn fail(&mut self, e: GuestMsgError) -> GuestMsgError {
        self.wipe();
        e
    }

    /// Request an attestation report for VMPL 0, signed with the VCEK, with
    /// `report_data` as REPORT_DATA ([`ReportRequest::vcek`]).
    ///
    /// Uses about 10 KiB of stack (two message pages and the report).
    pub fn attestation_report<T: GuestRequestTransport + ?Sized>(
        &mut self,
        transport: &mut T,
        report_data: [u8; 64],
    ) -> Result<[u8; REPORT_LEN], GuestMsgError> {
        self.report(transport, &ReportRequest::vcek(report_data))
    }

    /// Request an attestation report as `request` says.
    pub fn report<T: GuestRequestTransport + ?Sized>(
        &mut self,
        transport: &mut T,
        request: &ReportRequest,
    ) -> Result<[u8; REPORT_LEN], GuestMsgError> {
        let req = request.encode();
        let mut scratch = Scratch {
            request: [0; MSG_PAGE_SIZE],
            response: [0; MSG_PAGE_SIZE],
        };
        let len = self.exchange(
            transport,
            msg_type::REPORT_REQ,
            1,
            &req,
            REPORT_RSP_SIZE as u16,
            &mut scratch,
        )?;
        parse_report_response(&scratch.response[MSG_HDR_SIZE..MSG_HDR_SIZE + len])
    }

    /// Request a key derived by the PSP.
    pub fn derived_key<T: GuestRequestTransport + ?Sized>(
        &mut self,
        transport: &mut T,
        request: &DerivedKeyRequest,
    ) -> Result<DerivedKey, GuestMsgError> {
        let req = request.encode();
        let mut scratch = Scratch {
            request: [0; MSG_PAGE_SIZE],
            response: [0; MSG_PAGE_SIZE],
        };
        let len = self.exchange(
            transport,
            msg_type::KEY_REQ,
            1,
            &req,
            KEY_RSP_SIZE as u16,
            &mut scratch,
        )?;
        parse_key_response(&scratch.response[MSG_HDR_SIZE..MSG_HDR_SIZE + len])
    }

    /// One request/response round trip. On success the decrypted response payload is at
    /// `scratch.response[0x60..0x60 + len]`.
    fn exchange<T: GuestRequestTransport + ?Sized>(
        &mut self,
        transport: &mut T,
        req_type: u8,
        msg_version: u8,
        payload: &[u8],
        min_resp_len: u16,
        scratch: &mut Scratch,
    ) -> Result<usize, GuestMsgError> {
        let Some(key) = self.key.as_ref() else {
            return Err(GuestMsgError::Disabled);
        };
        let key: [u8; VMPCK_LEN] = *key.bytes();
        let key = KeyCopy(key);
        // SECURITY: request = counter + 1, response = counter + 2; refuse to wrap, which would
        // reuse IVs. The key can never be used again, so wipe it.
        let (Some(req_seqno), Some(resp_seqno)) =
            (self.seqno.checked_add(1), self.seqno.checked_add(2))
        else {
            return Err(self.fail(GuestMsgError::SequenceExhausted));
        };
        let hdr = MsgHeader {
            seqno: req_seqno,
            msg_type: req_type,
            msg_version,
            msg_sz: payload.len() as u16,
            vmpck: self.vmpck_id,
        };
        seal_message(&key.0, &hdr, payload, &mut scratch.request)?;

        let mut waited_ms = 0;
        let info2 = loop {
            // From here on the host has seen ciphertext under req_seqno: every failure wipes.
            let info2 = match transport.guest_request(&scratch.request, &mut scratch.response) {
                Ok(v) => v,
                Err(e) => return Err(self.fail(GuestMsgError::Transport(e))),
            };
            if info2 != u64::from(VMM_ERR_BUSY) << 32 {
                break info2;
            }
            // SECURITY: busy means the PSP has not consumed this sequence number; resending
            // identical bytes reveals nothing new and keeps the counter in step. Giving up
            // early would wipe the key on a merely loaded (or throttling) host, so back off
            // as Linux does, and give up only after the budget.
            if waited_ms >= BUSY_TIMEOUT_MS {
                return Err(self.fail(GuestMsgError::Busy));
            }
            transport.wait_ms(BUSY_RETRY_DELAY_MS);
            waited_ms += BUSY_RETRY_DELAY_MS;
        };
        if info2 != 0 {
            return Err(self.fail(GuestMsgError::HostError(info2)));
        }
        let expected = MsgHeader {
            seqno: resp_seqno,
            msg_type: req_type + 1,
            msg_version,
            msg_sz: min_resp_len,
            vmpck: self.vmpck_id,
        };
        match open_message(&key.0, &expected, &mut scratch.response) {
            Ok(len) => {
                self.seqno = resp_seqno;
                Ok(len)
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// A stack copy of the key for one exchange, wiped on drop.
struct KeyCopy([u8; VMPCK_LEN]);

impl Drop for KeyCopy {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests;
