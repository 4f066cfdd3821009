//! Agent-to-agent messages, shaped like A2A v1.0 `Message`s; the monitor copies them between
//! agents after the policy's `send` check and stamps sender and labels on delivery.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use omega_agent_abi::{Delivered, ErrorCode, Message, Part, RecvRequest, Role, SendRequest};

use crate::Error;
use crate::calls::{decode, request};
use crate::sys::Func;

/// Sends `message` to the agent named `to`; policy action `send` (the message carries this
/// agent's labels, less what the deciding rule declassifies).
pub fn send(to: &str, message: Message<'_>) -> Result<(), Error> {
    let bytes = request(Func::Send, &SendRequest { to, message })?;
    if bytes.is_empty() {
        Ok(())
    } else {
        Err(Error::Protocol)
    }
}

/// A fresh message id for this agent (`m1`, `m2`, …): unique per sender, which is all A2A
/// asks of `messageId` here (the monitor stamps the sender).
pub fn next_message_id() -> String {
    // Agents are single-threaded; the atomic only makes the static safe to share.
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("m{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A one-part text message. A2A's roles: `User` for a request this agent makes of another
/// (it is the client), `Agent` for its answer to one.
pub fn text_message<'a>(
    message_id: &'a str,
    context_id: Option<&'a str>,
    role: Role,
    text: &'a str,
) -> Message<'a> {
    let mut parts = omega_agent_abi::heapless::Vec::new();
    // A fresh Vec has room for MAX_PARTS ≥ 1 parts.
    let _ = parts.push(Part::Text { text });
    Message {
        message_id,
        context_id,
        role,
        parts,
    }
}

/// Sends `text` as a one-part request (role `User`) to `to` in conversation `context_id`.
pub fn send_text(to: &str, context_id: Option<&str>, text: &str) -> Result<(), Error> {
    let id = next_message_id();
    send(to, text_message(&id, context_id, Role::User, text))
}

/// Waits for the next message to this agent (the monitor parks the agent meanwhile).
pub fn recv() -> Result<Received, Error> {
    let bytes = request(Func::Recv, &RecvRequest { wait: true })?;
    Received::new(bytes)
}

/// The next message to this agent, if one is queued.
pub fn try_recv() -> Result<Option<Received>, Error> {
    match request(Func::Recv, &RecvRequest { wait: false }) {
        Ok(bytes) => Received::new(bytes).map(Some),
        Err(e) if e.code() == Some(ErrorCode::WouldBlock) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A delivered message: owns the monitor's bytes and lends out the decoded view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    bytes: Vec<u8>,
}

impl Received {
    fn new(bytes: Vec<u8>) -> Result<Received, Error> {
        decode::<Delivered<'_>>(&bytes)?;
        Ok(Received { bytes })
    }

    /// The message with the sender and labels the monitor stamped on it.
    pub fn delivered(&self) -> Delivered<'_> {
        decode(&self.bytes).expect("checked when received")
    }

    /// The sending agent (as the monitor names it, never the sender's claim).
    pub fn from(&self) -> &str {
        self.delivered().from
    }

    /// The text parts, joined by newlines.
    pub fn text(&self) -> String {
        let d = self.delivered();
        let texts: Vec<&str> = d
            .message
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text } => Some(*text),
                Part::Data { .. } => None,
            })
            .collect();
        texts.join("\n")
    }

    /// Answers the sender with `text` (role `Agent`) in the same conversation (context id).
    pub fn reply_text(&self, text: &str) -> Result<(), Error> {
        let d = self.delivered();
        let id = next_message_id();
        send(
            d.from,
            text_message(&id, d.message.context_id, Role::Agent, text),
        )
    }
}
