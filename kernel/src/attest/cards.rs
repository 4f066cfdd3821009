//! The monitor's attested A2A agent cards (`omega-agent-card`), the pure half: one card per
//! started agent, built from its manifest entry (description, version, skills, publisher)
//! and its module's SHA-256, signed with the card key whose public half is the evidence's
//! `CardKey` claim (principal `card`) for this boot. `services/agents.rs` sends each card
//! to the host (`ControlMsg::AgentCard`), which stores it as `cards/<agent>.json`.
//!
//! SECURITY: the card key is drawn at boot for this purpose only (not the log key, not the
//! evidence key): a card signature can never stand for a checkpoint or a root update, nor
//! the other way round.

use alloc::string::String;

use omega_agent_card::{CardBody, CardError, CardKey};
use omega_bundle::AgentEntry;

use super::{BOOT_ID_LEN, NO_PUBLISHER};

// Every agent name a bundle may carry is a valid card name.
const _: () = assert!(omega_bundle::MAX_NAME <= omega_agent_card::MAX_AGENT_NAME);

/// What a card says about `entry`, whose module hashes to `module_hash`, in boot `boot_id`:
/// the manifest's description, version and skills, or the card contract's defaults (one
/// skill, the agent itself, when the manifest declares none).
pub fn body(entry: &AgentEntry, module_hash: [u8; 32], boot_id: [u8; BOOT_ID_LEN]) -> CardBody {
    let description = entry
        .description
        .clone()
        .unwrap_or_else(|| CardBody::default_description(&entry.name));
    CardBody {
        agent: entry.name.clone(),
        skills: if entry.skills.is_empty() {
            CardBody::default_skills(&entry.name, &description)
        } else {
            entry.skills.clone()
        },
        description,
        version: entry
            .version
            .clone()
            .unwrap_or_else(|| CardBody::default_version(&module_hash)),
        publisher: entry
            .publisher
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| NO_PUBLISHER.into()),
        module_hash,
        boot_id,
        instance_of: None,
    }
}

/// The card key of one boot.
pub struct CardIssuer {
    key: CardKey,
    boot_id: [u8; BOOT_ID_LEN],
}

impl CardIssuer {
    /// `seed`: the card key seed drawn at boot (an all-zero seed is refused).
    pub fn new(seed: [u8; 32], boot_id: [u8; BOOT_ID_LEN]) -> Result<Self, CardError> {
        Ok(CardIssuer {
            key: CardKey::from_seed(seed)?,
            boot_id,
        })
    }

    /// The public key the evidence's `CardKey` claim carries.
    pub fn public(&self) -> [u8; 32] {
        self.key.public()
    }

    /// The signed card (canonical JSON) of `entry` with module hash `module_hash`.
    pub fn card(&self, entry: &AgentEntry, module_hash: [u8; 32]) -> Result<String, CardError> {
        self.key.sign(&body(entry, module_hash, self.boot_id))
    }

    /// The signed card of agent `name` run from `entry`: the entry's own card when `name`
    /// is the entry's name, otherwise the card of its instance `name` (`NAME-i`), which
    /// names `agent:NAME` as the principal vouching for its module.
    pub fn card_as(
        &self,
        name: &str,
        entry: &AgentEntry,
        module_hash: [u8; 32],
    ) -> Result<String, CardError> {
        if name == entry.name {
            return self.card(entry, module_hash);
        }
        let mut instance = entry.clone();
        instance.name = name.into();
        let mut body = body(&instance, module_hash, self.boot_id);
        body.instance_of = Some(entry.name.clone());
        self.key.sign(&body)
    }
}
