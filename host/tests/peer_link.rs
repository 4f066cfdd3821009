//! The Peer stream through two launchers: two simulated guests run real peer channels
//! (`omega-peer-channel`) over `--peer-listen` / `--peer-connect`; the launchers relay
//! bytes they cannot read.

mod sim;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use omega_host::session::PeerSetup;
use omega_host::*;
use omega_peer_channel::{Channel, Event, Identity, PeerName, PinnedAuthority};
use omega_wire::msg::code;
use omega_wire::*;
use sim::*;

const T: Duration = Duration::from_secs(10);

fn free_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Moves what `ch` has to say into its guest's Peer stream.
fn flush(g: &mut SimGuest, ch: &mut Channel<PinnedAuthority>) -> Vec<u8> {
    let out = ch.take_output();
    if !out.is_empty() {
        g.send_message(Stream::Peer, &out, T);
    }
    out
}

/// Feeds what arrived on the guest's Peer stream into `ch` until `done`.
fn pump_until(
    g: &mut SimGuest,
    ch: &mut Channel<PinnedAuthority>,
    done: impl Fn(&Channel<PinnedAuthority>) -> bool,
) -> Vec<u8> {
    let deadline = Instant::now() + T;
    let mut seen = Vec::new();
    while !done(ch) {
        assert!(Instant::now() < deadline, "the peer's bytes never came");
        if let Some(m) = g.recv_message(Stream::Peer, Duration::from_millis(200)) {
            seen.extend_from_slice(&m);
            ch.feed(&m, 0).unwrap();
        }
    }
    seen
}

#[test]
fn two_launchers_relay_a_peer_channel_they_cannot_read() {
    let addr = free_port();
    let (mut ga, _sa) = start_ready(
        SessionConfig {
            peer: Some(TcpLink::Listen(addr.clone())),
            ..Default::default()
        },
        INITIAL_WINDOW,
    );
    let (mut gb, _sb) = start_ready(
        SessionConfig {
            peer: Some(TcpLink::Connect(addr)),
            ..Default::default()
        },
        INITIAL_WINDOW,
    );
    let alpha = Identity::from_seed([11; 32], b"alpha".to_vec()).unwrap();
    let beta = Identity::from_seed([12; 32], b"beta".to_vec()).unwrap();
    let mut pins = PinnedAuthority::new();
    pins.pin(PeerName::new("alpha").unwrap(), alpha.public());
    pins.pin(PeerName::new("beta").unwrap(), beta.public());
    let mut a = Channel::initiator(alpha, pins.clone(), [1; 32], PeerName::new("beta")).unwrap();
    let mut b = Channel::responder(beta, pins, [2; 32]).unwrap();

    // alpha's Init reaches beta through both launchers; beta answers; alpha finishes.
    let mut relayed = flush(&mut ga, &mut a);
    relayed.extend(pump_until(&mut gb, &mut b, |c| c.has_output()));
    relayed.extend(flush(&mut gb, &mut b));
    relayed.extend(pump_until(&mut ga, &mut a, |c| c.is_open()));
    relayed.extend(flush(&mut ga, &mut a));
    relayed.extend(pump_until(&mut gb, &mut b, |c| c.is_open()));
    assert_eq!(a.peer().unwrap().session_id, b.peer().unwrap().session_id);

    let secret = b"triage -> summariser: bed 4 first";
    a.send(secret).unwrap();
    relayed.extend(flush(&mut ga, &mut a));
    let mut got = None;
    let deadline = Instant::now() + T;
    while got.is_none() {
        assert!(Instant::now() < deadline);
        if let Some(m) = gb.recv_message(Stream::Peer, Duration::from_millis(200)) {
            relayed.extend_from_slice(&m);
            b.feed(&m, 0).unwrap();
            while let Some(e) = b.poll_event() {
                if let Event::Message(m) = e {
                    got = Some(m);
                }
            }
        }
    }
    assert_eq!(got.unwrap(), secret);
    // What crossed the launchers: ciphertext only.
    assert!(!relayed.windows(secret.len()).any(|w| w == secret));
    assert!(!relayed.windows(5).any(|w| w == b"alpha"));
}

#[test]
fn without_a_peer_link_the_stream_is_refused_saying_why() {
    let (mut g, _s) = start_ready(SessionConfig::default(), INITIAL_WINDOW);
    g.send_message(Stream::Peer, b"x", T);
    let (st, c, msg) = g.recv_error(T).unwrap();
    assert_eq!((st, c), (Stream::Peer, code::UNAVAILABLE), "{msg}");
    assert!(msg.contains("--peer-listen"), "{msg}");
}

/// `--peer-node` / `--peer` / `--peer-credential FILE`: `PeerConfig` reaches the guest at
/// once (before the credential exists), `PeerCredential` only once the file holds the same
/// bytes twice in a row; an empty file is waited past.
#[test]
fn the_launcher_configures_the_monitor_then_sends_the_credential_when_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alpha.credential");
    let (mut g, _s) = start_ready(
        SessionConfig {
            peer: Some(TcpLink::Connect(free_port())),
            peer_setup: Some(PeerSetup {
                node: "alpha".into(),
                peer: "beta".into(),
                credential: file.clone(),
            }),
            ..Default::default()
        },
        INITIAL_WINDOW,
    );
    let control = |g: &mut SimGuest| -> Vec<u8> {
        g.recv_message(Stream::Control, T)
            .expect("a control message")
            .to_vec()
    };
    let first = control(&mut g);
    assert_eq!(
        msg::decode_exact::<msg::ControlMsg<'_>>(&first).unwrap(),
        msg::ControlMsg::PeerConfig {
            initiator: true,
            node: "alpha",
            peer: "beta"
        }
    );
    // Empty: nothing more comes.
    std::fs::write(&file, b"").unwrap();
    assert!(
        g.recv_message(Stream::Control, Duration::from_millis(500))
            .is_none()
    );
    let credential = vec![0xab; msg::MAX_PEER_CREDENTIAL];
    std::fs::write(&file, &credential).unwrap();
    let second = control(&mut g);
    assert_eq!(
        msg::decode_exact::<msg::ControlMsg<'_>>(&second).unwrap(),
        msg::ControlMsg::PeerCredential {
            credential: &credential
        }
    );
}
