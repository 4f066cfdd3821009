//! The JSON subset agent cards use, parsed strictly and written canonically (RFC 8785, JCS).
//!
//! Values are objects, arrays, strings and booleans. Numbers and `null` are refused: no
//! Omega card carries one, and JCS number formatting (ECMAScript `Number.toString`) is a
//! source of disagreement between implementations that a signature check does not need.
//!
//! SECURITY: the parser is bounded ([`Limits`]): input size, nesting depth, string length,
//! entries per object or array; duplicate object keys, lone surrogates, raw control
//! characters, trailing bytes and anything outside RFC 8259 are refused. Nothing panics on
//! any input (fuzzed: `agent-card/fuzz`).

use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Ordering;

use crate::CardError;

/// A JSON value of the subset. Objects keep their members in input order; [`write_jcs`]
/// sorts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A string value.
    pub fn str(s: &str) -> Value {
        Value::Str(s.into())
    }

    /// An object from `(key, value)` pairs.
    pub fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
        Value::Object(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// Bounds of the parser.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_input: usize,
    pub max_depth: usize,
    pub max_string: usize,
    pub max_entries: usize,
}

/// The bounds a card is decoded under (the card builder stays well inside them).
pub const CARD_LIMITS: Limits = Limits {
    max_input: crate::MAX_CARD,
    max_depth: 8,
    max_string: 2048,
    max_entries: 64,
};

/// Parses `input` as one JSON value (whitespace around it allowed, nothing else).
pub fn parse(input: &[u8], limits: &Limits) -> Result<Value, CardError> {
    if input.len() > limits.max_input {
        return Err(CardError::TooLarge);
    }
    let mut p = Parser {
        s: input,
        at: 0,
        limits,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.at != input.len() {
        return Err(p.err("trailing bytes after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    limits: &'a Limits,
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> CardError {
        CardError::Json { at: self.at, what }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.s.get(self.at) == Some(&b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, CardError> {
        if depth >= self.limits.max_depth {
            return Err(self.err("nested too deeply"));
        }
        match self.s.get(self.at) {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Value::Str),
            Some(b't') if self.s[self.at..].starts_with(b"true") => {
                self.at += 4;
                Ok(Value::Bool(true))
            }
            Some(b'f') if self.s[self.at..].starts_with(b"false") => {
                self.at += 5;
                Ok(Value::Bool(false))
            }
            Some(b'n') => Err(self.err("null is not part of a card")),
            Some(b'-' | b'0'..=b'9') => Err(self.err("numbers are not part of a card")),
            Some(_) => Err(self.err("expected a JSON value")),
            None => Err(self.err("unexpected end of input")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, CardError> {
        self.at += 1;
        let mut members: Vec<(String, Value)> = Vec::new();
        self.ws();
        if self.eat(b'}') {
            return Ok(Value::Object(members));
        }
        loop {
            self.ws();
            if self.s.get(self.at) != Some(&b'"') {
                return Err(self.err("expected an object key"));
            }
            let key = self.string()?;
            if members.iter().any(|(k, _)| *k == key) {
                // SECURITY: duplicate keys are read differently by different parsers (first
                // or last wins); a signed card must mean one thing.
                return Err(self.err("duplicate object key"));
            }
            self.ws();
            if !self.eat(b':') {
                return Err(self.err("expected ':'"));
            }
            self.ws();
            let v = self.value(depth + 1)?;
            if members.len() >= self.limits.max_entries {
                return Err(self.err("too many object members"));
            }
            members.push((key, v));
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                return Ok(Value::Object(members));
            }
            return Err(self.err("expected ',' or '}'"));
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, CardError> {
        self.at += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat(b']') {
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            let v = self.value(depth + 1)?;
            if items.len() >= self.limits.max_entries {
                return Err(self.err("too many array items"));
            }
            items.push(v);
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                return Ok(Value::Array(items));
            }
            return Err(self.err("expected ',' or ']'"));
        }
    }

    fn hex4(&mut self) -> Result<u32, CardError> {
        let h = self
            .s
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let mut n = 0;
        for &c in h {
            let d = (c as char)
                .to_digit(16)
                .ok_or_else(|| self.err("bad \\u escape"))?;
            n = n * 16 + d;
        }
        self.at += 4;
        Ok(n)
    }

    fn string(&mut self) -> Result<String, CardError> {
        self.at += 1; // the opening quote
        let mut out = String::new();
        loop {
            if out.len() > self.limits.max_string {
                return Err(self.err("string too long"));
            }
            let Some(&b) = self.s.get(self.at) else {
                return Err(self.err("unterminated string"));
            };
            match b {
                b'"' => {
                    self.at += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.at += 1;
                    let Some(&e) = self.s.get(self.at) else {
                        return Err(self.err("unterminated escape"));
                    };
                    self.at += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if !(self.eat(b'\\') && self.eat(b'u')) {
                                    return Err(self.err("lone high surrogate"));
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("bad low surrogate"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or_else(|| self.err("lone surrogate"))?
                        }
                        _ => return Err(self.err("unknown escape")),
                    };
                    out.push(c);
                }
                0..=0x1F => return Err(self.err("raw control character in a string")),
                _ => {
                    // One UTF-8 character, validated.
                    let len = match b {
                        0x00..=0x7F => 1,
                        0xC0..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        0xF0..=0xF7 => 4,
                        _ => return Err(self.err("invalid UTF-8")),
                    };
                    let bytes = self
                        .s
                        .get(self.at..self.at + len)
                        .ok_or_else(|| self.err("invalid UTF-8"))?;
                    let ch = core::str::from_utf8(bytes).map_err(|_| self.err("invalid UTF-8"))?;
                    out.push_str(ch);
                    self.at += len;
                }
            }
        }
    }
}

/// JCS member order: keys compared as UTF-16 code units (RFC 8785 §3.2.3).
fn key_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Writes `v` in RFC 8785 canonical form: members sorted by [`key_order`], no whitespace,
/// strings escaped as ECMAScript's `JSON.stringify` does.
pub fn write_jcs(v: &Value, out: &mut String) {
    match v {
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Str(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_jcs(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<&(String, Value)> = members.iter().collect();
            sorted.sort_by(|a, b| key_order(&a.0, &b.0));
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_jcs(v, out);
            }
            out.push('}');
        }
    }
}

/// The canonical form of `v` as a string.
pub fn to_jcs(v: &Value) -> String {
    let mut s = String::new();
    write_jcs(v, &mut s);
    s
}

fn write_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                out.push(char::from(HEX[(c as usize) >> 4]));
                out.push(char::from(HEX[(c as usize) & 15]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn p(s: &str) -> Result<Value, CardError> {
        parse(s.as_bytes(), &CARD_LIMITS)
    }

    #[test]
    fn canonical_form_sorts_keys_by_utf16_and_escapes_like_ecmascript() {
        // RFC 8785 §3.2.3's sorting example (keys as UTF-16 code units).
        let v = p(r#"{"\u20ac":"Euro","\r":"CR","\ufb33":"Hebrew","1":"One","\ud83d\ude00":"Emoji","\u0080":"Control","\u00f6":"Latin"}"#).unwrap();
        let keys: Vec<String> = match &v {
            Value::Object(m) => {
                let mut k: Vec<&String> = m.iter().map(|(k, _)| k).collect();
                k.sort_by(|a, b| key_order(a, b));
                k.into_iter().cloned().collect()
            }
            _ => unreachable!(),
        };
        assert_eq!(
            keys,
            [
                "\r",
                "1",
                "\u{80}",
                "\u{f6}",
                "\u{20ac}",
                "\u{1f600}",
                "\u{fb33}"
            ]
        );
        let v = p("{ \"b\" : [true, false, \"x\\u0001\\/\\\"é\"], \"a\":{} }").unwrap();
        assert_eq!(
            to_jcs(&v),
            "{\"a\":{},\"b\":[true,false,\"x\\u0001/\\\"é\"]}"
        );
        // Canonical output parses back to the same canonical form.
        assert_eq!(to_jcs(&p(&to_jcs(&v)).unwrap()), to_jcs(&v));
    }

    #[test]
    fn strict_refusals() {
        for bad in [
            "",
            "{",
            "{\"a\":true,}",
            "[true,]",
            "{\"a\":true,\"a\":false}",
            "{\"a\":1}",
            "{\"a\":null}",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\nb\"",
            "\"\\x\"",
            "true false",
            "{\"a\" true}",
            "tru",
            "\"\u{80}",
        ] {
            assert!(p(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse(b"\"\xff\"", &CARD_LIMITS).is_err());
        assert!(parse(b"\"\xc3\"", &CARD_LIMITS).is_err());
        let deep = "[".repeat(9) + &"]".repeat(9);
        assert!(p(&deep).is_err());
        let ok = "[".repeat(8) + &"]".repeat(8);
        assert!(p(&ok).is_ok());
        let wide = "[".to_string() + &["true"; 65].join(",") + "]";
        assert!(p(&wide).is_err());
        let long = "\"".to_string() + &"a".repeat(3000) + "\"";
        assert!(p(&long).is_err());
        assert_eq!(
            parse(&alloc::vec![b' '; crate::MAX_CARD + 1], &CARD_LIMITS),
            Err(CardError::TooLarge)
        );
    }
}
