//! The owner's side of an owner-rooted fleet (`omega-fleet endorse`, docs/fleet.md "Owner-rooted
//! fleets"): the coordinator's `coordinator` evidence verified for the owner's nonce (the
//! evidence tree, its SNP report under the chosen roots, REPORT_DATA and the expected launch
//! digest, as `measurements verify-evidence --principal coordinator` checks it), its claimed
//! owner compared with the owner's key, and an [`Endorsement`] of the claimed key and boot
//! signed for a while.

use anyhow::{anyhow, bail};
use omega_evidence::{Bundle, Claim, Options};
use omega_fleet::endorsement::{ENDORSEMENT_FORMAT, Endorsement};
use omega_fleet::signed::SigningKey;

use crate::attest::SnpRoots;
use crate::relay::CoordinatorClaim;

/// `evidence` (a `coordinator` evidence bundle) verified for `nonce`: the evidence tree and
/// its claim, then its SNP report under `roots` with the tree's REPORT_DATA and the launch
/// digest `measurement` gives (called only once the tree verified). Every failed check is
/// in the error.
pub fn verify_coordinator(
    evidence: &[u8],
    nonce: &[u8; 32],
    roots: &SnpRoots,
    measurement: impl FnOnce() -> anyhow::Result<[u8; 48]>,
) -> anyhow::Result<CoordinatorClaim> {
    let bundle = Bundle::decode(evidence).map_err(|e| anyhow!("coordinator evidence: {e}"))?;
    let outcome = omega_evidence::verify(
        &bundle,
        &Options {
            principal: omega_evidence::COORDINATOR_PRINCIPAL,
            nonce: Some(*nonce),
            allow_unattested: false,
            report: None,
        },
    );
    if !outcome.verified() {
        let why: Vec<String> = outcome
            .failures()
            .map(|c| format!("{}: {}", c.name, c.message))
            .collect();
        bail!("coordinator evidence refused: {}", why.join("; "));
    }
    let claim = match &outcome.claim {
        Some(Claim::Coordinator {
            public,
            owner,
            min_policy_version,
            boot_id,
        }) => CoordinatorClaim {
            public: *public,
            owner: *owner,
            min_policy_version: *min_policy_version,
            boot_id: *boot_id,
        },
        other => bail!("the evidence claims {other:?}, not a coordinator"),
    };
    let report = outcome
        .report
        .as_deref()
        .ok_or_else(|| anyhow!("coordinator evidence has no report"))?;
    let opts = measurements::VerifyOptions {
        expect_measurement: Some(measurement()?),
        expect_report_data: Some(outcome.expected_report_data),
        ..Default::default()
    };
    let vo = match roots {
        SnpRoots::Lab => measurements::verify_report(
            report,
            omega_sim_psp::LAB_VCEK_DER,
            measurements::CertSource::Lab,
            &opts,
        ),
        SnpRoots::Amd { family, vcek } => measurements::verify_report(
            report,
            vcek,
            measurements::CertSource::Family(*family),
            &opts,
        ),
    };
    if !vo.verified() {
        let why: Vec<String> = vo
            .failures()
            .map(|c| format!("{}: {}", c.name, c.message))
            .collect();
        bail!("coordinator SNP report refused: {}", why.join("; "));
    }
    Ok(claim)
}

/// The owner's endorsement of `claim`'s key and boot for fleet `fleet`, valid from `now` for
/// `lifetime` seconds, signed by `owner`. SECURITY: refused unless the claim names this
/// owner (a coordinator image of another owner's fleet) and the lifetime is positive.
pub fn endorse(
    owner: &SigningKey,
    fleet: &str,
    claim: &CoordinatorClaim,
    now: u64,
    lifetime: u64,
) -> anyhow::Result<Vec<u8>> {
    if claim.owner != owner.public() {
        bail!(
            "the coordinator claims owner {}, not this owner key ({})",
            hex::encode(claim.owner),
            hex::encode(owner.public())
        );
    }
    if lifetime == 0 {
        bail!("a zero lifetime endorses nothing");
    }
    let e = Endorsement {
        format: ENDORSEMENT_FORMAT,
        fleet_id: fleet.into(),
        coordinator: claim.public,
        boot_id: claim.boot_id,
        not_before: now,
        not_after: now
            .checked_add(lifetime)
            .ok_or_else(|| anyhow!("lifetime too long"))?,
    };
    Ok(e.sign(owner)?)
}
