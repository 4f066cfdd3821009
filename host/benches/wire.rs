//! Throughput of the wire format on the host, and of a host<->simulated-guest echo over a
//! unix socket pair (no QEMU).
//!   cargo bench -p omega-host --bench wire
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use omega_host::{ChannelSession, SessionConfig, echo_roundtrip};
use omega_wire::msg::echo::{REPLY as ECHO_REPLY, REQUEST as ECHO_REQUEST};
use omega_wire::*;

fn encode_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    for size in [64usize, 1024, MAX_PAYLOAD] {
        let payload = vec![0xA7u8; size];
        // A batch of frames, about 1 MiB on the wire.
        let frames = (1 << 20) / (size + 30) + 1;
        let mut wire = vec![0u8; frames * (size + OVERHEAD_MAX)];
        g.throughput(Throughput::Bytes((frames * size) as u64));
        // Encodes the batch into `wire`, returns the bytes used.
        let encode = |wire: &mut [u8]| {
            let mut enc = Encoder::new();
            let mut at = 0;
            for _ in 0..frames {
                at += enc
                    .data(Stream::Echo, &payload, true, &mut wire[at..])
                    .unwrap();
            }
            at
        };
        g.bench_with_input(BenchmarkId::new("encode", size), &size, |b, _| {
            b.iter(|| encode(&mut wire))
        });
        let at = encode(&mut wire);
        let wire = &wire[..at];
        let mut dec: Box<Decoder> = Box::new(Decoder::new());
        g.bench_with_input(BenchmarkId::new("decode", size), &size, |b, _| {
            b.iter(|| {
                let mut n = 0;
                let mut rest = wire;
                while !rest.is_empty() {
                    let t = dec.push(&rest[..rest.len().min(64 * 1024)]);
                    rest = &rest[t..];
                    while let Some(f) = dec.next_frame() {
                        n += f.unwrap().payload.len();
                    }
                }
                assert_eq!(n, frames * size);
            })
        });
    }
    g.finish();
}

/// A guest that answers Echo requests, written straight on the wire crate.
fn echo_guest(mut s: UnixStream) {
    let mut dec: Box<Decoder> = Box::new(Decoder::new());
    let mut enc = Encoder::new();
    let mut out = vec![0u8; MAX_FRAME];
    let h = Hello {
        versions: SUPPORTED_VERSIONS,
        window: INITIAL_WINDOW,
    };
    let n = enc.hello(&h, &mut out).unwrap();
    s.write_all(&out[..n]).unwrap();
    let mut credits: Option<Credits> = None;
    let mut re = Reassembler::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<Vec<u8>> = Vec::new();
    loop {
        // Send what credit allows.
        while let (Some(c), Some(m)) = (credits.as_mut(), pending.first_mut()) {
            match enc.data_with_credit(c, Stream::Echo, m, &mut out) {
                Ok((k, w)) => {
                    s.write_all(&out[..w]).unwrap();
                    m.drain(..k);
                    if m.is_empty() {
                        pending.remove(0);
                    }
                }
                Err(WireError::WouldBlock(_)) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut data = &buf[..n];
        let mut grants = Vec::new();
        while !data.is_empty() {
            let t = dec.push(data);
            data = &data[t..];
            while let Some(f) = dec.next_frame() {
                let f = f.unwrap();
                match f.kind() {
                    Kind::HelloAck => {
                        let a = HelloAck::decode(f.payload).unwrap();
                        credits = Some(Credits::new(INITIAL_WINDOW, a.window));
                    }
                    Kind::Credit => credits
                        .as_mut()
                        .unwrap()
                        .on_credit(f.stream(), f.header.arg)
                        .unwrap(),
                    Kind::Data if f.stream() == Stream::Echo => {
                        let c = credits.as_mut().unwrap();
                        c.on_data(Stream::Echo, f.payload.len()).unwrap();
                        if let Some(g) = c.consumed(Stream::Echo, f.payload.len()) {
                            grants.push(g);
                        }
                        if let Some((_, mut m)) = re.push(&f).unwrap() {
                            assert_eq!(m[0], ECHO_REQUEST);
                            m[0] = ECHO_REPLY;
                            pending.push(m);
                        }
                    }
                    Kind::Data => {
                        let c = credits.as_mut().unwrap();
                        c.on_data(f.stream(), f.payload.len()).unwrap();
                        if let Some(g) = c.consumed(f.stream(), f.payload.len()) {
                            let k = enc.credit(f.stream(), g, &mut out).unwrap();
                            s.write_all(&out[..k]).unwrap();
                        }
                    }
                    _ => {}
                }
            }
        }
        for g in grants {
            let k = enc.credit(Stream::Echo, g, &mut out).unwrap();
            s.write_all(&out[..k]).unwrap();
        }
    }
}

fn session_echo(c: &mut Criterion) {
    let (g, h) = UnixStream::pair().unwrap();
    let guest = std::thread::spawn(move || echo_guest(g));
    let closer = h.try_clone().unwrap();
    let s = ChannelSession::start(h.try_clone().unwrap(), h, SessionConfig::default());
    s.set_closer(move || {
        let _ = closer.shutdown(std::net::Shutdown::Both);
    });
    s.wait_handshake(Duration::from_secs(5)).unwrap();
    let mut grp = c.benchmark_group("session_echo_socketpair");
    for size in [1usize, 1024, 64 * 1024, 1024 * 1024] {
        grp.throughput(Throughput::Bytes(2 * size as u64));
        grp.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter(|| echo_roundtrip(&s, size).unwrap())
        });
    }
    grp.finish();
    s.close();
    guest.join().unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = encode_decode, session_echo
}
criterion_main!(benches);
