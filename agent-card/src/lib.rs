//! Attested A2A agent cards: the one definition of the card Omega's monitor publishes for
//! each agent it started, and of how a verifier decodes and checks one.
//!
//! Design principles:
//! * **An A2A v1.0 `AgentCard`**, signed as A2A says: an `AgentCardSignature` (JWS, RFC
//!   7515, detached payload) over the RFC 8785 (JCS) canonical form of the card without its
//!   `signatures` member. The algorithm is EdDSA (Ed25519, RFC 8037), with a monitor key
//!   that is used for nothing else ([`CardKey`]).
//! * **Attested, not merely signed.** The card key's public half is a claim of the
//!   monitor's attestation evidence (`omega_evidence::Claim::CardKey`, principal `card`,
//!   with this boot's id), and the card carries an Omega extension
//!   ([`EXTENSION_URI`] in `capabilities.extensions`) naming the agent's module SHA-256,
//!   the boot id and the card key. A verifier takes the key from verified evidence, never
//!   from the card, and compares the module hash with the agent's own evidence claim
//!   (`measurements verify-card`, docs/agents.md).
//! * **Strict.** [`SignedCard::decode`] parses a bounded JSON subset ([`json`]), accepts
//!   exactly one signature with exactly the header Omega writes, and accepts only a card
//!   that the builder here would produce byte for byte from its decoded fields: any extra
//!   member, reordered array or other value is refused, not ignored.
//! * `no_std` + `alloc`, no `unsafe`; the monitor builds and signs, the verifier decodes.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod b64;
pub mod json;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use json::Value;

/// Largest card (bytes of JSON) built or decoded.
pub const MAX_CARD: usize = 32 * 1024;
/// Most skills per card.
pub const MAX_SKILLS: usize = 16;
/// Most tags per skill.
pub const MAX_TAGS: usize = 8;
/// Longest skill id, tag or card version (bytes).
pub const MAX_ID: usize = 64;
/// Longest skill name or publisher (bytes).
pub const MAX_SKILL_NAME: usize = 128;
/// Longest agent or skill description (bytes).
pub const MAX_DESCRIPTION: usize = 512;
/// Longest agent name (bytes): the bundle's agent names fit (`omega_bundle::MAX_NAME`).
pub const MAX_AGENT_NAME: usize = 64;

/// The Omega extension's URI in `capabilities.extensions`.
pub const EXTENSION_URI: &str = "urn:omega:a2a:attested-card:v1";
/// The A2A protocol version the card describes.
pub const A2A_VERSION: &str = "1.0";
/// The card's one interface: agents are reached through the monitor's message path
/// (A2A-shaped `Message`s between agents, policy-checked), not over HTTP.
pub const PROTOCOL_BINDING: &str = "OMEGA-MONITOR";
/// Default input and output media type (agents exchange text parts).
pub const MEDIA_TYPE: &str = "text/plain";
/// The evidence principal whose claim holds the card key.
pub const CARD_KEY_PRINCIPAL: &str = "card";
/// JWS `alg` (RFC 8037).
pub const JWS_ALG: &str = "EdDSA";
/// Prefix of the JWS `kid`: `omega-card-key:<64 hex digits of the public key>`.
pub const KID_PREFIX: &str = "omega-card-key:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("card larger than {MAX_CARD} bytes")]
    TooLarge,
    #[error("card JSON at byte {at}: {what}")]
    Json { at: usize, what: &'static str },
    #[error("card: {0}")]
    Field(String),
    #[error(
        "card has members or values outside Omega's card contract (not what the monitor issues)"
    )]
    NotContract,
    #[error("all-zero card key seed (no entropy)")]
    ZeroSeed,
    #[error("the card names card key {card}, the attested card key is {attested}")]
    KeyMismatch { card: String, attested: String },
    #[error("the card's signature does not verify with the attested card key")]
    BadSignature,
}

fn field(what: impl Into<String>) -> CardError {
    CardError::Field(what.into())
}

/// One A2A `AgentSkill` as the bundle's manifest declares it (`skills` of an agent entry;
/// unknown fields refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skill {
    /// 1..=[`MAX_ID`] bytes of `[A-Za-z0-9._-]`, unique within the agent.
    pub id: String,
    /// 1..=[`MAX_SKILL_NAME`] bytes, no control characters.
    pub name: String,
    /// 1..=[`MAX_DESCRIPTION`] bytes, no control characters.
    pub description: String,
    /// At most [`MAX_TAGS`], each 1..=[`MAX_ID`] bytes, no control characters.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Card text: 1..=`max` bytes without control characters.
pub fn valid_text(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

fn id_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Skill {
    pub fn validate(&self) -> Result<(), CardError> {
        if !id_ok(&self.id, MAX_ID) {
            return Err(field(format!(
                "skill id {:?}: 1..={MAX_ID} bytes of [A-Za-z0-9._-]",
                self.id
            )));
        }
        if !valid_text(&self.name, MAX_SKILL_NAME) {
            return Err(field(format!(
                "skill {}: name must be 1..={MAX_SKILL_NAME} bytes without control characters",
                self.id
            )));
        }
        if !valid_text(&self.description, MAX_DESCRIPTION) {
            return Err(field(format!(
                "skill {}: description must be 1..={MAX_DESCRIPTION} bytes without control characters",
                self.id
            )));
        }
        if self.tags.len() > MAX_TAGS || !self.tags.iter().all(|t| valid_text(t, MAX_ID)) {
            return Err(field(format!(
                "skill {}: at most {MAX_TAGS} tags of 1..={MAX_ID} bytes without control characters",
                self.id
            )));
        }
        Ok(())
    }
}

/// Checks a list of skills: count, each skill, unique ids.
pub fn validate_skills(skills: &[Skill]) -> Result<(), CardError> {
    if skills.len() > MAX_SKILLS {
        return Err(field(format!("at most {MAX_SKILLS} skills")));
    }
    for (i, s) in skills.iter().enumerate() {
        s.validate()?;
        if skills[..i].iter().any(|o| o.id == s.id) {
            return Err(field(format!("skill id {} declared twice", s.id)));
        }
    }
    Ok(())
}

/// What a card says (everything but the key and the signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardBody {
    /// The agent's name in the manifest (the card's `name`).
    pub agent: String,
    pub description: String,
    pub version: String,
    pub publisher: String,
    pub skills: Vec<Skill>,
    /// SHA-256 of the agent's Wasm module (what the evidence's `agent:<name>` claim says).
    pub module_hash: [u8; 32],
    /// This boot's id (what the evidence's `card` claim says).
    pub boot_id: [u8; 16],
    /// For an instance (`NAME-i`, the manifest's `instances`): the agent `NAME` it is an
    /// instance of, whose evidence principal `agent:NAME` vouches for the module. `None`:
    /// the card's agent is its own principal.
    pub instance_of: Option<String>,
}

/// Whether `agent` names instance `i` of `of`: `OF-i` with `i` in decimal without leading
/// zeros (`w-0`, `w-17`, not `w-01` or `w-`).
pub fn is_instance_name(agent: &str, of: &str) -> bool {
    agent
        .strip_prefix(of)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|i| {
            !i.is_empty()
                && i.len() <= 10
                && i.bytes().all(|b| b.is_ascii_digit())
                && (i == "0" || !i.starts_with('0'))
        })
}

impl CardBody {
    /// The agent whose evidence principal (`agent:NAME`) vouches for this card's module:
    /// the card's own agent, or the agent it is an instance of.
    pub fn principal_agent(&self) -> &str {
        self.instance_of.as_deref().unwrap_or(&self.agent)
    }

    /// The description a card gets when the manifest gives none.
    pub fn default_description(agent: &str) -> String {
        format!("Omega agent {agent}")
    }

    /// The version a card gets when the manifest gives none: `sha256-` and the first 8
    /// bytes of the module hash in hex.
    pub fn default_version(module_hash: &[u8; 32]) -> String {
        format!("sha256-{}", hex(&module_hash[..8]))
    }

    /// The one skill a card gets when the manifest declares none (A2A requires at least
    /// one): the agent itself, described by the card's description.
    pub fn default_skills(agent: &str, description: &str) -> Vec<Skill> {
        vec![Skill {
            id: agent.into(),
            name: agent.into(),
            description: description.into(),
            tags: Vec::new(),
        }]
    }

    pub fn validate(&self) -> Result<(), CardError> {
        if self.skills.is_empty() {
            return Err(field(
                "a card has at least one skill (A2A: skills is required)",
            ));
        }
        if !id_ok(&self.agent, MAX_AGENT_NAME) {
            return Err(field(format!(
                "agent name {:?}: 1..={MAX_AGENT_NAME} bytes of [A-Za-z0-9._-]",
                self.agent
            )));
        }
        if let Some(of) = &self.instance_of
            && (!id_ok(of, MAX_AGENT_NAME) || !is_instance_name(&self.agent, of))
        {
            return Err(field(format!(
                "agent {:?} is not an instance NAME-i of {of:?}",
                self.agent
            )));
        }
        if !valid_text(&self.description, MAX_DESCRIPTION) {
            return Err(field(
                "description: 1..=512 bytes without control characters",
            ));
        }
        if !valid_text(&self.version, MAX_ID) {
            return Err(field("version: 1..=64 bytes without control characters"));
        }
        if !valid_text(&self.publisher, MAX_SKILL_NAME) {
            return Err(field("publisher: 1..=128 bytes without control characters"));
        }
        validate_skills(&self.skills)
    }

    /// The A2A `AgentCard` without `signatures`, naming `card_key`.
    pub fn unsigned(&self, card_key: &[u8; 32]) -> Value {
        let strs = |v: &[String]| Value::Array(v.iter().map(|s| Value::str(s)).collect());
        let skills = self
            .skills
            .iter()
            .map(|s| {
                let mut skill = Value::object([
                    ("id", Value::str(&s.id)),
                    ("name", Value::str(&s.name)),
                    ("description", Value::str(&s.description)),
                ]);
                // Empty lists are left out, as the A2A SDK's canonical form leaves them out
                // (proto JSON): a signature must verify there too.
                if let (Value::Object(m), false) = (&mut skill, s.tags.is_empty()) {
                    m.push(("tags".into(), strs(&s.tags)));
                }
                skill
            })
            .collect();
        let params = Value::object([
            ("agent", Value::str(&self.agent)),
            ("moduleSha256", Value::Str(hex(&self.module_hash))),
            ("publisher", Value::str(&self.publisher)),
            ("bootId", Value::Str(hex(&self.boot_id))),
            ("cardKey", Value::Str(hex(card_key))),
            ("cardKeyPrincipal", Value::str(CARD_KEY_PRINCIPAL)),
            (
                "modulePrincipal",
                Value::Str(format!("agent:{}", self.principal_agent())),
            ),
        ]);
        let extension = Value::object([
            ("uri", Value::str(EXTENSION_URI)),
            (
                "description",
                Value::str(
                    "Card issued by an attested Omega monitor: verify cardKey against the \
                     CardKey claim and moduleSha256 against the agent claim of the monitor's \
                     evidence (measurements verify-card)",
                ),
            ),
            // `required: false` is proto3's default: left out, as proto JSON leaves it out.
            ("params", params),
        ]);
        Value::object([
            ("name", Value::str(&self.agent)),
            ("description", Value::str(&self.description)),
            (
                "supportedInterfaces",
                Value::Array(vec![Value::object([
                    ("url", Value::Str(format!("omega://agents/{}", self.agent))),
                    ("protocolBinding", Value::str(PROTOCOL_BINDING)),
                    ("protocolVersion", Value::str(A2A_VERSION)),
                ])]),
            ),
            ("version", Value::str(&self.version)),
            (
                "capabilities",
                Value::object([
                    ("streaming", Value::Bool(false)),
                    ("pushNotifications", Value::Bool(false)),
                    ("extensions", Value::Array(vec![extension])),
                ]),
            ),
            (
                "defaultInputModes",
                Value::Array(vec![Value::str(MEDIA_TYPE)]),
            ),
            (
                "defaultOutputModes",
                Value::Array(vec![Value::str(MEDIA_TYPE)]),
            ),
            ("skills", Value::Array(skills)),
        ])
    }
}

/// The JWS protected header Omega writes for `card_key`.
fn protected_header(card_key: &[u8; 32]) -> Value {
    Value::object([
        ("alg", Value::str(JWS_ALG)),
        ("kid", Value::Str(format!("{KID_PREFIX}{}", hex(card_key)))),
    ])
}

fn signing_input(protected_b64: &str, canonical_unsigned: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(protected_b64.len() + 1 + canonical_unsigned.len() * 4 / 3 + 4);
    m.extend_from_slice(protected_b64.as_bytes());
    m.push(b'.');
    m.extend_from_slice(b64::encode(canonical_unsigned.as_bytes()).as_bytes());
    m
}

/// The monitor's card signing key (Ed25519), drawn at boot; separate from the log and
/// evidence keys, so no signature of one can stand for another.
pub struct CardKey {
    kp: ed25519_compact::KeyPair,
}

impl CardKey {
    /// SECURITY: an all-zero seed means the RNG failed: refused.
    pub fn from_seed(seed: [u8; 32]) -> Result<Self, CardError> {
        if seed == [0; 32] {
            return Err(CardError::ZeroSeed);
        }
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
        Ok(CardKey { kp })
    }

    pub fn public(&self) -> [u8; 32] {
        *self.kp.pk
    }

    /// The signed card: `body`'s A2A card with one `AgentCardSignature`, as canonical JSON.
    pub fn sign(&self, body: &CardBody) -> Result<String, CardError> {
        body.validate()?;
        let public = self.public();
        let mut card = body.unsigned(&public);
        let canonical = json::to_jcs(&card);
        let protected = b64::encode(json::to_jcs(&protected_header(&public)).as_bytes());
        let sig = self.kp.sk.sign(signing_input(&protected, &canonical), None);
        if let Value::Object(m) = &mut card {
            m.push((
                "signatures".into(),
                Value::Array(vec![Value::object([
                    ("protected", Value::Str(protected)),
                    ("signature", Value::Str(b64::encode(&sig[..]))),
                ])]),
            ));
        }
        let out = json::to_jcs(&card);
        if out.len() > MAX_CARD {
            return Err(CardError::TooLarge);
        }
        Ok(out)
    }
}

/// A decoded card: what it says, the key it names, and its signature (not yet checked:
/// see [`SignedCard::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCard {
    pub body: CardBody,
    /// The card key the card names (extension `cardKey` and JWS `kid`, which must agree).
    pub card_key: [u8; 32],
    signature: [u8; 64],
    signing_input: Vec<u8>,
}

fn get<'v>(v: &'v Value, key: &str, at: &str) -> Result<&'v Value, CardError> {
    v.get(key)
        .ok_or_else(|| field(format!("{at}: missing member {key}")))
}

fn get_str<'v>(v: &'v Value, key: &str, at: &str) -> Result<&'v str, CardError> {
    get(v, key, at)?
        .as_str()
        .ok_or_else(|| field(format!("{at}.{key}: not a string")))
}

fn get_array<'v>(v: &'v Value, key: &str, at: &str) -> Result<&'v [Value], CardError> {
    get(v, key, at)?
        .as_array()
        .ok_or_else(|| field(format!("{at}.{key}: not an array")))
}

fn hex_array<const N: usize>(s: &str, what: &str) -> Result<[u8; N], CardError> {
    let bad = || field(format!("{what}: not {} lowercase hex digits", 2 * N));
    if s.len() != 2 * N {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let d = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = (d(pair[0]).ok_or_else(bad)? << 4) | d(pair[1]).ok_or_else(bad)?;
    }
    Ok(out)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(H[usize::from(b >> 4)]));
        s.push(char::from(H[usize::from(b & 15)]));
    }
    s
}

impl SignedCard {
    /// Decodes a card strictly (see the crate docs). Errors name what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<SignedCard, CardError> {
        let mut card = json::parse(bytes, &json::CARD_LIMITS)?;
        let Value::Object(members) = &mut card else {
            return Err(field("not a JSON object"));
        };
        let pos = members
            .iter()
            .position(|(k, _)| k == "signatures")
            .ok_or_else(|| field("no signatures: the card is not signed"))?;
        let (_, sigs) = members.remove(pos);
        let [sig] = sigs
            .as_array()
            .ok_or_else(|| field("signatures: not an array"))?
        else {
            return Err(field("signatures: exactly one signature expected"));
        };
        let Value::Object(sm) = sig else {
            return Err(field("signatures[0]: not an object"));
        };
        if sm.len() != 2 {
            return Err(field(
                "signatures[0]: exactly the members protected and signature expected",
            ));
        }
        let protected = get_str(sig, "protected", "signatures[0]")?;
        let signature = b64::decode(get_str(sig, "signature", "signatures[0]")?)
            .and_then(|s| <[u8; 64]>::try_from(s).ok())
            .ok_or_else(|| field("signatures[0].signature: not 64 bytes of base64url"))?;
        let header_bytes = b64::decode(protected)
            .ok_or_else(|| field("signatures[0].protected: not base64url"))?;
        let header = json::parse(
            &header_bytes,
            &json::Limits {
                max_input: 512,
                max_depth: 2,
                max_string: 128,
                max_entries: 4,
            },
        )?;
        let alg = get_str(&header, "alg", "protected header")?;
        if alg != JWS_ALG {
            return Err(field(format!(
                "protected header: alg {alg:?}, only {JWS_ALG} (Ed25519) is accepted"
            )));
        }
        let kid = get_str(&header, "kid", "protected header")?;
        let kid_key = kid
            .strip_prefix(KID_PREFIX)
            .ok_or_else(|| {
                field(format!(
                    "protected header: kid must start with {KID_PREFIX}"
                ))
            })
            .and_then(|h| hex_array::<32>(h, "protected header kid"))?;
        if json::to_jcs(&header) != json::to_jcs(&protected_header(&kid_key)) {
            return Err(field(
                "protected header: exactly the members alg and kid expected",
            ));
        }

        // The fields, then the whole card rebuilt from them must be what arrived.
        let at = "card";
        let caps = get(&card, "capabilities", at)?;
        let exts = get_array(caps, "extensions", "capabilities")?;
        let ext = exts
            .iter()
            .find(|e| e.get("uri").and_then(Value::as_str) == Some(EXTENSION_URI))
            .ok_or_else(|| {
                field(format!(
                    "no Omega extension ({EXTENSION_URI}) in capabilities.extensions: not an attested card"
                ))
            })?;
        let params = get(ext, "params", "extension")?;
        let card_key = hex_array::<32>(get_str(params, "cardKey", "params")?, "params.cardKey")?;
        if card_key != kid_key {
            return Err(field(
                "the JWS kid and the extension's cardKey name different keys",
            ));
        }
        let skills = get_array(&card, "skills", at)?
            .iter()
            .map(|s| {
                Ok(Skill {
                    id: get_str(s, "id", "skill")?.into(),
                    name: get_str(s, "name", "skill")?.into(),
                    description: get_str(s, "description", "skill")?.into(),
                    tags: s
                        .get("tags")
                        .map(|_| get_array(s, "tags", "skill"))
                        .transpose()?
                        .unwrap_or_default()
                        .iter()
                        .map(|t| {
                            t.as_str()
                                .map(ToString::to_string)
                                .ok_or_else(|| field("skill tag: not a string"))
                        })
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<Vec<_>, CardError>>()?;
        let body = CardBody {
            agent: get_str(&card, "name", at)?.into(),
            description: get_str(&card, "description", at)?.into(),
            version: get_str(&card, "version", at)?.into(),
            publisher: get_str(params, "publisher", "params")?.into(),
            skills,
            module_hash: hex_array(
                get_str(params, "moduleSha256", "params")?,
                "params.moduleSha256",
            )?,
            boot_id: hex_array(get_str(params, "bootId", "params")?, "params.bootId")?,
            instance_of: None,
        };
        let mut body = body;
        let principal = get_str(params, "modulePrincipal", "params")?
            .strip_prefix("agent:")
            .ok_or_else(|| field("params.modulePrincipal: not agent:NAME"))?;
        if principal != body.agent {
            body.instance_of = Some(principal.into());
        }
        if get_str(params, "agent", "params")? != body.agent {
            return Err(field("params.agent differs from the card's name"));
        }
        body.validate()?;
        let canonical = json::to_jcs(&card);
        // SECURITY: only what the monitor's builder produces is accepted; a member added,
        // dropped or changed anywhere (even outside the fields read above) is refused.
        if canonical != json::to_jcs(&body.unsigned(&card_key)) {
            return Err(CardError::NotContract);
        }
        Ok(SignedCard {
            body,
            card_key,
            signature,
            signing_input: signing_input(protected, &canonical),
        })
    }

    /// Checks the signature with `attested_key` (the card key from verified evidence):
    /// the card must name that key and its signature must verify with it.
    pub fn verify(&self, attested_key: &[u8; 32]) -> Result<(), CardError> {
        if &self.card_key != attested_key {
            return Err(CardError::KeyMismatch {
                card: hex(&self.card_key),
                attested: hex(attested_key),
            });
        }
        let pk = ed25519_compact::PublicKey::new(*attested_key);
        pk.verify(
            &self.signing_input,
            &ed25519_compact::Signature::new(self.signature),
        )
        .map_err(|_| CardError::BadSignature)
    }

    /// The JWS signing input (`BASE64URL(protected) . BASE64URL(JCS(card without
    /// signatures))`), for tests and other verifiers.
    pub fn signing_input(&self) -> &[u8] {
        &self.signing_input
    }
}
