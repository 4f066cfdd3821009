//! `omega attach`: serves a running VM's channel after its launcher died (docs/host.md,
//! Attach): checks the earlier run's log directory against its checkpoint, then lets the
//! monitor resend its log from the first entry the directory lacks.

use super::*;

#[derive(clap::Args, Debug)]
pub(crate) struct AttachArgs {
    /// The running VM's channel socket (the `--socket` of the `omega run` that started it;
    /// QEMU listens there again once the earlier launcher is gone).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// The earlier run's log directory: provenance.log is continued in place.
    #[arg(long, value_name = "DIR")]
    log_dir: PathBuf,
    /// Inference proxy to relay the Inference stream to.
    #[arg(long, value_name = "HOST:PORT")]
    proxy: Option<String>,
    /// Tool gateway command, as for `omega run`.
    #[arg(long, value_name = "CMD")]
    tool_gateway: Option<String>,
    /// Answers to confirmation requests, as for `omega run`.
    #[arg(long, value_name = "FILE")]
    confirm_answers: Option<PathBuf>,
    /// Echo the guest's Echo-stream requests.
    #[arg(long)]
    echo: bool,
    /// The image the VM runs, to print the verifier commands for the run at the end.
    #[arg(long, value_name = "PATH")]
    image: Option<PathBuf>,
    /// vCPUs of the VM (for the verifier commands).
    #[arg(long, default_value_t = 1, value_name = "N")]
    vcpus: u32,
    /// The VM was started with --simulated-psp (for the verifier commands).
    #[arg(long, hide_short_help = true)]
    simulated_psp: bool,
    /// Give up connecting to the channel after this many seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    connect_timeout: u64,
}

/// `omega attach`: serves a running VM's channel after its launcher died.
pub(crate) fn attach(a: AttachArgs) -> Result<i32> {
    use omega_host::session::log_store::ReopenError;
    let reopen = || {
        FileLogStore::reopen(&a.log_dir).map_err(|e| match e {
            ReopenError::Log(e) => anyhow::anyhow!(
                "log dir {}: {e}; refusing to attach (the monitor would resend from a point this log does not verify at)",
                a.log_dir.display()
            ),
            e => anyhow::anyhow!("log dir {}: {e}", a.log_dir.display()),
        })
    };
    let (_, held) = reopen()?;
    match held.checkpoint_size {
        Some(n) => println!(
            "omega: attach: {} holds {} whole entries ({} bytes), checked against its checkpoint of {n} entries",
            a.log_dir.display(),
            held.entries,
            held.whole
        ),
        None => println!(
            "omega: attach: {} holds {} whole entries ({} bytes); no checkpoint to check them against yet",
            a.log_dir.display(),
            held.entries,
            held.whole
        ),
    }
    if held.torn > 0 {
        println!(
            "omega: attach: cut {} bytes of a torn last entry (the monitor sends it again)",
            held.torn
        );
    }
    let operator = || -> Result<Operator> {
        Ok(match &a.confirm_answers {
            Some(f) => Operator::Answers(Answers::read(f).context("--confirm-answers")?),
            None => Operator::DenyAll,
        })
    };
    operator()?;
    install_sigint();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(a.connect_timeout);
    let make_config = || -> std::io::Result<SessionConfig> {
        let (store, _) = reopen().map_err(std::io::Error::other)?;
        Ok(SessionConfig {
            proxy: a.proxy.clone(),
            tool_gateway: a.tool_gateway.clone(),
            log_store: Some(Box::new(store)),
            echo: a.echo,
            operator: operator().map_err(std::io::Error::other)?,
            ..Default::default()
        })
    };
    let (session, v) =
        ChannelSession::attach_unix(&a.socket, make_config, Duration::from_secs(3), deadline)
            .with_context(|| format!("attaching to {}", a.socket.display()))?;
    println!(
        "omega: attach: the monitor shook hands again after {:.0} ms (protocol v{v}); told it {} log bytes are held",
        t0.elapsed().as_secs_f64() * 1e3,
        held.whole
    );
    let mut seen = 0;
    let mut refused = None;
    let mut status = None;
    loop {
        let ev = session.events();
        for e in &ev[seen..] {
            match e {
                SessionEvent::GuestError {
                    stream,
                    code,
                    message,
                } => {
                    eprintln!("omega: guest error on {stream:?} (code {code}): {message}");
                    if *stream == omega_wire::Stream::Log
                        && *code == omega_wire::msg::code::PROTOCOL
                    {
                        refused = Some(message.clone());
                    }
                }
                SessionEvent::Shutdown { status: s } => status = Some(*s),
                SessionEvent::LogStorageFailed { message, .. } => {
                    drop(session.close());
                    bail!("provenance log storage failed, attach stopped: {message}");
                }
                _ => {}
            }
        }
        seen = ev.len();
        if let Some(why) = refused {
            drop(session.close());
            bail!("the monitor refused to resume its log: {why}");
        }
        if session.is_closed() || INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let events = session.close();
    if let Some(t) = events.iter().rev().find_map(|e| match e {
        SessionEvent::LogStored { total, .. } => Some(*total),
        _ => None,
    }) {
        info!("provenance log: {t} bytes stored in all");
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!("omega: attach interrupted; the VM keeps running (attach again)");
        return Ok(130);
    }
    let code = match status {
        Some(0) => {
            info!("the monitor shut down cleanly");
            0
        }
        Some(s) => {
            eprintln!("omega: the monitor stopped with status {s}");
            35
        }
        None => {
            eprintln!("omega: the channel ended without a shutdown from the monitor");
            35
        }
    };
    if let Some(image) = &a.image {
        let nonce = std::fs::read_to_string(a.log_dir.join(NONCE_FILE)).unwrap_or_default();
        let run = Run {
            image,
            dir: &a.log_dir,
            nonce: nonce.trim(),
            platform: if a.simulated_psp {
                Platform::Simulated
            } else {
                Platform::None
            },
            shape: VmShape::new(a.vcpus),
            // No bundle here: a model's check is printed without --expect-proxy.
            model_pins: &[],
        };
        let principals: Vec<(String, String)> = std::fs::read_dir(a.log_dir.join("evidence"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let principal = file.strip_suffix(".bin")?.replacen('_', ":", 1);
                Some((principal, file))
            })
            .collect();
        print_verifier_commands(&run, &principals, &[]);
    }
    Ok(code)
}
