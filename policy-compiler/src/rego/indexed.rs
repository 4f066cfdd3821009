//! A second Rego rendering of a policy, written as an OPA author would for speed: the
//! declarations and rules are *data* (loaded once with `add_data`, not rebuilt per query),
//! indexed by action and target so that a query looks up its candidate rules by key, and a
//! small fixed module interprets them. Same decisions as [`super::emit`] and the evaluator;
//! the benchmark (`benches/decisions.rs`) checks that before timing it.
//!
//! Query `data.omega.indexed.decision` with the request as `input`, after adding
//! [`data`] to the engine.

use omega_policy::{Effect, Op, RuleAction};
use serde_json::{Map, Value as Json, json};

use super::{SAFE_INT, action_word, decision_rule};
use crate::compile::{Compiled, ConstraintIr, LitIr, SubjectIr, hex};

/// The document holding the decision.
pub const DECISION: &str = "omega.indexed.decision";

/// The key under `data` holding the policy.
const DATA_KEY: &str = "omega_data";

/// The fixed module.
pub fn module() -> String {
    MODULE.replace("SAFE_INT", SAFE_INT)
        + &decision_rule(r#"{"decision": grant.effect, "rule": grant.name, "labels": after}"#)
}

/// The data document for `p`: `{"omega_data": {"label_order", "agents", "targets"}}`, where
/// `targets[action][name]` holds the target's declaration and, in source order, the deny
/// rules, grant (allow and confirm) rules and limits that apply to it (wildcards included).
pub fn data(p: &Compiled) -> Json {
    let set = |bits: u64| -> Json {
        p.labels
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1u64 << i) != 0)
            .map(|(_, l)| (l.clone(), Json::Bool(true)))
            .collect::<Map<_, _>>()
            .into()
    };
    let agent_set = |agents: Option<u64>| -> Option<Json> {
        agents.map(|bits| {
            p.agents
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1u64 << i) != 0)
                .map(|(_, a)| (a.name.clone(), Json::Bool(true)))
                .collect::<Map<_, _>>()
                .into()
        })
    };
    let agents: Map<String, Json> = p
        .agents
        .iter()
        .map(|a| (a.name.clone(), json!({ "hash": hex(&a.hash) })))
        .collect();

    let mut targets = Map::new();
    for action in [
        RuleAction::Infer,
        RuleAction::Call,
        RuleAction::Read,
        RuleAction::Send,
    ] {
        let decls: Vec<(String, Json)> = match action {
            RuleAction::Infer | RuleAction::Call => {
                let list = if action == RuleAction::Call {
                    &p.tools
                } else {
                    &p.models
                };
                list.iter()
                    .map(|t| {
                        let mut d = json!({
                            "hash": hex(&t.hash),
                            "cleared": set(t.cleared),
                            "result": set(t.result),
                        });
                        if t.gpu.is_some() {
                            d["gpu_required"] = Json::Bool(true);
                        }
                        (t.name.clone(), d)
                    })
                    .collect()
            }
            RuleAction::Read => p
                .sources
                .iter()
                .map(|s| (s.name.clone(), json!({ "result": set(s.labels) })))
                .collect(),
            RuleAction::Send => p
                .agents
                .iter()
                .map(|a| {
                    let d = json!({ "cleared": set(a.cleared), "result": {} });
                    (a.name.clone(), d)
                })
                .collect(),
        };
        let mut by_name = Map::new();
        for (ix, (name, mut decl)) in decls.into_iter().enumerate() {
            let applies = |a: RuleAction, t: Option<u16>| {
                a == action && t.is_none_or(|t| usize::from(t) == ix)
            };
            let (mut deny, mut grant) = (Vec::new(), Vec::new());
            for r in p.rules.iter().filter(|r| applies(r.action, r.target)) {
                let mut rule = json!({
                    "name": r.name,
                    "effect": effect_word(r.effect),
                    "when": r.constraints.iter().map(constraint).collect::<Vec<_>>(),
                    "declassify": set(r.declassify),
                });
                if let Some(agents) = agent_set(r.agents) {
                    rule["agents"] = agents;
                }
                if r.effect == Effect::Deny {
                    deny.push(rule);
                } else {
                    grant.push(rule);
                }
            }
            let limits: Vec<Json> = p
                .limits
                .iter()
                .filter(|l| applies(l.action, l.target))
                .map(|l| {
                    let mut limit = json!({ "name": l.name, "max": l.max });
                    if let Some(agents) = agent_set(l.agents) {
                        limit["agents"] = agents;
                    }
                    limit
                })
                .collect();
            decl["deny"] = deny.into();
            decl["grant"] = grant.into();
            decl["limits"] = limits.into();
            by_name.insert(name, decl);
        }
        targets.insert(action_word(action).to_string(), by_name.into());
    }
    json!({ DATA_KEY: {
        "label_order": p.labels,
        "agents": agents,
        "targets": targets,
    }})
}

fn effect_word(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
        Effect::Confirm => "confirm",
    }
}

/// `{"at": path under input, "type": "int" | "str" | "bool", "op", "value"}`.
fn constraint(c: &ConstraintIr) -> Json {
    let at: Vec<&str> = match &c.subject {
        SubjectIr::Arg { parts, .. } => std::iter::once("args")
            .chain(parts.iter().map(String::as_str))
            .collect(),
        SubjectIr::MaxTokens => vec!["max_tokens"],
        SubjectIr::Path => vec!["path"],
    };
    let (ty, value) = match &c.value {
        LitIr::Int(n) => ("int", json!(n)),
        LitIr::Ints(v) => ("int", json!(v)),
        LitIr::Str(s) => ("str", json!(s)),
        LitIr::Strs(v) => ("str", json!(v)),
        LitIr::Bool(b) => ("bool", json!(b)),
    };
    let op = match c.op {
        Op::Eq => "==",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Prefix => "startswith",
        Op::In => "in",
    };
    json!({ "at": at, "type": ty, "op": op, "value": value })
}

const MODULE: &str = r#"# Omega policy interpreter over data.omega_data (see policy-compiler/src/rego/indexed.rs).
package omega.indexed

decl := data.omega_data

# The agent's context labels, as a set and in declaration order.
ctx_set := {l | some l in object.get(object.get(input, "context", {}), "labels", [])}

ctx := [l | some l in decl.label_order; ctx_set[l]]

agent_ok if decl.agents[input.agent.name].hash == input.agent.hash

# The declared target with its candidate rules and limits: one lookup.
target_decl := decl.targets[input.action][input.target]

pin_ok if not target_decl.hash

pin_ok if target_decl.hash == input.target_hash

gpu_ok if not object.get(target_decl, "gpu_required", false)

gpu_ok if {
	object.get(target_decl, "gpu_required", false)
	input.proxy.gpu_verified == true
}

in_scope(r) if not r.agents

in_scope(r) if r.agents[input.agent.name]

typed(v, t) if {
	t == "int"
	is_number(v)
	round(v) == v
	v >= -SAFE_INT
	v <= SAFE_INT
}

typed(v, t) if {
	t == "str"
	is_string(v)
}

typed(v, t) if {
	t == "bool"
	is_boolean(v)
}

test(op, v, k) if {
	op == "=="
	v == k
}

test(op, v, k) if {
	op == "!="
	v != k
}

test(op, v, k) if {
	op == "<"
	v < k
}

test(op, v, k) if {
	op == "<="
	v <= k
}

test(op, v, k) if {
	op == ">"
	v > k
}

test(op, v, k) if {
	op == ">="
	v >= k
}

test(op, v, k) if {
	op == "startswith"
	startswith(v, k)
}

test(op, v, k) if {
	op == "in"
	v in k
}

holds(c) if {
	v := object.get(input, c.at, null)
	typed(v, c.type)
	test(c.op, v, c.value)
}

applies(r) if {
	in_scope(r)
	every c in r.when {
		holds(c)
	}
}

deny_hits := [r.name | some r in target_decl.deny; applies(r)]

counts := object.get(input, "counts", {})

limit_hits := [l.name | some l in target_decl.limits; in_scope(l); object.get(counts, l.name, 0) >= l.max]

grant_hits := [r | some r in target_decl.grant; applies(r)]

grant := grant_hits[0]

egress if target_decl.cleared

blocked := [l | some l in ctx; not target_decl.cleared[l]; not grant.declassify[l]]

after := [l | some l in decl.label_order; carried(l)]

carried(l) if ctx_set[l]

carried(l) if target_decl.result[l]

"#;
