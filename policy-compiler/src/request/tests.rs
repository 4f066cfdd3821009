//! The request decoder against a reference: `serde_json` reads the text (syntax) and a
//! straightforward decoder over `serde_json::Value` reads the fields (shape), on generated
//! requests printed with repeated keys, escapes and unusual number forms, then mutated.

use omega_test_support::random::{Rng, mutate};
use serde_json::{Map, Value as Json, json};

use super::*;

/// The reference decoder: the request shape read from a parsed value.
fn reference(v: &Json) -> Shape<JsonRequest<'static>> {
    fn value_of(v: Option<&Json>) -> ReqValue<'static> {
        match v {
            None => ReqValue::Absent,
            Some(Json::String(s)) => ReqValue::Str(Cow::Owned(s.clone())),
            Some(Json::Bool(b)) => ReqValue::Bool(*b),
            Some(Json::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => ReqValue::from_i64(i),
                (None, Some(u), _) => ReqValue::from_u64(u),
                (_, _, Some(f)) => ReqValue::from_f64(f),
                _ => ReqValue::Other,
            },
            Some(_) => ReqValue::Other,
        }
    }
    fn flatten(prefix: &str, v: &Json, out: &mut Args<'static>) {
        if let Json::Object(m) = v {
            for (k, child) in m.iter().filter(|(k, _)| !k.contains('.')) {
                let path = match prefix {
                    "" => k.clone(),
                    p => format!("{p}.{k}"),
                };
                out.push((Cow::Owned(path.clone()), value_of(Some(child))));
                flatten(&path, child, out);
            }
        }
    }
    let hash = |v: Option<&Json>| {
        v.and_then(Json::as_str)
            .filter(|s| !s.bytes().any(|b| b.is_ascii_uppercase()))
            .filter(|s| !s.starts_with("sha256:"))
            .and_then(crate::compile::parse_hash)
    };
    let agent = v.get("agent").ok_or("missing `agent`")?;
    let name = agent.get("name").and_then(Json::as_str);
    let name = name.ok_or("`agent.name` must be a string")?;
    let action = match v.get("action").and_then(Json::as_str) {
        Some("infer") => ActionWord::Infer,
        Some("call") => ActionWord::Call,
        Some("read") => ActionWord::Read,
        Some("send") => ActionWord::Send,
        _ => return Err("`action` must be one of infer, call, read, send"),
    };
    let target = v.get("target").and_then(Json::as_str);
    let target = target.ok_or("`target` must be a string")?;
    let mut labels = Vec::new();
    if let Some(l) = v.get("context").and_then(|c| c.get("labels")) {
        for l in l.as_array().ok_or("`context.labels` must be an array")? {
            labels.push(Cow::Owned(l.as_str().ok_or("labels are strings")?.into()));
        }
    }
    let mut counts = Vec::new();
    if let Some(c) = v.get("counts") {
        for (k, n) in c.as_object().ok_or("`counts` must be an object")? {
            let n = n.as_u64().ok_or("counts are non-negative integers")?;
            counts.push((Cow::Owned(k.clone()), Some(n)));
        }
    }
    let mut args = Vec::new();
    if let Some(a) = v.get("args") {
        flatten("", a, &mut args);
    }
    Ok(JsonRequest {
        agent: Cow::Owned(name.into()),
        agent_hash: hash(agent.get("hash")),
        action,
        target: Cow::Owned(target.into()),
        target_hash: hash(v.get("target_hash")),
        args,
        max_tokens: value_of(v.get("max_tokens")),
        path: value_of(v.get("path")),
        gpu_verified: v.get("proxy").and_then(|p| p.get("gpu_verified")) == Some(&json!(true)),
        labels,
        counts,
    })
}

/// Order-insensitive where the request is (arguments and counts are looked up by name).
fn normal(mut r: JsonRequest<'_>) -> OwnedRequest {
    r.args.sort_by(|a, b| a.0.cmp(&b.0));
    r.counts.sort_by(|a, b| a.0.cmp(&b.0));
    r.into_owned()
}

const HASH: &str = "a5685657c2cc4e61b0958e7105be4881fa3bab285de4750fddf6eea987998a43";

fn random_value(rng: &mut Rng, depth: u32) -> Json {
    match rng.below(if depth > 3 { 12 } else { 14 }) {
        0 => json!(null),
        1 => json!(rng.one_in(2)),
        2 => json!(rng.below(100)),
        3 => json!(-(rng.below(100) as i64)),
        4 => json!(rng.below(100) as f64 + 0.5),
        5 => json!((1u64 << 53) + rng.below(3) as u64 - 1),
        6 => json!(u64::MAX - rng.below(2) as u64),
        7 => json!(3.0),
        8 => json!(HASH),
        9 => json!(HASH.to_uppercase()),
        10 => json!(*rng.pick(&["", "phi", "a\"b", "é", "😀", "x.y", "/data/1"])),
        11 => json!("sha256:".to_string() + HASH),
        12 => Json::Array(
            (0..rng.below(3))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => random_object(rng, depth + 1, &["a", "b", "a.b", "name", "labels", "c"]),
    }
}

fn random_object(rng: &mut Rng, depth: u32, keys: &[&str]) -> Json {
    let mut m = Map::new();
    for _ in 0..rng.below(4) {
        m.insert((*rng.pick(keys)).into(), random_value(rng, depth));
    }
    Json::Object(m)
}

/// A request-like object: the fields mostly well-formed, sometimes not.
fn random_request(rng: &mut Rng) -> Json {
    let mut m = Map::new();
    let mut field = |rng: &mut Rng, key: &str, good: Json| {
        match rng.below(10) {
            0 => {}
            1 => {
                m.insert(key.into(), random_value(rng, 0));
            }
            _ => {
                m.insert(key.into(), good);
            }
        };
    };
    field(rng, "agent", json!({"name": "triage", "hash": HASH}));
    let action = *rng.pick(&["infer", "call", "read", "send", "write"]);
    field(rng, "action", json!(action));
    field(rng, "target", json!("fhir.search"));
    field(rng, "target_hash", json!(HASH));
    let args = random_object(rng, 1, &["patient", "id", "limit", "a.b", "q"]);
    field(rng, "args", args);
    let n = rng.below(5000);
    field(rng, "max_tokens", json!(n));
    field(rng, "path", json!("/data/1"));
    let verified = rng.one_in(2);
    field(rng, "proxy", json!({ "gpu_verified": verified }));
    field(rng, "context", json!({"labels": ["phi", "pii"]}));
    let n = rng.below(30);
    field(rng, "counts", json!({"search_rate": n, "infer_rate": 0}));
    Json::Object(m)
}

/// JSON text of `v` with some keys repeated before their final value, some strings written
/// with `\u` escapes and some numbers in other forms.
fn print(rng: &mut Rng, v: &Json) -> String {
    match v {
        Json::Object(m) => {
            let mut parts = Vec::new();
            for (k, x) in m {
                if rng.one_in(6) {
                    let earlier = random_value(rng, 3);
                    parts.push(format!("{}:{}", json!(k), print(rng, &earlier)));
                }
                parts.push(format!("{} : {}", print(rng, &json!(k)), print(rng, x)));
            }
            format!("{{{}}}", parts.join(","))
        }
        Json::Array(a) => {
            let items: Vec<String> = a.iter().map(|x| print(rng, x)).collect();
            format!("[ {} ]", items.join(" ,"))
        }
        Json::String(s) if rng.one_in(8) => {
            let units: String = s.encode_utf16().map(|u| format!("\\u{u:04X}")).collect();
            format!("\"{units}\"")
        }
        Json::Number(n) if rng.one_in(6) && n.is_u64() => {
            format!("{}e0", n)
        }
        x => x.to_string(),
    }
}

#[test]
fn decoder_agrees_with_serde_json_and_the_reference() {
    let mut rng = Rng::new(omega_test_support::random::seed(0x5eed_7e57));
    let (mut decoded, mut shape_errors, mut syntax_errors) = (0, 0, 0);
    for round in 0..60_000 {
        let request = random_request(&mut rng);
        let mut text = print(&mut rng, &request).into_bytes();
        if round % 3 == 0 {
            mutate(&mut rng, &mut text);
        }
        let oracle = std::str::from_utf8(&text)
            .ok()
            .and_then(|t| serde_json::from_str::<Json>(t).ok());
        let ours = JsonRequest::parse(&text);
        let shown = String::from_utf8_lossy(&text);
        match (oracle, ours) {
            (None, Err(RequestError::Syntax(_))) => syntax_errors += 1,
            (Some(v), Ok(r)) => {
                let expected = reference(&v).map(normal);
                assert_eq!(expected, Ok(normal(r)), "{shown}");
                decoded += 1;
            }
            (Some(v), Err(RequestError::Shape(why))) => {
                assert_eq!(reference(&v).map(normal), Err(why), "{shown}");
                shape_errors += 1;
            }
            (oracle, ours) => panic!("serde_json: {oracle:?}, ours: {ours:?} on {shown}"),
        }
    }
    eprintln!("{decoded} decoded, {shape_errors} shape errors, {syntax_errors} syntax errors");
    // The generator reaches every outcome often.
    for n in [decoded, shape_errors, syntax_errors] {
        assert!(
            n > 5_000,
            "{decoded} decoded, {shape_errors} shape, {syntax_errors} syntax"
        );
    }
}

#[test]
fn edge_cases() {
    let ok = |t: &str| JsonRequest::parse(t.as_bytes()).map(normal);
    let base = |extra: &str| {
        format!(r#"{{"agent":{{"name":"a","hash":"{HASH}"}},"action":"call","target":"t"{extra}}}"#)
    };
    // Repeated keys: the last counts, and replaces what was below it.
    let r = ok(&base(r#","args":{"a":{"b":1},"a":2,"c":{"d":{"e":"x"}}}"#)).unwrap();
    let paths: Vec<&str> = r.args.iter().map(|(p, _)| p.as_ref()).collect();
    assert_eq!(paths, ["a", "c", "c.d", "c.d.e"]);
    assert_eq!(r.args[0].1, ReqValue::Int(2));
    let r = ok(&base(r#","counts":{"x":-1,"x":3}"#)).unwrap();
    assert_eq!(r.counts, [(Cow::Borrowed("x"), Some(3))]);
    assert!(ok(&base(r#","counts":{"x":3,"x":-1}"#)).is_err());
    assert!(ok(&base(r#","counts":{"x":-0}"#)).is_err());
    assert!(ok(&base(r#","counts":{"x":1.0}"#)).is_err());
    // Integers: exact within ±2^53, integral floats count, the rest is not an integer.
    for (text, value) in [
        ("9007199254740992", ReqValue::Int(1 << 53)),
        ("-9007199254740992", ReqValue::Int(-(1 << 53))),
        ("9007199254740993", ReqValue::Other),
        ("18446744073709551616", ReqValue::Other),
        ("2.0", ReqValue::Int(2)),
        ("2e3", ReqValue::Int(2000)),
        ("-0", ReqValue::Int(0)),
        ("2.5", ReqValue::Other),
    ] {
        let r = ok(&base(&format!(r#","max_tokens":{text}"#))).unwrap();
        assert_eq!(r.max_tokens, value, "{text}");
    }
    // Escapes are decoded, surrogate pairs joined, lone surrogates refused.
    let r = ok(&base(r#","path":"\u00e9\ud83d\ude00\n""#)).unwrap();
    assert_eq!(r.path, ReqValue::Str("é😀\n".into()));
    assert!(ok(&base(r#","path":"\ud83d""#)).is_err());
    assert!(ok(&base(r#","path":"\ude00""#)).is_err());
    // Not JSON: numbers out of range, trailing text, raw control characters, bad UTF-8.
    assert!(ok(&base(r#","path":1e400"#)).is_err());
    assert!(ok(&(base("") + " x")).is_err());
    assert!(ok(&base(",\"path\":\"a\tb\"")).is_err());
    assert!(JsonRequest::parse(&[b'"', 0xff, b'"']).is_err());
    // Nesting: 127 levels are read, 128 are refused (as serde_json does).
    let nested = |n: usize| {
        base(&format!(
            r#","x":{}{}"#,
            "[".repeat(n - 1),
            "]".repeat(n - 1)
        ))
    };
    assert!(ok(&nested(127)).is_ok());
    assert!(matches!(ok(&nested(128)), Err(RequestError::Syntax(_))));
}

#[test]
fn buffers_are_reused_between_requests() {
    let v: Args<'static> = Vec::with_capacity(10);
    let ptr = v.as_ptr() as usize;
    let text = String::from("x");
    let mut w: Args<'_> = recycle(v);
    assert!(w.capacity() >= 10);
    assert_eq!(w.as_ptr() as usize, ptr, "recycling moved the buffer");
    w.push((Cow::Borrowed(&text), ReqValue::Absent));
    let back: Args<'static> = recycle(w);
    assert!(back.is_empty() && back.capacity() >= 10);
}
