//! A private etcd for a test: Debian's `etcd-server` (scripts/setup.sh) on free loopback
//! ports with its data in a directory the test owns; [`Etcd::restart`] stops it and starts
//! it again on the same ports and data (an etcd restart under load).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Option<Child>,
    data: PathBuf,
    client_port: u16,
    peer_port: u16,
    log: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The `etcd` binary (env `OMEGA_ETCD` or `etcd` on PATH), required: missing fails under
/// CI and skips loudly otherwise.
pub fn etcd_binary() -> Option<PathBuf> {
    let bin = std::env::var_os("OMEGA_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"));
    let ok = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    crate::require(
        ok.then_some(bin),
        "etcd (Debian etcd-server, scripts/setup.sh)",
    )
}

impl Etcd {
    /// Starts etcd with its data (and log `etcd.log`) under `dir`; `None` when etcd is
    /// missing (see [`etcd_binary`]).
    pub fn start(dir: &Path) -> Option<Etcd> {
        etcd_binary()?;
        let mut e = Etcd {
            child: None,
            data: dir.join("etcd-data"),
            client_port: free_port(),
            peer_port: free_port(),
            log: dir.join("etcd.log"),
        };
        e.spawn();
        Some(e)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self) {
        let bin = etcd_binary().expect("etcd");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("etcd log");
        let child = Command::new(bin)
            .arg("--name=omega-test")
            .arg(format!("--data-dir={}", self.data.display()))
            .arg(format!("--listen-client-urls={}", self.endpoint()))
            .arg(format!("--advertise-client-urls={}", self.endpoint()))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=omega-test={peer}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.client_port)).is_err() {
            assert!(Instant::now() < until, "etcd did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills etcd (SIGKILL, no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills etcd and starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
