//! Where the coordinator's trusted logic runs: one [`Backend`] trait, the request/answer
//! service of `omega_fleet::service` behind it, two implementations.
//!
//! * [`Local`]: the service in this process (the host **stand-in**): its key is a file, so
//!   nobody can check what signs with it.
//! * [`crate::relay::InImage`]: the service in an attested Omega image, reached over the
//!   launcher's Fleet stream relay (`omega run --fleet-connect`); this process only carries
//!   requests and answers.
//!
//! The etcd loop ([`crate::coordinator::Host`]) speaks only requests and answers to either,
//! so placement (the bundle's bytes, hashed by the coordinator) and an Omega node's
//! admission (its evidence, verified by the coordinator) are done one way for both.

use std::future::Future;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Instant;

use anyhow::Context as _;
use omega_fleet::service::{Request, Response, Service, TrustedRoots};
use omega_fleet::signed::SigningKey;

/// The coordinator's identity once it runs, for the `started` audit line.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The coordinator's Ed25519 key: what its placements and credentials verify under.
    pub public: [u8; 32],
    /// More fields for the `started` line (an object).
    pub fields: serde_json::Value,
}

/// A coordinator that answers [`Request`]s.
pub trait Backend {
    /// Sends `req` and returns the coordinator's answer to it (the same id, a kind that fits
    /// the request). An `Err` means the coordinator can no longer be reached or trusted to
    /// answer (a broken relay): the caller stops.
    fn call(&mut self, req: &Request) -> impl Future<Output = anyhow::Result<Response>> + Send;

    /// Called once the first policy was applied; returns the coordinator's identity.
    fn started(&mut self) -> impl Future<Output = anyhow::Result<Identity>> + Send;

    /// Stops the coordinator (this process is stopping): what became of it, `None` when
    /// there is nothing to stop.
    fn shutdown(self) -> impl Future<Output = Option<String>> + Send
    where
        Self: Sized;
}

/// A family's name, ARK (PEM) and ASK (PEM).
type AmdRoot = (&'static str, &'static [u8], &'static [u8]);

/// AMD's roots per family as the service takes them: `'static`, from `measurements`.
static AMD_ROOTS: LazyLock<[AmdRoot; 3]> =
    LazyLock::new(|| measurements::Family::ALL.map(|f| (f.name(), f.ark_pem(), f.ask_pem())));
static AMD_ARKS: LazyLock<[(&'static str, &'static [u8]); 3]> =
    LazyLock::new(measurements::verify::amd_arks);

/// The roots an in-process coordinator checks Omega nodes' SNP reports under: AMD's for
/// every family, and the simulated PSP's lab chain when `lab_root` (tests; still admitted
/// only under a policy's `allow_simulated`).
pub fn trusted_roots(lab_root: bool) -> TrustedRoots {
    TrustedRoots {
        lab: lab_root.then_some((
            omega_sim_psp::LAB_ARK_PEM,
            omega_sim_psp::LAB_ASK_PEM,
            omega_sim_psp::LAB_VCEK_DER,
        )),
        amd: &*AMD_ROOTS,
        amd_arks: &*AMD_ARKS,
    }
}

/// What the in-process coordinator needs.
pub struct LocalConfig {
    /// The coordinator's key seed (`--key`).
    pub key_seed: [u8; 32],
    /// The policy owner's key (`--owner`).
    pub owner: [u8; 32],
    /// No policy below this version is applied (`--min-policy-version`).
    pub min_policy_version: u64,
    /// Where the highest applied policy version is kept across restarts (`--state`): a
    /// restarted coordinator applies only a newer policy.
    pub state: Option<PathBuf>,
    /// Whether the lab chain is among the roots (`--lab-root`).
    pub lab_root: bool,
}

/// `omega_fleet::service::Service` in this process.
pub struct Local {
    service: Service,
    /// The service's monotonic clock starts here.
    boot: Instant,
    state: Option<PathBuf>,
}

impl Local {
    pub fn new(cfg: &LocalConfig) -> anyhow::Result<Local> {
        let key = SigningKey::from_seed(cfg.key_seed).context("coordinator key seed is zero")?;
        let seen: u64 = cfg
            .state
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let floor = cfg.min_policy_version.max(seen.saturating_add(1));
        Ok(Local {
            service: Service::new(key, cfg.owner, floor, trusted_roots(cfg.lab_root)),
            boot: Instant::now(),
            state: cfg.state.clone(),
        })
    }

    /// The service's monotonic clock (milliseconds since this backend was made).
    pub fn uptime_ms(&self) -> u64 {
        u64::try_from(self.boot.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The coordinator's Unix time: anchored by the applied policy's `issued_at`, not the
    /// host clock (`omega_fleet::service::Service::now`); `None` before a policy.
    pub fn now(&self) -> Option<u64> {
        self.service.now(self.uptime_ms())
    }

    pub fn service_mut(&mut self) -> &mut Service {
        &mut self.service
    }

    pub fn public(&self) -> [u8; 32] {
        self.service.public()
    }
}

impl Backend for Local {
    fn call(&mut self, req: &Request) -> impl Future<Output = anyhow::Result<Response>> + Send {
        // The same bytes an in-image coordinator is sent: encoded, then decoded strictly by
        // the service (its size limits included).
        let body = omega_fleet::service::encode(req);
        let answer = crate::random32().map(|nonce| {
            let uptime = self.uptime_ms();
            self.service.handle(&body, uptime, nonce).response
        });
        std::future::ready(answer)
    }

    fn started(&mut self) -> impl Future<Output = anyhow::Result<Identity>> + Send {
        let seen = self.service.core_mut().policy_seen();
        let written = match &self.state {
            Some(p) => std::fs::write(p, format!("{seen}\n"))
                .with_context(|| format!("writing {}", p.display())),
            None => Ok(()),
        };
        let public = self.public();
        std::future::ready(written.map(|()| Identity {
            public,
            fields: serde_json::json!({ "in_image": false }),
        }))
    }

    fn shutdown(self) -> impl Future<Output = Option<String>> + Send {
        std::future::ready(None)
    }
}
