//! Every kind of corruption is detected, reported, and the decoder recovers.
mod common;
use common::*;
use omega_wire::*;
use rand::{Rng, SeedableRng, rngs::SmallRng};

fn frame_bytes(enc: &mut Encoder, stream: Stream, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME];
    let n = enc.data(stream, payload, true, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// A, B, C frames; B is corrupted by `f`; A and C must come out intact, B must not come out,
/// and at least one error must be reported.
fn check_corruption(b_len: usize, f: impl Fn(&mut Vec<u8>)) {
    let mut enc = Encoder::new();
    let pa: Vec<u8> = (0..50u8).collect();
    let pb: Vec<u8> = (0..b_len).map(|i| (i * 13 + 1) as u8).collect();
    let pc: Vec<u8> = (0..77u8).rev().collect();
    let a = frame_bytes(&mut enc, Stream::Tools, &pa);
    let mut b = frame_bytes(&mut enc, Stream::Tools, &pb);
    let c = frame_bytes(&mut enc, Stream::Tools, &pc);
    f(&mut b);
    // D: enough bytes after a truncated B for its claimed length to arrive.
    let pd = vec![0x5Du8; (b_len + 64).min(MAX_PAYLOAD)];
    let d = frame_bytes(&mut enc, Stream::Tools, &pd);
    let wire = [a.clone(), b.clone(), c.clone(), d].concat();
    // Byte-at-a-time feeding only for small frames (it is slow in debug builds).
    let slicings: &[&[usize]] = if b_len <= 1000 {
        &[&[usize::MAX], &[1], &[3, 7, 1000]]
    } else {
        &[&[usize::MAX], &[3, 7, 1000]]
    };
    for chunks in slicings {
        let mut dec: Decoder = Decoder::new();
        let (frames, errors) = decode_all(&mut dec, &wire, chunks);
        let payloads: Vec<&[u8]> = frames.iter().map(|f| &f.payload[..]).collect();
        assert_eq!(
            payloads,
            vec![&pa[..], &pc[..], &pd[..]],
            "errors: {errors:?}"
        );
        assert!(!errors.is_empty());
        assert_eq!(
            frames[1].header.seq, 2,
            "C keeps its own seq, the gap shows the loss"
        );
        assert!(dec.finish().is_ok());
    }
    // Without D: if the decoder is stuck on B's claimed length, an idle-time resync()
    // recovers C.
    let wire = [a, b, c].concat();
    let mut dec: Decoder = Decoder::new();
    let (mut frames, mut errors) = decode_all(&mut dec, &wire, &[usize::MAX]);
    while dec.pending() > 0 {
        errors.extend(dec.resync());
        while let Some(r) = dec.next_frame() {
            match r {
                Ok(f) => frames.push(Owned {
                    header: f.header,
                    payload: f.payload.to_vec(),
                }),
                Err(e) => errors.push(e),
            }
        }
    }
    let payloads: Vec<&[u8]> = frames.iter().map(|f| &f.payload[..]).collect();
    assert_eq!(payloads, vec![&pa[..], &pc[..]], "errors: {errors:?}");
    assert!(!errors.is_empty());
}

#[test]
fn every_single_bit_flip_in_a_small_frame() {
    let len = frame_bytes(&mut Encoder::new(), Stream::Tools, &[0u8; 40]).len();
    for byte in 0..len {
        for bit in 0..8 {
            check_corruption(40, |b| b[byte] ^= 1 << bit);
        }
    }
}

#[test]
fn sampled_bit_flips_in_a_max_frame() {
    let mut rng = SmallRng::seed_from_u64(1);
    for _ in 0..300 {
        let pos = rng.gen_range(0..MAX_PAYLOAD + 30);
        let bit = rng.gen_range(0..8);
        check_corruption(MAX_PAYLOAD, |b| {
            let p = pos % b.len();
            b[p] ^= 1 << bit
        });
    }
}

#[test]
fn multi_byte_bursts() {
    let mut rng = SmallRng::seed_from_u64(2);
    for _ in 0..500 {
        let start = rng.gen_range(0..60);
        let len = rng.gen_range(1..9);
        let v: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        check_corruption(300, move |b| {
            let mut changed = false;
            for (i, x) in v.iter().enumerate() {
                if let Some(t) = b.get_mut(start + i) {
                    changed |= *t != *x;
                    *t = *x;
                }
            }
            if !changed {
                b[start] ^= 0x80;
            }
        });
    }
}

#[test]
fn truncation_anywhere() {
    let len = frame_bytes(&mut Encoder::new(), Stream::Tools, &[0u8; 200]).len();
    for keep in 0..len {
        if keep == 0 {
            continue; // removing B entirely is not corruption
        }
        check_corruption(200, |b| b.truncate(keep));
    }
    // A hole in the middle.
    for at in 0..len - 10 {
        check_corruption(200, |b| {
            b.drain(at..at + 10);
        });
    }
}

#[test]
fn truncated_at_end_of_stream_is_reported() {
    let mut enc = Encoder::new();
    let f = frame_bytes(&mut enc, Stream::Log, &[9u8; 100]);
    for keep in 1..f.len() {
        let mut dec: Decoder = Decoder::new();
        let (frames, _) = decode_all(&mut dec, &f[..keep], &[usize::MAX]);
        assert!(frames.is_empty());
        assert!(
            matches!(dec.finish(), Err(WireError::Truncated(_))),
            "keep {keep}"
        );
    }
}

/// Builds a frame with a hand-made header (bypassing the encoder's checks).
fn raw_frame(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = SYNC.to_vec();
    v.push(header.len() as u8);
    v.extend_from_slice(header);
    let hc = crc32c(&v[4..]);
    v.extend_from_slice(&hc.to_le_bytes());
    v.extend_from_slice(payload);
    let c = crc32c(&v[4..]);
    v.extend_from_slice(&c.to_le_bytes());
    v
}

fn varint(mut x: u64) -> Vec<u8> {
    let mut v = Vec::new();
    loop {
        let b = (x & 0x7f) as u8;
        x >>= 7;
        if x == 0 {
            v.push(b);
            return v;
        }
        v.push(b | 0x80);
    }
}

#[test]
fn oversized_length_is_refused_without_waiting() {
    for claimed in [MAX_PAYLOAD as u64 + 1, 1 << 20, u32::MAX as u64] {
        let mut h = vec![1, Stream::Echo as u8, 0, 1, 0, 0];
        h.extend(varint(claimed));
        let mut bad = raw_frame(&h, &[]);
        bad.truncate(bad.len() - 4); // no payload follows; only its header
        let mut dec: Decoder = Decoder::new();
        dec.push(&bad);
        assert_eq!(
            dec.next_frame(),
            Some(Err(WireError::Oversized(claimed as u32)))
        );
        check_corruption(10, |b| {
            let mut x = bad.clone();
            x.extend_from_slice(b);
            *b = x;
            b.truncate(bad.len()); // B replaced by the oversized header
        });
    }
}

#[test]
fn malformed_headers_are_refused() {
    let good_hdr = [1u8, 5, 0, 1, 0, 0, 2];
    let cases: Vec<(Vec<u8>, WireError)> = vec![
        (vec![2, 5, 0, 1, 0, 0, 2], WireError::UnsupportedVersion(2)),
        (vec![1, 8, 0, 1, 0, 0, 2], WireError::UnknownStream(8)),
        (vec![1, 5, 7, 1, 0, 0, 2], WireError::UnknownKind(7)),
        (vec![1, 5, 0, 3, 0, 0, 2], WireError::BadHeader), // unknown flag
        (vec![1, 5, 0, 1, 0x80, 0, 0, 2], WireError::BadHeader), // over-long varint
        (vec![1, 5, 0, 1, 0, 0, 2, 0], WireError::BadHeader), // trailing byte
        (vec![1, 5, 0], WireError::BadHeader),             // short
    ];
    for (h, want) in cases {
        let bad = raw_frame(&h, b"hi");
        let mut dec: Decoder = Decoder::new();
        dec.push(&bad);
        assert_eq!(dec.next_frame(), Some(Err(want)), "{h:?}");
        // Then the remains are skipped as garbage and nothing else comes out.
        while let Some(r) = dec.next_frame() {
            assert!(r.is_err());
        }
    }
    let ok = raw_frame(&good_hdr, b"hi");
    let mut dec: Decoder = Decoder::new();
    dec.push(&ok);
    assert_eq!(dec.next_frame().unwrap().unwrap().payload, b"hi");
    // hlen 0 and hlen > MAX_HEADER.
    for hlen in [0u8, MAX_HEADER as u8 + 1, 255] {
        let mut v = SYNC.to_vec();
        v.push(hlen);
        v.extend_from_slice(&[0u8; 300]);
        let mut dec: Decoder = Decoder::new();
        dec.push(&v);
        assert_eq!(dec.next_frame(), Some(Err(WireError::HeaderLength(hlen))));
    }
}

#[test]
fn kind_rule_violations_are_refused_and_skipped_whole() {
    // Intact frames (CRCs good) that break kind rules: Ack on Echo, Credit with payload,
    // Hello on Tools, flags on Error, credit 0.
    let cases: Vec<(Vec<u8>, &[u8])> = vec![
        (vec![1, 5, 4, 0, 3, 9, 0], b""),
        (vec![1, 5, 1, 0, 0, 9, 1], b"x"),
        (vec![1, 2, 2, 0, 0, 0, 0], b""),
        (vec![1, 2, 5, 1, 0, 0, 0], b""),
        (vec![1, 2, 1, 0, 0, 0, 0], b""),
    ];
    for (h, p) in cases {
        let mut wire = raw_frame(&h, p);
        let mut enc = Encoder::new();
        wire.extend(frame_bytes(&mut enc, Stream::Echo, b"next"));
        let mut dec: Decoder = Decoder::new();
        let (frames, errors) = decode_all(&mut dec, &wire, &[usize::MAX]);
        assert_eq!(errors.len(), 1, "{h:?}: {errors:?}");
        assert!(matches!(errors[0], WireError::Protocol(_)));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].payload, b"next");
    }
}

#[test]
fn garbage_between_frames() {
    let mut rng = SmallRng::seed_from_u64(3);
    let mut enc = Encoder::new();
    let mut wire = Vec::new();
    let mut expect = Vec::new();
    for i in 0..200 {
        let n = rng.gen_range(0..3000);
        let p: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
        wire.extend(frame_bytes(&mut enc, Stream::Echo, &p));
        expect.push(p);
        if i % 2 == 0 {
            let g = rng.gen_range(1..500);
            let mut garbage: Vec<u8> = (0..g).map(|_| rng.r#gen()).collect();
            // Garbage that looks like the start of a frame.
            if i % 6 == 0 {
                garbage.extend_from_slice(&SYNC);
                garbage.push(7);
            }
            if i % 10 == 0 {
                garbage.extend_from_slice(&SYNC[..3]);
            }
            wire.extend(garbage);
        }
    }
    let mut dec: Decoder = Decoder::new();
    let (frames, errors) = decode_all(&mut dec, &wire, &[1, 100, 4096, 17]);
    let got: Vec<Vec<u8>> = frames.into_iter().map(|f| f.payload).collect();
    assert_eq!(got, expect);
    assert!(errors.len() >= 100);
    assert!(dec.stats().skipped > 0);
}

#[test]
fn decoder_never_returns_frames_not_sent() {
    // Random single mutations of a valid stream: anything decoded must be a frame that was
    // actually sent (same stream, seq, payload), and the decoder must never wedge.
    let mut rng = SmallRng::seed_from_u64(4);
    let mut enc = Encoder::new();
    let mut wire = Vec::new();
    let mut sent = std::collections::HashMap::new();
    for _ in 0..60 {
        let n = rng.gen_range(0..2000);
        let p: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
        let seq = enc.next_seq(Stream::Tools);
        wire.extend(frame_bytes(&mut enc, Stream::Tools, &p));
        sent.insert(seq, p);
    }
    for _ in 0..300 {
        let mut w = wire.clone();
        match rng.gen_range(0..4) {
            0 => {
                let i = rng.gen_range(0..w.len());
                w[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let i = rng.gen_range(0..w.len());
                let n = rng.gen_range(1..64).min(w.len() - i);
                w.drain(i..i + n);
            }
            2 => {
                let i = rng.gen_range(0..w.len());
                let g: Vec<u8> = (0..rng.gen_range(1..64)).map(|_| rng.r#gen()).collect();
                w.splice(i..i, g);
            }
            _ => {
                let i = rng.gen_range(0..w.len());
                let j = rng.gen_range(0..w.len());
                w.swap(i, j);
            }
        }
        let mut dec: Decoder = Decoder::new();
        let (frames, _) = decode_all(&mut dec, &w, &[rng.gen_range(1..5000)]);
        for f in &frames {
            assert_eq!(sent.get(&f.header.seq), Some(&f.payload));
        }
        assert!(
            frames.len() >= 57,
            "one mutation loses at most a couple of frames"
        );
    }
}
