//! The operator's side of confirmation: the monitor sends a `ControlMsg::ConfirmRequest`
//! when a policy rule decided `confirm` for an agent's tool call; the operator answers
//! (prompted on the terminal, or from an answers file in CI, or denied by default) and the
//! answer goes back as one `ControlMsg::ConfirmAnswer` with the request's id. Requests are
//! answered on their own thread, one at a time, so a prompt never blocks the reader.
//!
//! SECURITY: an approval here is the operator's decision as this (untrusted) host states
//! it; the monitor logs it before acting, so a verifier sees what the host approved. The
//! request's text comes from an agent: it is escaped before it reaches the terminal.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread;

use omega_wire::Stream;
use omega_wire::msg::{self, ControlMsg, confirm as contract};
use tracing::{info, warn};

use super::SessionEvent;
use super::send::Shared;

/// Requests waiting for the operator; the monitor bounds its own side
/// (`omega_tool_protocol::confirm::MAX_WAITING`), so a full queue means a misbehaving guest:
/// the extra request is denied at once.
const QUEUE: usize = 64;

/// Who answers the monitor's confirmation requests.
#[derive(Debug, Clone, Default)]
pub enum Operator {
    /// Every request is denied (no terminal and no answers file).
    #[default]
    DenyAll,
    /// Answers from a file ([`Answers`]).
    Answers(Answers),
    /// A prompt on the controlling terminal (`/dev/tty`) per request.
    Terminal,
}

/// Pre-written answers (`--confirm-answers FILE`): one per line, `approve|deny [TARGET]`
/// (`#` starts a comment). Each request takes the first unused line whose target is its
/// tool (or that names none, or `*`); a request no line matches is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    lines: Vec<(bool, Option<String>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnswersError {
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
    #[error("line {line}: expected `approve [TARGET]` or `deny [TARGET]`, found {text:?}")]
    Syntax { line: usize, text: String },
}

impl Answers {
    /// Parses an answers file's text.
    pub fn parse(text: &str) -> Result<Answers, AnswersError> {
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let l = raw.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            let mut words = l.split_whitespace();
            let approve = match words.next() {
                Some("approve") => true,
                Some("deny") => false,
                _ => {
                    return Err(AnswersError::Syntax {
                        line: i + 1,
                        text: l.to_string(),
                    });
                }
            };
            let target = words.next().filter(|t| *t != "*").map(str::to_string);
            if words.next().is_some() {
                return Err(AnswersError::Syntax {
                    line: i + 1,
                    text: l.to_string(),
                });
            }
            lines.push((approve, target));
        }
        Ok(Answers { lines })
    }

    /// Reads and parses an answers file.
    pub fn read(path: &Path) -> Result<Answers, AnswersError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AnswersError::Read(path.display().to_string(), e))?;
        Answers::parse(&text)
    }

    /// The answer for a request on `target`: the first unused matching line (used up), or
    /// deny when none matches.
    pub fn take(&mut self, target: &str) -> bool {
        let found = self
            .lines
            .iter()
            .position(|(_, t)| t.as_deref().is_none_or(|t| t == target));
        found.is_some_and(|i| self.lines.remove(i).0)
    }
}

/// One request, owned, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub agent: String,
    pub action: String,
    pub target: String,
    pub rule: String,
    pub summary: String,
}

/// The confirmation thread's queue. The thread is not joined at the end of the session
/// (it may be waiting on the terminal); it ends when the queue is dropped and it is idle.
pub(crate) struct ConfirmHandle {
    tx: SyncSender<Request>,
}

impl ConfirmHandle {
    pub(crate) fn spawn(sh: &Arc<Shared>, operator: Operator) -> ConfirmHandle {
        let (tx, rx) = mpsc::sync_channel::<Request>(QUEUE);
        let sh = Arc::clone(sh);
        thread::Builder::new()
            .name("omega-confirm".into())
            .spawn(move || {
                let mut operator = operator;
                for request in rx {
                    let (approve, by) = decide(&mut operator, &request);
                    answer(&sh, request.id, approve, by);
                }
            })
            .expect("spawn the confirmation thread");
        ConfirmHandle { tx }
    }

    /// A request from the guest (checked against the contract's bounds first). A request
    /// out of bounds, or one more than the queue holds, is denied at once.
    pub(crate) fn request(&self, sh: &Shared, m: &ControlMsg<'_>) {
        let ControlMsg::ConfirmRequest {
            version,
            id,
            agent,
            action,
            target,
            rule,
            summary,
            ..
        } = *m
        else {
            return;
        };
        let r = Request {
            id,
            agent: agent.into(),
            action: action.into(),
            target: target.into(),
            rule: rule.into(),
            summary: summary.into(),
        };
        sh.event(SessionEvent::ConfirmRequest(r.clone()));
        if !contract::request_ok(version, [agent, action, target, rule], summary) {
            warn!("confirmation request {id} out of the contract's bounds: denied");
            return answer(sh, id, false, "refused (out of bounds)");
        }
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                answer(sh, id, false, "refused (too many waiting)")
            }
        }
    }
}

/// The operator's answer and who gave it.
fn decide(operator: &mut Operator, r: &Request) -> (bool, &'static str) {
    match operator {
        Operator::DenyAll => (false, "denied (no terminal, no answers file)"),
        Operator::Answers(a) => {
            if a.take(&r.target) {
                (true, "approved (answers file)")
            } else {
                (false, "denied (answers file)")
            }
        }
        Operator::Terminal => match prompt(r) {
            Ok(true) => (true, "approved (terminal)"),
            Ok(false) => (false, "denied (terminal)"),
            Err(e) => {
                warn!("confirmation prompt failed: {e}");
                (false, "denied (terminal unusable)")
            }
        },
    }
}

/// Text from the guest as the terminal may show it: printable characters only, the rest
/// escaped, so an agent cannot drive the operator's terminal.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() || c == '\u{7f}' {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// The prompt on the controlling terminal; `y` or `yes` approves, anything else denies.
fn prompt(r: &Request) -> std::io::Result<bool> {
    let tty = File::options().read(true).write(true).open("/dev/tty")?;
    let mut out = &tty;
    write!(
        out,
        "\nomega: CONFIRM request {}: agent {} wants to {} {}\n  rule:      {}\n  arguments: {}\napprove? [y/N] ",
        r.id,
        printable(&r.agent),
        printable(&r.action),
        printable(&r.target),
        printable(&r.rule),
        printable(&r.summary),
    )?;
    out.flush()?;
    let mut line = String::new();
    BufReader::new(&tty).read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn answer(sh: &Shared, id: u64, approve: bool, by: &'static str) {
    let m = ControlMsg::ConfirmAnswer {
        version: contract::VERSION,
        id,
        approve,
    };
    let mut buf = [0u8; 64];
    let sent = msg::encode(&m, &mut buf)
        .map_err(super::SessionError::from)
        .and_then(|body| sh.send_message(Stream::Control, body));
    match sent {
        Ok(()) => {
            info!("confirmation request {id}: {by}");
            sh.event(SessionEvent::ConfirmAnswered {
                id,
                approve,
                by: by.to_string(),
            });
        }
        Err(e) => warn!("sending the answer to confirmation request {id} failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_taken_in_order_by_target_and_default_to_deny() {
        let mut a = Answers::parse(
            "# CI answers\napprove benign.add\ndeny benign.add  # the second one\n\ndeny *\napprove\n",
        )
        .unwrap();
        assert!(a.take("benign.add"));
        // `deny *` comes before the catch-all approve.
        assert!(!a.take("mail.send"));
        assert!(!a.take("benign.add"));
        assert!(a.take("anything"));
        // Used up: deny.
        assert!(!a.take("benign.add"));
        assert!(!Answers::default().take("x"));
    }

    #[test]
    fn answers_files_with_anything_else_are_refused() {
        for bad in ["yes", "approve a b", "Approve x", "deny\tx y"] {
            assert!(Answers::parse(bad).is_err(), "{bad}");
        }
        let e = Answers::parse("approve\nmaybe x").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn guest_text_is_escaped_for_the_terminal() {
        assert_eq!(printable("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(printable("é ok"), "é ok");
    }
}
