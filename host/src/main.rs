//! `omega`: runs an Omega image in QEMU and serves its host channel.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use omega_host::files::{ensure_private_dir, fresh_private_dir};
use omega_host::session::PeerSetup;
use omega_host::session::confirm::{Answers, Operator};
use omega_host::session::log_store::NONCE_FILE;
use omega_host::shape::{DEFAULT_CPU, DEFAULT_POLICY, VcpuType, hex};
use omega_host::{
    Bundle, Challenge, ChannelSession, FileLogStore, LogStore, QemuConfig, QemuOutcome,
    SessionConfig, SessionEvent, TcpLink, VmShape,
};
use tracing::{info, warn};

mod attach;
use attach::{AttachArgs, attach};

/// Launcher for Omega confidential-VM images.
///
/// `omega run` starts the image in QEMU (microvm), prints the exact QEMU command line,
/// connects to the image's virtio-serial channel through a unix socket, and serves the
/// guest's streams: provenance log storage, bundle delivery, inference proxy relay, tool
/// gateway, echo, the peer link to another image, the fleet coordinator's relay. See
/// docs/host.md.
#[derive(Parser, Debug)]
#[command(
    name = "omega",
    version,
    about,
    long_about,
    after_long_help = "Examples:\n  \
    omega run --image omega.bin --log-dir run1 --bundle demo-bundle\n  \
    omega run --image omega.bin --log-dir run1 --proxy 127.0.0.1:8443 --tool-gateway 'mcp-gateway --stdio'\n  \
    omega print-command --image omega.bin --sev-snp --memory 2048\n\n\
    After the run, `omega run` prints the exact verifier commands for it: `measurements\n\
    verify-evidence` for each principal's evidence (run1/evidence/*.bin; a model's with\n\
    --expect-proxy, the proxy identity the bundle's policy pins for it) and `measurements\n\
    verify-log --evidence run1/evidence/log.bin`, which takes the log key from the verified\n\
    evidence, not from the host; and `measurements verify-card` for each agent's signed A2A\n\
    card (run1/cards/AGENT.json), against the card key's and the agent's evidence."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `debug`, `omega_host=trace`.
    #[arg(long, global = true, default_value = "info")]
    log: String,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Boot an image in QEMU and serve its channel until it exits.
    ///
    /// Exit status: 0 when the image exits cleanly (QEMU 33); 35 when the image reports a
    /// failure; 3 when the guest reset or triple-faulted (QEMU 0); 2 on a QEMU error;
    /// 4 when QEMU was killed by a signal; 130 when interrupted (Ctrl-C, SIGTERM);
    /// 1 when the launcher itself fails.
    Run(RunArgs),
    /// Print the QEMU command line `run` would use, and exit.
    PrintCommand(RunArgs),
    /// Serve the channel of a VM that is still running after its launcher died: connect to
    /// its channel socket, continue its log directory, and serve until the VM exits.
    ///
    /// The log directory's stored log is checked against its key and last checkpoint, a
    /// torn last entry is cut, and the monitor is told how many bytes of its log are held
    /// (protocol v2): it sends every entry after them again. No challenge and no bundle are
    /// sent (the monitor has both from the first launcher).
    ///
    /// Exit status: 0 when the monitor shut down cleanly (it said so on the channel before
    /// the VM exited); 35 when it stopped otherwise; 1 when the attach itself fails (a log
    /// directory that does not verify, no VM at the socket, the guest refusing the resume).
    Attach(AttachArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The Omega firmware image (from image-build), passed to QEMU as -bios.
    #[arg(long, value_name = "PATH")]
    image: PathBuf,
    /// Agent bundle directory (manifest.json, policy, *.wasm) sent to the guest on the Bundle
    /// stream after the handshake.
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    vcpus: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128, value_name = "MIB", value_parser = clap::value_parser!(u32).range(16..=1048576))]
    memory: u32,
    /// Use KVM instead of TCG (needs /dev/kvm; on nested hosts TCG can be faster).
    #[arg(long)]
    kvm: bool,
    /// Launch as an AMD SEV-SNP guest (implies --kvm; needs an SNP host). The launcher
    /// prints the launch digest of exactly the shape it starts (--cpu, --vcpus, guest
    /// features 0x1, --snp-policy).
    #[arg(long)]
    sev_snp: bool,
    /// SEV-SNP vCPU model (QEMU -cpu; its CPUID signature is part of the launch digest):
    /// EPYC, EPYC-v1..v4, EPYC-IBPB, EPYC-Rome[-v1..v3], EPYC-Milan[-v1..v2],
    /// EPYC-Genoa[-v1], EPYC-Turin[-v1..v2]. Models the digest cannot be computed for are
    /// refused.
    #[arg(long, value_name = "MODEL", default_value_t = DEFAULT_CPU, requires = "sev_snp", value_parser = parse_cpu)]
    cpu: VcpuType,
    /// SEV-SNP guest policy in hex (DEBUG and MIGRATE_MA are refused).
    #[arg(long, value_name = "HEX", requires = "sev_snp", value_parser = parse_hex)]
    snp_policy: Option<u64>,
    /// Directory for this boot's provenance.log (log stream bytes, fsynced before each
    /// Ack), log.vkey and checkpoint.note; created (mode 0700) if missing. A directory
    /// belongs to one boot: one that already holds any of these files is refused. Without
    /// it, the guest's log entries are refused.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Inference proxy to relay the Inference stream to (opaque TLS bytes over TCP).
    #[arg(long, value_name = "HOST:PORT")]
    proxy: Option<String>,
    /// Tool gateway command (speaks line-delimited JSON on stdin/stdout); split like a shell
    /// would, run without a shell.
    #[arg(long, value_name = "CMD")]
    tool_gateway: Option<String>,
    /// Answers to the monitor's confirmation requests (a policy rule decided `confirm`),
    /// one per line: `approve|deny [TOOL]`, taken in order by tool; a request no line
    /// matches is denied (for CI). Without it the operator is prompted on the terminal,
    /// and without a terminal every request is denied.
    #[arg(long, value_name = "FILE")]
    confirm_answers: Option<PathBuf>,
    /// Echo the guest's Echo-stream requests (tests and benchmarks).
    #[arg(long)]
    echo: bool,
    /// Relay the Peer stream (the monitor's encrypted channel to another image) over a TCP
    /// connection that the other image's launcher makes here (`--peer-connect`). This host
    /// sees only ciphertext (docs/fleet.md).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "peer_connect")]
    peer_listen: Option<String>,
    /// Relay the Peer stream to the launcher listening at HOST:PORT (`--peer-listen`),
    /// retrying until it listens.
    #[arg(long, value_name = "HOST:PORT")]
    peer_connect: Option<String>,
    /// This node's name on the peer channel (a-z, 0-9, `-_.`): the node its fleet
    /// credential names (with --peer and --peer-credential).
    #[arg(long, value_name = "NAME", requires_all = ["peer", "peer_credential"])]
    peer_node: Option<String>,
    /// The peer node's name: the one node this monitor opens a channel with.
    #[arg(long, value_name = "NAME", requires = "peer_node")]
    peer: Option<String>,
    /// This node's credential from the fleet coordinator (the signed bytes the coordinator
    /// writes once it admitted the node on its evidence; waited for up to 120 s, as the
    /// node attests itself only once it runs). The monitor believes it only under the
    /// coordinator key its bundle's manifest names (`fleet`), for its own attested keys
    /// (docs/fleet.md).
    #[arg(long, value_name = "FILE", requires = "peer_node")]
    peer_credential: Option<PathBuf>,
    /// Relay the Fleet stream (the requests and answers of a fleet coordinator running in
    /// this image) over one TCP connection to the coordinator's relay listening at
    /// HOST:PORT (`omega-fleet coordinator --in-image`), made at start and retried for up to
    /// 120 s; the relay's bytes go into the stream, and its end closes it. The host only
    /// carries the requests and answers: everything that matters in them (evidence,
    /// policy updates, credentials, placements) is signed or verified inside the monitor
    /// (docs/fleet.md).
    #[arg(long, value_name = "HOST:PORT")]
    fleet_connect: Option<String>,
    /// The verifier's nonce (64 hex digits), sent to the monitor before the bundle and
    /// bound into its evidence. Default: 32 fresh random bytes, printed and written to
    /// DIR/nonce.hex. A verifier that wants freshness chooses it.
    #[arg(long, value_name = "HEX", value_parser = parse_nonce)]
    nonce: Option<[u8; 32]>,
    /// TESTS ONLY: answer the monitor's SNP guest requests with a simulated PSP (a lab
    /// ARK/ASK/VCEK chain, reports whose MEASUREMENT is the launch digest of this image for
    /// --vcpus on EPYC-v4). Only test-hooks images accept it; their evidence says `tee:
    /// simulated`, and verifiers accept the lab chain only with --lab-root. It proves the
    /// evidence path end to end, not that anything ran in a TEE.
    #[arg(long, hide_short_help = true, conflicts_with = "sev_snp")]
    simulated_psp: bool,
    /// QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64", value_name = "PATH")]
    qemu: String,
    /// Unix socket path for the channel chardev. Its directory must be private (owned by
    /// you, mode 0700; created so if missing). Default: omega.sock in a fresh private
    /// directory under $XDG_RUNTIME_DIR (or the temporary directory), removed after.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Give up connecting to the channel after this many seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    connect_timeout: u64,
}

fn parse_cpu(s: &str) -> Result<VcpuType, String> {
    s.parse()
        .map_err(|e: launch_digest::UnknownVcpuType| e.to_string())
}

fn parse_nonce(s: &str) -> Result<[u8; 32], String> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!("{s:?} is not 64 hex digits (32 bytes)"));
    }
    let mut n = [0u8; 32];
    for (i, b) in n.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex digits");
    }
    Ok(n)
}

/// 32 fresh random bytes (the default nonce).
fn random_nonce() -> Result<[u8; 32]> {
    use std::io::Read;
    let mut n = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut n))
        .context("reading /dev/urandom for the nonce")?;
    Ok(n)
}

fn parse_hex(s: &str) -> Result<u64, String> {
    let t = s.trim_start_matches("0x");
    u64::from_str_radix(t, 16).map_err(|e| format!("{s:?} is not a hex number: {e}"))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_sigint() {
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the function
    // pointer is valid for the life of the process.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
        // A file size limit then fails the write (EFBIG), which the log store handles,
        // instead of killing the launcher between a write and its truncation.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("omega: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Cmd::PrintCommand(a) => {
            let shape = vm_shape(&a)?;
            let socket = a
                .socket
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("omega-RANDOM").join("omega.sock"));
            println!("{}", qemu_config(&a, shape, socket).command_line());
            if let Some(shape) = shape {
                println!("# {}", digest_line(&a, &shape)?);
            }
            Ok(0)
        }
        Cmd::Run(a) => run_image(a),
        Cmd::Attach(a) => attach(a),
    }
}

/// Fails early, with what to do, when nothing listens at the inference proxy's address (the
/// guest would otherwise learn it only when its session fails). Connects once and closes:
/// the proxy drops a connection that sends no evidence request.
fn check_proxy(addr: &str) -> Result<()> {
    use std::net::{TcpStream, ToSocketAddrs};
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .with_context(|| format!("--proxy {addr}: not a HOST:PORT"))?
        .collect();
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, Duration::from_secs(5)) {
            Ok(_) => {
                info!("inference proxy reachable at {addr}");
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    anyhow::bail!(
        "--proxy {addr}: the inference proxy is unreachable ({}); start it first: \
         omega-proxy serve --model FILE (its TLS port, --tls-listen, default 127.0.0.1:8443)",
        last.map_or_else(|| "no address".to_string(), |e| e.to_string())
    )
}

/// The SEV-SNP shape to launch (checked: QEMU can start it and its digest is defined).
fn vm_shape(a: &RunArgs) -> Result<Option<VmShape>> {
    if !a.sev_snp {
        return Ok(None);
    }
    let shape = VmShape {
        cpu: a.cpu,
        policy: a.snp_policy.unwrap_or(DEFAULT_POLICY),
        ..VmShape::new(a.vcpus)
    };
    shape.check().context("--sev-snp")?;
    Ok(Some(shape))
}

/// `SNP launch digest HEX for SHAPE` of the image as this shape launches it.
fn digest_line(a: &RunArgs, shape: &VmShape) -> Result<String> {
    let image =
        std::fs::read(&a.image).with_context(|| format!("reading {}", a.image.display()))?;
    let digest = shape
        .launch_digest(&image)
        .with_context(|| format!("--sev-snp with {}", a.image.display()))?;
    Ok(format!("SNP launch digest {} for {shape}", hex(&digest)))
}

/// With --simulated-psp: the shape its reports are measured for (the default model with
/// --vcpus), and that MEASUREMENT.
fn simulated_psp(a: &RunArgs) -> Result<Option<(VmShape, [u8; 48])>> {
    if !a.simulated_psp {
        return Ok(None);
    }
    let shape = VmShape::new(a.vcpus);
    let image =
        std::fs::read(&a.image).with_context(|| format!("reading {}", a.image.display()))?;
    let m = shape
        .launch_digest(&image)
        .with_context(|| format!("--simulated-psp with {}", a.image.display()))?;
    Ok(Some((shape, m)))
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What attested this run's evidence.
#[derive(Clone, Copy)]
enum Platform {
    SevSnp,
    Simulated,
    /// Plain QEMU: nothing.
    None,
}

/// A finished run, as the verifier commands name it.
struct Run<'a> {
    image: &'a std::path::Path,
    dir: &'a std::path::Path,
    nonce: &'a str,
    platform: Platform,
    /// The shape the MEASUREMENT is expected for.
    shape: VmShape,
    /// Each model of the bundle's policy and the proxy identity it pins (`model:<name>`
    /// evidence is checked against it).
    model_pins: &'a [(String, [u8; 32])],
}

/// The models the bundle's compiled policy declares and the proxy identity each pins; none
/// when the policy does not decode (the monitor runs no agent then).
fn model_pins(bundle: &Bundle) -> Vec<(String, [u8; 32])> {
    bundle
        .files
        .get(1)
        .and_then(|(_, bytes)| omega_policy::decode(bytes).ok())
        .map_or_else(Vec::new, |p| {
            p.models
                .iter()
                .map(|m| (m.name.to_string(), m.hash))
                .collect()
        })
}

impl Run<'_> {
    /// The flags every evidence check of this run takes: the nonce, the expected image and
    /// shape (the verifier recomputes the MEASUREMENT), and what may attest it.
    fn evidence_flags(&self) -> Vec<String> {
        let mut f = vec!["--nonce".into(), self.nonce.into()];
        let shape = self.shape;
        f.extend([
            "--image".into(),
            self.image.display().to_string(),
            "--vcpus".into(),
            shape.vcpus.to_string(),
            "--vcpu-type".into(),
            shape.cpu.to_string(),
        ]);
        match self.platform {
            Platform::SevSnp => f.extend([
                "--vcek".into(),
                "VCEK.der".into(),
                "--family".into(),
                "FAMILY".into(),
            ]),
            Platform::Simulated => f.push("--lab-root".into()),
            Platform::None => f.push("--allow-unattested".into()),
        }
        f
    }

    fn evidence(&self, file: &str) -> String {
        self.dir.join("evidence").join(file).display().to_string()
    }
}

/// `measurements verify-evidence` for `principal`'s evidence `file` of this run.
fn evidence_command(run: &Run<'_>, principal: &str, file: &str) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "measurements".into(),
        "verify-evidence".into(),
        "--evidence".into(),
        run.evidence(file),
        "--principal".into(),
        principal.into(),
    ];
    // A model's claim: the proxy the monitor proved must be the one the policy pins.
    if let Some((_, pin)) = principal
        .strip_prefix("model:")
        .and_then(|m| run.model_pins.iter().find(|(n, _)| n == m))
    {
        args.extend([
            "--expect-proxy".into(),
            format!("sha256:{}", hex_bytes(pin)),
        ]);
    }
    args.extend(run.evidence_flags());
    args
}

/// Prints the verifier's commands for this run, one per line, `omega: verify: ` first (the
/// demo script runs them).
fn print_verifier_commands(
    run: &Run<'_>,
    principals: &[(String, String)],
    cards: &[(String, String)],
) {
    let quote = |args: Vec<String>| {
        shlex::try_join(args.iter().map(String::as_str)).expect("no NUL in arguments")
    };
    match run.platform {
        Platform::SevSnp => println!(
            "omega: verify this run with (VCEK.der: this chip's VCEK from AMD's KDS; FAMILY: milan, genoa or turin):"
        ),
        Platform::Simulated => println!(
            "omega: verify this run with (simulated PSP: a lab chain, accepted only with --lab-root; no TEE):"
        ),
        Platform::None => println!(
            "omega: verify this run with (plain QEMU: UNATTESTED, no TEE vouches for the evidence):"
        ),
    }
    let log = principals.iter().find(|(p, _)| p == "log");
    if log.is_none() {
        warn!("the monitor sent no evidence for its log key: the log cannot be verified");
    }
    for (principal, file) in principals {
        println!(
            "omega: verify: {}",
            quote(evidence_command(run, principal, file))
        );
    }
    if let Some((_, file)) = log {
        let mut args: Vec<String> = vec![
            "measurements".into(),
            "verify-log".into(),
            "--evidence".into(),
            run.evidence(file),
            "--checkpoint".into(),
            run.dir.join("checkpoint.note").display().to_string(),
            "--entries".into(),
            run.dir.join("provenance.log").display().to_string(),
        ];
        args.extend(run.evidence_flags());
        println!("omega: verify: {}", quote(args));
    }
    // Each agent's card: checked against the card key's evidence and the agent's own.
    let card_key = principals.iter().find(|(p, _)| p == "card");
    for (agent, file) in cards {
        // An instance's card (`NAME-i`) is vouched for by its agent's evidence
        // (`agent:NAME`), which the card names; the verifier checks that it may.
        let principal = std::fs::read(run.dir.join("cards").join(file))
            .ok()
            .and_then(|b| omega_agent_card::SignedCard::decode(&b).ok())
            .map_or_else(
                || format!("agent:{agent}"),
                |c| format!("agent:{}", c.body.principal_agent()),
            );
        let (Some((_, key_file)), Some((_, agent_file))) =
            (card_key, principals.iter().find(|(p, _)| *p == principal))
        else {
            warn!(
                "the card of {agent} has no evidence for its key or its module: it cannot be verified"
            );
            continue;
        };
        let mut args: Vec<String> = vec![
            "measurements".into(),
            "verify-card".into(),
            "--card".into(),
            run.dir.join("cards").join(file).display().to_string(),
            "--evidence".into(),
            run.evidence(agent_file),
            "--card-key-evidence".into(),
            run.evidence(key_file),
        ];
        args.extend(run.evidence_flags());
        println!("omega: verify: {}", quote(args));
    }
}

fn qemu_config(a: &RunArgs, sev_snp: Option<VmShape>, socket: PathBuf) -> QemuConfig {
    QemuConfig {
        vcpus: a.vcpus,
        memory_mib: a.memory,
        kvm: a.kvm,
        sev_snp,
        socket: Some(socket),
        ..QemuConfig::new(&a.qemu, &a.image)
    }
}

/// A directory the launcher created, removed when the run ends (also on an error).
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The channel socket's path, in a private directory, and the directory to remove after.
fn channel_socket(a: &RunArgs) -> Result<(PathBuf, Option<RemoveDir>)> {
    match &a.socket {
        Some(s) => {
            let parent = s
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            ensure_private_dir(parent).context("--socket")?;
            Ok((s.clone(), None))
        }
        None => {
            // SECURITY: an unpredictable private directory, so no other user can create
            // the socket first, connect to it, or replace it.
            let dir = fresh_private_dir().context("creating the channel socket directory")?;
            Ok((dir.join("omega.sock"), Some(RemoveDir(dir))))
        }
    }
}

/// Who answers the monitor's confirmation requests: the answers file, else the terminal
/// when there is one, else nobody (every request denied).
fn operator(a: &RunArgs) -> Result<Operator> {
    use std::io::IsTerminal as _;
    Ok(match &a.confirm_answers {
        Some(f) => Operator::Answers(Answers::read(f).context("--confirm-answers")?),
        None if std::io::stdin().is_terminal() => Operator::Terminal,
        None => {
            info!("no terminal and no --confirm-answers: confirmation requests are denied");
            Operator::DenyAll
        }
    })
}

fn run_image(a: RunArgs) -> Result<i32> {
    if !a.image.is_file() {
        bail!("image {} not found", a.image.display());
    }
    let shape = vm_shape(&a)?;
    let digest = shape.map(|s| digest_line(&a, &s)).transpose()?;
    if let Some(proxy) = &a.proxy {
        check_proxy(proxy)?;
    }
    // Fails before QEMU starts when the peer link cannot listen there (the session binds
    // again at its start; a port taken in between is reported then, and the Peer stream
    // refused).
    if let Some(addr) = &a.peer_listen {
        std::net::TcpListener::bind(addr.as_str())
            .with_context(|| format!("--peer-listen {addr}: cannot listen there"))?;
    }
    let bundle = match &a.bundle {
        Some(d) => {
            let b = Bundle::read(d).with_context(|| format!("bundle {}", d.display()))?;
            info!(
                "bundle {}: {} agents, {} files, {} bytes",
                d.display(),
                b.manifest.agents.len(),
                b.files.len(),
                b.total_bytes()
            );
            Some(b)
        }
        None => None,
    };
    let model_pins = bundle.as_ref().map_or_else(Vec::new, model_pins);
    let operator = operator(&a)?;
    let nonce = match a.nonce {
        Some(n) => n,
        None => random_nonce()?,
    };
    let nonce_hex = hex_bytes(&nonce);
    let simulated = simulated_psp(&a)?;
    let log_store = match &a.log_dir {
        Some(d) => {
            let mut s =
                FileLogStore::open(d).with_context(|| format!("log dir {}", d.display()))?;
            info!("provenance log: {}", s.path.display());
            s.put_file(NONCE_FILE, format!("{nonce_hex}\n").as_bytes())
                .with_context(|| format!("writing {}", d.join(NONCE_FILE).display()))?;
            Some(Box::new(s) as Box<dyn omega_host::LogStore>)
        }
        None => {
            warn!("no --log-dir: the guest's provenance log entries will be refused");
            None
        }
    };
    let (socket, tmp) = channel_socket(&a)?;
    let cfg = qemu_config(&a, shape, socket.clone());
    let _ = std::fs::remove_file(&socket);
    if a.sev_snp && !a.kvm {
        info!("--sev-snp implies KVM");
    }
    if (a.kvm || a.sev_snp)
        && let Some(why) = omega_host::qemu::kvm_caveat()
    {
        warn!("{why}");
    }
    // The exact command, for operators to audit, and the digest of exactly that VM.
    println!("omega: {}", cfg.command_line());
    if let Some(d) = &digest {
        println!("omega: {d}");
    }
    match &a.log_dir {
        Some(d) => println!(
            "omega: verifier nonce {nonce_hex} ({})",
            d.join(NONCE_FILE).display()
        ),
        None => println!("omega: verifier nonce {nonce_hex}"),
    }
    if let Some((shape, m)) = &simulated {
        println!(
            "omega: simulated PSP (tests only, no TEE): reports carry MEASUREMENT {} = the launch digest for {shape}",
            hex(m)
        );
    }

    install_sigint();
    let t0 = Instant::now();
    let mut child = Command::new(&cfg.qemu)
        .args(cfg.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Own process group: the terminal's Ctrl-C reaches us, and we stop QEMU ourselves.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", cfg.qemu))?;
    info!("QEMU started (pid {})", child.id());
    let stdout = child.stdout.take().expect("piped");
    let console = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => println!("guest | {l}"),
                Err(_) => break,
            }
        }
    });

    let config = SessionConfig {
        proxy: a.proxy.clone(),
        tool_gateway: a.tool_gateway.clone(),
        log_store,
        bundle,
        echo: a.echo,
        challenge: Some(Challenge {
            nonce,
            simulated_psp: simulated.map(|(_, m)| m),
        }),
        operator,
        peer: a
            .peer_listen
            .clone()
            .map(TcpLink::Listen)
            .or_else(|| a.peer_connect.clone().map(TcpLink::Connect)),
        peer_setup: a
            .peer_node
            .clone()
            .zip(a.peer.clone())
            .zip(a.peer_credential.clone())
            .map(|((node, peer), credential)| PeerSetup {
                node,
                peer,
                credential,
            }),
        fleet: a.fleet_connect.clone(),
        ..Default::default()
    };
    // Connect while watching QEMU: it may exit before the socket appears.
    let deadline = Instant::now() + Duration::from_secs(a.connect_timeout);
    let mut session = None;
    let mut status = None;
    let mut config = Some(config);
    while session.is_none() && status.is_none() {
        if let Some(s) = child.try_wait()? {
            status = Some(s);
            break;
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
        if socket.exists() {
            match ChannelSession::connect_unix(&socket, config.take().expect("once"), deadline) {
                Ok(s) => {
                    info!(
                        "channel connected after {:.0} ms",
                        t0.elapsed().as_secs_f64() * 1e3
                    );
                    session = Some(s);
                }
                Err(e) => bail!("connecting to {}: {e}", socket.display()),
            }
        } else if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "QEMU did not create {} within {} s",
                socket.display(),
                a.connect_timeout
            );
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut reported_hello = false;
    let mut seen = 0;
    let mut storage_failed = None;
    let status = loop {
        if let Some(s) = status {
            break s;
        }
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            warn!("interrupted: stopping QEMU");
            let _ = child.kill();
            break child.wait()?;
        }
        if let Some(sess) = &session {
            let ev = sess.events();
            for e in &ev[seen..] {
                match e {
                    SessionEvent::Handshake { version } if !reported_hello => {
                        reported_hello = true;
                        info!(
                            "guest handshake done after {:.0} ms (protocol v{version})",
                            t0.elapsed().as_secs_f64() * 1e3
                        );
                    }
                    SessionEvent::GuestError {
                        stream,
                        code,
                        message,
                    } => {
                        eprintln!("omega: guest error on {stream:?} (code {code}): {message}")
                    }
                    SessionEvent::LogStorageFailed { message, .. } => {
                        storage_failed = Some(message.clone())
                    }
                    _ => {}
                }
            }
            seen = ev.len();
            // SECURITY: the guest would wait forever for Acks that cannot come; a run whose
            // log cannot be stored must not go on unlogged.
            if storage_failed.is_some() {
                warn!("provenance log storage failed: stopping QEMU");
                let _ = child.kill();
                break child.wait()?;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // QEMU is gone: close the channel (log writes are fsynced per Ack already).
    let mut principals = Vec::new();
    let mut cards = Vec::new();
    if let Some(s) = session {
        let events = s.close();
        for e in &events {
            match e {
                SessionEvent::EvidenceStored { principal, file }
                    if !principals.iter().any(|(p, _)| p == principal) =>
                {
                    principals.push((principal.clone(), file.clone()));
                }
                SessionEvent::CardStored { agent, file }
                    if !cards.iter().any(|(a, _)| a == agent) =>
                {
                    cards.push((agent.clone(), file.clone()));
                }
                _ => {}
            }
        }
        // A storage failure just before QEMU exited still fails the run.
        storage_failed = storage_failed.or_else(|| {
            events.iter().find_map(|e| match e {
                SessionEvent::LogStorageFailed { message, .. } => Some(message.clone()),
                _ => None,
            })
        });
        let stored = events.iter().rev().find_map(|e| match e {
            SessionEvent::LogStored { total, .. } => Some(*total),
            _ => None,
        });
        if let Some(t) = stored {
            info!("provenance log: {t} bytes stored this run");
        }
    }
    let _ = console.join();
    let _ = std::fs::remove_file(&socket);
    drop(tmp);
    if let Some(why) = storage_failed {
        bail!("provenance log storage failed, run stopped: {why}");
    }
    let outcome = if INTERRUPTED.load(Ordering::SeqCst) {
        QemuOutcome::Interrupted
    } else {
        use std::os::unix::process::ExitStatusExt;
        QemuOutcome::from_status(status.code(), status.signal())
    };
    let msg = outcome.message();
    if outcome == QemuOutcome::CleanExit {
        info!("{msg} after {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
    } else {
        eprintln!("omega: {msg}");
    }
    if let Some(dir) = &a.log_dir {
        let (platform, shape) = match (shape, simulated) {
            (Some(s), _) => (Platform::SevSnp, s),
            (None, Some((s, _))) => (Platform::Simulated, s),
            (None, None) => (Platform::None, VmShape::new(a.vcpus)),
        };
        let run = Run {
            image: &a.image,
            dir,
            nonce: &nonce_hex,
            platform,
            shape,
            model_pins: &model_pins,
        };
        print_verifier_commands(&run, &principals, &cards);
    }
    Ok(outcome.exit_code())
}

use std::os::unix::process::CommandExt;

#[cfg(test)]
#[path = "main_tests.rs"]
mod tests;
