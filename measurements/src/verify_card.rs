//! `measurements verify-card`: checks an Omega agent's signed A2A card
//! (`omega-agent-card`) against the monitor's evidence, so a remote A2A client learns that
//! the card was issued by this measured image for this module, not merely by whoever holds
//! a key:
//!
//! 1. the card decodes strictly (exactly what the monitor's card builder produces);
//! 2. `--card-key-evidence` (principal `card`) and `--evidence` (principal
//!    `agent:<card name>`) each verify as `verify-evidence` checks them, with the same pins
//!    ([`crate::verify_evidence::check`], not a second copy), and both come from one
//!    attestation (the same REPORT_DATA and attested root);
//! 3. the card's signature verifies with the card key of the verified `CardKey` claim (the
//!    key the card names is never trusted by itself);
//! 4. the card's boot id is the claim's, and its module SHA-256 and publisher are the
//!    agent claim's.
//!
//! Every check runs and prints one line; true = verified. See docs/agents.md.

use std::path::PathBuf;

use anyhow::bail;
use omega_agent_card::{MAX_CARD, SignedCard, hex};
use omega_evidence::{CARD_PRINCIPAL, Claim};

use crate::report_args::read;
use crate::verify_evidence::{self, EvidenceCheckArgs, EvidenceResult, Line};

#[derive(clap::Args, Debug)]
pub struct VerifyCardArgs {
    /// The agent's signed A2A card (`cards/AGENT.json` of the run).
    #[arg(long, value_name = "FILE")]
    pub card: PathBuf,
    /// The agent's evidence (principal `agent:AGENT`, `evidence/agent_AGENT.bin`): its
    /// module hash.
    #[arg(long, value_name = "FILE")]
    pub evidence: PathBuf,
    /// The card key's evidence (principal `card`, `evidence/card.bin`).
    #[arg(long, value_name = "FILE")]
    pub card_key_evidence: PathBuf,
    /// How the evidence is checked (the same flags as verify-evidence).
    #[command(flatten)]
    pub check: EvidenceCheckArgs,
}

/// What checking a card found.
pub struct CardResult {
    pub card: SignedCard,
    pub lines: Vec<Line>,
    pub warnings: Vec<String>,
    pub key_evidence: EvidenceResult,
}

impl CardResult {
    pub fn verified(&self) -> bool {
        !self.lines.is_empty() && self.lines.iter().all(|l| l.0)
    }
}

fn line(passed: bool, name: &str, msg: String) -> Line {
    (passed, name.to_string(), msg)
}

/// Verifies the card as `args` say. Unreadable or undecodable input (card or evidence), or
/// a missing pin, is an error; failed checks are lines of the result.
pub fn check(args: &VerifyCardArgs) -> anyhow::Result<CardResult> {
    let bytes = read(&args.card)?;
    if bytes.len() > MAX_CARD {
        bail!(
            "{}: {} bytes, larger than any card ({MAX_CARD})",
            args.card.display(),
            bytes.len()
        );
    }
    let card = SignedCard::decode(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not an Omega agent card: {e}", args.card.display()))?;
    // An instance's card (`NAME-i`) is vouched for by its agent's principal `agent:NAME`
    // (the decoder checked that the name is an instance of it).
    let agent_principal = format!("agent:{}", card.body.principal_agent());
    let key_ev = verify_evidence::check(&args.card_key_evidence, CARD_PRINCIPAL, &args.check)?;
    let agent_ev = verify_evidence::check(&args.evidence, &agent_principal, &args.check)?;

    let mut lines: Vec<Line> = Vec::new();
    for (tag, r) in [("card-key", &key_ev), ("agent", &agent_ev)] {
        lines.extend(
            r.lines
                .iter()
                .map(|(p, n, m)| (*p, format!("{tag} evidence {n}"), m.clone())),
        );
    }
    let mut warnings = key_ev.warnings.clone();
    warnings.extend(agent_ev.warnings.iter().cloned());
    // SECURITY: the two bundles must come from one attestation: the same report binding
    // (nonce, attested root, monitor key). Otherwise a card key from one boot could vouch
    // for a module hash from another.
    lines.push(
        if key_ev.expected_report_data == agent_ev.expected_report_data
            && key_ev.bundle.base_root == agent_ev.bundle.base_root
        {
            line(
                true,
                "evidence.same-attestation",
                format!(
                    "both bundles bind attested root {}",
                    hex(&key_ev.bundle.base_root)
                ),
            )
        } else {
            line(
                false,
                "evidence.same-attestation",
                "the card key's evidence and the agent's evidence come from different attestations (another boot or another nonce)".into(),
            )
        },
    );

    match &key_ev.claim {
        Some(Claim::CardKey { public, boot_id }) => {
            lines.push(match card.verify(public) {
                Ok(()) => line(
                    true,
                    "card.signature",
                    format!("EdDSA signature by the attested card key {}", hex(public)),
                ),
                Err(e) => line(false, "card.signature", e.to_string()),
            });
            lines.push(if &card.body.boot_id == boot_id {
                line(true, "card.boot_id", format!("boot {}", hex(boot_id)))
            } else {
                line(
                    false,
                    "card.boot_id",
                    format!(
                        "the card is from boot {}, the attested card key signs for boot {}",
                        hex(&card.body.boot_id),
                        hex(boot_id)
                    ),
                )
            });
        }
        _ => lines.push(line(
            false,
            "card.signature",
            format!(
                "no verified card key: {} holds no CardKey claim",
                args.card_key_evidence.display()
            ),
        )),
    }
    match &agent_ev.claim {
        Some(Claim::Agent {
            name,
            module_hash,
            publisher,
        }) => {
            lines.push(if module_hash == &card.body.module_hash {
                line(
                    true,
                    "card.module",
                    format!("module sha256:{}", hex(module_hash)),
                )
            } else {
                line(
                    false,
                    "card.module",
                    format!(
                        "the card names module sha256:{}, the evidence of agent:{name} attests sha256:{}",
                        hex(&card.body.module_hash),
                        hex(module_hash)
                    ),
                )
            });
            lines.push(if publisher == &card.body.publisher {
                line(true, "card.publisher", format!("publisher {publisher:?}"))
            } else {
                line(
                    false,
                    "card.publisher",
                    format!(
                        "the card names publisher {:?}, the evidence attests {publisher:?}",
                        card.body.publisher
                    ),
                )
            });
        }
        _ => lines.push(line(
            false,
            "card.module",
            format!(
                "no verified claim of {agent_principal} in {}",
                args.evidence.display()
            ),
        )),
    }
    Ok(CardResult {
        card,
        lines,
        warnings,
        key_evidence: key_ev,
    })
}

pub fn run(args: &VerifyCardArgs) -> anyhow::Result<bool> {
    let r = check(args)?;
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    for (passed, name, msg) in &r.lines {
        if !passed {
            println!("FAIL {name}: {msg}");
        }
    }
    let verified = r.verified();
    if verified {
        for (_, name, msg) in &r.lines {
            println!("PASS {name}: {msg}");
        }
        let b = &r.card.body;
        println!("tee: {}", r.key_evidence.tee);
        if let Some(m) = r.key_evidence.measurement {
            println!("measurement: {}", hex(&m));
        }
        println!("boot_id: {}", hex(&b.boot_id));
        println!("agent: {}", b.agent);
        println!("module: sha256:{}", hex(&b.module_hash));
        let skills: Vec<&str> = b.skills.iter().map(|s| s.id.as_str()).collect();
        println!("skills: {}", skills.join(", "));
        println!(
            "VERIFIED{} card of agent {}",
            r.key_evidence.qualifier(),
            b.agent
        );
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use omega_agent_card::{CardBody, CardKey};

    use super::*;
    use crate::verify_evidence::fixture::{self, BOOT_ID, MODULE};

    fn body() -> CardBody {
        CardBody {
            agent: "triage".into(),
            description: "d".into(),
            version: "1".into(),
            publisher: "acme".into(),
            skills: CardBody::default_skills("triage", "d"),
            module_hash: MODULE,
            boot_id: BOOT_ID,
            instance_of: None,
        }
    }

    /// Checks the card `key` signs over `body` against the fixture's simulated evidence;
    /// returns the names of the failed checks.
    fn failed(tag: &str, key: &CardKey, body: &CardBody) -> Vec<String> {
        let dir = fixture::simulated(tag);
        let card = dir.join("card.json");
        std::fs::write(&card, key.sign(body).unwrap()).unwrap();
        let r = check(&VerifyCardArgs {
            card,
            evidence: dir.join("agent_triage.ev"),
            card_key_evidence: dir.join("card.ev"),
            check: fixture::lab_args(),
        })
        .unwrap();
        r.lines
            .iter()
            .filter(|l| !l.0)
            .map(|l| l.1.clone())
            .collect()
    }

    #[test]
    fn verify_card_checks_key_boot_and_module_against_the_evidence() {
        assert!(failed("card-ok", &fixture::card_key(), &body()).is_empty());
        let other = CardKey::from_seed([0x77; 32]).unwrap();
        assert_eq!(failed("card-key", &other, &body()), ["card.signature"]);
        let mut b = body();
        b.module_hash = [0x3B; 32];
        assert_eq!(
            failed("card-mod", &fixture::card_key(), &b),
            ["card.module"]
        );
        let mut b = body();
        b.boot_id = [0xB1; 16];
        assert_eq!(
            failed("card-boot", &fixture::card_key(), &b),
            ["card.boot_id"]
        );
        let mut b = body();
        b.publisher = "mallory".into();
        assert_eq!(
            failed("card-pub", &fixture::card_key(), &b),
            ["card.publisher"]
        );
        // An instance's card (`triage-3`) is checked against its agent's evidence.
        let mut b = body();
        b.agent = "triage-3".into();
        b.instance_of = Some("triage".into());
        assert!(failed("card-inst", &fixture::card_key(), &b).is_empty());
        b.module_hash = [0x3B; 32];
        assert_eq!(
            failed("card-inst-mod", &fixture::card_key(), &b),
            ["card.module"]
        );
    }
}
