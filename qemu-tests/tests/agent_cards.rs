//! Attested A2A agent cards end to end, with the real launcher, the test-hooks image and
//! the simulated PSP (as `trust_chain.rs`): the monitor attests its card key (evidence
//! principal `card`), signs one card per started agent with the skills of the manifest,
//! the launcher stores `cards/<agent>.json` and prints a `verify-card` command for each,
//! and `measurements verify-card` verifies them. Then a card is checked against another
//! agent's evidence, edited, and re-signed by another key: each refused. The simulated PSP
//! is a lab chain: this proves the card path, not a platform.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use omega_agent_card::{CardKey, SignedCard};
use qemu_tests::cli::{flag, refused, text, verified, with};
use qemu_tests::{measurements, printed_verifier_commands, qemu_present};

const NONCE: &str = "6f6d6567612d6167656e742d63617264732d746573742d6e6f6e63652d212121";
const AGENTS: [&str; 3] = ["alpha", "beta", "gamma"];
/// Agents that run: `gamma` with `instances: 2` (its cards name `agent:gamma` as the
/// principal vouching for their module).
const RUNNING: [(&str, &str); 4] = [
    ("alpha", "alpha"),
    ("beta", "beta"),
    ("gamma-0", "gamma"),
    ("gamma-1", "gamma"),
];

/// Agents that return at once, `alpha` declaring a description and two skills, `gamma`
/// run as two instances, in `dir/bundle`.
fn bundle(dir: &Path) -> PathBuf {
    let b = dir.join("bundle");
    std::fs::create_dir(&b).unwrap();
    for (name, bytes) in common::agent_bundle("agent-cards", &AGENTS) {
        let bytes = if name == omega_bundle::MANIFEST {
            let mut m = omega_bundle::Manifest::parse(&bytes).unwrap();
            m.agents[2].instances = Some(2);
            let alpha = &mut m.agents[0];
            alpha.publisher = Some("Example Health".into());
            alpha.description = Some("Ranks records by urgency".into());
            alpha.version = Some("2.1.0".into());
            alpha.skills = vec![
                omega_agent_card::Skill {
                    id: "triage".into(),
                    name: "Triage records".into(),
                    description: "Ranks labelled records, \"urgent\" first".into(),
                    tags: vec!["health".into(), "ranking".into()],
                },
                omega_agent_card::Skill {
                    id: "handoff".into(),
                    name: "Hand off".into(),
                    description: "Sends a summary to another agent".into(),
                    tags: vec![],
                },
            ];
            m.to_json()
        } else {
            bytes
        };
        std::fs::write(b.join(name), bytes).unwrap();
    }
    b
}

#[test]
fn a_simulated_psp_run_publishes_cards_that_verify_and_forgeries_are_refused() {
    if !qemu_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let run = qemu_tests::run_with_simulated_psp(&bundle(dir.path()), &logs, NONCE);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(0), "{out}");
    assert!(
        out.contains("omega: agents: 4 signed agent cards sent"),
        "{out}"
    );
    assert!(logs.join("evidence/card.bin").is_file(), "{out}");

    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let commands = printed_verifier_commands(&stdout);
    let card_cmd = |a: &str| {
        commands
            .iter()
            .find(|c| c[0] == "verify-card" && flag(c, "--card").ends_with(&format!("/{a}.json")))
            .unwrap_or_else(|| panic!("no printed verify-card command for {a}\n{out}"))
            .clone()
    };
    let card_key_cmd = commands
        .iter()
        .find(|c| c[0] == "verify-evidence" && flag(c, "--principal") == "card")
        .unwrap_or_else(|| panic!("no verify-evidence command for the card key\n{out}"));
    let v = text(&measurements(card_key_cmd));
    assert!(
        v.contains("VERIFIED (SIMULATED PLATFORM) claim of card"),
        "{v}"
    );

    let mut boot_ids = Vec::new();
    for (a, principal) in RUNNING {
        let card_file = logs.join("cards").join(format!("{a}.json"));
        let cmd = card_cmd(a);
        assert_eq!(flag(&cmd, "--card"), card_file.display().to_string());
        assert_eq!(
            flag(&cmd, "--evidence"),
            logs.join(format!("evidence/agent_{principal}.bin"))
                .display()
                .to_string()
        );
        assert_eq!(
            flag(&cmd, "--card-key-evidence"),
            logs.join("evidence/card.bin").display().to_string()
        );
        let v = verified(&cmd, &format!("card of {a}"));
        assert!(
            v.ends_with(&format!(
                "VERIFIED (SIMULATED PLATFORM) card of agent {a}\n"
            )),
            "{v}"
        );
        let card = SignedCard::decode(&std::fs::read(&card_file).unwrap()).unwrap();
        assert!(v.contains(&format!(
            "boot_id: {}",
            omega_agent_card::hex(&card.body.boot_id)
        )));
        boot_ids.push(card.body.boot_id);
    }
    assert!(
        boot_ids.iter().all(|b| *b == boot_ids[0]),
        "one boot, one boot id"
    );
    let g1 = SignedCard::decode(&std::fs::read(logs.join("cards/gamma-1.json")).unwrap()).unwrap();
    assert_eq!(g1.body.instance_of.as_deref(), Some("gamma"));
    assert_eq!(g1.body.description, "Omega agent gamma-1");
    // The manifest's declarations are in alpha's card; beta's has the defaults.
    let alpha_file = logs.join("cards/alpha.json");
    let alpha = SignedCard::decode(&std::fs::read(&alpha_file).unwrap()).unwrap();
    assert_eq!(alpha.body.description, "Ranks records by urgency");
    assert_eq!(alpha.body.version, "2.1.0");
    assert_eq!(alpha.body.publisher, "Example Health");
    let ids: Vec<&str> = alpha.body.skills.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["triage", "handoff"]);
    let beta = SignedCard::decode(&std::fs::read(logs.join("cards/beta.json")).unwrap()).unwrap();
    assert_eq!(beta.body.description, "Omega agent beta");
    assert_eq!(beta.body.publisher, "unspecified");
    assert_eq!(
        beta.body.skills,
        omega_agent_card::CardBody::default_skills("beta", "Omega agent beta")
    );

    // The official A2A SDK reads the card the real monitor issued and verifies its
    // signature with the attested key (agent-card/tests/a2a_sdk_verify.py).
    if let Some(python) = omega_test_support::a2a_signing_python() {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent-card/tests/a2a_sdk_verify.py");
        let o = Command::new(python)
            .arg(script)
            .arg(&alpha_file)
            .arg(omega_agent_card::hex(&alpha.card_key))
            .output()
            .unwrap();
        let v = text(&o);
        assert!(
            v.starts_with("verified alpha skills=2 ext=urn:omega:a2a:attested-card:v1"),
            "{v}"
        );
    }

    // Forgeries.
    let alpha_cmd = card_cmd("alpha");
    // (a) alpha's card against beta's evidence: another module, another principal.
    let beta_ev = logs.join("evidence/agent_beta.bin").display().to_string();
    refused(
        &with(&alpha_cmd, "--evidence", &beta_ev),
        "alpha's card with beta's evidence",
        "FAIL card.module:",
    );
    // (b) edited skills.
    let text_card = std::fs::read_to_string(&alpha_file).unwrap();
    let edited = dir.path().join("edited.json");
    std::fs::write(
        &edited,
        text_card.replace("Sends a summary to another agent", "Sends records anywhere"),
    )
    .unwrap();
    refused(
        &with(&alpha_cmd, "--card", &edited.display().to_string()),
        "edited skills",
        "FAIL card.signature:",
    );
    // (c) the same card re-signed by a key the host holds.
    let forged = dir.path().join("forged.json");
    std::fs::write(
        &forged,
        CardKey::from_seed([0x66; 32])
            .unwrap()
            .sign(&alpha.body)
            .unwrap(),
    )
    .unwrap();
    refused(
        &with(&alpha_cmd, "--card", &forged.display().to_string()),
        "card re-signed by the host's key",
        "the card names card key",
    );
    // (d) another nonce than the run's: the evidence is not fresh for this verifier.
    refused(
        &with(
            &alpha_cmd,
            "--nonce",
            "0000000000000000000000000000000000000000000000000000000000000001",
        ),
        "another verifier nonce",
        "FAIL card-key evidence nonce:",
    );
}
