//! Name resolution and type checking: the parsed file becomes a [`Compiled`] policy.

use std::collections::HashMap;
use std::path::Path;

use omega_policy as op;
use serde_json::Value as Json;

use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::syntax::{
    self, ActionKw, Decl, DeclKind, FieldValue, GpuMeasurementAst, Item, LimitDecl, LitAst, Name,
    RuleDecl, SubjectAst, TargetRef,
};

/// Labels every policy has, in this order, before the ones it declares.
pub const BUILTIN_LABELS: [&str; 3] = ["phi", "secret", "untrusted"];
/// The built-in label `untrusted` as a label set (its index in [`BUILTIN_LABELS`]).
pub const UNTRUSTED: u64 = 1 << 2;
const _: () = assert!(matches!(BUILTIN_LABELS[2].as_bytes(), b"untrusted"));

mod ir;
pub use ir::*;

// The pin is defined once, in the no_std contract crate the gateway and the monitor use too.
pub use omega_tool_protocol::{canonical_json, tool_pin};

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits (either case), optionally prefixed by `sha256:`.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

struct Checker<'a> {
    file: &'a str,
    src: &'a str,
    base: &'a Path,
    errors: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, span: Span, msg: impl Into<String>) {
        self.errors
            .push(Diagnostic::new(self.file, self.src, span, msg));
    }
}

fn suggest<'n>(word: &str, candidates: impl IntoIterator<Item = &'n str>) -> String {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    let all: Vec<&str> = candidates.into_iter().collect();
    let best = all.iter().map(|c| (distance(word, c), *c)).min();
    match best {
        Some((d, c)) if d <= 2 || d * 3 <= word.len() => format!(" (did you mean `{c}`?)"),
        _ if all.is_empty() => String::new(),
        _ => format!(" (known: {})", all.join(", ")),
    }
}

fn action_of(a: ActionKw) -> op::RuleAction {
    match a {
        ActionKw::Infer => op::RuleAction::Infer,
        ActionKw::Call => op::RuleAction::Call,
        ActionKw::Read => op::RuleAction::Read,
        ActionKw::Send => op::RuleAction::Send,
    }
}

/// Parses and checks a policy. `file` names it in diagnostics; `base` is the folder
/// `schema file "..."` paths are relative to.
pub fn compile(file: &str, src: &str, base: &Path) -> Result<Compiled, Diagnostics> {
    let items = syntax::parse(src)
        .map_err(|e| Diagnostics(vec![Diagnostic::new(file, src, e.span, e.message)]))?;
    let mut ck = Checker {
        file,
        src,
        base,
        errors: Vec::new(),
    };
    let compiled = check(&mut ck, &items);
    if ck.errors.is_empty() {
        if let Err(e) = op::encode(&compiled.policy()) {
            ck.error(
                Span::default(),
                format!("policy exceeds the binary form's limits: {e}"),
            );
            return Err(Diagnostics(ck.errors));
        }
        Ok(compiled)
    } else {
        Err(Diagnostics(ck.errors))
    }
}

struct Scope {
    labels: HashMap<String, usize>,
}

fn check(ck: &mut Checker<'_>, items: &[Item]) -> Compiled {
    let mut out = Compiled {
        name: Path::new(ck.file)
            .file_stem()
            .map_or_else(|| "policy".into(), |s| s.to_string_lossy().into_owned()),
        labels: BUILTIN_LABELS.iter().map(|s| s.to_string()).collect(),
        agents: vec![],
        tools: vec![],
        models: vec![],
        sources: vec![],
        rules: vec![],
        limits: vec![],
    };
    // Pass 1: the policy name and labels.
    let mut named = false;
    for item in items {
        match item {
            Item::Policy(s) => {
                if named {
                    ck.error(s.span, "the policy is already named");
                }
                named = true;
                out.name = s.text.clone();
            }
            Item::Labels(names) => {
                for n in names {
                    if out.labels.contains(&n.text) {
                        ck.error(n.span, format!("label `{}` is already declared", n.text));
                    } else if out.labels.len() == op::MAX_LABELS {
                        ck.error(
                            n.span,
                            format!("too many labels (at most {})", op::MAX_LABELS),
                        );
                    } else {
                        out.labels.push(n.text.clone());
                    }
                }
            }
            _ => {}
        }
    }
    let scope = Scope {
        labels: out
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i))
            .collect(),
    };
    // Pass 2: declarations.
    for item in items {
        if let Item::Decl(d) = item {
            decl(ck, &scope, d, &mut out);
        }
    }
    // Pass 3: rules and limits.
    let mut rule_names: HashMap<String, Span> = HashMap::new();
    for item in items {
        let name = match item {
            Item::Rule(r) => &r.name,
            Item::Limit(l) => &l.name,
            _ => continue,
        };
        if !name
            .text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            ck.error(
                name.span,
                "rule and limit names use only letters, digits and `_`",
            );
        }
        if rule_names.insert(name.text.clone(), name.span).is_some() {
            ck.error(
                name.span,
                format!("a rule or limit named `{}` already exists", name.text),
            );
        }
        match item {
            Item::Rule(r) => {
                if let Some(r) = rule(ck, &scope, r, &out) {
                    out.rules.push(r);
                }
            }
            Item::Limit(l) => {
                if let Some(l) = limit(ck, l, &out) {
                    out.limits.push(l);
                }
            }
            _ => {}
        }
    }
    if out.limits.len() > op::MAX_LIMITS {
        ck.error(
            Span::default(),
            format!("too many limits (at most {})", op::MAX_LIMITS),
        );
    }
    out
}

fn label_set(ck: &mut Checker<'_>, scope: &Scope, names: &[Name]) -> u64 {
    let mut set = 0;
    for n in names {
        match scope.labels.get(&n.text) {
            Some(&i) => set |= 1u64 << i,
            None => {
                let hint = suggest(&n.text, scope.labels.keys().map(String::as_str));
                ck.error(n.span, format!("unknown label `{}`{hint}", n.text));
            }
        }
    }
    set
}

fn decl(ck: &mut Checker<'_>, scope: &Scope, d: &Decl, out: &mut Compiled) {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    let (mut hash, mut cleared, mut result, mut description, mut schema, mut pin) =
        (None, 0u64, 0u64, None, None, None);
    let mut gpu = None;
    for f in &d.fields {
        if seen.insert(f.key.text.as_str(), f.key.span).is_some() {
            ck.error(f.key.span, format!("duplicate field `{}`", f.key.text));
            continue;
        }
        match (&*f.key.text, &f.value) {
            ("hash" | "proxy", FieldValue::Str(s)) => match parse_hash(&s.text) {
                Some(h) => hash = Some(h),
                None => ck.error(
                    s.span,
                    "expected a SHA-256 as 64 hex digits, optionally prefixed by `sha256:`",
                ),
            },
            ("pin", FieldValue::Str(s)) => match parse_hash(&s.text) {
                Some(h) => pin = Some((h, s.span)),
                None => ck.error(
                    s.span,
                    "expected a SHA-256 as 64 hex digits, optionally prefixed by `sha256:`",
                ),
            },
            ("description", FieldValue::Str(s)) => description = Some(s.text.clone()),
            ("cleared", FieldValue::Labels(l)) => cleared = label_set(ck, scope, l),
            ("result", FieldValue::Labels(l)) | ("labels", FieldValue::Labels(l)) => {
                result = label_set(ck, scope, l)
            }
            ("schema", FieldValue::Json(v, span)) => schema = Some((v.clone(), *span)),
            ("schema", FieldValue::JsonFile(s)) => {
                let path = ck.base.join(&s.text);
                match std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str::<Json>(&t).map_err(|e| e.to_string()))
                {
                    Ok(v) => schema = Some((v, s.span)),
                    Err(e) => ck.error(
                        s.span,
                        format!("cannot read schema {}: {e}", path.display()),
                    ),
                }
            }
            ("gpu", FieldValue::Gpu(items, span)) => {
                gpu = gpu_reference(ck, f.key.span, items, *span)
            }
            _ => ck.error(f.key.span, format!("bad value for `{}`", f.key.text)),
        }
    }
    let kind = d.kind.word();
    let dup = match d.kind {
        DeclKind::Agent => out.agents.iter().any(|a| a.name == d.name.text),
        DeclKind::Model => out.models.iter().any(|a| a.name == d.name.text),
        DeclKind::Tool => out.tools.iter().any(|a| a.name == d.name.text),
        DeclKind::Source => out.sources.iter().any(|a| a.name == d.name.text),
    };
    if dup {
        ck.error(
            d.name.span,
            format!("{kind} `{}` is already declared", d.name.text),
        );
        return;
    }
    let name = d.name.text.clone();
    match d.kind {
        DeclKind::Agent => {
            let Some(hash) = hash else {
                return ck.error(
                    d.name.span,
                    format!("agent `{name}` needs `hash \"<module sha256>\"`"),
                );
            };
            if out.agents.len() == op::MAX_AGENTS {
                return ck.error(
                    d.name.span,
                    format!("too many agents (at most {})", op::MAX_AGENTS),
                );
            }
            if let Some((node, _)) = name.split_once('/')
                && !omega_policy::remote_node_ok(node)
            {
                return ck.error(
                    d.name.span,
                    format!(
                        "agent `{name}`: the node of a remote agent is a peer name (lowercase letters, digits, `-`, `_`)"
                    ),
                );
            }
            out.agents.push(AgentIr {
                name,
                hash,
                cleared,
            });
        }
        DeclKind::Model => {
            let Some(hash) = hash else {
                return ck.error(
                    d.name.span,
                    format!("model `{name}` needs `proxy \"<identity sha256>\"`"),
                );
            };
            out.models.push(TargetIr {
                name,
                hash,
                cleared,
                result,
                schema: None,
                gpu,
            });
        }
        DeclKind::Source => out.sources.push(SourceIr {
            name,
            labels: result,
        }),
        DeclKind::Tool => {
            if !name.contains('.') {
                ck.error(
                    d.name.span,
                    "a tool is named `server.tool` (its MCP server, a dot, its tool name)",
                );
            }
            let (Some(description), Some((schema, schema_span))) = (description, schema) else {
                return ck.error(d.name.span, format!("tool `{name}` needs `description \"...\"` and `schema {{...}}` (or `schema file \"x.json\"`), as in its tools/list entry"));
            };
            if !matches!(&schema, Json::Object(m) if m.get("type") == Some(&Json::from("object"))) {
                ck.error(
                    schema_span,
                    "a tool's input schema must be a JSON object with \"type\": \"object\"",
                );
            }
            let hash = tool_pin(&description, &schema);
            if let Some((declared, span)) = pin
                && declared != hash
            {
                ck.error(span, format!(
                    "pin does not match the declared entry: description + schema hash to sha256:{} (changed tool? see docs/policy.md, Pins)",
                    hex(&hash)
                ));
            }
            // SECURITY: what a tool answers is untrusted input whatever the policy says:
            // every tool's results carry `untrusted` (built-in label 2) besides its own
            // `result` labels, so a rule that refuses untrusted context always applies.
            out.tools.push(TargetIr {
                name,
                hash,
                cleared,
                result: result | UNTRUSTED,
                schema: Some(schema),
                gpu: None,
            });
        }
    }
}

/// A model's `gpu { measurement … }` block as reference values, sorted by index; `None` (with
/// errors reported) when it is not valid.
fn gpu_reference(
    ck: &mut Checker<'_>,
    key: Span,
    items: &[GpuMeasurementAst],
    block: Span,
) -> Option<Vec<GpuRefIr>> {
    if items.is_empty() {
        ck.error(
            Span::new(key.start, block.end),
            "a `gpu` block lists the reference values the GPU's evidence must match, at least one: `gpu { measurement 1 \"<hex>\" }` (SPDM block index; NVIDIA's RIM index i is block i + 1)",
        );
        return None;
    }
    if items.len() > op::MAX_GPU_MEASUREMENTS {
        ck.error(
            block,
            format!(
                "too many GPU measurements (at most {})",
                op::MAX_GPU_MEASUREMENTS
            ),
        );
        return None;
    }
    let mut out: Vec<GpuRefIr> = Vec::new();
    let mut ok = true;
    for item in items {
        let (n, span) = item.index;
        let Some(index) = u8::try_from(n)
            .ok()
            .filter(|i| (1..=op::MAX_GPU_INDEX).contains(i))
        else {
            ck.error(
                span,
                format!(
                    "an SPDM measurement index is 1 to {} (NVIDIA's RIM index i is SPDM index i + 1)",
                    op::MAX_GPU_INDEX
                ),
            );
            ok = false;
            continue;
        };
        if out.iter().any(|r| r.index == index) {
            ck.error(
                span,
                format!(
                    "measurement {index} is already listed (give its alternatives as one list: `measurement {index} [\"<hex>\", \"<hex>\"]`)"
                ),
            );
            ok = false;
            continue;
        }
        if item.values.is_empty() || item.values.len() > op::MAX_GPU_ALTERNATIVES {
            ck.error(
                item.span,
                format!(
                    "a measurement has 1 to {} allowed values",
                    op::MAX_GPU_ALTERNATIVES
                ),
            );
            ok = false;
            continue;
        }
        let mut allowed = Vec::new();
        for v in &item.values {
            match parse_hex(&v.text) {
                Some(b) if !b.is_empty() && b.len() <= op::MAX_GPU_VALUE => allowed.push(b),
                _ => {
                    ck.error(
                        v.span,
                        format!(
                            "expected a measurement value as hex digits, 1 to {} bytes (NVIDIA's are SHA-384: 96 hex digits)",
                            op::MAX_GPU_VALUE
                        ),
                    );
                    ok = false;
                }
            }
        }
        out.push(GpuRefIr { index, allowed });
    }
    if !ok {
        return None;
    }
    out.sort_by_key(|r| r.index);
    Some(out)
}

/// An even number of hex digits (either case) as bytes.
fn parse_hex(s: &str) -> Option<Vec<u8>> {
    // `from_str_radix` alone would also take a sign (`+f`).
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn resolve_target(
    ck: &mut Checker<'_>,
    action: ActionKw,
    target: &TargetRef,
    out: &Compiled,
) -> Result<Option<u16>, ()> {
    let TargetRef::Named(n) = target else {
        return Ok(None);
    };
    let (names, what): (Vec<&str>, &str) = match action {
        ActionKw::Infer => (
            out.models.iter().map(|m| m.name.as_str()).collect(),
            "model",
        ),
        ActionKw::Call => (out.tools.iter().map(|m| m.name.as_str()).collect(), "tool"),
        ActionKw::Read => (
            out.sources.iter().map(|m| m.name.as_str()).collect(),
            "source",
        ),
        ActionKw::Send => (
            out.agents.iter().map(|m| m.name.as_str()).collect(),
            "agent",
        ),
    };
    match names.iter().position(|x| *x == n.text) {
        Some(i) => Ok(Some(i as u16)),
        None => {
            let hint = suggest(&n.text, names.iter().copied());
            ck.error(n.span, format!("unknown {what} `{}`{hint}", n.text));
            Err(())
        }
    }
}

fn agent_set(ck: &mut Checker<'_>, agents: &Option<Vec<Name>>, out: &Compiled) -> Option<u64> {
    let names = agents.as_ref()?;
    let mut set = 0;
    for n in names {
        match out.agents.iter().position(|a| a.name == n.text) {
            Some(i) => set |= 1u64 << i,
            None => {
                let hint = suggest(&n.text, out.agents.iter().map(|a| a.name.as_str()));
                ck.error(n.span, format!("unknown agent `{}`{hint}", n.text));
            }
        }
    }
    Some(set)
}

/// Agents of other images (`node/agent`) only send, and only to this image's agents: a
/// message between two remote agents never passes through this monitor, and a remote agent
/// does not infer, call or read here. Such a rule could never match; it is an error.
fn remote_scope(
    ck: &mut Checker<'_>,
    action: (ActionKw, crate::diag::Span),
    target: Option<u16>,
    agents: Option<u64>,
    out: &Compiled,
) {
    let remote = |i: usize| out.agents.get(i).is_some_and(|a| a.name.contains('/'));
    let senders = agents.unwrap_or(0);
    let any_remote_sender = (0..out.agents.len()).any(|i| senders & (1u64 << i) != 0 && remote(i));
    if any_remote_sender && action.0 != ActionKw::Send {
        ck.error(
            action.1,
            "a remote agent (`node/agent`) only sends messages here: it cannot be named in an infer, call or read rule",
        );
    }
    let all_remote =
        agents.is_some() && (0..out.agents.len()).all(|i| senders & (1u64 << i) == 0 || remote(i));
    if action.0 == ActionKw::Send
        && all_remote
        && senders != 0
        && target.is_some_and(|t| remote(usize::from(t)))
    {
        ck.error(
            action.1,
            "a message between two remote agents does not pass through this monitor",
        );
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Int,
    Str,
    Bool,
}

fn schema_type(node: &Json) -> Result<Ty, String> {
    let ty = match node.get("type") {
        Some(Json::String(s)) => Some(s.as_str()),
        Some(Json::Array(v)) => {
            let non_null: Vec<&str> = v
                .iter()
                .filter_map(Json::as_str)
                .filter(|s| *s != "null")
                .collect();
            if non_null.len() == 1 {
                Some(non_null[0])
            } else {
                None
            }
        }
        _ => None,
    };
    match ty {
        Some("integer") => Ok(Ty::Int),
        Some("string") => Ok(Ty::Str),
        Some("boolean") => Ok(Ty::Bool),
        Some("number") => Err(
            "has JSON type `number`; constraints compare integers only (declare it `integer`)"
                .into(),
        ),
        Some(other) => Err(format!(
            "has JSON type `{other}`, which constraints cannot compare"
        )),
        None => match node.get("enum") {
            Some(Json::Array(v)) if !v.is_empty() && v.iter().all(Json::is_string) => Ok(Ty::Str),
            _ => Err("has no single JSON type (integer, string or boolean)".into()),
        },
    }
}

fn rule(ck: &mut Checker<'_>, scope: &Scope, r: &RuleDecl, out: &Compiled) -> Option<RuleIr> {
    let effect = match r.effect.text.as_str() {
        "allow" => op::Effect::Allow,
        "deny" => op::Effect::Deny,
        _ => op::Effect::Confirm,
    };
    let target = resolve_target(ck, r.action.0, &r.target, out).ok()?;
    let agents = agent_set(ck, &r.agents, out);
    remote_scope(ck, r.action, target, agents, out);
    let mut constraints = Vec::new();
    for c in &r.conds {
        // The subject's type.
        let (subject, ty) = match (&c.subject, r.action.0) {
            (SubjectAst::Arg(parts), ActionKw::Call) => {
                let Some(t) = target else {
                    ck.error(c.subject_span, "argument conditions need a named tool (not `*`): arguments are typed by its schema");
                    continue;
                };
                let tool = &out.tools[usize::from(t)];
                let mut node = tool.schema.as_ref()?;
                let mut ok = true;
                for part in parts {
                    let props = node.get("properties").and_then(Json::as_object);
                    match props.and_then(|p| p.get(&part.text)) {
                        Some(next) => node = next,
                        None => {
                            let keys: Vec<&str> = props
                                .map(|p| p.keys().map(String::as_str).collect())
                                .unwrap_or_default();
                            let hint = suggest(&part.text, keys);
                            ck.error(
                                part.span,
                                format!(
                                    "tool `{}` has no argument `{}` in its input schema{hint}",
                                    tool.name, part.text
                                ),
                            );
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok {
                    continue;
                }
                match schema_type(node) {
                    Ok(ty) => {
                        let parts: Vec<String> = parts.iter().map(|p| p.text.clone()).collect();
                        (
                            SubjectIr::Arg {
                                path: parts.join("."),
                                parts,
                            },
                            ty,
                        )
                    }
                    Err(why) => {
                        ck.error(c.subject_span, format!("argument {why}"));
                        continue;
                    }
                }
            }
            (SubjectAst::MaxTokens, ActionKw::Infer) => (SubjectIr::MaxTokens, Ty::Int),
            (SubjectAst::Path, ActionKw::Read) => (SubjectIr::Path, Ty::Str),
            (s, _) => {
                let what = match s {
                    SubjectAst::Arg(_) => "`args.…` conditions belong to `call` rules",
                    SubjectAst::MaxTokens => "`max_tokens` conditions belong to `infer` rules",
                    SubjectAst::Path => "`path` conditions belong to `read` rules",
                };
                ck.error(c.subject_span, what);
                continue;
            }
        };
        let (opname, op_span) = c.op;
        let op = match opname {
            "==" => op::Op::Eq,
            "!=" => op::Op::Ne,
            "<" => op::Op::Lt,
            "<=" => op::Op::Le,
            ">" => op::Op::Gt,
            ">=" => op::Op::Ge,
            "startswith" => op::Op::Prefix,
            _ => op::Op::In,
        };
        let ty_name = |t: Ty| match t {
            Ty::Int => "an integer",
            Ty::Str => "a string",
            Ty::Bool => "a boolean",
        };
        let op_ok = match ty {
            Ty::Int => !matches!(op, op::Op::Prefix),
            Ty::Str => matches!(op, op::Op::Eq | op::Op::Ne | op::Op::Prefix | op::Op::In),
            Ty::Bool => matches!(op, op::Op::Eq | op::Op::Ne),
        };
        if !op_ok {
            ck.error(
                op_span,
                format!("`{opname}` does not apply to {}", ty_name(ty)),
            );
            continue;
        }
        let (lit, lit_span) = &c.value;
        let scalar = |l: &LitAst| match (l, ty) {
            (LitAst::Int(n), Ty::Int) => Some(LitIr::Int(*n)),
            (LitAst::Str(s), Ty::Str) => Some(LitIr::Str(s.clone())),
            (LitAst::Bool(b), Ty::Bool) => Some(LitIr::Bool(*b)),
            _ => None,
        };
        let value = if op == op::Op::In {
            let LitAst::List(items) = lit else {
                ck.error(*lit_span, "`in` takes a list: [a, b, ...]");
                continue;
            };
            let mut ints = Vec::new();
            let mut strs = Vec::new();
            let mut bad = false;
            for (item, span) in items {
                match scalar(item) {
                    Some(LitIr::Int(n)) => ints.push(n),
                    Some(LitIr::Str(s)) => strs.push(s),
                    _ => {
                        ck.error(
                            *span,
                            format!("expected {} here: the argument's schema type", ty_name(ty)),
                        );
                        bad = true;
                    }
                }
            }
            if bad {
                continue;
            }
            if ty == Ty::Int {
                LitIr::Ints(ints)
            } else {
                LitIr::Strs(strs)
            }
        } else {
            match scalar(lit) {
                Some(v) => v,
                None => {
                    ck.error(
                        *lit_span,
                        format!(
                            "expected {} here: the subject is {}",
                            ty_name(ty),
                            ty_name(ty)
                        ),
                    );
                    continue;
                }
            }
        };
        constraints.push(ConstraintIr { subject, op, value });
    }
    let declassify = match &r.declassify {
        None => 0,
        Some((names, span)) => {
            let set = label_set(ck, scope, names);
            if effect == op::Effect::Deny {
                ck.error(*span, "a deny rule cannot declassify");
            } else if r.action.0 == ActionKw::Read {
                ck.error(
                    *span,
                    "declassify applies to egress (infer, call, send); a read is not one",
                );
            }
            set
        }
    };
    Some(RuleIr {
        name: r.name.text.clone(),
        effect,
        action: action_of(r.action.0),
        target,
        agents,
        constraints,
        declassify,
    })
}

fn limit(ck: &mut Checker<'_>, l: &LimitDecl, out: &Compiled) -> Option<LimitIr> {
    let target = resolve_target(ck, l.action.0, &l.target, out).ok()?;
    let agents = agent_set(ck, &l.agents, out);
    remote_scope(ck, l.action, target, agents, out);
    let max = match u32::try_from(l.max.0) {
        Ok(m) => m,
        Err(_) => {
            ck.error(l.max.1, "the maximum must be between 0 and 4294967295");
            return None;
        }
    };
    let window_secs = match u32::try_from(l.window_secs.0) {
        Ok(w) if w > 0 => w,
        _ => {
            ck.error(
                l.window_secs.1,
                "the window must be between 1 second and 4294967295 seconds",
            );
            return None;
        }
    };
    Some(LimitIr {
        name: l.name.text.clone(),
        action: action_of(l.action.0),
        target,
        agents,
        max,
        window_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_results_always_carry_untrusted() {
        let src = r#"
label pii
tool fs.read { description "Read." schema { "type": "object" } cleared [] result [pii] }
tool fs.stat { description "Stat." schema { "type": "object" } cleared [] }
"#;
        let c =
            compile("t.policy", src, Path::new(".")).unwrap_or_else(|d| panic!("{}", d.render()));
        let bytes = c.to_bytes();
        let p = op::decode(&bytes).unwrap();
        let label = |name: &str| 1u64 << p.labels.iter().position(|l| *l == name).unwrap();
        assert_eq!(p.tools[0].result, label("pii") | label("untrusted"));
        assert_eq!(p.tools[1].result, label("untrusted"));
        assert_eq!(UNTRUSTED, label("untrusted"));
    }

    #[test]
    fn hashes_parse_with_or_without_prefix() {
        let h = "ab".repeat(32);
        assert_eq!(parse_hash(&h), Some([0xab; 32]));
        assert_eq!(parse_hash(&format!("sha256:{h}")), Some([0xab; 32]));
        assert_eq!(parse_hash(&h[1..]), None);
        assert_eq!(parse_hash(&format!("{}zz", &h[2..])), None);
    }
}
