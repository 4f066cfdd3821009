//! The malicious-agents suite in the real image (issue 16; docs/adversarial.md lists every
//! suite): the example agents of `agents/` (real Rust agents built to wasm32 by
//! agents-build), under the demo policy, in three boots:
//!
//! 1. the triage pair alone: the reference run;
//! 2. the pair next to every hostile agent that loads (CPU spinner, memory bomb, wild
//!    pointer, exfiltrator, trap loop, rate abuser): each is contained and in the verified log with
//!    what stopped it, and the pair's decisions are exactly those of the reference run;
//! 3. the pair with the agent importing outside the ABI: the monitor refuses the bundle
//!    (its agents run together or not at all) and logs the refusal.
//!
//! No inference proxy runs: the in-house model's pin matches no proxy, so the pair's
//! prompts are denied `target-pin` in both runs and triage falls back to its keyword rules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use omega_agents_build::{Built, demo_agent_entry, write_bundle_of};
use omega_bundle::{AgentEntry, Restart};
use omega_provenance::entry::lifecycle;
use omega_provenance::{Action, Decision};
use qemu_tests::verified_run::{Run, run_bundle};
use qemu_tests::{EXIT_SUCCESS, image};

fn repo() -> PathBuf {
    omega_test_support::workspace_root()
}

/// The real agents, built once per test run (shared with agents-build's runtime tests).
fn agents() -> &'static [Built] {
    omega_agents_build::built_for_tests(&repo())
}

/// The demo entry for `name`, with the limits that contain the hostile ones.
fn entry(name: &str) -> AgentEntry {
    let mut e = demo_agent_entry(name);
    match name {
        // Spins until its budget is gone (the monitor then stops it).
        "spinner" => e.fuel_budget = Some(40_000_000),
        // Grows its memory until the 1 MiB limit traps it.
        "memory-bomb" => e.memory = 1 << 20,
        "trap-loop" => e.restart = Restart::Trap { max: 2 },
        _ => {}
    }
    e
}

fn run(work: &Path, names: &[&str]) -> Run {
    let bundle = work.join("bundle");
    write_bundle_of(
        &repo(),
        agents(),
        &bundle,
        None,
        names.iter().map(|n| entry(n)).collect(),
    )
    .expect("the bundle is written");
    run_bundle(image(), &bundle, work, Duration::from_secs(300))
}

const PAIR: [&str; 2] = ["triage", "summariser"];

#[test]
fn hostile_agents_are_contained_in_the_image_and_the_pair_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let clean_dir = dir.path().join("clean");
    let hostile_dir = dir.path().join("hostile");
    std::fs::create_dir_all(&clean_dir).unwrap();
    std::fs::create_dir_all(&hostile_dir).unwrap();

    let clean = run(&clean_dir, &PAIR);
    let mut names = PAIR.to_vec();
    names.extend([
        "spinner",
        "memory-bomb",
        "bad-pointer",
        "exfiltrator",
        "trap-loop",
        "flooder",
    ]);
    let hostile = run(&hostile_dir, &names);
    let serial = &hostile.out.serial;

    // The pair: the same exit and the same decisions, in the same order, as alone.
    for agent in PAIR {
        assert!(
            clean.summary(agent).contains("status=exited 0"),
            "{}",
            clean.out
        );
        assert!(
            hostile.summary(agent).contains("status=exited 0"),
            "{serial}"
        );
        let reference = clean.decisions_of(agent);
        assert!(
            !reference.is_empty(),
            "{agent} decided nothing\n{}",
            clean.out
        );
        assert_eq!(hostile.decisions_of(agent), reference, "{agent}");
    }

    // The spinner ran until its fuel budget was gone and was stopped there.
    let spinner = hostile.summary("spinner");
    assert!(
        spinner.contains("status=trapped (fuel budget exhausted)"),
        "{spinner}"
    );
    // The memory bomb trapped at its 1 MiB limit; the wild pointer trapped before its call
    // did anything; neither was restarted.
    for agent in ["memory-bomb", "bad-pointer"] {
        let s = hostile.summary(agent);
        assert!(
            s.contains("status=trapped") && s.contains("restarts=0"),
            "{s}"
        );
    }
    // The trap loop: started, restarted twice, then left stopped.
    let trap = hostile.summary("trap-loop");
    assert!(
        trap.contains("status=trapped") && trap.contains("restarts=2"),
        "{trap}"
    );
    assert_eq!(
        serial.matches("omega: agent trap-loop: trapped").count(),
        3,
        "{serial}"
    );

    // The exfiltrator read records (allowed) and every way it tried to take them out was
    // denied, each in the verified log with its rule: the message to an agent not cleared
    // for phi by the label flow (`flow:phi`); the public model and the mail tool before any
    // label check, because no proxy or tool gateway with the pinned identity is attested in
    // this run (`target-pin`; the label-flow denials of those two paths are performed with
    // a real proxy and gateway in inference.rs and tools.rs).
    let exfil = hostile.decisions_of("exfiltrator");
    let denied: Vec<_> = exfil.iter().filter(|d| d.3 == Decision::Deny).collect();
    assert!(
        exfil
            .iter()
            .filter(|d| d.3 == Decision::Allow)
            .all(|d| d.1 == Action::Data),
        "{exfil:?}"
    );
    let denial = |action: Action| {
        denied
            .iter()
            .find(|d| d.1 == action)
            .map(|d| d.4.as_str())
            .unwrap_or_else(|| panic!("no {action:?} denial: {exfil:?}"))
    };
    assert_eq!(denial(Action::Message), "flow:phi");
    assert!(["flow:phi", "target-pin"].contains(&denial(Action::Infer)));
    assert!(["flow:phi", "target-pin"].contains(&denial(Action::Tool)));
    let s = hostile.summary("exfiltrator");
    assert!(s.contains(&format!("denied={}", denied.len())), "{s}");
    // The flooder asked 50 times: the limit let 5 reads through, and every one after was
    // denied with the limit's name.
    let flood = hostile.decisions_of("flooder");
    assert_eq!(flood.len(), 50, "{flood:?}");
    assert!(
        flood[..5]
            .iter()
            .all(|d| d.3 == Decision::Allow && d.4 == "flooder_reads_the_index"),
        "{flood:?}"
    );
    assert!(
        flood[5..]
            .iter()
            .all(|d| d.3 == Decision::Deny && d.4 == "flooder_rate"),
        "{flood:?}"
    );
    let s = hostile.summary("flooder");
    assert!(s.contains("status=exited 5"), "{s}");
    // Nothing any hostile agent did was allowed beyond its reads.
    for agent in ["spinner", "memory-bomb", "bad-pointer", "trap-loop"] {
        assert!(
            hostile
                .decisions_of(agent)
                .iter()
                .all(|d| d.3 == Decision::Deny),
            "{agent}: {:?}",
            hostile.decisions_of(agent)
        );
    }
    // Every agent's start is in the log: the hostile ones ran, they did not vanish.
    for agent in &names {
        let id = hostile
            .defined(lifecycle::DEFINE_AGENT, agent)
            .unwrap_or_else(|| panic!("{agent} is not in the log"));
        assert!(
            hostile.entries.iter().any(|e| e.agent == id
                && e.action == Action::Lifecycle
                && e.rule == lifecycle::AGENT_START),
            "{agent}"
        );
    }
}

#[test]
fn an_agent_importing_outside_the_abi_keeps_the_whole_bundle_from_running() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path(), &["triage", "summariser", "forbidden-import"]);
    assert_eq!(r.out.status, Some(EXIT_SUCCESS));
    let id = r
        .defined(lifecycle::DEFINE_AGENT, "forbidden-import")
        .expect("the refused agent is named in the log");
    let refusal = r
        .entries
        .iter()
        .find(|e| {
            e.agent == id && e.action == Action::Lifecycle && e.rule == lifecycle::AGENT_REFUSED
        })
        .unwrap_or_else(|| panic!("no AGENT_REFUSED\n{}", r.out));
    assert_eq!(refusal.decision, Decision::Deny);
    assert_eq!(refusal.name, b"foreign-import");
    // Nothing started: not the pair either.
    assert!(
        !r.entries
            .iter()
            .any(|e| e.action == Action::Lifecycle && e.rule == lifecycle::AGENT_START),
        "{}",
        r.out
    );
    assert!(
        r.out.serial.contains("wasi_snapshot_preview1"),
        "the console names the import\n{}",
        r.out
    );
}
