//! Stable-Rust counterpart of the cargo-fuzz target: random bytes and randomly mutated valid
//! streams into the decoder, in random slicing. It must never panic or wedge, and must keep
//! its byte accounting exact. `OMEGA_WIRE_RANDOM_ITERS` raises the iteration count.
mod common;
use common::*;
use omega_test_support::random;
use omega_wire::*;
use rand::{Rng, SeedableRng, rngs::SmallRng};

fn iters() -> usize {
    std::env::var("OMEGA_WIRE_RANDOM_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

fn valid_stream(rng: &mut SmallRng) -> Vec<u8> {
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    let mut buf = vec![0u8; MAX_FRAME];
    for _ in 0..rng.gen_range(1..20) {
        let s = Stream::ALL[rng.gen_range(0..STREAM_COUNT)];
        let n = match rng.gen_range(0..3) {
            0 => rng.gen_range(0..16),
            1 => rng.gen_range(0..2000),
            _ => rng.gen_range(0..=MAX_PAYLOAD),
        };
        let p: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
        let k = match rng.gen_range(0..6) {
            0 => enc.credit(s, rng.gen_range(1..1000), &mut buf),
            1 => enc.error(s, 1, "x", &mut buf),
            2 => enc.ack(rng.r#gen(), rng.r#gen(), &mut buf),
            _ => enc.data(s, &p, rng.r#gen(), &mut buf),
        }
        .unwrap();
        out.extend_from_slice(&buf[..k]);
    }
    out
}

#[test]
fn random_bytes_never_panic_or_wedge() {
    let mut rng = SmallRng::seed_from_u64(0x0E6A);
    let mut edits = random::Rng::new(random::seed(0x0E6A));
    for _ in 0..iters() {
        let mut input: Vec<u8> = match rng.gen_range(0..3) {
            0 => (0..rng.gen_range(0..70_000)).map(|_| rng.r#gen()).collect(),
            // Bytes biased towards marker pieces and small values.
            1 => (0..rng.gen_range(0..20_000))
                .map(|_| match rng.gen_range(0..4) {
                    0 => SYNC[rng.gen_range(0..4)],
                    1 => rng.gen_range(0..8),
                    _ => rng.r#gen(),
                })
                .collect(),
            _ => valid_stream(&mut rng),
        };
        // Mutate (five times in six).
        if rng.gen_range(0..6) != 0 {
            random::mutate(&mut edits, &mut input);
        }
        let chunks: Vec<usize> = (0..8).map(|_| rng.gen_range(1..30_000)).collect();
        let mut dec: Decoder = Decoder::new();
        let (frames, _errors) = decode_all(&mut dec, &input, &chunks);
        // Accounting: every byte was returned in a frame, skipped, or is still pending.
        let framed: usize = frames.iter().map(|f| frame_len(&f.header)).sum();
        let st = dec.stats();
        assert_eq!(
            framed as u64 + st.skipped + dec.pending() as u64,
            input.len() as u64
        );
        // Draining with resync always terminates.
        let mut guard = 0;
        while dec.pending() > 0 {
            dec.resync();
            while dec.next_frame().is_some() {}
            guard += 1;
            assert!(guard <= MAX_FRAME + 8);
        }
    }
}

/// Length on the wire of a frame with this header (re-encoded: headers are canonical).
fn frame_len(h: &Header) -> usize {
    let payload = vec![0u8; h.len as usize];
    let mut buf = vec![0u8; MAX_FRAME];
    encode_frame(h, &payload, &mut buf).unwrap()
}
