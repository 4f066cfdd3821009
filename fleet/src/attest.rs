//! An Omega node's evidence → the admission input ([`Attested`]), without std, so the host
//! stand-in and the in-image coordinator (docs/fleet.md) run the same checks: the evidence
//! tree for the coordinator's nonce (`omega_evidence::verify`), the SNP report under the
//! roots the coordinator trusts (`omega_snp_verify`), the platform claim agreeing with those
//! roots, and the `bundle` and `peer` leaves of the same attested tree. The admission
//! decision itself (measurement, TCB, debug, binding) is [`crate::admission::check`], which
//! recomputes the binding.
//!
//! Errors are readable reasons listing every failed check; the coordinator refuses with the
//! `evidence` rule and that reason.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use omega_evidence::{Bundle, Claim, Options, Outcome};
use omega_snp_verify::{Roots, VerifyOptions};

use crate::policy::SnpTcb;
use crate::{Attested, Binding, Tcb, Tee};

/// The SNP chain an Omega node's report is checked under: the roots, the chip's VCEK (DER),
/// and what a report verified so stands for (`SevSnp` under AMD's roots, `Simulated` under
/// the simulated PSP's lab root).
#[derive(Debug, Clone, Copy)]
pub struct SnpChain<'a> {
    pub roots: Roots<'a>,
    pub vcek: &'a [u8],
    pub tee: Tee,
}

impl SnpChain<'_> {
    /// The `tee` the monitor's platform claim must name under these roots.
    fn claim_tee(&self) -> &'static str {
        if self.tee == Tee::Simulated {
            omega_evidence::TEE_SIMULATED
        } else {
            omega_evidence::TEE_SEV_SNP
        }
    }
}

/// An Omega node's `platform` evidence (postcard `omega_evidence::Bundle`), verified for the
/// coordinator's `nonce`: the evidence tree, REPORT_DATA and the report's chain. The node key
/// is the evidence's monitor key (whose hash REPORT_DATA binds with the nonce).
pub fn omega_platform(
    evidence: &[u8],
    nonce: &[u8; 32],
    chain: &SnpChain<'_>,
) -> Result<Attested, String> {
    let (bundle, outcome) = verified_evidence(evidence, "platform", nonce, "evidence")?;
    let report = outcome
        .report
        .as_deref()
        .ok_or_else(|| String::from("evidence has no report"))?;
    // The measurement is the policy's to check (any of its allowed digests), TCB too.
    let vo = omega_snp_verify::verify_report(
        report,
        chain.vcek,
        &chain.roots,
        &VerifyOptions {
            expect_report_data: Some(outcome.expected_report_data),
            ..Default::default()
        },
    );
    if !vo.verified() {
        let why = reasons(vo.failures().map(|c| (c.name, c.message.as_str())));
        return Err(format!("SNP report refused: {why}"));
    }
    // SECURITY: the monitor's own platform claim must agree with the roots that verified it.
    match &outcome.claim {
        Some(Claim::Platform { tee: claimed, .. }) if claimed == chain.claim_tee() => {}
        other => {
            return Err(format!(
                "platform claim {other:?} does not match a report verified as {}",
                chain.claim_tee()
            ));
        }
    }
    let r = vo
        .report
        .as_ref()
        .ok_or_else(|| String::from("no parsed report"))?;
    Ok(Attested {
        tee: chain.tee,
        measurement: r.measurement.to_vec(),
        report_data: r.report_data.to_vec(),
        tcb: Tcb::Snp(SnpTcb {
            bootloader: r.reported_tcb.bootloader,
            tee: r.reported_tcb.tee,
            snp: r.reported_tcb.snp,
            microcode: r.reported_tcb.microcode,
            fmc: r.reported_tcb.fmc,
        }),
        debug: r.policy.debug,
        node_key: bundle.monitor_key,
        binding: Binding::OmegaEvidence {
            root: bundle.base_root,
        },
        bundle: None,
        peer_key: None,
    })
}

/// An Omega node's `platform` evidence ([`omega_platform`]) and its `bundle` evidence: the
/// `bundle` leaf must be in the same attested tree (same monitor key, base root and nonce),
/// and its claim gives [`Attested::bundle`], the manifest digest the admission compares with
/// the placement's.
pub fn omega_node(
    platform: &[u8],
    bundle_evidence: &[u8],
    nonce: &[u8; 32],
    chain: &SnpChain<'_>,
) -> Result<Attested, String> {
    let mut a = omega_platform(platform, nonce, chain)?;
    let outcome = leaf_evidence(&a, bundle_evidence, "bundle", nonce, "bundle evidence")?;
    match outcome.claim {
        Some(Claim::Bundle { manifest_digest }) => a.bundle = Some(manifest_digest),
        other => return Err(format!("bundle evidence claims {other:?}")),
    }
    Ok(a)
}

/// An Omega node's `peer` evidence, checked like the `bundle` evidence ([`omega_node`]): in
/// the same attested tree as `a`'s platform evidence; its `PeerKey` claim gives
/// [`Attested::peer_key`], the key the node's credential lets sign channel handshakes.
pub fn omega_peer(a: &mut Attested, peer_evidence: &[u8], nonce: &[u8; 32]) -> Result<(), String> {
    let outcome = leaf_evidence(
        a,
        peer_evidence,
        omega_evidence::PEER_PRINCIPAL,
        nonce,
        "peer evidence",
    )?;
    match outcome.claim {
        Some(Claim::PeerKey { public, .. }) => a.peer_key = Some(public),
        other => return Err(format!("peer evidence claims {other:?}")),
    }
    Ok(())
}

/// The boot id the `platform` evidence's claim names, if it verifies for `nonce` (called on
/// evidence [`omega_platform`] already accepted): the monitor boot whose log an admission
/// covers (its checkpoints' origin is `omega-monitor/<boot id>`).
pub fn platform_boot_id(evidence: &[u8], nonce: &[u8; 32]) -> Option<[u8; 16]> {
    let b = Bundle::decode(evidence).ok()?;
    let o = verify_for(&b, "platform", nonce);
    match o.claim {
        Some(Claim::Platform { boot_id, .. }) if o.verified() => Some(boot_id),
        _ => None,
    }
}

/// The evidence checks (tree, claim, binding, freshness) of `principal`'s `bundle` for the
/// coordinator's `nonce`; unattested evidence is refused.
fn verify_for(bundle: &Bundle, principal: &str, nonce: &[u8; 32]) -> Outcome {
    omega_evidence::verify(
        bundle,
        &Options {
            principal,
            nonce: Some(*nonce),
            allow_unattested: false,
            report: None,
        },
    )
}

/// `evidence` (postcard `omega_evidence::Bundle`) decoded and verified as [`verify_for`]
/// does; `what` names it in the errors, which list every failed check.
fn verified_evidence(
    evidence: &[u8],
    principal: &str,
    nonce: &[u8; 32],
    what: &str,
) -> Result<(Bundle, Outcome), String> {
    let bundle = Bundle::decode(evidence).map_err(|e| format!("{what}: {e}"))?;
    let outcome = verify_for(&bundle, principal, nonce);
    if !outcome.verified() {
        let why = reasons(outcome.failures().map(|c| (c.name, c.message.as_str())));
        return Err(format!("{what} refused: {why}"));
    }
    Ok((bundle, outcome))
}

/// A leaf's evidence (`bundle`, `peer`) verified as [`verified_evidence`] does and in the
/// same evidence tree as `a`'s platform evidence.
fn leaf_evidence(
    a: &Attested,
    evidence: &[u8],
    principal: &str,
    nonce: &[u8; 32],
    what: &str,
) -> Result<Outcome, String> {
    let (b, outcome) = verified_evidence(evidence, principal, nonce, what)?;
    // SECURITY: the same tree the platform evidence's report attests (whose REPORT_DATA
    // binds this key, root and nonce), so the leaf's inclusion is attested too.
    let Binding::OmegaEvidence { root } = a.binding else {
        return Err(String::from("not an Omega node's evidence"));
    };
    if b.monitor_key != a.node_key || b.base_root != root || b.report_nonce != *nonce {
        return Err(format!(
            "{what} is from another evidence tree than the platform's"
        ));
    }
    Ok(outcome)
}

/// A TDX quote or Nitro document already verified (`omega-tee-verify`), for a node that
/// claims `node_key`: its bound data must be [`crate::admission::direct_binding`], which the
/// admission checks ([`Binding::Direct`]).
pub fn from_verified(v: &omega_tee_verify::Verified, node_key: [u8; 32]) -> Attested {
    use omega_tee_verify::TcbStatus;
    let tee = match v.tee {
        omega_tee_verify::Tee::SevSnp => Tee::SevSnp,
        omega_tee_verify::Tee::Tdx => Tee::Tdx,
        omega_tee_verify::Tee::Nitro => Tee::Nitro,
    };
    let tcb = match &v.tcb {
        TcbStatus::UpToDate => Tcb::Rated(crate::TcbRating::UpToDate),
        TcbStatus::OutOfDate { .. } => Tcb::Rated(crate::TcbRating::OutOfDate),
        TcbStatus::Other { .. } => Tcb::Rated(crate::TcbRating::Other),
        TcbStatus::NotApplicable => Tcb::NotApplicable,
    };
    Attested {
        tee,
        measurement: v.measurement.clone(),
        report_data: v.report_data.clone(),
        tcb,
        debug: v.debug,
        node_key,
        binding: Binding::Direct,
        bundle: None,
        peer_key: None,
    }
}

/// A Nitro node's attestation document verified under `root` (DER; the fleet policy's) as
/// of `now`, for a node claiming `node_key` ([`from_verified`]).
pub fn nitro_node(
    document: &[u8],
    root: &[u8],
    now: u64,
    node_key: [u8; 32],
) -> Result<Attested, String> {
    if root.is_empty() {
        return Err(String::from("the fleet policy names no Nitro root"));
    }
    let v = omega_tee_verify::nitro::verify(document, root, now)
        .map_err(|e| format!("nitro evidence refused: {e}"))?;
    Ok(from_verified(&v, node_key))
}

/// An Intel TDX guest's DCAP quote with its PCS collateral, verified as of `now` (our own
/// no_std DCAP verification: the in-image coordinator runs it), then mapped by
/// [`from_verified`] with the key the guest bound.
pub fn tdx_node(
    quote: &[u8],
    collateral: &[u8],
    now: u64,
    node_key: [u8; 32],
) -> Result<Attested, String> {
    let v = omega_tee_verify::tdx::verify(quote, collateral, now)
        .map_err(|e| format!("tdx evidence refused: {e}"))?;
    Ok(from_verified(&v, node_key))
}

/// Failed checks, (name, message) each, as one line.
fn reasons<'a>(failures: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    failures
        .map(|(name, message)| format!("{name}: {message}"))
        .collect::<Vec<_>>()
        .join("; ")
}
