//! What an SNP report is checked against, shared by `verify-report`, `verify-evidence` and
//! `verify-log`: the root of trust (an AMD family, AMD's PEMs, or the simulated PSP's lab
//! root), the expected launch digest (given, or recomputed from the image and VM shape),
//! the minimum TCB and the policy exceptions.
//!
//! SECURITY: a report proves only that *some* guest ran on *some* chip under *some* root;
//! without a pinned root, a pinned measurement and the policy checks, any SNP guest (a Linux
//! with `/dev/sev-guest`) could produce evidence that verifies. So whenever a report is
//! checked, both the root and the measurement are required, and nothing is tried in turn.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use measurements::digest::{self, DigestOptions, Measurer, VcpuType};
use measurements::verify::{
    CertSource, Family, MinTcb, VerifyOptions, VerifyOutcome, verify_report,
};

pub fn parse_hex_u64(s: &str) -> Result<u64, String> {
    let t = s.trim_start_matches("0x").trim_start_matches("0X");
    u64::from_str_radix(t, 16).map_err(|e| format!("{s:?} is not a hex number: {e}"))
}

pub fn parse_vcpu_type(s: &str) -> Result<VcpuType, String> {
    s.parse()
        .map_err(|e: digest::UnknownVcpuType| e.to_string())
}

/// `N` bytes from hex; shorter input is zero-padded when `pad`.
pub fn parse_hex_bytes<const N: usize>(s: &str, pad: bool) -> Result<[u8; N], String> {
    let t = s.trim().trim_start_matches("0x");
    let v = hex::decode(t).map_err(|e| format!("not hex: {e}"))?;
    if v.len() > N || (!pad && v.len() != N) {
        return Err(format!(
            "expected {} {N} bytes, got {}",
            if pad { "at most" } else { "exactly" },
            v.len()
        ));
    }
    let mut a = [0u8; N];
    a[..v.len()].copy_from_slice(&v);
    Ok(a)
}

pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The report expectations (flattened into each verifier command).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ReportArgs {
    /// The chip's VCEK certificate (DER), from AMD's KDS.
    #[arg(long, value_name = "FILE", conflicts_with = "lab_root")]
    pub vcek: Option<PathBuf>,
    /// Trust the builtin AMD ARK/ASK of this generation: milan, genoa or turin.
    #[arg(long, value_name = "FAMILY", conflicts_with_all = ["ark", "ask", "lab_root"])]
    pub family: Option<Family>,
    /// AMD root key certificate (PEM), e.g. from AMD's KDS; needs --ask. Must be one of AMD's
    /// roots unless --allow-unknown-ark.
    #[arg(
        long,
        value_name = "FILE",
        requires = "ask",
        conflicts_with = "lab_root"
    )]
    pub ark: Option<PathBuf>,
    /// AMD signing key certificate (PEM); needs --ark.
    #[arg(long, value_name = "FILE", requires = "ark")]
    pub ask: Option<PathBuf>,
    /// Trust the simulated PSP's lab ARK, ASK and VCEK (omega-sim-psp; tests and demos
    /// without SNP hardware). A report verified this way proves nothing about hardware: the
    /// outcome says `tee: simulated`.
    #[arg(long)]
    pub lab_root: bool,
    /// Accept an --ark that is not one of AMD's published roots (test chains only).
    #[arg(long)]
    pub allow_unknown_ark: bool,
    /// Launch digest the report must carry (96 hex chars, see `measurements digest`).
    #[arg(long, value_name = "HEX", conflicts_with = "image")]
    pub expect_measurement: Option<String>,
    /// Recompute the expected launch digest from this image (with --vcpus, --vcpu-type and
    /// --guest-features: the VM shape it was launched with).
    #[arg(long, value_name = "PATH", requires_all = ["vcpus", "vcpu_type"])]
    pub image: Option<PathBuf>,
    /// vCPUs the image was launched with (with --image).
    #[arg(long, value_name = "N", requires = "image",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub vcpus: Option<u32>,
    /// QEMU vCPU model it was launched with (with --image), e.g. EPYC-v4.
    #[arg(long, value_name = "TYPE", requires = "image", value_parser = parse_vcpu_type)]
    pub vcpu_type: Option<VcpuType>,
    /// VMSA SEV_FEATURES in hex (with --image); default 0x1, QEMU's.
    #[arg(long, value_name = "HEX", requires = "image", value_parser = parse_hex_u64)]
    pub guest_features: Option<u64>,
    /// Minimum reported TCB, e.g. `bl=3,tee=0,snp=8,ucode=115` (and `fmc=N` on Turin).
    #[arg(long, value_name = "SPEC")]
    pub min_tcb: Option<MinTcb>,
    /// Accept a guest policy that allows debugging.
    #[arg(long)]
    pub allow_debug: bool,
    /// Accept a guest policy that allows a migration agent.
    #[arg(long)]
    pub allow_migration_agent: bool,
}

/// Roots as read from the command line.
enum Roots {
    Family(Family),
    Pem { ark: Vec<u8>, ask: Vec<u8> },
    Lab,
}

/// Everything a report is checked against, resolved from [`ReportArgs`].
pub struct Pinned {
    roots: Roots,
    vcek: Vec<u8>,
    opts: VerifyOptions,
}

impl Pinned {
    fn certs(&self) -> CertSource<'_> {
        match &self.roots {
            Roots::Family(f) => CertSource::Family(*f),
            Roots::Pem { ark, ask } => CertSource::Pem { ark, ask },
            Roots::Lab => CertSource::Lab,
        }
    }

    /// The evidence `tee` a report verified under these roots stands for.
    pub fn tee(&self) -> &'static str {
        self.certs().tee()
    }

    /// Verifies `report`; `report_data`, when given, must be its REPORT_DATA.
    pub fn verify(&self, report: &[u8], report_data: Option<[u8; 64]>) -> VerifyOutcome {
        let opts = VerifyOptions {
            expect_report_data: report_data.or(self.opts.expect_report_data),
            ..self.opts.clone()
        };
        verify_report(report, &self.vcek, self.certs(), &opts)
    }
}

impl ReportArgs {
    /// Resolves the flags; fails (a usage error) when the root or the measurement is
    /// missing.
    pub fn pin(&self) -> anyhow::Result<Pinned> {
        let roots = match (self.lab_root, self.family, &self.ark, &self.ask) {
            (true, None, None, None) => Roots::Lab,
            (false, Some(f), None, None) => Roots::Family(f),
            (false, None, Some(ark), Some(ask)) => Roots::Pem {
                ark: read(ark)?,
                ask: read(ask)?,
            },
            _ => bail!(
                "choose the root of trust: --family milan|genoa|turin, --ark/--ask (AMD's PEMs), \
                 or --lab-root (the simulated PSP)"
            ),
        };
        let vcek = match (&roots, &self.vcek) {
            (Roots::Lab, _) => omega_sim_psp::LAB_VCEK_DER.to_vec(),
            (_, Some(v)) => read(v)?,
            (_, None) => bail!("give --vcek: the chip's VCEK certificate (DER) from AMD's KDS"),
        };
        let measurement = match (&self.expect_measurement, &self.image) {
            (Some(hex), None) => parse_hex_bytes::<48>(hex, false)
                .map_err(|e| anyhow::anyhow!("--expect-measurement: {e}"))?,
            (None, Some(image)) => self.recompute(image)?,
            _ => bail!(
                "give the expected launch digest: --expect-measurement HEX, or --image PATH \
                 --vcpus N --vcpu-type TYPE [--guest-features HEX]"
            ),
        };
        Ok(Pinned {
            roots,
            vcek,
            opts: VerifyOptions {
                expect_measurement: Some(measurement),
                expect_report_data: None,
                min_tcb: self.min_tcb,
                allow_debug: self.allow_debug,
                allow_migration_agent: self.allow_migration_agent,
                allow_unknown_ark: self.allow_unknown_ark,
            },
        })
    }

    fn recompute(&self, image: &Path) -> anyhow::Result<[u8; 48]> {
        let (Some(vcpus), Some(vcpu_type)) = (self.vcpus, self.vcpu_type) else {
            bail!("--image needs --vcpus and --vcpu-type");
        };
        let bytes = read(image)?;
        Measurer::new(&bytes)
            .and_then(|m| {
                m.launch_digest(
                    vcpus,
                    vcpu_type,
                    self.guest_features.unwrap_or(0x1),
                    &DigestOptions::default(),
                )
            })
            .with_context(|| format!("launch digest of {}", image.display()))
    }
}
