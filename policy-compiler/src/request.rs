//! Requests as JSON (the Rego `input`) and their evaluation with the no_std evaluator.
//!
//! ```json
//! { "agent": {"name": "triage", "hash": "<64 lowercase hex>"},
//!   "action": "call", "target": "fhir.search", "target_hash": "<64 lowercase hex>",
//!   "args": {"patient_id": "P-1"},        // call
//!   "max_tokens": 512,                    // infer
//!   "proxy": {"gpu_verified": true},      // infer: the proxy's GPU evidence verified
//!   "path": "/patients/1",                // read
//!   "context": {"labels": ["phi"]},       // labels the agent's context carries
//!   "counts": {"search_rate": 3} }        // allowed actions in each limit's current window
//! ```

use omega_policy::{Action, Arg, Decision, Effect, MAX_LIMITS, Policy, Request, State, Value};
use serde_json::{Value as Json, json};
use std::borrow::Cow;

use crate::compile::Compiled;

/// Why a JSON request cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Well-formed JSON of the wrong shape.
    #[error("request: {0}")]
    Shape(&'static str),
    /// Not JSON.
    #[error("request: {0}")]
    Syntax(#[from] SyntaxError),
}

/// Largest integer magnitude compared exactly (2^53, as I-JSON).
pub const SAFE_INT: i64 = 1 << 53;

/// A request value as the evaluator sees it ([`Value`] whose string may be unescaped).
#[derive(Debug, Clone, PartialEq)]
pub enum ReqValue<'a> {
    Absent,
    Int(i64),
    Str(Cow<'a, str>),
    Bool(bool),
    Other,
}

impl ReqValue<'_> {
    fn view(&self) -> Value<'_> {
        match self {
            ReqValue::Absent => Value::Absent,
            ReqValue::Int(i) => Value::Int(*i),
            ReqValue::Str(s) => Value::Str(s),
            ReqValue::Bool(b) => Value::Bool(*b),
            ReqValue::Other => Value::Other,
        }
    }

    fn into_owned(self) -> ReqValue<'static> {
        match self {
            ReqValue::Absent => ReqValue::Absent,
            ReqValue::Int(i) => ReqValue::Int(i),
            ReqValue::Str(s) => ReqValue::Str(Cow::Owned(s.into_owned())),
            ReqValue::Bool(b) => ReqValue::Bool(b),
            ReqValue::Other => ReqValue::Other,
        }
    }

    fn from_i64(v: i64) -> Self {
        if (-SAFE_INT..=SAFE_INT).contains(&v) {
            ReqValue::Int(v)
        } else {
            ReqValue::Other
        }
    }

    fn from_u64(v: u64) -> Self {
        i64::try_from(v).map_or(ReqValue::Other, Self::from_i64)
    }

    /// An integral float within ±2^53 is an integer; any other fraction is not.
    fn from_f64(v: f64) -> Self {
        if v.fract() == 0.0 && v.abs() <= SAFE_INT as f64 {
            ReqValue::Int(v as i64)
        } else {
            ReqValue::Other
        }
    }
}

/// A request's action word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActionWord {
    Infer,
    Call,
    Read,
    Send,
}

/// A request decoded from JSON (the shape in the module docs), borrowing the strings of the
/// input that need no unescaping. Decoding follows `serde_json::Value`'s reading of the
/// same text: of repeated keys the last one counts, unknown keys are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRequest<'a> {
    agent: Cow<'a, str>,
    agent_hash: Option<[u8; 32]>,
    action: ActionWord,
    target: Cow<'a, str>,
    target_hash: Option<[u8; 32]>,
    /// Flattened `args`: nested objects give dotted paths; no path occurs twice.
    args: Vec<(Cow<'a, str>, ReqValue<'a>)>,
    max_tokens: ReqValue<'a>,
    path: ReqValue<'a>,
    /// `proxy.gpu_verified` is `true` (anything else, or absent, is not).
    gpu_verified: bool,
    labels: Vec<Cow<'a, str>>,
    /// Per limit name; no name occurs twice, every count is present.
    counts: Counts<'a>,
}

/// A request that owns its strings.
pub type OwnedRequest = JsonRequest<'static>;

/// Arguments evaluated without a heap allocation for the view when there are at most this many.
const INLINE_ARGS: usize = 8;

impl<'a> JsonRequest<'a> {
    /// Decodes a request from JSON text: the path a request takes from the wire.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RequestError> {
        Self::parse_into(bytes, Buffers::default())
    }

    /// [`JsonRequest::parse`], filling the vectors of `spare` (see [`Buffers`]).
    fn parse_into(bytes: &'a [u8], spare: Buffers) -> Result<Self, RequestError> {
        let text = std::str::from_utf8(bytes).map_err(|e| SyntaxError {
            what: "not UTF-8",
            at: e.valid_up_to(),
        })?;
        let mut reader = Reader {
            text,
            at: 0,
            depth: 0,
            spare_labels: recycle(spare.labels),
            spare_counts: recycle(spare.counts),
        };
        reader
            .request(recycle(spare.args))?
            .finish()
            .map_err(RequestError::Shape)
    }

    /// This request's vectors, emptied, for the next one.
    fn into_buffers(self) -> Buffers {
        Buffers {
            args: recycle(self.args),
            labels: recycle(self.labels),
            counts: recycle(self.counts),
        }
    }

    /// Decodes a request from a parsed JSON value (as its text, so that there is one
    /// decoder).
    pub fn from_json(v: &Json) -> Result<OwnedRequest, RequestError> {
        let text = v.to_string();
        Ok(JsonRequest::parse(text.as_bytes())?.into_owned())
    }

    /// The same request with owned strings.
    pub fn into_owned(self) -> OwnedRequest {
        let own = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        JsonRequest {
            agent: own(self.agent),
            agent_hash: self.agent_hash,
            action: self.action,
            target: own(self.target),
            target_hash: self.target_hash,
            args: self
                .args
                .into_iter()
                .map(|(p, v)| (own(p), v.into_owned()))
                .collect(),
            max_tokens: self.max_tokens.into_owned(),
            path: self.path.into_owned(),
            gpu_verified: self.gpu_verified,
            labels: self.labels.into_iter().map(own).collect(),
            counts: self.counts.into_iter().map(|(k, n)| (own(k), n)).collect(),
        }
    }

    /// The context's label set in `policy`'s numbering (unknown names are ignored).
    pub fn label_set(&self, policy: &Policy<'_>) -> u64 {
        self.labels.iter().fold(0, |set, l| {
            match policy.labels.iter().position(|x| *x == l.as_ref()) {
                Some(i) => set | 1 << (i & 63),
                None => set,
            }
        })
    }

    /// Calls `f` with the request state for `policy`: labels and per-limit counts.
    pub fn with_state<R>(&self, policy: &Policy<'_>, f: impl FnOnce(&State<'_>) -> R) -> R {
        let mut counts = [0u32; MAX_LIMITS];
        for (slot, limit) in counts.iter_mut().zip(&policy.limits) {
            if let Some((_, Some(n))) = self.counts.iter().find(|(k, _)| k == limit.name) {
                *slot = u32::try_from(*n).unwrap_or(u32::MAX);
            }
        }
        let used = policy.limits.len().min(MAX_LIMITS);
        f(&State {
            labels: self.label_set(policy),
            counts: counts.get(..used).unwrap_or(&counts),
        })
    }

    fn request<'r>(&'r self, args: &'r [Arg<'r>]) -> Request<'r> {
        let action = match self.action {
            ActionWord::Infer => Action::Infer {
                model: &self.target,
                proxy: self.target_hash.as_ref(),
                max_tokens: self.max_tokens.view(),
                gpu_verified: self.gpu_verified,
            },
            ActionWord::Call => Action::Call {
                tool: &self.target,
                entry: self.target_hash.as_ref(),
                args,
            },
            ActionWord::Read => Action::Read {
                source: &self.target,
                path: self.path.view(),
            },
            ActionWord::Send => Action::Send { to: &self.target },
        };
        Request {
            agent: &self.agent,
            agent_hash: self.agent_hash.as_ref(),
            action,
        }
    }

    /// Calls `f` with the evaluator's view of this request.
    pub fn with_request<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        fn view<'r>((path, value): &'r (Cow<'_, str>, ReqValue<'_>)) -> Arg<'r> {
            Arg {
                path,
                value: value.view(),
            }
        }
        if self.args.len() <= INLINE_ARGS {
            let mut inline = [Arg {
                path: "",
                value: Value::Absent,
            }; INLINE_ARGS];
            for (slot, a) in inline.iter_mut().zip(&self.args) {
                *slot = view(a);
            }
            let args = inline.get(..self.args.len()).unwrap_or(&inline);
            f(&self.request(args))
        } else {
            let args: Vec<Arg<'_>> = self.args.iter().map(view).collect();
            f(&self.request(&args))
        }
    }

    /// Evaluates against a decoded policy, with the labels and counts the request carries.
    pub fn evaluate(&self, policy: &Policy<'_>) -> Decision {
        self.with_state(policy, |state| {
            self.with_request(|req| policy.evaluate(req, state))
        })
    }
}

/// Decodes one JSON request and decides it (see [`Buffers::decide`] to reuse allocations).
pub fn decide(policy: &Policy<'_>, json: &[u8]) -> Result<Decision, RequestError> {
    Buffers::default().decide(policy, json)
}

/// The vectors a decoded request needs, kept between requests so that decoding one
/// allocates nothing once they have grown (except for nested argument paths).
#[derive(Debug, Default)]
pub struct Buffers {
    args: Args<'static>,
    labels: Vec<Cow<'static, str>>,
    counts: Counts<'static>,
}

impl Buffers {
    /// Decodes one JSON request and decides it: what a monitor receiving JSON requests does.
    pub fn decide(&mut self, policy: &Policy<'_>, json: &[u8]) -> Result<Decision, RequestError> {
        let request = JsonRequest::parse_into(json, std::mem::take(self))?;
        let decision = request.evaluate(policy);
        *self = request.into_buffers();
        Ok(decision)
    }
}

/// Empties `v` and hands its allocation to a vector of the same element type under another
/// lifetime (collecting an emptied vector's iterator reuses its buffer when the layouts
/// match, as they do here; otherwise this merely gives an empty vector).
fn recycle<T, U>(v: Vec<T>) -> Vec<U> {
    v.into_iter().filter_map(|_| None).collect()
}

// ---- Decoding: a strict JSON reader (RFC 8259, UTF-8, nesting up to 127 deep, numbers
// outside f64's range refused — what `serde_json` accepts) that reads only the request's
// fields and borrows every string that has no escapes. Repeated keys: the last one counts,
// as when the object is read into a map; shape errors are reported once the whole object
// has been read, so that a later repetition can replace an ill-shaped value.

/// Why a text is not JSON (or nests deeper than 127).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct SyntaxError {
    pub what: &'static str,
    pub at: usize,
}

/// Arrays and objects nest at most this deep (serde_json's limit).
const MAX_DEPTH: u32 = 127;

/// A JSON number as the request fields read it.
#[derive(Clone)]
enum Number {
    /// No sign, fraction or exponent; fits a `u64`.
    Unsigned(u64),
    /// Anything else, read as `serde_json` does (finite).
    Other(ReqValue<'static>),
}

impl Number {
    fn value(self) -> ReqValue<'static> {
        match self {
            Number::Unsigned(n) => ReqValue::from_u64(n),
            Number::Other(v) => v,
        }
    }
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
    depth: u32,
    /// Vectors to fill (from [`Buffers`]) before allocating new ones.
    spare_labels: Vec<Cow<'a, str>>,
    spare_counts: Counts<'a>,
}

// Code size matters as much as instructions here: a decision usually runs with cold caches,
// so rare paths (errors, escapes, floats) stay out of line.
impl<'a> Reader<'a> {
    #[cold]
    #[inline(never)]
    fn error<T>(&self, what: &'static str) -> Result<T, SyntaxError> {
        Err(SyntaxError { what, at: self.at })
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// Skips whitespace and returns the next byte, not consumed.
    fn next_token(&mut self) -> Result<u8, SyntaxError> {
        while let Some(b) = self.peek() {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Ok(b);
            }
            self.at += 1;
        }
        self.error("unexpected end of input")
    }

    fn eat(&mut self, byte: u8, what: &'static str) -> Result<(), SyntaxError> {
        if self.next_token()? != byte {
            return self.error(what);
        }
        self.at += 1;
        Ok(())
    }

    fn literal(&mut self, word: &'static str) -> Result<(), SyntaxError> {
        if !self.text.as_bytes()[self.at..].starts_with(word.as_bytes()) {
            return self.error("invalid literal");
        }
        self.at += word.len();
        Ok(())
    }

    /// A string; the opening quote is next.
    fn string(&mut self) -> Result<Cow<'a, str>, SyntaxError> {
        self.eat(b'"', "expected a string")?;
        let start = self.at;
        let bytes = self.text.as_bytes();
        let mut owned: Option<String> = None;
        let mut run = start;
        loop {
            self.at = plain_run_end(bytes, self.at);
            let Some(&b) = bytes.get(self.at) else {
                return self.error("unterminated string");
            };
            match b {
                b'"' => {
                    let tail = &self.text[run..self.at];
                    self.at += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(tail),
                        Some(mut s) => {
                            s.push_str(tail);
                            Cow::Owned(s)
                        }
                    });
                }
                b'\\' => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(&self.text[run..self.at]);
                    self.at += 1;
                    let escape = self.escape()?;
                    owned.get_or_insert_with(String::new).push(escape);
                    run = self.at;
                }
                0..=0x1f => return self.error("control character in string"),
                _ => self.at += 1,
            }
        }
    }

    /// The character of an escape; the backslash has been read.
    #[cold]
    #[inline(never)]
    fn escape(&mut self) -> Result<char, SyntaxError> {
        let Some(b) = self.peek() else {
            return self.error("unterminated string");
        };
        self.at += 1;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                let code = match first {
                    0xD800..=0xDBFF => {
                        if !self.text.as_bytes()[self.at..].starts_with(b"\\u") {
                            return self.error("lone surrogate in escape");
                        }
                        self.at += 2;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return self.error("lone surrogate in escape");
                        }
                        0x1_0000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return self.error("lone surrogate in escape"),
                    n => n,
                };
                match char::from_u32(code) {
                    Some(c) => c,
                    None => return self.error("invalid escape"),
                }
            }
            _ => return self.error("invalid escape"),
        })
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut n = 0;
        for _ in 0..4 {
            let digit = self.peek().and_then(|b| char::from(b).to_digit(16));
            let Some(d) = digit else {
                return self.error("invalid \\u escape");
            };
            n = n * 16 + d;
            self.at += 1;
        }
        Ok(n)
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// A number; its first byte (`-` or a digit) is next.
    fn number(&mut self) -> Result<Number, SyntaxError> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let int_start = self.at;
        match (self.peek(), self.digits()) {
            (_, 0) => return self.error("invalid number"),
            (Some(b'0'), n) if n > 1 => return self.error("leading zero in number"),
            _ => {}
        }
        let int_end = self.at;
        let mut integral = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return self.error("invalid number");
            }
            integral = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return self.error("invalid number");
            }
            integral = false;
        }
        if integral && let Ok(n) = self.text[int_start..int_end].parse::<u64>() {
            // serde_json reads `-0` and negatives below i64::MIN as floats: as values they
            // are the same, as counts neither is valid.
            return Ok(match negative {
                false => Number::Unsigned(n),
                true if n <= SAFE_INT as u64 => Number::Other(ReqValue::Int(-(n as i64))),
                true => Number::Other(ReqValue::Other),
            });
        }
        match self.text[start..self.at].parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Number::Other(ReqValue::from_f64(f))),
            _ => self.error("number out of range"),
        }
    }

    /// Reads the items of an array or object with `item(reader)`, from the opening bracket
    /// (next) to `close`.
    fn items(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<(), SyntaxError>,
    ) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.error("nested too deeply");
        }
        self.at += 1;
        if self.next_token()? != close {
            loop {
                item(self)?;
                match self.next_token()? {
                    b',' => self.at += 1,
                    b if b == close => break,
                    _ => return self.error("expected `,` or the closing bracket"),
                }
            }
        }
        self.at += 1;
        self.depth -= 1;
        Ok(())
    }

    /// Reads an object's members with `member(reader, key)`, which reads the value; the
    /// `{` is next.
    fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Result<(), SyntaxError>,
    ) -> Result<(), SyntaxError> {
        self.items(b'}', |r| {
            let key = r.string()?;
            r.eat(b':', "expected `:`")?;
            member(r, key)
        })
    }

    /// Reads an array's elements with `element(reader)`; the `[` is next.
    fn array(
        &mut self,
        element: impl FnMut(&mut Self) -> Result<(), SyntaxError>,
    ) -> Result<(), SyntaxError> {
        self.items(b']', element)
    }

    /// Any value, as the evaluator sees it; arrays and objects are read and give `Other`.
    fn value(&mut self) -> Result<ReqValue<'a>, SyntaxError> {
        Ok(match self.next_token()? {
            b'"' => ReqValue::Str(self.string()?),
            b'-' | b'0'..=b'9' => self.number()?.value(),
            b't' => self.literal("true").map(|()| ReqValue::Bool(true))?,
            b'f' => self.literal("false").map(|()| ReqValue::Bool(false))?,
            b'n' => self.literal("null").map(|()| ReqValue::Other)?,
            b'[' => self
                .array(|r| r.value().map(drop))
                .map(|()| ReqValue::Other)?,
            b'{' => self
                .object(|r, _| r.value().map(drop))
                .map(|()| ReqValue::Other)?,
            _ => return self.error("expected a value"),
        })
    }

    fn is_object(&mut self) -> Result<bool, SyntaxError> {
        Ok(self.next_token()? == b'{')
    }

    /// A string, or `None` for any other value.
    fn maybe_text(&mut self) -> Result<Option<Cow<'a, str>>, SyntaxError> {
        Ok(match self.value()? {
            ReqValue::Str(s) => Some(s),
            _ => None,
        })
    }

    /// Exactly 64 lowercase hex digits (what the Rego compares as a string), or `None`.
    fn strict_hash(&mut self) -> Result<Option<[u8; 32]>, SyntaxError> {
        Ok(self.maybe_text()?.and_then(|s| strict_hash(&s)))
    }

    /// `args` below `prefix` (`None` at the top, where anything but an object gives no
    /// arguments): each value is recorded under its dotted path, an object's children after
    /// it. Keys containing a dot are skipped (no constraint can name them).
    fn args(&mut self, prefix: Option<&str>, out: &mut Args<'a>) -> Result<(), SyntaxError> {
        if !self.is_object()? {
            return self.value().map(drop);
        }
        self.object(|r, key| {
            if key.contains('.') {
                return r.value().map(drop);
            }
            let path = match prefix {
                None => key,
                Some(p) => Cow::Owned(format!("{p}.{key}")),
            };
            // A repeated key replaces the earlier value and everything below it.
            if out.iter().any(|(p, _)| *p == path) {
                out.retain(|(p, _)| {
                    !(p.starts_with(path.as_ref())
                        && matches!(p.as_bytes().get(path.len()), None | Some(b'.')))
                });
            }
            if r.is_object()? {
                let below = path.clone();
                out.push((path, ReqValue::Other));
                r.args(Some(&below), out)
            } else {
                let value = r.value()?;
                out.push((path, value));
                Ok(())
            }
        })
    }

    /// `agent`: its name (if a string) and strict hash; `None` if not an object.
    fn agent(&mut self) -> Result<Option<Agent<'a>>, SyntaxError> {
        if !self.is_object()? {
            return self.value().map(|_| None);
        }
        let (mut name, mut hash) = (None, None);
        self.object(|r, key| {
            match key.as_ref() {
                "name" => name = r.maybe_text()?,
                "hash" => hash = r.strict_hash()?,
                _ => drop(r.value()?),
            }
            Ok(())
        })?;
        Ok(Some((name, hash)))
    }

    /// `proxy`: whether its `gpu_verified` is `true` (anything but an object: no).
    fn proxy(&mut self) -> Result<bool, SyntaxError> {
        if !self.is_object()? {
            return self.value().map(|_| false);
        }
        let mut verified = false;
        self.object(|r, key| {
            let v = r.value()?;
            if key == "gpu_verified" {
                verified = v == ReqValue::Bool(true);
            }
            Ok(())
        })?;
        Ok(verified)
    }

    /// `context`: the `labels` it holds, if any (anything but an object holds none).
    fn context(&mut self) -> Result<Option<Shape<Vec<Cow<'a, str>>>>, SyntaxError> {
        if !self.is_object()? {
            return self.value().map(|_| None);
        }
        let mut labels = None;
        self.object(|r, key| {
            if key == "labels" {
                labels = Some(r.labels()?);
            } else {
                r.value()?;
            }
            Ok(())
        })?;
        Ok(labels)
    }

    /// `context.labels`: an array of strings.
    fn labels(&mut self) -> Result<Shape<Vec<Cow<'a, str>>>, SyntaxError> {
        if self.next_token()? != b'[' {
            return self
                .value()
                .map(|_| Err("`context.labels` must be an array"));
        }
        let mut labels = Ok(std::mem::take(&mut self.spare_labels));
        self.array(|r| {
            match (&mut labels, r.maybe_text()?) {
                (Ok(v), Some(l)) => v.push(l),
                _ => labels = Err("labels are strings"),
            }
            Ok(())
        })?;
        Ok(labels)
    }

    /// `counts`: an object of non-negative integers (saturated to `u32`).
    fn counts(&mut self) -> Result<Shape<Counts<'a>>, SyntaxError> {
        if !self.is_object()? {
            return self.value().map(|_| Err("`counts` must be an object"));
        }
        // Checked once read: a repeated name replaces an ill-typed earlier count.
        let mut read = std::mem::take(&mut self.spare_counts);
        self.object(|r, key| {
            let n = match r.next_token()? {
                b'-' | b'0'..=b'9' => match r.number()? {
                    Number::Unsigned(n) => Some(n),
                    Number::Other(_) => None,
                },
                _ => r.value().map(|_| None)?,
            };
            match read.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = n,
                None => read.push((key, n)),
            }
            Ok(())
        })?;
        Ok(match read.iter().all(|(_, n)| n.is_some()) {
            true => Ok(read),
            false => Err("counts are non-negative integers"),
        })
    }

    /// The whole text: one value, the request object (anything else lacks an `agent`).
    fn request(&mut self, args: Args<'a>) -> Result<Fields<'a>, SyntaxError> {
        let mut f = Fields {
            args,
            ..Fields::default()
        };
        if self.is_object()? {
            self.object(|r, key| {
                match key.as_ref() {
                    "agent" => f.agent = Some(r.agent()?),
                    "action" => f.action = r.maybe_text()?,
                    "target" => f.target = r.maybe_text()?,
                    "target_hash" => f.target_hash = r.strict_hash()?,
                    "args" => {
                        f.args.clear();
                        r.args(None, &mut f.args)?;
                    }
                    "max_tokens" => f.max_tokens = Some(r.value()?),
                    "path" => f.path = Some(r.value()?),
                    "proxy" => f.gpu_verified = r.proxy()?,
                    "context" => f.labels = r.context()?,
                    "counts" => f.counts = Some(r.counts()?),
                    _ => drop(r.value()?),
                }
                Ok(())
            })?;
        } else {
            self.value()?;
        }
        if self.at < self.text.len() && self.next_token().is_ok() {
            return self.error("trailing characters");
        }
        Ok(f)
    }
}

/// The end of the run of string bytes from `at` that need no attention: up to the first
/// quote, backslash or control character (or the end). Eight bytes at a time.
fn plain_run_end(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte of `x` is zero / below 0x20 exactly when its high bit survives here.
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_ne_bytes(chunk);
        let special = zero_byte(w ^ (ONES * u64::from(b'"')))
            | zero_byte(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if special != 0 {
            break;
        }
        at += 8;
    }
    while bytes
        .get(at)
        .is_some_and(|&b| b != b'"' && b != b'\\' && b >= 0x20)
    {
        at += 1;
    }
    at
}

type Args<'a> = Vec<(Cow<'a, str>, ReqValue<'a>)>;

/// Per limit name (each once); `None` for an ill-typed count, refused before evaluation.
type Counts<'a> = Vec<(Cow<'a, str>, Option<u64>)>;

type Agent<'a> = (Option<Cow<'a, str>>, Option<[u8; 32]>);

/// A field's value or why its shape is wrong.
type Shape<T> = Result<T, &'static str>;

/// The top-level object, fields as read (the last of repeated keys).
#[derive(Default)]
struct Fields<'a> {
    agent: Option<Option<Agent<'a>>>,
    action: Option<Cow<'a, str>>,
    target: Option<Cow<'a, str>>,
    target_hash: Option<[u8; 32]>,
    args: Args<'a>,
    max_tokens: Option<ReqValue<'a>>,
    path: Option<ReqValue<'a>>,
    gpu_verified: bool,
    labels: Option<Shape<Vec<Cow<'a, str>>>>,
    counts: Option<Shape<Counts<'a>>>,
}

impl<'a> Fields<'a> {
    /// The request, or the first shape error in the order the fields are documented.
    fn finish(self) -> Shape<JsonRequest<'a>> {
        let agent = self.agent.ok_or("missing `agent`")?;
        let (name, agent_hash) = agent.unwrap_or_default();
        let agent = name.ok_or("`agent.name` must be a string")?;
        let action = match self.action.as_deref() {
            Some("infer") => ActionWord::Infer,
            Some("call") => ActionWord::Call,
            Some("read") => ActionWord::Read,
            Some("send") => ActionWord::Send,
            _ => return Err("`action` must be one of infer, call, read, send"),
        };
        let target = self.target.ok_or("`target` must be a string")?;
        Ok(JsonRequest {
            agent,
            agent_hash,
            action,
            target,
            target_hash: self.target_hash,
            args: self.args,
            max_tokens: self.max_tokens.unwrap_or(ReqValue::Absent),
            path: self.path.unwrap_or(ReqValue::Absent),
            gpu_verified: self.gpu_verified,
            labels: self.labels.transpose()?.unwrap_or_default(),
            counts: self.counts.transpose()?.unwrap_or_default(),
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

mod hash;
use hash::strict_hash;

#[cfg(test)]
mod tests;
