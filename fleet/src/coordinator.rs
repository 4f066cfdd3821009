//! The coordinator's state and operations: the policy (owner-signed updates), challenges
//! issued as signed placements, admission, credentials and route decisions. The caller
//! supplies time and randomness (a host process today, the monitor later).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::admission::{self, Attested, Challenges, Pending, Refusal};
use crate::credential::{CREDENTIAL_FORMAT, Credential};
use crate::placement::{PLACEMENT_FORMAT, Placement};
use crate::policy::{AgentPin, FleetPolicy, PolicyError, PolicyStore};
use crate::route::{Decision, authorize};
use crate::signed::SigningKey;
use crate::{Time, name_ok};

/// Why the coordinator would not sign a placement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("no fleet policy is loaded")]
    NoPolicy,
    #[error("workload or node name {0:?} is not a fleet name")]
    Name(String),
    #[error("no allowed image may take role {0:?}")]
    Role(String),
    #[error("agent {0:?} is not pinned by the fleet policy (name, publisher and module hash)")]
    Agent(String),
    #[error(transparent)]
    Challenge(#[from] Refusal),
    #[error("time overflow")]
    Time,
}

/// An admitted node: its credential (signed bytes and decoded).
#[derive(Debug, Clone)]
pub struct Admitted {
    pub credential: Credential,
    pub signed: Vec<u8>,
    /// The image rule that admitted it.
    pub image: String,
}

pub struct Coordinator {
    key: SigningKey,
    policy: PolicyStore,
    challenges: Challenges,
    next_serial: u64,
}

impl Coordinator {
    /// `policy_seen`: the highest policy version applied before (persisted; 0 for none).
    pub fn new(key: SigningKey, owner: [u8; 32], policy_seen: u64) -> Self {
        Coordinator {
            key,
            policy: PolicyStore::new(owner, policy_seen),
            challenges: Challenges::default(),
            next_serial: 1,
        }
    }

    pub fn public(&self) -> [u8; 32] {
        self.key.public()
    }

    /// The owner whose signed policies (and endorsements) this coordinator takes.
    pub fn owner(&self) -> [u8; 32] {
        *self.policy.owner()
    }

    pub fn policy(&self) -> Option<&FleetPolicy> {
        self.policy.current()
    }

    /// The highest policy version applied (persist it).
    pub fn policy_seen(&self) -> u64 {
        self.policy.seen()
    }

    /// Applies an owner-signed policy update.
    pub fn update_policy(&mut self, signed: &[u8]) -> Result<&FleetPolicy, PolicyError> {
        self.policy.apply(signed)
    }

    /// Signs a placement of a bundle (manifest digest, its agents) on `node_id` in `role`,
    /// with `nonce` (fresh from the caller's RNG) as the node's challenge.
    #[allow(clippy::too_many_arguments)]
    pub fn place(
        &mut self,
        workload: &str,
        node_id: &str,
        role: &str,
        bundle_digest: [u8; 32],
        agents: &[AgentPin],
        nonce: [u8; 32],
        now: Time,
    ) -> Result<Vec<u8>, PlaceError> {
        let p = self.policy.current().ok_or(PlaceError::NoPolicy)?;
        for n in [workload, node_id] {
            if !name_ok(n) {
                return Err(PlaceError::Name(n.to_string()));
            }
        }
        if !p.has_role(role) {
            return Err(PlaceError::Role(role.to_string()));
        }
        // SECURITY: a bundle is placed only if every agent in it is pinned exactly.
        if let Some(a) = agents.iter().find(|a| p.agent(&a.name) != Some(*a)) {
            return Err(PlaceError::Agent(a.name.clone()));
        }
        let expires_at = now
            .checked_add(u64::from(p.challenge_lifetime_s))
            .ok_or(PlaceError::Time)?;
        let placement = Placement {
            format: PLACEMENT_FORMAT,
            fleet_id: p.fleet_id.clone(),
            workload: workload.into(),
            node_id: node_id.into(),
            role: role.into(),
            bundle_digest,
            nonce,
            issued_at: now,
            expires_at,
            policy_version: p.version,
        };
        let signed = placement.sign(&self.key).map_err(|_| PlaceError::Time)?;
        self.challenges.issue(
            Pending {
                nonce,
                node_id: node_id.into(),
                role: role.into(),
                bundle_digest,
                expires_at,
            },
            now,
        )?;
        Ok(signed)
    }

    /// Admits the node whose verified evidence answers the challenge `nonce`: spends the
    /// nonce (whatever the outcome), checks the evidence against the policy and signs a
    /// credential for its key.
    pub fn admit(
        &mut self,
        nonce: &[u8; 32],
        a: &Attested,
        now: Time,
    ) -> Result<Admitted, Refusal> {
        let pending = self.challenges.take(nonce, now)?;
        let p = self.policy.current().ok_or(Refusal::NoPolicy)?;
        let image = admission::check(p, a, &pending)?;
        let credential = Credential {
            format: CREDENTIAL_FORMAT,
            fleet_id: p.fleet_id.clone(),
            node_id: pending.node_id,
            role: pending.role,
            node_key: a.node_key,
            // SECURITY: the channel key is only ever an attested one: the `peer` claim of the
            // same evidence tree, or a non-Omega guest's bound key.
            peer_key: match a.binding {
                crate::Binding::OmegaEvidence { .. } => a.peer_key,
                crate::Binding::Direct => Some(a.node_key),
            },
            tee: a.tee,
            launch_digest: a.measurement.clone(),
            not_before: now,
            not_after: now.saturating_add(u64::from(p.credential_lifetime_s)),
            serial: self.next_serial,
            policy_version: p.version,
        };
        let image = image.name.clone();
        let signed = credential
            .sign(&self.key)
            .map_err(|_| Refusal::Credential)?;
        self.next_serial = self.next_serial.saturating_add(1);
        Ok(Admitted {
            credential,
            signed,
            image,
        })
    }

    /// Spends the challenge `nonce` without admitting (evidence that failed its chain check
    /// before it could be mapped): a challenge is used once whatever the outcome.
    pub fn spend(&mut self, nonce: &[u8; 32], now: Time) -> Result<(), Refusal> {
        self.challenges.take(nonce, now).map(|_| ())
    }

    /// Decides a cross-image message between two credentials (verified with this
    /// coordinator's key at `now` first).
    pub fn authorize(
        &self,
        from: &[u8],
        from_agent: &str,
        to: &[u8],
        to_agent: &str,
        now: Time,
    ) -> Result<Decision, crate::credential::CredentialError> {
        let pk = self.public();
        let f = Credential::verify(from, &pk, now)?;
        let t = Credential::verify(to, &pk, now)?;
        let Some(p) = self.policy.current() else {
            return Ok(Decision {
                allowed: false,
                rule: crate::route::Rule::DefaultDeny,
            });
        };
        Ok(authorize(p, &f, from_agent, &t, to_agent))
    }

    pub fn outstanding_challenges(&self) -> usize {
        self.challenges.outstanding()
    }
}
