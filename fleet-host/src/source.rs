//! The fleet policy's source form (JSON, what an owner writes) and its compilation to the
//! canonical postcard form the owner signs. Unknown fields are refused (a typo never turns
//! into a default).

use anyhow::{Context, anyhow, bail};
use omega_fleet::policy::{
    AgentPin, Endpoint, FleetPolicy, ImageRule, POLICY_FORMAT, Route, Shape, SnpTcb,
};
use omega_fleet::{Tee, name_ok};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    pub fleet_id: String,
    pub version: u64,
    /// Lab tests only: admit the simulated PSP.
    #[serde(default)]
    pub allow_simulated: bool,
    pub images: Vec<ImageSource>,
    #[serde(default)]
    pub min_snp_tcb: TcbSource,
    #[serde(default)]
    pub allow_tdx_out_of_date: bool,
    #[serde(default)]
    pub agents: Vec<AgentSource>,
    /// `role/agent` → `role/agent` (`agent` may be `*`).
    #[serde(default)]
    pub routes: Vec<RouteSource>,
    pub credential_lifetime_s: u32,
    pub challenge_lifetime_s: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSource {
    pub name: String,
    /// `sev-snp`, `tdx`, `nitro` or `simulated`.
    pub tee: String,
    /// 96 hex digits.
    pub measurement: String,
    pub vcpus: u32,
    pub vcpu_type: String,
    pub memory_mib: u32,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcbSource {
    #[serde(default)]
    pub bootloader: u8,
    #[serde(default)]
    pub tee: u8,
    #[serde(default)]
    pub snp: u8,
    #[serde(default)]
    pub microcode: u8,
    #[serde(default)]
    pub fmc: Option<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSource {
    pub name: String,
    pub publisher: String,
    /// `sha256:` + 64 hex digits, or 64 hex digits.
    pub module_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSource {
    pub from: String,
    pub to: String,
}

fn endpoint(s: &str) -> anyhow::Result<Endpoint> {
    let (role, agent) = s
        .split_once('/')
        .ok_or_else(|| anyhow!("route endpoint {s:?} is not role/agent"))?;
    Ok(Endpoint {
        role: role.into(),
        agent: agent.into(),
    })
}

pub fn hex32(s: &str) -> anyhow::Result<[u8; 32]> {
    let v = hex::decode(s.trim_start_matches("sha256:")).context("not hex")?;
    v.try_into().map_err(|_| anyhow!("{s:?} is not 32 bytes"))
}

impl PolicySource {
    /// The canonical policy (sorted lists; every structural rule checked), issued now.
    pub fn compile(&self) -> anyhow::Result<FleetPolicy> {
        let mut images = Vec::new();
        for i in &self.images {
            let tee = Tee::from_name(&i.tee)
                .ok_or_else(|| anyhow!("image {}: unknown tee {:?}", i.name, i.tee))?;
            images.push(ImageRule {
                tee,
                measurement: hex::decode(&i.measurement)
                    .with_context(|| format!("image {}: measurement", i.name))?,
                name: i.name.clone(),
                shape: Shape {
                    vcpus: i.vcpus,
                    vcpu_type: i.vcpu_type.clone(),
                    memory_mib: i.memory_mib,
                },
                roles: i.roles.clone(),
            });
        }
        let mut agents = Vec::new();
        for a in &self.agents {
            if self.agents.iter().filter(|b| b.name == a.name).count() > 1 {
                bail!("agent {:?} pinned twice", a.name);
            }
            agents.push(AgentPin {
                name: a.name.clone(),
                publisher: a.publisher.clone(),
                module_hash: hex32(&a.module_hash)
                    .with_context(|| format!("agent {}: module_hash", a.name))?,
            });
        }
        let routes = self
            .routes
            .iter()
            .map(|r| {
                Ok(Route {
                    from: endpoint(&r.from)?,
                    to: endpoint(&r.to)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !name_ok(&self.fleet_id) {
            bail!("fleet_id {:?}: 1..=64 of [A-Za-z0-9._-]", self.fleet_id);
        }
        let mut p = FleetPolicy {
            format: POLICY_FORMAT,
            fleet_id: self.fleet_id.clone(),
            version: self.version,
            // The in-image coordinator's time anchor: the owner's clock when it compiles
            // (and signs) the policy.
            issued_at: crate::now(),
            allow_simulated: self.allow_simulated,
            images,
            min_snp_tcb: SnpTcb {
                bootloader: self.min_snp_tcb.bootloader,
                tee: self.min_snp_tcb.tee,
                snp: self.min_snp_tcb.snp,
                microcode: self.min_snp_tcb.microcode,
                fmc: self.min_snp_tcb.fmc,
            },
            allow_tdx_out_of_date: self.allow_tdx_out_of_date,
            agents,
            routes,
            credential_lifetime_s: self.credential_lifetime_s,
            challenge_lifetime_s: self.challenge_lifetime_s,
            // Not in the JSON source: `omega-fleet policy --nitro-root PEM` sets it.
            nitro_root: Vec::new(),
        };
        p.canonicalize();
        p.validate()?;
        Ok(p)
    }
}

/// The agent pins of a bundle directory (name, publisher as the monitor claims it, SHA-256
/// of the module) and the SHA-256 of its manifest (the `bundle` evidence claim).
pub fn bundle_pins(dir: &std::path::Path) -> anyhow::Result<([u8; 32], Vec<AgentPin>)> {
    use sha2::{Digest, Sha256};
    let read = |name: &str| {
        let p = dir.join(name);
        let meta = std::fs::metadata(&p).with_context(|| format!("{}", p.display()))?;
        // SECURITY: bounded read of a host-supplied path.
        if meta.len() > omega_bundle::MAX_TOTAL_BYTES {
            bail!("{} too large", p.display());
        }
        std::fs::read(&p).with_context(|| format!("{}", p.display()))
    };
    let manifest_bytes = read(omega_bundle::MANIFEST)?;
    let manifest = omega_bundle::Manifest::parse(&manifest_bytes)
        .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    let mut pins = Vec::new();
    for a in &manifest.agents {
        let module = read(&a.module)?;
        pins.push(AgentPin {
            name: a.name.clone(),
            publisher: a.claimed_publisher().into(),
            module_hash: Sha256::digest(&module).into(),
        });
    }
    Ok((Sha256::digest(&manifest_bytes).into(), pins))
}

/// A bundle directory's files in sending order (`omega_bundle::Manifest::files`: the
/// manifest, the policy, each module once, the data files, the tools file), as the
/// coordinator is sent them with a placement (`omega_fleet::service::Request::Place`; it
/// hashes and checks them itself). Each file is a regular file (a symlink, FIFO or device
/// is refused before it is opened), read once, and the total is bounded by
/// `omega_bundle::MAX_TOTAL_BYTES` while reading.
pub fn bundle_files(
    dir: &std::path::Path,
) -> anyhow::Result<Vec<omega_fleet::service::BundleFile>> {
    use std::io::Read as _;
    let mut total: u64 = 0;
    let mut read = |name: &str| -> anyhow::Result<Vec<u8>> {
        let p = dir.join(name);
        // SECURITY: the path is the scheduler's word: nothing but a plain file is opened
        // (a FIFO would block the coordinator, a device could be endless).
        let meta = std::fs::symlink_metadata(&p).with_context(|| format!("{}", p.display()))?;
        if !meta.file_type().is_file() {
            bail!("{} is not a regular file", p.display());
        }
        let room = omega_bundle::MAX_TOTAL_BYTES - total;
        let mut bytes = Vec::new();
        std::fs::File::open(&p)
            .and_then(|f| f.take(room + 1).read_to_end(&mut bytes))
            .with_context(|| format!("{}", p.display()))?;
        total += bytes.len() as u64;
        if total > omega_bundle::MAX_TOTAL_BYTES {
            bail!(
                "{}: the bundle is larger than {} bytes",
                dir.display(),
                omega_bundle::MAX_TOTAL_BYTES
            );
        }
        Ok(bytes)
    };
    let manifest_bytes = read(omega_bundle::MANIFEST)?;
    let manifest = omega_bundle::Manifest::parse(&manifest_bytes)
        .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    let mut files = vec![omega_fleet::service::BundleFile {
        name: omega_bundle::MANIFEST.into(),
        bytes: manifest_bytes,
    }];
    for name in &manifest.files()[1..] {
        let bytes = read(name)?;
        files.push(omega_fleet::service::BundleFile {
            name: (*name).into(),
            bytes,
        });
    }
    Ok(files)
}
