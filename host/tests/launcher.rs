//! The `omega` binary as a process: signals, and (with an image) a whole run under QEMU.
use omega_test_support::require;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn omega() -> Command {
    Command::new(env!("CARGO_BIN_EXE_omega"))
}

#[test]
fn sigterm_stops_qemu_and_exits_130() {
    // A stand-in for QEMU that never creates the socket and would run for a minute.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-qemu");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let img = dir.path().join("omega.bin");
    std::fs::write(&img, b"image").unwrap();
    let mut child = omega()
        .args([
            "run",
            "--image",
            img.to_str().unwrap(),
            "--qemu",
            fake.to_str().unwrap(),
        ])
        .args(["--log-dir", dir.path().to_str().unwrap(), "--log", "debug"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sending a signal to our own child process by pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let t0 = Instant::now();
    let status = child.wait().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    // The fake QEMU is gone (killed and reaped by the launcher).
    let pid: u32 = err
        .split("QEMU started (pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .expect("pid in the log");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "fake QEMU {pid} still running"
    );
}

/// The image (`OMEGA_IMAGE`, built from this tree) and QEMU, or None after saying why.
/// Under CI a missing prerequisite fails the test instead.
fn image_and_qemu() -> Option<String> {
    let image = std::env::var("OMEGA_IMAGE")
        .ok()
        .filter(|p| std::path::Path::new(p).is_file());
    let image = require(image, "OMEGA_IMAGE (an image built from this tree)")?;
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    require(qemu.then_some(()), "qemu-system-x86_64")?;
    Some(image)
}

/// Needs an image and QEMU: `OMEGA_IMAGE=target/omega/omega.bin cargo test -p omega-host
/// --test launcher`.
#[test]
fn full_run_delivers_the_bundle_and_stores_the_log() {
    let Some(image) = image_and_qemu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bundle = small_bundle(dir.path());
    let logs = dir.path().join("logs");
    let out = omega()
        .args([
            "run",
            "--image",
            &image,
            "--bundle",
            bundle.to_str().unwrap(),
        ])
        .args([
            "--log-dir",
            logs.to_str().unwrap(),
            "--connect-timeout",
            "60",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("omega: qemu-system-x86_64 -machine microvm"),
        "{stdout}"
    );
    assert!(stderr.contains("bundle sent: 3 files"), "{stderr}");
    assert!(stderr.contains("the image exited cleanly"), "{stderr}");
    assert!(
        std::fs::metadata(logs.join("provenance.log"))
            .unwrap()
            .len()
            > 0
    );
    assert!(
        std::fs::read_to_string(logs.join("log.vkey"))
            .unwrap()
            .contains('+')
    );
    assert!(
        std::fs::metadata(logs.join("checkpoint.note"))
            .unwrap()
            .len()
            > 0
    );
    assert!(!logs.join("omega.sock").exists(), "socket removed");
}

/// A one-agent bundle in `dir/bundle`.
fn small_bundle(dir: &std::path::Path) -> std::path::PathBuf {
    let bundle = dir.join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(bundle.join("hello.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(bundle.join("policy.bin"), b"policy").unwrap();
    std::fs::write(
        bundle.join("manifest.json"),
        omega_bundle::Manifest::json("policy.bin", [("hello", "hello.wasm")]),
    )
    .unwrap();
    bundle
}

/// `omega run` of the image with a bundle into `logs`; with `limit`, the launcher's files
/// may grow to at most that many bytes (RLIMIT_FSIZE), so a write past it fails (EFBIG) as
/// on a full disk (ENOSPC).
fn run_limited(
    image: &str,
    bundle: &std::path::Path,
    logs: &std::path::Path,
    limit: Option<u64>,
) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = omega();
    cmd.args(["run", "--image", image, "--connect-timeout", "60"])
        .arg("--bundle")
        .arg(bundle)
        .arg("--log-dir")
        .arg(logs);
    if let Some(limit) = limit {
        // SAFETY: only setrlimit, async-signal-safe, in the child between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.output().unwrap()
}

/// Needs an image and QEMU (as above). A write error in the middle of an entry ends the run
/// with a clear error (exit 1, QEMU stopped) and leaves only whole entries in the log.
#[test]
fn a_write_error_while_storing_the_log_ends_the_run_with_whole_entries_only() {
    use omega_provenance::entry::EntryIter;
    let Some(image) = image_and_qemu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bundle = small_bundle(dir.path());
    // Where the log's entries end, from a run without a limit.
    let free = dir.path().join("free");
    let ok = run_limited(&image, &bundle, &free, None);
    let say = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert_eq!(ok.status.code(), Some(0), "{}", say(&ok));
    let full = std::fs::read(free.join("provenance.log")).unwrap();
    let ends: Vec<usize> = EntryIter::new(&full)
        .map(|e| {
            let (at, _, bytes) = e.unwrap();
            at + bytes.len()
        })
        .collect();
    assert!(ends.len() >= 2, "{} entries", ends.len());
    // The limit falls inside the last entry: its write is cut short.
    let [.., before_last, last] = ends[..] else {
        unreachable!()
    };
    let limit = (before_last + (last - before_last) / 2) as u64;
    let logs = dir.path().join("limited");
    let t0 = Instant::now();
    let run = run_limited(&image, &bundle, &logs, Some(limit));
    let out = say(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(out.contains("provenance log storage failed"), "{out}");
    assert!(out.contains("whole entries"), "{out}");
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "the run did not end"
    );
    let log = std::fs::read(logs.join("provenance.log")).unwrap();
    assert!(log.len() as u64 <= limit);
    // Whole entries only (a torn last one would not decode), in order from the first. The
    // bytes differ from the free run's: entries carry the time.
    let seqs: Vec<u64> = EntryIter::new(&log)
        .map(|e| e.expect("whole entries only").1.seq)
        .collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    eprintln!(
        "kept {} of {} entries ({} bytes, file size limit {limit})",
        seqs.len(),
        ends.len(),
        log.len()
    );
}
