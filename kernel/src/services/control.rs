//! The Control stream: the host's shutdown request and notices; the monitor's log key,
//! checkpoints and final shutdown.

use alloc::vec;

use omega_arch::serial_println;
use omega_kernel::channel::HostText;
use omega_wire::Stream;
use omega_wire::msg::{self, ControlMsg};

use super::log::LogService;
use super::{HostChannel, report_send_failure};
use crate::monitor::fatal;

/// Room for one encoded control message (a checkpoint note is the largest).
const MAX_CONTROL: usize = 4096;

/// What the loop does after a control message.
pub enum Outcome {
    Continue,
    /// The host asked to stop, and was answered: the monitor exits cleanly.
    Shutdown,
}

/// Sends one control message to the host.
pub fn send(ch: &mut HostChannel, m: &ControlMsg<'_>) {
    let mut buf = vec![0u8; MAX_CONTROL];
    // Every control message the monitor sends fits: failing here is a monitor bug.
    let bytes = msg::encode(m, &mut buf).unwrap_or_else(|e| fatal("encoding a control message", e));
    if let Err(e) = ch.send(Stream::Control, bytes) {
        report_send_failure("a control message", &e);
    }
}

/// Tells the host the monitor is stopping cleanly.
pub fn send_shutdown(ch: &mut HostChannel) {
    send(ch, &ControlMsg::Shutdown { status: 0 });
}

/// Handles one message from the host on the Control stream.
pub fn on_message(ch: &mut HostChannel, log: &mut LogService<'_>, body: &[u8]) -> Outcome {
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
        // Messages only the monitor sends; their text is not shown.
        Ok(other) => {
            let what = match other {
                ControlMsg::LogKey { .. } => "LogKey",
                ControlMsg::Checkpoint { .. } => "Checkpoint",
                _ => "?",
            };
            serial_println!("omega: channel: unexpected control message from the host: {what}")
        }
        Err(e) => serial_println!("omega: channel: bad control message: {e}"),
    }
    Outcome::Continue
}
