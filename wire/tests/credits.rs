use omega_wire::*;
use rand::{Rng, SeedableRng, rngs::SmallRng};

#[test]
fn no_credit_means_would_block_and_nothing_is_consumed() {
    let mut c = Credits::new(100, 10);
    assert_eq!(c.available(Stream::Echo), 10);
    assert_eq!(
        c.try_send(Stream::Echo, 11),
        Err(WireError::WouldBlock(Stream::Echo))
    );
    assert_eq!(c.available(Stream::Echo), 10);
    c.try_send(Stream::Echo, 10).unwrap();
    assert_eq!(
        c.try_send(Stream::Echo, 1),
        Err(WireError::WouldBlock(Stream::Echo))
    );
    assert_eq!(c.try_send(Stream::Echo, 0), Ok(()));
    // Other streams are independent.
    c.try_send(Stream::Log, 10).unwrap();
    c.on_credit(Stream::Echo, 5).unwrap();
    assert_eq!(c.sendable(Stream::Echo, 100), 5);
}

#[test]
fn encoder_with_credit_splits_and_blocks() {
    let mut c = Credits::new(1000, 20_000);
    let mut enc = Encoder::new();
    let mut out = vec![0u8; MAX_FRAME];
    let msg = vec![7u8; 50_000];
    let (n1, _) = enc
        .data_with_credit(&mut c, Stream::Tools, &msg, &mut out)
        .unwrap();
    assert_eq!(n1, MAX_PAYLOAD);
    let (n2, _) = enc
        .data_with_credit(&mut c, Stream::Tools, &msg[n1..], &mut out)
        .unwrap();
    assert_eq!(n1 + n2, 20_000);
    assert_eq!(
        enc.data_with_credit(&mut c, Stream::Tools, &msg[n1 + n2..], &mut out),
        Err(WireError::WouldBlock(Stream::Tools))
    );
    assert_eq!(
        enc.next_seq(Stream::Tools),
        2,
        "a blocked send uses no sequence number"
    );
    // Empty END frame costs nothing.
    assert!(
        enc.data_with_credit(&mut c, Stream::Tools, &[], &mut out)
            .is_ok()
    );
}

#[test]
fn receiver_refuses_over_send_and_bounds_grants() {
    let mut c = Credits::new(1000, 1000);
    c.on_data(Stream::Log, 600).unwrap();
    assert_eq!(
        c.on_data(Stream::Log, 401),
        Err(WireError::CreditExceeded(Stream::Log))
    );
    c.on_data(Stream::Log, 400).unwrap();
    assert_eq!(c.peer_credit(Stream::Log), 0);
    // Consuming less than half a window does not grant unless the peer is starved.
    let g = c.consumed(Stream::Log, 100);
    assert_eq!(g, Some(100), "peer at zero credit gets a grant at once");
    assert_eq!(c.consumed(Stream::Log, 100), None);
    assert_eq!(c.consumed(Stream::Log, 400), Some(500));
    assert_eq!(c.peer_credit(Stream::Log), 600);
    // Grants never exceed the window even if the app claims to consume more than received.
    // (the peer still holds more than half a window: no grant until flushed).
    assert_eq!(c.consumed(Stream::Log, 5000), None);
    assert_eq!(c.flush_grant(Stream::Log), Some(400));
    assert_eq!(c.peer_credit(Stream::Log), 1000);
    assert_eq!(c.flush_grant(Stream::Log), None);
    // A peer cannot inflate our send credit past MAX_WINDOW.
    assert_eq!(
        c.on_credit(Stream::Echo, MAX_WINDOW as u64),
        Err(WireError::CreditOverflow(Stream::Echo))
    );
}

#[test]
fn simulated_link_never_over_sends() {
    // A sender with random messages and a receiver that consumes at random; frames in
    // flight are modelled by a queue. The receiver's on_data must never fail and the
    // bytes in flight + buffered must never exceed the window.
    let mut rng = SmallRng::seed_from_u64(11);
    for window in [1u32, 100, 4096, INITIAL_WINDOW] {
        let mut tx = Credits::new(window, window);
        let mut rx = Credits::new(window, window);
        let mut enc = Encoder::new();
        let mut out = vec![0u8; MAX_FRAME];
        let mut in_flight: std::collections::VecDeque<usize> = Default::default();
        let mut grants: std::collections::VecDeque<u32> = Default::default();
        let mut rx_buffered = 0usize;
        let mut pending: Vec<u8> = Vec::new();
        let (mut sent, mut blocked) = (0usize, 0usize);
        for _ in 0..20_000 {
            match rng.gen_range(0..4) {
                0 if pending.len() < 4 * window as usize => pending.extend(std::iter::repeat_n(
                    1u8,
                    rng.gen_range(0..3 * window as usize),
                )),
                1 if !pending.is_empty() => {
                    match enc.data_with_credit(&mut tx, Stream::Echo, &pending, &mut out) {
                        Ok((n, _)) => {
                            pending.drain(..n);
                            in_flight.push_back(n);
                            sent += n;
                        }
                        Err(WireError::WouldBlock(_)) => blocked += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                2 => {
                    if let Some(n) = in_flight.pop_front() {
                        rx.on_data(Stream::Echo, n)
                            .expect("sender respected credit");
                        rx_buffered += n;
                    }
                    if let Some(g) = grants.pop_front() {
                        tx.on_credit(Stream::Echo, g as u64).unwrap();
                    }
                }
                _ => {
                    let n = rng.gen_range(0..=rx_buffered);
                    rx_buffered -= n;
                    if let Some(g) = rx.consumed(Stream::Echo, n) {
                        grants.push_back(g);
                    }
                }
            }
            let flight: usize = in_flight.iter().sum();
            assert!(flight + rx_buffered <= window as usize);
        }
        assert!(
            sent > 0 && blocked > 0,
            "window {window}: sent {sent} blocked {blocked}"
        );
    }
}
