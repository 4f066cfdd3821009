//! The fleet's state in etcd (untrusted storage: everything that matters in it is signed by
//! the coordinator or checked against what the coordinator signed). Key layout under
//! `/omega-fleet/<fleet>/`:
//!
//! | key | written by | value |
//! |---|---|---|
//! | `desired/<workload>` | operator | [`Desired`] (JSON) |
//! | `nodes/<node>` | node agent, under its lease | [`NodeInfo`] (JSON) |
//! | `proposals/<workload>` | scheduler | [`Proposal`] (JSON) |
//! | `placements/<workload>` | coordinator | signed `omega_fleet::Placement` |
//! | `evidence/<workload>` | node agent | [`Submission`] (JSON) |
//! | `credentials/<node>` | coordinator | signed `omega_fleet::Credential` |
//! | `links/<workload>` | node agent | the address its launcher relays the peer channel on (`--peer-listen`) |
//! | `status/<workload>` | coordinator | [`Status`] (JSON) |
//!
//! Every operation retries through etcd outages (a restart under load): callers see
//! `Err` only for what retrying cannot fix.

use std::time::Duration;

use anyhow::anyhow;
use etcd_client::{Client, GetOptions, PutOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// Bundle directory (a path every node and the coordinator can read).
    pub bundle: String,
    pub role: String,
    /// The workload this one opens a peer channel with (each names the other); its
    /// monitor's authority is the coordinator key in the bundle's manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Free-form, opaque metrics (nothing sensitive).
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub node: String,
    pub bundle: String,
    pub role: String,
    /// Grows each time the workload is (re)placed.
    pub epoch: u64,
    /// [`Desired::peer`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub node: String,
    /// The placement's nonce (hex) the evidence answers.
    pub nonce: String,
    /// The node's `platform` evidence (hex of the postcard bundle).
    pub evidence: String,
    /// The node's `bundle` evidence (hex), from the same boot.
    #[serde(default)]
    pub bundle_evidence: String,
    /// The node's `peer` evidence (hex; empty: none), from the same boot: its `PeerKey`
    /// claim becomes the credential's channel key.
    #[serde(default)]
    pub peer_evidence: String,
    /// A guest that is not an Omega image (TDX, Nitro): its own evidence instead of the
    /// Omega fields above, which stay empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee: Option<TeeSubmission>,
    /// An Omega node on a real SEV-SNP host: its report is checked under AMD's roots of
    /// this family with the chip's VCEK. `None`: the simulated PSP's lab chain, which only
    /// a coordinator trusting the lab root accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amd: Option<AmdChain>,
}

/// The chip's VCEK (DER, hex) as its host fetched it from AMD's KDS, and the processor
/// family (`milan`, `genoa`, `turin`) whose ARK and ASK the coordinator holds itself: the
/// VCEK counts only once its chain to them verifies, so a host cannot choose its way in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmdChain {
    pub family: String,
    pub vcek: String,
}

impl AmdChain {
    /// The chain a node on this host submits: `family` must be one the coordinator knows,
    /// `vcek` a DER file no larger than the coordinator takes.
    pub fn read(vcek: &std::path::Path, family: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let family: measurements::Family = family
            .parse()
            .map_err(|e| anyhow::anyhow!("--family: {e}"))?;
        let der = std::fs::read(vcek).with_context(|| format!("reading {}", vcek.display()))?;
        if der.is_empty() || der.len() > omega_fleet::service::MAX_EVIDENCE {
            anyhow::bail!("{}: not a VCEK (size {})", vcek.display(), der.len());
        }
        Ok(AmdChain {
            family: family.name().to_string(),
            vcek: hex::encode(der),
        })
    }
}

/// A TDX quote (with its PCS collateral) or an AWS Nitro attestation document from a guest
/// that claims `node_key`: the data it binds (TDX REPORTDATA, Nitro `user_data`) must be
/// `omega_fleet::admission::direct_binding(node_key, nonce)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeeSubmission {
    /// `tdx` or `nitro`.
    pub kind: String,
    /// The quote or the document (hex).
    pub evidence: String,
    /// TDX: the collateral JSON (hex); Nitro: empty.
    #[serde(default)]
    pub collateral: String,
    /// The guest's Ed25519 key (hex): the credential's node key and channel key.
    pub node_key: String,
}

/// One admitted boot of a workload, as the coordinator records it: `boots/<workload>` holds
/// them in admission order, so a verifier follows one workload across restarts from each
/// boot's log (checkpoint origin `omega-monitor/<boot_id>`) to the next boot's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot {
    pub node: String,
    /// The placement epoch (1, then one more per restart).
    pub epoch: u64,
    /// The monitor's boot id (hex), from its attested `platform` claim.
    pub boot_id: String,
    /// The attested monitor key (hex): the key of this boot's evidence.
    pub node_key: String,
    /// The credential's serial.
    pub serial: u64,
    pub admitted_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub epoch: u64,
    /// The placement's nonce (hex).
    pub nonce: String,
    /// `placed`, `admitted` or `refused`.
    pub state: String,
    pub rule: String,
    pub detail: String,
}

/// A reconnecting etcd client scoped to one fleet's prefix.
#[derive(Clone)]
pub struct Store {
    endpoints: Vec<String>,
    prefix: String,
    client: Option<Client>,
}

const RETRY: Duration = Duration::from_millis(200);
/// How long one operation keeps retrying through an outage.
pub const OUTAGE: Duration = Duration::from_secs(60);

impl Store {
    pub fn new(endpoints: &[String], fleet: &str) -> Store {
        Store {
            endpoints: endpoints.to_vec(),
            prefix: format!("/omega-fleet/{fleet}/"),
            client: None,
        }
    }

    pub fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}/{name}", self.prefix)
    }

    async fn client(&mut self) -> anyhow::Result<Client> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        let c = Client::connect(&self.endpoints, Some(opts)).await?;
        self.client = Some(c.clone());
        Ok(c)
    }

    /// Runs `op` until it succeeds or the outage lasts longer than [`OUTAGE`].
    async fn retry<T, F, Fut>(&mut self, what: &str, mut op: F) -> anyhow::Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let start = std::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            let r = match self.client().await {
                Ok(c) => op(c).await.map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            match r {
                Ok(v) => return Ok(v),
                Err(e) if start.elapsed() < OUTAGE => {
                    if attempt == 0 {
                        eprintln!(
                            "omega-fleet: etcd {what} failed ({e}); retrying for up to {} s",
                            OUTAGE.as_secs()
                        );
                    }
                    attempt = attempt.saturating_add(1);
                    // A broken channel is rebuilt on the next try.
                    self.client = None;
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => return Err(anyhow!("etcd {what}: {e}")),
            }
        }
    }

    pub async fn put(&mut self, kind: &str, name: &str, value: Vec<u8>) -> anyhow::Result<()> {
        let key = self.key(kind, name);
        self.retry("put", |mut c| {
            let (k, v) = (key.clone(), value.clone());
            async move { c.put(k, v, None).await.map(|_| ()) }
        })
        .await
    }

    pub async fn put_json<T: Serialize>(
        &mut self,
        kind: &str,
        name: &str,
        v: &T,
    ) -> anyhow::Result<()> {
        self.put(kind, name, serde_json::to_vec(v)?).await
    }

    /// Puts under a lease (the key vanishes when the lease expires).
    pub async fn put_leased(
        &mut self,
        kind: &str,
        name: &str,
        value: Vec<u8>,
        lease: i64,
    ) -> anyhow::Result<()> {
        let key = self.key(kind, name);
        self.retry("put", |mut c| {
            let (k, v) = (key.clone(), value.clone());
            async move {
                c.put(k, v, Some(PutOptions::new().with_lease(lease)))
                    .await
                    .map(|_| ())
            }
        })
        .await
    }

    pub async fn delete(&mut self, kind: &str, name: &str) -> anyhow::Result<()> {
        let key = self.key(kind, name);
        self.retry("delete", |mut c| {
            let k = key.clone();
            async move { c.delete(k, None).await.map(|_| ()) }
        })
        .await
    }

    /// Every `(name, value, mod_revision)` under `kind/`.
    pub async fn list(&mut self, kind: &str) -> anyhow::Result<Vec<(String, Vec<u8>, i64)>> {
        let prefix = self.key(kind, "");
        let kvs = self
            .retry("get", |mut c| {
                let p = prefix.clone();
                async move {
                    c.get(p, Some(GetOptions::new().with_prefix()))
                        .await
                        .map(|r| {
                            r.kvs()
                                .iter()
                                .map(|kv| {
                                    (kv.key().to_vec(), kv.value().to_vec(), kv.mod_revision())
                                })
                                .collect::<Vec<_>>()
                        })
                }
            })
            .await?;
        Ok(kvs
            .into_iter()
            .filter_map(|(k, v, r)| {
                let k = String::from_utf8(k).ok()?;
                Some((k.strip_prefix(&prefix)?.to_string(), v, r))
            })
            .collect())
    }

    /// Parsed JSON values under `kind/` (entries that do not parse are skipped: the store
    /// is untrusted).
    pub async fn list_json<T: for<'de> Deserialize<'de>>(
        &mut self,
        kind: &str,
    ) -> anyhow::Result<Vec<(String, T, i64)>> {
        Ok(self
            .list(kind)
            .await?
            .into_iter()
            .filter_map(|(k, v, r)| Some((k, serde_json::from_slice(&v).ok()?, r)))
            .collect())
    }

    pub async fn get(&mut self, kind: &str, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let key = self.key(kind, name);
        self.retry("get", |mut c| {
            let k = key.clone();
            async move {
                c.get(k, None)
                    .await
                    .map(|r| r.kvs().first().map(|kv| kv.value().to_vec()))
            }
        })
        .await
    }

    pub async fn lease_grant(&mut self, ttl: i64) -> anyhow::Result<i64> {
        self.retry("lease grant", |mut c| async move {
            c.lease_grant(ttl, None).await.map(|r| r.id())
        })
        .await
    }

    /// One keep-alive of `lease`; false when etcd says the lease is gone.
    pub async fn keep_alive_once(&mut self, lease: i64) -> anyhow::Result<bool> {
        self.retry("lease keep-alive", |mut c| async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            match stream.message().await? {
                Some(r) => Ok(r.ttl() > 0),
                None => Ok(false),
            }
        })
        .await
    }
}
