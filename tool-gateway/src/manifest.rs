//! The tools manifest (TOML): which MCP servers to run, how, and which pins to expect.
//!
//! ```toml
//! pins = "pins.txt"          # `server.tool sha256:<hex>` lines (`policy-compiler pin`), or
//! # policy = "policy.bin"    # the compiled policy: its tool pins (exactly one of the two)
//! log_dir = "logs"           # each server's stderr goes to <log_dir>/<name>.stderr.log
//! bundle_tools = "bundle/tools.json"  # optional: the bundle's tools file; every server
//!                            # must be named there with this command, args, package and
//!                            # version, or the gateway refuses to start
//!
//! [[server]]
//! name = "filesystem"        # the namespace: its tools are `filesystem.<tool>`
//! command = "node"           # run without a shell; found on PATH or an absolute path
//! args = ["/opt/mcp/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js", "/data"]
//! env = { }                  # the server's whole environment, besides PATH
//! package = "@modelcontextprotocol/server-filesystem"   # identity: package and version
//! version = "2026.8.31"
//! timeout_ms = 10000         # per tools/call; default 10 s
//! start_timeout_ms = 30000   # per request while starting and listing (server/discover,
//!                            # initialize, tools/list); default 30 s
//! max_result_bytes = 262144  # largest tools/call result passed on; default 256 KiB
//! protocol = "auto"          # "auto" (2026-07-28 if the server offers it, else 2025-11-25),
//!                            # "2026-07-28", or a handshake revision such as "2025-06-18"
//! ```
//!
//! Relative paths (`pins`, `policy`, `log_dir`, `cwd`) are relative to the manifest's folder.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::rpc::MAX_LINE;

/// Most servers one manifest may name.
pub const MAX_SERVERS: usize = 64;
/// Longest per-request timeout a manifest may ask for.
pub const MAX_TIMEOUT_MS: u64 = 300_000;
/// Default timeout of a `tools/call`.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default timeout of each request while starting and listing (interpreters start slowly).
pub const DEFAULT_START_TIMEOUT_MS: u64 = 30_000;
/// Default and largest `max_result_bytes` (the answer to the guest must fit one line).
pub const DEFAULT_MAX_RESULT: usize = 256 * 1024;
pub const MAX_RESULT: usize = MAX_LINE - 64 * 1024;

/// MCP protocol revisions reached through the `initialize` handshake, newest first.
pub const HANDSHAKE_REVISIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The stateless revision (`server/discover`, a per-request `_meta` envelope).
pub const STATELESS_REVISION: &str = "2026-07-28";

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("server name `{0}` is not an identifier (letters, digits, `_`, `-`)")]
    Name(String),
    #[error("server `{0}` is named twice")]
    Duplicate(String),
    #[error("server `{0}`: empty command")]
    Command(String),
    #[error("server `{server}`: {what}")]
    Invalid { server: String, what: String },
    #[error("more than {MAX_SERVERS} servers")]
    TooMany,
    #[error("exactly one of `pins` and `policy` must be given")]
    Pins,
    #[error("{path}: {what}")]
    BundleTools { path: PathBuf, what: String },
    /// SECURITY: the server the host would run is not the one the bundle (and so the
    /// monitor's evidence) names.
    #[error("server `{server}` differs from the bundle's tools file: {what}; refusing to start")]
    Identity { server: String, what: String },
}

/// How to negotiate the protocol revision with a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolChoice {
    /// Try the stateless revision (`server/discover`); fall back to the handshake.
    Auto,
    /// Only the stateless revision.
    Stateless,
    /// The `initialize` handshake, proposing this revision.
    Handshake(&'static str),
}

/// One MCP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub name: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    pub package: String,
    pub version: String,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_start_timeout")]
    pub start_timeout_ms: u64,
    #[serde(default = "default_max_result")]
    pub max_result_bytes: usize,
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_start_timeout() -> u64 {
    DEFAULT_START_TIMEOUT_MS
}
fn default_max_result() -> usize {
    DEFAULT_MAX_RESULT
}
fn default_protocol() -> String {
    "auto".to_owned()
}

impl ServerSpec {
    /// The negotiation the manifest asks for (validated by [`Manifest::parse`]).
    pub fn protocol_choice(&self) -> Option<ProtocolChoice> {
        match self.protocol.as_str() {
            "auto" => Some(ProtocolChoice::Auto),
            STATELESS_REVISION => Some(ProtocolChoice::Stateless),
            other => HANDSHAKE_REVISIONS
                .iter()
                .find(|r| **r == other)
                .map(|r| ProtocolChoice::Handshake(r)),
        }
    }

    /// The timeout of a `tools/call`.
    pub fn call_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }

    /// The timeout of each request while starting and listing.
    pub fn start_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.start_timeout_ms)
    }
}

/// Where the expected pins come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    File(PathBuf),
    Policy(PathBuf),
}

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub servers: Vec<ServerSpec>,
    pub pins: PinSource,
    pub log_dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    pins: Option<PathBuf>,
    policy: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    bundle_tools: Option<PathBuf>,
    #[serde(default)]
    server: Vec<ServerSpec>,
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Manifest::parse(&text, base).map_err(|e| match e {
            ManifestError::Toml { source, .. } => ManifestError::Toml {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates manifest text; relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Manifest, ManifestError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ManifestError::Toml {
            path: PathBuf::new(),
            source: Box::new(e),
        })?;
        let pins = match (raw.pins, raw.policy) {
            (Some(p), None) => PinSource::File(base.join(p)),
            (None, Some(p)) => PinSource::Policy(base.join(p)),
            _ => return Err(ManifestError::Pins),
        };
        if raw.server.len() > MAX_SERVERS {
            return Err(ManifestError::TooMany);
        }
        let mut names = HashSet::new();
        let mut servers = raw.server;
        for s in &mut servers {
            // SECURITY: the server name is the namespace; a dot in it would make
            // `a.b` + tool `c` collide with `a` + tool `b.c`.
            if !crate::is_ident(&s.name) {
                return Err(ManifestError::Name(s.name.clone()));
            }
            if !names.insert(s.name.clone()) {
                return Err(ManifestError::Duplicate(s.name.clone()));
            }
            if s.command.is_empty() {
                return Err(ManifestError::Command(s.name.clone()));
            }
            let invalid = |what: String| ManifestError::Invalid {
                server: s.name.clone(),
                what,
            };
            if s.package.is_empty() || s.version.is_empty() {
                return Err(invalid(
                    "`package` and `version` are the tool's identity; both are required".into(),
                ));
            }
            for (key, ms) in [
                ("timeout_ms", s.timeout_ms),
                ("start_timeout_ms", s.start_timeout_ms),
            ] {
                if ms == 0 || ms > MAX_TIMEOUT_MS {
                    return Err(invalid(format!("{key} must be 1..={MAX_TIMEOUT_MS}")));
                }
            }
            if s.max_result_bytes == 0 || s.max_result_bytes > MAX_RESULT {
                return Err(invalid(format!(
                    "max_result_bytes must be 1..={MAX_RESULT}"
                )));
            }
            if s.protocol_choice().is_none() {
                return Err(invalid(format!(
                    "unknown protocol revision `{}`",
                    s.protocol
                )));
            }
            if let Some(cwd) = &s.cwd {
                s.cwd = Some(base.join(cwd));
            }
        }
        if let Some(p) = raw.bundle_tools {
            let path = base.join(p);
            let bytes = std::fs::read(&path).map_err(|e| ManifestError::BundleTools {
                path: path.clone(),
                what: e.to_string(),
            })?;
            let named = omega_tool_protocol::identity::parse(&bytes).map_err(|e| {
                ManifestError::BundleTools {
                    path: path.clone(),
                    what: e.to_string(),
                }
            })?;
            for s in &servers {
                check_identity(s, &named)?;
            }
        }
        Ok(Manifest {
            servers,
            pins,
            log_dir: base.join(raw.log_dir.unwrap_or_else(|| PathBuf::from("."))),
        })
    }
}

/// The server as the manifest runs it must be the one the bundle's tools file names:
/// command, arguments, package and version, exactly.
fn check_identity(
    s: &ServerSpec,
    named: &[omega_tool_protocol::identity::ServerIdentity],
) -> Result<(), ManifestError> {
    let differs = |what: String| ManifestError::Identity {
        server: s.name.clone(),
        what,
    };
    let Some(n) = named.iter().find(|n| n.name == s.name) else {
        return Err(differs("the bundle names no such server".into()));
    };
    if n.command != s.command || n.args != s.args {
        return Err(differs(format!(
            "command {:?} {:?}, the bundle says {:?} {:?}",
            s.command, s.args, n.command, n.args
        )));
    }
    if n.package != s.package || n.version != s.version {
        return Err(differs(format!(
            "package {} {}, the bundle says {} {}",
            s.package, s.version, n.package, n.version
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
        pins = "pins.txt"
        [[server]]
        name = "fs"
        command = "node"
        args = ["x.js"]
        package = "p"
        version = "1"
    "#;

    #[test]
    fn parses_with_defaults() {
        let m = Manifest::parse(ONE, Path::new("/m")).unwrap();
        assert_eq!(m.pins, PinSource::File("/m/pins.txt".into()));
        assert_eq!(m.log_dir, PathBuf::from("/m/."));
        let s = &m.servers[0];
        assert_eq!(
            (s.timeout_ms, s.max_result_bytes),
            (DEFAULT_TIMEOUT_MS, DEFAULT_MAX_RESULT)
        );
        assert_eq!(s.protocol_choice(), Some(ProtocolChoice::Auto));
    }

    /// Attack: the host swaps a server's command (or package, version, arguments) for
    /// another than the bundle names: the gateway refuses to start.
    #[test]
    fn a_server_that_differs_from_the_bundles_tools_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("omega-gw-ident-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("tools.json"),
            br#"{"servers":[{"name":"fs","command":"node","args":["x.js"],"package":"p","version":"1"}]}"#,
        )
        .unwrap();
        let with = |m: &str| Manifest::parse(&format!("bundle_tools = \"tools.json\"\n{m}"), &dir);
        assert!(with(ONE).is_ok());
        for (from, to) in [
            ("command = \"node\"", "command = \"/tmp/evil\""),
            ("args = [\"x.js\"]", "args = [\"y.js\"]"),
            ("package = \"p\"", "package = \"q\""),
            ("version = \"1\"", "version = \"2\""),
            ("name = \"fs\"", "name = \"other\""),
        ] {
            let r = with(&ONE.replace(from, to));
            assert!(
                matches!(r, Err(ManifestError::Identity { .. })),
                "{to}: {r:?}"
            );
        }
        std::fs::write(dir.join("tools.json"), b"{}").unwrap();
        assert!(matches!(with(ONE), Err(ManifestError::BundleTools { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_what_would_break_namespacing_or_bounds() {
        let bad = |from: &str, to: &str| Manifest::parse(&ONE.replace(from, to), Path::new("/"));
        assert!(matches!(
            bad("\"fs\"", "\"f.s\""),
            Err(ManifestError::Name(_))
        ));
        assert!(matches!(
            bad("pins = \"pins.txt\"", ""),
            Err(ManifestError::Pins)
        ));
        assert!(matches!(
            bad("pins = \"pins.txt\"", "pins = \"a\"\npolicy = \"b\""),
            Err(ManifestError::Pins)
        ));
        assert!(matches!(
            bad("version = \"1\"", "version = \"\""),
            Err(ManifestError::Invalid { .. })
        ));
        assert!(matches!(
            bad(
                "version = \"1\"",
                "version = \"1\"\nprotocol = \"2099-01-01\""
            ),
            Err(ManifestError::Invalid { .. })
        ));
        assert!(matches!(
            bad("version = \"1\"", "version = \"1\"\ntimeout_ms = 0"),
            Err(ManifestError::Invalid { .. })
        ));
        assert!(matches!(
            bad("version = \"1\"", "version = \"1\"\nshell = true"),
            Err(ManifestError::Toml { .. })
        ));
        let twice = format!(
            "{ONE}\n[[server]]\nname = \"fs\"\ncommand = \"y\"\npackage = \"p\"\nversion = \"1\"\n"
        );
        assert!(matches!(
            Manifest::parse(&twice, Path::new("/")),
            Err(ManifestError::Duplicate(_))
        ));
    }
}
