//! What a built agent module imports and exports, checked against the agent ABI the way the
//! monitor checks it at load (`omega-runtime`), so a module the monitor would refuse never
//! leaves the build.

use omega_agent_abi as abi;
use wasmparser::{ExternalKind, FuncType, Parser, Payload, TypeRef, ValType, Validator};

/// One function import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub module: String,
    pub name: String,
    pub params: Vec<ValType>,
    pub results: Vec<ValType>,
}

/// The facts about a module the build checks and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    pub imports: Vec<Import>,
    /// Pages of linear memory at instantiation (64 KiB each): an idle agent's floor.
    pub initial_pages: u64,
}

/// Why a module fails the check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    #[error("invalid Wasm: {0}")]
    Invalid(String),
    #[error("imports a non-function `{module}.{name}`")]
    NonFunctionImport { module: String, name: String },
    #[error("imports `{module}.{name}`, outside the host ABI `{abi}`", abi = abi::MODULE)]
    ForeignImport { module: String, name: String },
    #[error("imports `{name}` with type {actual}; the ABI defines {expected}")]
    Signature {
        name: String,
        actual: String,
        expected: String,
    },
    #[error("must export {0}")]
    MissingExport(&'static str),
    #[error("is the forbidden-import agent but imports nothing outside the ABI")]
    NoForbiddenImport,
}

fn val(t: abi::ValType) -> ValType {
    match t {
        abi::ValType::I32 => ValType::I32,
        abi::ValType::I64 => ValType::I64,
    }
}

fn signature(params: &[ValType], results: &[ValType]) -> String {
    format!("{params:?} -> {results:?}").to_lowercase()
}

fn invalid(e: wasmparser::BinaryReaderError) -> ModuleError {
    ModuleError::Invalid(e.to_string())
}

/// Validates `wasm` and reads its function imports, the type of its `run` export and its
/// memory.
fn read(wasm: &[u8]) -> Result<(ModuleInfo, Option<FuncType>, bool), ModuleError> {
    Validator::new().validate_all(wasm).map_err(invalid)?;
    let mut types: Vec<FuncType> = Vec::new();
    let mut func_types: Vec<u32> = Vec::new(); // imported functions first, then defined ones
    let mut imports = Vec::new();
    let mut initial_pages = 0;
    let (mut run, mut memory_exported) = (None, false);
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::TypeSection(r) => {
                for t in r.into_iter_err_on_gc_types() {
                    types.push(t.map_err(invalid)?);
                }
            }
            Payload::ImportSection(r) => {
                for i in r {
                    let i = i.map_err(invalid)?;
                    let TypeRef::Func(ty) = i.ty else {
                        return Err(ModuleError::NonFunctionImport {
                            module: i.module.into(),
                            name: i.name.into(),
                        });
                    };
                    func_types.push(ty);
                    let ft = &types[ty as usize]; // validated: in range
                    imports.push(Import {
                        module: i.module.into(),
                        name: i.name.into(),
                        params: ft.params().to_vec(),
                        results: ft.results().to_vec(),
                    });
                }
            }
            Payload::FunctionSection(r) => {
                for f in r {
                    func_types.push(f.map_err(invalid)?);
                }
            }
            Payload::MemorySection(r) => {
                for m in r {
                    initial_pages = m.map_err(invalid)?.initial;
                }
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e.map_err(invalid)?;
                    match (e.name, e.kind) {
                        (abi::ENTRY_EXPORT, ExternalKind::Func) => {
                            run = Some(types[func_types[e.index as usize] as usize].clone());
                        }
                        (abi::MEMORY_EXPORT, ExternalKind::Memory) => memory_exported = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let info = ModuleInfo {
        imports,
        initial_pages,
    };
    Ok((info, run, memory_exported))
}

/// Checks agent `name`'s module as the monitor will: imports only from [`abi::MODULE`], each
/// with the ABI's exact signature; exports `run: [] -> []` and `memory`. The one exception
/// is [`crate::FORBIDDEN_IMPORT_AGENT`], which must import something from outside the ABI
/// (that is what it is for).
pub fn check(name: &str, wasm: &[u8]) -> Result<ModuleInfo, ModuleError> {
    let (info, run, memory_exported) = read(wasm)?;
    let mut foreign = None;
    for i in &info.imports {
        let Some(expected) = (i.module == abi::MODULE)
            .then(|| abi::import(&i.name))
            .flatten()
        else {
            foreign.get_or_insert(ModuleError::ForeignImport {
                module: i.module.clone(),
                name: i.name.clone(),
            });
            continue;
        };
        let params: Vec<ValType> = expected.params.iter().copied().map(val).collect();
        let results: Vec<ValType> = expected.results.iter().copied().map(val).collect();
        if (params.as_slice(), results.as_slice()) != (i.params.as_slice(), i.results.as_slice()) {
            return Err(ModuleError::Signature {
                name: i.name.clone(),
                actual: signature(&i.params, &i.results),
                expected: signature(&params, &results),
            });
        }
    }
    match (name == crate::FORBIDDEN_IMPORT_AGENT, foreign) {
        (false, Some(e)) => return Err(e),
        (true, None) => return Err(ModuleError::NoForbiddenImport),
        _ => {}
    }
    if !run.is_some_and(|t| t.params().is_empty() && t.results().is_empty()) {
        return Err(ModuleError::MissingExport("`run`: [] -> []"));
    }
    if !memory_exported {
        return Err(ModuleError::MissingExport("`memory`"));
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(imports: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module {imports} (memory (export "memory") 1) (func (export "run")))"#
        ))
        .unwrap()
    }

    const LOG: &str = r#"(import "omega_v1" "log" (func (param i32 i32 i32 i32) (result i32)))"#;
    const WASI: &str = r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#;

    #[test]
    fn abi_imports_pass_and_report_memory() {
        let info = check("triage", &module(LOG)).unwrap();
        assert_eq!(info.imports.len(), 1);
        assert_eq!(info.initial_pages, 1);
    }

    #[test]
    fn a_foreign_import_is_refused_except_in_the_forbidden_import_agent() {
        let wasi = module(&format!("{LOG} {WASI}"));
        assert_eq!(
            check("triage", &wasi),
            Err(ModuleError::ForeignImport {
                module: "wasi_snapshot_preview1".into(),
                name: "fd_write".into()
            })
        );
        assert!(check(crate::FORBIDDEN_IMPORT_AGENT, &wasi).is_ok());
        assert_eq!(
            check(crate::FORBIDDEN_IMPORT_AGENT, &module(LOG)),
            Err(ModuleError::NoForbiddenImport)
        );
    }

    #[test]
    fn unknown_names_and_wrong_signatures_are_refused() {
        let unknown = r#"(import "omega_v1" "spawn" (func))"#;
        assert!(matches!(
            check("triage", &module(unknown)),
            Err(ModuleError::ForeignImport { .. })
        ));
        let now_i32 = r#"(import "omega_v1" "now" (func (result i32)))"#;
        assert!(matches!(
            check("triage", &module(now_i32)),
            Err(ModuleError::Signature { name, .. }) if name == "now"
        ));
    }

    #[test]
    fn run_and_memory_must_be_exported() {
        let no_run = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
        assert_eq!(
            check("triage", &no_run),
            Err(ModuleError::MissingExport("`run`: [] -> []"))
        );
        let run_i32 = wat::parse_str(
            r#"(module (memory (export "memory") 1) (func (export "run") (param i32)))"#,
        )
        .unwrap();
        assert!(check("triage", &run_i32).is_err());
        let no_memory = wat::parse_str(r#"(module (func (export "run")))"#).unwrap();
        assert_eq!(
            check("triage", &no_memory),
            Err(ModuleError::MissingExport("`memory`"))
        );
        assert!(matches!(
            check("triage", b"\0asm\x01\0\0\0\x99"),
            Err(ModuleError::Invalid(_))
        ));
    }
}
