mod common;
use common::*;
use omega_wire::msg::{ControlMsg, ErrorBody};
use omega_wire::*;
use rand::{Rng, SeedableRng, rngs::SmallRng};

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

const SIZES: &[usize] = &[
    0,
    1,
    2,
    3,
    7,
    100,
    1000,
    4095,
    4096,
    16383,
    16384,
    16385,
    32768,
    65537,
    100_000,
    1024 * 1024 - 1,
    1024 * 1024,
];

#[test]
fn every_stream_every_size_round_trips() {
    let mut rng = SmallRng::seed_from_u64(7);
    for &stream in &Stream::ALL {
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        let msgs: Vec<Vec<u8>> = SIZES.iter().map(|&n| pattern(n, stream as u8)).collect();
        for m in &msgs {
            encode_message(&mut enc, stream, m, &mut wire);
        }
        let chunks: Vec<usize> = (0..64).map(|_| rng.gen_range(1..40_000)).collect();
        let mut dec: Decoder = Decoder::new();
        let (frames, errors) = decode_all(&mut dec, &wire, &chunks);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(dec.finish().is_ok());
        let mut re = Reassembler::default();
        let mut out = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.header.stream, stream);
            assert_eq!(f.header.seq, i as u32);
            assert!(f.payload.len() <= MAX_PAYLOAD);
            let fr = Frame {
                header: f.header,
                payload: &f.payload,
            };
            if let Some((s, m)) = re.push(&fr).unwrap() {
                assert_eq!(s, stream);
                out.push(m);
            }
        }
        assert_eq!(out, msgs);
    }
}

#[test]
fn one_byte_at_a_time() {
    let mut enc = Encoder::new();
    let mut wire = Vec::new();
    for n in [0, 1, 300, 16384, 20000] {
        encode_message(&mut enc, Stream::Echo, &pattern(n, 1), &mut wire);
    }
    let mut dec: Decoder = Decoder::new();
    let (frames, errors) = decode_all(&mut dec, &wire, &[1]);
    assert!(errors.is_empty());
    assert_eq!(frames.len(), 1 + 1 + 1 + 1 + 2);
}

#[test]
fn control_kinds_round_trip() {
    let mut enc = Encoder::new();
    let mut buf = vec![0u8; MAX_FRAME];
    let mut wire = Vec::new();
    let mut put = |n: usize, buf: &[u8]| wire.extend_from_slice(&buf[..n]);
    put(
        enc.hello(
            &Hello {
                versions: &[1, 2],
                window: 4096,
            },
            &mut buf,
        )
        .unwrap(),
        &buf,
    );
    put(
        enc.hello_ack(
            &HelloAck {
                version: 1,
                versions: &[1],
                window: 8192,
                log_stored: 0,
            },
            &mut buf,
        )
        .unwrap(),
        &buf,
    );
    put(enc.credit(Stream::Tools, 1234, &mut buf).unwrap(), &buf);
    put(enc.ack(77, 1 << 40, &mut buf).unwrap(), &buf);
    put(
        enc.error(
            Stream::Inference,
            msg::code::UNAVAILABLE,
            "no proxy",
            &mut buf,
        )
        .unwrap(),
        &buf,
    );
    put(enc.close(Stream::Bundle, &mut buf).unwrap(), &buf);
    let mut cm = [0u8; 64];
    let body = msg::encode(&ControlMsg::Shutdown { status: 3 }, &mut cm)
        .unwrap()
        .to_vec();
    put(
        enc.data(Stream::Control, &body, true, &mut buf).unwrap(),
        &buf,
    );
    let mut dec: Decoder = Decoder::new();
    let (f, e) = decode_all(&mut dec, &wire, &[5, 13]);
    assert!(e.is_empty());
    assert_eq!(f.len(), 7);
    assert_eq!(f[0].header.kind, Kind::Hello);
    let h = Hello::decode(&f[0].payload).unwrap();
    assert_eq!((h.versions, h.window), (&[1u8, 2][..], 4096));
    let a = HelloAck::decode(&f[1].payload).unwrap();
    assert_eq!((a.version, a.window), (1, 8192));
    assert_eq!(
        (f[2].header.kind, f[2].header.stream, f[2].header.arg),
        (Kind::Credit, Stream::Tools, 1234)
    );
    assert_eq!(
        (f[3].header.kind, f[3].header.seq, f[3].header.arg),
        (Kind::Ack, 77, 1 << 40)
    );
    let eb = ErrorBody::decode(&f[4].payload).unwrap();
    assert_eq!((eb.code, eb.message), (msg::code::UNAVAILABLE, "no proxy"));
    assert_eq!(
        (f[5].header.kind, f[5].header.stream),
        (Kind::Close, Stream::Bundle)
    );
    let c: ControlMsg = msg::decode_exact(&f[6].payload).unwrap();
    assert_eq!(c, ControlMsg::Shutdown { status: 3 });
}

#[test]
fn encoder_limits() {
    let mut enc = Encoder::new();
    let mut buf = vec![0u8; MAX_FRAME];
    let big = vec![0u8; MAX_PAYLOAD + 1];
    assert_eq!(
        enc.data(Stream::Echo, &big, true, &mut buf),
        Err(WireError::PayloadTooLarge)
    );
    let max = vec![0u8; MAX_PAYLOAD];
    let n = enc.data(Stream::Echo, &max, true, &mut buf).unwrap();
    assert!(n <= MAX_FRAME && n <= MAX_PAYLOAD + OVERHEAD_MAX);
    let mut small = [0u8; 20];
    assert_eq!(
        enc.data(Stream::Echo, &[1; 10], true, &mut small),
        Err(WireError::BufferTooSmall)
    );
    // A failed encode does not consume a sequence number.
    assert_eq!(enc.next_seq(Stream::Echo), 1);
    // Kind rules are enforced on encode too.
    let mut h = Header::new(Stream::Echo, Kind::Ack);
    h.seq = 1;
    assert!(matches!(
        encode_frame(&h, &[], &mut buf),
        Err(WireError::Protocol(_))
    ));
    assert!(matches!(
        enc.credit(Stream::Echo, 0, &mut buf),
        Err(WireError::Protocol(_))
    ));
    // Error text is cut at the limit on a char boundary.
    let long = "é".repeat(1000);
    let n = enc.error(Stream::Echo, 1, &long, &mut buf).unwrap();
    let mut dec: Decoder = Decoder::new();
    dec.push(&buf[..n]);
    let f = dec.next_frame().unwrap().unwrap();
    let eb = msg::ErrorBody::decode(f.payload).unwrap();
    assert_eq!(eb.message.len(), 512);
}

#[test]
fn fixed_layout_of_a_known_frame() {
    // A golden vector for third-party implementations (also printed in docs/wire.md).
    let mut enc = Encoder::new();
    let mut buf = [0u8; 64];
    let n = enc.data(Stream::Echo, b"hi", true, &mut buf).unwrap();
    let hex: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(&buf[..4], &SYNC);
    assert_eq!(buf[4], 7, "hlen");
    assert_eq!(
        &buf[5..12],
        &[1, 5, 0, 1, 0, 0, 2],
        "version stream kind flags seq arg len"
    );
    assert_eq!(
        u32::from_le_bytes(buf[12..16].try_into().unwrap()),
        crc32c(&buf[4..12])
    );
    assert_eq!(&buf[16..18], b"hi");
    assert_eq!(
        u32::from_le_bytes(buf[18..22].try_into().unwrap()),
        crc32c(&buf[4..18])
    );
    assert_eq!(n, 22);
    assert_eq!(hex, "a55a4f570701050001000002671dc97f68699ad2d653");
    // Hello {versions: [1], window: 65536} and Credit(Log, 32768), as in docs/wire.md.
    let mut enc = Encoder::new();
    let n = enc
        .hello(
            &Hello {
                versions: &[1],
                window: 65536,
            },
            &mut buf,
        )
        .unwrap();
    let hello: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
    let n = enc.credit(Stream::Log, 32768, &mut buf).unwrap();
    let credit: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
    println!("hello: {hello}\ncredit: {credit}");
    assert_eq!(hello, HELLO_HEX);
    assert_eq!(credit, CREDIT_HEX);
}

const HELLO_HEX: &str = "a55a4f5707010002000000050250a15b010180800412b7cfe9";
const CREDIT_HEX: &str = "a55a4f5709010301000080800200bb93ead7c74b6748";

/// The reassembly buffer grows by doubling but never past the limit, so a message of the
/// maximum size costs the limit in memory, not the next power of two.
#[test]
fn reassembly_capacity_stays_within_the_limit() {
    let max = 100_000;
    let mut enc = Encoder::new();
    let mut wire = Vec::new();
    encode_message(&mut enc, Stream::Bundle, &pattern(max, 3), &mut wire);
    let mut dec: Decoder = Decoder::new();
    let (frames, errors) = decode_all(&mut dec, &wire, &[MAX_FRAME]);
    assert!(errors.is_empty(), "{errors:?}");
    let mut re = Reassembler::new(max);
    let mut whole = None;
    for f in &frames {
        let fr = Frame {
            header: f.header,
            payload: &f.payload,
        };
        whole = re.push(&fr).unwrap();
    }
    let (_, m) = whole.expect("complete");
    assert_eq!(m.len(), max);
    assert!(m.capacity() <= max, "capacity {}", m.capacity());
    // One byte more is refused.
    let mut wire = Vec::new();
    encode_message(&mut enc, Stream::Bundle, &pattern(max + 1, 3), &mut wire);
    let (frames, _) = decode_all(&mut dec, &wire, &[MAX_FRAME]);
    let refused = frames.iter().any(|f| {
        let fr = Frame {
            header: f.header,
            payload: &f.payload,
        };
        re.push(&fr) == Err(WireError::MessageTooLarge(Stream::Bundle))
    });
    assert!(refused);
}

#[test]
fn confirmation_messages_roundtrip_and_are_bounded() {
    use omega_wire::msg::confirm;
    let req = ControlMsg::ConfirmRequest {
        version: confirm::VERSION,
        id: 7,
        agent: "booker",
        action: "tool",
        target: "calendar.book",
        rule: "booking_needs_ok",
        summary: r#"{"slot":"9:00"}"#,
        content: [3; 32],
    };
    let ans = ControlMsg::ConfirmAnswer {
        version: confirm::VERSION,
        id: 7,
        approve: true,
    };
    for m in [req, ans] {
        let mut buf = [0u8; 512];
        let body = msg::encode(&m, &mut buf).unwrap();
        let back: ControlMsg = msg::decode_exact(body).unwrap();
        assert_eq!(back, m);
    }
    assert!(confirm::request_ok(1, ["a", "tool", "t", "r"], "{}"));
    assert!(!confirm::request_ok(2, ["a", "tool", "t", "r"], "{}"));
    assert!(!confirm::request_ok(1, ["", "tool", "t", "r"], "{}"));
    let long = "x".repeat(confirm::MAX_NAME + 1);
    assert!(!confirm::request_ok(1, ["a", "tool", &long, "r"], "{}"));
    let summary = "é".repeat(confirm::MAX_SUMMARY);
    assert!(!confirm::request_ok(1, ["a", "tool", "t", "r"], &summary));
    let (cut, was) = confirm::cut(&summary, confirm::MAX_SUMMARY - 1);
    assert!(was && cut.len() < confirm::MAX_SUMMARY && cut.chars().all(|c| c == 'é'));
    assert_eq!(confirm::cut("abc", 3), ("abc", false));
}

#[test]
fn peer_config_and_credential_round_trip() {
    let config = ControlMsg::PeerConfig {
        initiator: true,
        node: "node-a",
        peer: "node-b",
    };
    let credential = [7u8; msg::MAX_PEER_CREDENTIAL];
    let credential = ControlMsg::PeerCredential {
        credential: &credential,
    };
    for m in [config, credential] {
        let mut buf = [0u8; 2 * msg::MAX_PEER_CREDENTIAL];
        let body = msg::encode(&m, &mut buf).unwrap();
        let back: ControlMsg = msg::decode_exact(body).unwrap();
        assert_eq!(back, m);
        // Cut short: refused, never a panic.
        assert!(msg::decode_exact::<ControlMsg>(&body[..body.len() - 1]).is_err());
    }
}
