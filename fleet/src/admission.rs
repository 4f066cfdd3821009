//! Admission of a node: the coordinator's challenges (fresh nonces, one use, expiring) and the
//! check of a node's verified evidence against the fleet policy.
//!
//! The evidence's signature chain is verified by the host side (SNP by `measurements`, TDX
//! and Nitro by `omega-tee-verify`), which maps the outcome onto [`Attested`]. Everything the
//! fleet policy decides is checked here, including the binding: the evidence's bound data
//! (SNP REPORT_DATA, TDX REPORTDATA, Nitro `user_data`) must commit to the node's key and the
//! coordinator's nonce, so evidence answers this challenge and attests this key.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

use crate::policy::{FleetPolicy, ImageRule, SnpTcb};
use crate::{Tee, Time};

/// Domain tag of the direct binding (TDX, Nitro and other non-Omega guests).
pub const ADMISSION_TAG: &[u8] = b"omega/fleet/admission/v1\0";
/// Most challenges outstanding at once.
pub const MAX_PENDING: usize = 4096;
/// How many spent nonces are remembered to name a replay as such (older ones are refused
/// as unknown, which is as final).
pub const MAX_SPENT: usize = 4096;

/// The vendor's rating of a TDX platform's TCB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TcbRating {
    UpToDate,
    OutOfDate,
    /// Any other status (`SWHardeningNeeded`, `ConfigurationNeeded`, ...).
    Other,
}

/// A platform's TCB as its evidence states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tcb {
    /// SNP `REPORTED_TCB` (compared component by component with the policy's minimum).
    Snp(SnpTcb),
    /// TDX: Intel's rating from its TCB info.
    Rated(TcbRating),
    /// Nitro has no TCB rating.
    NotApplicable,
}

/// How the bound data commits to the node key and the nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binding {
    /// An Omega monitor's evidence: REPORT_DATA = `omega_evidence::report_data(nonce, root,
    /// monitor key)` with `root` the attested evidence tree; the node key is the monitor key.
    OmegaEvidence { root: [u8; 32] },
    /// Any other guest: bound data = [`direct_binding`]`(node key, nonce)`.
    Direct,
}

/// What the host side's verifiers established about a node's evidence: the input of the
/// admission check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    pub tee: Tee,
    /// SNP MEASUREMENT, TDX MRTD, Nitro PCR0.
    pub measurement: Vec<u8>,
    /// SNP REPORT_DATA, TDX REPORTDATA (64 bytes), Nitro `user_data`.
    pub report_data: Vec<u8>,
    pub tcb: Tcb,
    pub debug: bool,
    /// The node's Ed25519 key the credential will name.
    pub node_key: [u8; 32],
    pub binding: Binding,
    /// An Omega node: the manifest digest its attested `bundle` claim names (in the same
    /// evidence tree the binding covers). `None` for other guests.
    pub bundle: Option<[u8; 32]>,
    /// An Omega node: the peer key its attested `PeerKey` claim names (principal `peer`, in
    /// the same evidence tree the binding covers); `None` when not submitted. Not read for
    /// [`Binding::Direct`] guests, whose one bound key is their peer key too.
    pub peer_key: Option<[u8; 32]>,
}

/// SHA-512(tag ‖ node key[32] ‖ nonce[32]): what a non-Omega guest puts in its bound data.
pub fn direct_binding(node_key: &[u8; 32], nonce: &[u8; 32]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(ADMISSION_TAG);
    h.update(node_key);
    h.update(nonce);
    h.finalize().into()
}

/// The bound data `binding` requires for this key and nonce.
pub fn expected_report_data(binding: &Binding, node_key: &[u8; 32], nonce: &[u8; 32]) -> [u8; 64] {
    match binding {
        Binding::OmegaEvidence { root } => omega_evidence::report_data(nonce, root, node_key),
        Binding::Direct => direct_binding(node_key, nonce),
    }
}

/// Why a node was refused; [`Refusal::rule`] names the rule for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("nonce was never issued by this coordinator (forged or foreign challenge)")]
    NonceUnknown,
    #[error("nonce was already used (replayed admission)")]
    NonceReplayed,
    #[error("challenge expired at {expired_at}, now {now}")]
    NonceExpired { expired_at: Time, now: Time },
    #[error("no fleet policy is loaded")]
    NoPolicy,
    #[error("simulated PSP evidence refused: the policy does not allow_simulated")]
    SimulatedNotAllowed,
    #[error("{tee} guest is debuggable: its host can read it")]
    Debug { tee: &'static str },
    #[error("{tee} launch measurement is not allowed by the fleet policy")]
    Measurement { tee: &'static str },
    #[error("image {image:?} may not take role {role:?}")]
    Role { image: String, role: String },
    #[error("TCB below the policy's minimum: {0}")]
    Tcb(String),
    #[error(
        "bound data does not commit to this node key and nonce (swapped key, foreign or replayed evidence)"
    )]
    Binding,
    #[error("the node's attested bundle is not the placed one (or it attests none)")]
    Bundle,
    #[error("too many challenges outstanding")]
    Busy,
    #[error("nonce is already outstanding")]
    DuplicateNonce,
    #[error("the credential could not be formed")]
    Credential,
}

impl Refusal {
    /// A short stable name of the rule that refused (for logs and tests).
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::NonceUnknown => "nonce-unknown",
            Refusal::NonceReplayed => "nonce-replayed",
            Refusal::NonceExpired { .. } => "nonce-expired",
            Refusal::NoPolicy => "no-policy",
            Refusal::SimulatedNotAllowed => "simulated-not-allowed",
            Refusal::Debug { .. } => "debug",
            Refusal::Measurement { .. } => "measurement",
            Refusal::Role { .. } => "role",
            Refusal::Tcb(_) => "tcb",
            Refusal::Binding => "binding",
            Refusal::Bundle => "bundle",
            Refusal::Busy => "busy",
            Refusal::DuplicateNonce => "duplicate-nonce",
            Refusal::Credential => "credential",
        }
    }
}

/// One outstanding challenge and what it was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub nonce: [u8; 32],
    pub node_id: String,
    pub role: String,
    /// SHA-256 of the placed bundle's manifest.
    pub bundle_digest: [u8; 32],
    pub expires_at: Time,
}

/// The coordinator's outstanding challenges.
#[derive(Debug, Default)]
pub struct Challenges {
    pending: Vec<Pending>,
    spent: VecDeque<[u8; 32]>,
}

impl Challenges {
    /// Records a challenge with a nonce the caller drew from its RNG.
    pub fn issue(&mut self, p: Pending, now: Time) -> Result<(), Refusal> {
        self.pending.retain(|q| q.expires_at > now);
        if self.pending.iter().any(|q| q.nonce == p.nonce) || self.spent.contains(&p.nonce) {
            return Err(Refusal::DuplicateNonce);
        }
        if self.pending.len() >= MAX_PENDING {
            return Err(Refusal::Busy);
        }
        self.pending.push(p);
        Ok(())
    }

    /// Spends `nonce` (whatever the admission's outcome: one use).
    pub fn take(&mut self, nonce: &[u8; 32], now: Time) -> Result<Pending, Refusal> {
        let Some(i) = self.pending.iter().position(|q| q.nonce == *nonce) else {
            return Err(if self.spent.contains(nonce) {
                Refusal::NonceReplayed
            } else {
                Refusal::NonceUnknown
            });
        };
        let p = self.pending.swap_remove(i);
        if self.spent.len() >= MAX_SPENT {
            self.spent.pop_front();
        }
        self.spent.push_back(p.nonce);
        if now >= p.expires_at {
            return Err(Refusal::NonceExpired {
                expired_at: p.expires_at,
                now,
            });
        }
        Ok(p)
    }

    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }
}

fn tcb_shortfalls(min: &SnpTcb, got: &SnpTcb) -> String {
    let mut out = String::new();
    let mut cmp = |name: &str, actual: Option<u8>, min: u8| {
        let ok = actual.is_some_and(|a| a >= min) || min == 0;
        if !ok {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(name);
        }
    };
    cmp("bootloader", Some(got.bootloader), min.bootloader);
    cmp("tee", Some(got.tee), min.tee);
    cmp("snp", Some(got.snp), min.snp);
    cmp("microcode", Some(got.microcode), min.microcode);
    if let Some(f) = min.fmc {
        cmp("fmc", got.fmc, f);
    }
    out
}

/// Checks `a` against the policy for the challenge `pending` (its nonce, role and placed
/// bundle). Returns the image rule that admitted it.
pub fn check<'p>(
    policy: &'p FleetPolicy,
    a: &Attested,
    pending: &Pending,
) -> Result<&'p ImageRule, Refusal> {
    let (nonce, role) = (&pending.nonce, pending.role.as_str());
    if a.tee == Tee::Simulated && !policy.allow_simulated {
        return Err(Refusal::SimulatedNotAllowed);
    }
    // SECURITY: debuggable guests are never admitted, whatever the policy says.
    if a.debug {
        return Err(Refusal::Debug { tee: a.tee.name() });
    }
    let image = policy
        .image(a.tee, &a.measurement)
        .ok_or(Refusal::Measurement { tee: a.tee.name() })?;
    if !image.roles.iter().any(|r| r == role) {
        return Err(Refusal::Role {
            image: image.name.clone(),
            role: role.into(),
        });
    }
    match (&a.tcb, a.tee) {
        (Tcb::Snp(got), Tee::SevSnp | Tee::Simulated) => {
            let s = tcb_shortfalls(&policy.min_snp_tcb, got);
            if !s.is_empty() {
                return Err(Refusal::Tcb(s));
            }
        }
        (Tcb::Rated(TcbRating::UpToDate), Tee::Tdx) => {}
        (Tcb::Rated(_), Tee::Tdx) if policy.allow_tdx_out_of_date => {}
        (Tcb::Rated(r), Tee::Tdx) => {
            return Err(Refusal::Tcb(alloc::format!("TDX TCB rated {r:?}")));
        }
        (Tcb::NotApplicable, Tee::Nitro) => {}
        (t, tee) => {
            return Err(Refusal::Tcb(alloc::format!(
                "{t:?} is not a TCB statement of {}",
                tee.name()
            )));
        }
    }
    // SECURITY: the binding ties the evidence to this challenge and this key; constant
    // time is not needed (both values are public), strict equality is.
    let want = expected_report_data(&a.binding, &a.node_key, nonce);
    if a.report_data.as_slice() != want.as_slice() {
        return Err(Refusal::Binding);
    }
    // SECURITY: an Omega node must run the bundle the coordinator placed, not whatever its
    // host booted with the placement's nonce.
    if matches!(a.binding, Binding::OmegaEvidence { .. }) && a.bundle != Some(pending.bundle_digest)
    {
        return Err(Refusal::Bundle);
    }
    Ok(image)
}
