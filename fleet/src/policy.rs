//! The fleet policy: what the coordinator admits and authorizes, in one canonical postcard
//! form (every list strictly sorted, so one policy has one encoding and one digest), and
//! owner-signed updates whose version strictly grows (an old policy replayed is refused).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::signed::{POLICY_TAG, SigningKey, decode_body, open};
use crate::{DecodeError, MEASUREMENT_LEN, Tee, name_ok};

/// Format of [`FleetPolicy`].
pub const POLICY_FORMAT: u8 = 2;
/// Largest signed policy accepted.
pub const MAX_POLICY: usize = 64 * 1024;
/// Most images, agents, routes or roles in one policy.
pub const MAX_ITEMS: usize = 256;
/// The route wildcard: any pinned agent of the role.
pub const ANY_AGENT: &str = "*";
/// Longest credential a policy may ask for (a day) and longest challenge (an hour).
pub const MAX_CREDENTIAL_LIFETIME: u32 = 86_400;
pub const MAX_CHALLENGE_LIFETIME: u32 = 3_600;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FleetPolicy {
    pub format: u8,
    pub fleet_id: String,
    /// Strictly increasing across updates.
    pub version: u64,
    /// When the owner signed it (Unix seconds, the owner's clock): the in-image coordinator's
    /// time anchor ([`crate::service`]: a lower bound of the true time that the host cannot
    /// move), so it is signed with everything else.
    pub issued_at: u64,
    /// Admit `Tee::Simulated` images (lab tests only; never in production).
    pub allow_simulated: bool,
    /// Allowed launch digests: sorted, unique.
    pub images: Vec<ImageRule>,
    /// Minimum SNP REPORTED_TCB (each component; 0 = no minimum).
    pub min_snp_tcb: SnpTcb,
    /// Admit TDX platforms Intel rates other than UpToDate.
    pub allow_tdx_out_of_date: bool,
    /// The agents a placed bundle may carry: sorted by name, unique names.
    pub agents: Vec<AgentPin>,
    /// Cross-image routes: sorted, unique. Anything not listed is refused.
    pub routes: Vec<Route>,
    pub credential_lifetime_s: u32,
    pub challenge_lifetime_s: u32,
    /// AWS's Nitro Enclaves root certificate (DER) the owner trusts for Nitro nodes; empty:
    /// Nitro evidence is refused. In the signed policy, so an in-image coordinator needs no
    /// copy of its own and the host cannot swap it.
    pub nitro_root: Vec<u8>,
}

/// Largest [`FleetPolicy::nitro_root`].
pub const MAX_ROOT: usize = 4096;

/// One allowed image: a launch measurement under a TEE, for a VM shape, and the roles a node
/// running it may take.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ImageRule {
    pub tee: Tee,
    pub measurement: Vec<u8>,
    pub name: String,
    pub shape: Shape,
    /// Sorted, unique.
    pub roles: Vec<String>,
}

/// The VM shape the measurement stands for (for SNP the vCPU count and type are inside the
/// launch digest; the policy names them so an operator sees which shape a digest is).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shape {
    pub vcpus: u32,
    pub vcpu_type: String,
    pub memory_mib: u32,
}

/// SNP TCB components (`REPORTED_TCB`); `fmc` exists on Turin only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SnpTcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    pub fmc: Option<u8>,
}

/// An agent a bundle may carry: its publisher and module hash (SHA-256 of the Wasm).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AgentPin {
    pub name: String,
    pub publisher: String,
    pub module_hash: [u8; 32],
}

/// `role/agent` endpoint of a route; `agent` may be [`ANY_AGENT`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    pub role: String,
    pub agent: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Route {
    pub from: Endpoint,
    pub to: Endpoint,
}

fn invalid(why: String) -> DecodeError {
    DecodeError::Invalid {
        what: "fleet policy",
        why,
    }
}

fn strictly_sorted<T: Ord>(v: &[T]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

impl FleetPolicy {
    /// Sorts and deduplicates every list (the source form's order does not matter).
    pub fn canonicalize(&mut self) {
        for i in &mut self.images {
            i.roles.sort();
            i.roles.dedup();
        }
        self.images.sort();
        self.images.dedup();
        self.agents.sort();
        self.agents.dedup();
        self.routes.sort();
        self.routes.dedup();
    }

    /// Every structural rule, including canonical order.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.format != POLICY_FORMAT {
            return Err(invalid(format!("unknown format {}", self.format)));
        }
        if !name_ok(&self.fleet_id) {
            return Err(invalid(format!("fleet id {:?}", self.fleet_id)));
        }
        if self.images.len() > MAX_ITEMS
            || self.agents.len() > MAX_ITEMS
            || self.routes.len() > MAX_ITEMS
        {
            return Err(invalid(format!("more than {MAX_ITEMS} entries in a list")));
        }
        if !(1..=MAX_CREDENTIAL_LIFETIME).contains(&self.credential_lifetime_s)
            || !(1..=MAX_CHALLENGE_LIFETIME).contains(&self.challenge_lifetime_s)
        {
            return Err(invalid("lifetimes out of range".into()));
        }
        for i in &self.images {
            if i.measurement.len() != MEASUREMENT_LEN {
                return Err(invalid(format!(
                    "image {:?}: measurement must be {MEASUREMENT_LEN} bytes",
                    i.name
                )));
            }
            if !name_ok(&i.name) || !name_ok(&i.shape.vcpu_type) || i.shape.vcpus == 0 {
                return Err(invalid(format!("image {:?}: name or shape", i.name)));
            }
            if i.roles.is_empty()
                || i.roles.len() > MAX_ITEMS
                || !i.roles.iter().all(|r| name_ok(r))
                || !strictly_sorted(&i.roles)
            {
                return Err(invalid(format!("image {:?}: roles", i.name)));
            }
            if i.tee == Tee::Simulated && !self.allow_simulated {
                return Err(invalid(format!(
                    "image {:?} is for the simulated PSP but allow_simulated is off",
                    i.name
                )));
            }
        }
        for a in &self.agents {
            if !name_ok(&a.name) || !name_ok(&a.publisher) {
                return Err(invalid(format!("agent pin {:?}", a.name)));
            }
        }
        if self.agents.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(invalid("agent pins not sorted by unique name".into()));
        }
        for r in &self.routes {
            for e in [&r.from, &r.to] {
                if !name_ok(&e.role) || !(e.agent == ANY_AGENT || name_ok(&e.agent)) {
                    return Err(invalid(format!("route endpoint {}/{}", e.role, e.agent)));
                }
            }
        }
        if self.nitro_root.len() > MAX_ROOT {
            return Err(invalid(format!("nitro_root larger than {MAX_ROOT} bytes")));
        }
        if !strictly_sorted(&self.images) || !strictly_sorted(&self.routes) {
            return Err(invalid("images or routes not in canonical order".into()));
        }
        Ok(())
    }

    /// The canonical encoding (refuses a policy that is not valid and canonical).
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        self.validate()?;
        postcard::to_allocvec(self).map_err(|_| invalid("encoding".into()))
    }

    /// Strict decode of the canonical form (unsigned; see [`PolicyStore::apply`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_POLICY {
            return Err(DecodeError::TooLarge("fleet policy"));
        }
        let p: FleetPolicy = decode_body(bytes, "fleet policy")?;
        // SECURITY: one policy, one encoding (no overlong varints or other aliases), so its
        // bytes' digest names it.
        if p.encode()? != bytes {
            return Err(invalid("not the canonical encoding".into()));
        }
        Ok(p)
    }

    /// The owner's signed form of this policy.
    pub fn sign(&self, owner: &SigningKey) -> Result<Vec<u8>, DecodeError> {
        Ok(owner.seal(POLICY_TAG, self.encode()?))
    }

    /// The agent pin of `name`.
    pub fn agent(&self, name: &str) -> Option<&AgentPin> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// The image rule that allows `measurement` under `tee`.
    pub fn image(&self, tee: Tee, measurement: &[u8]) -> Option<&ImageRule> {
        self.images
            .iter()
            .find(|i| i.tee == tee && i.measurement == measurement)
    }

    /// Whether any allowed image may take `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.images
            .iter()
            .any(|i| i.roles.iter().any(|r| r == role))
    }
}

/// Why a policy update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("policy version {offered} is not above the current {current} (replayed or stale)")]
    NotNewer { offered: u64, current: u64 },
    #[error("policy is for fleet {offered:?}, this coordinator serves {current:?}")]
    OtherFleet { offered: String, current: String },
}

/// The coordinator's current policy and the owner key updates must be signed by.
pub struct PolicyStore {
    owner: [u8; 32],
    /// The highest version applied so far (persisted by the host across restarts).
    seen: u64,
    current: Option<FleetPolicy>,
}

impl PolicyStore {
    /// `seen`: the highest policy version this coordinator ever applied (0 for none), so a
    /// restarted coordinator still refuses an old policy replayed to it.
    pub fn new(owner: [u8; 32], seen: u64) -> Self {
        PolicyStore {
            owner,
            seen,
            current: None,
        }
    }

    /// The highest version applied (what the host persists).
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn owner(&self) -> &[u8; 32] {
        &self.owner
    }

    pub fn current(&self) -> Option<&FleetPolicy> {
        self.current.as_ref()
    }

    /// Applies a signed policy: the owner's signature, canonical form, same fleet, a version
    /// strictly above the current one.
    pub fn apply(&mut self, signed: &[u8]) -> Result<&FleetPolicy, PolicyError> {
        let body = open(signed, MAX_POLICY, POLICY_TAG, &self.owner, "fleet policy")?;
        let p = FleetPolicy::decode(&body)?;
        if let Some(cur) = self.current.as_ref().filter(|c| c.fleet_id != p.fleet_id) {
            return Err(PolicyError::OtherFleet {
                offered: p.fleet_id,
                current: cur.fleet_id.clone(),
            });
        }
        // SECURITY: strictly increasing versions: an old (e.g. laxer) policy replayed by
        // the host is refused, also after a restart (`seen` is persisted).
        if p.version <= self.seen {
            return Err(PolicyError::NotNewer {
                offered: p.version,
                current: self.seen,
            });
        }
        self.seen = p.version;
        Ok(self.current.insert(p))
    }
}
