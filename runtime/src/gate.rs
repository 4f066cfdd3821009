//! The one gate every host call goes through.
//!
//! Order, for every call that acts outside the agent (`infer`, `tool_call`, `data_read`,
//! `send`): decode and check the request against the ABI limits → build the policy request
//! with the agent's current labels → evaluate → append the provenance record (decision and
//! rule) → only if allowed, update the session (labels, rate-limit counts) and carry the call
//! out. A denial answers `Denied { rule }` and nothing leaves. If the record cannot be
//! appended (the outbox is full), nothing is decided to have happened and the call waits.

use alloc::string::String;
use alloc::vec::Vec;

use omega_agent_abi::{self as abi, HostError};
use omega_policy::{Action, Arg, Decision, Effect, LabelSet, RuleRef, Value};
use omega_provenance as prov;
use wasmi::Val;

use crate::host::{CallKind, HostCall};
use crate::monitor::{
    Answer, Backpressure, Confirm, DataError, Egress, EgressReply, Monitor, Record,
};
use crate::{Inbound, Runtime, Wait};

/// What the scheduler does with the agent after the gate.
pub(crate) enum Outcome {
    /// Resume the agent's call with this return value.
    Return(Val),
    /// Park the agent until the wait is over.
    Park(Wait),
}

/// A failed call, owning what its detail borrows.
pub(crate) enum Fail {
    Abi(HostError<'static>),
    /// Denied by the policy rule with this name (`flow:phi`, `default-deny`, a rule name).
    Denied(String),
}

impl Fail {
    pub(crate) fn as_host(&self) -> HostError<'_> {
        match self {
            Fail::Abi(e) => *e,
            Fail::Denied(rule) => HostError::Denied { rule },
        }
    }
}

/// `TooLarge` naming the limit when `len` exceeds it.
fn within(len: usize, limit: usize) -> Result<(), Fail> {
    if len > limit {
        return Err(Fail::Abi(HostError::TooLarge {
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        }));
    }
    Ok(())
}

/// An agent-supplied name: 1..=MAX_NAME bytes.
pub(crate) fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= abi::MAX_NAME
}

/// SECURITY: read paths reach the policy's `path` conditions and the data source as given;
/// only normalised paths are accepted, so `/public/../private` cannot pass a
/// `startswith "/public"` rule.
fn path_ok(path: &str) -> bool {
    let rel = path.strip_prefix('/').unwrap_or(path);
    path.len() <= abi::MAX_PATH
        && !rel.is_empty()
        && !path.contains('\0')
        && rel
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

fn to_provenance(effect: Effect) -> prov::Decision {
    match effect {
        Effect::Allow => prov::Decision::Allow,
        Effect::Deny => prov::Decision::Deny,
        Effect::Confirm => prov::Decision::Confirm,
    }
}

/// A tool argument value owned by the gate while the policy borrows it.
enum ArgValue {
    Int(i64),
    Str(String),
    Bool(bool),
    Other,
}

/// The rule name logged for a tool call whose arguments do not match the pinned schema.
pub const SCHEMA_RULE: &str = "schema";

/// Largest integer the policy compares exactly (I-JSON).
const EXACT_INT: i64 = 1 << 53;

/// Flattens a JSON object into dotted paths (`query.family_name`) as the policy reads them.
/// Keys with a `.` cannot be named by a rule and are left out.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, ArgValue)>) {
    use serde_json::Value as J;
    let leaf = match value {
        J::Object(map) => {
            for (k, v) in map {
                if k.contains('.') {
                    continue;
                }
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    alloc::format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
            return;
        }
        J::Bool(b) => ArgValue::Bool(*b),
        J::String(s) => ArgValue::Str(s.clone()),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) if (-EXACT_INT..=EXACT_INT).contains(&i) => ArgValue::Int(i),
            (None, Some(f))
                if (-(EXACT_INT as f64)..=EXACT_INT as f64).contains(&f)
                    && (f as i64) as f64 == f =>
            {
                ArgValue::Int(f as i64)
            }
            _ => ArgValue::Other,
        },
        J::Null | J::Array(_) => ArgValue::Other,
    };
    if !prefix.is_empty() {
        out.push((String::from(prefix), leaf));
    }
}

impl<M: Monitor> Runtime<'_, M> {
    /// Takes one suspended host call through the gate.
    pub(crate) fn gate(&mut self, id: usize, call: HostCall) -> Outcome {
        let result = match call.kind {
            CallKind::Now => {
                let now = self.monitor.now_ms();
                return Outcome::Return(Val::I64(i64::try_from(now).unwrap_or(i64::MAX)));
            }
            CallKind::Random => return self.random(id, &call),
            CallKind::Log => self.log(id, &call.args),
            CallKind::Recv => return self.recv(id, &call),
            CallKind::Send => {
                return match self.send_remote(id, call) {
                    Ok(outcome) => outcome,
                    Err(call) => self.send_local(id, call),
                };
            }
            CallKind::DataRead => self.data_read(id, &call.args),
            CallKind::Infer | CallKind::ToolCall | CallKind::InferStream => {
                return self.egress(id, call);
            }
            CallKind::InferNext => return self.infer_next(id, &call),
        };
        match result {
            Ok(Some(bytes)) => self.respond(id, &call, Ok(&bytes)),
            Ok(None) => Outcome::Park(Wait::Record(call)),
            Err(e) => self.respond(id, &call, Err(e.as_host())),
        }
    }

    /// A send to an agent of this image.
    fn send_local(&mut self, id: usize, call: HostCall) -> Outcome {
        match self.send(id, &call.args) {
            Ok(Some(bytes)) => self.respond(id, &call, Ok(&bytes)),
            Ok(None) => Outcome::Park(Wait::Record(call)),
            Err(e) => self.respond(id, &call, Err(e.as_host())),
        }
    }

    /// Writes a response into the agent's buffer (or holds it when it does not fit) and
    /// returns the call's return value. Errors hold their detail.
    pub(crate) fn respond(
        &mut self,
        id: usize,
        call: &HostCall,
        result: Result<&[u8], HostError<'_>>,
    ) -> Outcome {
        Outcome::Return(Val::I32(self.write_response(
            id,
            call.out_ptr,
            call.out_cap,
            result,
        )))
    }

    pub(crate) fn write_response(
        &mut self,
        id: usize,
        out_ptr: u32,
        out_cap: u32,
        result: Result<&[u8], HostError<'_>>,
    ) -> i32 {
        let Some(agent) = self.agents.get_mut(id) else {
            return abi::encode_return(Err(abi::ErrorCode::Unavailable));
        };
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(e) => {
                agent.store.data_mut().held = Some(crate::encode_owned(&e));
                return abi::encode_return(Err(e.code()));
            }
        };
        if bytes.len() > abi::MAX_RESPONSE {
            let e = HostError::TooLarge {
                limit: abi::MAX_RESPONSE as u32,
            };
            agent.store.data_mut().held = Some(crate::encode_owned(&e));
            return abi::encode_return(Err(e.code()));
        }
        let len = bytes.len() as u32;
        let written = bytes.len() <= out_cap as usize
            && agent.store.data().memory.is_some_and(|mem| {
                let start = out_ptr as usize;
                mem.data_mut(&mut agent.store)
                    .get_mut(start..start + bytes.len())
                    .map(|dst| dst.copy_from_slice(bytes))
                    .is_some()
            });
        agent.store.data_mut().held = (!written).then(|| bytes.to_vec());
        abi::encode_return(Ok(len))
    }

    /// Evaluates `action` for agent `id` with its current labels and appends the record.
    /// `Ok(None)`: backpressure, nothing decided. On allow/confirm the session takes on the
    /// decision (labels, counts).
    fn decide(
        &mut self,
        id: usize,
        action: Action<'_>,
        request: &[u8],
    ) -> Result<Option<Decision>, Fail> {
        self.decide_as(id, action, request, None)
    }

    /// [`Self::decide`] with the record naming `record_target` instead of the action's
    /// target (a send to an instance is decided under its policy name, logged under its own).
    pub(crate) fn decide_as(
        &mut self,
        id: usize,
        action: Action<'_>,
        request: &[u8],
        record_target: Option<&str>,
    ) -> Result<Option<Decision>, Fail> {
        let policy = self.policy;
        let now = self.monitor.now_ms();
        let Some(agent) = self.agents.get_mut(id) else {
            return Err(Fail::Abi(HostError::BadRequest));
        };
        let req = omega_policy::Request {
            agent: &agent.checked.policy_name,
            agent_hash: Some(&agent.checked.hash),
            action,
        };
        let secs = now / 1000;
        let decision = policy.evaluate(&req, &agent.session.state(policy, secs));
        let (kind, target) = match action {
            Action::Infer { model, .. } => (prov::Action::Infer, model),
            Action::Call { tool, .. } => (prov::Action::Tool, tool),
            Action::Read { source, .. } => (prov::Action::Data, source),
            Action::Send { to } => (prov::Action::Message, to),
        };
        let target = record_target.unwrap_or(target);
        let record = Record::Decision {
            agent: &agent.checked.name,
            action: kind,
            target,
            decision: to_provenance(decision.effect),
            rule: policy.rule_name(decision.rule),
            labels: decision.labels,
            content: prov::entry::content_digest(request, &[]),
        };
        if self.monitor.append_record(&record) == Err(Backpressure) {
            return Ok(None);
        }
        // Confirm counts at once: labels and counts taken early are only ever stricter.
        agent.session.record(policy, &req, &decision, secs);
        Ok(Some(decision))
    }

    pub(crate) fn denied(&self, rule: RuleRef) -> Fail {
        Fail::Denied(alloc::format!("{}", self.policy.rule_name(rule)))
    }

    fn random(&mut self, id: usize, call: &HostCall) -> Outcome {
        let mut buf = [0u8; abi::MAX_RANDOM];
        let n = (call.out_cap as usize).min(abi::MAX_RANDOM);
        let Some(dst) = buf.get_mut(..n) else {
            return Outcome::Return(Val::I32(abi::encode_return(Err(abi::ErrorCode::TooLarge))));
        };
        self.monitor.random(dst);
        let written = self.write_response(id, call.out_ptr, call.out_cap, Ok(dst));
        Outcome::Return(Val::I32(written))
    }

    fn log(&mut self, id: usize, args: &[u8]) -> Result<Option<Vec<u8>>, Fail> {
        let req: abi::LogRequest<'_> =
            abi::decode(args).map_err(|_| Fail::Abi(HostError::BadRequest))?;
        within(req.text.len(), abi::MAX_LOG)?;
        let labels = self.labels(id);
        // SECURITY: the host's log is egress to an uncleared destination: an agent whose
        // context carries a label cannot log (it could leak what it read).
        if labels != 0 {
            return Err(self.denied(RuleRef::Flow(labels.trailing_zeros() as u8)));
        }
        let name = self.agent_name(id);
        self.monitor.log(&name, req.level, req.text);
        Ok(Some(Vec::new()))
    }

    fn data_read(&mut self, id: usize, args: &[u8]) -> Result<Option<Vec<u8>>, Fail> {
        let req: abi::DataReadRequest<'_> =
            abi::decode(args).map_err(|_| Fail::Abi(HostError::BadRequest))?;
        if !name_ok(req.source) || !path_ok(req.path) {
            return Err(Fail::Abi(HostError::BadRequest));
        }
        within(req.max_len as usize, abi::MAX_READ as usize)?;
        let action = Action::Read {
            source: req.source,
            path: Value::Str(req.path),
        };
        let Some(decision) = self.decide(id, action, args)? else {
            return Ok(None);
        };
        // As for sends: a `confirm` read is refused under its rule's name.
        if decision.effect != Effect::Allow {
            return Err(self.denied(decision.rule));
        }
        let mut data = Vec::new();
        let total = self
            .monitor
            .read_data(req.source, req.path, req.offset, req.max_len, &mut data)
            .map_err(|e| {
                Fail::Abi(match e {
                    DataError::NotFound => HostError::Failed {
                        reason: "no such item",
                    },
                    DataError::Unavailable => HostError::Unavailable {
                        reason: "data source not in the bundle",
                    },
                })
            })?;
        data.truncate(req.max_len as usize);
        let resp = abi::DataReadResponse {
            data: &data,
            total_len: total,
        };
        Ok(Some(crate::encode_owned(&resp)))
    }

    fn send(&mut self, id: usize, args: &[u8]) -> Result<Option<Vec<u8>>, Fail> {
        let req: abi::SendRequest<'_> =
            abi::decode(args).map_err(|_| Fail::Abi(HostError::BadRequest))?;
        if !name_ok(req.to) || !name_ok(req.message.message_id) {
            return Err(Fail::Abi(HostError::BadRequest));
        }
        let message = crate::encode_owned(&req.message);
        within(message.len(), abi::MAX_MESSAGE)?;
        let receiver = self.find_live(req.to);
        if let Some(r) = receiver
            && self
                .agents
                .get(r)
                .is_some_and(|a| a.inbox.len() >= abi::MAX_INBOX)
        {
            return Err(Fail::Abi(HostError::WouldBlock));
        }
        let to = String::from(self.policy_name_of(req.to));
        let action = Action::Send { to: &to };
        let Some(decision) = self.decide_as(id, action, args, Some(req.to))? else {
            return Ok(None);
        };
        // Operator confirmation exists for egress only (infer, tool calls); a `confirm`
        // send waits for nobody, so it is refused under its rule's name.
        if decision.effect != Effect::Allow {
            return Err(self.denied(decision.rule));
        }
        let Some(receiver) = receiver else {
            return Err(Fail::Abi(HostError::Unavailable {
                reason: "no such agent is running",
            }));
        };
        // Labels travel with the message: the sender's context minus what the rule declassifies.
        let labels = self.policy.message_labels(&decision, self.labels(id));
        if let Some(r) = self.agents.get_mut(receiver) {
            r.inbox.push_back(Inbound {
                from: id,
                remote: None,
                labels,
                message,
            });
        }
        self.wake_receiver(receiver);
        Ok(Some(Vec::new()))
    }

    fn recv(&mut self, id: usize, call: &HostCall) -> Outcome {
        let req: abi::RecvRequest = match abi::decode(&call.args) {
            Ok(r) => r,
            Err(_) => return self.respond(id, call, Err(HostError::BadRequest)),
        };
        match self.take_message(id) {
            Some(bytes) => self.respond(id, call, Ok(&bytes)),
            None if req.wait => Outcome::Park(Wait::Recv {
                out_ptr: call.out_ptr,
                out_cap: call.out_cap,
            }),
            None => self.respond(id, call, Err(HostError::WouldBlock)),
        }
    }

    /// Pops the agent's next message, gives its labels to the agent's context and encodes
    /// it as the receiver sees it.
    pub(crate) fn take_message(&mut self, id: usize) -> Option<Vec<u8>> {
        let policy = self.policy;
        let inbound = self.agents.get_mut(id)?.inbox.pop_front()?;
        let from = match inbound.remote {
            Some(remote) => remote,
            None => self.agent_name(inbound.from),
        };
        let agent = self.agents.get_mut(id)?;
        agent.session.receive(inbound.labels);
        let message: abi::Message<'_> = abi::decode(&inbound.message).ok()?;
        let mut labels = abi::heapless::Vec::new();
        for (bit, name) in policy.labels.iter().enumerate().take(abi::MAX_LABELS) {
            if inbound.labels & (1u64 << bit) != 0 {
                // Capacity is MAX_LABELS and at most that many bits are visited.
                let _ = labels.push(*name);
            }
        }
        Some(crate::encode_owned(&abi::Delivered {
            from: &from,
            labels,
            message,
        }))
    }

    fn egress(&mut self, id: usize, call: HostCall) -> Outcome {
        let stream = call.kind == CallKind::InferStream;
        // Checked before the decision: a refused stream is not decided or logged.
        if stream && !self.stream_room(id) {
            return self.respond(id, &call, Err(HostError::WouldBlock));
        }
        if stream {
            return match self.egress_inner(id, &call) {
                Ok(Some(reply)) => self.open_stream(id, &call, reply),
                Ok(None) => Outcome::Park(Wait::Record(call)),
                Err(e) => self.respond(id, &call, Err(e.as_host())),
            };
        }
        match self.egress_inner(id, &call) {
            Ok(Some(EgressReply::Answer(answer))) => {
                let v = self.answer(id, call.out_ptr, call.out_cap, &answer);
                Outcome::Return(Val::I32(v))
            }
            Ok(Some(EgressReply::Pending(ticket))) => Outcome::Park(Wait::Egress {
                ticket,
                out_ptr: call.out_ptr,
                out_cap: call.out_cap,
            }),
            Ok(None) => Outcome::Park(Wait::Record(call)),
            Err(e) => self.respond(id, &call, Err(e.as_host())),
        }
    }

    fn egress_inner(&mut self, id: usize, call: &HostCall) -> Result<Option<EgressReply>, Fail> {
        let args = &call.args;
        if matches!(call.kind, CallKind::Infer | CallKind::InferStream) {
            let req: abi::InferRequest<'_> =
                abi::decode(args).map_err(|_| Fail::Abi(HostError::BadRequest))?;
            if !name_ok(req.model) {
                return Err(Fail::Abi(HostError::BadRequest));
            }
            within(req.prompt.len(), abi::MAX_PROMPT)?;
            within(req.max_tokens as usize, abi::MAX_TOKENS as usize)?;
            let proxy = self.monitor.model_identity(req.model);
            let action = Action::Infer {
                model: req.model,
                proxy: proxy.as_ref(),
                max_tokens: Value::Int(i64::from(req.max_tokens)),
                gpu_verified: self.monitor.model_gpu_verified(req.model),
            };
            let egress = Egress::Infer {
                model: req.model,
                prompt: req.prompt,
                max_tokens: req.max_tokens,
                stream: call.kind == CallKind::InferStream,
            };
            self.decide_egress(id, action, egress, args)
        } else {
            let req: abi::ToolCallRequest<'_> =
                abi::decode(args).map_err(|_| Fail::Abi(HostError::BadRequest))?;
            if !name_ok(req.tool) {
                return Err(Fail::Abi(HostError::BadRequest));
            }
            within(req.arguments.len(), abi::MAX_TOOL_ARGS)?;
            // serde_json bounds nesting (128), so hostile JSON cannot exhaust the stack.
            let json: serde_json::Value = serde_json::from_str(req.arguments)
                .map_err(|_| Fail::Abi(HostError::BadRequest))?;
            if !json.is_object() {
                return Err(Fail::Abi(HostError::BadRequest));
            }
            // After a change was announced the catalogue is listed again: the call waits
            // for the new listing (bounded by the monitor) rather than being decided on
            // the old one or denied for a pin that is on its way.
            if self.monitor.tool_catalogue_stale() {
                return Ok(None);
            }
            // SECURITY: arguments of other types than the pinned schema gives them would
            // match no policy condition (a `deny` included) and could be coerced by the
            // server; they are a bad request, nothing is decided or sent, and the refusal
            // is logged (deny, rule `schema`) like a policy denial.
            if self.monitor.check_tool_arguments(req.tool, &json).is_err() {
                return match self.refuse_schema(id, req.tool, args) {
                    Ok(()) => Err(Fail::Abi(HostError::BadRequest)),
                    Err(Backpressure) => Ok(None),
                };
            }
            let mut owned = Vec::new();
            flatten("", &json, &mut owned);
            let flat: Vec<Arg<'_>> = owned
                .iter()
                .map(|(path, v)| Arg {
                    path,
                    value: match v {
                        ArgValue::Int(i) => Value::Int(*i),
                        ArgValue::Str(s) => Value::Str(s),
                        ArgValue::Bool(b) => Value::Bool(*b),
                        ArgValue::Other => Value::Other,
                    },
                })
                .collect();
            let entry = self.monitor.tool_entry(req.tool);
            let action = Action::Call {
                tool: req.tool,
                entry: entry.as_ref(),
                args: &flat,
            };
            let egress = Egress::Tool {
                tool: req.tool,
                arguments: req.arguments,
            };
            self.decide_egress(id, action, egress, args)
        }
    }

    /// Logs a tool call refused because its arguments do not match the pinned schema:
    /// deny, rule `schema` (no policy rule decided it; the name is the monitor's).
    fn refuse_schema(&mut self, id: usize, tool: &str, request: &[u8]) -> Result<(), Backpressure> {
        let labels = self.labels(id);
        let Some(agent) = self.agents.get(id) else {
            return Ok(());
        };
        let record = Record::Decision {
            agent: &agent.checked.name,
            action: prov::Action::Tool,
            target: tool,
            decision: prov::Decision::Deny,
            rule: omega_policy::RuleName::Builtin(SCHEMA_RULE),
            labels,
            content: prov::entry::content_digest(request, &[]),
        };
        self.monitor.append_record(&record)
    }

    /// Decides an egress and, unless denied, hands it to the monitor (`confirm` decisions
    /// to [`Monitor::confirm`], for the operator).
    fn decide_egress(
        &mut self,
        id: usize,
        action: Action<'_>,
        egress: Egress<'_>,
        request: &[u8],
    ) -> Result<Option<EgressReply>, Fail> {
        let Some(decision) = self.decide(id, action, request)? else {
            return Ok(None);
        };
        if decision.effect == Effect::Deny {
            return Err(self.denied(decision.rule));
        }
        let name = self.agent_name(id);
        if decision.effect == Effect::Confirm {
            let call = Confirm {
                agent: &name,
                egress,
                rule: self.policy.rule_name(decision.rule),
                content: prov::entry::content_digest(request, &[]),
            };
            return Ok(Some(self.monitor.confirm(&call)));
        }
        Ok(Some(self.monitor.egress(&name, egress, false)))
    }

    /// Writes an egress answer into the agent's buffer; returns the call's return value.
    pub(crate) fn answer(&mut self, id: usize, out_ptr: u32, out_cap: u32, answer: &Answer) -> i32 {
        let bytes = match answer {
            Answer::Infer { text } | Answer::InferPart { text, .. } => {
                crate::encode_owned(&abi::InferResponse { text })
            }
            Answer::Tool { is_error, content } => crate::encode_owned(&abi::ToolCallResponse {
                is_error: *is_error,
                content,
            }),
            Answer::Unavailable(reason) => {
                let e = HostError::Unavailable { reason };
                return self.write_response(id, out_ptr, out_cap, Err(e));
            }
            Answer::Failed(reason) => {
                let e = HostError::Failed { reason };
                return self.write_response(id, out_ptr, out_cap, Err(e));
            }
            Answer::Refused => {
                let e = HostError::Denied { rule: "operator" };
                return self.write_response(id, out_ptr, out_cap, Err(e));
            }
            Answer::Sent => Vec::new(),
            Answer::Denied(rule) => {
                let e = HostError::Denied { rule };
                return self.write_response(id, out_ptr, out_cap, Err(e));
            }
        };
        self.write_response(id, out_ptr, out_cap, Ok(&bytes))
    }

    /// The agent's context labels.
    pub(crate) fn labels(&self, id: usize) -> LabelSet {
        self.agents.get(id).map_or(0, |a| a.session.labels())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_normalised_paths_pass() {
        for ok in ["a", "/a", "a/b", "/patients/42", "x.json"] {
            assert!(path_ok(ok), "{ok}");
        }
        for bad in [
            "", "/", "//a", "a//b", "a/", "../a", "/a/../b", "./a", "a/.", "a\0b",
        ] {
            assert!(!path_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn json_arguments_flatten_as_the_policy_reads_them() {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"limit": 10, "f": 5.0, "big": 9007199254740993, "q": {"family_name": "Doe", "x.y": 1}, "b": true, "n": null, "a": [1]}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        flatten("", &json, &mut out);
        let find = |p: &str| out.iter().find(|(k, _)| k == p).map(|(_, v)| v);
        assert!(matches!(find("limit"), Some(ArgValue::Int(10))));
        assert!(matches!(find("f"), Some(ArgValue::Int(5))));
        assert!(matches!(find("big"), Some(ArgValue::Other)));
        assert!(matches!(find("q.family_name"), Some(ArgValue::Str(s)) if s == "Doe"));
        assert!(find("q.x.y").is_none());
        assert!(matches!(find("b"), Some(ArgValue::Bool(true))));
        assert!(matches!(find("n"), Some(ArgValue::Other)));
        assert!(matches!(find("a"), Some(ArgValue::Other)));
    }
}
