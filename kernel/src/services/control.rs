//! The Control stream: the host's shutdown request, notices and challenge; the monitor's
//! log key, checkpoints, evidence, agent cards and final shutdown (and, in test images, guest requests
//! to the simulated PSP: `services/evidence.rs`).

use alloc::vec;

use omega_arch::serial_println;
use omega_kernel::attest::{Challenge, ChallengeRefused, Challenges};
use omega_kernel::channel::HostText;
use omega_provenance::Decision;
use omega_provenance::entry::lifecycle;
use omega_wire::Stream;
use omega_wire::msg::{self, ControlMsg};

use super::log::LogService;
use super::{HostChannel, SendError, report_send_failure};
use crate::monitor::{DigestPrefix, fatal};

/// Room for one encoded control message without a byte payload (a checkpoint note is the
/// largest); messages carrying bytes (evidence, guest requests) get room for them on top.
const MAX_CONTROL: usize = 4096;

/// What the loop does after a control message.
pub enum Outcome {
    Continue,
    /// The host asked to stop, and was answered: the monitor exits cleanly.
    Shutdown,
    /// The operator's answer to a confirmation request: the agents' service takes it.
    ConfirmAnswer,
    /// `PeerConfig` or `PeerCredential`: the peer service takes it ([`super::peer`]).
    Peer,
}

/// Sends one control message to the host; a failed send is reported on the console.
pub fn send(ch: &mut HostChannel, m: &ControlMsg<'_>) {
    if let Err(e) = try_send(ch, m) {
        report_send_failure("a control message", &e);
    }
}

/// Sends one control message to the host.
pub fn try_send(ch: &mut HostChannel, m: &ControlMsg<'_>) -> Result<(), SendError> {
    let payload = match m {
        ControlMsg::Evidence { principal, bundle } => principal.len() + bundle.len(),
        ControlMsg::GuestRequest { message } | ControlMsg::GuestResponse { message } => {
            message.len()
        }
        ControlMsg::AgentCard { agent, card } => agent.len() + card.len(),
        ControlMsg::ConfirmRequest {
            agent,
            target,
            rule,
            summary,
            ..
        } => agent.len() + target.len() + rule.len() + summary.len(),
        _ => 0,
    };
    let mut buf = vec![0u8; MAX_CONTROL + payload];
    // Every control message the monitor sends fits: failing here is a monitor bug.
    let bytes = msg::encode(m, &mut buf).unwrap_or_else(|e| fatal("encoding a control message", e));
    ch.send(Stream::Control, bytes)
}

/// Tells the host the monitor is stopping cleanly.
pub fn send_shutdown(ch: &mut HostChannel) {
    send(ch, &ControlMsg::Shutdown { status: 0 });
}

/// Handles one message from the host on the Control stream.
pub fn on_message(
    ch: &mut HostChannel,
    log: &mut LogService<'_>,
    challenges: &mut Challenges,
    body: &[u8],
) -> Outcome {
    match msg::decode_exact::<ControlMsg<'_>>(body) {
        Ok(ControlMsg::Shutdown { status }) => {
            log.checkpoint(ch);
            serial_println!(
                "omega: host asked to shut down (status {status}); log has {} entries, {} bytes acknowledged as stored",
                log.entries(),
                log.acked()
            );
            send_shutdown(ch);
            return Outcome::Shutdown;
        }
        // SECURITY: the host's words, escaped and marked as the host's, never raw bytes on
        // the operator's terminal.
        Ok(ControlMsg::Notice { text }) => {
            serial_println!(
                "omega: notice from the host (escaped): \"{}\"",
                HostText(text)
            )
        }
        Ok(ControlMsg::ConfirmAnswer { .. }) => return Outcome::ConfirmAnswer,
        Ok(ControlMsg::PeerConfig { .. } | ControlMsg::PeerCredential { .. }) => {
            return Outcome::Peer;
        }
        Ok(ControlMsg::Challenge {
            nonce,
            simulated_psp,
        }) => on_challenge(
            ch,
            log,
            challenges,
            Challenge {
                nonce,
                simulated_psp,
            },
        ),
        // Messages only the monitor sends, and a simulated-PSP response nobody waits for
        // (the evidence service takes the one it waits for out of the queue itself); their
        // contents are not shown.
        Ok(other) => {
            let what = match other {
                ControlMsg::LogKey { .. } => "LogKey",
                ControlMsg::Checkpoint { .. } => "Checkpoint",
                ControlMsg::Evidence { .. } => "Evidence",
                ControlMsg::GuestRequest { .. } => "GuestRequest",
                ControlMsg::AgentCard { .. } => "AgentCard",
                ControlMsg::ConfirmRequest { .. } => "ConfirmRequest",
                ControlMsg::GuestResponse { .. } => "GuestResponse (no request waiting)",
                _ => "?",
            };
            serial_println!("omega: channel: unexpected control message from the host: {what}")
        }
        Err(e) => serial_println!("omega: channel: bad control message: {e}"),
    }
    Outcome::Continue
}

/// The host's challenge: the first one counts (until the evidence is issued); a later one
/// is refused, printed and logged, and changes nothing.
fn on_challenge(
    ch: &mut HostChannel,
    log: &mut LogService<'_>,
    challenges: &mut Challenges,
    c: Challenge,
) {
    match challenges.offer(c) {
        Ok(()) => serial_println!(
            "omega: challenge accepted: the evidence will be bound to nonce {}{}",
            DigestPrefix(&c.nonce),
            if c.simulated_psp {
                " (the host offers a simulated PSP)"
            } else {
                ""
            }
        ),
        Err(e) => {
            serial_println!("omega: challenge refused: {e}");
            let reason: &[u8] = match e {
                ChallengeRefused::Repeated => b"challenge refused: not the first",
                ChallengeRefused::TooLate => b"challenge refused: evidence already issued",
            };
            log.lifecycle(
                ch,
                lifecycle::EVIDENCE,
                0,
                Decision::Deny,
                None,
                Some(reason),
            );
        }
    }
}
