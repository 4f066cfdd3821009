//! The simulated PSP (tests only): answers the monitor's SNP guest requests, which a
//! test-hooks image sends as `ControlMsg::GuestRequest`, with `omega_sim_psp::SimPsp`, on its
//! own thread (signing takes milliseconds, and the answer waits for the guest's credit,
//! which only the reader thread can see arrive).

use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};

use omega_sim_psp::SimPsp;
use omega_wire::Stream;
use omega_wire::msg::{self, ControlMsg, code};
use tracing::{info, warn};

use super::SessionEvent;
use super::send::Shared;

/// Requests waiting for the PSP. The monitor sends one at a time and waits for its answer.
const QUEUE: usize = 2;

pub(crate) struct PspHandle {
    tx: SyncSender<Vec<u8>>,
    thread: JoinHandle<()>,
}

impl PspHandle {
    /// Starts a simulated PSP whose reports carry `measurement`.
    pub(crate) fn spawn(sh: &Arc<Shared>, measurement: [u8; 48]) -> PspHandle {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let sh = Arc::clone(sh);
        let thread = thread::Builder::new()
            .name("omega-sim-psp".into())
            .spawn(move || {
                let mut psp = SimPsp::new(measurement);
                for request in rx {
                    answer(&sh, &mut psp, &request);
                }
            })
            .expect("spawn the simulated PSP thread");
        PspHandle { tx, thread }
    }

    /// Queues one guest request; a full queue is refused at once (never blocks the reader).
    pub(crate) fn request(&self, sh: &Shared, message: &[u8]) {
        match self.tx.try_send(message.to_vec()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => refuse(sh, code::UNAVAILABLE, "simulated PSP busy"),
            Err(TrySendError::Disconnected(_)) => {
                refuse(sh, code::UNAVAILABLE, "simulated PSP stopped")
            }
        }
    }

    pub(crate) fn join(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

fn answer(sh: &Shared, psp: &mut SimPsp, request: &[u8]) {
    let response = match psp.handle(request) {
        Ok(r) => r,
        Err(e) => {
            let why = format!("simulated PSP refused the request: {e}");
            return refuse(sh, code::PROTOCOL, &why);
        }
    };
    let mut buf = vec![0u8; response.len() + 16];
    let sent = msg::encode(&ControlMsg::GuestResponse { message: &response }, &mut buf)
        .map_err(super::SessionError::from)
        .and_then(|body| sh.send_message(Stream::Control, body));
    match sent {
        Ok(()) => {
            info!("simulated PSP answered a guest request");
            sh.event(SessionEvent::GuestRequest { ok: true });
        }
        Err(e) => warn!("sending the simulated PSP's response failed: {e}"),
    }
}

/// Answers a guest request with an Error on Control (no PSP, or the PSP refused it).
pub(crate) fn refuse(sh: &Shared, c: u16, why: &str) {
    warn!("guest request not answered: {why}");
    sh.send_error(Stream::Control, c, why);
    sh.event(SessionEvent::GuestRequest { ok: false });
}
