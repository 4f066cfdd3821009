//! The untrusted scheduler: keeps desired workloads and placements in etcd, places each
//! desired workload on a live node (a node is live while its etcd lease is), re-places a
//! workload whose node died, and leaves alone nodes the coordinator refused. It signs
//! nothing and nothing it writes is believed: the coordinator signs (or refuses) each
//! proposal, and nodes boot only coordinator-signed placements.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use crate::audit::Audit;
use crate::store::{Desired, Proposal, Status, Store};

/// Admission rules after which a node is not used again (its image or platform is wrong).
const QUARANTINE: [&str; 8] = [
    "bundle",
    "measurement",
    "debug",
    "tcb",
    "binding",
    "role",
    "simulated-not-allowed",
    "evidence",
];

pub struct Scheduler {
    store: Store,
    audit: Audit,
}

/// What one pass decided: workload → (node, epoch, restarted from).
pub type Moves = Vec<(String, String, u64, Option<String>)>;

impl Scheduler {
    pub fn new(store: Store, audit: Audit) -> Scheduler {
        Scheduler { store, audit }
    }

    /// One scheduling pass.
    pub async fn tick(&mut self) -> anyhow::Result<Moves> {
        let desired: BTreeMap<String, Desired> = self
            .store
            .list_json::<Desired>("desired")
            .await?
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect();
        let live: BTreeSet<String> = self
            .store
            .list("nodes")
            .await?
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        let proposals: BTreeMap<String, Proposal> = self
            .store
            .list_json::<Proposal>("proposals")
            .await?
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect();
        let status: BTreeMap<String, Status> = self
            .store
            .list_json::<Status>("status")
            .await?
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect();
        let quarantined: BTreeSet<&str> = status
            .values()
            .filter(|s| s.state == "refused" && QUARANTINE.contains(&s.rule.as_str()))
            .map(|s| s.node.as_str())
            .collect();
        let mut busy: BTreeSet<String> = proposals
            .values()
            .filter(|p| live.contains(&p.node))
            .map(|p| p.node.clone())
            .collect();
        let mut moves = Vec::new();
        for (w, d) in &desired {
            let (epoch, from) = match proposals.get(w) {
                // Placed on a live node (admitted, waiting, or refused and parked there).
                Some(p) if live.contains(&p.node) => continue,
                Some(p) => (p.epoch.saturating_add(1), Some(p.node.clone())),
                None => (1, None),
            };
            let Some(node) = live
                .iter()
                .find(|n| !busy.contains(*n) && !quarantined.contains(n.as_str()))
                .cloned()
            else {
                continue;
            };
            busy.insert(node.clone());
            let p = Proposal {
                node: node.clone(),
                bundle: d.bundle.clone(),
                role: d.role.clone(),
                epoch,
                peer: d.peer.clone(),
            };
            self.store.put_json("proposals", w, &p).await?;
            self.audit.log(
                if from.is_some() {
                    "restarted"
                } else {
                    "proposed"
                },
                json!({ "workload": w, "node": node, "epoch": epoch, "from": from }),
            );
            moves.push((w.clone(), node, epoch, from));
        }
        Ok(moves)
    }
}

pub async fn run(store: Store, audit: Audit, poll: Duration) -> anyhow::Result<()> {
    let mut s = Scheduler::new(store, audit);
    loop {
        if let Err(e) = s.tick().await {
            s.audit.log("error", json!({ "reason": format!("{e:#}") }));
        }
        tokio::time::sleep(poll).await;
    }
}
