//! The Fleet stream through the launcher (`--fleet-connect`): the in-image coordinator's
//! answers reach the relay's TCP connection and the relay's requests reach the guest, as
//! bytes whose boundaries mean nothing; the relay's end closes the stream. Without
//! `--fleet-connect` the stream is refused, saying why.

mod sim;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use omega_host::*;
use omega_wire::msg::code;
use omega_wire::*;
use sim::*;

const T: Duration = Duration::from_secs(10);

/// One coordinator message as the relay and the coordinator frame them: `u32 BE length ‖
/// body` (the body stands in for postcard).
fn framed(body: &[u8]) -> Vec<u8> {
    let mut m = (body.len() as u32).to_be_bytes().to_vec();
    m.extend_from_slice(body);
    m
}

/// Several messages, one of them longer than a frame's payload (16 KiB), so it spans
/// frames.
fn messages(seed: u8) -> Vec<Vec<u8>> {
    let big: Vec<u8> = (0..40_000u32).map(|i| (i as u8) ^ seed).collect();
    vec![
        framed(&[seed; 7]),
        framed(&big),
        framed(b""),
        framed(&[seed.wrapping_add(1); 300]),
    ]
}

/// The launcher's connection, accepted within `T`.
fn accept(l: &TcpListener) -> TcpStream {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + T;
    loop {
        match l.accept() {
            Ok((c, _)) => {
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(T)).unwrap();
                return c;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the launcher never connected");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn fleet_connect_relays_the_coordinators_requests_and_answers_both_ways() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut g, _s) = start_ready(
        SessionConfig {
            fleet: Some(l.local_addr().unwrap().to_string()),
            ..Default::default()
        },
        INITIAL_WINDOW,
    );
    // The launcher connects at session start, before the guest says anything.
    let mut relay = accept(&l);

    // Relay → guest: requests, as the relay writes them, come out of the Fleet stream in
    // order (in whatever pieces; the bytes are what counts).
    let requests = messages(0x5a);
    for m in &requests {
        relay.write_all(m).unwrap();
    }
    let want: Vec<u8> = requests.concat();
    let mut got = Vec::new();
    let deadline = Instant::now() + T;
    while got.len() < want.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} bytes",
            got.len(),
            want.len()
        );
        if let Some(m) = g.recv_message(Stream::Fleet, Duration::from_millis(200)) {
            got.extend_from_slice(&m);
        }
    }
    assert_eq!(got, want);

    // Guest → relay: answers, one message each on the stream (the large one in several
    // frames), reach the connection byte for byte.
    let answers = messages(0xa5);
    for m in &answers {
        g.send_message(Stream::Fleet, m, T);
    }
    let want: Vec<u8> = answers.concat();
    let mut got = vec![0u8; want.len()];
    relay.read_exact(&mut got).unwrap();
    assert_eq!(got, want);

    // The guest's Close half-closes the connection; the relay's end closes the stream.
    g.frame(|e, b| e.close(Stream::Fleet, b));
    assert_eq!(
        relay.read(&mut [0u8; 1]).unwrap(),
        0,
        "EOF after the guest's close"
    );
    drop(relay);
    let deadline = Instant::now() + T;
    loop {
        assert!(Instant::now() < deadline, "no Close on the Fleet stream");
        if let Some(f) = g.next(Duration::from_millis(200))
            && f.header.stream == Stream::Fleet
        {
            assert_eq!(f.header.kind, Kind::Close, "{f:?}");
            break;
        }
    }
}

#[test]
fn without_fleet_connect_the_stream_is_refused_saying_why() {
    let (mut g, _s) = start_ready(SessionConfig::default(), INITIAL_WINDOW);
    g.send_message(Stream::Fleet, &framed(b"answer"), T);
    let (st, c, msg) = g.recv_error(T).unwrap();
    assert_eq!((st, c), (Stream::Fleet, code::UNAVAILABLE), "{msg}");
    assert!(msg.contains("--fleet-connect"), "{msg}");
}
