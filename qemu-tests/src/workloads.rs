//! Workloads with many agents for the scale tests and benchmarks (`tests/scale.rs`,
//! `src/bin/agents-bench.rs`): WAT agents compiled with `wat`, a policy compiled by
//! `policy-compiler` pinning them, and a bundle whose manifest runs them as instances
//! (`instances = N`).
//!
//! * **idle**: `recv` with `wait`, i.e. parked until a message comes (none does); one page
//!   of linear memory, the memory limit one page.
//! * **echo** × N: `rounds` times: receive a message, send one back to `driver`; then exit 0.
//! * **driver**: `rounds` times, for every echo instance in windows of [`WINDOW`]: send
//!   each a message (`echo-i`), then receive their answers; then exit 0. A negative exit
//!   code is the ABI error of the failed `send` (or of `recv`, minus 1000).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use omega_agent_abi as abi;
use omega_bundle::{AgentEntry, MANIFEST, MANIFEST_VERSION, Manifest};
use sha2::{Digest, Sha256};

use crate::host_cpu::{USER_HZ, cpu_time};

/// Messages in flight from the driver at once: at most the ABI's inbox bound, so the
/// answers always fit in the driver's inbox.
pub const WINDOW: u32 = abi::MAX_INBOX as u32;

/// Rounds that never end (the soak).
pub const FOREVER: u32 = u32::MAX;

/// A Wasm page.
pub const PAGE: u64 = 64 * 1024;

const RECV_REQ: u32 = 0x10;
const SEND_REQ: u32 = 0x100;
const OUT: u32 = 0x1000;
const OUT_CAP: u32 = 0x1000;
/// The driver's per-echo tables: request lengths, then requests at a fixed stride.
const LENS: u32 = 0x2000;
const REQS: u32 = 0x10000;
const STRIDE: u32 = 64;

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    abi::encode(v, &mut buf)
        .expect("a small request encodes")
        .to_vec()
}

fn escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

fn imports() -> String {
    let f = |name: &str| {
        format!(
            "(import \"{m}\" \"{name}\" (func ${name} (param i32 i32 i32 i32) (result i32)))",
            m = abi::MODULE
        )
    };
    format!(
        "{}\n{}\n(import \"{}\" \"exit\" (func $exit (param i32)))",
        f("send"),
        f("recv"),
        abi::MODULE
    )
}

fn recv_wait() -> Vec<u8> {
    enc(&abi::RecvRequest { wait: true })
}

fn send_to(to: &str, text: &str) -> Vec<u8> {
    enc(&abi::SendRequest {
        to,
        message: abi::Message {
            message_id: "m",
            context_id: None,
            role: abi::Role::Agent,
            parts: [abi::Part::Text { text }].into_iter().collect(),
        },
    })
}

/// An agent parked in `recv` until a message comes; then it exits 0.
pub fn idle_agent() -> Vec<u8> {
    let wat = format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (data (i32.const {RECV_REQ}) "{recv}")
  (func (export "run")
    (drop (call $recv (i32.const {RECV_REQ}) (i32.const 1) (i32.const {OUT}) (i32.const {OUT_CAP})))
    (call $exit (i32.const 0))))"#,
        imports = imports(),
        recv = escaped(&recv_wait()),
    );
    wat::parse_str(&wat).expect("the idle agent compiles")
}

/// An echo instance: `rounds` times receive, then answer `driver`.
pub fn echo_agent(rounds: u32) -> Vec<u8> {
    let send = send_to("driver", "pong");
    let wat = format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (data (i32.const {RECV_REQ}) "{recv}")
  (data (i32.const {SEND_REQ}) "{send}")
  (func (export "run") (local $i i32) (local $r i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const {rounds})))
      (local.set $r (call $recv (i32.const {RECV_REQ}) (i32.const 1) (i32.const {OUT}) (i32.const {OUT_CAP})))
      (if (i32.lt_s (local.get $r) (i32.const 0))
        (then (call $exit (i32.sub (local.get $r) (i32.const 1000))) (unreachable)))
      (local.set $r (call $send (i32.const {SEND_REQ}) (i32.const {len}) (i32.const {OUT}) (i32.const 16)))
      (if (i32.lt_s (local.get $r) (i32.const 0))
        (then (call $exit (local.get $r)) (unreachable)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (call $exit (i32.const 0))))"#,
        imports = imports(),
        recv = escaped(&recv_wait()),
        send = escaped(&send),
        len = send.len(),
        rounds = rounds as i32,
    );
    wat::parse_str(&wat).expect("the echo agent compiles")
}

/// Linear memory the driver of `echoes` echo instances needs, in bytes (whole pages).
pub fn driver_memory(echoes: u32) -> u64 {
    let bytes = u64::from(REQS) + u64::from(echoes) * u64::from(STRIDE);
    bytes.div_ceil(PAGE) * PAGE
}

/// The driver of `echoes` instances named `echo-0` .. : `rounds` rounds of one message to
/// each and its answer.
pub fn driver_agent(echoes: u32, rounds: u32) -> Vec<u8> {
    let mut lens = Vec::new();
    let mut reqs = Vec::new();
    for i in 0..echoes {
        let mut req = send_to(&format!("echo-{i}"), "ping");
        assert!(req.len() <= STRIDE as usize);
        lens.extend_from_slice(&(req.len() as u32).to_le_bytes());
        req.resize(STRIDE as usize, 0);
        reqs.extend_from_slice(&req);
    }
    assert!(LENS as usize + lens.len() <= REQS as usize);
    let pages = driver_memory(echoes) / PAGE;
    let wat = format!(
        r#"(module
  {imports}
  (memory (export "memory") {pages})
  (data (i32.const {RECV_REQ}) "{recv}")
  (data (i32.const {LENS}) "{lens}")
  (data (i32.const {REQS}) "{reqs}")
  (func (export "run") (local $round i32) (local $w i32) (local $j i32) (local $n i32) (local $r i32) (local $k i32)
    (block $done (loop $rounds
      (br_if $done (i32.ge_u (local.get $round) (i32.const {rounds})))
      (local.set $w (i32.const 0))
      (block $wend (loop $windows
        (br_if $wend (i32.ge_u (local.get $w) (i32.const {echoes})))
        (local.set $n (i32.sub (i32.const {echoes}) (local.get $w)))
        (if (i32.gt_u (local.get $n) (i32.const {WINDOW})) (then (local.set $n (i32.const {WINDOW}))))
        (local.set $j (i32.const 0))
        (block $send_end (loop $sends
          (br_if $send_end (i32.ge_u (local.get $j) (local.get $n)))
          (local.set $k (i32.add (local.get $w) (local.get $j)))
          (local.set $r (call $send
            (i32.add (i32.const {REQS}) (i32.mul (local.get $k) (i32.const {STRIDE})))
            (i32.load (i32.add (i32.const {LENS}) (i32.mul (local.get $k) (i32.const 4))))
            (i32.const {OUT}) (i32.const 16)))
          (if (i32.lt_s (local.get $r) (i32.const 0))
            (then (call $exit (local.get $r)) (unreachable)))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br $sends)))
        (local.set $j (i32.const 0))
        (block $recv_end (loop $recvs
          (br_if $recv_end (i32.ge_u (local.get $j) (local.get $n)))
          (local.set $r (call $recv (i32.const {RECV_REQ}) (i32.const 1) (i32.const {OUT}) (i32.const {OUT_CAP})))
          (if (i32.lt_s (local.get $r) (i32.const 0))
            (then (call $exit (i32.sub (local.get $r) (i32.const 1000))) (unreachable)))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br $recvs)))
        (local.set $w (i32.add (local.get $w) (local.get $n)))
        (br $windows)))
      (local.set $round (i32.add (local.get $round) (i32.const 1)))
      (br $rounds)))
    (call $exit (i32.const 0))))"#,
        imports = imports(),
        recv = escaped(&recv_wait()),
        lens = escaped(&lens),
        reqs = escaped(&reqs),
        rounds = rounds as i32,
    );
    wat::parse_str(&wat).expect("the driver compiles")
}

/// `sha256:HEX` of a module, as the policy pins it.
pub fn pin(module: &[u8]) -> String {
    let h: [u8; 32] = Sha256::digest(module).into();
    format!(
        "sha256:{}",
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Writes a bundle into `dir`: each agent entry with its module, a policy declaring every
/// entry's agent (pinned) with `rules`, and reads it back as the launcher does.
pub fn write_bundle(
    dir: &Path,
    agents: &[(AgentEntry, Vec<u8>)],
    rules: &str,
) -> Result<omega_host::Bundle> {
    let mut src = String::from("policy \"scale\"\n");
    for (entry, module) in agents {
        src += &format!(
            "agent {} {{ hash \"{}\" cleared [] }}\n",
            entry.name,
            pin(module)
        );
    }
    src += rules;
    let policy = policy_compiler::compile("scale.policy", &src, Path::new("."))
        .map_err(|d| anyhow::anyhow!("{}", d.render()))?
        .to_bytes();
    let manifest = Manifest {
        tools: None,
        fleet: None,
        coordinator: None,
        version: MANIFEST_VERSION,
        policy: "policy.bin".into(),
        agents: agents.iter().map(|(e, _)| e.clone()).collect(),
        data: Vec::new(),
    };
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(MANIFEST), manifest.to_json())?;
    std::fs::write(dir.join("policy.bin"), policy)?;
    for (entry, module) in agents {
        std::fs::write(dir.join(&entry.module), module)?;
    }
    omega_host::bundle::Bundle::read(dir).context("reading the bundle back")
}

/// `n` idle instances (`idle-0` ..), one page of memory each.
pub fn idle_bundle(dir: &Path, n: u32) -> Result<omega_host::Bundle> {
    let mut entry = AgentEntry::new("idle", "idle.wasm");
    entry.instances = Some(n);
    entry.memory = PAGE;
    write_bundle(dir, &[(entry, idle_agent())], "")
}

/// The driver and `echoes` echo instances exchanging `rounds` messages each way per echo.
pub fn load_bundle(dir: &Path, echoes: u32, rounds: u32) -> Result<omega_host::Bundle> {
    let mut echo = AgentEntry::new("echo", "echo.wasm");
    echo.instances = Some(echoes);
    echo.memory = PAGE;
    let mut driver = AgentEntry::new("driver", "driver.wasm");
    driver.memory = driver_memory(echoes);
    write_bundle(
        dir,
        &[
            (driver, driver_agent(echoes, rounds)),
            (echo, echo_agent(rounds)),
        ],
        "rule pings { allow send echo agents [driver] }\nrule pongs { allow send driver agents [echo] }\n",
    )
}

/// What [`density`] measured.
#[derive(Debug)]
pub struct Density {
    /// Agents the monitor started.
    pub started: u64,
    /// Heap the agents took, per agent (the monitor's `agents: heap` line).
    pub bytes_per_agent: u64,
    /// The monitor's heap banner and its `agents: heap` line.
    pub heap_banner: String,
    pub heap_line: String,
    /// From QEMU's start until the agents were started.
    pub boot_to_started: Duration,
    /// Host CPU of the whole VM while the agents idle, % of one core.
    pub cpu_percent: f64,
}

/// Boots `image` with `memory_mib` MiB and `n` idle agents ([`idle_bundle`]) through the
/// launcher's session, waits until they are started, the monitor halts and the launcher has
/// stored every agent's card, measures the
/// VM's host CPU for `seconds` (/proc: utime+stime and schedstat, the larger), then kills
/// it.
pub fn density(image: &Path, n: u32, memory_mib: u32, seconds: f64) -> anyhow::Result<Density> {
    let dir = tempfile::tempdir()?;
    let bundle = idle_bundle(&dir.path().join("bundle"), n)?;
    let pidfile = dir.path().join("qemu.pid");
    let mut boot = crate::Boot::new(image)
        .memory(memory_mib)
        .timeout(Duration::from_secs(600));
    boot.extra_args = vec!["-pidfile".into(), pidfile.display().to_string()];
    let t0 = Instant::now();
    let (mut vm, session) = crate::serve_bundle(boot, dir.path(), bundle)?;
    let ok = vm.wait_for("agents: heap ", Duration::from_secs(600));
    anyhow::ensure!(ok, "no heap line:\n{}", vm.serial());
    let boot_to_started = t0.elapsed();
    anyhow::ensure!(
        vm.wait_for("omega: idle: halting", Duration::from_secs(120)),
        "never halted:\n{}",
        vm.serial()
    );
    // The launcher stores every card (a file and its fsyncs each) and acknowledges the log
    // behind them; measure the idle VM once it has, not the host's storage.
    let stored_at = Instant::now() + Duration::from_secs(600);
    while Instant::now() < stored_at {
        let stored = session
            .events()
            .iter()
            .filter(|e| matches!(e, omega_host::SessionEvent::CardStored { .. }))
            .count();
        if stored >= n as usize {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid: u32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
    let t = Instant::now();
    let before = cpu_time(pid)?;
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let after = cpu_time(pid)?;
    let wall = t.elapsed().as_secs_f64();
    let stat = (after.ticks - before.ticks) as f64 / USER_HZ / wall * 100.0;
    let sched = (after.sched_ns - before.sched_ns) as f64 / 1e9 / wall * 100.0;
    let serial = vm.serial();
    let _ = vm.kill();
    drop(session);
    let started_line = serial
        .lines()
        .find(|l| l.contains("omega: agents: ") && l.contains(" started ("))
        .unwrap_or_default()
        .to_string();
    let started: u64 = started_line
        .split("omega: agents: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let heap_banner = serial
        .lines()
        .find(|l| l.contains(" heap: "))
        .unwrap_or_default()
        .trim()
        .to_string();
    let heap_line = serial
        .lines()
        .find(|l| l.contains("omega: agents: heap "))
        .unwrap_or_default()
        .to_string();
    let bytes_per_agent: u64 = heap_line
        .split(" agents (")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    Ok(Density {
        started,
        bytes_per_agent,
        heap_banner,
        heap_line,
        boot_to_started,
        cpu_percent: stat.max(sched),
    })
}
