//! Shared by the tests and the benchmark: example policies, a request generator that aims at
//! the policy's boundaries, the regorus oracle, and what a differential run must cover.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use policy_compiler::compile::{Compiled, LitIr, SubjectIr, hex};
use policy_compiler::{compile, rego};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Every `*.policy` under examples/, sorted.
pub fn example_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "policy"))
        .collect();
    v.sort();
    assert!(v.len() >= 2, "expected the example policies");
    v
}

/// The examples plus tests/policies/*.policy (corner cases), for the differential tests.
pub fn differential_files() -> Vec<PathBuf> {
    let mut v = example_files();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policies");
    let mut extra: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "policy"))
        .collect();
    extra.sort();
    v.extend(extra);
    v
}

pub fn load(path: &Path) -> Compiled {
    let src = std::fs::read_to_string(path).unwrap();
    compile(&path.display().to_string(), &src, path.parent().unwrap())
        .unwrap_or_else(|d| panic!("{}", d.render()))
}

pub fn load_example(name: &str) -> Compiled {
    load(&examples_dir().join(name))
}

/// The Rego module and the policy digest.
pub fn rego_of(c: &Compiled) -> String {
    let digest = hex(&Sha256::digest(c.to_bytes()));
    rego::emit(c, &digest)
}

/// regorus, interpreter mode, loaded with the emitted Rego.
pub fn regorus_engine(c: &Compiled) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("policy.rego".into(), rego_of(c))
        .expect("regorus accepts the emitted Rego");
    engine
}

pub fn regorus_decide(engine: &mut regorus::Engine, input: &Json) -> Json {
    engine.set_input(regorus::Value::from_json_str(&input.to_string()).unwrap());
    let v = engine
        .eval_rule(format!("data.{}", rego::DECISION))
        .expect("regorus evaluates");
    serde_json::from_str(&v.to_json_str().unwrap()).unwrap()
}

/// Generates requests that hit the policy's declarations and the edges of its constraints.
pub struct Gen<'c> {
    pub c: &'c Compiled,
    pub rng: SmallRng,
}

impl<'c> Gen<'c> {
    pub fn new(c: &'c Compiled, seed: u64) -> Self {
        Gen {
            c,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.rng.gen_range(0..v.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    fn some_hash(&mut self) -> String {
        let b: [u8; 32] = self.rng.r#gen();
        hex(&b)
    }

    fn int_near(&mut self, ks: &[i64]) -> Json {
        let k = if ks.is_empty() { 0 } else { *self.pick(ks) };
        match self.rng.gen_range(0..10) {
            0 => json!(k - 1),
            1 => json!(k + 1),
            2 => json!(k as f64),       // integral float: still an integer
            3 => json!(k as f64 + 0.5), // a fraction: not an integer
            4 => json!(self.rng.gen_range(-1000..100_000)),
            5 => json!(i64::from(self.rng.r#gen::<i32>())),
            6 => json!(format!("{k}")), // wrong type
            _ => json!(k),
        }
    }

    fn str_near(&mut self, ks: &[String]) -> Json {
        let k = if ks.is_empty() {
            String::new()
        } else {
            self.pick(ks).clone()
        };
        match self.rng.gen_range(0..9) {
            0 => json!(format!("{k}x")),
            1 => json!(
                k.chars()
                    .take(k.chars().count().saturating_sub(1))
                    .collect::<String>()
            ),
            2 => json!(""),
            3 => json!(k.to_uppercase()),
            4 => json!(7), // wrong type
            5 => json!(format!("{k}/{}", self.rng.gen_range(0..100))),
            _ => json!(k),
        }
    }

    fn value_for(&mut self, lits: &[LitIr]) -> Json {
        let mut ints = Vec::new();
        let mut strs = Vec::new();
        let mut bools = false;
        for l in lits {
            match l {
                LitIr::Int(n) => ints.push(*n),
                LitIr::Ints(v) => ints.extend(v),
                LitIr::Str(s) => strs.push(s.clone()),
                LitIr::Strs(v) => strs.extend(v.iter().cloned()),
                LitIr::Bool(_) => bools = true,
            }
        }
        if self.chance(0.05) {
            return json!(null);
        }
        if bools {
            return match self.rng.gen_range(0..5) {
                0 => json!("true"),
                1 | 2 => json!(true),
                _ => json!(false),
            };
        }
        if !ints.is_empty() {
            self.int_near(&ints)
        } else {
            self.str_near(&strs)
        }
    }

    /// Constraint literals per subject, for rules about `action` on target `t`.
    fn lits(&self, action: omega_policy::RuleAction, t: usize) -> Vec<(SubjectIr, Vec<LitIr>)> {
        let mut out: Vec<(SubjectIr, Vec<LitIr>)> = Vec::new();
        for r in &self.c.rules {
            if r.action != action || r.target.is_some_and(|x| usize::from(x) != t) {
                continue;
            }
            for con in &r.constraints {
                match out.iter_mut().find(|(s, _)| *s == con.subject) {
                    Some((_, v)) => v.push(con.value.clone()),
                    None => out.push((con.subject.clone(), vec![con.value.clone()])),
                }
            }
        }
        out
    }

    pub fn request(&mut self) -> Json {
        use omega_policy::RuleAction as A;
        let c = self.c;
        let mut req = Map::new();
        // The agent.
        let a = self.pick(&c.agents).clone();
        let (name, hash) = match self.rng.gen_range(0..40) {
            0 => ("intruder".to_string(), json!(self.some_hash())),
            1 => (a.name.clone(), json!(self.some_hash())),
            2 => (a.name.clone(), json!(hex(&a.hash).to_uppercase())),
            3 => (a.name.clone(), Json::Null),
            _ => (a.name.clone(), json!(hex(&a.hash))),
        };
        req.insert("agent".into(), json!({ "name": name, "hash": hash }));
        // The action and target.
        let action = *self.pick(&[A::Infer, A::Call, A::Read, A::Send]);
        let names: Vec<(String, Option<[u8; 32]>)> = match action {
            A::Infer => c
                .models
                .iter()
                .map(|m| (m.name.clone(), Some(m.hash)))
                .collect(),
            A::Call => c
                .tools
                .iter()
                .map(|m| (m.name.clone(), Some(m.hash)))
                .collect(),
            A::Read => c.sources.iter().map(|m| (m.name.clone(), None)).collect(),
            A::Send => c.agents.iter().map(|m| (m.name.clone(), None)).collect(),
        };
        let word = match action {
            A::Infer => "infer",
            A::Call => "call",
            A::Read => "read",
            A::Send => "send",
        };
        req.insert("action".into(), json!(word));
        let ti = self.rng.gen_range(0..names.len());
        let (tname, thash) = names[ti].clone();
        if self.chance(0.03) {
            req.insert("target".into(), json!("unknown.target"));
        } else {
            req.insert("target".into(), json!(tname));
        }
        if let Some(h) = thash {
            match self.rng.gen_range(0..30) {
                0 => {}
                1 => {
                    req.insert("target_hash".into(), json!(self.some_hash()));
                }
                _ => {
                    req.insert("target_hash".into(), json!(hex(&h)));
                }
            }
        }
        // Action-specific fields, aimed at the constraints.
        for (subject, lits) in self.lits(action, ti) {
            if self.chance(0.08) {
                continue; // leave it out
            }
            let v = self.value_for(&lits);
            match subject {
                SubjectIr::MaxTokens => {
                    req.insert("max_tokens".into(), v);
                }
                SubjectIr::Path => {
                    req.insert("path".into(), v);
                }
                SubjectIr::Arg { parts, .. } => {
                    let args = req.entry("args").or_insert_with(|| json!({}));
                    let mut node = args;
                    for p in &parts[..parts.len() - 1] {
                        if !node.is_object() {
                            break;
                        }
                        node = node
                            .as_object_mut()
                            .unwrap()
                            .entry(p.clone())
                            .or_insert_with(|| json!({}));
                    }
                    if let Some(obj) = node.as_object_mut() {
                        obj.insert(parts.last().unwrap().clone(), v);
                    }
                }
            }
        }
        if action == A::Infer && !req.contains_key("max_tokens") && self.chance(0.5) {
            req.insert("max_tokens".into(), json!(self.rng.gen_range(0..20000)));
        }
        // Whether the proxy's GPU evidence verified: mostly a boolean, sometimes absent or
        // of another type (which is "not verified").
        if action == A::Infer {
            let proxy = match self.rng.gen_range(0..12) {
                0 => None,
                1 => Some(json!({ "gpu_verified": "true" })),
                2 => Some(json!({ "gpu_verified": 1 })),
                3 => Some(json!(true)),
                4 => Some(json!({})),
                5..=7 => Some(json!({ "gpu_verified": false })),
                _ => Some(json!({ "gpu_verified": true })),
            };
            if let Some(p) = proxy {
                req.insert("proxy".into(), p);
            }
        }
        if action == A::Read && !req.contains_key("path") && self.chance(0.7) {
            req.insert(
                "path".into(),
                json!(format!("/data/{}", self.rng.gen_range(0..9))),
            );
        }
        // Session state.
        let mut labels: Vec<Json> = c
            .labels
            .iter()
            .filter(|_| self.rng.gen_bool(0.2))
            .map(|l| json!(l))
            .collect();
        if self.chance(0.05) {
            labels.push(json!("not-a-label"));
        }
        req.insert("context".into(), json!({ "labels": labels }));
        let mut counts = Map::new();
        for l in &c.limits {
            let m = i64::from(l.max);
            let n = match self.rng.gen_range(0..6) {
                0 => continue,
                1 => 0,
                2 => (m - 1).max(0),
                3 => m,
                4 => m + 1,
                _ => self.rng.gen_range(0..(2 * m + 2)),
            };
            counts.insert(l.name.clone(), json!(n));
        }
        req.insert("counts".into(), Json::Object(counts));
        Json::Object(req)
    }
}

/// The outcomes of a differential run (`decision:rule` → how many requests), and what they
/// must cover for agreement with an oracle to mean something. Both oracles (regorus, OPA)
/// are held to the same [`Coverage::assert_meaningful`].
#[derive(Debug, Default)]
pub struct Coverage {
    seen: BTreeMap<String, usize>,
    /// `infer` requests: (model, `proxy.gpu_verified` is `true`, `decision:rule`).
    infer: std::collections::BTreeSet<(String, bool, String)>,
}

/// Generated requests per policy in a differential run.
pub const DIFFERENTIAL_REQUESTS: u64 = 3000;
/// A differential run must allow more requests than this.
pub const MIN_ALLOWED: usize = 100;

/// Every kind of outcome a generated request set must reach: allows and each deny class.
pub const OUTCOME_CLASSES: [&str; 6] = [
    "allow:",
    "deny:default-deny",
    "deny:agent-pin",
    "deny:target-pin",
    "deny:unknown-target",
    "deny:flow:",
];

impl Coverage {
    /// Counts one decision (the evaluator's JSON output) on `input`.
    pub fn record(&mut self, input: &Json, decision: &Json) {
        let key = format!(
            "{}:{}",
            decision["decision"].as_str().expect("decision is a string"),
            decision["rule"].as_str().expect("rule is a string")
        );
        if input["action"] == "infer"
            && let Some(model) = input["target"].as_str()
        {
            let verified = input["proxy"]["gpu_verified"] == json!(true);
            self.infer.insert((model.into(), verified, key.clone()));
        }
        *self.seen.entry(key).or_default() += 1;
    }

    /// Every outcome class was reached, more than [`MIN_ALLOWED`] requests were allowed, and
    /// at least 80 % of the policy's rules and limits decided some request.
    pub fn assert_meaningful(&self, file: &Path, c: &Compiled) {
        eprintln!("{}: {:#?}", file.display(), self.seen);
        let allowed: usize = self
            .seen
            .iter()
            .filter(|(k, _)| k.starts_with("allow:"))
            .map(|(_, n)| n)
            .sum();
        assert!(
            allowed > MIN_ALLOWED,
            "{}: only {allowed} allowed requests, too few to mean much",
            file.display()
        );
        for class in OUTCOME_CLASSES {
            assert!(
                self.seen.keys().any(|k| k.starts_with(class)),
                "{}: no generated request ended in {class}",
                file.display()
            );
        }
        // A model that requires GPU evidence: both ways, with the evidence verified (let
        // through, and decided by a rule) and without (`gpu-evidence`).
        for m in c.models.iter().filter(|m| m.gpu.is_some()) {
            let seen = |verified: bool, outcome: &dyn Fn(&str) -> bool| {
                self.infer
                    .iter()
                    .any(|(t, v, k)| *t == m.name && *v == verified && outcome(k))
            };
            assert!(
                seen(true, &|k| k.starts_with("allow:")
                    || k.starts_with("confirm:")),
                "{}: no request to `{}` with verified GPU evidence was allowed",
                file.display(),
                m.name
            );
            assert!(
                seen(false, &|k| k == "deny:gpu-evidence"),
                "{}: no request to `{}` without verified GPU evidence was denied `gpu-evidence`",
                file.display(),
                m.name
            );
            assert!(
                !seen(true, &|k| k == "deny:gpu-evidence"),
                "{}: `{}` denied `gpu-evidence` although verified",
                file.display(),
                m.name
            );
        }
        let user_rules = c.rules.len() + c.limits.len();
        let user_hit = c
            .rules
            .iter()
            .map(|r| &r.name)
            .chain(c.limits.iter().map(|l| &l.name))
            .filter(|n| self.seen.keys().any(|k| k.ends_with(&format!(":{n}"))))
            .count();
        assert!(
            user_hit * 10 >= user_rules * 8,
            "{}: only {user_hit} of {user_rules} rules and limits decided some request",
            file.display()
        );
    }
}
