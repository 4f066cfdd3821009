//! Peer stream setup: who this node is on the peer channel and its credential, sent to the
//! monitor on Control. The Peer stream's bytes themselves (`omega-peer-channel`, encrypted
//! end to end between two monitors) are relayed by [`super::link::LinkRelay`] to the other
//! image's launcher; this host sees only ciphertext and decides nothing (docs/fleet.md).

use std::io;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use omega_wire::Stream;
use tracing::{info, warn};

use super::link::LINK_WAIT;
use crate::session::send::Shared;

/// Who this node is on the peer channel and whom it talks to (`omega run --peer-node`,
/// `--peer`, `--peer-credential`): sent to the monitor as `ControlMsg::PeerConfig` before
/// the bundle, then `ControlMsg::PeerCredential` once the fleet coordinator has issued this
/// node's credential. SECURITY: this host only carries the credential; the monitor checks
/// it under the coordinator key its measured bundle names (docs/fleet.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSetup {
    /// This node's name (the one its credential names).
    pub node: String,
    /// The peer's node name.
    pub peer: String,
    /// This node's signed credential: a file that appears once the coordinator admitted the
    /// node (it attests itself only once it runs), waited for at most [`LINK_WAIT`].
    pub credential: std::path::PathBuf,
}

/// Sends `PeerConfig` now (called before the bundle), then `PeerCredential` from its own
/// thread once the credential file is there.
pub(crate) fn send_setup(sh: &Arc<Shared>, setup: PeerSetup, initiator: bool) {
    let config = omega_wire::msg::ControlMsg::PeerConfig {
        initiator,
        node: &setup.node,
        peer: &setup.peer,
    };
    if let Err(e) = send_control(sh, &config) {
        warn!("sending the peer configuration failed: {e}");
        return;
    }
    info!(
        "peer link: this node is {}, its peer {} ({})",
        setup.node,
        setup.peer,
        if initiator { "initiator" } else { "responder" }
    );
    let sh = Arc::clone(sh);
    let spawned = thread::Builder::new()
        .name("omega-peer-credential".into())
        .spawn(
            move || match wait_for_credential(&setup.credential, LINK_WAIT) {
                Ok(bytes) => {
                    let m = omega_wire::msg::ControlMsg::PeerCredential { credential: &bytes };
                    match send_control(&sh, &m) {
                        Ok(()) => info!(
                            "peer link: credential for {} sent ({} bytes)",
                            setup.node,
                            bytes.len()
                        ),
                        Err(e) => warn!("sending the peer credential failed: {e}"),
                    }
                }
                Err(e) => warn!("peer link: no credential for {}: {e}", setup.node),
            },
        );
    if let Err(e) = spawned {
        warn!("peer link: cannot start the credential thread: {e}");
    }
}

fn send_control(sh: &Shared, m: &omega_wire::msg::ControlMsg<'_>) -> Result<(), String> {
    let mut b = [0u8; 2 * omega_wire::msg::MAX_PEER_CREDENTIAL];
    let body = omega_wire::msg::encode(m, &mut b).map_err(|e| e.to_string())?;
    sh.send_message(Stream::Control, body)
        .map_err(|e| e.to_string())
}

/// The credential file's bytes once it exists, is not empty and reads the same twice
/// 100 ms apart (a file still being written is waited past: the monitor takes the first
/// credential it is sent, good or bad).
fn wait_for_credential(path: &std::path::Path, wait: Duration) -> io::Result<Vec<u8>> {
    let start = Instant::now();
    let mut last: Option<Vec<u8>> = None;
    loop {
        let now = std::fs::read(path).ok().filter(|b| !b.is_empty());
        if let Some(b) = &now
            && b.len() > omega_wire::msg::MAX_PEER_CREDENTIAL
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds {} bytes, more than a credential ({} at most)",
                    path.display(),
                    b.len(),
                    omega_wire::msg::MAX_PEER_CREDENTIAL
                ),
            ));
        }
        if now.is_some() && now == last {
            return Ok(now.unwrap_or_default());
        }
        if start.elapsed() >= wait {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not appear", path.display()),
            ));
        }
        last = now;
        thread::sleep(Duration::from_millis(100));
    }
}
