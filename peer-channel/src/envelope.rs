//! What agents' messages look like inside a channel's records: the addressing of agents
//! across images (`node/agent`) and the two frames the monitors exchange, one per record.
//!
//! The node is never in a frame: the sender's node is the channel's authenticated peer and
//! the receiver's is the channel's own end, so a frame cannot claim to come from a node
//! other than the one that signed the handshake. Each side's message gate decides: the
//! sender's on `send` to `node/agent`, the receiver's on the [`Frame::Deliver`] it takes in;
//! the receiver answers every delivery with a [`Frame::Outcome`] so the refusal is logged
//! at both ends.
//!
//! ```text
//! Deliver  0x01 ‖ id u32 ‖ from (u8 len, name) ‖ from_module [32] ‖ to (u8 len, name) ‖ message (u16 len, bytes)
//!          ‖ labels (u8 count, each u8 len ‖ name)
//! Outcome  0x02 ‖ id u32 ‖ delivered u8 (0|1) ‖ reason (u8 len, text)
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::{MAX_PLAINTEXT, PeerError, PeerName};

/// Longest agent name (the agent ABI's).
pub const MAX_AGENT: usize = 64;
/// Longest refusal reason in an [`Frame::Outcome`].
pub const MAX_REASON: usize = 128;
/// Most labels a delivery carries (a policy's label limit).
pub const MAX_FRAME_LABELS: usize = 64;
/// Most bytes the labels of one delivery take, count and lengths included.
pub const MAX_LABEL_BYTES: usize = 1024;
/// Largest agent message that crosses in one record (the rest of a record is the frame).
pub const MAX_CROSSING: usize =
    MAX_PLAINTEXT - 1 - 4 - (1 + MAX_AGENT) * 2 - 32 - 2 - MAX_LABEL_BYTES;

const DELIVER: u8 = 1;
const OUTCOME: u8 = 2;

fn agent_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_AGENT
        && !name.contains('/')
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Labels fit a delivery: at most [`MAX_FRAME_LABELS`], names valid, [`MAX_LABEL_BYTES`]
/// in all.
fn labels_ok<'a>(labels: impl ExactSizeIterator<Item = &'a str>) -> bool {
    let n = labels.len();
    let mut bytes = 1usize;
    for l in labels {
        if !agent_ok(l) {
            return false;
        }
        bytes = bytes.saturating_add(1 + l.len());
    }
    n <= MAX_FRAME_LABELS && bytes <= MAX_LABEL_BYTES
}

/// An agent in another image: `node/agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAddr {
    pub node: PeerName,
    pub agent: String,
}

impl AgentAddr {
    /// `None` unless `addr` is `node/agent` with a valid node name and agent name.
    pub fn parse(addr: &str) -> Option<Self> {
        let (node, agent) = addr.split_once('/')?;
        let node = PeerName::new(node)?;
        agent_ok(agent).then(|| AgentAddr {
            node,
            agent: agent.into(),
        })
    }
}

impl fmt::Display for AgentAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.agent)
    }
}

/// One frame in one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An agent's message for an agent of the receiving image. `from_module`: the sender's
    /// module hash, as the sending monitor's evidence claims it (`agent:<from>`).
    Deliver {
        id: u32,
        from: String,
        from_module: [u8; 32],
        to: String,
        message: Vec<u8>,
        /// The labels the message carries, by name (the sending policy's): the sender's
        /// context minus what its deciding rule declassified. The receiving gate decides
        /// with them as a local message's labels, and refuses names it does not know.
        labels: Vec<String>,
    },
    /// The receiving monitor's answer to delivery `id`: handed to the agent, or refused
    /// (the policy's rule, no such agent, a full inbox) with the reason both logs record.
    Outcome {
        id: u32,
        delivered: bool,
        reason: String,
    },
}

impl Frame {
    /// The frame as a record payload; refuses names and sizes the decoder would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, PeerError> {
        let mut out = Vec::new();
        match self {
            Frame::Deliver {
                id,
                from,
                from_module,
                to,
                message,
                labels,
            } => {
                if !agent_ok(from) || !agent_ok(to) {
                    return Err(PeerError::Malformed("agent name"));
                }
                if message.len() > MAX_CROSSING {
                    return Err(PeerError::TooLarge("agent message"));
                }
                if !labels_ok(labels.iter().map(String::as_str)) {
                    return Err(PeerError::TooLarge("labels"));
                }
                out.push(DELIVER);
                out.extend_from_slice(&id.to_be_bytes());
                short(&mut out, from);
                out.extend_from_slice(from_module);
                short(&mut out, to);
                // Bounded by MAX_CROSSING < 64 KiB.
                out.extend_from_slice(&(message.len() as u16).to_be_bytes());
                out.extend_from_slice(message);
                // Bounded by MAX_FRAME_LABELS.
                out.push(labels.len() as u8);
                for l in labels {
                    short(&mut out, l);
                }
            }
            Frame::Outcome {
                id,
                delivered,
                reason,
            } => {
                if reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
                    return Err(PeerError::Malformed("outcome reason"));
                }
                out.push(OUTCOME);
                out.extend_from_slice(&id.to_be_bytes());
                out.push(u8::from(*delivered));
                short(&mut out, reason);
            }
        }
        Ok(out)
    }

    /// Strict: known tag, every length within its bound, names valid, nothing trailing.
    pub fn decode(bytes: &[u8]) -> Result<Frame, PeerError> {
        let mut r = Reader(bytes);
        let frame = match r.u8()? {
            DELIVER => {
                let id = r.u32()?;
                let from = r.name(MAX_AGENT)?;
                let from_module: [u8; 32] = r
                    .take(32)?
                    .try_into()
                    .map_err(|_| PeerError::Malformed("frame"))?;
                let to = r.name(MAX_AGENT)?;
                if !agent_ok(&from) || !agent_ok(&to) {
                    return Err(PeerError::Malformed("agent name"));
                }
                let len = usize::from(r.u16()?);
                if len > MAX_CROSSING {
                    return Err(PeerError::TooLarge("agent message"));
                }
                let message = r.take(len)?.to_vec();
                let count = usize::from(r.u8()?);
                if count > MAX_FRAME_LABELS {
                    return Err(PeerError::TooLarge("labels"));
                }
                let mut labels = Vec::with_capacity(count);
                for _ in 0..count {
                    labels.push(r.name(MAX_AGENT)?);
                }
                if !labels_ok(labels.iter().map(String::as_str)) {
                    return Err(PeerError::TooLarge("labels"));
                }
                Frame::Deliver {
                    id,
                    from,
                    from_module,
                    to,
                    message,
                    labels,
                }
            }
            OUTCOME => {
                let id = r.u32()?;
                let delivered = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(PeerError::Malformed("outcome flag")),
                };
                let reason = r.name(MAX_REASON)?;
                if reason.chars().any(char::is_control) {
                    return Err(PeerError::Malformed("outcome reason"));
                }
                Frame::Outcome {
                    id,
                    delivered,
                    reason,
                }
            }
            _ => return Err(PeerError::Malformed("frame tag")),
        };
        if !r.0.is_empty() {
            return Err(PeerError::Malformed("bytes after the frame"));
        }
        Ok(frame)
    }
}

fn short(out: &mut Vec<u8>, s: &str) {
    // Callers bound every such string below 256 bytes.
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PeerError> {
        let (head, rest) = self
            .0
            .split_at_checked(n)
            .ok_or(PeerError::Malformed("truncated frame"))?;
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, PeerError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PeerError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, PeerError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&mut self, max: usize) -> Result<String, PeerError> {
        let len = usize::from(self.u8()?);
        if len > max {
            return Err(PeerError::TooLarge("name"));
        }
        let s = core::str::from_utf8(self.take(len)?).map_err(|_| PeerError::Malformed("utf-8"))?;
        Ok(s.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn deliver(message: Vec<u8>) -> Frame {
        Frame::Deliver {
            id: 7,
            from: "triage".into(),
            from_module: [3; 32],
            to: "summariser".into(),
            message,
            labels: vec!["phi".into(), "pii".into()],
        }
    }

    #[test]
    fn addresses_are_node_slash_agent() {
        let a = AgentAddr::parse("beta/summariser").unwrap();
        assert_eq!((a.node.as_str(), a.agent.as_str()), ("beta", "summariser"));
        assert_eq!(a.to_string(), "beta/summariser");
        for bad in [
            "summariser",
            "/x",
            "beta/",
            "Beta/x",
            "beta/a/b",
            "beta/a b",
            "b\0/x",
        ] {
            assert!(AgentAddr::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn frames_round_trip_at_their_bounds() {
        for f in [
            deliver(vec![]),
            deliver(vec![0xAB; MAX_CROSSING]),
            Frame::Outcome {
                id: u32::MAX,
                delivered: false,
                reason: "rule 3 (deny send)".into(),
            },
        ] {
            let b = f.encode().unwrap();
            assert!(b.len() <= MAX_PLAINTEXT);
            assert_eq!(Frame::decode(&b).unwrap(), f);
        }
        assert!(deliver(vec![0; MAX_CROSSING + 1]).encode().is_err());
        let long = "x".repeat(MAX_AGENT + 1);
        let f = Frame::Deliver {
            id: 1,
            from: long,
            from_module: [0; 32],
            to: "a".into(),
            message: vec![],
            labels: vec![],
        };
        assert!(f.encode().is_err());
        // Labels: too many, a bad name.
        let mut many = deliver(vec![]);
        if let Frame::Deliver { labels, .. } = &mut many {
            *labels = (0..=MAX_FRAME_LABELS)
                .map(|i| alloc::format!("l{i}"))
                .collect();
        }
        assert!(many.encode().is_err());
        let mut bad = deliver(vec![]);
        if let Frame::Deliver { labels, .. } = &mut bad {
            labels.push("a b".into());
        }
        assert!(bad.encode().is_err());
    }

    #[test]
    fn strict_decoding() {
        let good = deliver(b"hello".to_vec()).encode().unwrap();
        // Every truncation and one trailing byte are refused.
        for n in 0..good.len() {
            assert!(Frame::decode(&good[..n]).is_err(), "cut at {n}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(Frame::decode(&long).is_err());
        // A name with a slash (a node smuggled into the agent name), a bad flag, a bad tag.
        let mut slash = good.clone();
        slash[6] = b'/';
        assert_eq!(
            Frame::decode(&slash),
            Err(PeerError::Malformed("agent name"))
        );
        let mut o = Frame::Outcome {
            id: 1,
            delivered: true,
            reason: String::new(),
        }
        .encode()
        .unwrap();
        o[5] = 2;
        assert!(Frame::decode(&o).is_err());
        assert!(Frame::decode(&[9]).is_err());
    }
}
