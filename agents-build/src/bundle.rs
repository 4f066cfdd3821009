//! The demo bundle: the scenario's agents, their policy with the built modules' pins, and a
//! manifest in `omega-bundle`'s format, ready for `omega run --bundle`.

use std::path::Path;

use crate::{BuildError, Built, io};

/// The demo policy template, relative to the repository root: `${NAME}` stands for the pin
/// of `NAME.wasm`.
pub const DEMO_POLICY: &str = "agents/demo/demo.policy";
/// The demo's data sources, one directory per source, relative to the repository root.
pub const DEMO_DATA: &str = "agents/demo/data";
/// The demo bundle's agents, in manifest order: the triage pair, the tool user, and the
/// exfiltrator whose attempts the policy denies. (The other hostile agents never finish or
/// never load; their tests build their own bundles.)
pub const DEMO_AGENTS: &[&str] = &["triage", "summariser", "scheduler", "exfiltrator"];
/// The compiled policy's file name in the bundle.
pub const POLICY_FILE: &str = "policy.bin";

/// `template` with every `${NAME}` replaced by the pin (`sha256:…`) of the built agent NAME.
pub fn pin_policy(template: &str, built: &[Built]) -> Result<String, BuildError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| BuildError::Template("an unclosed `${`".into()))?;
        let name = &after[..end];
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
    let path = repo.join(DEMO_POLICY);
    let template = std::fs::read_to_string(&path).map_err(io(&path))?;
    let src = pin_policy(&template, built)?;
    let base = path.parent().unwrap_or(repo);
    let compiled = policy_compiler::compile(DEMO_POLICY, &src, base)
        .map_err(|d| BuildError::Template(d.render()))?;
    Ok(compiled.to_bytes())
}

/// Writes the demo bundle to `dir`: `manifest.json`, [`POLICY_FILE`] and the
/// [`DEMO_AGENTS`]' modules; the data sources go to `dir/data/` for the launcher to serve
/// (the bundle format does not carry data yet).
pub fn write_demo_bundle(repo: &Path, built: &[Built], dir: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let policy = demo_policy(repo, built)?;
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(io(&path))
    };
    write(POLICY_FILE, &policy)?;
    let mut entries = Vec::new();
    for name in DEMO_AGENTS {
        let agent = built
            .iter()
            .find(|b| b.name == *name)
            .ok_or_else(|| BuildError::Template(format!("demo agent `{name}` was not built")))?;
        write(&agent.file_name(), &agent.wasm)?;
        entries.push((agent.name.clone(), agent.file_name()));
    }
    let manifest = omega_bundle::Manifest::json(
        POLICY_FILE,
        entries.iter().map(|(n, m)| (n.as_str(), m.as_str())),
    );
    write(omega_bundle::MANIFEST, &manifest)?;
    copy_dir(&repo.join(DEMO_DATA), &dir.join("data"))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let path = entry.map_err(io(from))?.path();
        let dest = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_dir(&path, &dest)?;
        } else {
            std::fs::copy(&path, &dest).map_err(io(&path))?;
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
        assert!(pin_policy("${triage", &built).is_err());
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
