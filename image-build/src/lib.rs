//! Builds Omega's boot image: compiles the loader and the kernel for
//! `x86_64-unknown-none`, and lays them out in one flat file that QEMU maps below 4 GiB
//! (`-bios omega.bin`).
//!
//! ```text
//! offset 0                     kernel ELF (read by the loader, SHA-256 in the footer)
//! ...                          zero padding
//! size - 256 KiB               loader (64-bit code, then the 16/32-bit reset code)
//! size - 0x1000                SEV metadata ("ASEV")
//! ... size - 0x20              GUID table (Omega kernel entry, SEV metadata, SEV-ES reset)
//! size - 0x10                  reset vector
//! ```
//!
//! The bytes depend only on the source: paths are remapped, nothing records time, and the
//! `image` profile uses one codegen unit.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use firmware_layout::{
    FooterBuilder, KernelEntry, OMEGA_KERNEL_GUID, SEV_ES_RESET_BLOCK_GUID, SEV_METADATA_GUID,
    Section, SectionKind, TABLE_END_FROM_IMAGE_END, encode_sev_metadata,
};
use object::elf::PT_LOAD;
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Endianness, Object, ObjectSymbol};
use omega_boot_info::phys;
use sha2::{Digest, Sha256};

/// The loader's share at the top of the image (its linker script starts at 4 GiB - this).
pub const LOADER_REGION: u64 = 0x4_0000;
/// The top page holds the footer: SEV metadata at its start, the table at its end.
pub const FOOTER_PAGE: u64 = 0x1000;
const FOUR_GIB: u64 = 1 << 32;
pub const TARGET: &str = "x86_64-unknown-none";

/// What to build.
#[derive(Debug, Clone)]
pub struct Options {
    /// The workspace root (holding Cargo.toml).
    pub root: PathBuf,
    /// Cargo target directory for the bare-metal build.
    pub target_dir: PathBuf,
    /// Build the kernel with its test hooks (QEMU fault-injection tests only).
    pub test_hooks: bool,
}

impl Options {
    /// The workspace this tool was built from, with its usual target directory.
    pub fn for_workspace(test_hooks: bool) -> Options {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("image-build lives in the workspace")
            .to_path_buf();
        let variant = if test_hooks { "test-hooks" } else { "release" };
        Options {
            target_dir: root.join("target").join("image-build").join(variant),
            root,
            test_hooks,
        }
    }
}

/// The finished image and what went into it.
#[derive(Debug, Clone)]
pub struct Image {
    pub bytes: Vec<u8>,
    pub kernel: KernelEntry,
    pub loader_len: u64,
    /// Where application processors start (the SEV-ES reset block).
    pub ap_reset_eip: u32,
}

impl Image {
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.bytes).into()
    }
}

/// Compiles the loader and the kernel; returns the two ELF files.
pub fn compile(opts: &Options) -> Result<(PathBuf, PathBuf)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_default();
    // Remapping the two paths that differ between machines keeps them out of panic
    // messages, so two checkouts build the same bytes.
    // The cfgs select RustCrypto's software backends: the kernel target has no SSE/AES-NI
    // code paths enabled. AES and POLYVAL for SNP guest messages (docs/sev-snp.md);
    // ChaCha20, Poly1305 and curve25519's serial backend for the inference client's TLS
    // (docs/inference.md). The same list as `.cargo/config.toml`'s for this target.
    let flags = [
        "-Crelocation-model=static".to_string(),
        "--cfg=aes_force_soft".to_string(),
        "--cfg=polyval_force_soft".to_string(),
        "--cfg=chacha20_force_soft".to_string(),
        "--cfg=poly1305_force_soft".to_string(),
        "--cfg=curve25519_dalek_backend=\"serial\"".to_string(),
        format!("--remap-path-prefix={}=/omega", opts.root.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
    ];
    // One cargo invocation per binary: cargo unifies the features of the packages built
    // together, and the kernel's rustls turns on `zeroize/alloc`, which would link `alloc`
    // into the loader (it has no allocator; sev-snp uses zeroize).
    for package in ["omega-loader", "omega-kernel"] {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&opts.root)
            .args([
                "build",
                "--locked",
                "--profile",
                "image",
                "--target",
                TARGET,
                "-p",
                package,
            ])
            .env("CARGO_TARGET_DIR", &opts.target_dir)
            .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS");
        if opts.test_hooks && package == "omega-kernel" {
            cmd.args(["--features", "omega-kernel/test-hooks"]);
        }
        let status = cmd
            .status()
            .with_context(|| format!("running cargo to build {package}"))?;
        ensure!(
            status.success(),
            "cargo failed to build {package} ({status})"
        );
    }
    let out = opts.target_dir.join(TARGET).join("image");
    Ok((out.join("omega-loader"), out.join("omega-kernel")))
}

/// Lays out an image from the two ELF files' bytes.
pub fn assemble(loader_elf: &[u8], kernel_elf: &[u8]) -> Result<Image> {
    let kernel_len = kernel_elf.len() as u64;
    let size = kernel_len.div_ceil(0x1_0000) * 0x1_0000 + LOADER_REGION;
    ensure!(
        size <= 16 << 20,
        "image would be {size} bytes; the loader accepts at most 16 MiB"
    );
    let base = FOUR_GIB - size;
    let mut bytes = vec![0u8; size as usize];
    bytes[..kernel_elf.len()].copy_from_slice(kernel_elf);

    let loader = ElfFile64::<Endianness>::parse(loader_elf).context("parsing the loader ELF")?;
    let endian = loader.endian();
    let loader_start = FOUR_GIB - LOADER_REGION;
    let footer = (FOUR_GIB - FOOTER_PAGE)..(FOUR_GIB - TABLE_END_FROM_IMAGE_END as u64);
    let mut loader_len = 0;
    for ph in loader.elf_program_headers() {
        if ph.p_type(endian) != PT_LOAD {
            continue;
        }
        let data = ph
            .data(endian, loader_elf)
            .map_err(|()| anyhow::anyhow!("loader segment outside its file"))?;
        if data.is_empty() {
            continue;
        }
        // The ROM position is the physical (load) address, not the 64-bit alias it runs at.
        let paddr = ph.p_paddr(endian);
        let end = paddr + data.len() as u64;
        if paddr < loader_start || end > FOUR_GIB {
            bail!(
                "loader segment {paddr:#x}..{end:#x} lies outside the top {LOADER_REGION:#x} bytes of the ROM"
            );
        }
        if paddr < footer.end && footer.start < end {
            bail!("loader segment {paddr:#x}..{end:#x} overlaps the footer page");
        }
        let off = (paddr - base) as usize;
        bytes[off..off + data.len()].copy_from_slice(data);
        loader_len += data.len() as u64;
    }
    let ap_reset = loader
        .symbols()
        .find(|s| s.name() == Ok("omega_ap_reset"))
        .context("the loader has no omega_ap_reset symbol")?
        .address();
    let ap_reset_eip = u32::try_from(ap_reset).context("omega_ap_reset lies above 4 GiB")?;

    let metadata = encode_sev_metadata(&[
        Section {
            gpa: phys::SECRETS_PAGE as u32,
            size: 0x1000,
            kind: SectionKind::SnpSecrets,
        },
        Section {
            gpa: phys::CPUID_PAGE as u32,
            size: 0x1000,
            kind: SectionKind::Cpuid,
        },
        Section {
            gpa: phys::SEC_MEM_START as u32,
            size: (phys::SEC_MEM_END - phys::SEC_MEM_START) as u32,
            kind: SectionKind::SnpSecMem,
        },
    ]);
    let meta_off = (size - FOOTER_PAGE) as usize;
    bytes[meta_off..meta_off + metadata.len()].copy_from_slice(&metadata);

    let kernel = KernelEntry {
        image_size: size as u32,
        offset: 0,
        len: kernel_elf.len(),
        sha256: Sha256::digest(kernel_elf).into(),
    };
    let table = FooterBuilder::new()
        .entry(OMEGA_KERNEL_GUID, &kernel.encode())
        .entry(SEV_METADATA_GUID, &(FOOTER_PAGE as u32).to_le_bytes())
        .entry(SEV_ES_RESET_BLOCK_GUID, &ap_reset_eip.to_le_bytes())
        .build()
        .map_err(|len| anyhow::anyhow!("footer table of {len} bytes is too long"))?;
    let table_end = size as usize - TABLE_END_FROM_IMAGE_END;
    let table_start = table_end - table.len();
    ensure!(
        table_start >= meta_off + metadata.len(),
        "footer table overlaps the SEV metadata"
    );
    bytes[table_start..table_end].copy_from_slice(&table);

    Ok(Image {
        bytes,
        kernel,
        loader_len,
        ap_reset_eip,
    })
}

/// Compiles and assembles.
pub fn build(opts: &Options) -> Result<Image> {
    let (loader, kernel) = compile(opts)?;
    let loader = std::fs::read(&loader).with_context(|| format!("reading {}", loader.display()))?;
    let kernel = std::fs::read(&kernel).with_context(|| format!("reading {}", kernel.display()))?;
    assemble(&loader, &loadable_only(&kernel)?)
}

/// The kernel ELF without what the loader never reads: the section headers and the
/// non-loaded sections after the last loaded byte (`.symtab`, `.strtab`: about a fifth of the
/// file). The loader hashes every byte of the kernel at each boot, so these bytes cost boot
/// time and ROM for nothing; the unstripped ELF stays in the build directory for
/// `scripts/profile-rips.py` (the code and addresses are the same).
pub fn loadable_only(elf: &[u8]) -> Result<Vec<u8>> {
    let file = ElfFile64::<Endianness>::parse(elf).context("parsing the kernel ELF")?;
    let endian = file.endian();
    let header = file.elf_header();
    let phoff = header.e_phoff.get(endian);
    let phnum = u64::from(header.e_phnum.get(endian));
    let phentsize = u64::from(header.e_phentsize.get(endian));
    let mut end = phoff + phnum * phentsize;
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == PT_LOAD {
            end = end.max(ph.p_offset(endian) + ph.p_filesz(endian));
        }
    }
    let end = usize::try_from(end).context("kernel ELF too large")?;
    ensure!(end <= elf.len(), "kernel ELF segment outside its file");
    let mut out = elf[..end].to_vec();
    // e_shoff (u64 at 0x28), e_shentsize, e_shnum, e_shstrndx (u16 at 0x3a, 0x3c, 0x3e): no
    // section header table.
    ensure!(out.len() >= 0x40, "kernel ELF header truncated");
    out[0x28..0x30].fill(0);
    out[0x3a..0x40].fill(0);
    Ok(out)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test's own executable is a real ELF with symbols and sections to drop.
    #[test]
    fn loadable_only_keeps_every_loaded_byte_and_drops_the_rest() {
        let elf = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let out = loadable_only(&elf).unwrap();
        assert!(out.len() < elf.len());
        // Segments may cover the ELF header (not the kernel's; a host executable's do): the
        // only bytes that may differ are the section-table fields cleared above.
        let mut expected = elf.clone();
        expected[0x28..0x30].fill(0);
        expected[0x3a..0x40].fill(0);
        let elf = expected;
        let a = ElfFile64::<Endianness>::parse(&*elf).unwrap();
        let b = ElfFile64::<Endianness>::parse(&*out).unwrap();
        let e = a.endian();
        assert_eq!(b.elf_header().e_shnum.get(e), 0);
        assert_eq!(b.elf_header().e_shoff.get(e), 0);
        assert_eq!(a.entry(), b.entry());
        let segs = |f: &ElfFile64<Endianness>, bytes: &[u8]| -> Vec<(u32, u64, [u8; 32])> {
            f.elf_program_headers()
                .iter()
                .filter(|ph| ph.p_type(e) == PT_LOAD)
                .map(|ph| {
                    let data = ph.data(e, bytes).unwrap();
                    (ph.p_flags(e), ph.p_vaddr(e), Sha256::digest(data).into())
                })
                .collect()
        };
        assert_eq!(segs(&a, &elf), segs(&b, &out));
        assert!(!segs(&b, &out).is_empty());
        // Stable: stripping twice changes nothing.
        assert_eq!(loadable_only(&out).unwrap(), out);
    }

    #[test]
    fn loadable_only_refuses_what_is_not_an_elf() {
        assert!(loadable_only(b"not an elf").is_err());
    }
}
