//! The log resumes after a host restart (issue 13, durability), with the real launcher and
//! image, in one boot: agents exchange messages (each one a log entry) while `omega run`
//! serves the VM; the launcher is killed (SIGKILL) mid-run and QEMU keeps running; then
//! hosts attach to the same VM through its channel socket:
//!
//! 1. a host that claims more of the log than the monitor ever sent: refused;
//! 2. a host that resumes at the right place but stores nothing (its storage fails at the
//!    first sync): what it received shows where the next entry ends;
//! 3. a host that resumes inside that entry: refused;
//! 4. `omega attach` with the earlier run's log directory: the monitor sends everything
//!    after what the directory holds, the agents finish, and the launcher's own
//!    `verify-log` command passes on the joined log, with every message logged exactly
//!    once, the stored prefix untouched, and the resumes and refusals in the log.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omega_host::session::resume::check_stored_log;
use omega_host::{ChannelSession, LogStore, SessionConfig, SessionEvent};
use omega_provenance::entry::{Entry, EntryIter, lifecycle};
use omega_provenance::{Action, Decision};
use omega_wire::{Stream, msg::code};
use qemu_tests::cli::text;
use qemu_tests::{
    image, measurements, printed_verifier_commands, qemu_present, workloads, workspace_bin,
};

/// Echo agents and rounds: 2 × 8 × 1500 = 24,000 message entries, several seconds of
/// logging under TCG, so the launcher dies mid-run.
const ECHOES: u32 = 8;
const ROUNDS: u32 = 1500;
/// The launcher is killed once this much of the log is stored.
const KILL_AT: u64 = 150 * 1024;

thread_local! {
    /// QEMU's console file, shown when the test fails.
    static CONSOLE: std::cell::RefCell<Option<std::path::PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// The last lines of the monitor's console.
fn console_tail() -> String {
    let text = CONSOLE
        .with(|c| c.borrow().clone())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Kills QEMU (which outlives the launcher by design) when the test ends, however it ends.
struct Qemu(Option<u32>);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// A host's log storage that stores nothing: it keeps what it received in memory, claims
/// `claim` bytes held, and fails its first sync once `release` is set (so it never
/// acknowledges anything).
struct Claims {
    claim: u64,
    received: Arc<Mutex<Vec<u8>>>,
    release: Arc<std::sync::atomic::AtomicBool>,
}

impl LogStore for Claims {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.received.lock().unwrap().extend_from_slice(bytes);
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        let t = Instant::now();
        while !self.release.load(std::sync::atomic::Ordering::SeqCst)
            && t.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(std::io::Error::other("this test host stores nothing"))
    }
    fn put_file(&mut self, _: &str, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn put_evidence(&mut self, _: &str, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn put_card(&mut self, _: &str, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn truncate(&mut self, _: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn stored(&self) -> u64 {
        self.claim
    }
}

/// Attaches a host claiming `claim` log bytes; returns the monitor's refusal on Log (or
/// `None` when it accepted: then what the host received before its storage failed).
fn attach_claiming(socket: &Path, claim: u64) -> (Option<String>, Vec<u8>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let config = || {
        Ok(SessionConfig {
            log_store: Some(Box::new(Claims {
                claim,
                received: received.clone(),
                release: release.clone(),
            })),
            ..Default::default()
        })
    };
    // As `omega attach` does (see `attach_unix` for why it may connect twice).
    let (s, _) = ChannelSession::attach_unix(
        socket,
        config,
        Duration::from_secs(3),
        Instant::now() + Duration::from_secs(60),
    )
    .unwrap_or_else(|e| {
        panic!(
            "no handshake from the monitor for a claim of {claim}: {e}\nconsole:\n{}",
            console_tail()
        )
    });
    // An accepted resume: the resend has begun (the monitor sends it all at once, within
    // its credit); once it is through, the storage fails and the host goes.
    let t = Instant::now();
    while received.lock().unwrap().is_empty() && t.elapsed() < Duration::from_secs(10) {
        if s.events().iter().any(|e| {
            matches!(
                e,
                SessionEvent::GuestError {
                    stream: Stream::Log,
                    ..
                }
            )
        }) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    let ev = s.wait_event(
        |e| {
            matches!(e, SessionEvent::GuestError { stream: Stream::Log, code: c, .. } if *c == code::PROTOCOL)
                || matches!(e, SessionEvent::LogStorageFailed { .. })
        },
        Duration::from_secs(60),
    );
    drop(s.close());
    let received = received.lock().unwrap().clone();
    match ev {
        Some(SessionEvent::GuestError { message, .. }) => (Some(message), received),
        Some(_) => (None, received),
        None => panic!(
            "the monitor neither refused nor resumed for a claim of {claim}\nconsole:\n{}",
            console_tail()
        ),
    }
}

#[test]
fn the_log_resumes_after_the_launcher_dies_and_lies_about_it_are_refused() {
    if !qemu_present() {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    workloads::load_bundle(&bundle, ECHOES, ROUNDS).unwrap();
    let logs = dir.path().join("logs");
    let sock_dir = dir.path().join("sock");
    let socket = sock_dir.join("omega.sock");
    let omega = workspace_bin("omega-host", "omega");
    let stderr = dir.path().join("run.stderr");
    // QEMU's console goes to a file (it would otherwise go to the launcher that is killed),
    // so that a failure can show the monitor's side.
    let console = dir.path().join("console.log");
    let wrapper = dir.path().join("qemu.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec \"${{OMEGA_QEMU:-qemu-system-x86_64}}\" \"$@\" >>'{}' 2>&1\n",
            console.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    CONSOLE.with(|c| *c.borrow_mut() = Some(console.clone()));
    let mut run: Child = Command::new(&omega)
        .arg("run")
        .arg("--image")
        .arg(image())
        .arg("--bundle")
        .arg(&bundle)
        .arg("--log-dir")
        .arg(&logs)
        .arg("--socket")
        .arg(&socket)
        .args(["--memory", "256", "--connect-timeout", "60"])
        .arg("--qemu")
        .arg(&wrapper)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    // The QEMU pid, from the launcher's log.
    let mut qemu = Qemu(None);
    let deadline = Instant::now() + Duration::from_secs(120);
    let stored = logs.join("provenance.log");
    loop {
        let err = std::fs::read_to_string(&stderr).unwrap_or_default();
        if qemu.0.is_none() {
            qemu.0 = err
                .split("QEMU started (pid ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .and_then(|p| p.parse().ok());
        }
        let len = std::fs::metadata(&stored).map_or(0, |m| m.len());
        if len >= KILL_AT {
            break;
        }
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before the launcher was killed\n{err}"
        );
        assert!(Instant::now() < deadline, "no log after 120 s\n{err}");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(qemu.0.is_some(), "QEMU's pid");
    run.kill().unwrap(); // SIGKILL: no cleanup, no goodbye on the channel
    run.wait().unwrap();
    let killed_at = t0.elapsed();

    let before = std::fs::read(&stored).unwrap();
    let held = check_stored_log(
        &before,
        std::fs::read_to_string(logs.join("log.vkey"))
            .ok()
            .as_deref(),
        std::fs::read_to_string(logs.join("checkpoint.note"))
            .ok()
            .as_deref(),
    )
    .expect("the dead launcher's log directory verifies");
    eprintln!(
        "launcher killed after {killed_at:.1?}: {} whole entries, {} bytes stored ({} torn)",
        held.entries, held.whole, held.torn
    );

    // 1. More than the monitor ever sent.
    let (refused, _) = attach_claiming(&socket, held.whole + (1 << 40));
    let refused = refused.expect("a claim beyond what was sent is refused");
    assert!(refused.contains("were sent"), "{refused}");
    eprintln!("claim beyond the log: {refused}");
    // 2. The right place, storing nothing: where the next entry ends.
    let (refused, received) = attach_claiming(&socket, held.whole);
    assert_eq!(refused, None, "the true claim is accepted");
    let (_, next) = Entry::decode(&received).expect("the resend starts with a whole entry");
    // 3. Inside that entry (sent, never acknowledged, so still held).
    let (refused, _) = attach_claiming(&socket, held.whole + next as u64 / 2);
    let refused = refused.expect("a claim inside an entry is refused");
    assert!(refused.contains("inside an entry"), "{refused}");
    eprintln!("claim inside an entry: {refused}");

    // 4. The real launcher attaches with the earlier run's directory.
    eprintln!("lies refused after {:.1?}; attaching", t0.elapsed());
    let attach = Command::new(&omega)
        .arg("attach")
        .arg("--socket")
        .arg(&socket)
        .arg("--log-dir")
        .arg(&logs)
        .arg("--image")
        .arg(image())
        .output()
        .unwrap();
    let out = text(&attach);
    assert_eq!(
        attach.status.code(),
        Some(0),
        "{out}\nconsole:\n{}",
        console_tail()
    );
    qemu.0 = None; // QEMU exited: the monitor shut down
    let cmd = printed_verifier_commands(&out)
        .into_iter()
        .find(|c| c[0] == "verify-log")
        .unwrap_or_else(|| panic!("no verify-log command\n{out}"));
    let v = measurements(&cmd);
    assert!(v.status.success(), "{cmd:?}\n{}", text(&v));

    // The joined log: the earlier run's whole entries unchanged, every message once.
    let after = std::fs::read(&stored).unwrap();
    assert_eq!(after[..held.whole as usize], before[..held.whole as usize]);
    let mut names = std::collections::HashMap::new();
    let mut sends: std::collections::HashMap<String, u64> = Default::default();
    let (mut resumed, mut refusals) = (Vec::new(), Vec::new());
    for e in EntryIter::new(&after) {
        let (_, e, _) = e.unwrap();
        let name = |bytes: Option<&[u8]>| String::from_utf8_lossy(bytes.unwrap()).into_owned();
        match (e.action, e.rule) {
            (Action::Lifecycle, lifecycle::DEFINE_AGENT) => {
                names.insert(e.target, name(e.name));
            }
            (Action::Lifecycle, lifecycle::LOG_RESUMED) => resumed.push(name(e.name)),
            (Action::Lifecycle, lifecycle::RESUME_REFUSED) => {
                assert_eq!(e.decision, Decision::Deny);
                refusals.push(name(e.name));
            }
            (Action::Message, _) => {
                *sends.entry(names[&e.agent].clone()).or_default() += 1;
            }
            _ => {}
        }
    }
    assert_eq!(sends["driver"], u64::from(ECHOES * ROUNDS));
    for i in 0..ECHOES {
        assert_eq!(sends[&format!("echo-{i}")], u64::from(ROUNDS), "echo-{i}");
    }
    let at = format!("resumed at {}", held.whole);
    assert_eq!(
        resumed,
        [at.clone(), at],
        "both accepted resumes are logged"
    );
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals[1].contains("inside an entry"), "{refusals:?}");
    // QEMU drops a send it holds when its host dies mid-write; the monitor then resets the
    // device (kernel/src/hw/virtio.rs). Whether this run hit it, for the record.
    let resets = std::fs::read_to_string(&console)
        .unwrap_or_default()
        .matches("device reset")
        .count();
    eprintln!(
        "joined log verifies: {} bytes, every message once; {resets} channel device reset(s); test took {:.1?}",
        after.len(),
        t0.elapsed()
    );
}
