//! Interoperability: the official A2A Python SDK (`a2a-sdk` 1.3.0, pinned in
//! `bench/a2a/requirements.txt`, in `target/a2a-venv` or `OMEGA_A2A_PYTHON`) parses Omega's
//! cards as A2A `AgentCard`s and verifies their signatures with its own canonicalisation
//! and JWS code; it refuses an edited card and another key. Without that Python the test
//! fails when `CI` is set and is skipped (loudly) otherwise.

use std::path::PathBuf;
use std::process::Command;

use omega_agent_card::{CardBody, CardKey, Skill};

fn sdk(python: &PathBuf, card: &str, public: &[u8; 32]) -> String {
    let dir = std::env::temp_dir().join(format!("omega-card-sdk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{:x}.json", card.len() ^ public[0] as usize));
    std::fs::write(&file, card).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/a2a_sdk_verify.py");
    let o = Command::new(python)
        .arg(script)
        .arg(&file)
        .arg(omega_agent_card::hex(public))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.code() == Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn the_a2a_sdk_verifies_omegas_cards_and_refuses_forgeries() {
    let Some(python) = omega_test_support::a2a_signing_python() else {
        return;
    };
    let key = CardKey::from_seed([0x21; 32]).unwrap();
    let body = CardBody {
        agent: "triage".into(),
        description: "Ranks records \"by urgency\" \\ priorité €, 🚑, <b>&amp;</b>".into(),
        version: "1.0.0".into(),
        publisher: "Acme Health".into(),
        skills: vec![
            Skill {
                id: "triage".into(),
                name: "Triage records".into(),
                description: "Ranks labelled records".into(),
                tags: vec!["health".into(), "ranking".into()],
            },
            Skill {
                id: "handoff".into(),
                name: "Hand off".into(),
                description: "No tags: an empty list the SDK leaves out".into(),
                tags: vec![],
            },
        ],
        module_hash: [0xAB; 32],
        boot_id: [0xB0; 16],
        instance_of: None,
    };
    let card = key.sign(&body).unwrap();
    let out = sdk(&python, &card, &key.public());
    assert!(
        out.starts_with("verified triage skills=2 ext=urn:omega:a2a:attested-card:v1"),
        "{out}"
    );
    // A card with the defaults the monitor gives an agent the manifest says nothing about.
    let mut bare = body.clone();
    bare.description = CardBody::default_description("triage");
    bare.version = CardBody::default_version(&bare.module_hash);
    bare.skills = CardBody::default_skills("triage", &bare.description);
    let out = sdk(&python, &key.sign(&bare).unwrap(), &key.public());
    assert!(out.starts_with("verified triage skills=1"), "{out}");

    let edited = card.replace("Ranks labelled records", "Sends records anywhere");
    let out = sdk(&python, &edited, &key.public());
    assert!(out.starts_with("refused"), "{out}");
    let other = CardKey::from_seed([0x22; 32]).unwrap().public();
    let out = sdk(&python, &card, &other);
    assert!(out.starts_with("refused"), "{out}");
}
