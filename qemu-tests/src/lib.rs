//! A small harness that boots an Omega image under QEMU (`-machine microvm -bios IMAGE`),
//! captures the serial console, enforces a timeout and reports the exit status. The QEMU
//! command line comes from the launcher's builder ([`omega_host::QemuConfig`]), the exit
//! statuses from `omega-arch`.
//!
//! TCG is the default: nested KVM on CI machines was measured slower than TCG. Set
//! `OMEGA_QEMU_ACCEL=kvm` on a real host to use KVM, and `OMEGA_QEMU` to pick the binary.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub mod cli;
pub mod host_cpu;
pub mod raw_host;
pub mod script;
pub mod verified_run;
pub mod workloads;

pub use omega_host::qemu::{EXIT_FAILURE, EXIT_SUCCESS};
use omega_host::{ChannelSession, QemuConfig, QemuOutcome, SessionConfig};

/// The line the kernel's banner starts with.
pub const BANNER: &str = "Omega monitor";

/// One boot to run.
#[derive(Debug, Clone)]
pub struct Boot {
    pub image: PathBuf,
    pub memory_mib: u32,
    /// Passed to the kernel through fw_cfg `opt/omega/cmdline`.
    pub cmdline: Option<String>,
    pub timeout: Duration,
    pub extra_args: Vec<String>,
    /// The host channel's unix socket.
    pub channel: Option<PathBuf>,
    /// A QEMU monitor's unix socket.
    pub monitor: Option<PathBuf>,
}

impl Boot {
    pub fn new(image: impl Into<PathBuf>) -> Boot {
        Boot {
            image: image.into(),
            memory_mib: 128,
            cmdline: None,
            timeout: Duration::from_secs(60),
            extra_args: Vec::new(),
            channel: None,
            monitor: None,
        }
    }

    pub fn cmdline(mut self, c: &str) -> Boot {
        self.cmdline = Some(c.to_string());
        self
    }

    pub fn memory(mut self, mib: u32) -> Boot {
        self.memory_mib = mib;
        self
    }

    pub fn timeout(mut self, t: Duration) -> Boot {
        self.timeout = t;
        self
    }

    /// The QEMU configuration: the launcher's, with this boot's options.
    pub fn config(&self) -> QemuConfig {
        let qemu = std::env::var("OMEGA_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
        let kvm = std::env::var("OMEGA_QEMU_ACCEL").is_ok_and(|a| a == "kvm");
        if kvm && let Some(why) = omega_host::qemu::kvm_caveat() {
            eprintln!("warning: {why}");
        }
        QemuConfig {
            memory_mib: self.memory_mib,
            kvm,
            socket: self.channel.clone(),
            cmdline: self.cmdline.clone(),
            monitor_socket: self.monitor.clone(),
            extra_args: self.extra_args.clone(),
            ..QemuConfig::new(qemu, &self.image)
        }
    }

    /// The QEMU command.
    pub fn command(&self) -> Command {
        let c = self.config();
        let mut cmd = Command::new(&c.qemu);
        cmd.args(c.args());
        cmd
    }

    /// Adds the host channel: serial port 1 of a virtio console (virtio-mmio) whose
    /// chardev is a unix socket QEMU listens on (and waits for before starting the VM).
    pub fn virtio_console(mut self, path: &Path) -> Boot {
        self.channel = Some(path.to_path_buf());
        self
    }

    /// Adds a QEMU monitor on a unix socket (for `pmemsave` and friends).
    pub fn monitor_socket(mut self, path: &Path) -> Boot {
        self.monitor = Some(path.to_path_buf());
        self
    }

    /// Starts QEMU and returns at once; the serial console is collected in the background.
    pub fn spawn(&self) -> Result<Running> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .context("starting qemu-system-x86_64 (run scripts/setup.sh to install it)")?;
        let serial = Arc::new(Mutex::new(Vec::new()));
        let banner_at = Arc::new(Mutex::new(None));
        let mut stdout = child.stdout.take().expect("piped");
        let reader = {
            let serial = Arc::clone(&serial);
            let banner_at = Arc::clone(&banner_at);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = serial.lock().unwrap();
                    s.extend_from_slice(&buf[..n]);
                    let mut b = banner_at.lock().unwrap();
                    if b.is_none() && String::from_utf8_lossy(&s).contains(BANNER) {
                        *b = Some(start.elapsed());
                    }
                }
            })
        };
        let mut stderr = child.stderr.take().expect("piped");
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Ok(Running {
            child,
            start,
            timeout: self.timeout,
            serial,
            banner_at,
            reader: Some(reader),
            err_reader: Some(err_reader),
        })
    }

    /// Boots, waits for QEMU to exit or the timeout, and returns what happened.
    pub fn run(&self) -> Result<Outcome> {
        self.spawn()?.finish()
    }
}

/// A QEMU that is running.
pub struct Running {
    child: std::process::Child,
    start: Instant,
    timeout: Duration,
    serial: Arc<Mutex<Vec<u8>>>,
    banner_at: Arc<Mutex<Option<Duration>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    err_reader: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Running {
    /// A test that fails half-way must not leave QEMU running (and burning CPU) after it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// The serial output so far.
    pub fn serial(&self) -> String {
        String::from_utf8_lossy(&self.serial.lock().unwrap()).replace('\r', "")
    }

    /// Waits until the serial output contains `needle`; false on timeout or exit.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.serial().contains(needle) {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.serial().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Stops QEMU now.
    pub fn kill(mut self) -> Result<Outcome> {
        let _ = self.child.kill();
        self.finish()
    }

    /// Waits for QEMU to exit (killing it at the timeout) and returns what happened.
    pub fn finish(mut self) -> Result<Outcome> {
        let mut timed_out = false;
        let status = loop {
            if let Some(st) = self.child.try_wait()? {
                break st.code();
            }
            if self.start.elapsed() > self.timeout {
                timed_out = true;
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = self.start.elapsed();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stderr = self
            .err_reader
            .take()
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default();
        let serial = String::from_utf8_lossy(&self.serial.lock().unwrap()).replace('\r', "");
        let banner_after = *self.banner_at.lock().unwrap();
        Ok(Outcome {
            status,
            serial,
            stderr,
            timed_out,
            elapsed,
            banner_after,
        })
    }
}

/// Boots `boot` with the host channel on `socket` and connects the launcher's session,
/// serving `config`, to it.
pub fn boot_with_session(
    boot: Boot,
    socket: &Path,
    config: SessionConfig,
) -> Result<(Running, ChannelSession)> {
    let vm = boot.virtio_console(socket).spawn()?;
    let session =
        ChannelSession::connect_unix(socket, config, Instant::now() + Duration::from_secs(60))?;
    Ok((vm, session))
}

/// 32 fresh random bytes from the OS: a verifier's nonce.
pub fn random_nonce() -> [u8; 32] {
    use std::io::Read as _;
    let mut nonce = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut nonce))
        .expect("reading /dev/urandom");
    nonce
}

/// The challenge a verifier sends through the launcher (`omega run` without `--nonce`): a
/// fresh random nonce, no simulated PSP.
pub fn fresh_challenge() -> omega_host::session::Challenge {
    omega_host::session::Challenge {
        nonce: random_nonce(),
        simulated_psp: None,
    }
}

/// Boots `boot` and starts serving it `bundle` with the launcher's session, storing the
/// provenance log in `dir` (which also holds the channel socket). Like `omega run`, the
/// session first sends a Challenge with a fresh random nonce (the session's
/// `SessionEvent::ChallengeSent` says which), so the monitor's evidence is bound to it.
pub fn serve_bundle(
    boot: Boot,
    dir: &Path,
    bundle: omega_host::Bundle,
) -> Result<(Running, ChannelSession)> {
    let config = SessionConfig {
        log_store: Some(Box::new(omega_host::FileLogStore::open(dir)?)),
        bundle: Some(bundle),
        challenge: Some(fresh_challenge()),
        ..Default::default()
    };
    boot_with_session(boot, &dir.join("channel.sock"), config)
}

/// [`serve_bundle`] until the VM exits: its outcome and everything the session saw.
pub fn deliver_bundle(
    boot: Boot,
    dir: &Path,
    bundle: omega_host::Bundle,
) -> Result<(Outcome, Vec<omega_host::SessionEvent>)> {
    let (vm, session) = serve_bundle(boot, dir, bundle)?;
    let out = vm.finish()?;
    Ok((out, session.close()))
}

/// Boots `boot` with the host channel on `socket` and connects a raw wire host to it,
/// granting `window` bytes of credit per stream (the raw host's default when `None`).
pub fn boot_with_raw_host(
    boot: Boot,
    socket: &Path,
    window: Option<u32>,
) -> Result<(Running, raw_host::RawHost)> {
    let vm = boot.virtio_console(socket).spawn()?;
    let host = match window {
        Some(w) => raw_host::RawHost::connect_with_window(socket, Duration::from_secs(60), w),
        None => raw_host::RawHost::connect(socket, Duration::from_secs(60)),
    }?;
    Ok((vm, host))
}

/// `omega run` of the test-hooks image with the simulated PSP (lab chain), serving `bundle`,
/// storing into `logs`, challenged with `nonce` (64 hex digits): the evidence path end to
/// end as a verifier drives it.
pub fn run_with_simulated_psp(bundle: &Path, logs: &Path, nonce: &str) -> std::process::Output {
    Command::new(workspace_bin("omega-host", "omega"))
        .arg("run")
        .arg("--image")
        .arg(test_hooks_image())
        .arg("--simulated-psp")
        .arg("--bundle")
        .arg(bundle)
        .arg("--log-dir")
        .arg(logs)
        .args(["--nonce", nonce, "--connect-timeout", "60"])
        .output()
        .expect("starting omega run")
}

/// Sends one command to a QEMU monitor socket and returns its answer.
pub fn monitor_command(socket: &Path, command: &str) -> Result<String> {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read_prompt = |s: &mut UnixStream, out: &mut Vec<u8>, buf: &mut [u8]| -> Result<()> {
        let until = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(out).ends_with("(qemu) ") && Instant::now() < until {
            match s.read(buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    };
    read_prompt(&mut s, &mut out, &mut buf)?;
    out.clear();
    s.write_all(format!("{command}\n").as_bytes())?;
    read_prompt(&mut s, &mut out, &mut buf)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// What a boot did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// QEMU's exit status (`None` when killed).
    pub status: Option<i32>,
    pub serial: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
    /// Time from starting QEMU to the kernel banner on the serial port.
    pub banner_after: Option<Duration>,
}

impl Outcome {
    /// What QEMU's exit status means for an Omega image.
    pub fn describe(&self) -> String {
        match (self.timed_out, self.status) {
            (true, _) => format!(
                "timed out after {:.1} s and was killed",
                self.elapsed.as_secs_f64()
            ),
            (_, Some(c)) => QemuOutcome::from_status(Some(c), None).message(),
            (_, None) => "QEMU was killed by a signal".into(),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "outcome: {} (status {:?})", self.describe(), self.status)?;
        writeln!(f, "--- serial ---\n{}", self.serial)?;
        if !self.stderr.is_empty() {
            writeln!(f, "--- qemu stderr ---\n{}", self.stderr)?;
        }
        Ok(())
    }
}

/// Whether QEMU (`$OMEGA_QEMU` or `qemu-system-x86_64`) runs: required, so under `CI` its
/// absence fails the test; elsewhere the test skips loudly.
pub fn qemu_present() -> bool {
    let qemu = std::env::var("OMEGA_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
    let found = Command::new(&qemu)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    omega_test_support::require(found.then_some(()), format!("{qemu} (scripts/setup.sh)")).is_some()
}

/// The production image: `$OMEGA_IMAGE` when set (the test script builds it first),
/// otherwise built once per process into target/omega/omega.bin.
pub fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| match std::env::var_os("OMEGA_IMAGE") {
        Some(p) => PathBuf::from(p),
        None => build_image(false, "omega.bin"),
    })
}

/// The image with the kernel's fault-injection hooks: `$OMEGA_TEST_HOOKS_IMAGE` when set
/// (built with `image-build --test-hooks`), otherwise built once per process.
pub fn test_hooks_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| match std::env::var_os("OMEGA_TEST_HOOKS_IMAGE") {
        Some(p) => PathBuf::from(p),
        None => build_image(true, "omega-test-hooks.bin"),
    })
}

fn build_image(test_hooks: bool, name: &str) -> PathBuf {
    let opts = image_build::Options::for_workspace(test_hooks);
    let image = image_build::build(&opts).expect("building the image");
    let out = opts.root.join("target").join("omega").join(name);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, &image.bytes).unwrap();
    out
}

/// A binary of this workspace (`omega`, `measurements`): built on first use with `cargo
/// build`, in the profile and target directory of the running test, and its path returned.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    // <target>/<profile>/deps/<test>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary under <target>/<profile>/deps");
    let target = profile_dir.parent().expect("<target>");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(p) => p,
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--profile",
            profile,
            "-p",
            package,
            "--bin",
            bin,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target)
        .status()
        .expect("running cargo");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    profile_dir.join(bin)
}

/// The verifier commands `omega run` printed (`omega: verify: measurements …`), each
/// without the program name.
pub fn printed_verifier_commands(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("omega: verify: "))
        .map(|c| {
            let mut argv = shlex::split(c).expect("a shell-quoted command");
            assert_eq!(argv.remove(0), "measurements", "{c}");
            argv
        })
        .collect()
}

/// Runs this workspace's `measurements` with `args`.
pub fn measurements<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> std::process::Output {
    Command::new(workspace_bin("measurements", "measurements"))
        .args(args)
        .output()
        .expect("running measurements")
}

/// `measurements verify-evidence` of a test-hooks run's `evidence` for `principal` and
/// `nonce` (hex), under the lab root and the test-hooks image's launch digest (1 vCPU,
/// EPYC-v4: `omega run`'s defaults). Panics unless it verifies; returns what it printed.
#[track_caller]
pub fn verify_lab_evidence(evidence: &Path, principal: &str, nonce: &str) -> String {
    let image = test_hooks_image().display().to_string();
    let o = measurements([
        "verify-evidence",
        "--evidence",
        &evidence.display().to_string(),
        "--principal",
        principal,
        "--nonce",
        nonce,
        "--image",
        &image,
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--lab-root",
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{principal} evidence does not verify: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Checks the log a session stored in `log_dir` as `measurements verify-log` does (the same
/// library calls): the last checkpoint the guest sent is signed by the key it sent, and
/// every stored entry is covered by it. Returns the checkpoint and the stored entry bytes.
pub fn verify_stored_log(
    events: &[omega_host::SessionEvent],
    log_dir: &Path,
) -> (omega_provenance::Checkpoint, Vec<u8>) {
    use omega_host::SessionEvent;
    let key = events
        .iter()
        .find_map(|e| match e {
            SessionEvent::LogKey(k) => Some(k.clone()),
            _ => None,
        })
        .expect("the guest sent its log key");
    let note = events
        .iter()
        .rev()
        .find_map(|e| match e {
            SessionEvent::Checkpoint(n) => Some(n.clone()),
            _ => None,
        })
        .expect("the guest sent a checkpoint");
    let stored = std::fs::read(log_dir.join("provenance.log")).expect("the stored log");
    let vkey = omega_provenance::VerifierKey::parse(&key).expect("a well-formed log key");
    let cp = omega_provenance::Checkpoint::verify(&note, &vkey)
        .expect("checkpoint signed by the log key");
    let report = omega_provenance::verify::verify_stream(&stored, &cp);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        report.entries, cp.size,
        "every entry covered by the checkpoint"
    );
    (cp, stored)
}
