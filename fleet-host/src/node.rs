//! The node agent (untrusted host side of one node): holds the node's etcd lease, boots each
//! coordinator-signed placement naming this node with `omega run` (the coordinator's nonce as
//! the verifier's challenge), submits the monitor's evidence as soon as the launcher has
//! written it (the run goes on), and checks the credential the coordinator returns. A
//! placement that does not verify under the coordinator's key is refused and logged, never
//! booted.
//!
//! A workload with a peer (`Desired::peer`) opens a peer channel to it: the workload whose
//! name sorts first listens (`--peer-listen` on a free loopback port, published as
//! `links/<workload>`), the other connects to that address once it is published; both boot
//! only once the peer is placed (its node is the peer's name). The node's credential is
//! handed to the launcher (`--peer-credential`), which gives it to the monitor: nothing
//! here is trusted by the monitors, which check the credential under the coordinator key
//! in their bundle.
//!
//! The agent's root ([`Config::root`]) is the one its bundles name: one coordinator key
//! (`--coordinator`), or the fleet's owner (`--owner`, an owner-rooted fleet). Under an
//! owner, placements must verify under the coordinator key of the owner's endorsement the
//! coordinator published (`endorsements/coordinator`, checked here under the owner key, for
//! this fleet, now valid), and credentials are the presented form, checked by
//! `omega_fleet::endorsement::verify_presented` (under a coordinator key too: one path).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use omega_fleet::Placement;
use omega_fleet::endorsement::{Endorsement, Root, verify_presented};
use serde_json::json;

use crate::audit::Audit;
use crate::source::bundle_pins;
use crate::store::{NodeInfo, Proposal, Store, Submission};

/// Where the coordinator host publishes the owner's endorsement it took (etcd
/// `endorsements/coordinator`): owner-signed, so readers check it themselves.
pub const ENDORSEMENTS: &str = "endorsements";
pub const ENDORSEMENT_NAME: &str = "coordinator";

pub struct Config {
    pub etcd: Vec<String>,
    pub fleet: String,
    pub id: String,
    /// Who signs this fleet's credentials (what the bundles name): one coordinator key, or
    /// the owner, whose endorsement names the coordinator key.
    pub root: Root,
    /// The `omega` launcher.
    pub omega: PathBuf,
    pub image: PathBuf,
    pub vcpus: u32,
    /// One `--log-dir` per boot under it.
    pub work: PathBuf,
    pub audit: Option<PathBuf>,
    pub ttl: i64,
    pub poll: Duration,
    /// This host's SEV-SNP chip (`--vcek`, `--family`): boots launch under SEV-SNP and their
    /// evidence is submitted with this chain. `None`: the simulated PSP (tests).
    pub amd: Option<crate::store::AmdChain>,
}

/// One boot in progress (or ended, awaiting its credential).
struct Run {
    workload: String,
    /// The placement's nonce (the evidence answers it).
    nonce: [u8; 32],
    /// The launcher's `--log-dir`.
    dir: PathBuf,
    child: tokio::process::Child,
    /// The launcher ended (its status).
    exit: Option<std::process::ExitStatus>,
    /// This boot's monitor key, once its evidence is submitted.
    key: Option<[u8; 32]>,
    /// Where the launcher waits for the credential (peer workloads).
    credential_file: Option<PathBuf>,
    admitted: bool,
}

struct Node {
    cfg: Config,
    store: Store,
    audit: Audit,
    /// Nonces of placements already booted (each is booted once).
    booted: HashSet<[u8; 32]>,
    /// Signed placements already refused (logged once).
    refused: HashSet<Vec<u8>>,
    /// Workloads whose peer was not ready, logged once.
    waiting: HashSet<String>,
    runs: Vec<Run>,
}

/// A loopback port nobody listens on now (the launcher binds it next).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Node {
    /// The launcher's peer-link arguments for workload `w` linked with `peer`, or `None`
    /// while the peer is not placed (or, for the connecting side, its address is not
    /// published yet).
    async fn peer_args(
        &mut self,
        w: &str,
        peer: &str,
        credential: &Path,
    ) -> anyhow::Result<Option<Vec<OsString>>> {
        let Some(pp) = self.store.get("proposals", peer).await? else {
            return Ok(None);
        };
        let pp: Proposal = serde_json::from_slice(&pp).context("the peer's proposal")?;
        let link = if w < peer {
            let addr = format!("127.0.0.1:{}", free_port()?);
            self.store
                .put("links", w, addr.clone().into_bytes())
                .await?;
            ["--peer-listen".into(), addr]
        } else {
            let Some(addr) = self.store.get("links", peer).await? else {
                return Ok(None);
            };
            [
                "--peer-connect".into(),
                String::from_utf8(addr).context("a link")?,
            ]
        };
        let mut args: Vec<OsString> = link.into_iter().map(OsString::from).collect();
        for a in [
            "--peer-node",
            &self.cfg.id,
            "--peer",
            &pp.node,
            "--peer-credential",
        ] {
            args.push(a.into());
        }
        args.push(credential.into());
        Ok(Some(args))
    }

    /// Starts `omega run` for the placement; `None` when its peer is not ready yet.
    async fn boot(&mut self, w: &str, p: &Proposal, pl: &Placement) -> anyhow::Result<Option<Run>> {
        let dir = self
            .cfg
            .work
            .join(format!("{w}-{}", &hex::encode(pl.nonce)[..16]));
        let credential_file = dir.with_extension("credential");
        let peer_args = match &p.peer {
            Some(peer) => match self.peer_args(w, peer, &credential_file).await? {
                Some(a) => Some(a),
                None => return Ok(None),
            },
            None => None,
        };
        std::fs::create_dir_all(&self.cfg.work)?;
        let out = std::fs::File::create(dir.with_extension("stdout"))?;
        let err = std::fs::File::create(dir.with_extension("stderr"))?;
        let child = tokio::process::Command::new(&self.cfg.omega)
            .arg("run")
            .arg("--image")
            .arg(&self.cfg.image)
            // A real SEV-SNP launch when this host has a chip to name, else the simulated PSP.
            .arg(if self.cfg.amd.is_some() {
                "--sev-snp"
            } else {
                "--simulated-psp"
            })
            .arg("--vcpus")
            .arg(self.cfg.vcpus.to_string())
            .arg("--bundle")
            .arg(&p.bundle)
            .arg("--log-dir")
            .arg(&dir)
            .args(["--nonce", &hex::encode(pl.nonce), "--connect-timeout", "60"])
            .args(peer_args.iter().flatten())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .context("starting omega run")?;
        Ok(Some(Run {
            workload: w.into(),
            nonce: pl.nonce,
            dir,
            child,
            exit: None,
            key: None,
            credential_file: peer_args.map(|_| credential_file),
            admitted: false,
        }))
    }

    /// Submits run `i`'s evidence once the launcher wrote it: `platform` and `bundle`, and
    /// `peer` unless the run ended without it (a monitor without a peer key gets a
    /// credential that opens no channel).
    async fn submit(&mut self, i: usize) -> anyhow::Result<()> {
        let r = &self.runs[i];
        let ev = r.dir.join("evidence");
        let (platform, bundle, peer) = (
            ev.join("platform.bin"),
            ev.join("bundle.bin"),
            ev.join("peer.bin"),
        );
        if !platform.is_file() || !bundle.is_file() || !peer.is_file() && r.exit.is_none() {
            return Ok(());
        }
        let evidence = std::fs::read(&platform).context("the monitor's platform evidence")?;
        let bundle_evidence = std::fs::read(&bundle).context("the monitor's bundle evidence")?;
        let peer_evidence = std::fs::read(&peer).unwrap_or_default();
        let key = omega_evidence::Bundle::decode(&evidence)
            .map_err(|e| anyhow::anyhow!("own evidence: {e}"))?
            .monitor_key;
        let sub = Submission {
            node: self.cfg.id.clone(),
            nonce: hex::encode(r.nonce),
            evidence: hex::encode(&evidence),
            bundle_evidence: hex::encode(&bundle_evidence),
            peer_evidence: hex::encode(&peer_evidence),
            tee: None,
            amd: self.cfg.amd.clone(),
        };
        let w = self.runs[i].workload.clone();
        self.store.put_json("evidence", &w, &sub).await?;
        self.runs[i].key = Some(key);
        self.audit.log(
            "evidence-submitted",
            json!({ "workload": w, "node_key": hex::encode(key), "log_dir": self.runs[i].dir.display().to_string() }),
        );
        Ok(())
    }

    /// Run `i`'s launcher state, evidence and credential.
    async fn follow(&mut self, i: usize) -> anyhow::Result<()> {
        if self.runs[i].exit.is_none()
            && let Some(status) = self.runs[i].child.try_wait()?
        {
            self.runs[i].exit = Some(status);
            let r = &self.runs[i];
            if !status.success() {
                let err =
                    std::fs::read_to_string(r.dir.with_extension("stderr")).unwrap_or_default();
                let tail: Vec<&str> = err.lines().rev().take(5).collect();
                self.audit.log(
                    "boot-failed",
                    json!({ "workload": r.workload, "reason": format!("omega run exited with {status}: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | ")) }),
                );
            }
        }
        if self.runs[i].key.is_none() {
            self.submit(i).await?;
        }
        let r = &self.runs[i];
        let Some(key) = r.key.filter(|_| !r.admitted) else {
            return Ok(());
        };
        let Some(bytes) = self.store.get("credentials", &self.cfg.id).await? else {
            return Ok(());
        };
        match verify_presented(&bytes, &self.cfg.root, &self.cfg.fleet, crate::now()) {
            Ok(c) if c.node_key == key => {
                if let Some(file) = &self.runs[i].credential_file {
                    // Whole or not at all: the launcher sends the first bytes it reads.
                    let tmp = file.with_extension("credential.tmp");
                    std::fs::write(&tmp, &bytes)?;
                    std::fs::rename(&tmp, file)?;
                }
                self.runs[i].admitted = true;
                self.audit.log(
                    "admitted",
                    json!({ "workload": self.runs[i].workload, "serial": c.serial, "role": c.role, "not_after": c.not_after }),
                );
            }
            // An older credential (another boot's key) or one that does not verify.
            _ => {}
        }
        Ok(())
    }

    /// The key placements must verify under: the coordinator's, or under an owner root the
    /// key of the owner's endorsement the coordinator published (`endorsements/coordinator`:
    /// etcd is untrusted, so it counts only if the owner signed it, for this fleet, valid now).
    async fn placement_signer(&mut self) -> anyhow::Result<[u8; 32]> {
        let owner = match self.cfg.root {
            Root::Coordinator(key) => return Ok(key),
            Root::Owner(owner) => owner,
        };
        let bytes = self
            .store
            .get(ENDORSEMENTS, ENDORSEMENT_NAME)
            .await?
            .context("no owner endorsement published yet")?;
        let e = Endorsement::decode(&bytes, &owner)
            .map_err(|e| anyhow::anyhow!("the published endorsement: {e}"))?;
        if e.fleet_id != self.cfg.fleet || !e.valid_at(crate::now()) {
            bail!(
                "the published endorsement is for fleet {} until {}",
                e.fleet_id,
                e.not_after
            );
        }
        Ok(e.coordinator)
    }

    async fn tick(&mut self) -> anyhow::Result<()> {
        let proposals = self.store.list_json::<Proposal>("proposals").await?;
        let me = self.cfg.id.clone();
        let mut signer = None;
        for (w, p, _) in proposals.into_iter().filter(|(_, p, _)| p.node == me) {
            let Some(signed) = self.store.get("placements", &w).await? else {
                continue;
            };
            if signer.is_none() {
                signer = Some(self.placement_signer().await.map_err(|e| format!("{e:#}")));
            }
            let checked = signer
                .clone()
                .unwrap_or_else(|| Err("no signer".into()))
                .map_err(anyhow::Error::msg)
                .and_then(|key| Placement::verify(&signed, &key).map_err(anyhow::Error::from))
                .and_then(|pl| {
                    if pl.node_id != self.cfg.id || pl.workload != w {
                        // Signed for another node or an older epoch: not (yet) ours.
                        return Ok(None);
                    }
                    if pl.fleet_id != self.cfg.fleet || pl.role != p.role {
                        bail!("placement is for fleet {} role {}", pl.fleet_id, pl.role);
                    }
                    let (digest, _) = bundle_pins(std::path::Path::new(&p.bundle))?;
                    if digest != pl.bundle_digest {
                        bail!("the proposed bundle is not the one the coordinator signed");
                    }
                    Ok(Some(pl))
                });
            match checked {
                Ok(Some(pl)) if !self.booted.contains(&pl.nonce) => match self
                    .boot(&w, &p, &pl)
                    .await
                {
                    Ok(Some(run)) => {
                        self.booted.insert(pl.nonce);
                        self.audit.log(
                            "booting",
                            json!({ "workload": w, "epoch": p.epoch, "peer": p.peer }),
                        );
                        self.runs.push(run);
                    }
                    Ok(None) => {
                        if self.waiting.insert(w.clone()) {
                            self.audit
                                .log("waiting-for-peer", json!({ "workload": w, "peer": p.peer }));
                        }
                    }
                    Err(e) => {
                        self.booted.insert(pl.nonce);
                        self.audit.log(
                            "boot-failed",
                            json!({ "workload": w, "reason": format!("{e:#}") }),
                        );
                    }
                },
                Ok(_) => {}
                Err(e) => {
                    if self.refused.insert(signed) {
                        self.audit.log(
                            "placement-refused",
                            json!({ "workload": w, "reason": format!("{e:#}") }),
                        );
                    }
                }
            }
        }
        for i in 0..self.runs.len() {
            if let Err(e) = self.follow(i).await {
                self.audit.log(
                    "error",
                    json!({ "workload": self.runs[i].workload, "reason": format!("{e:#}") }),
                );
            }
        }
        // Ended and admitted: nothing more to follow.
        self.runs.retain(|r| r.exit.is_none() || !r.admitted);
        Ok(())
    }
}

/// Registers `id` under a lease of `ttl` seconds and keeps it alive from a task of its own
/// (so a long boot never lets it lapse), registering again when etcd lost it (a restart past
/// the TTL). Aborting the returned task lets the node die: its key vanishes after the TTL.
pub async fn hold_lease(
    mut store: Store,
    id: String,
    ttl: i64,
    audit: Audit,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let info = serde_json::to_vec(&NodeInfo {
        note: "omega-fleet node".into(),
    })?;
    let mut lease = store.lease_grant(ttl).await?;
    store.put_leased("nodes", &id, info.clone(), lease).await?;
    audit.log("registered", json!({ "lease": lease, "ttl": ttl }));
    Ok(tokio::spawn(async move {
        let every = Duration::from_millis((ttl as u64 * 1000 / 3).max(200));
        loop {
            tokio::time::sleep(every).await;
            if let Ok(true) = store.keep_alive_once(lease).await {
                continue;
            }
            if let Ok(l) = store.lease_grant(ttl).await
                && store
                    .put_leased("nodes", &id, info.clone(), l)
                    .await
                    .is_ok()
            {
                lease = l;
                audit.log("re-registered", json!({ "lease": l }));
            }
        }
    }))
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let audit = Audit::new(&format!("node:{}", cfg.id), cfg.audit.clone())?;
    let store = Store::new(&cfg.etcd, &cfg.fleet);
    let lease_audit = Audit::new(&format!("node:{}", cfg.id), cfg.audit.clone())?;
    let _lease = hold_lease(store.clone(), cfg.id.clone(), cfg.ttl, lease_audit).await?;
    let mut node = Node {
        store,
        audit,
        booted: HashSet::new(),
        refused: HashSet::new(),
        waiting: HashSet::new(),
        runs: Vec::new(),
        cfg,
    };
    loop {
        if let Err(e) = node.tick().await {
            node.audit
                .log("error", json!({ "reason": format!("{e:#}") }));
        }
        tokio::time::sleep(node.cfg.poll).await;
    }
}
