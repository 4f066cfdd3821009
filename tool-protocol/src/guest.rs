//! The monitor's tools client: what the guest sends to the tool gateway and how it reads
//! the answers (pure logic: the kernel's `services/agents.rs` sends and receives the lines).
//!
//! * **Catalogue.** [`Client::list_request`] asks for `tools/list`; the answer is parsed
//!   strictly and with bounds ([`MAX_LIST_BYTES`], [`MAX_LIST_VALUES`], [`MAX_TOOLS`]), and
//!   each entry's pin is computed here from its description and input schema
//!   ([`crate::tool_pin`]). SECURITY: the gateway's own `pin` field is never read: the host
//!   cannot make the policy's `target-pin` check pass for an entry it did not list.
//!   [`Client::entry`] serves the runtime's `tool_entry`.
//! * **Calls.** [`Client::call_request`] builds `tools/call` with the guest-computed pin and
//!   the runtime's ticket as JSON-RPC id; answers are matched by id (the gateway answers
//!   out of order, per server); an id that is not pending (unknown, or answered already) is
//!   refused. Results are decoded ([`Outcome`]): text content items joined, `isError`, at
//!   most [`MAX_RESULT`] bytes; JSON-RPC errors become `Unavailable` or `Failed` with the
//!   gateway's message, cut and escaped.
//! * **Changes.** `notifications/tools/list_changed` empties the catalogue at once (every
//!   tool unavailable, so the policy's pin check denies calls) and asks for a re-list
//!   ([`Client::needs_list`]); a listing that was in flight is discarded. A tool whose entry
//!   changed is not pinned any more by the policy, so calls to it stay refused.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;

use crate::{LIST_CHANGED, code, format_pin, tool_pin};

/// Longest `tools/list` answer read (bytes).
pub const MAX_LIST_BYTES: usize = 256 * 1024;
/// Most JSON values (counted over-generously as `,`, `[` and `{` bytes) in a `tools/list`
/// answer: bounds the memory its parse takes, whatever the bytes are.
pub const MAX_LIST_VALUES: usize = 32 * 1024;
/// Most tools in a catalogue (the gateway's own limit).
pub const MAX_TOOLS: usize = 1024;
/// Longest tool name (`server.tool`; the gateway's limit).
pub const MAX_TOOL_NAME: usize = 128;
/// Longest tool result handed to an agent (joined text, bytes); an agent's response is at
/// most `omega_agent_abi::MAX_RESPONSE` (256 KiB) with its framing.
pub const MAX_RESULT: usize = 192 * 1024;
/// Most content items in a result.
pub const MAX_CONTENT_ITEMS: usize = 1024;
/// Most requests in flight.
pub const MAX_PENDING: usize = 256;
/// Longest part of an error message from the host kept (bytes, before escaping).
pub const MAX_ERROR_TEXT: usize = 1024;

/// The answer to a call, as the agent gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The tool ran: its text content (items joined by `\n`) and MCP's `isError`.
    Done { is_error: bool, content: String },
    /// The tool or its server is not reachable now (retrying may help).
    Unavailable(String),
    /// The call failed (refused by the gateway, the server's error, a bad answer).
    Failed(String),
}

/// What a line from the gateway (or an error from the host) meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The answer to the call with this id.
    Answer { id: u64, outcome: Outcome },
    /// The catalogue was replaced by a listing of `tools` tools.
    Listed { tools: usize },
    /// The listing failed or was refused: the catalogue is empty.
    ListFailed(String),
    /// The gateway announced a change: the catalogue is empty until re-listed.
    Changed,
    /// The line was refused and changed nothing.
    Ignored(Ignored),
}

/// Why a line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not JSON-RPC 2.0 as the gateway writes it (or a request from the host).
    Malformed,
    /// An answer whose id is not pending: unknown, or already answered.
    UnknownId(u64),
    /// A notification other than `list_changed`.
    Notification,
    /// An error from the host with no request pending.
    Unsolicited,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::Malformed => f.write_str("malformed line"),
            Ignored::UnknownId(id) => write!(f, "answer to id {id}, which is not pending"),
            Ignored::Notification => f.write_str("unexpected notification"),
            Ignored::Unsolicited => f.write_str("error with no request pending"),
        }
    }
}

/// Why a call could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The tool is not in the current catalogue (never listed, or changed).
    NotListed,
    /// [`MAX_PENDING`] requests are in flight.
    Busy,
    /// The id is already pending.
    DuplicateId,
    /// The arguments are not a JSON object.
    BadArguments,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CallError::NotListed => "the tool is not in the gateway's current listing",
            CallError::Busy => "too many tool requests in flight",
            CallError::DuplicateId => "request id already pending",
            CallError::BadArguments => "tool arguments are not a JSON object",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    List,
    Call,
}

/// The guest's view of the gateway: the catalogue and the requests in flight.
#[derive(Debug, Default)]
pub struct Client {
    /// `server.tool` → the pin computed here from its listed entry, and its input schema.
    catalogue: BTreeMap<String, ([u8; 32], Value)>,
    pending: BTreeMap<u64, Pending>,
    /// A listing is wanted (never listed yet, or a change was announced).
    want_list: bool,
    /// Id of the listing in flight.
    listing: Option<u64>,
}

impl Client {
    /// A client with an empty catalogue that wants a listing.
    pub fn new() -> Client {
        Client {
            want_list: true,
            ..Client::default()
        }
    }

    /// A listing should be requested now ([`Client::list_request`]).
    pub fn needs_list(&self) -> bool {
        self.want_list && self.listing.is_none()
    }

    /// A listing is in flight.
    pub fn listing(&self) -> bool {
        self.listing.is_some()
    }

    /// A listing is due or in flight (never listed yet, or re-listing after a change):
    /// the catalogue is about to be replaced. After a failed listing it is not.
    pub fn stale(&self) -> bool {
        self.want_list || self.listing.is_some()
    }

    /// The pin of `tool`'s entry as last listed, if it is in the current catalogue.
    pub fn entry(&self, tool: &str) -> Option<[u8; 32]> {
        self.catalogue.get(tool).map(|(pin, _)| *pin)
    }

    /// Checks `arguments` against `tool`'s input schema as listed (the entry the pin
    /// covers, so the schema the policy pinned). A tool not in the catalogue passes: the
    /// policy's pin check denies it anyway.
    pub fn check_arguments(&self, tool: &str, arguments: &Value) -> Result<(), String> {
        match self.catalogue.get(tool) {
            Some((_, schema)) => check_arguments(schema, arguments),
            None => Ok(()),
        }
    }

    /// Tools in the current catalogue.
    pub fn len(&self) -> usize {
        self.catalogue.len()
    }

    /// The catalogue is empty.
    pub fn is_empty(&self) -> bool {
        self.catalogue.is_empty()
    }

    /// Requests waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The `tools/list` request line with this id (registered as pending).
    pub fn list_request(&mut self, id: u64) -> Result<Vec<u8>, CallError> {
        self.register(id, Pending::List)?;
        self.listing = Some(id);
        self.want_list = false;
        Ok(format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#).into_bytes())
    }

    /// The `tools/call` request line for `tool` with `arguments` (a JSON object text, as
    /// the runtime's gate checked it), with this id and the catalogue's pin.
    pub fn call_request(
        &mut self,
        id: u64,
        tool: &str,
        arguments: &str,
    ) -> Result<Vec<u8>, CallError> {
        let pin = self.entry(tool).ok_or(CallError::NotListed)?;
        // The arguments are passed on as the agent wrote them (the policy decided on
        // them); they must be one JSON object and nothing else.
        if !arguments.trim_start().starts_with('{')
            || serde_json::from_str::<IgnoredAny>(arguments).is_err()
        {
            return Err(CallError::BadArguments);
        }
        self.register(id, Pending::Call)?;
        // SECURITY: one message is one line on the host's side; a raw CR or LF in valid
        // JSON can only be whitespace between tokens (inside strings they are escaped),
        // so replacing it changes no value and the line cannot be split.
        let arguments: String = arguments
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        let name = Value::String(String::from(tool));
        Ok(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":{name},"arguments":{arguments},"pin":"{}"}}}}"#,
            format_pin(&pin)
        )
        .into_bytes())
    }

    /// Forgets request `id` (it could not be sent): no answer is expected for it.
    pub fn cancel(&mut self, id: u64) {
        self.pending.remove(&id);
        if self.listing == Some(id) {
            self.listing = None;
        }
    }

    fn register(&mut self, id: u64, what: Pending) -> Result<(), CallError> {
        if self.pending.contains_key(&id) {
            return Err(CallError::DuplicateId);
        }
        if self.pending.len() >= MAX_PENDING {
            return Err(CallError::Busy);
        }
        self.pending.insert(id, what);
        Ok(())
    }

    /// The host answered a Tools message with an error frame (no gateway, the gateway
    /// could not be written to): the relay answers messages in order, so the oldest
    /// pending request fails with it. `unavailable`: the host says the service is not
    /// there (rather than failed).
    pub fn on_host_error(&mut self, unavailable: bool, why: &str) -> Event {
        let Some((&id, &what)) = self.pending.iter().next() else {
            return Event::Ignored(Ignored::Unsolicited);
        };
        self.pending.remove(&id);
        let why = format!("the host: {}", escape(why));
        match what {
            Pending::List => self.list_failed(why),
            Pending::Call if unavailable => Event::Answer {
                id,
                outcome: Outcome::Unavailable(why),
            },
            Pending::Call => Event::Answer {
                id,
                outcome: Outcome::Failed(why),
            },
        }
    }

    fn list_failed(&mut self, why: String) -> Event {
        self.listing = None;
        self.catalogue.clear();
        Event::ListFailed(why)
    }

    /// One line from the gateway (one Tools message).
    pub fn on_line(&mut self, line: &[u8]) -> Event {
        let Ok(env) = serde_json::from_slice::<Envelope>(line) else {
            return Event::Ignored(Ignored::Malformed);
        };
        if env.jsonrpc != "2.0" {
            return Event::Ignored(Ignored::Malformed);
        }
        match (env.method, env.id) {
            (Some(m), None) if m == LIST_CHANGED => {
                // SECURITY: every tool is unavailable from now until the re-list; a
                // listing in flight may predate the change, so its answer is dropped.
                if let Some(id) = self.listing.take() {
                    self.pending.remove(&id);
                }
                self.catalogue.clear();
                self.want_list = true;
                return Event::Changed;
            }
            (Some(_), None) => return Event::Ignored(Ignored::Notification),
            // Requests from the host are not served.
            (Some(_), Some(_)) | (None, None) => return Event::Ignored(Ignored::Malformed),
            (None, Some(_)) => {}
        }
        let Some(id) = env.id else {
            return Event::Ignored(Ignored::Malformed);
        };
        // Exactly one of result and error.
        if env.result.is_some() == env.error.is_some() {
            return Event::Ignored(Ignored::Malformed);
        }
        let Some(what) = self.pending.remove(&id) else {
            return Event::Ignored(Ignored::UnknownId(id));
        };
        match (what, env.error) {
            (Pending::List, Some(e)) => self.list_failed(rpc_error_text(&e)),
            (Pending::List, None) => match parse_listing(line) {
                Ok(catalogue) => {
                    self.listing = None;
                    self.catalogue = catalogue;
                    Event::Listed {
                        tools: self.catalogue.len(),
                    }
                }
                Err(why) => self.list_failed(String::from(why)),
            },
            (Pending::Call, Some(e)) => Event::Answer {
                id,
                outcome: match e.code {
                    code::SERVER_UNAVAILABLE | code::TIMEOUT | code::BUSY => {
                        Outcome::Unavailable(rpc_error_text(&e))
                    }
                    _ => Outcome::Failed(rpc_error_text(&e)),
                },
            },
            (Pending::Call, None) => Event::Answer {
                id,
                outcome: decode_result(line),
            },
        }
    }
}

/// The JSON-RPC envelope, read without keeping `result` (it is parsed again by kind).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: &'a str,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    result: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<RpcError>,
    #[serde(default, rename = "params")]
    _params: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct RpcError {
    code: i64,
    message: String,
    #[serde(default, rename = "data")]
    _data: Option<IgnoredAny>,
}

fn rpc_error_text(e: &RpcError) -> String {
    format!("tool gateway: {} (code {})", escape(&e.message), e.code)
}

/// `s` cut to [`MAX_ERROR_TEXT`] bytes on a character boundary, control characters,
/// quotes and backslashes escaped (it is the host's text).
pub fn escape(s: &str) -> String {
    let mut end = s.len().min(MAX_ERROR_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::new();
    for c in s.get(..end).unwrap_or_default().chars() {
        if c.is_control() || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if end < s.len() {
        out.push('…');
    }
    out
}

#[derive(Deserialize)]
struct ListAnswer {
    result: ListResult,
}

#[derive(Deserialize)]
struct ListResult {
    tools: Vec<ListedTool>,
    #[serde(default, rename = "servers")]
    _servers: Option<IgnoredAny>,
}

/// One entry as the gateway lists it: only the pinned fields (and its `pin`, ignored).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListedTool {
    name: String,
    description: String,
    #[serde(rename = "inputSchema")]
    input_schema: Value,
    #[serde(default, rename = "pin")]
    _pin: Option<IgnoredAny>,
}

/// A `server.tool` name as the gateway forms it: identifiers (letters, digits, `_`, `-`)
/// joined by `.`, at least two, at most [`MAX_TOOL_NAME`] bytes.
pub fn tool_name_ok(name: &str) -> bool {
    name.len() <= MAX_TOOL_NAME
        && name.contains('.')
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

fn parse_listing(line: &[u8]) -> Result<BTreeMap<String, ([u8; 32], Value)>, &'static str> {
    if line.len() > MAX_LIST_BYTES {
        return Err("tools/list answer over MAX_LIST_BYTES");
    }
    // SECURITY: the parse below allocates per JSON value; count them (over-generously)
    // first, so a listing of a million tiny values cannot exhaust the heap.
    let values = line
        .iter()
        .filter(|&&b| b == b',' || b == b'[' || b == b'{')
        .count();
    if values > MAX_LIST_VALUES {
        return Err("tools/list answer has too many values");
    }
    let answer: ListAnswer =
        serde_json::from_slice(line).map_err(|_| "tools/list answer is malformed")?;
    let tools = answer.result.tools;
    if tools.len() > MAX_TOOLS {
        return Err("tools/list answer has too many tools");
    }
    let mut catalogue = BTreeMap::new();
    for t in tools {
        if !tool_name_ok(&t.name) {
            return Err("tools/list answer has a bad tool name");
        }
        if !t.input_schema.is_object() {
            return Err("tools/list answer has a non-object inputSchema");
        }
        // SECURITY: the pin is computed here, from what was listed.
        let pin = tool_pin(&t.description, &t.input_schema);
        if catalogue.insert(t.name, (pin, t.input_schema)).is_some() {
            return Err("tools/list answer lists a tool twice");
        }
    }
    Ok(catalogue)
}

/// Checks `value` against the JSON Schema `schema`, for the keywords that type a tool's
/// arguments: `type` (one or a list), `enum`, `const`, `properties`, `required`,
/// `additionalProperties`, `items`, `anyOf`/`oneOf` (one must match), `allOf`. Other
/// keywords (`$ref`, formats, lengths, ranges) are not checked. SECURITY: policy conditions
/// compare arguments by the type the pinned schema gives them and a value of another type
/// matches no condition (so a `deny` rule would not match `"1000"` for an integer); a call
/// whose arguments are not of the pinned types never leaves the guest, so a server cannot
/// coerce what the policy did not see.
pub fn check_arguments(schema: &Value, value: &Value) -> Result<(), String> {
    check_at(schema, value, "arguments")
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "string" => v.is_string(),
        "integer" => match v {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f == (f as i64) as f64)
            }
            _ => false,
        },
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        // An unknown type name constrains nothing we can check.
        _ => true,
    }
}

fn check_at(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    // `true`, `{}` and non-object schemas accept anything; `false` accepts nothing.
    let s = match schema {
        Value::Object(s) => s,
        Value::Bool(false) => return Err(format!("{at}: not allowed by the schema")),
        _ => return Ok(()),
    };
    match s.get("type") {
        Some(Value::String(t)) if !type_matches(t, v) => {
            return Err(format!("{at}: not of type {t}"));
        }
        Some(Value::Array(ts))
            if !ts
                .iter()
                .any(|t| t.as_str().is_none_or(|t| type_matches(t, v))) =>
        {
            return Err(format!("{at}: not of any type the schema allows"));
        }
        _ => {}
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(v)
    {
        return Err(format!("{at}: not one of the schema's values"));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        return Err(format!("{at}: not the schema's constant"));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = s.get(key)
            && !options.is_empty()
            && !options.iter().any(|o| check_at(o, v, at).is_ok())
        {
            return Err(format!("{at}: matches none of the schema's alternatives"));
        }
    }
    if let Some(Value::Array(all)) = s.get("allOf") {
        for o in all {
            check_at(o, v, at)?;
        }
    }
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(required)) = s.get("required") {
                for k in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(k) {
                        return Err(format!("{at}: `{}` is required", escape(k)));
                    }
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            let extra = s.get("additionalProperties");
            for (k, item) in map {
                let here = format!("{at}.{}", escape(k));
                match (props.and_then(|p| p.get(k)), extra) {
                    (Some(sub), _) => check_at(sub, item, &here)?,
                    (None, Some(sub)) => check_at(sub, item, &here)?,
                    (None, None) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub @ Value::Object(_)) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_at(sub, item, &format!("{at}[{i}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[derive(Deserialize)]
struct CallAnswer {
    result: CallResult,
}

#[derive(Deserialize)]
struct CallResult {
    content: Joined,
    #[serde(default, rename = "isError")]
    is_error: bool,
    // structuredContent, pin, _meta: not passed on.
}

/// Content items joined as they are read: never more than [`MAX_RESULT`] bytes kept.
struct Joined {
    text: String,
    over: bool,
    items: usize,
}

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

impl<'de> Deserialize<'de> for Joined {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Joined;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of content items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Joined, A::Error> {
                let mut j = Joined {
                    text: String::new(),
                    over: false,
                    items: 0,
                };
                loop {
                    if j.over || j.items >= MAX_CONTENT_ITEMS {
                        // Read on (the answer must still be well formed), keep nothing.
                        if seq.next_element::<IgnoredAny>()?.is_none() {
                            break;
                        }
                        j.over = true;
                        continue;
                    }
                    let Some(item) = seq.next_element::<Item>()? else {
                        break;
                    };
                    let piece = match (item.kind.as_str(), &item.text) {
                        ("text", Some(t)) => t.as_str(),
                        ("text", None) => return Err(de::Error::missing_field("text")),
                        _ => "[non-text content not passed on]",
                    };
                    let sep = usize::from(j.items > 0);
                    if j.text.len() + sep + piece.len() > MAX_RESULT {
                        j.over = true;
                        continue;
                    }
                    if sep == 1 {
                        j.text.push('\n');
                    }
                    j.text.push_str(piece);
                    j.items += 1;
                }
                Ok(j)
            }
        }
        d.deserialize_seq(V)
    }
}

fn decode_result(line: &[u8]) -> Outcome {
    match serde_json::from_slice::<CallAnswer>(line) {
        Ok(a) if a.result.content.over => Outcome::Failed(format!(
            "tool result over {MAX_RESULT} bytes or {MAX_CONTENT_ITEMS} items; not passed on"
        )),
        Ok(a) => Outcome::Done {
            is_error: a.result.is_error,
            content: a.result.content.text,
        },
        Err(_) => Outcome::Failed(String::from("malformed tool result from the gateway")),
    }
}

#[cfg(test)]
mod tests;
