//! The relay to an in-image coordinator: `omega run` of a coordinator image (its bundle's
//! manifest names `coordinator`), whose launcher relays the monitor's Fleet stream over one
//! TCP connection to this process (`--fleet-connect`). This side only carries requests and
//! answers: the policy is owner-signed, placements and credentials are signed inside the
//! image, evidence is verified there.
//!
//! [`RelayClient`] speaks the service's framing (`omega_fleet::service::frame`, one
//! request at a time) over a connected stream and trusts nothing it reads: an answer must
//! decode strictly, be within the answer size limit, repeat the request's id and be of a
//! kind that answers the request, or the connection is given up (its framing, and so
//! every later answer, can no longer be believed). [`InImage`] starts the image and reads
//! the coordinator key it claims in its evidence.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context as _, bail};
use omega_fleet::service::{
    Deframer, FrameError, MAX_REQUEST, MAX_RESPONSE, Request, Response, decode_response, encode,
    frame,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::backend::{Backend, Identity};

/// How long the launcher has to connect to the relay (it retries for as long itself).
pub const CONNECT_WAIT: Duration = Duration::from_secs(120);
/// How long an answer may take once its request is sent.
pub const ANSWER_WAIT: Duration = Duration::from_secs(60);
/// How long the first answer may take: the image boots, receives its bundle and starts
/// its coordinator meanwhile.
pub const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(180);
/// How long the image has to write its `coordinator` evidence once it answered.
pub const EVIDENCE_WAIT: Duration = Duration::from_secs(120);
/// How long the launcher has to end once the relay closed the Fleet stream (the
/// coordinator stops, its monitor winds down, QEMU exits) before it is killed.
pub const STOP_WAIT: Duration = Duration::from_secs(30);

/// Why the relay could not get a believable answer. Every one but [`RelayError::TooLarge`]
/// ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("a request of {0} bytes is larger than the coordinator accepts (not sent)")]
    TooLarge(usize),
    #[error("the relay connection: {0}")]
    Io(String),
    #[error("the coordinator closed the relay connection")]
    Closed,
    #[error("no answer to request {id} within {secs} s")]
    Timeout { id: u64, secs: u64 },
    #[error("an answer that does not frame or decode: {0}")]
    Frame(FrameError),
    #[error("an answer with id {got} to request {sent}")]
    WrongId { sent: u64, got: u64 },
    #[error("a {got} answer to a {sent} request")]
    WrongKind {
        sent: &'static str,
        got: &'static str,
    },
    #[error("the relay connection was given up earlier ({0})")]
    Broken(String),
}

fn request_parts(r: &Request) -> (u64, &'static str) {
    match r {
        Request::Policy { id, .. } => (*id, "policy"),
        Request::Place { id, .. } => (*id, "place"),
        Request::Admit { id, .. } => (*id, "admit"),
        Request::AdmitNitro { id, .. } => (*id, "admit-nitro"),
        Request::AdmitTdx { id, .. } => (*id, "admit-tdx"),
        Request::Endorse { id, .. } => (*id, "endorse"),
    }
}

fn response_kind(r: &Response) -> &'static str {
    match r {
        Response::PolicyApplied { .. } => "policy-applied",
        Response::Endorsed { .. } => "endorsed",
        Response::Placed { .. } => "placed",
        Response::Admitted { .. } => "admitted",
        Response::Refused { .. } => "refused",
    }
}

/// Whether `answer` is of a kind that answers `req` (a refusal answers any).
pub fn answers(req: &Request, answer: &Response) -> bool {
    matches!(
        (req, answer),
        (_, Response::Refused { .. })
            | (Request::Policy { .. }, Response::PolicyApplied { .. })
            | (Request::Endorse { .. }, Response::Endorsed { .. })
            | (Request::Place { .. }, Response::Placed { .. })
            | (
                Request::Admit { .. } | Request::AdmitNitro { .. } | Request::AdmitTdx { .. },
                Response::Admitted { .. }
            )
    )
}

/// The coordinator's end of a connected stream: one request at a time, each answer checked
/// before it is returned.
pub struct RelayClient {
    stream: TcpStream,
    deframer: Deframer,
    timeout: Duration,
    broken: Option<String>,
}

impl RelayClient {
    /// Talks over `stream`, already connected to the coordinator (the launcher's relay of
    /// its Fleet stream), waiting [`ANSWER_WAIT`] for each answer.
    pub fn new(stream: TcpStream) -> RelayClient {
        let _ = stream.set_nodelay(true);
        RelayClient {
            stream,
            // SECURITY: an answer's length is checked before anything is buffered for it.
            deframer: Deframer::new(MAX_RESPONSE),
            timeout: ANSWER_WAIT,
            broken: None,
        }
    }

    /// How long the next answers may take.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends `req` and returns its answer. An answer that does not decode strictly, is
    /// too large, repeats another id or does not fit the request is an error, and so is
    /// every later call: the stream's framing is lost.
    pub async fn call(&mut self, req: &Request) -> Result<Response, RelayError> {
        if let Some(why) = &self.broken {
            return Err(RelayError::Broken(why.clone()));
        }
        let body = encode(req);
        if body.len() > MAX_REQUEST {
            // Never sent: the coordinator would drop the stream's framing for it.
            return Err(RelayError::TooLarge(body.len()));
        }
        let r = self.exchange(req, &body).await;
        if let Err(e) = &r {
            self.broken = Some(e.to_string());
        }
        r
    }

    async fn exchange(&mut self, req: &Request, body: &[u8]) -> Result<Response, RelayError> {
        let (id, kind) = request_parts(req);
        let secs = self.timeout.as_secs();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let io = |e: std::io::Error| RelayError::Io(e.to_string());
        tokio::time::timeout_at(deadline, self.stream.write_all(&frame(body)))
            .await
            .map_err(|_| RelayError::Timeout { id, secs })?
            .map_err(io)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(m) = self.deframer.next_message() {
                let answer = m
                    .and_then(|b| decode_response(&b))
                    .map_err(RelayError::Frame)?;
                if answer.id() != id {
                    return Err(RelayError::WrongId {
                        sent: id,
                        got: answer.id(),
                    });
                }
                if !answers(req, &answer) {
                    return Err(RelayError::WrongKind {
                        sent: kind,
                        got: response_kind(&answer),
                    });
                }
                return Ok(answer);
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .map_err(|_| RelayError::Timeout { id, secs })?
                .map_err(io)?;
            if n == 0 {
                return Err(RelayError::Closed);
            }
            self.deframer.push(&buf[..n]);
        }
    }
}

/// `omega-fleet coordinator --in-image`: how to start the coordinator image.
#[derive(Debug, Clone)]
pub struct InImageConfig {
    /// The `omega` launcher.
    pub omega: PathBuf,
    /// The Omega image.
    pub image: PathBuf,
    /// The coordinator bundle (its manifest names `coordinator`: owner and policy floor).
    pub bundle: PathBuf,
    /// This run's files: `log/` (the launcher's `--log-dir`), `omega-run.stdout`,
    /// `omega-run.stderr`, `coordinator.pub`.
    pub run_dir: PathBuf,
    /// Boot under the simulated PSP (`--simulated-psp`; with `--lab-root`).
    pub simulated_psp: bool,
}

/// The coordinator in an Omega image, through its launcher's relay.
pub struct InImage {
    client: RelayClient,
    run_dir: PathBuf,
    /// The launcher (killed when this is dropped); `None` for a coordinator connected
    /// otherwise ([`InImage::over`]).
    child: Option<tokio::process::Child>,
    owner: [u8; 32],
    /// The challenge the launcher was given (`--nonce`): its evidence binds it.
    nonce: Option<String>,
}

/// The last lines of the launcher's output in `run_dir`, for errors.
fn output_tail(run_dir: &Path) -> String {
    let mut tail = Vec::new();
    for name in ["omega-run.stdout", "omega-run.stderr"] {
        let text = std::fs::read_to_string(run_dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(8).collect();
        if !lines.is_empty() {
            tail.push(format!(
                "{name}: {}",
                lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
    }
    if tail.is_empty() {
        "no output from omega run".into()
    } else {
        tail.join("; ")
    }
}

/// The `coordinator` evidence's path under a run directory.
pub fn evidence_path(run_dir: &Path) -> PathBuf {
    run_dir.join("log").join("evidence").join("coordinator.bin")
}

/// What a coordinator image claims in its `coordinator` evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorClaim {
    pub public: [u8; 32],
    pub owner: [u8; 32],
    pub min_policy_version: u64,
    pub boot_id: [u8; 16],
}

/// The claim of a `coordinator` evidence bundle (`omega_evidence::Bundle`, its leaf a
/// `Claim::Coordinator`). Decoded only: nothing here verifies the evidence.
pub fn read_claim(bytes: &[u8]) -> anyhow::Result<CoordinatorClaim> {
    let b = omega_evidence::Bundle::decode(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let leaf = omega_evidence::SaltedLeaf::decode(&b.leaf).map_err(|e| anyhow::anyhow!("{e}"))?;
    match leaf.claim {
        omega_evidence::Claim::Coordinator {
            public,
            owner,
            min_policy_version,
            boot_id,
        } => Ok(CoordinatorClaim {
            public,
            owner,
            min_policy_version,
            boot_id,
        }),
        other => bail!("the evidence claims {other:?}, not a coordinator"),
    }
}

impl InImage {
    /// Starts the coordinator image: binds a loopback listener, runs `omega run --image
    /// IMG [--simulated-psp] --bundle DIR --log-dir RUN_DIR/log --nonce N --fleet-connect
    /// ADDR` (its output in `RUN_DIR/omega-run.*`) and takes the launcher's connection.
    pub async fn start(cfg: &InImageConfig, owner: [u8; 32]) -> anyhow::Result<InImage> {
        let run_dir = &cfg.run_dir;
        std::fs::create_dir_all(run_dir).with_context(|| format!("{}", run_dir.display()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let create = |name: &str| {
            let p = run_dir.join(name);
            std::fs::File::create(&p).with_context(|| format!("{}", p.display()))
        };
        let nonce = hex::encode(crate::random32()?);
        let mut cmd = tokio::process::Command::new(&cfg.omega);
        cmd.arg("run").arg("--image").arg(&cfg.image);
        if cfg.simulated_psp {
            cmd.arg("--simulated-psp");
        }
        cmd.arg("--bundle")
            .arg(&cfg.bundle)
            .arg("--log-dir")
            .arg(run_dir.join("log"))
            .args(["--nonce", &nonce, "--connect-timeout", "60"])
            .args(["--fleet-connect", &addr.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(create("omega-run.stdout")?)
            .stderr(create("omega-run.stderr")?)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} run", cfg.omega.display()))?;
        let stream = tokio::select! {
            accepted = tokio::time::timeout(CONNECT_WAIT, listener.accept()) => match accepted {
                Ok(Ok((s, _))) => s,
                Ok(Err(e)) => bail!("accepting the launcher's connection on {addr}: {e}"),
                Err(_) => bail!(
                    "omega run did not connect to the relay on {addr} within {} s ({})",
                    CONNECT_WAIT.as_secs(),
                    output_tail(run_dir)
                ),
            },
            status = child.wait() => bail!(
                "omega run ended ({}) before connecting to the relay ({})",
                status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                output_tail(run_dir)
            ),
        };
        // One coordinator: no further connection is taken.
        drop(listener);
        let mut client = RelayClient::new(stream);
        client.set_timeout(FIRST_ANSWER_WAIT);
        Ok(InImage {
            client,
            run_dir: run_dir.clone(),
            child: Some(child),
            owner,
            nonce: Some(nonce),
        })
    }

    /// A coordinator already connected through `client` (no launcher to start or watch),
    /// its evidence expected at [`evidence_path`]`(run_dir)`, its owner `owner`.
    pub fn over(client: RelayClient, run_dir: PathBuf, owner: [u8; 32]) -> InImage {
        InImage {
            client,
            run_dir,
            child: None,
            owner,
            nonce: None,
        }
    }

    /// The launcher's exit status, if it ended.
    fn ended(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    async fn call_checked(&mut self, req: &Request) -> anyhow::Result<Response> {
        let r = self.client.call(req).await;
        // After the first answer (the image is up), the usual wait.
        self.client.set_timeout(ANSWER_WAIT);
        r.map_err(|e| match self.ended() {
            Some(status) => anyhow::anyhow!(
                "{e}; omega run ended ({status}): {}",
                output_tail(&self.run_dir)
            ),
            None => anyhow::Error::new(e),
        })
    }

    async fn read_identity(&mut self) -> anyhow::Result<Identity> {
        let path = evidence_path(&self.run_dir);
        let deadline = tokio::time::Instant::now() + EVIDENCE_WAIT;
        // The launcher writes the file whole; one that does not decode yet is read again.
        let CoordinatorClaim {
            public,
            owner,
            min_policy_version: floor,
            boot_id,
        } = loop {
            let read = std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| read_claim(&b));
            match read {
                Ok(claim) => break claim,
                Err(e) => {
                    if let Some(status) = self.ended() {
                        bail!(
                            "omega run ended ({status}) without coordinator evidence ({}): {}",
                            path.display(),
                            output_tail(&self.run_dir)
                        );
                    }
                    if tokio::time::Instant::now() >= deadline {
                        bail!(
                            "no coordinator evidence at {} within {} s (last: {e:#}; {})",
                            path.display(),
                            EVIDENCE_WAIT.as_secs(),
                            output_tail(&self.run_dir)
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        if owner != self.owner {
            bail!(
                "the coordinator image claims owner {}, not --owner {}",
                hex::encode(owner),
                hex::encode(self.owner)
            );
        }
        let pub_file = self.run_dir.join("coordinator.pub");
        std::fs::write(&pub_file, format!("{}\n", hex::encode(public)))
            .with_context(|| format!("writing {}", pub_file.display()))?;
        let note = format!(
            "the coordinator key {} is this host's read of {}, not verified here: clients \
             must verify that evidence themselves (measurements verify-evidence --principal \
             coordinator; its nonce is in log/nonce.hex) before trusting the key",
            hex::encode(public),
            path.display()
        );
        eprintln!("omega-fleet: NOTE: {note}");
        Ok(Identity {
            public,
            fields: serde_json::json!({
                "in_image": true,
                "owner": hex::encode(owner),
                "min_policy_version": floor,
                "boot_id": hex::encode(boot_id),
                "evidence": path.display().to_string(),
                "evidence_nonce": self.nonce,
                "public_file": pub_file.display().to_string(),
                "note": note,
            }),
        })
    }
}

impl InImage {
    /// Closes the relay connection, which stops the coordinator (its monitor winds down as
    /// after its agents, its log checkpointed), and waits [`STOP_WAIT`] for the launcher to
    /// end; kills it otherwise.
    async fn stop(self) -> Option<String> {
        let InImage { client, child, .. } = self;
        drop(client);
        let mut child = child?;
        Some(match tokio::time::timeout(STOP_WAIT, child.wait()).await {
            Ok(Ok(status)) => format!("omega run ended ({status}) once the relay closed"),
            Ok(Err(e)) => format!("waiting for omega run: {e}"),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                format!(
                    "omega run did not end within {} s of the relay closing: killed",
                    STOP_WAIT.as_secs()
                )
            }
        })
    }
}

impl Backend for InImage {
    fn call(&mut self, req: &Request) -> impl Future<Output = anyhow::Result<Response>> + Send {
        self.call_checked(req)
    }

    fn started(&mut self) -> impl Future<Output = anyhow::Result<Identity>> + Send {
        self.read_identity()
    }

    fn shutdown(self) -> impl Future<Output = Option<String>> + Send {
        self.stop()
    }
}
