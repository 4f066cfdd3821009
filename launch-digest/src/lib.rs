//! The SEV-SNP launch digest of a firmware image, recomputed from the file alone.
//!
//! The PSP extends the launch digest once per page the hypervisor adds with
//! `SNP_LAUNCH_UPDATE`: `ld = SHA-384(ld || PAGE_INFO)` where `PAGE_INFO` is the 0x70-byte
//! record of SNP ABI spec §8.17.2 (Table 67): the previous digest, the page's contents
//! digest (SHA-384 of the page, or zeros for zero/secrets/CPUID pages), length 0x70, page
//! type, permissions (all zero) and the guest-physical address.
//!
//! QEMU (with `-object sev-snp-guest`) adds, in this order:
//!
//! 1. the firmware image, page by page, as normal pages, mapped so that it ends at 4 GiB;
//! 2. the SEV metadata ("ASEV") sections of the image, in their declared order:
//!    `SNP_SEC_MEM` and `SVSM_CAA` as zero pages, `SNP_SECRETS` as one secrets page,
//!    `CPUID` as one CPUID page, `SNP_KERNEL_HASHES` as one normal page holding QEMU's
//!    kernel/initrd/cmdline hash table (or a zero page when no kernel is given);
//! 3. one VMSA page per vCPU at gpa `0xFFFF_FFFF_F000`: the bootstrap processor starts at
//!    `0xFFFF_FFF0`, the others at the image's SEV-ES reset block address.
//!
//! This is exactly what `sev-snp-measure --mode snp` (VMM type QEMU) computes; the oracle
//! tests in `measurements/tests/digest_oracle.rs` check that it agrees with it and with the
//! `sev` crate bit for bit.
//!
//! This crate is what `image-build` needs to print an image's digest, so it depends on the
//! footer parser and SHA-2 only, not on the verifier's crypto (`sev`, RSA, P-384, X.509);
//! `measurements` re-exports it as `measurements::digest`.
//!
//! **Images without SEV metadata** (Debian's `OVMF_CODE_4M.fd`, for instance) are measured
//! the way sev-snp-measure measures them: ROM pages and VMSAs only. Such an image cannot
//! actually launch under SNP (nothing declares the secrets and CPUID pages), so
//! [`inspect`] reports `has_sev_metadata: false` and the `measurements` CLI warns.
//!
//! Every length and offset from the image is checked; malformed images give a
//! [`DigestError`] naming the offset, never a panic.
#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use firmware_layout::{GuidTable, LayoutError, Section, SectionKind};
use serde::Serialize;
use sha2::{Digest as _, Sha256, Sha384};

/// Size of a page, of every unit the PSP measures.
pub const PAGE_SIZE: usize = 4096;
/// Where the VMSA pages are recorded (`(u64)-1`, page aligned, bits above 51 clear).
pub const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;
/// Where the bootstrap processor starts.
pub const BSP_EIP: u32 = 0xFFFF_FFF0;
/// The firmware image is mapped so that it ends here.
pub const FOUR_GIB: u64 = 1 << 32;

/// Page types of `SNP_LAUNCH_UPDATE` (SNP ABI spec, Table 66).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    Normal = 1,
    Vmsa = 2,
    Zero = 3,
    Unmeasured = 4,
    Secrets = 5,
    Cpuid = 6,
}

/// Why a digest could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("malformed image: {0}")]
    Layout(#[from] LayoutError),
    #[error("image of {len} bytes is not a whole number of 4 KiB pages")]
    NotPageMultiple { len: usize },
    #[error("image of {len} bytes is larger than 4 GiB")]
    TooLarge { len: usize },
    #[error("SEV metadata section at offset {offset:#x}: gpa {gpa:#x} is not 4 KiB aligned")]
    UnalignedSection { offset: usize, gpa: u32 },
    #[error(
        "SEV metadata section at offset {offset:#x}: size {size:#x} is not a non-zero multiple of 4 KiB"
    )]
    BadSectionSize { offset: usize, size: u32 },
    #[error("SEV metadata section at offset {offset:#x}: gpa {gpa:#x}..{end:#x} overlaps {other}")]
    SectionOverlap {
        offset: usize,
        gpa: u32,
        end: u64,
        other: String,
    },
    #[error("SEV metadata at offset {offset:#x} declares more than {MAX_SECTIONS} sections")]
    TooManySections { offset: usize },
    #[error("the number of vCPUs must be at least 1 (got {0})")]
    NoVcpus(u32),
    #[error(
        "{vcpus} vCPUs need an SEV-ES reset block with a non-zero AP start address (found {eip:#x})"
    )]
    NoApResetEip { vcpus: u32, eip: u32 },
    #[error("kernel hashes were given but the image declares no SNP_KERNEL_HASHES section")]
    NoKernelHashesSection,
    #[error("kernel hashes: {0}")]
    KernelHashTable(String),
}

/// QEMU's vCPU models (the names `-cpu` and sev-snp-measure use), or a raw CPUID signature.
///
/// The VMSA carries the CPUID(1).EAX signature in RDX, so only the family/model/stepping
/// matter: all `EPYC*` versions share one signature, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VcpuType {
    Epyc,
    EpycV1,
    EpycV2,
    EpycIbpb,
    EpycV3,
    EpycV4,
    EpycRome,
    EpycRomeV1,
    EpycRomeV2,
    EpycRomeV3,
    EpycMilan,
    EpycMilanV1,
    EpycMilanV2,
    EpycGenoa,
    EpycGenoaV1,
    EpycTurin,
    EpycTurinV1,
    EpycTurinV2,
    /// A raw CPUID(1).EAX signature (`--vcpu-sig`).
    Signature(u32),
}

/// CPUID(1).EAX signature from family, model and stepping (AMD pub. 25481).
pub const fn cpu_sig(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_high) = if family > 0xf {
        (0xf, (family - 0xf) & 0xff)
    } else {
        (family, 0)
    };
    (family_high << 20)
        | (((model >> 4) & 0xf) << 16)
        | (family_low << 8)
        | ((model & 0xf) << 4)
        | (stepping & 0xf)
}

impl VcpuType {
    /// Every named type, in QEMU's order.
    pub const NAMED: [VcpuType; 18] = [
        Self::Epyc,
        Self::EpycV1,
        Self::EpycV2,
        Self::EpycIbpb,
        Self::EpycV3,
        Self::EpycV4,
        Self::EpycRome,
        Self::EpycRomeV1,
        Self::EpycRomeV2,
        Self::EpycRomeV3,
        Self::EpycMilan,
        Self::EpycMilanV1,
        Self::EpycMilanV2,
        Self::EpycGenoa,
        Self::EpycGenoaV1,
        Self::EpycTurin,
        Self::EpycTurinV1,
        Self::EpycTurinV2,
    ];

    /// The CPUID(1).EAX signature QEMU gives this model.
    pub const fn signature(self) -> u32 {
        match self {
            Self::Epyc
            | Self::EpycV1
            | Self::EpycV2
            | Self::EpycIbpb
            | Self::EpycV3
            | Self::EpycV4 => cpu_sig(23, 1, 2),
            Self::EpycRome | Self::EpycRomeV1 | Self::EpycRomeV2 | Self::EpycRomeV3 => {
                cpu_sig(23, 49, 0)
            }
            Self::EpycMilan | Self::EpycMilanV1 | Self::EpycMilanV2 => cpu_sig(25, 1, 1),
            Self::EpycGenoa | Self::EpycGenoaV1 => cpu_sig(25, 17, 0),
            Self::EpycTurin | Self::EpycTurinV1 | Self::EpycTurinV2 => cpu_sig(26, 0, 0),
            Self::Signature(s) => s,
        }
    }

    /// QEMU's name (`None` for a raw signature).
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::Epyc => "EPYC",
            Self::EpycV1 => "EPYC-v1",
            Self::EpycV2 => "EPYC-v2",
            Self::EpycIbpb => "EPYC-IBPB",
            Self::EpycV3 => "EPYC-v3",
            Self::EpycV4 => "EPYC-v4",
            Self::EpycRome => "EPYC-Rome",
            Self::EpycRomeV1 => "EPYC-Rome-v1",
            Self::EpycRomeV2 => "EPYC-Rome-v2",
            Self::EpycRomeV3 => "EPYC-Rome-v3",
            Self::EpycMilan => "EPYC-Milan",
            Self::EpycMilanV1 => "EPYC-Milan-v1",
            Self::EpycMilanV2 => "EPYC-Milan-v2",
            Self::EpycGenoa => "EPYC-Genoa",
            Self::EpycGenoaV1 => "EPYC-Genoa-v1",
            Self::EpycTurin => "EPYC-Turin",
            Self::EpycTurinV1 => "EPYC-Turin-v1",
            Self::EpycTurinV2 => "EPYC-Turin-v2",
            Self::Signature(_) => return None,
        })
    }
}

impl fmt::Display for VcpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "sig:{:#x}", self.signature()),
        }
    }
}

/// An unknown vCPU type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown vCPU type {0:?} (known: EPYC, EPYC-v1..v4, EPYC-IBPB, EPYC-Rome[-v1..v3], EPYC-Milan[-v1..v2], EPYC-Genoa[-v1], EPYC-Turin[-v1..v2])"
)]
pub struct UnknownVcpuType(pub String);

impl FromStr for VcpuType {
    type Err = UnknownVcpuType;

    /// Case-insensitive QEMU names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::NAMED
            .into_iter()
            .find(|t| t.name().is_some_and(|n| n.eq_ignore_ascii_case(s)))
            .ok_or_else(|| UnknownVcpuType(s.to_owned()))
    }
}

/// GUIDs and layout of QEMU's SEV hash table (`target/i386/sev.c`).
const SEV_HASH_TABLE_HEADER_GUID: firmware_layout::Guid =
    firmware_layout::Guid::parse("9438d606-4f22-4cc9-b479-a793d411fd21");
const SEV_KERNEL_ENTRY_GUID: firmware_layout::Guid =
    firmware_layout::Guid::parse("4de79437-abd2-427f-b835-d5b172d2045b");
const SEV_INITRD_ENTRY_GUID: firmware_layout::Guid =
    firmware_layout::Guid::parse("44baf731-3a2f-4bd7-9af1-41e29169781d");
const SEV_CMDLINE_ENTRY_GUID: firmware_layout::Guid =
    firmware_layout::Guid::parse("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");
const HASH_ENTRY_LEN: usize = 16 + 2 + 32;
const HASH_TABLE_LEN: usize = 16 + 2 + 3 * HASH_ENTRY_LEN;
/// The table is padded to a multiple of 16 bytes.
pub const PADDED_HASH_TABLE_LEN: usize = HASH_TABLE_LEN.next_multiple_of(16);

/// The SHA-256 digests QEMU (`kernel-hashes=on`) puts in the SEV hash table page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelHashes {
    pub kernel: [u8; 32],
    pub initrd: [u8; 32],
    pub cmdline: [u8; 32],
}

impl KernelHashes {
    /// As QEMU computes them: no initrd hashes as the empty string; the command line is
    /// hashed with its terminating NUL (an absent one as a single NUL).
    pub fn new(kernel: &[u8], initrd: Option<&[u8]>, append: Option<&str>) -> Self {
        let mut cmdline = Sha256::new();
        cmdline.update(append.unwrap_or("").as_bytes());
        cmdline.update([0u8]);
        Self {
            kernel: Sha256::digest(kernel).into(),
            initrd: Sha256::digest(initrd.unwrap_or(&[])).into(),
            cmdline: cmdline.finalize().into(),
        }
    }

    /// The padded table (QEMU's `PaddedSevHashTable`).
    pub fn table(&self) -> [u8; PADDED_HASH_TABLE_LEN] {
        let mut t = [0u8; PADDED_HASH_TABLE_LEN];
        t[..16].copy_from_slice(&SEV_HASH_TABLE_HEADER_GUID.to_bytes_le());
        t[16..18].copy_from_slice(&(HASH_TABLE_LEN as u16).to_le_bytes());
        let entries = [
            (SEV_CMDLINE_ENTRY_GUID, &self.cmdline),
            (SEV_INITRD_ENTRY_GUID, &self.initrd),
            (SEV_KERNEL_ENTRY_GUID, &self.kernel),
        ];
        for (i, (guid, hash)) in entries.into_iter().enumerate() {
            let at = 18 + i * HASH_ENTRY_LEN;
            t[at..at + 16].copy_from_slice(&guid.to_bytes_le());
            t[at + 16..at + 18].copy_from_slice(&(HASH_ENTRY_LEN as u16).to_le_bytes());
            t[at + 18..at + HASH_ENTRY_LEN].copy_from_slice(hash);
        }
        t
    }
}

/// Extra inputs of the digest beyond image, vCPUs and guest features.
#[derive(Debug, Clone, Default)]
pub struct DigestOptions {
    /// QEMU direct kernel boot with `kernel-hashes=on`.
    pub kernel_hashes: Option<KernelHashes>,
}

/// Addresses as `0x…` strings in JSON.
fn hex_ser<T: fmt::LowerHex, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:#x}"))
}

fn hex_pair_ser<S: serde::Serializer>(v: &Option<(u32, u32)>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some((gpa, size)) => s.collect_seq([format!("{gpa:#x}"), format!("{size:#x}")]),
        None => s.serialize_none(),
    }
}

/// What the digest was computed from, as found in the image. In JSON, addresses and sizes
/// other than `size` are hex strings.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub size: usize,
    /// Guest-physical address of the first byte of the image.
    #[serde(serialize_with = "hex_ser")]
    pub gpa: u64,
    pub has_sev_metadata: bool,
    pub sections: Vec<SectionInfo>,
    /// Where application processors start (SEV-ES reset block), 0 if absent.
    #[serde(serialize_with = "hex_ser")]
    pub ap_reset_eip: u32,
    /// SEV hash table location (gpa, size), if the image declares one.
    #[serde(serialize_with = "hex_pair_ser")]
    pub sev_hash_table: Option<(u32, u32)>,
}

/// One SEV metadata section.
#[derive(Debug, Clone, Serialize)]
pub struct SectionInfo {
    #[serde(serialize_with = "hex_ser")]
    pub gpa: u32,
    #[serde(serialize_with = "hex_ser")]
    pub size: u32,
    pub kind: String,
}

/// The launch digest as the PSP computes it.
#[derive(Clone)]
pub struct Gctx {
    ld: [u8; 48],
}

impl Default for Gctx {
    fn default() -> Self {
        Self { ld: [0; 48] }
    }
}

impl Gctx {
    /// Extends the digest with one `PAGE_INFO` record.
    pub fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; 48]) {
        let mut h = Sha384::new();
        h.update(self.ld);
        h.update(contents);
        h.update(0x70u16.to_le_bytes());
        h.update([
            page_type as u8,
            0, /* is_imi */
            0,
            0,
            0, /* vmpl3..1 perms */
            0,
        ]);
        h.update(gpa.to_le_bytes());
        self.ld = h.finalize().into();
    }

    /// Normal pages with contents; `data.len()` must be a multiple of [`PAGE_SIZE`] (a
    /// partial last page is ignored). The page digests of large inputs are computed on
    /// several threads; the chain itself is sequential.
    pub fn update_normal_pages(&mut self, gpa: u64, data: &[u8]) {
        for (i, d) in page_digests(data).iter().enumerate() {
            self.update(PageType::Normal, gpa + (i * PAGE_SIZE) as u64, d);
        }
    }

    /// `pages` pages of `page_type` with zero contents digest.
    pub fn update_zero_like(&mut self, page_type: PageType, gpa: u64, pages: u64) {
        for i in 0..pages {
            self.update(page_type, gpa + i * PAGE_SIZE as u64, &[0; 48]);
        }
    }

    pub fn update_vmsa(&mut self, vmsa: &[u8; PAGE_SIZE]) {
        let d: [u8; 48] = Sha384::digest(vmsa).into();
        self.update(PageType::Vmsa, VMSA_GPA, &d);
    }

    pub fn ld(&self) -> [u8; 48] {
        self.ld
    }
}

/// SHA-384 of each whole page of `data`, in order.
fn page_digests(data: &[u8]) -> Vec<[u8; 48]> {
    let pages = data.len() / PAGE_SIZE;
    let mut out = vec![[0u8; 48]; pages];
    let hash_all = |out: &mut [[u8; 48]], data: &[u8]| {
        for (o, page) in out.iter_mut().zip(data.chunks_exact(PAGE_SIZE)) {
            *o = Sha384::digest(page).into();
        }
    };
    // Threads pay off from a few hundred pages on; below, hash inline.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(pages / 128)
        .max(1);
    if threads == 1 {
        hash_all(&mut out, data);
        return out;
    }
    let per = pages.div_ceil(threads);
    let mut failed = Vec::new();
    std::thread::scope(|scope| {
        for (i, (o, d)) in out
            .chunks_mut(per)
            .zip(data.chunks(per * PAGE_SIZE))
            .enumerate()
        {
            let job = std::thread::Builder::new().spawn_scoped(scope, move || hash_all(o, d));
            if let Err(e) = job {
                tracing::debug!("cannot start a hashing thread ({e}); hashing inline");
                failed.push(i);
            }
        }
    });
    // Chunks whose thread could not start are hashed here.
    for (i, (o, d)) in out
        .chunks_mut(per)
        .zip(data.chunks(per * PAGE_SIZE))
        .enumerate()
    {
        if failed.contains(&i) {
            hash_all(o, d);
        }
    }
    out
}

fn put(page: &mut [u8; PAGE_SIZE], at: usize, bytes: &[u8]) {
    page[at..at + bytes.len()].copy_from_slice(bytes);
}

fn put_seg(
    page: &mut [u8; PAGE_SIZE],
    at: usize,
    selector: u16,
    attrib: u16,
    limit: u32,
    base: u64,
) {
    put(page, at, &selector.to_le_bytes());
    put(page, at + 2, &attrib.to_le_bytes());
    put(page, at + 4, &limit.to_le_bytes());
    put(page, at + 8, &base.to_le_bytes());
}

/// The initial VMSA (SEV-ES save area, AMD APM vol. 2 table B-4) QEMU/KVM gives a vCPU
/// starting at `eip` in real mode.
pub fn vmsa_page(eip: u32, vcpu_sig: u32, guest_features: u64) -> [u8; PAGE_SIZE] {
    let mut p = [0u8; PAGE_SIZE];
    put_seg(&mut p, 0x00, 0, 0x93, 0xffff, 0); // es
    put_seg(
        &mut p,
        0x10,
        0xf000,
        0x9b,
        0xffff,
        u64::from(eip & 0xffff_0000),
    ); // cs
    put_seg(&mut p, 0x20, 0, 0x93, 0xffff, 0); // ss
    put_seg(&mut p, 0x30, 0, 0x93, 0xffff, 0); // ds
    put_seg(&mut p, 0x40, 0, 0x93, 0xffff, 0); // fs
    put_seg(&mut p, 0x50, 0, 0x93, 0xffff, 0); // gs
    put_seg(&mut p, 0x60, 0, 0, 0xffff, 0); // gdtr
    put_seg(&mut p, 0x70, 0, 0x82, 0xffff, 0); // ldtr
    put_seg(&mut p, 0x80, 0, 0, 0xffff, 0); // idtr
    put_seg(&mut p, 0x90, 0, 0x8b, 0xffff, 0); // tr
    put(&mut p, 0xd0, &0x1000u64.to_le_bytes()); // efer: SVME (KVM)
    put(&mut p, 0x148, &0x40u64.to_le_bytes()); // cr4: MCE (KVM)
    put(&mut p, 0x158, &0x10u64.to_le_bytes()); // cr0: ET
    put(&mut p, 0x160, &0x400u64.to_le_bytes()); // dr7
    put(&mut p, 0x168, &0xffff_0ff0u64.to_le_bytes()); // dr6
    put(&mut p, 0x170, &0x2u64.to_le_bytes()); // rflags
    put(&mut p, 0x178, &u64::from(eip & 0xffff).to_le_bytes()); // rip
    put(&mut p, 0x268, &0x0007_0406_0007_0406u64.to_le_bytes()); // g_pat
    put(&mut p, 0x310, &u64::from(vcpu_sig).to_le_bytes()); // rdx
    put(&mut p, 0x3b0, &guest_features.to_le_bytes()); // sev_features
    put(&mut p, 0x3e8, &0x1u64.to_le_bytes()); // xcr0
    put(&mut p, 0x408, &0x1f80u32.to_le_bytes()); // mxcsr
    put(&mut p, 0x410, &0x37fu16.to_le_bytes()); // x87 fcw
    p
}

fn kind_name(k: SectionKind) -> &'static str {
    match k {
        SectionKind::SnpSecMem => "SNP_SEC_MEM",
        SectionKind::SnpSecrets => "SNP_SECRETS",
        SectionKind::Cpuid => "CPUID",
        SectionKind::SvsmCaa => "SVSM_CAA",
        SectionKind::SnpKernelHashes => "SNP_KERNEL_HASHES",
    }
}

/// Parsed, checked view of an image, ready to be measured.
struct Plan {
    info: ImageInfo,
    /// Sections with the offset of their descriptor (for errors).
    sections: Vec<(usize, Section)>,
}

fn plan(image: &[u8]) -> Result<Plan, DigestError> {
    let len = image.len();
    if len as u64 > FOUR_GIB {
        return Err(DigestError::TooLarge { len });
    }
    let table = GuidTable::parse(image)?;
    if !len.is_multiple_of(PAGE_SIZE) {
        return Err(DigestError::NotPageMultiple { len });
    }
    let ap_reset_eip = table.sev_es_reset_eip()?;
    let mut sections = Vec::new();
    let has_sev_metadata = table.find(firmware_layout::SEV_METADATA_GUID).is_some();
    if has_sev_metadata {
        let meta = table.sev_metadata(image)?;
        // SECURITY: the count comes from the image; a real image has a handful of sections
        // (OVMF declares 6), so a crafted one cannot make the check below take long.
        let count = meta.sections().take(MAX_SECTIONS + 1).count();
        if count > MAX_SECTIONS {
            return Err(DigestError::TooManySections {
                offset: meta.offset,
            });
        }
        let base = meta.offset + firmware_layout::SEV_METADATA_HEADER_LEN;
        let rom_start = FOUR_GIB - len as u64;
        for (i, s) in meta.sections().enumerate() {
            let s = s?;
            let offset = base + i * firmware_layout::SEV_METADATA_SECTION_LEN;
            if !(s.gpa as usize).is_multiple_of(PAGE_SIZE) {
                return Err(DigestError::UnalignedSection { offset, gpa: s.gpa });
            }
            if s.size == 0 || !(s.size as usize).is_multiple_of(PAGE_SIZE) {
                return Err(DigestError::BadSectionSize {
                    offset,
                    size: s.size,
                });
            }
            // The PSP refuses to add a page twice: sections may not overlap the image
            // (mapped just below 4 GiB) or each other.
            if s.end() > rom_start {
                let other = format!("the image at {rom_start:#x}..{FOUR_GIB:#x}");
                return Err(DigestError::SectionOverlap {
                    offset,
                    gpa: s.gpa,
                    end: s.end(),
                    other,
                });
            }
            sections.push((offset, s));
        }
        check_no_overlap(&sections)?;
    }
    let sev_hash_table = table.sev_hash_table()?;
    let info = ImageInfo {
        size: len,
        gpa: FOUR_GIB - len as u64,
        has_sev_metadata,
        sections: sections
            .iter()
            .map(|(_, s)| SectionInfo {
                gpa: s.gpa,
                size: s.size,
                kind: kind_name(s.kind).to_owned(),
            })
            .collect(),
        ap_reset_eip,
        sev_hash_table,
    };
    Ok(Plan { info, sections })
}

/// Most SEV metadata sections an image may declare.
pub const MAX_SECTIONS: usize = 64;

/// Sections may not overlap each other: sorted by start, each must end before the next
/// begins (O(n log n), not a comparison of every pair).
fn check_no_overlap(sections: &[(usize, Section)]) -> Result<(), DigestError> {
    let mut by_gpa: Vec<&(usize, Section)> = sections.iter().collect();
    by_gpa.sort_by_key(|(o, s)| (s.gpa, *o));
    for pair in by_gpa.windows(2) {
        let ((o1, a), (o2, b)) = (pair[0], pair[1]);
        if u64::from(b.gpa) < a.end() {
            // Name the later descriptor as the one that overlaps, as in the image's order.
            let ((offset, s), (o, t)) = if o1 < o2 {
                ((o2, b), (o1, a))
            } else {
                ((o1, a), (o2, b))
            };
            return Err(DigestError::SectionOverlap {
                offset: *offset,
                gpa: s.gpa,
                end: s.end(),
                other: format!(
                    "the section at offset {o:#x} ({:#x}..{:#x})",
                    t.gpa,
                    t.end()
                ),
            });
        }
    }
    Ok(())
}

/// Reads and checks what the digest depends on in `image`, without hashing it.
pub fn inspect(image: &[u8]) -> Result<ImageInfo, DigestError> {
    plan(image).map(|p| p.info)
}

fn kernel_hashes_page(
    info: &ImageInfo,
    size: u32,
    kh: &KernelHashes,
) -> Result<[u8; PAGE_SIZE], DigestError> {
    let (table_gpa, _) = info.sev_hash_table.ok_or_else(|| {
        DigestError::KernelHashTable(
            "the image has no SEV hash table entry (GUID 7255371f-…)".into(),
        )
    })?;
    if size as usize != PAGE_SIZE {
        return Err(DigestError::KernelHashTable(format!(
            "SNP_KERNEL_HASHES section is {size:#x} bytes, QEMU fills exactly one page"
        )));
    }
    let at = table_gpa as usize & (PAGE_SIZE - 1);
    if at + PADDED_HASH_TABLE_LEN > PAGE_SIZE {
        return Err(DigestError::KernelHashTable(format!(
            "hash table at gpa {table_gpa:#x} would cross its page"
        )));
    }
    let mut page = [0u8; PAGE_SIZE];
    page[at..at + PADDED_HASH_TABLE_LEN].copy_from_slice(&kh.table());
    Ok(page)
}

/// The SNP launch digest of `image` booted by QEMU with `vcpus` vCPUs of `vcpu_type` and
/// `guest_features` (the VMSA `SEV_FEATURES`; `0x1` = SNP active, QEMU's default).
///
/// Equals `sev-snp-measure --mode snp --ovmf IMAGE --vcpus N --vcpu-type T
/// --guest-features F [--kernel/--initrd/--append]`. To compute several digests of one
/// image, use [`Measurer`], which hashes the image once.
pub fn launch_digest(
    image: &[u8],
    vcpus: u32,
    vcpu_type: VcpuType,
    guest_features: u64,
    opts: &DigestOptions,
) -> Result<[u8; 48], DigestError> {
    if vcpus == 0 {
        return Err(DigestError::NoVcpus(vcpus));
    }
    Measurer::new(image)?.launch_digest(vcpus, vcpu_type, guest_features, opts)
}

/// An image parsed and its ROM pages measured once; digests for any vCPU configuration
/// follow cheaply (the ROM is most of the work).
#[derive(Clone)]
pub struct Measurer {
    info: ImageInfo,
    sections: Vec<(usize, Section)>,
    /// The digest after the ROM pages (sev-snp-measure's `--snp-ovmf-hash`).
    rom: Gctx,
}

impl Measurer {
    /// Parses and checks `image` and measures its pages.
    pub fn new(image: &[u8]) -> Result<Self, DigestError> {
        let Plan { info, sections } = plan(image)?;
        let mut rom = Gctx::default();
        rom.update_normal_pages(info.gpa, image);
        Ok(Self {
            info,
            sections,
            rom,
        })
    }

    /// What was found in the image.
    pub fn info(&self) -> &ImageInfo {
        &self.info
    }

    /// The digest of the ROM pages alone (`sev-snp-measure --mode snp:ovmf-hash`).
    pub fn rom_digest(&self) -> [u8; 48] {
        self.rom.ld()
    }

    /// See [`launch_digest`].
    pub fn launch_digest(
        &self,
        vcpus: u32,
        vcpu_type: VcpuType,
        guest_features: u64,
        opts: &DigestOptions,
    ) -> Result<[u8; 48], DigestError> {
        let info = &self.info;
        if vcpus == 0 {
            return Err(DigestError::NoVcpus(vcpus));
        }
        if vcpus > 1 && info.ap_reset_eip == 0 {
            return Err(DigestError::NoApResetEip {
                vcpus,
                eip: info.ap_reset_eip,
            });
        }
        if opts.kernel_hashes.is_some()
            && !self
                .sections
                .iter()
                .any(|(_, s)| s.kind == SectionKind::SnpKernelHashes)
        {
            return Err(DigestError::NoKernelHashesSection);
        }
        let mut gctx = self.rom.clone();
        for (_, s) in &self.sections {
            let gpa = u64::from(s.gpa);
            let pages = u64::from(s.size) / PAGE_SIZE as u64;
            match s.kind {
                SectionKind::SnpSecMem | SectionKind::SvsmCaa => {
                    gctx.update_zero_like(PageType::Zero, gpa, pages)
                }
                SectionKind::SnpSecrets => gctx.update_zero_like(PageType::Secrets, gpa, 1),
                SectionKind::Cpuid => gctx.update_zero_like(PageType::Cpuid, gpa, 1),
                SectionKind::SnpKernelHashes => match &opts.kernel_hashes {
                    Some(kh) => {
                        gctx.update_normal_pages(gpa, &kernel_hashes_page(info, s.size, kh)?)
                    }
                    None => gctx.update_zero_like(PageType::Zero, gpa, pages),
                },
            }
        }
        let sig = vcpu_type.signature();
        let bsp = vmsa_page(BSP_EIP, sig, guest_features);
        gctx.update_vmsa(&bsp);
        if vcpus > 1 {
            let ap = vmsa_page(info.ap_reset_eip, sig, guest_features);
            for _ in 1..vcpus {
                gctx.update_vmsa(&ap);
            }
        }
        Ok(gctx.ld())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_type_names_round_trip_case_insensitively() {
        for t in VcpuType::NAMED {
            let name = t.name().unwrap();
            assert_eq!(name.parse::<VcpuType>(), Ok(t));
            assert_eq!(name.to_lowercase().parse::<VcpuType>(), Ok(t));
            assert_eq!(t.to_string(), name);
        }
        assert!("EPYC-Milan-v3".parse::<VcpuType>().is_err());
        assert!("".parse::<VcpuType>().is_err());
        assert_eq!(VcpuType::Signature(0x1234).to_string(), "sig:0x1234");
    }

    #[test]
    fn cpu_signatures() {
        // CPUID(1).EAX values of real parts: Naples/EPYC 0x800f12, Rome 0x830f10, Milan 0xa00f11,
        // Genoa 0xa10f10, Turin 0xb00f00.
        assert_eq!(VcpuType::Epyc.signature(), 0x0080_0f12);
        assert_eq!(VcpuType::EpycRome.signature(), 0x0083_0f10);
        assert_eq!(VcpuType::EpycMilan.signature(), 0x00a0_0f11);
        assert_eq!(VcpuType::EpycGenoa.signature(), 0x00a1_0f10);
        assert_eq!(VcpuType::EpycTurin.signature(), 0x00b0_0f00);
    }

    #[test]
    fn kernel_hash_table_layout() {
        let kh = KernelHashes::new(b"kernel", None, None);
        let t = kh.table();
        assert_eq!(PADDED_HASH_TABLE_LEN, 0xb0);
        assert_eq!(u16::from_le_bytes([t[16], t[17]]), 0xa8);
        // cmdline first, then initrd (of nothing), then kernel.
        assert_eq!(&t[18 + 18..18 + 50], Sha256::digest([0u8]).as_slice());
        assert_eq!(&t[68 + 18..68 + 50], Sha256::digest([]).as_slice());
        assert_eq!(&t[118 + 18..118 + 50], Sha256::digest(b"kernel").as_slice());
        assert!(t[0xa8..].iter().all(|&b| b == 0));
    }

    /// A 4 MiB image whose SEV metadata (2 MiB from the end) declares `sections`.
    fn image_with_sections(sections: &[Section]) -> Vec<u8> {
        use firmware_layout::{
            FooterBuilder, SEV_ES_RESET_BLOCK_GUID, SEV_METADATA_GUID, TABLE_END_FROM_IMAGE_END,
            encode_sev_metadata,
        };
        let mut img = vec![0u8; 4 << 20];
        let meta = encode_sev_metadata(sections);
        let from_end = 2 << 20;
        let at = img.len() - from_end;
        img[at..at + meta.len()].copy_from_slice(&meta);
        let table = FooterBuilder::new()
            .entry(SEV_METADATA_GUID, &(from_end as u32).to_le_bytes())
            .entry(SEV_ES_RESET_BLOCK_GUID, &0xffff_f000u32.to_le_bytes())
            .build()
            .unwrap();
        let end = img.len() - TABLE_END_FROM_IMAGE_END;
        img[end - table.len()..end].copy_from_slice(&table);
        img
    }

    fn page_section(page: u32) -> Section {
        Section {
            gpa: page * PAGE_SIZE as u32,
            size: PAGE_SIZE as u32,
            kind: SectionKind::SnpSecMem,
        }
    }

    /// A crafted image declaring 100,000 sections is refused at the count, at once (the
    /// pairwise check it replaced took about n² = 10¹⁰ steps).
    #[test]
    fn too_many_sections_are_refused_quickly() {
        let many: Vec<Section> = (0..100_000).map(page_section).collect();
        let img = image_with_sections(&many);
        let t = std::time::Instant::now();
        assert!(matches!(
            inspect(&img),
            Err(DigestError::TooManySections { .. })
        ));
        assert!(
            t.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            t.elapsed()
        );
        // The limit itself is accepted.
        let most: Vec<Section> = (0..MAX_SECTIONS as u32).rev().map(page_section).collect();
        assert_eq!(
            inspect(&image_with_sections(&most)).unwrap().sections.len(),
            MAX_SECTIONS
        );
    }

    /// Overlaps are found whatever the declared order, including between the first and the
    /// last of the most sections allowed.
    #[test]
    fn overlapping_sections_are_refused_in_any_order() {
        let mut s: Vec<Section> = (0..MAX_SECTIONS as u32 - 1)
            .map(|i| page_section(2 * i))
            .collect();
        // Two pages from page 1: overlaps the section at page 2.
        s.push(Section {
            gpa: PAGE_SIZE as u32,
            size: 2 * PAGE_SIZE as u32,
            kind: SectionKind::Cpuid,
        });
        for order in [s.clone(), s.iter().rev().copied().collect()] {
            match inspect(&image_with_sections(&order)) {
                Err(DigestError::SectionOverlap {
                    gpa, end, other, ..
                }) => {
                    let (lo, hi) = (u64::from(gpa).min(0x1000), end.max(0x3000));
                    assert_eq!((lo, hi), (0x1000, 0x3000), "{other}");
                }
                other => panic!("overlap not refused: {other:?}"),
            }
        }
        // Touching is not overlapping.
        let touching = [page_section(1), page_section(0), page_section(2)];
        assert!(inspect(&image_with_sections(&touching)).is_ok());
    }

    #[test]
    fn vmsa_fields() {
        let p = vmsa_page(0xffff_f01a, 0xa00f11, 0x21);
        assert_eq!(&p[0x10..0x12], &0xf000u16.to_le_bytes()); // cs selector
        assert_eq!(&p[0x18..0x20], &0xffff_0000u64.to_le_bytes()); // cs base
        assert_eq!(&p[0x178..0x180], &0xf01au64.to_le_bytes()); // rip
        assert_eq!(&p[0x310..0x318], &0xa00f11u64.to_le_bytes()); // rdx
        assert_eq!(&p[0x3b0..0x3b8], &0x21u64.to_le_bytes()); // sev_features
    }
}
