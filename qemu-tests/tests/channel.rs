//! The host channel end to end: the guest's virtio console (virtio-mmio, bounce buffers
//! through the shared pool), the wire framing, and the `omega-host` session.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use omega_host::session::{
    ChannelSession, FileLogStore, SessionConfig, SessionEvent, echo_roundtrip,
};
use omega_wire::msg::{self, ControlMsg};
use omega_wire::{MAX_PAYLOAD, Stream};
use qemu_tests::raw_host::{GuestEvent, RawHost};
use qemu_tests::{Boot, EXIT_SUCCESS, image, test_hooks_image};

const SIZES: [usize; 10] = [
    1,
    2,
    100,
    4095,
    4096,
    16_383,
    16_385,
    65_536,
    300_000,
    1 << 20,
];

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(151).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

#[test]
fn raw_virtio_console_echoes_1_byte_to_1_mib() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("channel.sock");
    let vm = Boot::new(test_hooks_image())
        .cmdline("test=virtio-echo")
        .timeout(Duration::from_secs(120))
        .virtio_console(&sock);
    let mut vm = vm.spawn().unwrap();
    let stream = connect(&sock);
    assert!(
        vm.wait_for("omega: virtio console ready", Duration::from_secs(60)),
        "{}",
        vm.serial()
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for (i, size) in SIZES.into_iter().enumerate() {
        let data = pattern(size, i as u8);
        let mut writer = stream.try_clone().unwrap();
        let sent = data.clone();
        let w = std::thread::spawn(move || writer.write_all(&sent).unwrap());
        let mut got = vec![0u8; size];
        (&stream)
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("size {size}: {e}\n{}", vm.serial()));
        w.join().unwrap();
        assert!(got == data, "size {size}: echo differs");
    }
    let out = vm.kill().unwrap();
    assert!(!out.serial.contains("receive error"), "{out}");
}

fn connect(path: &std::path::Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("connecting to {}: {e}", path.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn shutdown_msg() -> Vec<u8> {
    let mut buf = [0u8; 16];
    msg::encode(&ControlMsg::Shutdown { status: 0 }, &mut buf)
        .unwrap()
        .to_vec()
}

/// The test-hooks monitor in echo-all mode with a raw wire host connected to it. The
/// temporary directory holds the socket and must outlive the VM.
fn echo_all_vm(timeout: Duration) -> (tempfile::TempDir, qemu_tests::Running, RawHost) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("channel.sock");
    let boot = Boot::new(test_hooks_image())
        .cmdline("test=echo-all")
        .timeout(timeout);
    let (vm, host) = qemu_tests::boot_with_raw_host(boot, &sock, None).unwrap();
    (dir, vm, host)
}

/// The test-hooks monitor echoes messages on every stream but Control; the sizes cross
/// every frame-size boundary up to 1 MiB.
#[test]
fn framed_echo_on_every_stream_1_byte_to_1_mib() {
    let (_dir, vm, mut host) = echo_all_vm(Duration::from_secs(300));
    // The monitor's own first Log message (its LOG_START entry) comes before any echo.
    let first = host
        .expect_message(Stream::Log, Duration::from_secs(60))
        .unwrap();
    assert!(!first.is_empty());
    for stream in [
        Stream::Inference,
        Stream::Tools,
        Stream::Log,
        Stream::Bundle,
        Stream::Echo,
    ] {
        for (i, size) in SIZES.into_iter().enumerate() {
            // Echo-stream requests carry the request tag the monitor answers.
            let mut data = pattern(size, i as u8 ^ stream as u8);
            if stream == Stream::Echo {
                data[0] = msg::echo::REQUEST;
            }
            host.send(stream, &data).unwrap();
            let got = host
                .expect_message(stream, Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("{stream:?} {size}: {e}\n{}", vm.serial()));
            if stream == Stream::Echo {
                assert_eq!(got[0], msg::echo::REPLY);
                assert!(got[1..] == data[1..], "{stream:?} {size}: echo differs");
            } else {
                assert!(got == data, "{stream:?} {size}: echo differs");
            }
        }
    }
    host.send(Stream::Control, &shutdown_msg()).unwrap();
    let out = vm.finish().unwrap();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    assert!(!out.serial.contains("malformed"), "{out}");
}

/// Garbage, truncated, corrupted and oversized frames: the monitor reports each batch
/// (serial + an Error frame to the host), resynchronises, and keeps serving.
#[test]
fn hostile_frames_are_reported_and_survived() {
    let (_dir, vm, mut host) = echo_all_vm(Duration::from_secs(120));
    let round_trip = |host: &mut RawHost, tag: u8| {
        let m = vec![tag; 1000];
        host.send(Stream::Tools, &m).unwrap();
        assert_eq!(
            host.expect_message(Stream::Tools, Duration::from_secs(30))
                .unwrap(),
            m
        );
    };
    round_trip(&mut host, 1);

    // 1. Plain garbage between frames.
    host.send_raw(&pattern(5000, 7)).unwrap();
    round_trip(&mut host, 2);
    // 2. A frame with its payload CRC broken.
    let mut f = host.encode_data(Stream::Tools, b"corrupted", true).unwrap();
    let last = f.len() - 1;
    f[last] ^= 0xff;
    host.send_raw(&f).unwrap();
    // 3. A frame cut short, followed by a good one.
    let f = host.encode_data(Stream::Tools, &[9u8; 3000], true).unwrap();
    host.send_raw(&f[..f.len() / 2]).unwrap();
    // 4. A header that claims a payload larger than any frame may carry.
    let mut big = omega_wire::Header::new(Stream::Tools, omega_wire::Kind::Data);
    big.len = (MAX_PAYLOAD as u32) * 8;
    let mut hdr = [0u8; omega_wire::MAX_HEADER];
    let hlen = postcard::to_slice(
        &(
            big.version,
            big.stream as u8,
            big.kind as u8,
            big.flags,
            big.seq,
            big.arg,
            big.len,
        ),
        &mut hdr,
    )
    .unwrap()
    .len();
    let mut raw = omega_wire::SYNC.to_vec();
    raw.push(hlen as u8);
    raw.extend_from_slice(&hdr[..hlen]);
    raw.extend_from_slice(&omega_wire::crc32c(&raw[omega_wire::SYNC.len()..]).to_le_bytes());
    host.send_raw(&raw).unwrap();
    host.send_raw(&pattern(64, 3)).unwrap();

    // The monitor still works. (The sequence gaps the broken frames left are reported
    // too; the next whole message arrives intact.)
    let m = vec![5u8; 777];
    let mut echoed = None;
    for _ in 0..3 {
        host.send(Stream::Tools, &m).unwrap();
        if let Ok(got) = host.expect_message(Stream::Tools, Duration::from_secs(10)) {
            echoed = Some(got);
            break;
        }
    }
    assert_eq!(echoed.as_deref(), Some(&m[..]), "{}", vm.serial());
    let errors = host
        .drain_events()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                GuestEvent::Error {
                    code: msg::code::MALFORMED,
                    ..
                }
            )
        })
        .count();
    assert!(errors >= 1, "the monitor sent no MALFORMED error frame");
    host.send(Stream::Control, &shutdown_msg()).unwrap();
    let out = vm.finish().unwrap();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    assert!(
        out.serial
            .contains("omega: channel: malformed input from the host"),
        "{out}"
    );
    assert!(out.serial.contains("garbage"), "{out}");
    assert!(out.serial.contains("CRC"), "{out}");
    assert!(out.serial.contains("oversized"), "{out}");
}

/// A replayed frame and two frames swapped in flight: the monitor's per-stream sequence
/// check drops them and reports them (an `Error` frame per batch of bad input, the gap on the
/// console); no message is delivered twice or out of order,
/// and the stream carries whole messages again right after.
#[test]
fn replayed_and_reordered_frames_are_dropped_and_reported() {
    let (_dir, vm, mut host) = echo_all_vm(Duration::from_secs(120));
    let mut echoed: Vec<Vec<u8>> = Vec::new();
    let collect = |host: &mut RawHost, echoed: &mut Vec<Vec<u8>>, wait: Duration| {
        while let Ok(got) = host.expect_message(Stream::Tools, wait) {
            echoed.push(got);
        }
    };
    // 1. A frame delivered, then the same bytes again.
    let a = host.encode_data(Stream::Tools, b"alpha", true).unwrap();
    host.send_raw(&a).unwrap();
    host.send_raw(&a).unwrap();
    // 2. Two frames of the next messages, sent in the wrong order.
    let b = host.encode_data(Stream::Tools, b"bravo", true).unwrap();
    let c = host.encode_data(Stream::Tools, b"charlie", true).unwrap();
    host.send_raw(&c).unwrap();
    host.send_raw(&b).unwrap();
    // 3. Then ordinary messages until one comes back whole (the sequence resyncs).
    let mut resynced = false;
    for i in 0..4u8 {
        let m = vec![b'd', i];
        host.send(Stream::Tools, &m).unwrap();
        collect(&mut host, &mut echoed, Duration::from_secs(2));
        if echoed.last() == Some(&m) {
            resynced = true;
            break;
        }
    }
    assert!(resynced, "{echoed:?}\n{}", vm.serial());
    let count = |m: &[u8]| echoed.iter().filter(|e| e.as_slice() == m).count();
    assert_eq!(count(b"alpha"), 1, "the replay was delivered: {echoed:?}");
    assert_eq!(count(b"bravo") + count(b"charlie"), 0, "{echoed:?}");
    let sequence_errors = host
        .drain_events()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                GuestEvent::Error {
                    code: msg::code::MALFORMED | msg::code::SEQUENCE,
                    ..
                }
            )
        })
        .count();
    assert!(
        sequence_errors >= 1,
        "no error frame for the dropped frames"
    );
    host.send(Stream::Control, &shutdown_msg()).unwrap();
    let out = vm.finish().unwrap();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    assert!(out.serial.contains("sequence gap"), "{out}");
}

/// The production image with the real host session: handshake, then echo round trips of
/// 1 B..1 MiB, then shutdown on the host's word.
#[test]
fn host_session_echoes_1_byte_to_1_mib() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("channel.sock");
    let mut vm = Boot::new(image())
        .timeout(Duration::from_secs(300))
        .virtio_console(&sock)
        .spawn()
        .unwrap();
    let config = SessionConfig {
        log_store: Some(Box::new(FileLogStore::open(dir.path()).unwrap())),
        ..Default::default()
    };
    let session =
        ChannelSession::connect_unix(&sock, config, Instant::now() + Duration::from_secs(60))
            .unwrap();
    session
        .wait_handshake(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.serial()));
    for size in SIZES {
        echo_roundtrip(&session, size)
            .unwrap_or_else(|e| panic!("echo {size}: {e}\n{}", vm.serial()));
    }
    session
        .send_control(&ControlMsg::Shutdown { status: 0 })
        .unwrap();
    assert!(
        vm.wait_for("omega: host asked to shut down", Duration::from_secs(60)),
        "{}",
        vm.serial()
    );
    let out = vm.finish().unwrap();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
}

/// The production image with the real host session and a bundle: the monitor hashes and
/// logs every file, the host stores the log durably, and the monitor stops once all of it
/// is acknowledged. The stored log verifies against the checkpoint and key it sent.
#[test]
fn host_session_delivers_bundle_and_stores_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let bundle_dir = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle_dir).unwrap();
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend(pattern(70_000, 1));
    std::fs::write(bundle_dir.join("agent.wasm"), &module).unwrap();
    std::fs::write(bundle_dir.join("policy.bin"), b"OMPL policy bytes").unwrap();
    std::fs::write(
        bundle_dir.join("manifest.json"),
        br#"{"version":1,"policy":"policy.bin","agents":[{"name":"triage","module":"agent.wasm"}]}"#,
    )
    .unwrap();
    let bundle = omega_host::bundle::Bundle::read(&bundle_dir).unwrap();

    let boot = Boot::new(image()).timeout(Duration::from_secs(300));
    let (out, events) = qemu_tests::deliver_bundle(boot, dir.path(), bundle).unwrap();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    assert!(
        out.serial
            .contains("omega: bundle: complete, 3 files hashed and logged"),
        "{out}"
    );
    assert!(
        out.serial
            .contains("omega: bundle: agent.wasm (70008 bytes) sha256 "),
        "{out}"
    );
    assert!(
        out.serial
            .contains("omega: bundle delivered and logged (6 entries"),
        "{out}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::Shutdown { status: 0 })),
        "{events:?}"
    );

    // The session challenged the monitor, as `omega run` does: every principal's evidence
    // binds that nonce.
    let nonce = events
        .iter()
        .find_map(|e| match e {
            SessionEvent::ChallengeSent { nonce, .. } => Some(*nonce),
            _ => None,
        })
        .expect("the session sent a Challenge");
    let mut principals = 0;
    for e in &events {
        if let SessionEvent::Evidence { principal, bundle } = e {
            let b = omega_evidence::Bundle::decode(bundle).unwrap();
            assert_eq!(b.report_nonce, nonce, "{principal}");
            principals += 1;
        }
    }
    assert_eq!(
        principals, 7,
        "platform, log, card, bundle, policy, agent:triage, peer: {events:?}"
    );

    // The stored log verifies against the last checkpoint with the key the guest sent.
    let (cp, _) = qemu_tests::verify_stored_log(&events, dir.path());
    assert_eq!(
        cp.size, 6,
        "LOG_START + one entry per bundle file + BUNDLE_ACTIVE + EVIDENCE (the evidence root)"
    );
}

/// Half a frame and then silence: the monitor gives the partial frame up after an idle
/// spell on its own, instead of waiting for more input to complete it.
#[test]
fn truncated_frame_then_silence_does_not_wedge_the_decoder() {
    let (_dir, vm, mut host) = echo_all_vm(Duration::from_secs(120));
    let f = host.encode_data(Stream::Tools, &[9u8; 8000], true).unwrap();
    host.send_raw(&f[..f.len() / 2]).unwrap();
    // No more input: the monitor must notice the stall by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !vm.serial().contains("stream ended inside a frame") {
        assert!(
            Instant::now() < deadline,
            "the partial frame was never given up\n{}",
            vm.serial()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The lost frame left a sequence gap: the frame that reveals it is dropped too (it
    // could be the rest of the lost message) and reported; the message after it is whole.
    host.send(Stream::Tools, &[1u8; 10]).unwrap();
    let m = vec![4u8; 3000];
    host.send(Stream::Tools, &m).unwrap();
    assert_eq!(
        host.expect_message(Stream::Tools, Duration::from_secs(30))
            .unwrap(),
        m,
        "{}",
        vm.serial()
    );
    host.send(Stream::Control, &shutdown_msg()).unwrap();
    let out = vm.finish().unwrap();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    assert!(out.serial.contains("stream ended inside a frame"), "{out}");
}
