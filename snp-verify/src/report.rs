//! The SEV-SNP attestation report (SNP ABI spec #56860, table 23 `ATTESTATION_REPORT`),
//! versions 2, 3 and 5, parsed from its 1184 raw bytes.
//!
//! Parsing checks only the length and the version; what the fields *mean* for trust is
//! [`crate::chain`]'s business. The layout (size, offsets, versions) is
//! [`sev_snp::report`]'s, the same the guest requests reports with.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use serde::Serialize;
use sev_snp::report as layout;
pub use sev_snp::report::{REPORT_LEN, SIGNED_LEN, SUPPORTED_VERSIONS};

/// Why bytes are not a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("an attestation report is {REPORT_LEN} bytes, got {0}")]
    Length(usize),
    #[error("report version {0} is not supported (2, 3 and 5 are)")]
    Version(u32),
}

/// Hex-encoded byte arrays in JSON.
fn hex_ser<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::hex(b))
}

/// A TCB version (`TCB_VERSION`): security patch levels of the firmware components.
///
/// Its byte layout depends on the CPU: Milan and Genoa put boot loader, TEE, SNP and
/// microcode in bytes 0, 1, 6, 7; Turin puts FMC, boot loader, TEE, SNP in bytes 0..4 and
/// microcode in byte 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tcb {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    #[serde(serialize_with = "raw_ser")]
    pub raw: u64,
}

fn raw_ser<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:#018x}"))
}

impl Tcb {
    /// Decodes `raw` with the Milan/Genoa layout, or Turin's when `turin`.
    pub fn decode(raw: u64, turin: bool) -> Self {
        let b = raw.to_le_bytes();
        if turin {
            Tcb {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
                raw,
            }
        } else {
            Tcb {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
                raw,
            }
        }
    }
}

impl fmt::Display for Tcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc},")?;
        }
        write!(
            f,
            "bl={},tee={},snp={},ucode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// The guest policy (`POLICY`, SNP ABI spec table 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Policy {
    #[serde(serialize_with = "raw_ser")]
    pub raw: u64,
    pub abi_minor: u8,
    pub abi_major: u8,
    pub smt: bool,
    pub migrate_ma: bool,
    pub debug: bool,
    pub single_socket: bool,
}

impl Policy {
    pub const SMT: u64 = 1 << 16;
    /// Must be one.
    pub const RESERVED_ONE: u64 = 1 << 17;
    pub const MIGRATE_MA: u64 = 1 << 18;
    pub const DEBUG: u64 = 1 << 19;
    pub const SINGLE_SOCKET: u64 = 1 << 20;

    pub fn decode(raw: u64) -> Self {
        Policy {
            raw,
            abi_minor: raw as u8,
            abi_major: (raw >> 8) as u8,
            smt: raw & Self::SMT != 0,
            migrate_ma: raw & Self::MIGRATE_MA != 0,
            debug: raw & Self::DEBUG != 0,
            single_socket: raw & Self::SINGLE_SOCKET != 0,
        }
    }
}

/// Firmware version triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FwVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
}

impl fmt::Display for FwVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// CPUID family/model/stepping of the chip (report version 3 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CpuId {
    pub family: u8,
    pub model: u8,
    pub stepping: u8,
}

/// A parsed attestation report. Byte arrays are copied out; `raw` keeps the original.
#[derive(Debug, Clone, Serialize)]
pub struct AttestationReport {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: Policy,
    #[serde(serialize_with = "hex_ser")]
    pub family_id: [u8; 16],
    #[serde(serialize_with = "hex_ser")]
    pub image_id: [u8; 16],
    pub vmpl: u32,
    /// 1 = ECDSA P-384 with SHA-384.
    pub signature_algo: u32,
    pub current_tcb: Tcb,
    #[serde(serialize_with = "raw_ser")]
    pub platform_info: u64,
    pub author_key_en: bool,
    pub mask_chip_key: bool,
    /// 0 = VCEK, 1 = VLEK, 7 = none.
    pub signing_key: u8,
    #[serde(serialize_with = "hex_ser")]
    pub report_data: [u8; 64],
    #[serde(serialize_with = "hex_ser")]
    pub measurement: [u8; 48],
    #[serde(serialize_with = "hex_ser")]
    pub host_data: [u8; 32],
    #[serde(serialize_with = "hex_ser")]
    pub id_key_digest: [u8; 48],
    #[serde(serialize_with = "hex_ser")]
    pub author_key_digest: [u8; 48],
    #[serde(serialize_with = "hex_ser")]
    pub report_id: [u8; 32],
    #[serde(serialize_with = "hex_ser")]
    pub report_id_ma: [u8; 32],
    pub reported_tcb: Tcb,
    /// Version 3+; `None` for version 2.
    pub cpuid: Option<CpuId>,
    #[serde(serialize_with = "hex_ser")]
    pub chip_id: [u8; 64],
    pub committed_tcb: Tcb,
    pub current_version: FwVersion,
    pub committed_version: FwVersion,
    pub launch_tcb: Tcb,
    /// Version 5+.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_mit_vector: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_mit_vector: Option<u64>,
    /// Signature R, big-endian as the crypto wants it (the report stores it little-endian
    /// in 72 bytes).
    #[serde(serialize_with = "hex_ser")]
    pub signature_r: [u8; 72],
    #[serde(serialize_with = "hex_ser")]
    pub signature_s: [u8; 72],
    #[serde(skip)]
    pub raw: Vec<u8>,
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// The bytes of a fixed-size field.
fn field<const N: usize>(b: &[u8], r: Range<usize>) -> [u8; N] {
    debug_assert_eq!(r.len(), N);
    arr(b, r.start)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(arr(b, at))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(arr(b, at))
}

/// The CPUID family of Turin (Zen 5).
pub const FAMILY_TURIN: u8 = 0x1A;

impl AttestationReport {
    /// Parses a report: exactly [`REPORT_LEN`] bytes, version 2, 3 or 5.
    pub fn parse(b: &[u8]) -> Result<Self, ReportError> {
        if b.len() != REPORT_LEN {
            return Err(ReportError::Length(b.len()));
        }
        let version = u32_at(b, layout::VERSION);
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(ReportError::Version(version));
        }
        let cpuid = (version >= layout::FIRST_VERSION_WITH_CPUID).then(|| CpuId {
            family: b[layout::CPUID_FAMILY],
            model: b[layout::CPUID_MODEL],
            stepping: b[layout::CPUID_STEPPING],
        });
        let turin = cpuid.is_some_and(|c| c.family == FAMILY_TURIN);
        let tcb = |at| Tcb::decode(u64_at(b, at), turin);
        let flags = u32_at(b, layout::FLAGS);
        let fw_version = |at: usize| FwVersion {
            build: b[at],
            minor: b[at + 1],
            major: b[at + 2],
        };
        let mit_vectors = version >= layout::FIRST_VERSION_WITH_MIT_VECTORS;
        Ok(AttestationReport {
            version,
            guest_svn: u32_at(b, layout::GUEST_SVN),
            policy: Policy::decode(u64_at(b, layout::POLICY)),
            family_id: field(b, layout::FAMILY_ID),
            image_id: field(b, layout::IMAGE_ID),
            vmpl: u32_at(b, layout::VMPL),
            signature_algo: u32_at(b, layout::SIGNATURE_ALGO),
            current_tcb: tcb(layout::CURRENT_TCB),
            platform_info: u64_at(b, layout::PLATFORM_INFO),
            author_key_en: flags & 1 != 0,
            mask_chip_key: flags & 2 != 0,
            signing_key: ((flags >> 2) & 7) as u8,
            report_data: field(b, layout::REPORT_DATA),
            measurement: field(b, layout::MEASUREMENT),
            host_data: field(b, layout::HOST_DATA),
            id_key_digest: field(b, layout::ID_KEY_DIGEST),
            author_key_digest: field(b, layout::AUTHOR_KEY_DIGEST),
            report_id: field(b, layout::REPORT_ID),
            report_id_ma: field(b, layout::REPORT_ID_MA),
            reported_tcb: tcb(layout::REPORTED_TCB),
            cpuid,
            chip_id: field(b, layout::CHIP_ID),
            committed_tcb: tcb(layout::COMMITTED_TCB),
            current_version: fw_version(layout::CURRENT_VERSION),
            committed_version: fw_version(layout::COMMITTED_VERSION),
            launch_tcb: tcb(layout::LAUNCH_TCB),
            launch_mit_vector: mit_vectors.then(|| u64_at(b, layout::LAUNCH_MIT_VECTOR)),
            current_mit_vector: mit_vectors.then(|| u64_at(b, layout::CURRENT_MIT_VECTOR)),
            signature_r: rev(field(b, layout::SIGNATURE_R)),
            signature_s: rev(field(b, layout::SIGNATURE_S)),
            raw: b.to_vec(),
        })
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.raw[..SIGNED_LEN]
    }

    /// Whether the chip is a Turin (only knowable from version 3 on).
    pub fn is_turin(&self) -> bool {
        self.cpuid.is_some_and(|c| c.family == FAMILY_TURIN)
    }
}

fn rev<const N: usize>(mut a: [u8; N]) -> [u8; N] {
    a.reverse();
    a
}

impl fmt::Display for AttestationReport {
    /// A human-readable listing, one field a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = crate::hex;
        writeln!(f, "version:            {}", self.version)?;
        writeln!(f, "guest_svn:          {}", self.guest_svn)?;
        let p = &self.policy;
        writeln!(
            f,
            "policy:             {:#x} (abi>={}.{}, smt={}, migrate_ma={}, debug={}, single_socket={})",
            p.raw, p.abi_major, p.abi_minor, p.smt, p.migrate_ma, p.debug, p.single_socket
        )?;
        writeln!(f, "family_id:          {}", h(&self.family_id))?;
        writeln!(f, "image_id:           {}", h(&self.image_id))?;
        writeln!(f, "vmpl:               {}", self.vmpl)?;
        writeln!(f, "signature_algo:     {}", self.signature_algo)?;
        writeln!(f, "current_tcb:        {}", self.current_tcb)?;
        writeln!(f, "platform_info:      {:#x}", self.platform_info)?;
        writeln!(
            f,
            "flags:              author_key_en={} mask_chip_key={} signing_key={}",
            self.author_key_en,
            self.mask_chip_key,
            match self.signing_key {
                0 => "VCEK".to_owned(),
                1 => "VLEK".to_owned(),
                7 => "none".to_owned(),
                k => format!("{k}"),
            }
        )?;
        writeln!(f, "report_data:        {}", h(&self.report_data))?;
        writeln!(f, "measurement:        {}", h(&self.measurement))?;
        writeln!(f, "host_data:          {}", h(&self.host_data))?;
        writeln!(f, "id_key_digest:      {}", h(&self.id_key_digest))?;
        writeln!(f, "author_key_digest:  {}", h(&self.author_key_digest))?;
        writeln!(f, "report_id:          {}", h(&self.report_id))?;
        writeln!(f, "report_id_ma:       {}", h(&self.report_id_ma))?;
        writeln!(f, "reported_tcb:       {}", self.reported_tcb)?;
        if let Some(c) = self.cpuid {
            writeln!(
                f,
                "cpuid:              family={:#x} model={:#x} stepping={:#x}",
                c.family, c.model, c.stepping
            )?;
        }
        writeln!(f, "chip_id:            {}", h(&self.chip_id))?;
        writeln!(f, "committed_tcb:      {}", self.committed_tcb)?;
        writeln!(f, "current_version:    {}", self.current_version)?;
        writeln!(f, "committed_version:  {}", self.committed_version)?;
        writeln!(f, "launch_tcb:         {}", self.launch_tcb)?;
        if let (Some(l), Some(c)) = (self.launch_mit_vector, self.current_mit_vector) {
            writeln!(f, "launch_mit_vector:  {l:#x}")?;
            writeln!(f, "current_mit_vector: {c:#x}")?;
        }
        writeln!(f, "signature_r:        {}", h(&self.signature_r))?;
        write!(f, "signature_s:        {}", h(&self.signature_s))
    }
}
