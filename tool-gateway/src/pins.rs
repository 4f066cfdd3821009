//! The pins the gateway expects: `server.tool` → SHA-256 of its `tools/list` entry, read from
//! the compiled policy or from a pins file in the format `policy-compiler pin` prints.

use std::collections::BTreeMap;

/// Why pins could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    #[error("line {line}: expected `server.tool sha256:<64 hex digits>`")]
    Syntax { line: usize },
    #[error("line {line}: `{name}` is not a `server.tool` name")]
    Name { line: usize, name: String },
    #[error("`{0}` is pinned twice")]
    Duplicate(String),
    #[error("the compiled policy does not decode: {0}")]
    Policy(#[from] omega_policy::DecodeError),
}

/// Expected pins by namespaced tool name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins(BTreeMap<String, [u8; 32]>);

impl Pins {
    /// Parses a pins file: one `server.tool sha256:<hex>` per line; `#` starts a comment.
    pub fn parse(text: &str) -> Result<Pins, PinsError> {
        let mut pins = Pins::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let mut words = content.split_whitespace();
            let (Some(name), Some(pin), None) = (words.next(), words.next(), words.next()) else {
                return Err(PinsError::Syntax { line });
            };
            let hash = parse_pin(pin).ok_or(PinsError::Syntax { line })?;
            pins.insert(name, hash).map_err(|e| match e {
                PinsError::Name { name, .. } => PinsError::Name { line, name },
                other => other,
            })?;
        }
        Ok(pins)
    }

    /// The tool pins of a compiled policy (`policy.bin`).
    pub fn from_policy(bytes: &[u8]) -> Result<Pins, PinsError> {
        let policy = omega_policy::decode(bytes)?;
        let mut pins = Pins::default();
        for tool in &policy.tools {
            pins.insert(tool.name, tool.hash)?;
        }
        Ok(pins)
    }

    fn insert(&mut self, name: &str, hash: [u8; 32]) -> Result<(), PinsError> {
        let valid = name
            .split_once('.')
            .is_some_and(|(server, tool)| crate::is_ident(server) && crate::is_tool_name(tool));
        if !valid {
            return Err(PinsError::Name {
                line: 0,
                name: name.to_owned(),
            });
        }
        if self.0.insert(name.to_owned(), hash).is_some() {
            return Err(PinsError::Duplicate(name.to_owned()));
        }
        Ok(())
    }

    /// The expected pin of `server.tool`, if the policy pins it.
    pub fn get(&self, name: &str) -> Option<&[u8; 32]> {
        self.0.get(name)
    }

    /// How many tools are pinned.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no tool is pinned.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `sha256:<64 hex digits>` → the hash.
pub fn parse_pin(s: &str) -> Option<[u8; 32]> {
    let hex_digits = s.strip_prefix("sha256:")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut out).ok()?;
    Some(out)
}

/// The hash as `sha256:<64 lowercase hex digits>`.
pub fn format_pin(hash: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_policy_compiler_pin_prints() {
        let h = format_pin(&[0xab; 32]);
        let pins = Pins::parse(&format!("# pins\nfs.read_file {h}\n\nmem.a.b {h}  # x\n")).unwrap();
        assert_eq!(pins.len(), 2);
        assert_eq!(pins.get("fs.read_file"), Some(&[0xab; 32]));
        assert_eq!(pins.get("mem.a.b"), Some(&[0xab; 32]));
        assert!(pins.get("read_file").is_none());
    }

    #[test]
    fn reads_the_pins_of_a_compiled_policy() {
        let src = r#"
            policy "t"
            tool fs.read_file {
              description "Read a file"
              schema { "type": "object", "properties": { "path": { "type": "string" } } }
            }
        "#;
        let compiled = policy_compiler::compile("t.policy", src, std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        let pins = Pins::from_policy(&compiled.to_bytes()).unwrap();
        let schema =
            serde_json::json!({ "type": "object", "properties": { "path": { "type": "string" } } });
        let expected = omega_tool_protocol::tool_pin("Read a file", &schema);
        assert_eq!(pins.get("fs.read_file"), Some(&expected));
        assert_eq!(pins.len(), 1);
        assert!(Pins::from_policy(b"not a policy").is_err());
    }

    #[test]
    fn refuses_bad_lines() {
        let h = format_pin(&[1; 32]);
        assert!(matches!(
            Pins::parse("fs.x sha256:12"),
            Err(PinsError::Syntax { line: 1 })
        ));
        assert!(matches!(
            Pins::parse(&format!("fs.x {h} extra")),
            Err(PinsError::Syntax { .. })
        ));
        assert!(matches!(
            Pins::parse(&format!("noserver {h}")),
            Err(PinsError::Name { line: 1, .. })
        ));
        assert!(matches!(
            Pins::parse(&format!("a.x {h}\na.x {h}")),
            Err(PinsError::Duplicate(_))
        ));
    }
}
