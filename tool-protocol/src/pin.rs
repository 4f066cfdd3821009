//! Tool pins (rug-pull defence): the SHA-256 of a tool's `tools/list` entry, taken over
//! this canonical form (docs/policy.md, *Tool pins*):
//!
//! 1. the JSON object `{"description": <description>, "inputSchema": <schema>}`;
//! 2. no whitespace, object keys sorted by their UTF-8 bytes, strings and numbers written
//!    as `serde_json` writes them.

use alloc::string::String;
use alloc::vec::Vec;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The pin of a tool entry with this description and input schema.
pub fn tool_pin(description: &str, schema: &Value) -> [u8; 32] {
    let mut out = String::new();
    // The entry object's two keys, already in byte order.
    out.push_str("{\"description\":");
    push_string(description, &mut out);
    out.push_str(",\"inputSchema\":");
    canonical_json(schema, &mut out);
    out.push('}');
    Sha256::digest(out.as_bytes()).into()
}

/// Canonical JSON of `v` appended to `out`: no whitespace, object keys sorted by their
/// UTF-8 bytes, strings and numbers written as `serde_json` writes them.
pub fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(k, out);
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        // A scalar's text is what `serde_json` writes (`Value`'s `Display` is `to_string`).
        Value::String(s) => push_string(s, out),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            use core::fmt::Write as _;
            let _ = write!(out, "{n}");
        }
    }
}

/// `s` as a JSON string, as `serde_json` writes it.
fn push_string(s: &str, out: &mut String) {
    use core::fmt::Write as _;
    // `Value::String`'s Display is serde_json's serialiser: the same escapes as `to_string`.
    let _ = write!(out, "{}", Value::String(String::from(s)));
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The vector of `policy-compiler`'s former `tool_pin` test: the same hash as before
    /// the move.
    #[test]
    fn pin_matches_an_independent_canonicalisation() {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["z"],
            "properties": {
                "z": { "type": "string", "description": "é ünïcode \" \\ \n tab\t" },
                "a": { "type": "integer", "minimum": 1.5, "maximum": 10 }
            }
        });
        let description = "Résumé tool — with ☃ and \u{1}";
        let mut canon = String::new();
        canonical_json(
            &serde_json::json!({"inputSchema": schema, "description": description}),
            &mut canon,
        );
        assert_eq!(
            canon,
            r#"{"description":"Résumé tool — with ☃ and \u0001","inputSchema":{"properties":{"a":{"maximum":10,"minimum":1.5,"type":"integer"},"z":{"description":"é ünïcode \" \\ \n tab\t","type":"string"}},"required":["z"],"type":"object"}}"#
        );
        assert_eq!(
            hex(&tool_pin(description, &schema)),
            "27716bb10b8725a57eaa28913ca3a816e0fd28a3d801df91dce657682e813c2a"
        );
    }

    #[test]
    fn scalars_are_written_as_serde_json_writes_them() {
        for text in [
            r#"[null,true,false,0,-1,1.5,1e300,0.1,18446744073709551615,-9223372036854775808,"\u001f\u007f",""]"#,
            r#"{"b":{"y":[],"x":{}},"a":"\ud83d\ude00","A":1}"#,
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            let mut canon = String::new();
            canonical_json(&v, &mut canon);
            // serde_json's own writer, with the keys sorted the same way.
            let mut sorted = v.clone();
            fn sort(v: &mut Value) {
                if let Value::Object(m) = v {
                    let mut e: Vec<(String, Value)> = core::mem::take(m).into_iter().collect();
                    e.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                    for (k, mut v) in e {
                        sort(&mut v);
                        m.insert(k, v);
                    }
                } else if let Value::Array(a) = v {
                    a.iter_mut().for_each(sort);
                }
            }
            sort(&mut sorted);
            assert_eq!(canon, serde_json::to_string(&sorted).unwrap(), "{text}");
        }
    }
}
