//! The node agent (untrusted host side of one node): holds the node's etcd lease, boots each
//! coordinator-signed placement naming this node with `omega run` (the coordinator's nonce as
//! the verifier's challenge), submits the monitor's `platform` evidence, and checks the
//! credential the coordinator returns. A placement that does not verify under the
//! coordinator's key is refused and logged, never booted.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use omega_fleet::{Credential, Placement};
use serde_json::json;

use crate::audit::Audit;
use crate::source::bundle_pins;
use crate::store::{NodeInfo, Proposal, Store, Submission};

pub struct Config {
    pub etcd: Vec<String>,
    pub fleet: String,
    pub id: String,
    pub coordinator: [u8; 32],
    /// The `omega` launcher.
    pub omega: PathBuf,
    pub image: PathBuf,
    pub vcpus: u32,
    /// One `--log-dir` per boot under it.
    pub work: PathBuf,
    pub audit: Option<PathBuf>,
    pub ttl: i64,
    pub poll: Duration,
}

struct Node {
    cfg: Config,
    store: Store,
    audit: Audit,
    /// Nonces of placements already booted (each is booted once).
    booted: HashSet<[u8; 32]>,
    /// Signed placements already refused (logged once).
    refused: HashSet<Vec<u8>>,
    /// Node key (monitor key) of the last boot, whose credential is awaited.
    awaiting: Option<[u8; 32]>,
}

impl Node {
    async fn boot(&mut self, w: &str, p: &Proposal, pl: &Placement) -> anyhow::Result<()> {
        let dir = self
            .cfg
            .work
            .join(format!("{w}-{}", &hex::encode(pl.nonce)[..16]));
        let out = tokio::process::Command::new(&self.cfg.omega)
            .arg("run")
            .arg("--image")
            .arg(&self.cfg.image)
            .arg("--simulated-psp")
            .arg("--vcpus")
            .arg(self.cfg.vcpus.to_string())
            .arg("--bundle")
            .arg(&p.bundle)
            .arg("--log-dir")
            .arg(&dir)
            .args(["--nonce", &hex::encode(pl.nonce), "--connect-timeout", "60"])
            .kill_on_drop(true)
            .output()
            .await
            .context("starting omega run")?;
        if !out.status.success() {
            bail!(
                "omega run exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let evidence = std::fs::read(dir.join("evidence/platform.bin"))
            .context("the monitor's platform evidence")?;
        let bundle_evidence = std::fs::read(dir.join("evidence/bundle.bin"))
            .context("the monitor's bundle evidence")?;
        // Optional: a monitor without a peer key gets a credential that opens no channel.
        let peer_evidence = std::fs::read(dir.join("evidence/peer.bin")).unwrap_or_default();
        let key = omega_evidence::Bundle::decode(&evidence)
            .map_err(|e| anyhow::anyhow!("own evidence: {e}"))?
            .monitor_key;
        let sub = Submission {
            node: self.cfg.id.clone(),
            nonce: hex::encode(pl.nonce),
            evidence: hex::encode(&evidence),
            bundle_evidence: hex::encode(&bundle_evidence),
            peer_evidence: hex::encode(&peer_evidence),
        };
        self.store.put_json("evidence", w, &sub).await?;
        self.awaiting = Some(key);
        self.audit.log(
            "evidence-submitted",
            json!({ "workload": w, "node_key": hex::encode(key), "log_dir": dir.display().to_string() }),
        );
        Ok(())
    }

    async fn tick(&mut self) -> anyhow::Result<()> {
        let proposals = self.store.list_json::<Proposal>("proposals").await?;
        let me = self.cfg.id.clone();
        for (w, p, _) in proposals.into_iter().filter(|(_, p, _)| p.node == me) {
            let Some(signed) = self.store.get("placements", &w).await? else {
                continue;
            };
            let checked = Placement::verify(&signed, &self.cfg.coordinator)
                .map_err(anyhow::Error::from)
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
                Ok(Some(pl)) if !self.booted.contains(&pl.nonce) => {
                    self.booted.insert(pl.nonce);
                    self.audit
                        .log("booting", json!({ "workload": w, "epoch": p.epoch }));
                    if let Err(e) = self.boot(&w, &p, &pl).await {
                        self.audit.log(
                            "boot-failed",
                            json!({ "workload": w, "reason": format!("{e:#}") }),
                        );
                    }
                }
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
        if let Some(key) = self.awaiting
            && let Some(bytes) = self.store.get("credentials", &self.cfg.id).await?
        {
            match Credential::verify(&bytes, &self.cfg.coordinator, crate::now()) {
                Ok(c) if c.node_key == key => {
                    self.awaiting = None;
                    self.audit.log(
                        "admitted",
                        json!({ "serial": c.serial, "role": c.role, "not_after": c.not_after }),
                    );
                }
                // An older credential (another boot's key) or one that does not verify.
                _ => {}
            }
        }
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
        awaiting: None,
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
