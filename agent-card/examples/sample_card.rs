//! Prints a sample signed card (the fuzz target's key, seed 7s): a seed for the fuzz corpus
//! and a look at the format. `cargo run -p omega-agent-card --example sample_card`.

use omega_agent_card::{CardBody, CardKey, Skill};

fn main() {
    let body = CardBody {
        agent: "triage".into(),
        description: "Ranks records by urgency".into(),
        version: "1.0.0".into(),
        publisher: "Omega demo".into(),
        skills: vec![Skill {
            id: "triage".into(),
            name: "Triage records".into(),
            description: "Ranks labelled records, \"urgent\" first".into(),
            tags: vec!["health".into(), "ranking".into()],
        }],
        module_hash: [0xAB; 32],
        boot_id: [0xB0; 16],
        instance_of: None,
    };
    let card = CardKey::from_seed([7; 32])
        .expect("a non-zero seed")
        .sign(&body)
        .expect("a card within the limits");
    println!("{card}");
}
