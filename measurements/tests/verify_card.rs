//! `measurements verify-card` through the binary: a simulated run's card verifies against
//! its evidence (lab root, pinned measurement, nonce), and every forgery is refused with the
//! check that caught it: a card signed by another key, a module hash that is not the
//! agent's, a card from another boot, edited skills, evidence from another attestation, a
//! card for an agent the evidence does not name, and input that is not a card.

mod common;

use std::path::Path;

use common::*;
use omega_agent_card::{CardBody, CardKey, Skill};
use omega_evidence::{Claim, Issuer};
use omega_sim_psp::SimPsp;

const MEASUREMENT: [u8; 48] = [0x6D; 48];
const MODULE: [u8; 32] = [0x3A; 32];
const BOOT_ID: [u8; 16] = [0x0B; 16];
const CARD_SEED: [u8; 32] = [0xCA; 32];

/// A simulated run's evidence in `dir` (`card.bin`, `agent_triage.bin`, `agent_other.bin`)
/// under `nonce`, the card key drawn from `card_seed`, for boot `boot_id`.
fn evidence(dir: &Path, file_tag: &str, nonce: [u8; 32], card_seed: [u8; 32], boot_id: [u8; 16]) {
    let mut iss = Issuer::new([8; 32]).unwrap();
    let claims = [
        Claim::Platform {
            tee: "simulated".into(),
            boot_id,
        },
        Claim::CardKey {
            public: CardKey::from_seed(card_seed).unwrap().public(),
            boot_id,
        },
        Claim::Agent {
            name: "triage".into(),
            module_hash: MODULE,
            publisher: "Acme Health".into(),
        },
        Claim::Agent {
            name: "other".into(),
            module_hash: [0x3B; 32],
            publisher: "Acme Health".into(),
        },
    ];
    for (i, c) in claims.into_iter().enumerate() {
        iss.add(c, [i as u8 + 1; 32]).unwrap();
    }
    let rd = iss.attest(nonce).unwrap();
    let report = SimPsp::new(MEASUREMENT).report(rd, 0).to_vec();
    for (p, f) in [
        ("card", "card"),
        ("agent:triage", "agent_triage"),
        ("agent:other", "agent_other"),
    ] {
        let b = iss.bundle(p, Some(report.clone()), None).unwrap();
        std::fs::write(dir.join(format!("{f}{file_tag}.bin")), b.encode().unwrap()).unwrap();
    }
}

fn body() -> CardBody {
    CardBody {
        agent: "triage".into(),
        description: "Ranks records by urgency".into(),
        version: "1.0.0".into(),
        publisher: "Acme Health".into(),
        skills: vec![Skill {
            id: "triage".into(),
            name: "Triage records".into(),
            description: "Ranks labelled records".into(),
            tags: vec!["health".into()],
        }],
        module_hash: MODULE,
        boot_id: BOOT_ID,
        instance_of: None,
    }
}

fn write_card(dir: &Path, name: &str, seed: [u8; 32], body: &CardBody) -> String {
    let card = CardKey::from_seed(seed).unwrap().sign(body).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, card).unwrap();
    path_str(&p)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

struct Run {
    dir: std::path::PathBuf,
    nonce: String,
    m: String,
}

impl Run {
    fn new(tag: &str) -> Run {
        let dir = scratch(&format!("card-{tag}"));
        let nonce = [0x5C; 32];
        evidence(&dir, "", nonce, CARD_SEED, BOOT_ID);
        Run {
            dir,
            nonce: hex::encode(nonce),
            m: hex::encode(MEASUREMENT),
        }
    }

    fn p(&self, n: &str) -> String {
        path_str(&self.dir.join(n))
    }

    fn verify_with(&self, card: &str, agent_ev: &str, key_ev: &str) -> std::process::Output {
        let (agent_ev, key_ev) = (self.p(agent_ev), self.p(key_ev));
        measurements(&[
            "verify-card",
            "--card",
            card,
            "--evidence",
            &agent_ev,
            "--card-key-evidence",
            &key_ev,
            "--nonce",
            &self.nonce,
            "--lab-root",
            "--expect-measurement",
            &self.m,
        ])
    }

    fn verify(&self, card: &str) -> std::process::Output {
        self.verify_with(card, "agent_triage.bin", "card.bin")
    }
}

/// Exit 1 with exactly `fails` as the FAIL lines (in order of their names).
fn refused(o: &std::process::Output, fails: &[&str]) {
    let out = stdout(o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let got: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL "))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(got, fails, "{out}");
    assert!(!out.contains("VERIFIED"), "{out}");
}

#[test]
fn a_simulated_runs_card_verifies_against_its_evidence() {
    let r = Run::new("ok");
    let card = write_card(&r.dir, "triage.json", CARD_SEED, &body());
    let o = r.verify(&card);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for l in [
        "PASS card-key evidence principal:",
        "PASS agent evidence principal:",
        "PASS card-key evidence report.signature:",
        "PASS evidence.same-attestation:",
        "PASS card.signature: EdDSA signature by the attested card key",
        "PASS card.boot_id: boot 0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
        &format!("PASS card.module: module sha256:{}", hex::encode(MODULE)),
        "PASS card.publisher: publisher \"Acme Health\"",
        "\ntee: simulated\n",
        &format!("\nmeasurement: {}\n", r.m),
        "\nagent: triage\n",
        "\nskills: triage\n",
    ] {
        assert!(out.contains(l), "{l}: {out}");
    }
    assert!(
        out.ends_with("VERIFIED (SIMULATED PLATFORM) card of agent triage\n"),
        "{out}"
    );
    // Without a pinned root and measurement the command is a usage error, as
    // verify-evidence is.
    let (ev, key) = (r.p("agent_triage.bin"), r.p("card.bin"));
    let o = measurements(&[
        "verify-card",
        "--card",
        &card,
        "--evidence",
        &ev,
        "--card-key-evidence",
        &key,
        "--nonce",
        &r.nonce,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
}

#[test]
fn forged_cards_are_refused_by_the_check_that_catches_them() {
    let r = Run::new("forged");
    // Signed by another key (which the card names honestly).
    let other_key = write_card(&r.dir, "other-key.json", [0x0E; 32], &body());
    let o = r.verify(&other_key);
    refused(&o, &["card.signature"]);
    assert!(
        stdout(&o).contains("the card names card key"),
        "{}",
        stdout(&o)
    );

    // Signed by another key while naming the attested one: the signature fails.
    let genuine =
        std::fs::read_to_string(write_card(&r.dir, "g.json", CARD_SEED, &body())).unwrap();
    let forged = std::fs::read_to_string(&other_key).unwrap();
    let attested_hex = hex::encode(CardKey::from_seed(CARD_SEED).unwrap().public());
    let other_hex = hex::encode(CardKey::from_seed([0x0E; 32]).unwrap().public());
    let p = r.dir.join("claims-attested.json");
    std::fs::write(
        &p,
        forged.replace(&other_hex, &attested_hex).replace(
            &signature_header(&other_hex),
            &signature_header(&attested_hex),
        ),
    )
    .unwrap();
    refused(&r.verify(&path_str(&p)), &["card.signature"]);

    // A swapped module hash: an edit breaks the signature; a card genuinely signed for
    // another module (e.g. an older boot's) fails the module check against the evidence.
    let p = r.dir.join("edited-module.json");
    std::fs::write(
        &p,
        genuine.replace(&hex::encode(MODULE), &hex::encode([0x3C; 32])),
    )
    .unwrap();
    refused(&r.verify(&path_str(&p)), &["card.signature", "card.module"]);
    let mut b = body();
    b.module_hash = [0x3C; 32];
    let swapped = write_card(&r.dir, "swapped.json", CARD_SEED, &b);
    let o = r.verify(&swapped);
    refused(&o, &["card.module"]);
    assert!(
        stdout(&o).contains("the evidence of agent:triage attests"),
        "{}",
        stdout(&o)
    );

    // Edited skills.
    let p = r.dir.join("edited-skills.json");
    std::fs::write(
        &p,
        genuine.replace("Ranks labelled records", "Sends records anywhere"),
    )
    .unwrap();
    refused(&r.verify(&path_str(&p)), &["card.signature"]);

    // A card from another boot: another boot's key, or this key with another boot id.
    let mut b = body();
    b.boot_id = [0x0C; 16];
    let other_boot = write_card(&r.dir, "other-boot.json", [0x0D; 32], &b);
    refused(&r.verify(&other_boot), &["card.signature", "card.boot_id"]);
    let same_key = write_card(&r.dir, "other-boot-id.json", CARD_SEED, &b);
    refused(&r.verify(&same_key), &["card.boot_id"]);

    // Evidence of another attestation (another nonce) for the card key: refused even though
    // each bundle verifies by itself (the nonce check catches the stale one as well).
    evidence(&r.dir, "-b", [0x5D; 32], CARD_SEED, BOOT_ID);
    let card = write_card(&r.dir, "triage.json", CARD_SEED, &body());
    let o = r.verify_with(&card, "agent_triage.bin", "card-b.bin");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL evidence.same-attestation:"), "{out}");

    // The agent's evidence for another agent: its principal check fails.
    let o = r.verify_with(&card, "agent_other.bin", "card.bin");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL agent evidence principal:"), "{out}");
    assert!(out.contains("FAIL card.module:"), "{out}");

    // Evidence files swapped: neither holds the claim it must.
    let o = r.verify_with(&card, "card.bin", "agent_triage.bin");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));

    // Not a card: exit 2 with the reason.
    for (name, text) in [
        ("garbage.json", "not json".to_string()),
        (
            "extra.json",
            genuine.replacen('{', "{\"iconUrl\":\"https://x.example/i.png\",", 1),
        ),
        ("unsigned.json", "{\"name\":\"triage\"}".to_string()),
    ] {
        let p = r.dir.join(name);
        std::fs::write(&p, text).unwrap();
        let o = r.verify(&path_str(&p));
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stdout(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("not an Omega agent card"), "{name}: {err}");
    }
}

/// The base64url JWS header Omega writes for the key with hex `key`.
fn signature_header(key: &str) -> String {
    omega_agent_card::b64::encode(
        format!("{{\"alg\":\"EdDSA\",\"kid\":\"omega-card-key:{key}\"}}").as_bytes(),
    )
}
