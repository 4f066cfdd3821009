//! Streamed inference (`infer_stream`, `infer_next`): the agent gets the proxy's text while it
//! is generated, in batches.
//!
//! `infer_stream` is decided and logged exactly as `infer` (the gate's egress path); once the
//! monitor has sent it ([`EgressReply::Pending`]), the agent gets a handle at once and keeps
//! running. The monitor delivers the text by ticket as it arrives ([`Answer::InferPart`],
//! any number of times, then one with `end`); it is buffered per stream (bounded by
//! [`abi::MAX_STREAM_BUFFER`]). `infer_next` hands the agent everything buffered (at most
//! [`abi::MAX_CHUNK`]) or parks it until there is something: however many tokens arrived in
//! between, the agent crosses the boundary once for them.

use alloc::string::String;
use alloc::vec::Vec;

use omega_agent_abi::{self as abi, HostError};
use wasmi::Val;

use crate::gate::Outcome;
use crate::host::HostCall;
use crate::monitor::{Answer, EgressReply, Monitor, Ticket};
use crate::{Runtime, Wait};

/// How a stream ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Complete; the proxy's completion-token count if it gave one.
    Done(Option<u32>),
    Failed(String),
    Unavailable(String),
    Refused,
}

/// One open stream of an agent.
#[derive(Debug)]
pub(crate) struct Open {
    pub handle: u64,
    /// Text received and not yet taken by the agent.
    pub text: String,
    pub end: Option<End>,
}

/// What `infer_next` answers for a stream with something to hand over.
enum Take {
    Chunk(Vec<u8>),
    Error(End),
}

impl Open {
    fn ready(&self) -> bool {
        !self.text.is_empty() || self.end.is_some()
    }

    /// Appends delivered text; over the buffer bound the stream fails (the agent is not
    /// reading, and the monitor does not grow without bound for it).
    fn push(&mut self, text: &str) {
        if self.end.is_some() {
            return;
        }
        if self.text.len().saturating_add(text.len()) > abi::MAX_STREAM_BUFFER {
            self.end = Some(End::Failed(
                "the agent did not read the stream: buffer full".into(),
            ));
            return;
        }
        self.text.push_str(text);
    }

    /// The next piece for the agent: buffered text (at most `MAX_CHUNK`, cut at a character
    /// boundary), with `done` once the end is reached; an error once all text is out.
    fn take(&mut self) -> Take {
        let mut cut = self.text.len().min(abi::MAX_CHUNK);
        while !self.text.is_char_boundary(cut) {
            cut -= 1;
        }
        let rest = self.text.split_off(cut);
        let text = core::mem::replace(&mut self.text, rest);
        let (done, completion_tokens) = match (&self.end, self.text.is_empty()) {
            (Some(End::Done(tokens)), true) => (true, *tokens),
            (Some(_), true) if text.is_empty() => {
                let end = self.end.take().unwrap_or(End::Refused);
                return Take::Error(end);
            }
            _ => (false, None),
        };
        Take::Chunk(crate::encode_owned(&abi::InferChunk {
            text: &text,
            done,
            completion_tokens,
        }))
    }
}

fn end_of(answer: &Answer) -> (Option<&str>, Option<End>) {
    match answer {
        Answer::InferPart { text, end } => (Some(text), end.map(End::Done)),
        Answer::Infer { text } => (Some(text), Some(End::Done(None))),
        Answer::Failed(r) => (None, Some(End::Failed(r.clone()))),
        Answer::Unavailable(r) => (None, Some(End::Unavailable(r.clone()))),
        Answer::Refused => (None, Some(End::Refused)),
        Answer::Tool { .. } | Answer::Sent | Answer::Denied(_) => {
            (None, Some(End::Failed("not an inference answer".into())))
        }
    }
}

impl<M: Monitor> Runtime<'_, M> {
    /// Whether agent `id` may open one more stream.
    pub(crate) fn stream_room(&self, id: usize) -> bool {
        self.agents
            .get(id)
            .is_some_and(|a| a.streams.len() < abi::MAX_STREAMS)
    }

    /// `infer_stream` was allowed and handed to the monitor: open the stream and answer its
    /// handle (or the monitor's immediate error).
    pub(crate) fn open_stream(
        &mut self,
        id: usize,
        call: &HostCall,
        reply: EgressReply,
    ) -> Outcome {
        let handle = self.next_stream;
        self.next_stream = self.next_stream.wrapping_add(1);
        let mut open = Open {
            handle,
            text: String::new(),
            end: None,
        };
        match reply {
            EgressReply::Pending(ticket) => {
                self.stream_tickets.insert(ticket, (id, handle));
            }
            EgressReply::Answer(answer @ (Answer::Infer { .. } | Answer::InferPart { .. })) => {
                // Answered whole at once (a monitor without streaming): one piece.
                let (text, end) = end_of(&answer);
                open.push(text.unwrap_or_default());
                open.end = end.or(Some(End::Done(None)));
            }
            EgressReply::Answer(answer) => {
                let v = self.answer(id, call.out_ptr, call.out_cap, &answer);
                return Outcome::Return(Val::I32(v));
            }
        }
        let Some(agent) = self.agents.get_mut(id) else {
            return self.respond(id, call, Err(HostError::BadRequest));
        };
        agent.streams.push(open);
        let bytes = crate::encode_owned(&abi::InferStream { stream: handle });
        self.respond(id, call, Ok(&bytes))
    }

    /// `infer_next`: the buffered text at once, or park until some arrives.
    pub(crate) fn infer_next(&mut self, id: usize, call: &HostCall) -> Outcome {
        let Ok(req) = abi::decode::<abi::InferNextRequest>(&call.args) else {
            return self.respond(id, call, Err(HostError::BadRequest));
        };
        let ready = self
            .agents
            .get(id)
            .and_then(|a| a.streams.iter().find(|s| s.handle == req.stream))
            .map(Open::ready);
        match ready {
            None => self.respond(id, call, Err(HostError::BadRequest)),
            Some(true) => Outcome::Return(Val::I32(self.take_stream(
                id,
                req.stream,
                call.out_ptr,
                call.out_cap,
            ))),
            Some(false) => Outcome::Park(Wait::Stream {
                handle: req.stream,
                out_ptr: call.out_ptr,
                out_cap: call.out_cap,
            }),
        }
    }

    /// Writes the stream's next piece into the agent; closes the stream after its last.
    fn take_stream(&mut self, id: usize, handle: u64, out_ptr: u32, out_cap: u32) -> i32 {
        let Some(agent) = self.agents.get_mut(id) else {
            return abi::encode_return(Err(abi::ErrorCode::Unavailable));
        };
        let Some(at) = agent.streams.iter().position(|s| s.handle == handle) else {
            return self.write_response(id, out_ptr, out_cap, Err(HostError::BadRequest));
        };
        let taken = agent.streams[at].take();
        let closed = match &taken {
            Take::Error(_) => true,
            Take::Chunk(_) => {
                agent.streams[at].text.is_empty()
                    && matches!(agent.streams[at].end, Some(End::Done(_)))
            }
        };
        if closed {
            agent.streams.remove(at);
        }
        match taken {
            Take::Chunk(bytes) => self.write_response(id, out_ptr, out_cap, Ok(&bytes)),
            Take::Error(End::Failed(reason)) => self.write_response(
                id,
                out_ptr,
                out_cap,
                Err(HostError::Failed { reason: &reason }),
            ),
            Take::Error(End::Unavailable(reason)) => self.write_response(
                id,
                out_ptr,
                out_cap,
                Err(HostError::Unavailable { reason: &reason }),
            ),
            Take::Error(End::Refused) => self.write_response(
                id,
                out_ptr,
                out_cap,
                Err(HostError::Denied { rule: "operator" }),
            ),
            Take::Error(End::Done(_)) => {
                self.write_response(id, out_ptr, out_cap, Err(HostError::BadRequest))
            }
        }
    }

    /// The monitor delivered (part of) a streamed answer. `false` when `ticket` is no open
    /// stream's.
    pub(crate) fn deliver_stream(&mut self, ticket: Ticket, answer: &Answer) -> bool {
        let Some(&(id, handle)) = self.stream_tickets.get(&ticket) else {
            return false;
        };
        let (text, end) = end_of(answer);
        let Some(open) = self
            .agents
            .get_mut(id)
            .and_then(|a| a.streams.iter_mut().find(|s| s.handle == handle))
        else {
            self.stream_tickets.remove(&ticket);
            return false;
        };
        if let Some(text) = text {
            open.push(text);
        }
        if open.end.is_none() {
            open.end = end;
        }
        if open.end.is_some() {
            // Nothing more comes for this ticket.
            self.stream_tickets.remove(&ticket);
        }
        let Some(agent) = self.agents.get_mut(id) else {
            return true;
        };
        let waiting = matches!(
            agent.run,
            crate::Run::Parked(_, Wait::Stream { handle: h, .. }) if h == handle
        );
        if waiting {
            let crate::Run::Parked(
                call,
                Wait::Stream {
                    out_ptr, out_cap, ..
                },
            ) = core::mem::take(&mut agent.run)
            else {
                return true;
            };
            let ret = self.take_stream(id, handle, out_ptr, out_cap);
            self.resume_later(id, call, Val::I32(ret));
        }
        true
    }
}
