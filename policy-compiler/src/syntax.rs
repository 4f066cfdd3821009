//! Hand-written lexer and recursive-descent parser for the policy language.
//! The grammar is in `docs/policy.md`.

use crate::diag::Span;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Punct(&'static str),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Int(_) => "an integer".into(),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::Eof => "end of file".into(),
        }
    }
}

/// A name with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

/// A string literal with its position.
pub type Str = Name;

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Policy(Str),
    Labels(Vec<Name>),
    Decl(Decl),
    Rule(RuleDecl),
    Limit(LimitDecl),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclKind {
    Agent,
    Model,
    Tool,
    Source,
}

impl DeclKind {
    pub fn word(self) -> &'static str {
        match self {
            DeclKind::Agent => "agent",
            DeclKind::Model => "model",
            DeclKind::Tool => "tool",
            DeclKind::Source => "source",
        }
    }
    fn fields(self) -> &'static [&'static str] {
        match self {
            DeclKind::Agent => &["hash", "cleared"],
            DeclKind::Model => &["proxy", "cleared", "result", "gpu"],
            DeclKind::Tool => &["description", "schema", "pin", "cleared", "result"],
            DeclKind::Source => &["labels"],
        }
    }
}

/// `agent|model|tool|source NAME { fields }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decl {
    pub kind: DeclKind,
    pub name: Name,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub key: Name,
    pub value: FieldValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Str(Str),
    Labels(Vec<Name>),
    /// Inline JSON, with the span of its text.
    Json(serde_json::Value, Span),
    /// `schema file "x.json"`.
    JsonFile(Str),
    /// `gpu { measurement INDEX "hex" ... }` (models), with the span of the block.
    Gpu(Vec<GpuMeasurementAst>, Span),
}

/// `measurement INDEX "hex"` or `measurement INDEX ["hex", ...]` in a model's `gpu` block.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuMeasurementAst {
    /// The SPDM measurement block index, as written.
    pub index: (i64, Span),
    /// The allowed values (hex strings), at least one.
    pub values: Vec<Str>,
    /// The whole `measurement …` item.
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKw {
    Infer,
    Call,
    Read,
    Send,
}

/// `NAME` or `*`.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetRef {
    Any(Span),
    Named(Name),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleDecl {
    pub name: Name,
    pub effect: Name,
    pub action: (ActionKw, Span),
    pub target: TargetRef,
    pub agents: Option<Vec<Name>>,
    pub conds: Vec<Cond>,
    pub declassify: Option<(Vec<Name>, Span)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitDecl {
    pub name: Name,
    pub action: (ActionKw, Span),
    pub target: TargetRef,
    pub agents: Option<Vec<Name>>,
    pub max: (i64, Span),
    pub window_secs: (i64, Span),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SubjectAst {
    /// `args.a.b`: the path parts after `args`.
    Arg(Vec<Name>),
    MaxTokens,
    Path,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LitAst {
    Int(i64),
    Str(String),
    Bool(bool),
    List(Vec<(LitAst, Span)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub subject: SubjectAst,
    pub subject_span: Span,
    pub op: (&'static str, Span),
    pub value: (LitAst, Span),
}

/// A syntax error: where and what.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub span: Span,
    pub message: String,
}

type PResult<T> = Result<T, ParseError>;

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
}

const PUNCT: &[&str] = &[
    "==", "!=", "<=", ">=", "{", "}", "[", "]", ",", ".", "*", "<", ">", "/",
];

impl<'s> Lexer<'s> {
    fn skip_trivia(&mut self) {
        let b = self.src.as_bytes();
        while self.pos < b.len() {
            match b[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'#' => {
                    while self.pos < b.len() && b[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn next(&mut self) -> PResult<(Tok, Span)> {
        self.skip_trivia();
        let start = self.pos;
        let rest = &self.src[start..];
        let Some(c) = rest.chars().next() else {
            return Ok((Tok::Eof, Span::new(start, start)));
        };
        if c.is_ascii_alphabetic() || c == '_' {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len());
            self.pos += len;
            return Ok((
                Tok::Ident(rest[..len].to_string()),
                Span::new(start, self.pos),
            ));
        }
        if c.is_ascii_digit() || (c == '-' && rest[1..].starts_with(|c: char| c.is_ascii_digit())) {
            let len = 1 + rest[1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - 1);
            self.pos += len;
            let span = Span::new(start, self.pos);
            let n = rest[..len].parse::<i64>().map_err(|_| ParseError {
                span,
                message: "integer out of range (64-bit signed)".into(),
            })?;
            return Ok((Tok::Int(n), span));
        }
        if c == '"' {
            return self.string(start);
        }
        for p in PUNCT {
            if rest.starts_with(p) {
                self.pos += p.len();
                return Ok((Tok::Punct(p), Span::new(start, self.pos)));
            }
        }
        Err(ParseError {
            span: Span::new(start, start + c.len_utf8()),
            message: format!("unexpected character `{c}`"),
        })
    }

    fn string(&mut self, start: usize) -> PResult<(Tok, Span)> {
        let mut out = String::new();
        let mut chars = self.src[start + 1..].char_indices();
        loop {
            let Some((i, c)) = chars.next() else {
                return Err(ParseError {
                    span: Span::new(start, start + 1),
                    message: "unterminated string".into(),
                });
            };
            match c {
                '"' => {
                    self.pos = start + 1 + i + 1;
                    return Ok((Tok::Str(out), Span::new(start, self.pos)));
                }
                '\n' => {
                    return Err(ParseError {
                        span: Span::new(start, start + 1 + i),
                        message: "unterminated string (strings end on the same line)".into(),
                    });
                }
                '\\' => {
                    let esc = chars.next();
                    match esc.map(|(_, c)| c) {
                        Some('"') => out.push('"'),
                        Some('\\') => out.push('\\'),
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        _ => {
                            let at = start + 1 + i;
                            return Err(ParseError {
                                span: Span::new(at, at + 2),
                                message: "unknown escape (use \\\", \\\\, \\n or \\t)".into(),
                            });
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }
}

struct Parser<'s> {
    lex: Lexer<'s>,
    tok: Tok,
    span: Span,
}

/// Parses a whole policy file.
pub fn parse(src: &str) -> PResult<Vec<Item>> {
    let mut lex = Lexer { src, pos: 0 };
    let (tok, span) = lex.next()?;
    let mut p = Parser { lex, tok, span };
    let mut items = Vec::new();
    while p.tok != Tok::Eof {
        items.push(p.item()?);
    }
    Ok(items)
}

fn err<T>(span: Span, message: impl Into<String>) -> PResult<T> {
    Err(ParseError {
        span,
        message: message.into(),
    })
}

impl Parser<'_> {
    fn bump(&mut self) -> PResult<(Tok, Span)> {
        let (tok, span) = self.lex.next()?;
        let old = std::mem::replace(&mut self.tok, tok);
        let old_span = std::mem::replace(&mut self.span, span);
        Ok((old, old_span))
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Ident(s) if s == kw)
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(&self.tok, Tok::Punct(q) if *q == p)
    }

    fn expect_punct(&mut self, p: &'static str) -> PResult<Span> {
        if self.is_punct(p) {
            Ok(self.bump()?.1)
        } else {
            err(
                self.span,
                format!("expected `{p}`, found {}", self.tok.describe()),
            )
        }
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<Span> {
        if self.is_kw(kw) {
            Ok(self.bump()?.1)
        } else {
            err(
                self.span,
                format!("expected `{kw}`, found {}", self.tok.describe()),
            )
        }
    }

    fn ident(&mut self, what: &str) -> PResult<Name> {
        match &self.tok {
            Tok::Ident(_) => {
                let (Tok::Ident(text), span) = self.bump()? else {
                    unreachable!()
                };
                Ok(Name { text, span })
            }
            t => err(
                self.span,
                format!("expected {what}, found {}", t.describe()),
            ),
        }
    }

    /// `ident ('.' ident)*`, joined with dots.
    fn dotted(&mut self, what: &str) -> PResult<Name> {
        let mut name = self.ident(what)?;
        while self.is_punct(".") {
            self.bump()?;
            let part = self.ident(what)?;
            name.text.push('.');
            name.text.push_str(&part.text);
            name.span.end = part.span.end;
        }
        Ok(name)
    }

    fn string(&mut self, what: &str) -> PResult<Str> {
        match &self.tok {
            Tok::Str(_) => {
                let (Tok::Str(text), span) = self.bump()? else {
                    unreachable!()
                };
                Ok(Name { text, span })
            }
            t => err(
                self.span,
                format!("expected {what} (a string), found {}", t.describe()),
            ),
        }
    }

    fn int(&mut self, what: &str) -> PResult<(i64, Span)> {
        match self.tok {
            Tok::Int(n) => Ok((n, self.bump()?.1)),
            ref t => err(
                self.span,
                format!("expected {what} (an integer), found {}", t.describe()),
            ),
        }
    }

    /// An agent name: `agent`, or `node/agent` for an agent of another image (its node
    /// is the peer channel's name for that image, docs/fleet.md).
    fn agent_name(&mut self, what: &str) -> PResult<Name> {
        let mut name = self.ident(what)?;
        if self.is_punct("/") {
            self.bump()?;
            let agent = self.ident("an agent name after `node/`")?;
            name.text.push('/');
            name.text.push_str(&agent.text);
            name.span.end = agent.span.end;
        }
        Ok(name)
    }

    fn name_list(&mut self, what: &str) -> PResult<(Vec<Name>, Span)> {
        self.list(what, Self::ident)
    }

    /// `[ agent, node/agent, ... ]`.
    fn agent_list(&mut self, what: &str) -> PResult<(Vec<Name>, Span)> {
        self.list(what, Self::agent_name)
    }

    fn list(
        &mut self,
        what: &str,
        item: fn(&mut Self, &str) -> PResult<Name>,
    ) -> PResult<(Vec<Name>, Span)> {
        let open = self.expect_punct("[")?;
        let mut names = Vec::new();
        while !self.is_punct("]") {
            names.push(item(self, what)?);
            if !self.is_punct(",") {
                break;
            }
            self.bump()?;
        }
        let close = self.expect_punct("]")?;
        Ok((names, Span::new(open.start, close.end)))
    }

    fn item(&mut self) -> PResult<Item> {
        let kw = match &self.tok {
            Tok::Ident(s) => s.clone(),
            t => {
                return err(
                    self.span,
                    format!(
                        "expected a declaration (policy, label, agent, model, tool, source, rule, limit), found {}",
                        t.describe()
                    ),
                );
            }
        };
        match kw.as_str() {
            "policy" => {
                self.bump()?;
                Ok(Item::Policy(self.string("the policy name")?))
            }
            "label" | "labels" => {
                self.bump()?;
                let mut names = vec![self.ident("a label name")?];
                while self.is_punct(",") {
                    self.bump()?;
                    names.push(self.ident("a label name")?);
                }
                Ok(Item::Labels(names))
            }
            "agent" => self.decl(DeclKind::Agent),
            "model" => self.decl(DeclKind::Model),
            "tool" => self.decl(DeclKind::Tool),
            "source" => self.decl(DeclKind::Source),
            "rule" => self.rule(),
            "limit" => self.limit(),
            other => err(
                self.span,
                format!(
                    "unknown declaration `{other}` (expected policy, label, agent, model, tool, source, rule or limit)"
                ),
            ),
        }
    }

    fn decl(&mut self, kind: DeclKind) -> PResult<Item> {
        self.bump()?;
        let name = if kind == DeclKind::Tool {
            self.dotted("a tool name (server.tool)")?
        } else if kind == DeclKind::Agent {
            self.agent_name("agent name")?
        } else {
            self.ident(&format!("{} name", kind.word()))?
        };
        self.expect_punct("{")?;
        let mut fields = Vec::new();
        while !self.is_punct("}") {
            let key = self.ident("a field name")?;
            if !kind.fields().contains(&key.text.as_str()) {
                return err(
                    key.span,
                    format!(
                        "unknown field `{}` in {} `{}` (expected one of: {})",
                        key.text,
                        kind.word(),
                        name.text,
                        kind.fields().join(", ")
                    ),
                );
            }
            let value = match key.text.as_str() {
                "cleared" | "result" | "labels" => {
                    FieldValue::Labels(self.name_list("a label name")?.0)
                }
                "schema" => self.schema()?,
                "gpu" => self.gpu()?,
                _ => FieldValue::Str(self.string(&format!("the {}", key.text))?),
            };
            fields.push(Field { key, value });
        }
        self.bump()?;
        Ok(Item::Decl(Decl { kind, name, fields }))
    }

    /// `{ { measurement INT (STRING | "[" STRING { "," STRING } "]") } }`; the `gpu` key is
    /// read.
    fn gpu(&mut self) -> PResult<FieldValue> {
        if !self.is_punct("{") {
            return err(
                self.span,
                format!(
                    "expected `{{` after `gpu`: a model requiring confidential-GPU evidence lists its reference values, `gpu {{ measurement 1 \"<hex>\" }}`, found {}",
                    self.tok.describe()
                ),
            );
        }
        let open = self.bump()?.1;
        let mut items = Vec::new();
        while !self.is_punct("}") {
            if !self.is_kw("measurement") {
                return err(
                    self.span,
                    format!(
                        "expected `measurement INDEX \"<hex>\"` or `}}` in a `gpu` block, found {}",
                        self.tok.describe()
                    ),
                );
            }
            let start = self.bump()?.1.start;
            let index = self.int("the SPDM measurement index")?;
            let mut values = Vec::new();
            let end = if self.is_punct("[") {
                self.bump()?;
                while !self.is_punct("]") {
                    values.push(self.string("a measurement value in hex")?);
                    if !self.is_punct(",") {
                        break;
                    }
                    self.bump()?;
                }
                self.expect_punct("]")?.end
            } else {
                let v = self.string("the measurement value in hex, or a list `[\"<hex>\", …]`")?;
                let end = v.span.end;
                values.push(v);
                end
            };
            items.push(GpuMeasurementAst {
                index,
                values,
                span: Span::new(start, end),
            });
        }
        let close = self.bump()?.1;
        Ok(FieldValue::Gpu(items, Span::new(open.start, close.end)))
    }

    fn schema(&mut self) -> PResult<FieldValue> {
        if self.is_kw("file") {
            self.bump()?;
            return Ok(FieldValue::JsonFile(self.string("the schema file name")?));
        }
        if !self.is_punct("{") {
            return err(
                self.span,
                format!(
                    "expected an inline JSON schema `{{...}}` or `file \"name.json\"`, found {}",
                    self.tok.describe()
                ),
            );
        }
        // The current token is the `{` that opens the JSON: parse from there with serde_json.
        let start = self.span.start;
        let src = self.lex.src;
        let mut stream = serde_json::Deserializer::from_str(&src[start..]).into_iter();
        match stream.next() {
            Some(Ok(value)) => {
                let end = start + stream.byte_offset();
                self.lex.pos = end;
                self.bump()?;
                Ok(FieldValue::Json(value, Span::new(start, end)))
            }
            Some(Err(e)) => {
                // serde_json reports line/column relative to `start`; turn that into bytes.
                let rel = &src[start..];
                let mut off = 0;
                for (i, line) in rel.split_inclusive('\n').enumerate() {
                    if i + 1 == e.line() {
                        off += line
                            .char_indices()
                            .nth(e.column().saturating_sub(1))
                            .map_or(line.len(), |(b, _)| b);
                        break;
                    }
                    off += line.len();
                }
                let at = (start + off).min(src.len());
                err(Span::new(at, at + 1), format!("invalid JSON schema: {e}"))
            }
            None => err(self.span, "expected a JSON schema"),
        }
    }

    fn action(&mut self) -> PResult<(ActionKw, Span)> {
        let a = match &self.tok {
            Tok::Ident(s) if s == "infer" => ActionKw::Infer,
            Tok::Ident(s) if s == "call" => ActionKw::Call,
            Tok::Ident(s) if s == "read" => ActionKw::Read,
            Tok::Ident(s) if s == "send" => ActionKw::Send,
            t => {
                return err(
                    self.span,
                    format!(
                        "expected an action (infer, call, read, send), found {}",
                        t.describe()
                    ),
                );
            }
        };
        Ok((a, self.bump()?.1))
    }

    fn target(&mut self, action: ActionKw) -> PResult<TargetRef> {
        if self.is_punct("*") {
            return Ok(TargetRef::Any(self.bump()?.1));
        }
        let what = match action {
            ActionKw::Infer => "a model name or `*`",
            ActionKw::Call => "a tool name (server.tool) or `*`",
            ActionKw::Read => "a source name or `*`",
            ActionKw::Send => "an agent name or `*`",
        };
        Ok(TargetRef::Named(if action == ActionKw::Call {
            self.dotted(what)?
        } else if action == ActionKw::Send {
            self.agent_name(what)?
        } else {
            self.ident(what)?
        }))
    }

    fn rule(&mut self) -> PResult<Item> {
        self.bump()?;
        let name = self.ident("a rule name")?;
        self.expect_punct("{")?;
        let effect = match &self.tok {
            Tok::Ident(s) if matches!(s.as_str(), "allow" | "deny" | "confirm") => {
                self.ident("")?
            }
            t => {
                return err(
                    self.span,
                    format!(
                        "a rule starts with its effect: expected allow, deny or confirm, found {}",
                        t.describe()
                    ),
                );
            }
        };
        let action = self.action()?;
        let target = self.target(action.0)?;
        let mut rule = RuleDecl {
            name,
            effect,
            action,
            target,
            agents: None,
            conds: Vec::new(),
            declassify: None,
        };
        while !self.is_punct("}") {
            let key = self.ident("a rule clause (agents, when, declassify) or `}`")?;
            match key.text.as_str() {
                "agents" => {
                    if rule.agents.is_some() {
                        return err(key.span, "duplicate `agents` clause");
                    }
                    rule.agents = Some(self.agent_list("an agent name")?.0);
                }
                "when" => {
                    rule.conds.push(self.cond()?);
                    while self.is_kw("and") {
                        self.bump()?;
                        rule.conds.push(self.cond()?);
                    }
                }
                "declassify" => {
                    if rule.declassify.is_some() {
                        return err(key.span, "duplicate `declassify` clause");
                    }
                    rule.declassify = Some(self.name_list("a label name")?);
                }
                other => {
                    return err(
                        key.span,
                        format!(
                            "unknown rule clause `{other}` (expected agents, when or declassify)"
                        ),
                    );
                }
            }
        }
        self.bump()?;
        Ok(Item::Rule(rule))
    }

    fn cond(&mut self) -> PResult<Cond> {
        let first = self.ident("`args.<path>`, `max_tokens` or `path`")?;
        let (subject, subject_span) = match first.text.as_str() {
            "args" => {
                let mut parts = Vec::new();
                let mut end = first.span.end;
                if !self.is_punct(".") {
                    return err(first.span, "expected `args.<argument path>`");
                }
                while self.is_punct(".") {
                    self.bump()?;
                    let part = self.ident("an argument name")?;
                    end = part.span.end;
                    parts.push(part);
                }
                (SubjectAst::Arg(parts), Span::new(first.span.start, end))
            }
            "max_tokens" => (SubjectAst::MaxTokens, first.span),
            "path" => (SubjectAst::Path, first.span),
            other => {
                return err(
                    first.span,
                    format!(
                        "unknown condition subject `{other}` (expected `args.<path>`, `max_tokens` or `path`)"
                    ),
                );
            }
        };
        let op = match &self.tok {
            Tok::Punct(p @ ("==" | "!=" | "<" | "<=" | ">" | ">=")) => *p,
            Tok::Ident(s) if s == "in" => "in",
            Tok::Ident(s) if s == "startswith" => "startswith",
            t => {
                return err(
                    self.span,
                    format!(
                        "expected a comparison (==, !=, <, <=, >, >=, in, startswith), found {}",
                        t.describe()
                    ),
                );
            }
        };
        let op_span = self.bump()?.1;
        let value = self.literal()?;
        Ok(Cond {
            subject,
            subject_span,
            op: (op, op_span),
            value,
        })
    }

    fn literal(&mut self) -> PResult<(LitAst, Span)> {
        let span = self.span;
        match &self.tok {
            Tok::Int(n) => {
                let n = *n;
                self.bump()?;
                Ok((LitAst::Int(n), span))
            }
            Tok::Str(_) => {
                let s = self.string("")?;
                Ok((LitAst::Str(s.text), s.span))
            }
            Tok::Ident(s) if s == "true" || s == "false" => {
                let b = s == "true";
                self.bump()?;
                Ok((LitAst::Bool(b), span))
            }
            Tok::Punct("[") => {
                self.bump()?;
                let mut items = Vec::new();
                while !self.is_punct("]") {
                    let item = self.literal()?;
                    if matches!(item.0, LitAst::List(_)) {
                        return err(item.1, "lists do not nest");
                    }
                    items.push(item);
                    if !self.is_punct(",") {
                        break;
                    }
                    self.bump()?;
                }
                let close = self.expect_punct("]")?;
                Ok((LitAst::List(items), Span::new(span.start, close.end)))
            }
            t => err(
                span,
                format!(
                    "expected a value (integer, string, true, false or [list]), found {}",
                    t.describe()
                ),
            ),
        }
    }

    fn limit(&mut self) -> PResult<Item> {
        self.bump()?;
        let name = self.ident("a limit name")?;
        self.expect_punct("{")?;
        let action = self.action()?;
        let target = self.target(action.0)?;
        let mut agents = None;
        if self.is_kw("agents") {
            self.bump()?;
            agents = Some(self.agent_list("an agent name")?.0);
        }
        self.expect_kw("max")?;
        let max = self.int("the maximum count")?;
        self.expect_kw("per")?;
        let (n, nspan) = self.int("the window length")?;
        let unit = self.ident("a time unit (s, m, h)")?;
        let mult = match unit.text.as_str() {
            "s" | "sec" | "seconds" => 1,
            "m" | "min" | "minutes" => 60,
            "h" | "hours" => 3600,
            _ => return err(unit.span, "expected a time unit: s, m or h"),
        };
        let window = (
            n.saturating_mul(mult),
            Span::new(nspan.start, unit.span.end),
        );
        self.expect_punct("}")?;
        Ok(Item::Limit(LimitDecl {
            name,
            action,
            target,
            agents,
            max,
            window_secs: window,
        }))
    }
}
