//! Requests as JSON (the Rego `input`) and their evaluation with the no_std evaluator.
//!
//! ```json
//! { "agent": {"name": "triage", "hash": "<64 lowercase hex>"},
//!   "action": "call", "target": "fhir.search", "target_hash": "<64 lowercase hex>",
//!   "args": {"patient_id": "P-1"},        // call
//!   "max_tokens": 512,                    // infer
//!   "path": "/patients/1",                // read
//!   "context": {"labels": ["phi"]},       // labels the agent's context carries
//!   "counts": {"search_rate": 3} }        // allowed actions in each limit's current window
//! ```

use omega_policy::{Action, Arg, Decision, Effect, Policy, Request, State, Value};
use serde_json::{Value as Json, json};

use crate::compile::Compiled;

/// Why a JSON request cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request: {0}")]
    Shape(String),
}

fn shape(msg: impl Into<String>) -> RequestError {
    RequestError::Shape(msg.into())
}

/// Largest integer magnitude compared exactly (2^53, as I-JSON).
pub const SAFE_INT: i64 = 1 << 53;

/// A JSON value as the evaluator sees it.
pub fn value_of(v: Option<&Json>) -> OwnedValue {
    match v {
        None => OwnedValue::Absent,
        Some(Json::String(s)) => OwnedValue::Str(s.clone()),
        Some(Json::Bool(b)) => OwnedValue::Bool(*b),
        Some(Json::Number(n)) => {
            let int = if let Some(i) = n.as_i64() {
                Some(i)
            } else if n.is_u64() {
                None
            } else {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() <= SAFE_INT as f64)
                    .map(|f| f as i64)
            };
            match int {
                Some(i) if (-SAFE_INT..=SAFE_INT).contains(&i) => OwnedValue::Int(i),
                _ => OwnedValue::Other,
            }
        }
        Some(_) => OwnedValue::Other,
    }
}

/// [`Value`] with owned strings.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    Absent,
    Int(i64),
    Str(String),
    Bool(bool),
    Other,
}

impl OwnedValue {
    fn view(&self) -> Value<'_> {
        match self {
            OwnedValue::Absent => Value::Absent,
            OwnedValue::Int(i) => Value::Int(*i),
            OwnedValue::Str(s) => Value::Str(s),
            OwnedValue::Bool(b) => Value::Bool(*b),
            OwnedValue::Other => Value::Other,
        }
    }
}

/// Flattens an `args` object: nested objects give dotted paths; keys containing a dot are
/// skipped (no constraint can name them).
pub fn flatten_args(v: &Json) -> Vec<(String, OwnedValue)> {
    fn walk(prefix: &str, v: &Json, out: &mut Vec<(String, OwnedValue)>) {
        if let Json::Object(m) = v {
            for (k, child) in m {
                if k.contains('.') {
                    continue;
                }
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push((path.clone(), value_of(Some(child))));
                walk(&path, child, out);
            }
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

/// Exactly 64 lowercase hex digits (what the Rego compares as a string).
fn strict_hash(v: Option<&Json>) -> Option<[u8; 32]> {
    let s = v?.as_str()?;
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    crate::compile::parse_hash(s)
}

/// A request decoded from JSON, owning its strings.
#[derive(Debug, Clone)]
pub struct OwnedRequest {
    pub agent: String,
    pub agent_hash: Option<[u8; 32]>,
    pub action: String,
    pub target: String,
    pub target_hash: Option<[u8; 32]>,
    pub args: Vec<(String, OwnedValue)>,
    pub max_tokens: OwnedValue,
    pub path: OwnedValue,
    pub labels: Vec<String>,
    pub counts: Vec<(String, u32)>,
}

impl OwnedRequest {
    /// Decodes the JSON request shape described in the module docs.
    pub fn from_json(v: &Json) -> Result<Self, RequestError> {
        let agent = v.get("agent").ok_or_else(|| shape("missing `agent`"))?;
        let name = agent
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| shape("`agent.name` must be a string"))?;
        let action = v
            .get("action")
            .and_then(Json::as_str)
            .filter(|a| matches!(*a, "infer" | "call" | "read" | "send"))
            .ok_or_else(|| shape("`action` must be one of infer, call, read, send"))?;
        let target = v
            .get("target")
            .and_then(Json::as_str)
            .ok_or_else(|| shape("`target` must be a string"))?;
        let mut labels = Vec::new();
        if let Some(ctx) = v.get("context").and_then(|c| c.get("labels")) {
            let arr = ctx
                .as_array()
                .ok_or_else(|| shape("`context.labels` must be an array"))?;
            for l in arr {
                labels.push(
                    l.as_str()
                        .ok_or_else(|| shape("labels are strings"))?
                        .to_string(),
                );
            }
        }
        let mut counts = Vec::new();
        if let Some(c) = v.get("counts") {
            let obj = c
                .as_object()
                .ok_or_else(|| shape("`counts` must be an object"))?;
            for (k, n) in obj {
                let n = n
                    .as_u64()
                    .ok_or_else(|| shape("counts are non-negative integers"))?;
                counts.push((k.clone(), u32::try_from(n).unwrap_or(u32::MAX)));
            }
        }
        Ok(OwnedRequest {
            agent: name.to_string(),
            agent_hash: strict_hash(agent.get("hash")),
            action: action.to_string(),
            target: target.to_string(),
            target_hash: strict_hash(v.get("target_hash")),
            args: v.get("args").map(flatten_args).unwrap_or_default(),
            max_tokens: value_of(v.get("max_tokens")),
            path: value_of(v.get("path")),
            labels,
            counts,
        })
    }

    /// Label set and per-limit counts for `policy`.
    pub fn state_parts(&self, policy: &Policy<'_>) -> (u64, Vec<u32>) {
        let mut set = 0u64;
        for l in &self.labels {
            if let Some(i) = policy.labels.iter().position(|x| x == l) {
                set |= 1 << i;
            }
        }
        let counts = policy
            .limits
            .iter()
            .map(|l| {
                self.counts
                    .iter()
                    .find(|(k, _)| k == l.name)
                    .map_or(0, |(_, n)| *n)
            })
            .collect();
        (set, counts)
    }

    /// The flattened arguments, borrowed, for [`OwnedRequest::request`].
    pub fn args_view(&self) -> Vec<Arg<'_>> {
        self.args
            .iter()
            .map(|(p, v)| Arg {
                path: p,
                value: v.view(),
            })
            .collect()
    }

    /// The evaluator's view of this request, with `args` from [`OwnedRequest::args_view`].
    pub fn request<'a>(&'a self, args: &'a [Arg<'a>]) -> Request<'a> {
        let action = match self.action.as_str() {
            "infer" => Action::Infer {
                model: &self.target,
                proxy: self.target_hash.as_ref(),
                max_tokens: self.max_tokens.view(),
            },
            "call" => Action::Call {
                tool: &self.target,
                entry: self.target_hash.as_ref(),
                args,
            },
            "read" => Action::Read {
                source: &self.target,
                path: self.path.view(),
            },
            _ => Action::Send { to: &self.target },
        };
        Request {
            agent: &self.agent,
            agent_hash: self.agent_hash.as_ref(),
            action,
        }
    }

    /// Calls `f` with the evaluator's view of this request.
    pub fn with_request<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let args = self.args_view();
        f(&self.request(&args))
    }

    /// Evaluates against a decoded policy.
    pub fn evaluate(&self, policy: &Policy<'_>) -> Decision {
        let (labels, counts) = self.state_parts(policy);
        self.with_request(|req| {
            policy.evaluate(
                req,
                &State {
                    labels,
                    counts: &counts,
                },
            )
        })
    }
}

/// The decision as JSON: `{"decision", "rule", "labels"}` (labels in declaration order).
pub fn decision_json(policy: &Policy<'_>, compiled: &Compiled, d: &Decision) -> Json {
    let effect = match d.effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
        Effect::Confirm => "confirm",
    };
    json!({
        "decision": effect,
        "rule": policy.rule_name(d.rule).to_string(),
        "labels": compiled.label_names(d.labels),
    })
}

/// Decodes and evaluates one JSON request with the no_std evaluator.
pub fn eval_json(
    compiled: &Compiled,
    policy: &Policy<'_>,
    input: &Json,
) -> Result<Json, RequestError> {
    let req = OwnedRequest::from_json(input)?;
    Ok(decision_json(policy, compiled, &req.evaluate(policy)))
}
