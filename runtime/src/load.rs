//! Load-time checks: a module runs only if its SHA-256 is the policy's pin for the agent, it
//! imports nothing but the host ABI with the exact signatures, it exports what the runtime
//! calls, and its declared memory fits the agent's limit.

use alloc::format;
use alloc::string::String;

use omega_agent_abi as abi;
use omega_policy::Policy;
use sha2::{Digest, Sha256};
use wasmi::{Engine, ExternType, FuncType, Module};

/// Size of a Wasm page.
pub const PAGE: u64 = 64 * 1024;

/// What the manifest says about one agent.
#[derive(Debug, Clone, Copy)]
pub struct AgentSpec<'a> {
    /// The agent's name in the policy (`agent NAME { hash … }`).
    pub name: &'a str,
    /// The Wasm module bytes.
    pub module: &'a [u8],
    pub limits: AgentLimits,
    pub restart: RestartPolicy,
}

/// Resource limits of one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLimits {
    /// Most bytes of linear memory (a module declaring more is refused at load; growing past
    /// it traps the agent).
    pub memory_bytes: u64,
    /// Fuel per scheduler slice: how far the agent runs before others get their turn.
    pub fuel_slice: u64,
    /// Fuel for the agent's whole life (each restart starts afresh); `None`: unbounded.
    pub fuel_total: Option<u64>,
}

impl Default for AgentLimits {
    fn default() -> Self {
        AgentLimits {
            memory_bytes: 4 << 20,
            fuel_slice: 100_000,
            fuel_total: None,
        }
    }
}

/// What happens when an agent traps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Stay stopped.
    Never,
    /// Start again from `run`, at most `max` times in the agent's life. Its policy session
    /// (labels, rate-limit counts) and inbox survive the restart.
    OnTrap { max: u32 },
}

/// Why a module was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("agent `{0}` is not declared in the policy")]
    UnknownAgent(String),
    #[error(
        "agent `{agent}`: module hash sha256:{actual} does not match the policy's pin sha256:{pinned}"
    )]
    HashMismatch {
        agent: String,
        actual: String,
        pinned: String,
    },
    #[error("agent `{agent}`: invalid Wasm module: {reason}")]
    Invalid { agent: String, reason: String },
    #[error("agent `{agent}`: import `{module}.{name}` is not part of the host ABI `{abi}`", abi = abi::MODULE)]
    ForeignImport {
        agent: String,
        module: String,
        name: String,
    },
    #[error("agent `{agent}`: import `{name}` has type {actual}, the ABI defines {expected}")]
    ImportSignature {
        agent: String,
        name: String,
        actual: String,
        expected: String,
    },
    #[error("agent `{agent}`: missing export {what}")]
    MissingExport { agent: String, what: &'static str },
    #[error(
        "agent `{agent}`: memory of {declared} bytes exceeds the agent's limit of {limit} bytes"
    )]
    MemoryLimit {
        agent: String,
        declared: u64,
        limit: u64,
    },
    #[error("agent `{agent}`: {what}")]
    Unsupported { agent: String, what: &'static str },
    #[error("agent `{agent}`: instantiation failed: {reason}")]
    Instantiate { agent: String, reason: String },
}

/// A module that passed every load-time check; instantiate it with [`crate::Runtime::spawn`].
#[derive(Debug, Clone)]
pub struct CheckedModule {
    /// The agent's own name (an instance's: `NAME-i`).
    pub(crate) name: String,
    /// The name the policy declares it under (`agent NAME`): the same as `name` unless the
    /// agent is an instance ([`CheckedModule::instance`]).
    pub(crate) policy_name: String,
    pub(crate) module: Module,
    pub(crate) hash: [u8; 32],
    pub(crate) limits: AgentLimits,
    pub(crate) restart: RestartPolicy,
}

impl CheckedModule {
    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The name the policy decides this agent's actions under.
    pub fn policy_name(&self) -> &str {
        &self.policy_name
    }
    /// The same checked module as an instance called `name` of this policy agent (the
    /// manifest's `instances`): its own store, session, fuel and card when spawned, decided
    /// by the policy as the agent it was checked as. The module is shared (no second
    /// translation); the checks ran once, on the same bytes.
    pub fn instance(&self, name: &str) -> CheckedModule {
        CheckedModule {
            name: String::from(name),
            ..self.clone()
        }
    }
    /// SHA-256 of the module bytes.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn signature(params: &[wasmi::ValType], results: &[wasmi::ValType]) -> String {
    format!("{params:?} -> {results:?}").to_lowercase()
}

fn abi_val(t: abi::ValType) -> wasmi::ValType {
    match t {
        abi::ValType::I32 => wasmi::ValType::I32,
        abi::ValType::I64 => wasmi::ValType::I64,
    }
}

fn matches_abi(ty: &FuncType, imp: &abi::Import) -> bool {
    ty.params().len() == imp.params.len()
        && ty.results().len() == imp.results.len()
        && ty
            .params()
            .iter()
            .zip(imp.params)
            .all(|(a, b)| *a == abi_val(*b))
        && ty
            .results()
            .iter()
            .zip(imp.results)
            .all(|(a, b)| *a == abi_val(*b))
}

/// Runs every load-time check on `spec`.
pub(crate) fn check(
    engine: &Engine,
    policy: &Policy<'_>,
    spec: &AgentSpec<'_>,
) -> Result<CheckedModule, LoadError> {
    let agent = || String::from(spec.name);
    // SECURITY: the module that runs is the one the policy author pinned; a swapped module
    // never gets an instance (the evaluator's `agent-pin` check is the second line).
    let declared = policy
        .agents
        .iter()
        .find(|a| a.name == spec.name)
        .ok_or_else(|| LoadError::UnknownAgent(agent()))?;
    let hash: [u8; 32] = Sha256::digest(spec.module).into();
    if hash != declared.hash {
        return Err(LoadError::HashMismatch {
            agent: agent(),
            actual: hex(&hash),
            pinned: hex(&declared.hash),
        });
    }
    let module = Module::new(engine, spec.module).map_err(|e| LoadError::Invalid {
        agent: agent(),
        reason: format!("{e}"),
    })?;

    // SECURITY: the host ABI is the agent's only door; any other import is refused by
    // name, so nothing the linker happens to define can be reached.
    for import in module.imports() {
        if import.module() != abi::MODULE {
            return Err(LoadError::ForeignImport {
                agent: agent(),
                module: import.module().into(),
                name: import.name().into(),
            });
        }
        let Some(expected) = abi::import(import.name()) else {
            return Err(LoadError::ForeignImport {
                agent: agent(),
                module: import.module().into(),
                name: import.name().into(),
            });
        };
        let expected_sig = || {
            let p: alloc::vec::Vec<_> = expected.params.iter().map(|t| abi_val(*t)).collect();
            let r: alloc::vec::Vec<_> = expected.results.iter().map(|t| abi_val(*t)).collect();
            signature(&p, &r)
        };
        match import.ty() {
            ExternType::Func(ty) if matches_abi(ty, expected) => {}
            ExternType::Func(ty) => {
                return Err(LoadError::ImportSignature {
                    agent: agent(),
                    name: format!("{}.{}", abi::MODULE, import.name()),
                    actual: signature(ty.params(), ty.results()),
                    expected: expected_sig(),
                });
            }
            _ => {
                return Err(LoadError::ImportSignature {
                    agent: agent(),
                    name: format!("{}.{}", abi::MODULE, import.name()),
                    actual: "not a function".into(),
                    expected: expected_sig(),
                });
            }
        }
    }

    match module.get_export(abi::ENTRY_EXPORT) {
        Some(ExternType::Func(ty)) if ty.params().is_empty() && ty.results().is_empty() => {}
        _ => {
            return Err(LoadError::MissingExport {
                agent: agent(),
                what: "`run`: [] -> []",
            });
        }
    }
    let Some(ExternType::Memory(mem)) = module.get_export(abi::MEMORY_EXPORT) else {
        return Err(LoadError::MissingExport {
            agent: agent(),
            what: "`memory`",
        });
    };
    if mem.is_64() {
        return Err(LoadError::Unsupported {
            agent: agent(),
            what: "64-bit memories are not supported",
        });
    }
    let declared_bytes = mem.minimum().saturating_mul(PAGE);
    if declared_bytes > spec.limits.memory_bytes {
        return Err(LoadError::MemoryLimit {
            agent: agent(),
            declared: declared_bytes,
            limit: spec.limits.memory_bytes,
        });
    }
    if spec.limits.fuel_slice == 0 {
        return Err(LoadError::Unsupported {
            agent: agent(),
            what: "a fuel slice of 0 never runs",
        });
    }
    Ok(CheckedModule {
        name: agent(),
        policy_name: agent(),
        module,
        hash,
        limits: spec.limits,
        restart: spec.restart,
    })
}
