//! The host attacks the monitor's side of the channel, the log and the bundle (issue 13,
//! findings 4-6), with the raw wire host: each attack is performed against the production
//! image and shown refused, and the monitor keeps serving.

use std::time::{Duration, Instant};

use omega_bundle::msg::{self as bundle_msg, Message};
use omega_bundle::{BundleMsg, MANIFEST, Manifest};
use omega_provenance::entry::{EntryIter, lifecycle};
use omega_provenance::verify::verify_stream;
use omega_provenance::{Action, Checkpoint, Decision, VerifierKey};
use omega_wire::msg::{self, ControlMsg};
use omega_wire::{Encoder, MAX_FRAME, Stream};
use qemu_tests::raw_host::{GuestEvent, RawHost};
use qemu_tests::{Boot, EXIT_SUCCESS, Outcome, Running, image};

type Files = Vec<(String, Vec<u8>)>;

/// A lifecycle entry of the stored log: (event code, decision, content digest, name).
type Lifecycle = (u32, Decision, Option<[u8; 32]>, Vec<u8>);

fn bundle(policy: &[u8]) -> Files {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend((0..5000u32).map(|i| i as u8));
    vec![
        (
            MANIFEST.to_string(),
            Manifest::json("policy.bin", [("triage", "agent.wasm")]),
        ),
        ("policy.bin".to_string(), policy.to_vec()),
        ("agent.wasm".to_string(), module),
    ]
}

fn send_bundle(host: &mut RawHost, files: &Files) {
    let mut buf = [0u8; bundle_msg::MAX_HEADER_MESSAGE];
    for m in bundle_msg::sequence(files) {
        match m {
            Message::Header(h) => {
                let body = msg::encode(&h, &mut buf).unwrap().to_vec();
                host.send(Stream::Bundle, &body).unwrap()
            }
            Message::Content(c) => host.send(Stream::Bundle, c).unwrap(),
        }
    }
}

fn control(m: &ControlMsg<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    msg::encode(m, &mut buf).unwrap().to_vec()
}

/// The production image and a raw host connected to it (the directory holds the socket).
fn vm(window: Option<u32>) -> (tempfile::TempDir, Running, RawHost) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("channel.sock");
    let boot = Boot::new(image()).timeout(Duration::from_secs(300));
    let (vm, host) = qemu_tests::boot_with_raw_host(boot, &sock, window).unwrap();
    (dir, vm, host)
}

/// What the guest sent: its log stream, its key and its latest checkpoint.
#[derive(Default)]
struct Seen {
    log: Vec<u8>,
    vkey: Option<String>,
    checkpoint: Option<String>,
    shutdown: bool,
    errors: Vec<(Stream, u16, String)>,
}

impl Seen {
    fn take(&mut self, events: impl IntoIterator<Item = GuestEvent>) {
        for e in events {
            match e {
                GuestEvent::Message(Stream::Log, m) => self.log.extend(m),
                GuestEvent::Message(Stream::Control, m) => {
                    match msg::decode_exact::<ControlMsg<'_>>(&m).unwrap() {
                        ControlMsg::LogKey { vkey } => self.vkey = Some(vkey.to_string()),
                        ControlMsg::Checkpoint { note } => self.checkpoint = Some(note.to_string()),
                        ControlMsg::Shutdown { .. } => self.shutdown = true,
                        // Evidence and guest requests play no part in these attacks.
                        ControlMsg::Notice { .. }
                        | ControlMsg::Evidence { .. }
                        | ControlMsg::GuestRequest { .. }
                        | ControlMsg::Challenge { .. }
                        | ControlMsg::GuestResponse { .. } => {}
                    }
                }
                GuestEvent::Error {
                    stream,
                    code,
                    message,
                } => self.errors.push((stream, code, message)),
                _ => {}
            }
        }
    }

    /// Reads events until `done` holds or `timeout` passes; whether it held.
    fn until(
        &mut self,
        host: &mut RawHost,
        timeout: Duration,
        done: impl Fn(&Seen) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match host.next_event(left.min(Duration::from_millis(200))) {
                Ok(Some(e)) => self.take([e]),
                Ok(None) => {}
                Err(_) => return done(self), // the guest has gone
            }
        }
        true
    }

    /// Reads events until the log has not grown for a second: the monitor has logged
    /// everything it does on its own (bundle, evidence, agents) and waits for Acks.
    fn settle(&mut self, host: &mut RawHost) {
        loop {
            let before = self.log.len();
            self.until(host, Duration::from_secs(1), |_| false);
            if self.log.len() == before {
                return;
            }
        }
    }

    fn bundle_errors(&self, code: u16) -> usize {
        self.errors
            .iter()
            .filter(|(s, c, _)| *s == Stream::Bundle && *c == code)
            .count()
    }

    /// Verifies the stored log against the latest checkpoint, as `measurements verify-log`
    /// does (the same library calls), and returns its entries as (rule, decision, content,
    /// name) for lifecycle entries.
    fn verified_entries(&self) -> Vec<Lifecycle> {
        let vkey = VerifierKey::parse(self.vkey.as_deref().expect("log key")).unwrap();
        let cp = Checkpoint::verify(self.checkpoint.as_deref().expect("checkpoint"), &vkey)
            .expect("checkpoint signed by the log key");
        let report = verify_stream(&self.log, &cp);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(
            report.entries, cp.size,
            "every entry covered by the checkpoint"
        );
        EntryIter::new(&self.log)
            .map(|e| e.unwrap().1)
            .filter(|e| e.action == Action::Lifecycle)
            .map(|e| {
                (
                    e.rule,
                    e.decision,
                    e.content,
                    e.name.unwrap_or_default().to_vec(),
                )
            })
            .collect()
    }
}

/// Asks the monitor to shut down, reads what it sends until it does, and checks it stopped
/// cleanly.
fn shut_down(vm: Running, host: &mut RawHost, seen: &mut Seen) -> Outcome {
    host.send(
        Stream::Control,
        &control(&ControlMsg::Shutdown { status: 0 }),
    )
    .unwrap();
    seen.until(host, Duration::from_secs(120), |s| s.shutdown);
    let out = vm.finish().unwrap();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    out
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// Finding 4: after a complete bundle, the host sends a second one (another policy) to
/// replace the first. The monitor refuses it on the Bundle stream, logs the refusal, and
/// the log names exactly one active bundle: the first manifest's digest.
#[test]
fn a_second_bundle_is_refused_and_logged() {
    let (_dir, mut vm, mut host) = vm(None);
    let first = bundle(b"OMPL first policy");
    send_bundle(&mut host, &first);
    assert!(
        vm.wait_for("omega: bundle: active", Duration::from_secs(60)),
        "{}",
        vm.serial()
    );
    let mut second = bundle(b"OMPL a policy the host prefers");
    second[0].1 = Manifest::json("policy.bin", [("other", "agent.wasm")]);
    send_bundle(&mut host, &second);
    let mut seen = Seen::default();
    assert!(
        seen.until(&mut host, Duration::from_secs(60), |s| s
            .bundle_errors(msg::code::PROTOCOL)
            >= 1),
        "no refusal\n{}",
        vm.serial()
    );
    let out = shut_down(vm, &mut host, &mut seen);
    assert!(
        out.serial
            .contains("omega: bundle refused: a bundle was already delivered: one bundle per boot"),
        "{out}"
    );
    let entries = seen.verified_entries();
    let active: Vec<_> = entries
        .iter()
        .filter(|e| e.0 == lifecycle::BUNDLE_ACTIVE)
        .collect();
    assert_eq!(active.len(), 1, "{entries:?}");
    assert_eq!(
        active[0].2,
        Some(sha256(&first[0].1)),
        "the first manifest is active"
    );
    let refused: Vec<_> = entries
        .iter()
        .filter(|e| e.0 == lifecycle::BUNDLE_REFUSED)
        .collect();
    assert_eq!(refused.len(), 1, "{entries:?}");
    assert_eq!(refused[0].1, Decision::Deny);
    // Only the first bundle's files were logged as targets.
    let targets: Vec<_> = entries
        .iter()
        .filter(|e| e.0 == lifecycle::DEFINE_TARGET)
        .map(|e| e.2)
        .collect();
    let expected: Vec<_> = first.iter().map(|(_, b)| Some(sha256(b))).collect();
    assert_eq!(targets, expected);
}

/// Finding 6: an `Ack` for more log bytes than the monitor sent (so that it would release
/// entries nobody stored) is refused and reported; the monitor goes on waiting for the real
/// acknowledgement and stops only once everything is stored.
#[test]
fn an_ack_beyond_what_was_sent_is_refused() {
    let (_dir, mut vm, mut host) = vm(None);
    send_bundle(&mut host, &bundle(b"OMPL policy"));
    assert!(vm.wait_for("omega: bundle: active", Duration::from_secs(60)));
    let mut seen = Seen::default();
    assert!(seen.until(&mut host, Duration::from_secs(30), |s| {
        s.checkpoint.is_some()
    }));
    // Periodic checkpoints come while the monitor still logs (evidence, agents): take
    // what it sent once it waits.
    seen.settle(&mut host);
    let sent = seen.log.len() as u64;
    let entries = EntryIter::new(&seen.log).count();
    host.ack(sent + 4096).unwrap();
    assert!(
        vm.wait_for("Ack beyond the log bytes sent", Duration::from_secs(30)),
        "{}",
        vm.serial()
    );
    seen.until(&mut host, Duration::from_secs(1), |_| false);
    assert!(
        seen.errors
            .iter()
            .any(|(s, c, _)| *s == Stream::Control && *c == msg::code::MALFORMED),
        "{:?}",
        seen.errors
    );
    assert!(
        !vm.serial().contains("bundle delivered and logged"),
        "stopped on a false ack\n{}",
        vm.serial()
    );
    // The true acknowledgement: now the monitor has nothing left to do.
    host.ack(sent).unwrap();
    seen.until(&mut host, Duration::from_secs(60), |s| s.shutdown);
    let out = vm.finish().unwrap();
    assert_eq!(out.status, Some(EXIT_SUCCESS), "{out}");
    assert!(
        out.serial.contains(&format!(
            "omega: bundle delivered and logged ({entries} entries, {sent} bytes stored by the host)"
        )),
        "{out}"
    );
    seen.verified_entries();
}

/// Finding 6: the host withholds acknowledgements while the monitor keeps logging (each
/// refused bundle `Begin` is a log entry). Once the outbox is full of unacknowledged
/// entries the monitor blocks, dropping nothing; when the host acknowledges, it resumes,
/// and the stored log holds every entry and verifies against the signed checkpoint.
#[test]
fn records_are_retained_until_acknowledged() {
    let (_dir, mut vm, mut host) = vm(None);
    send_bundle(&mut host, &bundle(b"OMPL policy"));
    assert!(vm.wait_for("omega: bundle: active", Duration::from_secs(60)));
    let mut seen = Seen::default();
    let mut buf = [0u8; 64];
    let begin = msg::encode(
        &BundleMsg::Begin {
            files: 3,
            total_bytes: 10,
        },
        &mut buf,
    )
    .unwrap()
    .to_vec();
    // One Begin at a time, each answered, until the monitor stops answering: it is
    // waiting for acknowledgements.
    let mut refused = 0;
    let blocked_at = loop {
        assert!(refused < 5000, "the monitor never blocked\n{}", vm.serial());
        host.send(Stream::Bundle, &begin).unwrap();
        if !seen.until(&mut host, Duration::from_secs(3), |s| {
            s.bundle_errors(msg::code::PROTOCOL) > refused
        }) {
            break refused;
        }
        refused += 1;
    };
    assert!(
        vm.serial().contains("omega: log: outbox full"),
        "{}",
        vm.serial()
    );
    // Everything the monitor sent is in our hands; nothing beyond it was sent.
    let held = seen.log.len();
    eprintln!("blocked after {blocked_at} refusals, {held} log bytes unacknowledged");
    assert!(held >= 60 * 1024, "{held}");
    std::thread::sleep(Duration::from_millis(500));
    seen.until(&mut host, Duration::from_millis(200), |_| false);
    assert_eq!(seen.log.len(), held, "nothing more was sent while blocked");
    // Acknowledge: the blocked Begin is answered and the monitor carries on.
    host.ack(held as u64).unwrap();
    assert!(seen.until(
        &mut host,
        Duration::from_secs(30),
        |s| s.bundle_errors(msg::code::PROTOCOL) > blocked_at
    ));
    shut_down(vm, &mut host, &mut seen);
    let entries = seen.verified_entries();
    let refusals = entries
        .iter()
        .filter(|e| e.0 == lifecycle::BUNDLE_REFUSED)
        .count();
    assert_eq!(
        refusals,
        blocked_at + 1,
        "every refusal is in the stored log"
    );
}

/// Finding 5: while the monitor waits for credit (the host grants none), the host floods
/// it: as much data as the monitor grants on Tools, 100,000 empty messages (which need no
/// credit), thousands of errors, closes and acks. Before the fix the monitor kept granting
/// credit while it waited and queued every message (a few seconds of this exhausted its
/// 64 MiB heap). Now its queue stays bounded, the excess is refused, and once credit comes
/// it finishes what it was sending and keeps serving.
#[test]
fn a_flood_while_the_monitor_waits_for_credit_does_not_crash_it() {
    let (_dir, vm, mut host) = vm(Some(1024));
    host.withhold_credit = true;
    // A 16 KiB echo request: the reply needs 16 times the credit the host granted.
    let mut request = vec![msg::echo::REQUEST];
    request.extend((0..16 * 1024).map(|i| (i * 7) as u8));
    host.send(Stream::Echo, &request).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    host.read_available().unwrap();

    let mut free = Encoder::new();
    let mut frame = vec![0u8; MAX_FRAME];
    let mut raw = |f: &dyn Fn(&mut Encoder, &mut [u8]) -> usize| {
        let n = f(&mut free, &mut frame);
        frame[..n].to_vec()
    };
    let start = Instant::now();
    let mut tools_bytes = 0usize;
    let chunk = vec![0x5au8; 4096];
    // As much as the monitor grants on Tools (reading its grants), for three seconds.
    while start.elapsed() < Duration::from_secs(3) && tools_bytes < 80 << 20 {
        match host.encode_data(Stream::Tools, &chunk, true) {
            Ok(f) => {
                host.send_raw(&f).unwrap();
                tools_bytes += chunk.len();
            }
            Err(_) => host
                .read_available()
                .unwrap_or_else(|e| panic!("{e}\n{}", vm.serial())),
        }
    }
    let mut batch = Vec::new();
    for i in 0..100_000u32 {
        batch.extend(host.encode_data(Stream::Inference, b"", true).unwrap());
        if i % 20 == 0 {
            batch.extend(raw(&|e, b| {
                e.error(Stream::Inference, msg::code::BACKEND, "noise", b)
                    .unwrap()
            }));
            batch.extend(raw(&|e, b| e.close(Stream::Tools, b).unwrap()));
            batch.extend(raw(&|e, b| e.ack(0, 0, b).unwrap()));
        }
        if batch.len() > 32 * 1024 {
            host.send_raw(&batch).unwrap();
            batch.clear();
            host.read_available().unwrap();
        }
    }
    host.send_raw(&batch).unwrap();
    eprintln!(
        "flood: {tools_bytes} bytes of Tools data accepted by credit in {:.1} s, 100000 empty messages, 5000 errors, closes and acks",
        start.elapsed().as_secs_f64()
    );
    // The monitor granted at most one window beyond the first message while it waited.
    assert!(
        tools_bytes <= 2 * 64 * 1024 + 4096,
        "{tools_bytes} bytes accepted while waiting\n{}",
        vm.serial()
    );
    // Credit at last: the echo reply completes.
    host.release_credit().unwrap();
    let reply = host
        .expect_message(Stream::Echo, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.serial()));
    assert_eq!(reply[0], msg::echo::REPLY);
    assert!(reply[1..] == request[1..]);
    let mut seen = Seen::default();
    let out = shut_down(vm, &mut host, &mut seen);
    assert!(
        seen.errors
            .iter()
            .any(|(s, c, _)| *s == Stream::Inference && *c == msg::code::TOO_LARGE),
        "the excess was not refused: {:?}",
        &seen.errors[..seen.errors.len().min(5)]
    );
    assert!(
        out.serial.contains("more errors from the host not shown"),
        "{out}"
    );
}

/// Finding 5: a `Notice` carrying terminal escape sequences and a forged monitor line is
/// shown escaped and marked as the host's; no raw control character reaches the console.
#[test]
fn a_notice_with_escape_sequences_is_shown_escaped() {
    let (_dir, mut vm, mut host) = vm(None);
    let text = "hi\x1b[2J\x1b]0;owned\x07\r\nomega: bundle: complete, 9 files hashed and logged";
    host.send(Stream::Control, &control(&ControlMsg::Notice { text }))
        .unwrap();
    assert!(
        vm.wait_for("omega: notice from the host", Duration::from_secs(60)),
        "{}",
        vm.serial()
    );
    let out = shut_down(vm, &mut host, &mut Seen::default());
    assert!(
        out.serial.contains(
            r#"omega: notice from the host (escaped): "hi\x1b[2J\x1b]0;owned\x07\r\nomega: bundle: complete, 9 files hashed and logged""#
        ),
        "{out}"
    );
    assert!(!out.serial.contains('\x1b'), "{out}");
    assert!(!out.serial.contains('\x07'), "{out}");
    assert!(
        !out.serial
            .lines()
            .any(|l| l.starts_with("omega: bundle: complete")),
        "{out}"
    );
}
