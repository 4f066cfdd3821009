//! The coordinator's host process: reads proposals and evidence from etcd, asks the
//! coordinator (`omega_fleet::service`: requests and answers) to sign placements and admit
//! nodes, and writes the signed placements, credentials, statuses and boots back. Where the
//! coordinator runs is its [`Backend`]:
//!
//! * **Local** ([`crate::backend::Local`], the default): the service in this process, the
//!   **stand-in**: its key is a file (`--key`), and nobody can check it runs the fleet
//!   logic.
//! * **In an image** ([`crate::relay::InImage`], `--in-image`): the service in an attested
//!   Omega image started here (`omega run --fleet-connect`); its key is drawn inside the
//!   image and claimed in its `coordinator` evidence, and this process is an untrusted
//!   relay between etcd and the image.
//!
//! Both are asked the same way: a placement carries the whole bundle's bytes (read from the
//! proposal's directory in sending order; the coordinator hashes and checks them itself), an
//! Omega node's evidence goes as it was submitted, and the coordinator's Unix time is
//! anchored by the owner-signed policy, not this host's clock (docs/fleet.md). A Nitro
//! guest's document goes as it was submitted too (`Request::AdmitNitro`: the coordinator
//! verifies it under the Nitro root of the signed policy, at its own time), and so does a
//! TDX guest's quote with its collateral (`Request::AdmitTdx`: verified to Intel's pinned
//! root, the collateral current at the coordinator's time).
//!
//! An owner-rooted fleet (docs/fleet.md): with [`Config::endorsement`], once the policy is
//! applied the host waits (up to [`ENDORSEMENT_WAIT`] after the start, polling each tick)
//! for the owner's endorsement file (`omega-fleet endorse`, made after the owner verified
//! this coordinator's evidence) and sends it (`Request::Endorse`): taken, it is logged
//! `endorsed` and published at `endorsements/coordinator` for the node agents (who check it
//! under the owner key themselves), and every credential from then on is the presented form
//! (`omega_fleet::endorsement::Presented`); refused, it is logged `endorsement-refused` and
//! the coordinator carries on with bare credentials.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use omega_fleet::endorsement::Presented;
use omega_fleet::service::{Chain, MAX_REQUEST, Request, Response, encode};
use omega_fleet::{Credential, Placement};
use serde_json::json;

use crate::audit::Audit;
use crate::backend::{Backend, Local, LocalConfig};
use crate::relay::{InImage, InImageConfig};
use crate::source::{bundle_files, hex32};
use crate::store::{Boot, Proposal, Status, Store, Submission};

/// Boots kept per workload in `boots/<workload>`.
pub const MAX_BOOTS: usize = 256;

pub struct Config {
    pub etcd: Vec<String>,
    pub fleet: String,
    /// The policy owner's key (`--owner`).
    pub owner: [u8; 32],
    /// The owner-signed policy, the first request the coordinator is sent.
    pub policy: PathBuf,
    /// Whether the simulated PSP's lab chain is trusted (`--lab-root`): Omega nodes that
    /// submit no AMD chain (`Submission::amd`) are sent as `Chain::Lab`, which only then
    /// counts, and an in-image coordinator boots under the simulated PSP. Without it, only
    /// nodes with an AMD chain can be admitted.
    pub lab_root: bool,
    pub audit: Option<PathBuf>,
    pub poll: Duration,
    pub mode: Mode,
    /// The owner's endorsement file (`--endorsement`), sent once it exists (see the module
    /// docs).
    pub endorsement: Option<PathBuf>,
}

/// How long after the start the host polls for the endorsement file.
pub const ENDORSEMENT_WAIT: Duration = Duration::from_secs(120);

/// Where the coordinator runs.
pub enum Mode {
    /// In this process: its key seed (`--key`), the state file (`--state`) and the policy
    /// floor (`--min-policy-version`).
    Local {
        key_seed: [u8; 32],
        state: PathBuf,
        min_policy_version: u64,
    },
    /// In an Omega image (`--in-image`).
    InImage(InImageConfig),
}

/// An error of the coordinator itself (unreachable, or answering what it must not):
/// the process stops rather than carry on without it.
#[derive(Debug, thiserror::Error)]
#[error("coordinator: {0}")]
pub struct BackendFailed(pub String);

fn failed(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(BackendFailed(format!("{e:#}")))
}

fn status(
    node: &str,
    epoch: u64,
    nonce: Option<&[u8; 32]>,
    state: &str,
    rule: &str,
    detail: String,
) -> Status {
    Status {
        node: node.into(),
        epoch,
        nonce: nonce.map(hex::encode).unwrap_or_default(),
        state: state.into(),
        rule: rule.into(),
        detail,
    }
}

/// A request too large for the coordinator to take is refused here, never sent.
fn sendable(req: &Request) -> Result<(), String> {
    let len = encode(req).len();
    if len > MAX_REQUEST {
        return Err(format!(
            "the request is {len} bytes, more than the coordinator accepts ({MAX_REQUEST})"
        ));
    }
    Ok(())
}

/// An admission's outcome: (signed credential, image rule, boot id) or (rule, reason).
type Verdict = Result<(Vec<u8>, String, Option<String>), (String, String)>;

/// The etcd side of a coordinator running behind `B`.
pub struct Host<B: Backend> {
    backend: B,
    /// The coordinator's key: every placement and credential it answers must verify under it.
    public: [u8; 32],
    store: Store,
    audit: Audit,
    next_id: u64,
    /// workload → (node, epoch, nonce of the placement signed; none when refused).
    placed: HashMap<String, (String, u64, Option<[u8; 32]>)>,
    /// workload → mod revision of the last evidence submission handled.
    handled: HashMap<String, i64>,
    /// The endorsement file still awaited, and until when.
    awaited: Option<(PathBuf, Instant)>,
    /// The owner's endorsement the coordinator took (its credentials present it).
    endorsed: Option<Vec<u8>>,
}

impl<B: Backend> Host<B> {
    /// Sends the owner-signed policy (`cfg.policy`) to `backend` as its first request: a
    /// refusal ends the start with the reason. Then logs `started` with the coordinator's
    /// key.
    pub async fn start(cfg: &Config, mut backend: B) -> anyhow::Result<Host<B>> {
        let audit = Audit::new("coordinator", cfg.audit.clone())?;
        let signed = std::fs::read(&cfg.policy)
            .with_context(|| format!("reading {}", cfg.policy.display()))?;
        let req = Request::Policy { id: 1, signed };
        sendable(&req).map_err(|e| anyhow::anyhow!("policy {}: {e}", cfg.policy.display()))?;
        match backend.call(&req).await? {
            Response::PolicyApplied { fleet, version, .. } => {
                audit.log(
                    "policy-applied",
                    json!({ "fleet": fleet, "version": version }),
                );
            }
            Response::Refused { rule, reason, .. } => {
                audit.log("policy-refused", json!({ "rule": rule, "reason": reason }));
                anyhow::bail!("policy {}: {reason}", cfg.policy.display());
            }
            other => anyhow::bail!("the coordinator answered the policy with {other:?}"),
        }
        let id = backend.started().await?;
        let mut fields = json!({ "public": hex::encode(id.public) });
        if let (Some(o), serde_json::Value::Object(more)) = (fields.as_object_mut(), id.fields) {
            o.extend(more);
        }
        audit.log("started", fields);
        Ok(Host {
            backend,
            public: id.public,
            store: Store::new(&cfg.etcd, &cfg.fleet),
            audit,
            next_id: 2,
            placed: HashMap::new(),
            handled: HashMap::new(),
            awaited: cfg
                .endorsement
                .clone()
                .map(|f| (f, Instant::now() + ENDORSEMENT_WAIT)),
            endorsed: None,
        })
    }

    /// The coordinator's key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The owner's endorsement the coordinator took, if any.
    pub fn endorsement(&self) -> Option<&[u8]> {
        self.endorsed.as_deref()
    }

    /// Sends the owner's endorsement `signed` to the coordinator: `Ok(true)` when taken
    /// (logged `endorsed`, published at `endorsements/coordinator`), `Ok(false)` when refused
    /// (logged `endorsement-refused`, not fatal); any other answer is the coordinator's
    /// failure.
    pub async fn endorse(&mut self, signed: Vec<u8>) -> anyhow::Result<bool> {
        let id = self.id();
        let req = Request::Endorse {
            id,
            signed: signed.clone(),
        };
        if let Err(reason) = sendable(&req) {
            self.audit.log(
                "endorsement-refused",
                json!({ "rule": "malformed", "reason": reason }),
            );
            return Ok(false);
        }
        match self.backend.call(&req).await.map_err(failed)? {
            Response::Endorsed { not_after, .. } => {
                self.audit
                    .log("endorsed", json!({ "not_after": not_after }));
                self.endorsed = Some(signed.clone());
                self.store
                    .put(
                        crate::node::ENDORSEMENTS,
                        crate::node::ENDORSEMENT_NAME,
                        signed,
                    )
                    .await?;
                Ok(true)
            }
            Response::Refused { rule, reason, .. } => {
                self.audit.log(
                    "endorsement-refused",
                    json!({ "rule": rule, "reason": reason }),
                );
                Ok(false)
            }
            other => Err(failed(format!(
                "the coordinator answered an endorsement with {other:?}"
            ))),
        }
    }

    /// The awaited endorsement file sent once it exists; given up (logged
    /// `endorsement-missing`) [`ENDORSEMENT_WAIT`] after the start.
    async fn poll_endorsement(&mut self) -> anyhow::Result<()> {
        let Some((file, until)) = self.awaited.clone() else {
            return Ok(());
        };
        match std::fs::read(&file) {
            Ok(bytes) => {
                self.awaited = None;
                self.endorse(bytes).await?;
            }
            Err(_) if Instant::now() >= until => {
                self.awaited = None;
                self.audit.log(
                    "endorsement-missing",
                    json!({ "file": file.display().to_string() }),
                );
            }
            Err(_) => {}
        }
        Ok(())
    }

    /// An admission's credential bytes, which must verify under this coordinator's key (and,
    /// once endorsed, present the endorsement it took).
    fn own_credential(&self, bytes: &[u8]) -> anyhow::Result<Credential> {
        let signed = match &self.endorsed {
            None => bytes.to_vec(),
            Some(e) => {
                let p = Presented::decode(bytes).map_err(|e| failed(format!("{e}")))?;
                if p.endorsement != *e {
                    return Err(failed("a credential presenting another endorsement"));
                }
                p.credential
            }
        };
        Credential::decode(&signed, &self.public)
            .map_err(|e| failed(format!("a credential that does not verify: {e}")))
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn status(&mut self, w: &str, s: Status) -> anyhow::Result<()> {
        self.store.put_json("status", w, &s).await
    }

    /// Appends this admitted boot to `boots/<w>` (the workload's chain of boots; at most
    /// [`MAX_BOOTS`], oldest dropped). etcd is untrusted: the coordinator's audit log holds
    /// the same records (`admitted`, with `boot_id`), and each boot id is attested by its
    /// own evidence; a list the scheduler garbled is started afresh.
    async fn record_boot(
        &mut self,
        w: &str,
        node: &str,
        epoch: u64,
        boot_id: Option<&str>,
        c: &Credential,
    ) -> anyhow::Result<()> {
        let mut boots: Vec<Boot> = match self.store.get("boots", w).await? {
            Some(raw) => serde_json::from_slice(&raw).unwrap_or_default(),
            None => Vec::new(),
        };
        boots.push(Boot {
            node: node.into(),
            epoch,
            boot_id: boot_id.unwrap_or_default().into(),
            node_key: hex::encode(c.node_key),
            serial: c.serial,
            // The coordinator's time of the admission.
            admitted_at: c.not_before,
        });
        let excess = boots.len().saturating_sub(MAX_BOOTS);
        boots.drain(..excess);
        self.store.put_json("boots", w, &boots).await
    }

    /// Asks the coordinator to sign a placement of `p` (its bundle's files): the signed
    /// placement and its nonce, or why not.
    async fn sign_placement(
        &mut self,
        w: &str,
        p: &Proposal,
    ) -> anyhow::Result<Result<(Vec<u8>, [u8; 32]), String>> {
        let files = match bundle_files(Path::new(&p.bundle)) {
            Ok(f) => f,
            Err(e) => return Ok(Err(format!("{e:#}"))),
        };
        let req = Request::Place {
            id: self.id(),
            workload: w.into(),
            node: p.node.clone(),
            role: p.role.clone(),
            files,
        };
        if let Err(e) = sendable(&req) {
            return Ok(Err(e));
        }
        match self.backend.call(&req).await.map_err(failed)? {
            Response::Placed {
                nonce, placement, ..
            } => {
                // The answer is the coordinator's: it must verify under its key, for this
                // request.
                let pl = Placement::verify(&placement, &self.public)
                    .map_err(|e| failed(format!("a placement that does not verify: {e}")))?;
                if pl.nonce != nonce || pl.workload != w || pl.node_id != p.node {
                    return Err(failed(format!(
                        "a placement of {} on {} for {w} on {}",
                        pl.workload, pl.node_id, p.node
                    )));
                }
                Ok(Ok((placement, nonce)))
            }
            Response::Refused { reason, .. } => Ok(Err(reason)),
            other => Err(failed(format!("{other:?} answers a placement"))),
        }
    }

    /// Signs a placement for each new proposal.
    async fn place(&mut self) -> anyhow::Result<()> {
        let proposals = self.store.list_json::<Proposal>("proposals").await?;
        for (w, p, _) in proposals {
            if self
                .placed
                .get(&w)
                .is_some_and(|(n, e, _)| *n == p.node && *e == p.epoch)
            {
                continue;
            }
            match self.sign_placement(&w, &p).await? {
                Ok((bytes, nonce)) => {
                    self.placed
                        .insert(w.clone(), (p.node.clone(), p.epoch, Some(nonce)));
                    self.store.put("placements", &w, bytes).await?;
                    self.status(
                        &w,
                        status(&p.node, p.epoch, Some(&nonce), "placed", "", String::new()),
                    )
                    .await?;
                    self.audit.log(
                        "placement-signed",
                        json!({ "workload": w, "node": p.node, "epoch": p.epoch, "nonce": hex::encode(nonce) }),
                    );
                }
                Err(reason) => {
                    self.placed
                        .insert(w.clone(), (p.node.clone(), p.epoch, None));
                    self.status(
                        &w,
                        status(
                            &p.node,
                            p.epoch,
                            None,
                            "refused",
                            "placement",
                            reason.clone(),
                        ),
                    )
                    .await?;
                    self.audit.log(
                        "placement-refused",
                        json!({ "workload": w, "node": p.node, "reason": reason }),
                    );
                }
            }
        }
        Ok(())
    }

    /// Sends an admission request (`Admit`, `AdmitNitro`) and returns the coordinator's
    /// verdict; a request too large to send is refused `malformed`.
    async fn ask_admission(&mut self, req: &Request) -> anyhow::Result<Verdict> {
        if let Err(e) = sendable(req) {
            return Ok(Err(("malformed".to_string(), e)));
        }
        match self.backend.call(req).await.map_err(failed)? {
            Response::Admitted {
                credential,
                image,
                boot_id,
                ..
            } => Ok(Ok((credential, image, boot_id.map(hex::encode)))),
            Response::Refused { rule, reason, .. } => Ok(Err((rule, reason))),
            other => Err(failed(format!("{other:?} answers an admission"))),
        }
    }

    /// A TDX or Nitro guest's evidence, sent to the coordinator as it was submitted
    /// (`Request::AdmitTdx`, `Request::AdmitNitro`), which verifies it (TDX: to Intel's root
    /// pinned in the verifier; Nitro: under the policy's root) at its own time, in either mode.
    async fn admit_tee(
        &mut self,
        t: &crate::store::TeeSubmission,
        nonce: &[u8; 32],
    ) -> anyhow::Result<Verdict> {
        let malformed = |what: &str, e: &dyn std::fmt::Display| {
            Ok(Err(("malformed".into(), format!("{what}: {e:#}"))))
        };
        let node_key = match hex32(&t.node_key) {
            Ok(k) => k,
            Err(e) => return malformed("node_key", &e),
        };
        let evidence = match hex::decode(&t.evidence) {
            Ok(d) => d,
            Err(e) => return malformed("evidence", &e),
        };
        let req = match t.kind.as_str() {
            "nitro" => Request::AdmitNitro {
                id: self.id(),
                nonce: *nonce,
                document: evidence,
                node_key,
            },
            "tdx" => Request::AdmitTdx {
                id: self.id(),
                nonce: *nonce,
                quote: evidence,
                collateral: match hex::decode(&t.collateral) {
                    Ok(c) => c,
                    Err(e) => return malformed("collateral", &e),
                },
                node_key,
            },
            other => {
                return Ok(Err((
                    "malformed".into(),
                    format!("unknown TEE {other:?} (tdx, nitro)"),
                )));
            }
        };
        self.ask_admission(&req).await
    }

    /// Verifies each new evidence submission and admits or refuses.
    async fn admit(&mut self) -> anyhow::Result<()> {
        let subs = self.store.list("evidence").await?;
        for (w, raw, rev) in subs {
            if self.handled.get(&w) == Some(&rev) {
                continue;
            }
            self.handled.insert(w.clone(), rev);
            let started = Instant::now();
            let parsed = serde_json::from_slice::<Submission>(&raw)
                .map_err(anyhow::Error::from)
                .and_then(|s| {
                    Ok((
                        hex32(&s.nonce)?,
                        hex::decode(&s.evidence)?,
                        hex::decode(&s.bundle_evidence)?,
                        hex::decode(&s.peer_evidence)?,
                        s.node,
                        s.tee,
                        match s.amd {
                            Some(a) => Chain::Amd {
                                family: a.family,
                                vcek: hex::decode(&a.vcek)?,
                            },
                            None => Chain::Lab,
                        },
                    ))
                });
            let (nonce, evidence, bundle_evidence, peer_evidence, claimed_node, tee, chain) =
                match parsed {
                    Ok(v) => v,
                    Err(e) => {
                        self.audit.log(
                            "refused",
                            json!({ "workload": w, "rule": "malformed", "reason": e.to_string() }),
                        );
                        continue;
                    }
                };
            // `verified_us`: until the coordinator's answer (for an Omega node or a Nitro
            // guest the service verifies, admits and signs in one request: for an in-image
            // coordinator the relay's round trip too).
            let outcome = match &tee {
                Some(t) => self.admit_tee(t, &nonce).await?,
                None => {
                    let req = Request::Admit {
                        id: self.id(),
                        nonce,
                        // The node's AMD chain when it sent one, else the lab chain (which a
                        // coordinator not trusting the lab root refuses).
                        chain,
                        platform: evidence,
                        bundle: bundle_evidence,
                        peer: peer_evidence,
                    };
                    self.ask_admission(&req).await?
                }
            };
            let verified_us = started.elapsed();
            let total_us = started.elapsed().as_micros();
            // The placement this submission answered, if the nonce is the current one.
            let current = self
                .placed
                .get(&w)
                .filter(|(_, _, n)| *n == Some(nonce))
                .map(|(node, epoch, _)| (node.clone(), *epoch));
            match outcome {
                Ok((signed, image, boot_id)) => {
                    let c = self.own_credential(&signed)?;
                    self.store
                        .put("credentials", &c.node_id, signed.clone())
                        .await?;
                    if let Some((node, epoch)) = &current {
                        self.status(
                            &w,
                            status(node, *epoch, Some(&nonce), "admitted", "", image.clone()),
                        )
                        .await?;
                        self.record_boot(&w, node, *epoch, boot_id.as_deref(), &c)
                            .await?;
                    }
                    self.audit.log(
                        "admitted",
                        json!({
                            "workload": w, "node": c.node_id, "role": c.role, "image": image,
                            "boot_id": boot_id,
                            "tee": c.tee.name(), "node_key": hex::encode(c.node_key),
                            "serial": c.serial, "not_after": c.not_after,
                            "verify_us": verified_us.as_micros(), "admission_us": total_us,
                        }),
                    );
                }
                Err((rule, reason)) => {
                    // Refusals of the live challenge park the placement; replays and
                    // unknown nonces change nothing but the log.
                    if let Some((node, epoch)) = &current
                        && !rule.starts_with("nonce-")
                    {
                        self.status(
                            &w,
                            status(node, *epoch, Some(&nonce), "refused", &rule, reason.clone()),
                        )
                        .await?;
                    }
                    self.audit.log(
                        "refused",
                        json!({ "workload": w, "node": claimed_node, "rule": rule, "reason": reason }),
                    );
                }
            }
        }
        Ok(())
    }

    /// One pass: new proposals placed, new submissions admitted or refused. An `Err`
    /// holding [`BackendFailed`] means the coordinator is gone (see [`Host::serve`]).
    pub async fn tick(&mut self) -> anyhow::Result<()> {
        self.poll_endorsement().await?;
        self.place().await?;
        self.admit().await
    }

    /// Ticks every `poll` until the coordinator fails (an error) or this process is told
    /// to stop (SIGINT, SIGTERM: `Ok`); etcd errors are logged and the loop goes on. Then
    /// stops the coordinator ([`Host::stop`]).
    pub async fn serve(mut self, poll: Duration) -> anyhow::Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let result = loop {
            let ticked = tokio::select! {
                r = self.tick() => Some(r),
                _ = tokio::signal::ctrl_c() => None,
                _ = term.recv() => None,
            };
            match ticked {
                None => break Ok(()),
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    self.audit
                        .log("error", json!({ "reason": format!("{e:#}") }));
                    if e.downcast_ref::<BackendFailed>().is_some() {
                        break Err(e);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = tokio::signal::ctrl_c() => break Ok(()),
                _ = term.recv() => break Ok(()),
            }
        };
        self.stop().await;
        result
    }

    /// Stops the coordinator (an in-image one: the relay closed, its launcher waited for)
    /// and logs `stopped`; returns what became of it.
    pub async fn stop(self) -> Option<String> {
        let Host { backend, audit, .. } = self;
        let what = backend.shutdown().await;
        audit.log("stopped", json!({ "coordinator": what }));
        what
    }
}

/// The in-process coordinator of `cfg` (its mode must be [`Mode::Local`]), started.
pub async fn start_local(cfg: &Config) -> anyhow::Result<Host<Local>> {
    let Mode::Local {
        key_seed,
        state,
        min_policy_version,
    } = &cfg.mode
    else {
        anyhow::bail!("not an in-process coordinator");
    };
    let local = Local::new(&LocalConfig {
        key_seed: *key_seed,
        owner: cfg.owner,
        min_policy_version: *min_policy_version,
        state: Some(state.clone()),
        lab_root: cfg.lab_root,
    })?;
    Host::start(cfg, local).await
}

/// Runs the coordinator of `cfg` until it fails or this process is told to stop.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    match &cfg.mode {
        Mode::Local { .. } => start_local(&cfg).await?.serve(cfg.poll).await,
        Mode::InImage(image) => {
            let backend = InImage::start(image, cfg.owner).await?;
            Host::start(&cfg, backend).await?.serve(cfg.poll).await
        }
    }
}
