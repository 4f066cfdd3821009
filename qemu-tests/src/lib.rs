//! A small harness that boots an Omega image under QEMU (`-machine microvm -bios IMAGE`),
//! captures the serial console, enforces a timeout and reports the exit status.
//!
//! TCG is the default: nested KVM on CI machines was measured slower than TCG. Set
//! `OMEGA_QEMU_ACCEL=kvm` on a real host to use KVM, and `OMEGA_QEMU` to pick the binary.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// QEMU's exit status when the image writes `ExitCode::Success` to isa-debug-exit.
pub const EXIT_SUCCESS: i32 = 33;
/// QEMU's exit status when the image writes `ExitCode::Failure` (panic, exception, refusal).
pub const EXIT_FAILURE: i32 = 35;
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
}

impl Boot {
    pub fn new(image: impl Into<PathBuf>) -> Boot {
        Boot { image: image.into(), memory_mib: 128, cmdline: None, timeout: Duration::from_secs(60), extra_args: Vec::new() }
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

    /// The QEMU command line, for logs and for operators to audit.
    pub fn command(&self) -> Command {
        let qemu = std::env::var_os("OMEGA_QEMU").unwrap_or_else(|| "qemu-system-x86_64".into());
        let mut cmd = Command::new(qemu);
        let accel = std::env::var("OMEGA_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
        cmd.args(["-machine", "microvm", "-accel", &accel, "-m"])
            .arg(format!("{}M", self.memory_mib))
            .arg("-bios")
            .arg(&self.image)
            .args(["-nographic", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        if let Some(c) = &self.cmdline {
            // fw_cfg strings cannot contain commas unescaped; ours never do.
            cmd.arg("-fw_cfg").arg(format!("name=opt/omega/cmdline,string={c}"));
        }
        cmd.args(&self.extra_args);
        cmd
    }

    /// Boots, waits for QEMU to exit or the timeout, and returns what happened.
    pub fn run(&self) -> Result<Outcome> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn().context("starting qemu-system-x86_64 (run scripts/setup.sh to install it)")?;
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
        let mut timed_out = false;
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st.code();
            }
            if start.elapsed() > self.timeout {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = start.elapsed();
        let _ = reader.join();
        let stderr = err_reader.join().unwrap_or_default();
        let serial = String::from_utf8_lossy(&serial.lock().unwrap()).replace('\r', "");
        let banner_after = *banner_at.lock().unwrap();
        Ok(Outcome { status, serial, stderr, timed_out, elapsed, banner_after })
    }
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
            (true, _) => format!("timed out after {:.1} s and was killed", self.elapsed.as_secs_f64()),
            (_, Some(EXIT_SUCCESS)) => "clean exit".into(),
            (_, Some(EXIT_FAILURE)) => "the image reported a failure".into(),
            (_, Some(0)) => "QEMU exited without the image's exit code (triple fault or shutdown)".into(),
            (_, Some(c)) => format!("QEMU failed with status {c}"),
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

/// The production image: `$OMEGA_IMAGE` when set (the test script builds it first),
/// otherwise built once per process into target/omega/omega.bin.
pub fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| match std::env::var_os("OMEGA_IMAGE") {
        Some(p) => PathBuf::from(p),
        None => build_image(false, "omega.bin"),
    })
}

/// The image with the kernel's fault-injection hooks, built once per process.
pub fn test_hooks_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| build_image(true, "omega-test-hooks.bin"))
}

fn build_image(test_hooks: bool, name: &str) -> PathBuf {
    let opts = image_build::Options::for_workspace(test_hooks);
    let image = image_build::build(&opts).expect("building the image");
    let out = opts.root.join("target").join("omega").join(name);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, &image.bytes).unwrap();
    out
}
