//! The coordinator **stand-in**: the trusted `omega_fleet::Coordinator` run in a host
//! process, reading proposals and evidence from etcd and writing signed placements and
//! credentials back. Its key, the owner key and the policy are files of this process; in the
//! target design they live in an attested Omega image (docs/fleet.md says what is missing).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use omega_fleet::Coordinator;
use omega_fleet::signed::SigningKey;
use serde_json::json;

use crate::attest::{SnpRoots, omega_node, omega_peer, platform_boot_id, tee_node};
use crate::audit::Audit;
use crate::source::{bundle_pins, hex32};
use crate::store::{Boot, Proposal, Status, Store, Submission};

/// Boots kept per workload in `boots/<workload>`.
pub const MAX_BOOTS: usize = 256;

pub struct Config {
    pub etcd: Vec<String>,
    pub fleet: String,
    pub key_seed: [u8; 32],
    pub owner: [u8; 32],
    /// The owner-signed policy to apply at start.
    pub policy: PathBuf,
    /// Where the highest applied policy version is kept across restarts.
    pub state: PathBuf,
    pub roots: SnpRoots,
    /// AWS's Nitro root certificate (DER); none: Nitro evidence is refused.
    pub nitro_root: Option<Vec<u8>>,
    /// TESTS ONLY: verify TDX and Nitro evidence as of this Unix time instead of now
    /// (recorded evidence's collateral and certificates expire).
    pub tee_as_of: Option<u64>,
    pub audit: Option<PathBuf>,
    pub poll: Duration,
}

fn status(
    node: &str,
    epoch: u64,
    nonce: &[u8; 32],
    state: &str,
    rule: &str,
    detail: String,
) -> Status {
    Status {
        node: node.into(),
        epoch,
        nonce: hex::encode(nonce),
        state: state.into(),
        rule: rule.into(),
        detail,
    }
}

pub struct Service {
    core: Coordinator,
    store: Store,
    audit: Audit,
    roots: SnpRoots,
    nitro_root: Option<Vec<u8>>,
    tee_as_of: Option<u64>,
    /// workload → (node, epoch, nonce) of the placement last signed (or refused).
    placed: HashMap<String, (String, u64, [u8; 32])>,
    /// workload → mod revision of the last evidence submission handled.
    handled: HashMap<String, i64>,
}

impl Service {
    pub fn new(cfg: &Config) -> anyhow::Result<Service> {
        let key = SigningKey::from_seed(cfg.key_seed).context("coordinator key seed is zero")?;
        let seen = std::fs::read_to_string(&cfg.state)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut core = Coordinator::new(key, cfg.owner, seen);
        let signed = std::fs::read(&cfg.policy)
            .with_context(|| format!("reading {}", cfg.policy.display()))?;
        let audit = Audit::new("coordinator", cfg.audit.clone())?;
        match core.update_policy(&signed) {
            Ok(p) => audit.log(
                "policy-applied",
                json!({ "fleet": p.fleet_id, "version": p.version }),
            ),
            Err(e) => {
                audit.log("policy-refused", json!({ "reason": e.to_string() }));
                anyhow::bail!("policy {}: {e}", cfg.policy.display());
            }
        }
        std::fs::write(&cfg.state, format!("{}\n", core.policy_seen()))
            .with_context(|| format!("writing {}", cfg.state.display()))?;
        audit.log("started", json!({ "public": hex::encode(core.public()) }));
        Ok(Service {
            core,
            store: Store::new(&cfg.etcd, &cfg.fleet),
            audit,
            roots: cfg.roots.clone(),
            nitro_root: cfg.nitro_root.clone(),
            tee_as_of: cfg.tee_as_of,
            placed: HashMap::new(),
            handled: HashMap::new(),
        })
    }

    pub fn public(&self) -> [u8; 32] {
        self.core.public()
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
        c: &omega_fleet::Credential,
        now: u64,
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
            admitted_at: now,
        });
        let excess = boots.len().saturating_sub(MAX_BOOTS);
        boots.drain(..excess);
        self.store.put_json("boots", w, &boots).await
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
            let nonce = crate::random32()?;
            self.placed
                .insert(w.clone(), (p.node.clone(), p.epoch, nonce));
            let signed = bundle_pins(std::path::Path::new(&p.bundle)).and_then(|(digest, pins)| {
                self.core
                    .place(&w, &p.node, &p.role, digest, &pins, nonce, crate::now())
                    .map_err(anyhow::Error::from)
            });
            match signed {
                Ok(bytes) => {
                    self.store.put("placements", &w, bytes).await?;
                    self.status(
                        &w,
                        status(&p.node, p.epoch, &nonce, "placed", "", String::new()),
                    )
                    .await?;
                    self.audit.log(
                        "placement-signed",
                        json!({ "workload": w, "node": p.node, "epoch": p.epoch, "nonce": hex::encode(nonce) }),
                    );
                }
                Err(e) => {
                    self.status(
                        &w,
                        status(
                            &p.node,
                            p.epoch,
                            &nonce,
                            "refused",
                            "placement",
                            e.to_string(),
                        ),
                    )
                    .await?;
                    self.audit.log(
                        "placement-refused",
                        json!({ "workload": w, "node": p.node, "reason": e.to_string() }),
                    );
                }
            }
        }
        Ok(())
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
                    ))
                });
            let (nonce, evidence, bundle_evidence, peer_evidence, claimed_node, tee) = match parsed
            {
                Ok(v) => v,
                Err(e) => {
                    self.audit.log(
                        "refused",
                        json!({ "workload": w, "rule": "malformed", "reason": e.to_string() }),
                    );
                    continue;
                }
            };
            let now = crate::now();
            let attested = match &tee {
                Some(t) => tee_node(t, self.nitro_root.as_deref(), self.tee_as_of.unwrap_or(now)),
                None => omega_node(&evidence, &bundle_evidence, &nonce, &self.roots).and_then(
                    |mut a| {
                        if !peer_evidence.is_empty() {
                            omega_peer(&mut a, &peer_evidence, &nonce)?;
                        }
                        Ok(a)
                    },
                ),
            };
            let verified_us = started.elapsed().as_micros();
            let outcome = match attested {
                Ok(a) => self
                    .core
                    .admit(&nonce, &a, now)
                    .map_err(|r| (r.rule(), r.to_string())),
                Err(e) => Err(match self.core.spend(&nonce, now) {
                    Ok(()) => ("evidence", format!("{e:#}")),
                    Err(r) => (r.rule(), format!("{r}; and {e:#}")),
                }),
            };
            let total_us = started.elapsed().as_micros();
            // The placement this submission answered, if the nonce is the current one.
            let current = self
                .placed
                .get(&w)
                .filter(|(_, _, n)| *n == nonce)
                .map(|(node, epoch, _)| (node.clone(), *epoch));
            match outcome {
                Ok(adm) => {
                    let c = &adm.credential;
                    self.store
                        .put("credentials", &c.node_id, adm.signed.clone())
                        .await?;
                    let boot_id = platform_boot_id(&evidence, &nonce).map(hex::encode);
                    if let Some((node, epoch)) = &current {
                        self.status(
                            &w,
                            status(node, *epoch, &nonce, "admitted", "", adm.image.clone()),
                        )
                        .await?;
                        self.record_boot(&w, node, *epoch, boot_id.as_deref(), c, now)
                            .await?;
                    }
                    self.audit.log(
                        "admitted",
                        json!({
                            "workload": w, "node": c.node_id, "role": c.role, "image": adm.image,
                            "boot_id": boot_id,
                            "tee": c.tee.name(), "node_key": hex::encode(c.node_key),
                            "serial": c.serial, "not_after": c.not_after,
                            "verify_us": verified_us, "admission_us": total_us,
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
                            status(node, *epoch, &nonce, "refused", rule, reason.clone()),
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

    pub async fn tick(&mut self) -> anyhow::Result<()> {
        self.place().await?;
        self.admit().await
    }
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let mut s = Service::new(&cfg)?;
    loop {
        if let Err(e) = s.tick().await {
            s.audit.log("error", json!({ "reason": format!("{e:#}") }));
        }
        tokio::time::sleep(cfg.poll).await;
    }
}
