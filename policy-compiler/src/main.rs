//! `policy-compiler`: check, compile and evaluate Omega policies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};

use policy_compiler::compile::{Compiled, hex};
use policy_compiler::{compile, rego, request};

/// Compiles Omega policies to the monitor's binary form and to Rego.
///
/// The language is described in docs/policy.md. Errors are printed as
/// `file:line:col: message` with the offending line and a caret.
#[derive(Parser)]
#[command(name = "policy-compiler", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Parse and type-check a policy; print every error found.
    Check {
        /// The policy source file.
        file: PathBuf,
    },
    /// Compile a policy to the binary form (and optionally to Rego).
    ///
    /// Prints the policy identity: the SHA-256 of the binary form.
    Compile {
        /// The policy source file.
        file: PathBuf,
        /// Where to write the binary form (header + postcard).
        #[arg(long)]
        out: PathBuf,
        /// Also write an equivalent Rego module (OPA v1 syntax) here.
        #[arg(long)]
        rego: Option<PathBuf>,
    },
    /// Evaluate one request (JSON, see docs/policy.md) against a policy with the monitor's
    /// evaluator; prints {"decision", "rule", "labels"}.
    Eval {
        /// The policy source file.
        file: PathBuf,
        /// The request as JSON (`-` reads standard input).
        #[arg(long)]
        input: PathBuf,
    },
    /// Print the pin (SHA-256 of the canonical {description, inputSchema}) of MCP tools.
    ///
    /// ENTRY is one `tools/list` entry or a whole `tools/list` result (`{"tools": [...]}`);
    /// prints `name sha256:<hex>` per tool. The monitor's tool gateway hashes the live
    /// entries the same way.
    Pin {
        /// The JSON file (`-` reads standard input).
        entry: PathBuf,
    },
}

fn load(file: &Path) -> Result<std::result::Result<Compiled, String>> {
    let src =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    Ok(compile(&file.display().to_string(), &src, base).map_err(|d| d.render()))
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Check { file } => match load(&file)? {
            Ok(p) => {
                println!(
                    "{}: ok ({} rules, {} limits, {} tools, {} agents)",
                    file.display(),
                    p.rules.len(),
                    p.limits.len(),
                    p.tools.len(),
                    p.agents.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(report) => {
                eprintln!("{report}");
                Ok(ExitCode::FAILURE)
            }
        },
        Cmd::Compile {
            file,
            out,
            rego: rego_out,
        } => {
            let p = match load(&file)? {
                Ok(p) => p,
                Err(report) => {
                    eprintln!("{report}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let bytes = p.to_bytes();
            let digest = hex(&Sha256::digest(&bytes));
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            tracing::info!(bytes = bytes.len(), out = %out.display(), "wrote binary policy");
            if let Some(path) = rego_out {
                std::fs::write(&path, rego::emit(&p, &digest))
                    .with_context(|| format!("writing {}", path.display()))?;
                tracing::info!(out = %path.display(), "wrote Rego");
            }
            println!("sha256:{digest}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Eval { file, input } => {
            let p = match load(&file)? {
                Ok(p) => p,
                Err(report) => {
                    eprintln!("{report}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let text = if input.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(&input)
                    .with_context(|| format!("reading {}", input.display()))?
            };
            let json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", input.display()))?;
            // Evaluate exactly what the monitor would: the decoded binary form.
            let bytes = p.to_bytes();
            let policy = omega_policy::decode(&bytes).context("decoding the compiled policy")?;
            let decision = request::eval_json(&p, &policy, &json)?;
            println!("{}", serde_json::to_string_pretty(&decision)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Pin { entry } => {
            let text = if entry.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(&entry)
                    .with_context(|| format!("reading {}", entry.display()))?
            };
            let json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", entry.display()))?;
            let tools = match json.get("tools").and_then(|t| t.as_array()) {
                Some(list) => list.clone(),
                None => vec![json],
            };
            for t in &tools {
                let name = t.get("name").and_then(|n| n.as_str()).unwrap_or("?");
                let description = t
                    .get("description")
                    .and_then(|d| d.as_str())
                    .with_context(|| format!("tool {name}: no string `description`"))?;
                let schema = t
                    .get("inputSchema")
                    .with_context(|| format!("tool {name}: no `inputSchema`"))?;
                println!(
                    "{name} sha256:{}",
                    hex(&policy_compiler::compile::tool_pin(description, schema))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
