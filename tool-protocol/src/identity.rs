//! Who the tool servers are, as the bundle states it: the bundle's tools file (named by
//! its manifest's `tools` field, e.g. `tools.json`), covered by the bundle's manifest
//! digest and hashed and logged by the monitor like every bundle file.
//!
//! ```json
//! {"servers": [{"name": "fs", "command": "node", "args": ["/opt/mcp/server-filesystem/dist/index.js", "/data"],
//!               "package": "@modelcontextprotocol/server-filesystem", "version": "2026.8.31"}]}
//! ```
//!
//! The monitor puts each server's identity into its `tools:<server>` evidence claim
//! ([`ServerIdentity::command_line`], package, version); the gateway refuses to start a
//! server whose command, arguments, package or version differ from it; `measurements
//! verify-evidence --expect-tools` checks a claim against it. One definition for the three.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// Most servers a tools file may name.
pub const MAX_SERVERS: usize = 64;
/// Most arguments per server.
pub const MAX_ARGS: usize = 64;
/// Longest name, package or version.
pub const MAX_FIELD: usize = 128;
/// Longest command line ([`ServerIdentity::command_line`]).
pub const MAX_COMMAND_LINE: usize = 2048;
/// Largest tools file.
pub const MAX_FILE: usize = 64 * 1024;

/// One server: its namespace (`server` of `server.tool`), how it is started, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerIdentity {
    pub name: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    pub package: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolsFile {
    servers: Vec<ServerIdentity>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the tools file is larger than {MAX_FILE} bytes")]
    TooLarge,
    #[error("the tools file is not {{\"servers\": [...]}} with known fields")]
    Malformed,
    #[error("more than {MAX_SERVERS} servers")]
    TooMany,
    #[error(
        "server `{0}`: a name, command, package or version is empty, too long or not printable"
    )]
    Field(String),
    #[error("server `{0}` is named twice")]
    Duplicate(String),
}

impl ServerIdentity {
    /// The command and its arguments as one unambiguous string: a JSON array of strings
    /// (`["node","/opt/x.js","/data"]`), which is what the evidence claims.
    pub fn command_line(&self) -> String {
        let mut all: Vec<&str> = Vec::with_capacity(self.args.len() + 1);
        all.push(&self.command);
        all.extend(self.args.iter().map(String::as_str));
        serde_json::to_string(&all).unwrap_or_default()
    }
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// Parses and checks a tools file: bounded, known fields only, names unique identifiers
/// (letters, digits, `_`, `-`: a namespace without `.`), every field printable.
pub fn parse(bytes: &[u8]) -> Result<Vec<ServerIdentity>, IdentityError> {
    if bytes.len() > MAX_FILE {
        return Err(IdentityError::TooLarge);
    }
    let f: ToolsFile = serde_json::from_slice(bytes).map_err(|_| IdentityError::Malformed)?;
    if f.servers.len() > MAX_SERVERS {
        return Err(IdentityError::TooMany);
    }
    for (i, s) in f.servers.iter().enumerate() {
        let name_ok = printable(&s.name, MAX_FIELD)
            && s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let ok = name_ok
            && printable(&s.command, MAX_COMMAND_LINE)
            && printable(&s.package, MAX_FIELD)
            && printable(&s.version, MAX_FIELD)
            && s.args.len() <= MAX_ARGS
            && s.args.iter().all(|a| !a.chars().any(char::is_control))
            && s.command_line().len() <= MAX_COMMAND_LINE;
        if !ok {
            return Err(IdentityError::Field(s.name.escape_debug().collect()));
        }
        if f.servers[..i].iter().any(|o| o.name == s.name) {
            return Err(IdentityError::Duplicate(s.name.clone()));
        }
    }
    Ok(f.servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tools_file_parses_strictly() {
        let ok = br#"{"servers":[{"name":"fs","command":"node","args":["/x.js","/data"],"package":"@mcp/fs","version":"1.2.3"}]}"#;
        let s = parse(ok).unwrap();
        assert_eq!(s[0].command_line(), r#"["node","/x.js","/data"]"#);
        for bad in [
            &br#"{"servers":[{"name":"fs","command":"node","package":"p","version":"1","extra":1}]}"#[..],
            br#"{"servers":[{"name":"a.b","command":"node","package":"p","version":"1"}]}"#,
            br#"{"servers":[{"name":"fs","command":"","package":"p","version":"1"}]}"#,
            br#"{"servers":[{"name":"fs","command":"x","package":"p","version":"1\n"}]}"#,
            br#"{"servers":[{"name":"fs","command":"x","package":"p","version":"1"},{"name":"fs","command":"y","package":"p","version":"1"}]}"#,
            br#"[]"#,
        ] {
            assert!(parse(bad).is_err(), "{}", core::str::from_utf8(bad).unwrap());
        }
    }
}
