//! Omega's tool gateway (`omega-tools`): runs the MCP servers a tools manifest names and
//! offers their tools to the guest, one JSON-RPC line per message on stdin/stdout.
//!
//! * Each server is started without a shell, spoken to over MCP (JSON-RPC 2.0, one message
//!   per line on its stdin/stdout) at the protocol revision it supports ([`server`]).
//! * Its tools are namespaced `server.tool`, so one server cannot shadow another's tool, and
//!   pinned: a tool is available only while the SHA-256 of its `tools/list` entry
//!   (`omega_tool_protocol::tool_pin`) equals the pin the policy expects ([`gateway`]).
//! * Every error fails closed: the guest gets a JSON-RPC error and nothing is forwarded.
//!
//! The format of the manifest is in [`manifest`]; docs/tools.md has the trust model.

pub mod gateway;
pub mod manifest;
pub mod pins;
pub mod rpc;
pub mod server;

pub use gateway::Gateway;
pub use manifest::{Manifest, ServerSpec};
pub use pins::Pins;

/// Whether `name` is an identifier of the policy language: ASCII letters, digits, `_` and
/// `-`, starting with a letter or `_`, at most 64 bytes. Server names are one identifier.
pub fn is_ident(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Whether `name` is a tool name the policy can name after its server's: identifiers joined
/// by `.`, at most 128 bytes (MCP's own limit).
pub fn is_tool_name(name: &str) -> bool {
    name.len() <= 128 && name.split('.').all(is_ident)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_ident("filesystem"));
        assert!(is_ident("_a-b_9"));
        assert!(!is_ident(""));
        assert!(!is_ident("9a"));
        assert!(!is_ident("a.b"));
        assert!(!is_ident("a b"));
        assert!(!is_ident(&"a".repeat(65)));
        assert!(is_tool_name("read_file"));
        assert!(is_tool_name("filesystem.read_file"));
        assert!(!is_tool_name("read file"));
        assert!(!is_tool_name("a..b"));
        assert!(!is_tool_name(".a"));
        assert!(!is_tool_name("é"));
    }
}
