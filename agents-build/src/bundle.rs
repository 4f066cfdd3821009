//! The demo bundle: the scenario's agents, their policy with the built modules' pins, and a
//! manifest in `omega-bundle`'s format, ready for `omega run --bundle`.

use std::path::Path;

use crate::{BuildError, Built, io};

/// The demo policy template, relative to the repository root: `${NAME}` stands for the pin
/// of `NAME.wasm`, `${proxy}` for the inference proxy's identity ([`NO_PROXY`] without one).
pub const DEMO_POLICY: &str = "agents/demo/demo.policy";
/// The demo's data sources, one directory per source, relative to the repository root.
pub const DEMO_DATA: &str = "agents/demo/data";
/// The demo bundle's agents, in manifest order: the triage pair, the tool user, and the
/// exfiltrator whose attempts the policy denies. (The other hostile agents never finish or
/// never load; their tests build their own bundles.)
pub const DEMO_AGENTS: &[&str] = &["triage", "summariser", "scheduler", "exfiltrator"];
/// The `${proxy}` pin when none is given: an identity no proxy has (every infer call to the
/// model is then denied `target-pin`).
pub const NO_PROXY: &str =
    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// The compiled policy's file name in the bundle.
pub const POLICY_FILE: &str = "policy.bin";

/// The demo agents' publisher, in the manifest and their A2A cards.
pub const DEMO_PUBLISHER: &str = "Omega demo";

/// One skill of a demo card: id, name, description, tags.
type DemoSkill = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

/// What the demo agents' A2A cards say (the manifest's `description` and `skills`; the
/// monitor signs one card per started agent: docs/agents.md).
pub fn demo_card(agent: &str) -> (&'static str, &'static [DemoSkill]) {
    match agent {
        "triage" => (
            "Reads labelled patient records and ranks them by urgency, with the model or by keyword rules",
            &[
                (
                    "triage",
                    "Triage records",
                    "Ranks the records of the ehr source by urgency",
                    &["health", "triage"],
                ),
                (
                    "handoff",
                    "Hand off a summary",
                    "Sends its ranking to the summariser agent",
                    &["a2a"],
                ),
            ],
        ),
        "summariser" => (
            "Summarises what the triage agent sends it",
            &[(
                "summarise",
                "Summarise a ranking",
                "Turns a triage ranking into a short summary",
                &["summary"],
            )],
        ),
        "scheduler" => (
            "Books follow-up appointments through the calendar tool",
            &[(
                "schedule",
                "Schedule a follow-up",
                "Asks the calendar tool for a slot",
                &["tools", "calendar"],
            )],
        ),
        _ => (
            "Demonstrates a denied exfiltration: its message carrying phi is refused by the policy",
            &[(
                "exfiltrate",
                "Attempt an exfiltration",
                "Reads a labelled record and tries to send it on (denied flow:phi)",
                &["hostile", "demo"],
            )],
        ),
    }
}

/// `template` with every `${NAME}` replaced by the pin (`sha256:…`) of the built agent NAME.
pub fn pin_policy(template: &str, built: &[Built]) -> Result<String, BuildError> {
    pin_policy_with(template, built, None)
}

/// [`pin_policy`], with `${proxy}` replaced by `proxy` (`sha256:…`, the identity
/// `omega-proxy serve` logs), or by [`NO_PROXY`].
pub fn pin_policy_with(
    template: &str,
    built: &[Built],
    proxy: Option<&str>,
) -> Result<String, BuildError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| BuildError::Template("an unclosed `${`".into()))?;
        let name = &after[..end];
        if name == "proxy" {
            out.push_str(proxy.unwrap_or(NO_PROXY));
            rest = &after[end + 1..];
            continue;
        }
        let agent = built
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| BuildError::Template(format!("`${{{name}}}`: no such agent")))?;
        out.push_str(&agent.pin());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The demo policy, pinned to `built` and compiled to the monitor's binary form.
pub fn demo_policy(repo: &Path, built: &[Built]) -> Result<Vec<u8>, BuildError> {
    demo_policy_with(repo, built, None)
}

/// [`demo_policy`] with the in-house model pinned to the proxy identity `proxy`.
pub fn demo_policy_with(
    repo: &Path,
    built: &[Built],
    proxy: Option<&str>,
) -> Result<Vec<u8>, BuildError> {
    let path = repo.join(DEMO_POLICY);
    let template = std::fs::read_to_string(&path).map_err(io(&path))?;
    let src = pin_policy_with(&template, built, proxy)?;
    let base = path.parent().unwrap_or(repo);
    let compiled = policy_compiler::compile(DEMO_POLICY, &src, base)
        .map_err(|d| BuildError::Template(d.render()))?;
    Ok(compiled.to_bytes())
}

/// Writes the demo bundle to `dir`: `manifest.json`, [`POLICY_FILE`], the [`DEMO_AGENTS`]'
/// modules and the data items of [`DEMO_DATA`] (see [`data_entries`]), each declared in the
/// manifest's `data` so the monitor serves it to `data_read`.
pub fn write_demo_bundle(repo: &Path, built: &[Built], dir: &Path) -> Result<(), BuildError> {
    write_demo_bundle_with(repo, built, dir, None)
}

/// [`write_demo_bundle`] with the in-house model pinned to the proxy identity `proxy`.
pub fn write_demo_bundle_with(
    repo: &Path,
    built: &[Built],
    dir: &Path,
    proxy: Option<&str>,
) -> Result<(), BuildError> {
    let agents = DEMO_AGENTS
        .iter()
        .map(|name| demo_agent_entry(name))
        .collect();
    write_bundle_of(repo, built, dir, proxy, agents)
}

/// The demo manifest's entry for agent `name` (module `NAME.wasm`, the demo publisher and
/// card), with the bundle format's default limits.
pub fn demo_agent_entry(name: &str) -> omega_bundle::AgentEntry {
    let mut entry = omega_bundle::AgentEntry::new(name, &format!("{name}.wasm"));
    let (description, skills) = demo_card(name);
    entry.publisher = Some(DEMO_PUBLISHER.into());
    entry.description = Some(description.into());
    entry.skills = skills
        .iter()
        .map(|(id, name, description, tags)| omega_agent_card::Skill {
            id: (*id).into(),
            name: (*name).into(),
            description: (*description).into(),
            tags: tags.iter().map(|t| (*t).into()).collect(),
        })
        .collect();
    entry
}

/// A bundle under the demo policy (pinned to `built`, the in-house model to `proxy`) and
/// the demo data, running `agents` (each entry's module is the built agent of its name):
/// the demo bundle's agents or any others, with their own limits (the adversarial suite
/// runs the hostile agents this way).
pub fn write_bundle_of(
    repo: &Path,
    built: &[Built],
    dir: &Path,
    proxy: Option<&str>,
    agents: Vec<omega_bundle::AgentEntry>,
) -> Result<(), BuildError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let policy = demo_policy_with(repo, built, proxy)?;
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(io(&path))
    };
    write(POLICY_FILE, &policy)?;
    for entry in &agents {
        let name = &entry.name;
        let agent = built
            .iter()
            .find(|b| b.name == *name)
            .ok_or_else(|| BuildError::Template(format!("agent `{name}` was not built")))?;
        if entry.module != agent.file_name() {
            return Err(BuildError::Template(format!(
                "agent `{name}`: module `{}`, but the built file is `{}`",
                entry.module,
                agent.file_name()
            )));
        }
        write(&agent.file_name(), &agent.wasm)?;
    }
    let mut data = Vec::new();
    for (entry, from) in data_entries(&repo.join(DEMO_DATA))? {
        let bytes = std::fs::read(&from).map_err(io(&from))?;
        write(&entry.file, &bytes)?;
        data.push(entry);
    }
    let manifest = omega_bundle::Manifest {
        tools: None,
        fleet: None,
        coordinator: None,
        version: omega_bundle::MANIFEST_VERSION,
        policy: POLICY_FILE.into(),
        agents,
        data,
    };
    manifest
        .validate()
        .map_err(|e| BuildError::Template(format!("demo manifest: {e}")))?;
    write(omega_bundle::MANIFEST, &manifest.to_json())
}

/// The data items under `root`: `root/SOURCE/a/b.txt` is item `/a/b.txt` of source
/// `SOURCE`, shipped as the flat bundle file `SOURCE-a-b.txt` (bundle files have no
/// directories). Sorted, so the manifest is the same on every machine.
pub fn data_entries(
    root: &Path,
) -> Result<Vec<(omega_bundle::DataEntry, std::path::PathBuf)>, BuildError> {
    let mut files = Vec::new();
    for source in sorted_entries(root)? {
        let name = utf8_name(&source)?;
        collect_files(&source, name, &mut files)?;
    }
    Ok(files
        .into_iter()
        .map(|(item, from)| {
            let (source, path) = item.split_once('/').unwrap_or((item.as_str(), ""));
            let entry = omega_bundle::DataEntry {
                source: source.into(),
                path: format!("/{path}"),
                file: item.replace('/', "-"),
            };
            (entry, from)
        })
        .collect())
}

fn sorted_entries(dir: &Path) -> Result<Vec<std::path::PathBuf>, BuildError> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        paths.push(entry.map_err(io(dir))?.path());
    }
    paths.sort();
    Ok(paths)
}

fn utf8_name(path: &Path) -> Result<&str, BuildError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BuildError::NonUtf8Path(path.to_path_buf()))
}

/// Every file under `dir` as (`prefix/relative/path`, its path), depth first, sorted.
fn collect_files(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, std::path::PathBuf)>,
) -> Result<(), BuildError> {
    for path in sorted_entries(dir)? {
        let item = format!("{prefix}/{}", utf8_name(&path)?);
        if path.is_dir() {
            collect_files(&path, &item, out)?;
        } else {
            out.push((item, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModuleInfo;

    fn agent(name: &str) -> Built {
        Built {
            name: name.into(),
            wasm: name.as_bytes().to_vec(),
            info: ModuleInfo {
                imports: vec![],
                initial_pages: 1,
            },
        }
    }

    #[test]
    fn placeholders_become_pins_and_unknown_ones_are_errors() {
        let built = [agent("triage"), agent("trap-loop")];
        let out = pin_policy("a ${triage} b ${trap-loop}", &built).unwrap();
        assert_eq!(out, format!("a {} b {}", built[0].pin(), built[1].pin()));
        assert!(pin_policy("${nobody}", &built).is_err());
        assert_eq!(pin_policy("${proxy}", &built).unwrap(), NO_PROXY);
        assert_eq!(
            pin_policy_with("p ${proxy}", &built, Some("sha256:01")).unwrap(),
            "p sha256:01"
        );
        assert!(pin_policy("${triage", &built).is_err());
    }

    #[test]
    fn demo_data_becomes_manifest_items_in_flat_files() {
        let repo = omega_test_support::workspace_root();
        let entries = data_entries(&repo.join(DEMO_DATA)).unwrap();
        let index = entries
            .iter()
            .find(|(e, _)| e.source == "ehr" && e.path == "/patients/index.txt")
            .expect("the patient index");
        assert_eq!(index.0.file, "ehr-patients-index.txt");
        assert!(index.1.ends_with("ehr/patients/index.txt"));
        // Every record the index lists is an item, so triage can read it.
        let listed = std::fs::read_to_string(&index.1).unwrap();
        for path in listed.lines().filter(|l| !l.trim().is_empty()) {
            assert!(entries.iter().any(|(e, _)| e.path == path.trim()), "{path}");
        }
        let mut sorted = entries.clone();
        sorted.sort_by(|a, b| a.0.file.cmp(&b.0.file));
        assert_eq!(sorted, entries);
    }

    #[test]
    fn the_demo_policy_compiles_once_pinned() {
        let repo = omega_test_support::workspace_root();
        let template = std::fs::read_to_string(repo.join(DEMO_POLICY)).unwrap();
        let names: Vec<String> = template
            .split("${")
            .skip(1)
            .map(|s| s[..s.find('}').unwrap()].to_string())
            .collect();
        let built: Vec<Built> = names.iter().map(|n| agent(n)).collect();
        let bytes = demo_policy(&repo, &built).unwrap();
        let policy = omega_policy::decode(&bytes).unwrap();
        for name in DEMO_AGENTS {
            let declared = policy.agents.iter().find(|a| a.name == *name).unwrap();
            let pin = built.iter().find(|b| b.name == *name).unwrap().sha256();
            assert_eq!(declared.hash, pin, "{name}");
        }
    }
}

#[cfg(test)]
mod card_tests {
    use super::{DEMO_AGENTS, DEMO_PUBLISHER, demo_agent_entry, demo_card};

    /// Every demo agent's card declarations satisfy the card contract (so the demo
    /// manifest validates and the monitor can sign each card).
    #[test]
    fn demo_cards_satisfy_the_card_contract() {
        for agent in DEMO_AGENTS {
            let (description, _) = demo_card(agent);
            let skills = demo_agent_entry(agent).skills;
            let body = omega_agent_card::CardBody {
                agent: (*agent).into(),
                description: description.into(),
                version: "1".into(),
                publisher: DEMO_PUBLISHER.into(),
                skills,
                module_hash: [1; 32],
                boot_id: [2; 16],
                instance_of: None,
            };
            let key = omega_agent_card::CardKey::from_seed([3; 32]).unwrap();
            let card = key.sign(&body).unwrap_or_else(|e| panic!("{agent}: {e}"));
            omega_agent_card::SignedCard::decode(card.as_bytes())
                .unwrap()
                .verify(&key.public())
                .unwrap();
        }
    }
}
