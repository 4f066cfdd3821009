//! The host attacks the monitor's side of the channel, the log, the bundle (issue 13,
//! findings 4-6) and the evidence (finding 1: challenges and simulated-PSP responses), with
//! the raw wire host: each attack is performed against the production image (the
//! test-hooks image where the simulated PSP is needed) and shown refused, and the monitor
//! keeps serving.

mod common;

use std::time::{Duration, Instant};

use omega_bundle::msg::{self as bundle_msg, Message};
use omega_bundle::{BundleMsg, MANIFEST, Manifest};
use omega_provenance::entry::{EntryIter, lifecycle};
use omega_provenance::verify::verify_stream;
use omega_provenance::{Action, Checkpoint, Decision, VerifierKey};
use omega_wire::msg::{self, ControlMsg};
use omega_wire::{Encoder, MAX_FRAME, Stream};
use std::path::Path;

use common::Files;
use omega_evidence::{Binding, Bundle as Evidence};
use omega_sim_psp::SimPsp;
use qemu_tests::raw_host::{GuestEvent, RawHost};
use qemu_tests::{Boot, EXIT_SUCCESS, Outcome, Running, image, test_hooks_image};

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
    let carried = match m {
        ControlMsg::GuestResponse { message } => message.len(),
        _ => 0,
    };
    let mut buf = vec![0u8; 4096 + carried];
    msg::encode(m, &mut buf).unwrap().to_vec()
}

/// The production image and a raw host connected to it (the directory holds the socket).
fn vm(window: Option<u32>) -> (tempfile::TempDir, Running, RawHost) {
    vm_on(image(), window)
}

/// `image` and a raw host connected to it.
fn vm_on(image: &Path, window: Option<u32>) -> (tempfile::TempDir, Running, RawHost) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("channel.sock");
    let boot = Boot::new(image).timeout(Duration::from_secs(300));
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
    /// The monitor's evidence: (principal, bundle).
    evidence: Vec<(String, Vec<u8>)>,
    /// Its guest requests to the simulated PSP.
    requests: Vec<Vec<u8>>,
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
                        ControlMsg::Evidence { principal, bundle } => {
                            self.evidence.push((principal.to_string(), bundle.to_vec()))
                        }
                        ControlMsg::GuestRequest { message } => {
                            self.requests.push(message.to_vec())
                        }
                        ControlMsg::Notice { .. }
                        | ControlMsg::Challenge { .. }
                        | ControlMsg::GuestResponse { .. }
                        | ControlMsg::AgentCard { .. }
                        | ControlMsg::ConfirmRequest { .. }
                        | ControlMsg::ConfirmAnswer { .. }
                        | ControlMsg::PeerConfig { .. }
                        | ControlMsg::PeerCredential { .. } => {}
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

/// The host forges the fleet: a `PeerCredential` before the bundle (refused, nothing
/// logged: the coordinator is not known yet), then, with the bundle naming coordinator K, a
/// well-formed credential for this node signed by a key of the host's own: refused and
/// logged (`PEER_CREDENTIAL` deny, its digest), and a second one is not even considered.
#[test]
fn a_peer_credential_counts_only_under_the_bundles_coordinator() {
    use omega_fleet::signed::SigningKey;
    let (_dir, mut vm, mut host) = vm(None);
    let coordinator = SigningKey::from_seed([9; 32]).unwrap();
    let forger = SigningKey::from_seed([7; 32]).unwrap();
    let forged = omega_fleet::Credential {
        format: omega_fleet::credential::CREDENTIAL_FORMAT,
        fleet_id: "lab".into(),
        node_id: "node-a".into(),
        role: "worker".into(),
        node_key: [1; 32],
        peer_key: Some([2; 32]),
        tee: omega_fleet::Tee::Simulated,
        launch_digest: vec![0; 48],
        not_before: 1,
        not_after: u64::MAX,
        serial: 1,
        policy_version: 1,
    }
    .sign(&forger)
    .unwrap();
    let send =
        |host: &mut RawHost, m: &ControlMsg<'_>| host.send(Stream::Control, &control(m)).unwrap();
    send(
        &mut host,
        &ControlMsg::PeerConfig {
            initiator: false,
            node: "node-a",
            peer: "node-b",
        },
    );
    send(
        &mut host,
        &ControlMsg::PeerCredential {
            credential: &forged,
        },
    );
    assert!(
        vm.wait_for(
            "omega: peer: PeerCredential before the bundle refused",
            Duration::from_secs(60)
        ),
        "{}",
        vm.serial()
    );
    let mut files = bundle(b"OMPL");
    let mut m = Manifest::parse(&files[0].1).unwrap();
    m.fleet = Some(omega_bundle::FleetEntry {
        id: "lab".into(),
        coordinator: coordinator
            .public()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        owner: None,
    });
    files[0].1 = m.to_json();
    send_bundle(&mut host, &files);
    assert!(
        vm.wait_for("omega: bundle: active", Duration::from_secs(60)),
        "{}",
        vm.serial()
    );
    for _ in 0..2 {
        send(
            &mut host,
            &ControlMsg::PeerCredential {
                credential: &forged,
            },
        );
    }
    assert!(
        vm.wait_for(
            "omega: peer: own credential refused",
            Duration::from_secs(60)
        ),
        "{}",
        vm.serial()
    );
    let mut seen = Seen::default();
    let out = shut_down(vm, &mut host, &mut seen);
    assert!(
        out.serial
            .contains("own credential refused: not signed by the bundle's coordinator"),
        "{out}"
    );
    let credentials: Vec<_> = seen
        .verified_entries()
        .into_iter()
        .filter(|e| e.0 == lifecycle::PEER_CREDENTIAL)
        .collect();
    assert_eq!(
        credentials,
        [(
            lifecycle::PEER_CREDENTIAL,
            Decision::Deny,
            Some(sha256(&forged)),
            b"not signed by the bundle's coordinator (or malformed)".to_vec()
        )],
        "one verdict, for the first credential after the bundle\n{out}"
    );
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

fn challenge(nonce: [u8; 32], simulated_psp: bool) -> Vec<u8> {
    control(&ControlMsg::Challenge {
        nonce,
        simulated_psp,
    })
}

fn guest_response(message: &[u8]) -> Vec<u8> {
    control(&ControlMsg::GuestResponse { message })
}

/// The `EVIDENCE` entries of a verified log.
fn evidence_entries(entries: &[Lifecycle]) -> Vec<&Lifecycle> {
    entries
        .iter()
        .filter(|e| e.0 == lifecycle::EVIDENCE)
        .collect()
}

/// Waits (at most 30 s) until the console shows `line` `n` times.
#[track_caller]
fn wait_for_count(vm: &Running, line: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while vm.serial().matches(line).count() < n {
        assert!(
            Instant::now() < deadline,
            "{line:?} not {n} times\n{}",
            vm.serial()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Decodes the evidence the monitor sent; every principal's is bound to `nonce` and the
/// same attested root, which it returns.
fn evidence_root(seen: &Seen, nonce: [u8; 32]) -> [u8; 32] {
    let mut root = None;
    for (principal, bytes) in &seen.evidence {
        let b = Evidence::decode(bytes).unwrap_or_else(|e| panic!("{principal}: {e}"));
        assert_eq!(b.report_nonce, nonce, "{principal} binds another nonce");
        assert_eq!(*root.get_or_insert(b.base_root), b.base_root, "{principal}");
    }
    root.expect("the monitor sent evidence")
}

/// Finding 1: the host sends a second Challenge, hoping to bind the evidence to a nonce of
/// its choosing instead of the verifier's, and a third once the evidence is out. Both are
/// refused on the console and in the log (`EVIDENCE`, decision deny); the evidence binds
/// the first nonce, and the log records it once.
#[test]
fn a_second_challenge_is_refused_and_the_first_nonce_counts() {
    let (_dir, mut vm, mut host) = vm(None);
    let (first, second, late) = ([0xA1; 32], [0xB2; 32], [0xC3; 32]);
    host.send(Stream::Control, &challenge(first, false))
        .unwrap();
    host.send(Stream::Control, &challenge(second, false))
        .unwrap();
    assert!(
        vm.wait_for("omega: challenge refused: ", Duration::from_secs(60)),
        "{}",
        vm.serial()
    );
    send_bundle(&mut host, &bundle(b"OMPL policy"));
    // platform, log, card, bundle, policy, agent:triage, peer
    assert!(
        vm.wait_for(
            "omega: evidence: 7 principals sent",
            Duration::from_secs(60)
        ),
        "{}",
        vm.serial()
    );
    let mut seen = Seen::default();
    assert!(
        seen.until(&mut host, Duration::from_secs(30), |s| s.evidence.len()
            == 6)
    );
    host.send(Stream::Control, &challenge(late, false)).unwrap();
    wait_for_count(&vm, "omega: challenge refused: ", 2);
    seen.settle(&mut host);
    let out = shut_down(vm, &mut host, &mut seen);
    assert!(
        out.serial.contains(
            "omega: challenge accepted: the evidence will be bound to nonce a1a1a1a1a1a1a1a1..."
        ),
        "{out}"
    );
    assert_eq!(
        out.serial.matches("omega: challenge accepted").count(),
        1,
        "{out}"
    );
    let root = evidence_root(&seen, first);
    let entries = seen.verified_entries();
    let logged = evidence_entries(&entries);
    let expected: Vec<Lifecycle> = vec![
        (
            lifecycle::EVIDENCE,
            Decision::Deny,
            None,
            b"challenge refused: not the first".to_vec(),
        ),
        (
            lifecycle::EVIDENCE,
            Decision::Allow,
            Some(root),
            b"evidence".to_vec(),
        ),
        (
            lifecycle::EVIDENCE,
            Decision::Deny,
            None,
            b"challenge refused: evidence already issued".to_vec(),
        ),
    ];
    assert_eq!(logged, expected.iter().collect::<Vec<_>>());
}

/// The agents of the simulated-PSP tests, and the measurement the host's PSP reports.
const AGENTS: [&str; 2] = ["alpha", "beta"];
const MEASUREMENT: [u8; 48] = [0x4D; 48];
const PSP_NONCE: [u8; 32] = [0x5A; 32];

/// The test-hooks image, challenged with the simulated PSP (then `before_bundle` runs) and
/// given a bundle of agents, up to the monitor's one guest request: the VM, the raw host,
/// what it saw (holding the request).
fn awaiting_psp(
    before_bundle: impl FnOnce(&mut Running, &mut RawHost),
) -> (tempfile::TempDir, Running, RawHost, Seen) {
    let (dir, mut vm, mut host) = vm_on(test_hooks_image(), None);
    host.send(Stream::Control, &challenge(PSP_NONCE, true))
        .unwrap();
    before_bundle(&mut vm, &mut host);
    send_bundle(&mut host, &common::agent_bundle("hostile-psp", &AGENTS));
    let mut seen = Seen::default();
    assert!(
        seen.until(&mut host, Duration::from_secs(60), |s| !s
            .requests
            .is_empty()),
        "no guest request\n{}",
        vm.serial()
    );
    (dir, vm, host, seen)
}

/// Waits until every agent has started: the monitor carries on after the evidence.
fn agents_run(vm: &mut Running) {
    for a in AGENTS {
        assert!(
            vm.wait_for(
                &format!("omega: agent {a}: started"),
                Duration::from_secs(60)
            ),
            "{}",
            vm.serial()
        );
    }
}

/// The response the simulated PSP gives to another boot's first request (same sequence
/// number, another REPORT_DATA): genuine, sealed with the lab VMPCK0, and stale.
fn another_boots_response() -> Vec<u8> {
    use sev_snp::guest_msg::{GuestRequestTransport, MSG_PAGE_SIZE};
    struct Capture(SimPsp, Vec<u8>);
    impl GuestRequestTransport for Capture {
        fn guest_request(
            &mut self,
            request: &[u8; MSG_PAGE_SIZE],
            response: &mut [u8; MSG_PAGE_SIZE],
        ) -> Result<u64, sev_snp::GhcbError> {
            self.1 = self.0.handle(request).unwrap();
            response.fill(0);
            response[..self.1.len()].copy_from_slice(&self.1);
            Ok(0)
        }
        fn wait_ms(&mut self, _: u64) {}
    }
    let key = sev_snp::Vmpck::new(sev_snp::lab::VMPCK0, 0).unwrap();
    let mut psp = Capture(SimPsp::new(MEASUREMENT), Vec::new());
    sev_snp::GuestMessenger::new(key)
        .attestation_report(&mut psp, [0x0B; 64])
        .unwrap();
    psp.1
}

/// How a hostile host answers the monitor's guest request.
enum HostileResponse {
    Garbage,
    /// The genuine response, cut in half.
    Truncated,
    /// Another boot's genuine response.
    Replay,
    /// 1 MiB, far beyond a message page.
    Oversized,
}

/// Finding 1 (the simulated PSP's link): the host answers the monitor's report request
/// with `answer`. The monitor does not crash, sends no evidence (never a downgrade to
/// unattested), logs why (`EVIDENCE`, decision error), and its agents still run.
fn hostile_response_is_refused(answer: HostileResponse, reason: &str) {
    let (_dir, mut vm, mut host, mut seen) = awaiting_psp(|_, _| {});
    let genuine = SimPsp::new(MEASUREMENT).handle(&seen.requests[0]).unwrap();
    let response = match answer {
        HostileResponse::Garbage => (0..genuine.len()).map(|i| (i * 131) as u8).collect(),
        HostileResponse::Truncated => genuine[..genuine.len() / 2].to_vec(),
        HostileResponse::Replay => another_boots_response(),
        HostileResponse::Oversized => vec![0x41; 1 << 20],
    };
    host.send(Stream::Control, &guest_response(&response))
        .unwrap();
    assert!(
        vm.wait_for("omega: evidence: NOT issued: ", Duration::from_secs(30)),
        "{}",
        vm.serial()
    );
    agents_run(&mut vm);
    seen.settle(&mut host);
    let out = shut_down(vm, &mut host, &mut seen);
    let line = format!("omega: evidence: NOT issued: {reason}");
    assert!(out.serial.contains(&line), "{line:?}\n{out}");
    let said = out.serial.lines().find(|l| l.starts_with(&line));
    eprintln!("refused as it must be: {}", said.unwrap_or_default());
    assert!(!out.serial.contains("panicked"), "{out}");
    assert!(
        seen.evidence.is_empty(),
        "evidence sent: {:?}",
        seen.evidence
    );
    assert_eq!(seen.requests.len(), 1, "one request, never retried");
    let entries = seen.verified_entries();
    let logged = evidence_entries(&entries);
    assert_eq!(logged.len(), 1, "{entries:?}");
    assert_eq!(logged[0].1, Decision::Error, "{entries:?}");
    let logged_reason = &reason.as_bytes()[..reason.len().min(omega_provenance::entry::MAX_NAME)];
    assert!(
        !logged[0].3.is_empty() && logged[0].3.starts_with(logged_reason),
        "{:?}",
        String::from_utf8_lossy(&logged[0].3)
    );
    let started = entries
        .iter()
        .filter(|e| e.0 == lifecycle::AGENT_START)
        .count();
    assert_eq!(started, AGENTS.len(), "{entries:?}");
}

#[test]
fn a_garbage_guest_response_is_refused() {
    hostile_response_is_refused(
        HostileResponse::Garbage,
        "simulated PSP: response sequence number ",
    );
}

#[test]
fn a_truncated_guest_response_is_refused() {
    hostile_response_is_refused(
        HostileResponse::Truncated,
        "simulated PSP: response authentication failed",
    );
}

/// Another boot's genuine response opens (every simulated boot shares the lab key and the
/// first sequence number): the monitor must see that the report attests another REPORT_DATA.
#[test]
fn a_replayed_guest_response_is_refused() {
    hostile_response_is_refused(
        HostileResponse::Replay,
        "the report carries another REPORT_DATA",
    );
}

#[test]
fn an_oversized_guest_response_is_refused() {
    hostile_response_is_refused(
        HostileResponse::Oversized,
        "simulated PSP: the host's response is 1048576 bytes, more than a message page",
    );
}

/// Finding 1: `GuestResponse`s nobody asked for (one before the monitor's request, and the
/// genuine response sent again after it was used) are ignored and said so on the console;
/// the evidence comes from the one answer to the request, binds the nonce, verifies, and
/// the log records it once.
#[test]
fn a_guest_response_nobody_asked_for_is_ignored() {
    const IGNORED: &str = "omega: channel: unexpected control message from the host: GuestResponse (no request waiting)";
    let (_dir, mut vm, mut host, mut seen) = awaiting_psp(|vm, host| {
        host.send(Stream::Control, &guest_response(&another_boots_response()))
            .unwrap();
        assert!(
            vm.wait_for(IGNORED, Duration::from_secs(60)),
            "{}",
            vm.serial()
        );
    });
    let genuine = SimPsp::new(MEASUREMENT).handle(&seen.requests[0]).unwrap();
    host.send(Stream::Control, &guest_response(&genuine))
        .unwrap();
    // platform, log, card, bundle, policy, agent:alpha, agent:beta, peer
    assert!(
        vm.wait_for(
            "omega: evidence: 8 principals sent, tee simulated",
            Duration::from_secs(30)
        ),
        "{}",
        vm.serial()
    );
    host.send(Stream::Control, &guest_response(&genuine))
        .unwrap();
    wait_for_count(&vm, IGNORED, 2);
    agents_run(&mut vm);
    seen.settle(&mut host);
    shut_down(vm, &mut host, &mut seen);
    assert_eq!(seen.evidence.len(), 8);
    let root = evidence_root(&seen, PSP_NONCE);
    for (principal, bytes) in &seen.evidence {
        let b = Evidence::decode(bytes).unwrap();
        assert!(matches!(b.binding, Binding::Snp { .. }), "{principal}");
        let o = omega_evidence::verify(
            &b,
            &omega_evidence::Options {
                principal,
                nonce: Some(PSP_NONCE),
                allow_unattested: false,
                report: None,
            },
        );
        assert!(
            o.verified(),
            "{principal}: {:?}",
            o.failures().collect::<Vec<_>>()
        );
    }
    let entries = seen.verified_entries();
    let logged = evidence_entries(&entries);
    assert_eq!(
        logged,
        [&(
            lifecycle::EVIDENCE,
            Decision::Allow,
            Some(root),
            b"evidence".to_vec()
        )]
    );
}
