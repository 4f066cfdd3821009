//! From evidence to the admission input. Signature chains are checked here (std verifiers);
//! the admission decision (measurement, TCB, debug, binding, nonce) is the no_std
//! `omega_fleet::admission::check`, which recomputes the binding itself.

use anyhow::{anyhow, bail};
use measurements::{CertSource, VerifyOptions, verify_report};
use omega_evidence::{Bundle, Claim, Options, Outcome};
use omega_fleet::policy::SnpTcb;
use omega_fleet::{Attested, Binding, Tcb, TcbRating, Tee};
use omega_tee_verify::{TcbStatus, Verified};

/// Which roots an Omega node's SNP report is checked under.
#[derive(Debug, Clone)]
pub enum SnpRoots {
    /// The simulated PSP's lab chain (tests): evidence maps to [`Tee::Simulated`].
    Lab,
    /// AMD's builtin roots of a family and the chip's VCEK (DER).
    Amd {
        family: measurements::Family,
        vcek: Vec<u8>,
    },
}

/// An Omega node's `platform` evidence (postcard `omega_evidence::Bundle`), verified for the
/// coordinator's `nonce`: the evidence tree, REPORT_DATA and the report's chain. The node key
/// is the evidence's monitor key (whose hash REPORT_DATA binds with the nonce).
pub fn omega_platform(
    evidence: &[u8],
    nonce: &[u8; 32],
    roots: &SnpRoots,
) -> anyhow::Result<Attested> {
    let (bundle, outcome) = verified_evidence(evidence, "platform", nonce, "evidence")?;
    let report = outcome
        .report
        .as_deref()
        .ok_or_else(|| anyhow!("evidence has no report"))?;
    let (certs, vcek, tee) = match roots {
        SnpRoots::Lab => (CertSource::Lab, omega_sim_psp::LAB_VCEK_DER, Tee::Simulated),
        SnpRoots::Amd { family, vcek } => {
            (CertSource::Family(*family), vcek.as_slice(), Tee::SevSnp)
        }
    };
    // The measurement is the policy's to check (any of its allowed digests), TCB too.
    let vo = verify_report(
        report,
        vcek,
        certs,
        &VerifyOptions {
            expect_report_data: Some(outcome.expected_report_data),
            ..Default::default()
        },
    );
    if !vo.verified() {
        let why = reasons(vo.failures().map(|c| (c.name, c.message.as_str())));
        bail!("SNP report refused: {why}");
    }
    // SECURITY: the monitor's own platform claim must agree with the roots that verified it.
    match &outcome.claim {
        Some(Claim::Platform { tee: claimed, .. }) if claimed == certs.tee() => {}
        other => bail!(
            "platform claim {other:?} does not match a report verified as {}",
            certs.tee()
        ),
    }
    let r = vo
        .report
        .as_ref()
        .ok_or_else(|| anyhow!("no parsed report"))?;
    let v = measurements::tee::from_snp(&vo).ok_or_else(|| anyhow!("report not verified"))?;
    Ok(Attested {
        tee,
        measurement: v.measurement,
        report_data: v.report_data,
        tcb: Tcb::Snp(SnpTcb {
            bootloader: r.reported_tcb.bootloader,
            tee: r.reported_tcb.tee,
            snp: r.reported_tcb.snp,
            microcode: r.reported_tcb.microcode,
            fmc: r.reported_tcb.fmc,
        }),
        debug: v.debug,
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
    roots: &SnpRoots,
) -> anyhow::Result<Attested> {
    let mut a = omega_platform(platform, nonce, roots)?;
    let outcome = leaf_evidence(&a, bundle_evidence, "bundle", nonce, "bundle evidence")?;
    match outcome.claim {
        Some(Claim::Bundle { manifest_digest }) => a.bundle = Some(manifest_digest),
        other => bail!("bundle evidence claims {other:?}"),
    }
    Ok(a)
}

/// The boot id the `platform` evidence's claim names, if it verifies for `nonce` (the
/// coordinator calls it on evidence [`omega_platform`] already accepted): the monitor boot
/// whose log an admission covers (its checkpoints' origin is `omega-monitor/<boot id>`).
pub fn platform_boot_id(evidence: &[u8], nonce: &[u8; 32]) -> Option<[u8; 16]> {
    let b = Bundle::decode(evidence).ok()?;
    let o = verify_for(&b, "platform", nonce);
    match o.claim {
        Some(Claim::Platform { boot_id, .. }) if o.verified() => Some(boot_id),
        _ => None,
    }
}

/// An Omega node's `peer` evidence, checked like the `bundle` evidence ([`omega_node`]): in
/// the same attested tree as `a`'s platform evidence; its `PeerKey` claim gives
/// [`Attested::peer_key`], the key the node's credential lets sign channel handshakes.
pub fn omega_peer(a: &mut Attested, peer_evidence: &[u8], nonce: &[u8; 32]) -> anyhow::Result<()> {
    let outcome = leaf_evidence(
        a,
        peer_evidence,
        omega_evidence::PEER_PRINCIPAL,
        nonce,
        "peer evidence",
    )?;
    match outcome.claim {
        Some(Claim::PeerKey { public, .. }) => a.peer_key = Some(public),
        other => bail!("peer evidence claims {other:?}"),
    }
    Ok(())
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
) -> anyhow::Result<(Bundle, Outcome)> {
    let bundle = Bundle::decode(evidence).map_err(|e| anyhow!("{what}: {e}"))?;
    let outcome = verify_for(&bundle, principal, nonce);
    if !outcome.verified() {
        let why = reasons(outcome.failures().map(|c| (c.name, c.message.as_str())));
        bail!("{what} refused: {why}");
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
) -> anyhow::Result<Outcome> {
    let (b, outcome) = verified_evidence(evidence, principal, nonce, what)?;
    // SECURITY: the same tree the platform evidence's report attests (whose REPORT_DATA
    // binds this key, root and nonce), so the leaf's inclusion is attested too.
    let Binding::OmegaEvidence { root } = a.binding else {
        bail!("not an Omega node's evidence");
    };
    if b.monitor_key != a.node_key || b.base_root != root || b.report_nonce != *nonce {
        bail!("{what} is from another evidence tree than the platform's");
    }
    Ok(outcome)
}

/// Failed checks, (name, message) each, as one line.
fn reasons<'a>(failures: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    failures
        .map(|(name, message)| format!("{name}: {message}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A non-Omega guest's evidence ([`crate::store::TeeSubmission`]) verified as of `now`: a
/// TDX quote against its collateral, a Nitro document against `nitro_root` (DER; none
/// configured: refused), then mapped by [`from_verified`].
pub fn tee_node(
    t: &crate::store::TeeSubmission,
    nitro_root: Option<&[u8]>,
    now: u64,
) -> anyhow::Result<Attested> {
    let node_key = crate::source::hex32(&t.node_key)?;
    let evidence = hex::decode(&t.evidence)?;
    let verified = match t.kind.as_str() {
        "tdx" => omega_tee_verify::tdx::verify(&evidence, &hex::decode(&t.collateral)?, now),
        "nitro" => {
            let root =
                nitro_root.ok_or_else(|| anyhow!("no Nitro root configured (--nitro-root)"))?;
            omega_tee_verify::nitro::verify(&evidence, root, now)
        }
        other => bail!("unknown TEE {other:?} (tdx, nitro)"),
    }
    .map_err(|e| anyhow!("{} evidence refused: {e}", t.kind))?;
    Ok(from_verified(&verified, node_key))
}

/// A TDX quote or Nitro document already verified by `omega-tee-verify`, for a node that
/// claims `node_key`: its bound data must be `omega_fleet::admission::direct_binding`.
pub fn from_verified(v: &Verified, node_key: [u8; 32]) -> Attested {
    let tee = match v.tee {
        omega_tee_verify::Tee::SevSnp => Tee::SevSnp,
        omega_tee_verify::Tee::Tdx => Tee::Tdx,
        omega_tee_verify::Tee::Nitro => Tee::Nitro,
    };
    let tcb = match &v.tcb {
        TcbStatus::UpToDate => Tcb::Rated(TcbRating::UpToDate),
        TcbStatus::OutOfDate { .. } => Tcb::Rated(TcbRating::OutOfDate),
        TcbStatus::Other { .. } => Tcb::Rated(TcbRating::Other),
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
