//! Attacks on the files the launcher writes and reads (issue 13, finding 7): each is
//! performed and shown refused, with the attacked file untouched.
mod sim;

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use omega_host::bundle::{Bundle, BundleError};
use omega_host::files::{check_private_dir, ensure_private_dir, fresh_private_dir};
use omega_host::session::log_store::{CHECKPOINT_FILE, KEY_FILE, LOG_DIR_FILES, LOG_FILE};
use omega_host::{FileLogStore, LogStore, SessionConfig, SessionEvent};
use omega_provenance::entry::{Entry, EntryIter, MAX_ENTRY};
use omega_provenance::{Action, Decision};
use omega_wire::msg::{self, code};
use omega_wire::{INITIAL_WINDOW, Kind, Stream};
use sim::start_ready;

const T: Duration = Duration::from_secs(5);
const VICTIM: &[u8] = b"precious: not the launcher's to write\n";

/// A file elsewhere that a planted symlink points to.
fn victim(dir: &Path) -> std::path::PathBuf {
    let v = dir.join("victim");
    std::fs::write(&v, VICTIM).unwrap();
    v
}

fn assert_untouched(v: &Path) {
    assert_eq!(
        std::fs::read(v).unwrap(),
        VICTIM,
        "{} was written",
        v.display()
    );
}

#[test]
fn a_used_log_directory_is_refused_and_left_as_it_was() {
    for name in LOG_DIR_FILES {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), b"first boot").unwrap();
        let e = FileLogStore::open(dir.path()).err().expect("refused");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{name}: {e}");
        assert!(e.to_string().contains("belongs to one boot"), "{e}");
        assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), b"first boot");
    }
}

#[test]
fn two_stores_cannot_share_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let first = FileLogStore::open(dir.path()).unwrap();
    assert!(FileLogStore::open(dir.path()).is_err());
    assert_eq!(first.path, dir.path().join(LOG_FILE));
}

#[test]
fn symlinked_launcher_files_are_refused_and_their_targets_untouched() {
    for name in LOG_DIR_FILES {
        let outside = tempfile::tempdir().unwrap();
        let v = victim(outside.path());
        let dir = tempfile::tempdir().unwrap();
        symlink(&v, dir.path().join(name)).unwrap();
        assert!(FileLogStore::open(dir.path()).is_err(), "{name}");
        assert_untouched(&v);
        // A dangling link (to a file that would be created) is refused too.
        let dir = tempfile::tempdir().unwrap();
        let would_create = outside.path().join("created");
        symlink(&would_create, dir.path().join(name)).unwrap();
        assert!(FileLogStore::open(dir.path()).is_err(), "{name}");
        assert!(!would_create.exists());
    }
}

#[test]
fn a_symlinked_log_directory_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("logs");
    symlink(outside.path(), &link).unwrap();
    let e = FileLogStore::open(&link).err().expect("refused");
    assert!(e.to_string().contains("symlink"), "{e}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_new_log_directory_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("a/b/logs");
    FileLogStore::open(&logs).unwrap();
    assert_eq!(std::fs::metadata(&logs).unwrap().mode() & 0o777, 0o700);
}

/// Links planted after the store was opened (a key or checkpoint name, or the temporary
/// name of the atomic replace) never redirect a write.
#[test]
fn links_planted_while_running_never_redirect_a_write() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileLogStore::open(dir.path()).unwrap();
    for (name, planted) in [
        (KEY_FILE, ".log.vkey.tmp".to_string()),
        (CHECKPOINT_FILE, ".checkpoint.note.tmp".into()),
        (KEY_FILE, KEY_FILE.into()),
        (CHECKPOINT_FILE, CHECKPOINT_FILE.into()),
    ] {
        let v = victim(outside.path());
        let p = dir.path().join(&planted);
        let _ = std::fs::remove_file(&p);
        symlink(&v, &p).unwrap();
        store.put_file(name, b"from the guest").unwrap();
        assert_untouched(&v);
        let stored = dir.path().join(name);
        assert!(!std::fs::symlink_metadata(&stored).unwrap().is_symlink());
        assert_eq!(std::fs::read(&stored).unwrap(), b"from the guest");
        assert!(!dir.path().join(format!(".{name}.tmp")).exists());
    }
    // provenance.log was opened once, with O_NOFOLLOW: replacing its name by a link later
    // changes nothing for the descriptor the store writes through.
    let v = victim(outside.path());
    std::fs::remove_file(dir.path().join(LOG_FILE)).unwrap();
    symlink(&v, dir.path().join(LOG_FILE)).unwrap();
    store.append(b"entry").unwrap();
    store.sync().unwrap();
    assert_untouched(&v);
}

fn entry(seq: u64) -> Vec<u8> {
    let e = Entry {
        seq,
        dt: 3,
        agent: 1,
        action: Action::Lifecycle,
        target: 2,
        decision: Decision::Allow,
        rule: 4,
        labels: 0,
        content: Some([seq as u8; 32]),
        name: Some(b"omega-monitor"),
    };
    let mut out = [0u8; MAX_ENTRY];
    let n = e.encode(&mut out).unwrap();
    out[..n].to_vec()
}

/// Every byte of `log` decodes as whole entries; returns how many.
fn whole_entries(log: &[u8]) -> usize {
    let mut n = 0;
    for e in EntryIter::new(log) {
        e.expect("a whole entry");
        n += 1;
    }
    n
}

/// A [`FileLogStore`] whose `fail_at`-th append writes half its bytes, then fails with
/// ENOSPC, as a full disk does.
struct DiskFull {
    inner: FileLogStore,
    appends: usize,
    fail_at: usize,
}

impl LogStore for DiskFull {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.appends += 1;
        if self.appends == self.fail_at {
            self.inner.append(&bytes[..bytes.len() / 2])?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.inner.append(bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
    fn put_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.inner.put_file(name, bytes)
    }
    fn put_evidence(&mut self, file: &str, bytes: &[u8]) -> io::Result<()> {
        self.inner.put_evidence(file, bytes)
    }
    fn put_card(&mut self, file: &str, bytes: &[u8]) -> io::Result<()> {
        self.inner.put_card(file, bytes)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
}

/// Sends entries 0 and 1, then the first half of entry 2 (all acknowledged), then the rest
/// of entry 2 with entry 3, which the store fails to write. Returns the frames the guest
/// saw after that, and whether the channel closed.
fn run_until_storage_fails(store: Box<dyn LogStore>) -> (Vec<sim::Owned>, bool, Vec<SessionEvent>) {
    let cfg = SessionConfig {
        log_store: Some(store),
        ..Default::default()
    };
    let (mut g, s) = start_ready(cfg, INITIAL_WINDOW);
    let (e0, e1, e2, e3) = (entry(0), entry(1), entry(2), entry(3));
    let half = e2.len() / 2;
    let mut acked = 0;
    for m in [&e0[..], &e1[..], &e2[..half]] {
        g.send_message(Stream::Log, m, T);
        acked += m.len() as u64;
        loop {
            let f = g.expect_kind(Kind::Ack, T);
            if f.header.arg == acked {
                break;
            }
        }
    }
    g.send_message(Stream::Log, &[&e2[half..], &e3[..]].concat(), T);
    let mut seen = Vec::new();
    let closed = loop {
        match g.next(T) {
            Some(f) => seen.push(f),
            None => break !g.pump(),
        }
    };
    assert!(s.wait_event(|e| *e == SessionEvent::Ended, T).is_some());
    (seen, closed, s.events())
}

fn assert_clean_failure(seen: &[sim::Owned], closed: bool, events: &[SessionEvent], log: &[u8]) {
    assert!(
        !seen.iter().any(|f| f.header.kind == Kind::Ack),
        "nothing more acknowledged"
    );
    assert!(seen.iter().any(|f| f.header.kind == Kind::Error
        && f.header.stream == Stream::Log
        && msg::ErrorBody::decode(&f.payload).unwrap().code == code::BACKEND));
    assert!(
        closed,
        "the guest sees the channel close, it is not left waiting"
    );
    let kept = (entry(0).len() + entry(1).len()) as u64;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::LogStorageFailed { kept: k, .. } if *k == kept)),
        "{events:?}"
    );
    // No partial record: the acknowledged half of entry 2 is cut as well.
    assert_eq!(log.len() as u64, kept);
    assert_eq!(whole_entries(log), 2);
    assert_eq!(log, [entry(0), entry(1)].concat());
}

#[test]
fn disk_full_ends_the_session_with_no_partial_record() {
    let dir = tempfile::tempdir().unwrap();
    let inner = FileLogStore::open(dir.path()).unwrap();
    let store = DiskFull {
        inner,
        appends: 0,
        fail_at: 4,
    };
    let (seen, closed, events) = run_until_storage_fails(Box::new(store));
    let log = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
    assert_clean_failure(&seen, closed, &events, &log);
}

/// The same with a real write error: this test runs itself again in a child process with
/// a file size limit (RLIMIT_FSIZE) just past entry 2's first half, so the kernel fails the
/// write (EFBIG) part way, as it does on a full disk (ENOSPC).
#[test]
fn a_real_write_error_ends_the_session_with_no_partial_record() {
    const CHILD: &str = "OMEGA_TEST_FSIZE_CHILD";
    let limit = (entry(0).len() + entry(1).len() + entry(2).len() / 2 + 5) as u64;
    if let Some(dir) = std::env::var_os(CHILD) {
        let dir = Path::new(&dir);
        let store = FileLogStore::open(dir).unwrap();
        let lim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: plain system calls on this (child) process: ignore SIGXFSZ so the write
        // fails with EFBIG instead of killing the process, then limit file sizes.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        }
        let (seen, closed, events) = run_until_storage_fails(Box::new(store));
        let failure = events.iter().find_map(|e| match e {
            SessionEvent::LogStorageFailed { message, .. } => Some(message.clone()),
            _ => None,
        });
        assert!(failure.unwrap().contains("too large"), "{events:?}");
        let log = std::fs::read(dir.join(LOG_FILE)).unwrap();
        assert_clean_failure(&seen, closed, &events, &log);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_real_write_error_ends_the_session_with_no_partial_record",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    let log = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
    assert_eq!(whole_entries(&log), 2);
}

#[test]
fn socket_directories_of_another_user_or_open_to_others_are_refused() {
    let base = tempfile::tempdir().unwrap();
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = ensure_private_dir(&open).unwrap_err();
    assert!(e.to_string().contains("mode 0o755"), "{e}");

    let link = base.path().join("link");
    let private = base.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    check_private_dir(&private).unwrap();
    symlink(&private, &link).unwrap();
    assert!(
        check_private_dir(&link)
            .unwrap_err()
            .to_string()
            .contains("symlink")
    );

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // "Another user" pre-created the directory (root can hand it to one).
        let theirs = base.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
        let e = ensure_private_dir(&theirs).unwrap_err();
        assert!(e.to_string().contains("owned by uid 4242"), "{e}");
    } else {
        eprintln!("NOTE: not root, the foreign-owner case is not performed");
    }

    // Missing: created private.
    let new = base.path().join("new/sock-dir");
    ensure_private_dir(&new).unwrap();
    assert_eq!(std::fs::metadata(&new).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn fresh_socket_directories_are_private_and_unpredictable() {
    let a = fresh_private_dir().unwrap();
    let b = fresh_private_dir().unwrap();
    assert_ne!(a, b);
    for d in [&a, &b] {
        check_private_dir(d).unwrap();
        let name = d.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("omega-") && name.len() == 6 + 16, "{name}");
        std::fs::remove_dir(d).unwrap();
    }
}

/// `omega run` with `args`, a dummy image and a stand-in QEMU that leaves a marker file;
/// returns the output and whether the stand-in ran.
fn run_with_stand_in_qemu(dir: &Path, args: &[&str]) -> (std::process::Output, bool) {
    let img = dir.join("omega.bin");
    std::fs::write(&img, b"image").unwrap();
    let marker = dir.join("qemu-ran");
    let qemu = dir.join("qemu.sh");
    std::fs::write(&qemu, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_omega"))
        .args(["run", "--image", img.to_str().unwrap()])
        .args(["--qemu", qemu.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    (out, marker.exists())
}

/// The launcher refuses `--socket` in a directory others can enter, before QEMU starts.
#[test]
fn the_launcher_refuses_a_shared_socket_directory() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (out, qemu_ran) = run_with_stand_in_qemu(
        dir.path(),
        &["--socket", shared.join("omega.sock").to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("private directory"), "{err}");
    assert!(!qemu_ran, "QEMU was started");
}

/// A second launcher run into a used log directory stops before QEMU starts and leaves the
/// first run's files as they were.
#[test]
fn the_launcher_refuses_a_used_log_directory() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    for name in [LOG_FILE, KEY_FILE, CHECKPOINT_FILE] {
        std::fs::write(logs.join(name), name).unwrap();
    }
    let (out, qemu_ran) =
        run_with_stand_in_qemu(dir.path(), &["--log-dir", logs.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("belongs to one boot"), "{err}");
    assert!(!qemu_ran, "QEMU was started");
    for name in [LOG_FILE, KEY_FILE, CHECKPOINT_FILE] {
        assert_eq!(std::fs::read_to_string(logs.join(name)).unwrap(), name);
    }
}

fn bundle_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("manifest.json"),
        omega_bundle::Manifest::json("policy.bin", [("a", "a.wasm")]),
    )
    .unwrap();
    std::fs::write(dir.path().join("policy.bin"), b"OMPL").unwrap();
    std::fs::write(dir.path().join("a.wasm"), b"\0asm\x01\0\0\0").unwrap();
    Bundle::read(dir.path()).expect("a good bundle");
    dir
}

#[test]
fn symlinks_in_a_bundle_are_refused() {
    for name in ["manifest.json", "policy.bin", "a.wasm"] {
        let dir = bundle_dir();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join(name);
        std::fs::rename(dir.path().join(name), &target).unwrap();
        symlink(&target, dir.path().join(name)).unwrap();
        match Bundle::read(dir.path()) {
            Err(BundleError::Symlink(n)) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
    // A link to a device (endless) is refused as a link, before it is opened.
    let dir = bundle_dir();
    std::fs::remove_file(dir.path().join("a.wasm")).unwrap();
    symlink("/dev/zero", dir.path().join("a.wasm")).unwrap();
    assert!(matches!(
        Bundle::read(dir.path()),
        Err(BundleError::Symlink(_))
    ));
}

#[test]
fn fifos_and_sockets_in_a_bundle_are_refused_without_blocking() {
    let dir = bundle_dir();
    let fifo = dir.path().join("a.wasm");
    std::fs::remove_file(&fifo).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A FIFO with no writer would block an open for reading forever.
    let (tx, rx) = std::sync::mpsc::channel();
    let p = dir.path().to_path_buf();
    std::thread::spawn(move || tx.send(Bundle::read(&p)).unwrap());
    match rx
        .recv_timeout(T)
        .expect("reading a bundle with a FIFO blocked")
    {
        Err(BundleError::NotAFile(n)) => assert_eq!(n, "a.wasm"),
        other => panic!("{other:?}"),
    }

    let dir = bundle_dir();
    std::fs::remove_file(dir.path().join("policy.bin")).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("policy.bin")).unwrap();
    assert!(matches!(
        Bundle::read(dir.path()),
        Err(BundleError::NotAFile(n)) if n == "policy.bin"
    ));
}

#[test]
fn a_symlinked_bundle_directory_is_refused() {
    let dir = bundle_dir();
    let base = tempfile::tempdir().unwrap();
    let link = base.path().join("bundle");
    symlink(dir.path(), &link).unwrap();
    assert!(matches!(Bundle::read(&link), Err(BundleError::Io { .. })));
}

/// The monitor's evidence goes to `evidence/` with the same hygiene: a planted `evidence`
/// link (to a directory outside) or planted links inside it never redirect a write.
#[test]
fn evidence_is_stored_without_following_planted_links() {
    use omega_host::session::log_store::EVIDENCE_DIR;
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileLogStore::open(dir.path()).unwrap();
    symlink(outside.path(), dir.path().join(EVIDENCE_DIR)).unwrap();
    assert!(store.put_evidence("log.bin", b"evidence").is_err());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

    std::fs::remove_file(dir.path().join(EVIDENCE_DIR)).unwrap();
    store.put_evidence("log.bin", b"first").unwrap();
    let ev = dir.path().join(EVIDENCE_DIR);
    assert_eq!(std::fs::metadata(&ev).unwrap().mode() & 0o777, 0o700);
    for planted in ["agent_triage.bin", ".agent_triage.bin.tmp", "log.bin"] {
        let v = victim(outside.path());
        let p = ev.join(planted);
        let _ = std::fs::remove_file(&p);
        symlink(&v, &p).unwrap();
        let name = planted.trim_start_matches('.').trim_end_matches(".tmp");
        store.put_evidence(name, b"from the guest").unwrap();
        assert_untouched(&v);
        assert!(
            !std::fs::symlink_metadata(ev.join(name))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(std::fs::read(ev.join(name)).unwrap(), b"from the guest");
    }
}
