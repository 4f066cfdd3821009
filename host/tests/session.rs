mod sim;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omega_bundle::BundleMsg;
use omega_host::*;
use omega_wire::msg::echo::{REPLY as ECHO_REPLY, REQUEST as ECHO_REQUEST};
use omega_wire::msg::{ControlMsg, code};
use omega_wire::*;
use sim::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn handshake_picks_highest_common_version() {
    let (mut g, s) = start(SessionConfig {
        versions: vec![1, 2, 3],
        ..Default::default()
    });
    g.hello(&[5, 2, 1], 4096);
    let ack = g.expect_kind(Kind::HelloAck, T);
    let a = HelloAck::decode(&ack.payload).unwrap();
    assert_eq!(a.version, 2);
    assert_eq!(a.versions, &[1, 2, 3]);
    assert_eq!(a.window, INITIAL_WINDOW);
    assert_eq!(s.wait_handshake(T).unwrap(), 2);
}

#[test]
fn handshake_without_common_version_fails_cleanly() {
    let (mut g, s) = start(SessionConfig::default());
    g.hello(&[7, 9], 4096);
    let ack = g.expect_kind(Kind::HelloAck, T);
    assert_eq!(HelloAck::decode(&ack.payload).unwrap().version, 0);
    let (st, c, m) = g.recv_error(T).unwrap();
    assert_eq!((st, c), (Stream::Control, code::NO_COMMON_VERSION));
    assert!(m.contains("no common version"), "{m}");
    let close = g.expect_kind(Kind::Close, T);
    assert_eq!(close.header.stream, Stream::Control);
    match s.wait_handshake(T) {
        Err(SessionError::NoCommonVersion(v)) => assert_eq!(v, vec![7, 9]),
        other => panic!("{other:?}"),
    }
    // The host ended the session.
    assert!(s.wait_event(|e| *e == SessionEvent::Ended, T).is_some());
}

#[test]
fn frames_before_hello_are_refused() {
    let (mut g, s) = start(SessionConfig {
        echo: true,
        ..Default::default()
    });
    g.frame(|e, b| e.data(Stream::Echo, b"Qhi", true, b));
    let (st, c, _) = g.recv_error(T).unwrap();
    assert_eq!((st, c), (Stream::Echo, code::PROTOCOL));
    g.hello(&[1], 4096);
    g.expect_kind(Kind::HelloAck, T);
    assert_eq!(s.wait_handshake(T).unwrap(), 1);
}

/// Records appends and syncs; sync is slow so a premature Ack would be visible.
#[derive(Default)]
struct Journal {
    appended: Vec<u8>,
    synced_len: usize,
    syncs: usize,
    fail_sync: bool,
    slow_sync: bool,
    /// (name, contents, log bytes synced when it was stored)
    files: Vec<(String, Vec<u8>, usize)>,
    /// Lengths the log was cut back to after a failure.
    truncated: Vec<u64>,
}

struct RecordingStore(Arc<Mutex<Journal>>);

impl LogStore for RecordingStore {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.lock().unwrap().appended.extend_from_slice(bytes);
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        let slow = self.0.lock().unwrap().slow_sync;
        std::thread::sleep(if slow {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(5)
        });
        let mut j = self.0.lock().unwrap();
        if j.fail_sync {
            return Err(std::io::Error::other("disk on fire"));
        }
        j.synced_len = j.appended.len();
        j.syncs += 1;
        Ok(())
    }
    fn put_file(&mut self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let mut j = self.0.lock().unwrap();
        let synced = j.synced_len;
        j.files.push((name.to_string(), bytes.to_vec(), synced));
        Ok(())
    }
    fn put_evidence(&mut self, file: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.put_file(&format!("evidence/{file}"), bytes)
    }
    fn put_card(&mut self, file: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.put_file(&format!("cards/{file}"), bytes)
    }
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        let mut j = self.0.lock().unwrap();
        j.appended.truncate(len as usize);
        j.truncated.push(len);
        Ok(())
    }
}

/// A session whose log goes to a [`RecordingStore`] of `journal`, past the handshake.
fn recorded_session(journal: Journal) -> (Arc<Mutex<Journal>>, SimGuest, ChannelSession) {
    let journal = Arc::new(Mutex::new(journal));
    let cfg = SessionConfig {
        log_store: Some(Box::new(RecordingStore(journal.clone()))),
        ..Default::default()
    };
    let (g, s) = start_ready(cfg, INITIAL_WINDOW);
    (journal, g, s)
}

#[test]
fn log_is_synced_before_it_is_acked() {
    let (journal, mut g, s) = recorded_session(Journal::default());
    let mut sent = Vec::new();
    let mut last_seq = 0;
    for i in 0..200u32 {
        let entry: Vec<u8> = (0..(i as usize * 37) % 3000 + 1)
            .map(|k| (k as u32 ^ i) as u8)
            .collect();
        last_seq = g.enc.next_seq(Stream::Log);
        g.send_message(Stream::Log, &entry, T);
        sent.extend_from_slice(&entry);
    }
    // Every Ack must be covered by a completed sync at the moment the guest sees it.
    let mut acked = 0u64;
    let mut acks = 0;
    while acked < sent.len() as u64 {
        let f = g.expect_kind(Kind::Ack, T);
        assert_eq!(f.header.stream, Stream::Log);
        let synced = journal.lock().unwrap().synced_len as u64;
        assert!(
            f.header.arg <= synced,
            "ack for {} bytes but only {synced} synced",
            f.header.arg
        );
        assert!(f.header.arg > acked, "acks advance");
        acked = f.header.arg;
        acks += 1;
    }
    assert_eq!(acked, sent.len() as u64);
    assert_eq!(journal.lock().unwrap().appended, sent);
    let ev = s.wait_event(
        |e| matches!(e, SessionEvent::LogStored { total, .. } if *total == sent.len() as u64),
        T,
    );
    assert_eq!(
        ev,
        Some(SessionEvent::LogStored {
            seq: last_seq,
            total: sent.len() as u64
        })
    );
    assert!(acks >= 1);
    drop(s);
}

/// A failed sync is never acknowledged, the log is cut back to what was stored before, and
/// the session ends (the guest sees the channel close instead of waiting for an Ack).
#[test]
fn failed_sync_is_never_acked() {
    let (journal, mut g, s) = recorded_session(Journal {
        fail_sync: true,
        ..Default::default()
    });
    g.send_message(Stream::Log, b"entry-1", T);
    let mut errors = 0;
    while let Some(f) = g.next(Duration::from_millis(500)) {
        assert_ne!(
            f.header.kind,
            Kind::Ack,
            "nothing was stored, nothing may be acked"
        );
        if f.header.kind == Kind::Error {
            let b = msg::ErrorBody::decode(&f.payload).unwrap();
            assert_eq!((f.header.stream, b.code), (Stream::Log, code::BACKEND));
            errors += 1;
        }
    }
    assert!(errors >= 1);
    assert!(s.events().iter().any(|e| matches!(
        e,
        SessionEvent::BackendError {
            stream: Stream::Log,
            ..
        }
    )));
    assert!(
        s.wait_event(|e| *e == SessionEvent::Ended, T).is_some(),
        "the session ends"
    );
    assert!(
        s.events()
            .iter()
            .any(|e| matches!(e, SessionEvent::LogStorageFailed { kept: 0, .. }))
    );
    assert_eq!(journal.lock().unwrap().truncated, [0]);
    assert!(journal.lock().unwrap().appended.is_empty());
}

#[test]
fn file_log_store_holds_exactly_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileLogStore::open(dir.path()).unwrap();
    let path = store.path.clone();
    let cfg = SessionConfig {
        log_store: Some(Box::new(store)),
        ..Default::default()
    };
    let (mut g, s) = start_ready(cfg, INITIAL_WINDOW);
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    g.send_message(Stream::Log, &big, T);
    loop {
        let f = g.expect_kind(Kind::Ack, T);
        // At the time of the Ack, the file already holds the bytes.
        assert!(std::fs::metadata(&path).unwrap().len() >= f.header.arg);
        if f.header.arg == big.len() as u64 {
            break;
        }
    }
    s.close();
    assert_eq!(std::fs::read(&path).unwrap(), big);
}

fn write_bundle(dir: &std::path::Path, big: usize) -> Vec<(String, Vec<u8>)> {
    let manifest = br#"{"version":1,"policy":"policy.bin","agents":[{"name":"summarizer","module":"summarizer.wasm"},{"name":"triage","module":"triage.wasm"},{"name":"triage2","module":"triage.wasm"}]}"#;
    let policy = b"compiled policy bytes".to_vec();
    let mut a = b"\0asm\x01\0\0\0".to_vec();
    a.extend((0..big).map(|i| (i * 7) as u8));
    let b = b"\0asm\x01\0\0\0tiny".to_vec();
    std::fs::write(dir.join("manifest.json"), manifest).unwrap();
    std::fs::write(dir.join("policy.bin"), &policy).unwrap();
    std::fs::write(dir.join("summarizer.wasm"), &a).unwrap();
    std::fs::write(dir.join("triage.wasm"), &b).unwrap();
    vec![
        ("manifest.json".into(), manifest.to_vec()),
        ("policy.bin".into(), policy),
        ("summarizer.wasm".into(), a),
        ("triage.wasm".into(), b),
    ]
}

#[test]
fn bundle_is_delivered_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    // Larger than the guest's window: delivery depends on the guest granting credit.
    let expect = write_bundle(dir.path(), 300_000);
    let bundle = Bundle::read(dir.path()).unwrap();
    let (mut g, s) = start_ready(
        SessionConfig {
            bundle: Some(bundle),
            ..Default::default()
        },
        16 * 1024,
    );
    let m = g.recv_message(Stream::Bundle, T).unwrap();
    let total: u64 = expect.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(
        msg::decode_exact::<BundleMsg>(&m).unwrap(),
        BundleMsg::Begin {
            files: 4,
            total_bytes: total
        }
    );
    for (name, bytes) in &expect {
        let m = g.recv_message(Stream::Bundle, T).unwrap();
        assert_eq!(
            msg::decode_exact::<BundleMsg>(&m).unwrap(),
            BundleMsg::File {
                name,
                size: bytes.len() as u64
            }
        );
        let content = g.recv_message(Stream::Bundle, T).unwrap();
        assert_eq!(&content, bytes, "{name}");
    }
    let m = g.recv_message(Stream::Bundle, T).unwrap();
    assert_eq!(msg::decode_exact::<BundleMsg>(&m).unwrap(), BundleMsg::End);
    let c = g.expect_kind(Kind::Close, T);
    assert_eq!(c.header.stream, Stream::Bundle);
    assert!(
        s.wait_event(
            |e| matches!(e, SessionEvent::BundleSent { files: 4, .. }),
            T
        )
        .is_some()
    );
}

/// A module larger than one content message arrives in `MAX_CHUNK` pieces, and the
/// monitor's own receiver (`omega-bundle`) takes the whole bundle.
#[test]
fn a_large_bundle_reaches_the_monitors_receiver_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let expect = write_bundle(dir.path(), 2 * omega_bundle::MAX_CHUNK + 10);
    let bundle = Bundle::read(dir.path()).unwrap();
    let (mut g, _s) = start_ready(
        SessionConfig {
            bundle: Some(bundle),
            ..Default::default()
        },
        INITIAL_WINDOW,
    );
    let mut r = omega_bundle::BundleReceiver::default();
    let mut messages = 0;
    loop {
        let m = g.recv_message(Stream::Bundle, T).unwrap();
        assert!(m.len() <= omega_bundle::MAX_CHUNK);
        messages += 1;
        if r.on_message(&m).unwrap() == omega_bundle::Progress::Finished {
            break;
        }
    }
    // Begin, 4 headers, 1 + 3 + 1 + 1 content messages, End.
    assert_eq!(messages, 12);
    let got: Vec<_> = r
        .files
        .iter()
        .map(|f| (f.name.clone(), f.bytes.clone()))
        .collect();
    assert_eq!(got, expect);
}

#[test]
fn no_bundle_closes_the_bundle_stream() {
    let (mut g, _s) = start_ready(SessionConfig::default(), 4096);
    let c = g.expect_kind(Kind::Close, T);
    assert_eq!(c.header.stream, Stream::Bundle);
}

#[test]
fn bad_bundles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), 10);
    let w = |m: &str| std::fs::write(dir.path().join("manifest.json"), m).unwrap();
    for bad in [
        r#"{"version":1,"policy":"../etc/passwd","agents":[{"name":"a","module":"triage.wasm"}]}"#,
        r#"{"version":1,"policy":"policy.bin","agents":[{"name":"a","module":"/abs.wasm"}]}"#,
        r#"{"version":1,"policy":"policy.bin","agents":[{"name":"a","module":"policy.bin"}]}"#,
        r#"{"version":1,"policy":"policy.bin","agents":[{"name":"a","module":"missing.wasm"}]}"#,
        r#"{"version":2,"policy":"policy.bin","agents":[{"name":"a","module":"triage.wasm"}]}"#,
        r#"{"version":1,"policy":"policy.bin","agents":[]}"#,
        r#"{"version":1,"policy":"policy.bin","agents":[{"name":"a","module":"triage.wasm"},{"name":"a","module":"triage.wasm"}]}"#,
        r#"{"version":1,"policy":"policy.bin","agents":[{"name":"a b","module":"triage.wasm"}]}"#,
        r#"{"version":1,"policy":"policy.bin","agents":[{"name":"a","module":"triage.wasm"}],"extra":1}"#,
        r#"not json"#,
    ] {
        w(bad);
        assert!(Bundle::read(dir.path()).is_err(), "{bad}");
    }
    std::fs::write(dir.path().join("fake.wasm"), b"MZ not wasm").unwrap();
    w(r#"{"version":1,"policy":"policy.bin","agents":[{"name":"a","module":"fake.wasm"}]}"#);
    assert!(Bundle::read(dir.path()).is_err());
    w(r#"{"version":1,"policy":"policy.bin","agents":[{"name":"a","module":"triage.wasm"}]}"#);
    assert_eq!(Bundle::read(dir.path()).unwrap().files.len(), 3);
}

#[test]
fn streams_are_routed_to_their_backends() {
    // Inference: a TCP "proxy" that answers each request with a reply.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let proxy = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut got = vec![0u8; 40_000];
        c.read_exact(&mut got).unwrap();
        c.write_all(b"proxy-reply:").unwrap();
        c.write_all(&got[..100]).unwrap();
        got
    });
    let cfg = SessionConfig {
        proxy: Some(addr),
        // The tool gateway: a line filter that wraps each request.
        tool_gateway: Some(r#"sed -u -e 's/^/{"result":/' -e 's/$/}/'"#.into()),
        echo: true,
        ..Default::default()
    };
    let (mut g, s) = start_ready(cfg, INITIAL_WINDOW);
    // Inference: opaque bytes, more than one frame.
    let req: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
    g.send_message(Stream::Inference, &req, T);
    let mut reply = Vec::new();
    while reply.len() < 112 {
        reply.extend(g.recv_message(Stream::Inference, T).unwrap());
    }
    assert_eq!(&reply[..12], b"proxy-reply:");
    assert_eq!(&reply[12..], &req[..100]);
    assert_eq!(proxy.join().unwrap(), req);
    // Tools: one message = one line.
    g.send_message(
        Stream::Tools,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        T,
    );
    let r = g.recv_message(Stream::Tools, T).unwrap();
    assert_eq!(
        r,
        br#"{"result":{"jsonrpc":"2.0","id":1,"method":"tools/list"}}"#
    );
    // Echo.
    let mut e = vec![ECHO_REQUEST];
    e.extend_from_slice(&[0xEE; 70_000]);
    g.send_message(Stream::Echo, &e, T);
    let back = g.recv_message(Stream::Echo, T).unwrap();
    assert_eq!(back[0], ECHO_REPLY);
    assert_eq!(&back[1..], &e[1..]);
    // Control: a notice and a shutdown; an Error frame from the guest.
    let mut b = [0u8; 64];
    let n = msg::encode(
        &ControlMsg::Notice {
            text: "agents loaded",
        },
        &mut b,
    )
    .unwrap()
    .to_vec();
    g.send_message(Stream::Control, &n, T);
    g.frame(|e, b| {
        e.error(
            Stream::Tools,
            code::INTERNAL,
            "tool result rejected by policy",
            b,
        )
    });
    let n = msg::encode(&ControlMsg::Shutdown { status: 0 }, &mut b)
        .unwrap()
        .to_vec();
    g.send_message(Stream::Control, &n, T);
    assert!(
        s.wait_event(|e| *e == SessionEvent::Shutdown { status: 0 }, T)
            .is_some()
    );
    let ev = s.events();
    assert!(ev.contains(&SessionEvent::Notice("agents loaded".into())));
    assert!(ev.contains(&SessionEvent::GuestError {
        stream: Stream::Tools,
        code: code::INTERNAL,
        message: "tool result rejected by policy".into()
    }));
}

#[test]
fn unserved_streams_answer_with_errors() {
    let (mut g, _s) = start_ready(SessionConfig::default(), INITIAL_WINDOW);
    for (stream, what) in [
        (Stream::Inference, "proxy"),
        (Stream::Tools, "tool gateway"),
        (Stream::Log, "log"),
        (Stream::Echo, "echo"),
    ] {
        let mut m = vec![ECHO_REQUEST];
        m.extend_from_slice(b"x");
        g.send_message(stream, &m, T);
        let (st, c, msg) = g.recv_error(T).unwrap();
        assert_eq!((st, c), (stream, code::UNAVAILABLE), "{msg}");
        assert!(msg.contains(what), "{msg}");
    }
    // Bundle is host-to-guest only.
    g.send_message(Stream::Bundle, b"x", T);
    let (st, c, _) = g.recv_error(T).unwrap();
    assert_eq!((st, c), (Stream::Bundle, code::PROTOCOL));
    // A refused stream still returns credit: the guest is not wedged by it.
    for _ in 0..100 {
        g.send_message(Stream::Inference, &[0u8; 4096], T);
    }
}

#[test]
fn garbage_gets_error_frames_and_the_session_recovers() {
    let (mut g, s) = start_ready(
        SessionConfig {
            echo: true,
            ..Default::default()
        },
        INITIAL_WINDOW,
    );
    g.send_raw(b"\xA5\x5AOW\x07garbage garbage garbage");
    g.send_raw(&[0u8; 1000]);
    let (st, c, m) = g.recv_error(T).unwrap();
    assert_eq!((st, c), (Stream::Control, code::MALFORMED), "{m}");
    g.send_message(Stream::Echo, b"Qstill alive", T);
    assert_eq!(g.recv_message(Stream::Echo, T).unwrap(), b"Rstill alive");
    assert!(
        s.events()
            .iter()
            .any(|e| matches!(e, SessionEvent::WireError(_)))
    );
    // A frame with a broken CRC in the middle of good ones.
    let mut b = vec![0u8; MAX_FRAME];
    let n = g
        .enc
        .data(Stream::Echo, b"Qcorrupted", true, &mut b)
        .unwrap();
    b[n - 6] ^= 1;
    g.credits
        .as_mut()
        .unwrap()
        .try_send(Stream::Echo, 10)
        .unwrap();
    g.send_raw(&b[..n]);
    // The host sees a sequence gap on Echo (the corrupted frame is lost) and reports it; the
    // next message after the gap's END goes through.
    g.send_message(Stream::Echo, b"Qafter", T);
    g.send_message(Stream::Echo, b"Qafter2", T);
    let mut got = Vec::new();
    while let Some(m) = g.recv_message(Stream::Echo, Duration::from_secs(2)) {
        got.push(m);
    }
    assert!(got.contains(&b"Rafter2".to_vec()), "{got:?}");
    assert!(!got.iter().any(|m| m == b"Rcorrupted"));
}

#[test]
fn over_credit_data_is_refused() {
    // The host's log storage is slow (2 s per sync), so it returns no credit meanwhile and
    // the guest's window stays exactly 64 KiB.
    let (journal, mut g, _s) = recorded_session(Journal {
        slow_sync: true,
        ..Default::default()
    });
    // Ignore credit: send 112 KiB in one go on Log without waiting.
    let mut b = vec![0u8; MAX_FRAME];
    let chunk = vec![0x11u8; MAX_PAYLOAD];
    for i in 0..7 {
        let n = g.enc.data(Stream::Log, &chunk, i == 6, &mut b).unwrap();
        g.send_raw(&b[..n]);
    }
    let mut refused = 0;
    while let Some((st, c, _)) = g.recv_error(Duration::from_secs(1)) {
        if (st, c) == (Stream::Log, code::CREDIT) {
            refused += 1;
        }
    }
    assert_eq!(refused, 3, "frames 5, 6 and 7 exceed the window");
    // Only the 4 frames within credit were stored.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(journal.lock().unwrap().appended.len(), 4 * MAX_PAYLOAD);
}

#[test]
fn host_blocks_the_guest_when_the_guest_stops_draining() {
    // The guest grants the host only 2 KiB on Echo and then stops reading. The host's echo
    // replies stall, so it stops returning credit, so the guest runs out and gets WouldBlock.
    let (mut g, s) = start_ready(
        SessionConfig {
            echo: true,
            ..Default::default()
        },
        2048,
    );
    g.set_auto_grant(false);
    let mut req = vec![ECHO_REQUEST];
    req.extend_from_slice(&[0x42; 999]);
    let mut sent = 0usize;
    let mut messages = 0usize;
    let mut blocked = false;
    for _ in 0..1000 {
        let n = g.try_send(Stream::Echo, &req);
        sent += n;
        if n < req.len() {
            blocked = true;
            break;
        }
        messages += 1;
        // Let credit frames (if any) arrive, without consuming data.
        g.pump();
    }
    assert!(blocked, "the guest was never blocked");
    // Never more than the window the host granted plus what it returned for the 2 replies
    // it managed to send (which is 0: grants come at half a window).
    assert!(sent <= INITIAL_WINDOW as usize, "sent {sent}");
    assert!(sent >= INITIAL_WINDOW as usize - req.len(), "sent {sent}");
    // Still blocked a while later.
    std::thread::sleep(Duration::from_millis(300));
    g.pump();
    assert_eq!(g.credits.as_ref().unwrap().sendable(Stream::Echo, 1000), 0);
    // Now the guest drains: everything flows, nothing was dropped.
    g.set_auto_grant(true);
    let partial = sent - messages * req.len();
    let rest = req[partial..].to_vec();
    g.send_message(Stream::Echo, &rest, T);
    messages += 1;
    for _ in 0..20 {
        g.send_message(Stream::Echo, &req, T);
        messages += 1;
    }
    for i in 0..messages {
        let m = g
            .recv_message(Stream::Echo, T)
            .unwrap_or_else(|| panic!("reply {i} missing"));
        assert_eq!(m.len(), req.len());
        assert_eq!(m[0], ECHO_REPLY);
    }
    assert!(!s.is_closed());
}

#[test]
fn echo_roundtrip_measures_a_guest_echo() {
    let (g, s) = start_ready(SessionConfig::default(), INITIAL_WINDOW);
    // The guest echoes requests back in a thread.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let guest = std::thread::spawn(move || {
        let mut g = g;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some(mut m) = g.recv_message(Stream::Echo, Duration::from_millis(50)) {
                assert_eq!(m[0], ECHO_REQUEST);
                m[0] = ECHO_REPLY;
                g.send_message(Stream::Echo, &m, T);
            }
        }
    });
    for size in [0, 1, 100, 16 * 1024, 64 * 1024, 1024 * 1024] {
        let d = echo_roundtrip(&s, size).unwrap();
        assert!(d < T, "{size}: {d:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    guest.join().unwrap();
}

#[test]
fn checkpoint_is_stored_after_the_entries_it_covers() {
    let (journal, mut g, s) = recorded_session(Journal::default());
    let mut b = [0u8; 256];
    let k = msg::encode(
        &ControlMsg::LogKey {
            vkey: "omega+1234abcd+AQID",
        },
        &mut b,
    )
    .unwrap()
    .to_vec();
    g.send_message(Stream::Control, &k, T);
    let entries = vec![0x33u8; 50_000];
    g.send_message(Stream::Log, &entries, T);
    let c = msg::encode(
        &ControlMsg::Checkpoint {
            note: "omega\n1\nroot\n\n- sig\n",
        },
        &mut b,
    )
    .unwrap()
    .to_vec();
    g.send_message(Stream::Control, &c, T);
    assert!(
        s.wait_event(|e| *e == SessionEvent::CheckpointStored, T)
            .is_some()
    );
    let j = journal.lock().unwrap();
    assert_eq!(j.files[0].0, "log.vkey");
    assert_eq!(j.files[0].1, b"omega+1234abcd+AQID");
    assert_eq!(j.files[1].0, "checkpoint.note");
    assert_eq!(
        j.files[1].2, 50_000,
        "the checkpoint waited for its entries to be durable"
    );
}

#[test]
fn a_stalled_truncated_frame_is_given_up_after_idle_time() {
    let (mut g, s) = start_ready(
        SessionConfig {
            echo: true,
            ..Default::default()
        },
        INITIAL_WINDOW,
    );
    // A frame whose intact header claims 1000 payload bytes, cut after 10 of them, followed
    // by a good echo request; then silence. Without the idle resync the decoder would wait
    // for the 1000 bytes forever and the request would never be answered.
    let mut b = vec![0u8; MAX_FRAME];
    let n = g
        .enc
        .data(Stream::Tools, &[7u8; 1000], true, &mut b)
        .unwrap();
    let cut = n - 1000 - 4 + 10;
    g.send_raw(&b[..cut]);
    g.send_message(Stream::Echo, b"Qbehind", T);
    let t0 = std::time::Instant::now();
    let mut malformed = false;
    loop {
        let f = g.next(T).expect("no reply");
        if f.header.kind == Kind::Error {
            let b = msg::ErrorBody::decode(&f.payload).unwrap();
            malformed |= (f.header.stream, b.code) == (Stream::Control, code::MALFORMED);
        }
        if (f.header.kind, f.header.stream) == (Kind::Data, Stream::Echo) {
            assert_eq!(f.payload, b"Rbehind");
            break;
        }
    }
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "answered before the idle time: {waited:?}"
    );
    assert!(malformed, "the truncation was reported to the guest");
    assert!(
        s.events()
            .iter()
            .any(|e| matches!(e, SessionEvent::WireError(m) if m.contains("ended inside a frame")))
    );
}

#[test]
fn the_challenge_goes_before_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), 10);
    let nonce = [0x5a; 32];
    let (mut g, s) = start_ready(
        SessionConfig {
            bundle: Some(Bundle::read(dir.path()).unwrap()),
            challenge: Some(Challenge {
                nonce,
                simulated_psp: None,
            }),
            ..Default::default()
        },
        INITIAL_WINDOW,
    );
    let first = loop {
        let f = g.next(T).expect("a frame");
        if f.header.kind == Kind::Data {
            break f;
        }
    };
    assert_eq!(first.header.stream, Stream::Control, "Challenge first");
    assert_eq!(
        msg::decode_exact::<ControlMsg>(&first.payload).unwrap(),
        ControlMsg::Challenge {
            nonce,
            simulated_psp: false
        }
    );
    assert!(
        g.recv_message(Stream::Bundle, T).is_some(),
        "then the bundle"
    );
    let sent = SessionEvent::ChallengeSent {
        nonce,
        simulated_psp: false,
    };
    assert!(s.wait_event(|e| *e == sent, T).is_some());
}

fn control(m: &ControlMsg<'_>) -> Vec<u8> {
    let mut b = vec![0u8; 8192];
    msg::encode(m, &mut b).unwrap().to_vec()
}

#[test]
fn evidence_is_stored_per_principal_after_the_log_before_it() {
    let (journal, mut g, s) = recorded_session(Journal::default());
    g.send_message(Stream::Log, &[0x33u8; 20_000], T);
    let ev = |principal, bundle| control(&ControlMsg::Evidence { principal, bundle });
    g.send_message(Stream::Control, &ev("agent:triage", b"evidence 1"), T);
    g.send_message(Stream::Control, &ev("log", b"evidence 2"), T);
    for p in ["agent:triage", "log"] {
        let stored = |e: &SessionEvent| matches!(e, SessionEvent::EvidenceStored { principal, .. } if principal == p);
        assert!(s.wait_event(stored, T).is_some(), "{p}");
    }
    let j = journal.lock().unwrap();
    assert_eq!(
        (j.files[0].0.as_str(), j.files[0].1.as_slice(), j.files[0].2),
        ("evidence/agent_triage.bin", &b"evidence 1"[..], 20_000),
        "stored once the log before it was durable"
    );
    assert_eq!(j.files[1].0, "evidence/log.bin");
}

#[test]
fn evidence_with_a_principal_that_is_no_file_name_is_refused() {
    let (journal, mut g, s) = recorded_session(Journal::default());
    let long = "a".repeat(201);
    for bad in [
        "../../etc/passwd",
        "a/b",
        ".hidden",
        "",
        "agent:\x1b[2J",
        &long,
    ] {
        let m = control(&ControlMsg::Evidence {
            principal: bad,
            bundle: b"x",
        });
        g.send_message(Stream::Control, &m, T);
        let (st, c, why) = g.recv_error(T).expect("refused");
        assert_eq!((st, c), (Stream::Control, code::PROTOCOL), "{bad:?}: {why}");
        assert!(why.contains("evidence refused"), "{why}");
    }
    // 200 bytes is still a name.
    let ok = "b".repeat(200);
    let m = control(&ControlMsg::Evidence {
        principal: &ok,
        bundle: b"x",
    });
    g.send_message(Stream::Control, &m, T);
    let stored = |e: &SessionEvent| matches!(e, SessionEvent::EvidenceStored { .. });
    assert!(s.wait_event(stored, T).is_some());
    let j = journal.lock().unwrap();
    assert_eq!(j.files.len(), 1, "only the valid name was stored");
    assert_eq!(j.files[0].0, format!("evidence/{ok}.bin"));
}

/// A signed card of agent `agent` (any key: the launcher does not verify, the verifier does).
fn card_of(agent: &str) -> String {
    omega_agent_card::CardKey::from_seed([4; 32])
        .unwrap()
        .sign(&omega_agent_card::CardBody {
            agent: agent.into(),
            description: "d".into(),
            version: "1".into(),
            publisher: "p".into(),
            skills: omega_agent_card::CardBody::default_skills(agent, "d"),
            module_hash: [1; 32],
            boot_id: [2; 16],
            instance_of: None,
        })
        .unwrap()
}

#[test]
fn agent_cards_are_stored_as_cards_agent_json_and_bad_ones_refused() {
    let (journal, mut g, s) = recorded_session(Journal::default());
    g.send_message(Stream::Log, &[0x33u8; 5_000], T);
    let triage = card_of("triage");
    let m = control(&ControlMsg::AgentCard {
        agent: "triage",
        card: &triage,
    });
    g.send_message(Stream::Control, &m, T);
    let stored = |e: &SessionEvent| matches!(e, SessionEvent::CardStored { agent, file } if agent == "triage" && file == "triage.json");
    assert!(s.wait_event(stored, T).is_some());
    // Refused: names that are no plain file name, a card of another agent, no card at all.
    let other = card_of("other");
    for (agent, card) in [
        ("../x", triage.as_str()),
        (".hidden", triage.as_str()),
        ("a/b", triage.as_str()),
        ("triage", other.as_str()),
        ("triage", "{\"name\":\"triage\"}"),
        ("triage", "not json"),
    ] {
        g.send_message(
            Stream::Control,
            &control(&ControlMsg::AgentCard { agent, card }),
            T,
        );
        let (st, c, why) = g.recv_error(T).expect("refused");
        assert_eq!(
            (st, c),
            (Stream::Control, code::PROTOCOL),
            "{agent:?}: {why}"
        );
        assert!(why.contains("agent card refused"), "{why}");
    }
    let j = journal.lock().unwrap();
    assert_eq!(j.files.len(), 1, "only the valid card was stored");
    assert_eq!(
        (j.files[0].0.as_str(), j.files[0].1.as_slice(), j.files[0].2),
        ("cards/triage.json", triage.as_bytes(), 5_000),
        "stored once the log before it was durable"
    );
}

#[test]
fn guest_requests_without_a_simulated_psp_are_answered_with_an_error() {
    let (mut g, s) = start_ready(SessionConfig::default(), INITIAL_WINDOW);
    let m = control(&ControlMsg::GuestRequest {
        message: &[0u8; 0x60 + 64],
    });
    g.send_message(Stream::Control, &m, T);
    let (st, c, why) = g.recv_error(T).expect("refused");
    assert_eq!((st, c), (Stream::Control, code::UNAVAILABLE), "{why}");
    assert!(why.contains("--simulated-psp"), "{why}");
    assert!(
        s.wait_event(|e| *e == SessionEvent::GuestRequest { ok: false }, T)
            .is_some()
    );
}

/// The monitor's report request, played by the test: sealed with the lab VMPCK0 like the
/// test-hooks image does, answered by the session's simulated PSP with a report carrying
/// the measurement and REPORT_DATA.
#[test]
fn the_simulated_psp_answers_a_report_request() {
    use sev_snp::guest_msg::{self, MSG_HDR_SIZE, MSG_PAGE_SIZE, MsgHeader, ReportRequest};
    let measurement = [0x4d; 48];
    let (mut g, s) = start_ready(
        SessionConfig {
            challenge: Some(Challenge {
                nonce: [1; 32],
                simulated_psp: Some(measurement),
            }),
            ..Default::default()
        },
        INITIAL_WINDOW,
    );
    let challenge = g.recv_message(Stream::Control, T).unwrap();
    assert_eq!(
        msg::decode_exact::<ControlMsg>(&challenge).unwrap(),
        ControlMsg::Challenge {
            nonce: [1; 32],
            simulated_psp: true
        }
    );
    let payload = ReportRequest::vcek([0x77; 64]).encode();
    let header = |seqno, msg_type, msg_sz| MsgHeader {
        seqno,
        msg_type,
        msg_version: 1,
        msg_sz,
        vmpck: 0,
    };
    let mut page = [0u8; MSG_PAGE_SIZE];
    let req = header(1, guest_msg::msg_type::REPORT_REQ, payload.len() as u16);
    guest_msg::seal_message(&sev_snp::lab::VMPCK0, &req, &payload, &mut page).unwrap();
    let m = control(&ControlMsg::GuestRequest {
        message: &page[..MSG_HDR_SIZE + payload.len()],
    });
    g.send_message(Stream::Control, &m, T);
    let answer = g.recv_message(Stream::Control, T).expect("a GuestResponse");
    let ControlMsg::GuestResponse { message } = msg::decode_exact::<ControlMsg>(&answer).unwrap()
    else {
        panic!("not a GuestResponse");
    };
    let mut page = [0u8; MSG_PAGE_SIZE];
    page[..message.len()].copy_from_slice(message);
    let rsp = header(
        2,
        guest_msg::msg_type::REPORT_RSP,
        guest_msg::REPORT_RSP_SIZE as u16,
    );
    let n = guest_msg::open_message(&sev_snp::lab::VMPCK0, &rsp, &mut page).unwrap();
    let report = guest_msg::parse_report_response(&page[MSG_HDR_SIZE..MSG_HDR_SIZE + n]).unwrap();
    assert_eq!(&report[0x50..0x90], &[0x77; 64], "REPORT_DATA");
    assert_eq!(&report[0x90..0xC0], &measurement, "MEASUREMENT");
    assert!(
        s.wait_event(|e| *e == SessionEvent::GuestRequest { ok: true }, T)
            .is_some()
    );
    // A replayed request (same sequence number) is refused, not answered.
    g.send_message(Stream::Control, &m, T);
    let (st, c, why) = g.recv_error(T).expect("refused");
    assert_eq!((st, c), (Stream::Control, code::PROTOCOL), "{why}");
}

/// The monitor's confirmation requests are answered on Control with their id: from the
/// answers file (in order, by tool), and denied when out of the contract's bounds, when no
/// line matches, or by default (no terminal, no file).
#[test]
fn confirmation_requests_are_answered_by_id_and_fail_closed() {
    use omega_host::session::confirm::{Answers, Operator};
    use omega_wire::msg::confirm;
    let answers = Answers::parse("approve cal.book\ndeny cal.book\n").unwrap();
    for (operator, expect) in [
        (
            Operator::Answers(answers),
            [(1, true), (2, false), (3, false), (4, false)],
        ),
        (
            Operator::DenyAll,
            [(1, false), (2, false), (3, false), (4, false)],
        ),
    ] {
        let (mut g, s) = start_ready(
            SessionConfig {
                operator,
                ..Default::default()
            },
            1 << 16,
        );
        let long = "x".repeat(confirm::MAX_SUMMARY + 1);
        for (id, target, summary) in [
            (1, "cal.book", "{}"),
            (2, "cal.book", "{}"),
            (3, "cal.book", long.as_str()),
            (4, "cal.book", "{}"),
        ] {
            let m = control(&ControlMsg::ConfirmRequest {
                version: confirm::VERSION,
                id,
                agent: "booker",
                action: "tool",
                target,
                rule: "booking_ok",
                summary,
                content: [0; 32],
            });
            g.send_message(Stream::Control, &m, T);
            let back = g.recv_message(Stream::Control, T).expect("an answer");
            let ControlMsg::ConfirmAnswer {
                version,
                id: got,
                approve,
            } = msg::decode_exact::<ControlMsg>(&back).unwrap()
            else {
                panic!("not an answer");
            };
            assert_eq!(version, confirm::VERSION);
            assert!(expect.contains(&(got, approve)), "{got} {approve}");
            assert_eq!(got, id);
        }
        let answered = |e: &SessionEvent| matches!(e, SessionEvent::ConfirmAnswered { id: 4, .. });
        assert!(s.wait_event(answered, T).is_some());
    }
}
