//! Verifier side (no_std + alloc): one principal checks its own claim and its binding.
//! The SNP report's signature chain (ARK → ASK → VCEK → report) is checked by the caller
//! (`measurements verify-evidence` uses `measurements::verify_report`).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use omega_provenance::merkle::{ct_eq, leaf_hash, verify_consistency, verify_inclusion};
use omega_provenance::note::verify_raw;

use sev_snp::report::{REPORT_DATA, REPORT_LEN};

use crate::bundle::{Binding, Bundle, Hash, head_message, report_data, update_message};
use crate::claim::{Claim, SaltedLeaf, TEE_NONE};

/// One check and its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub message: String,
}

/// What the verifier asks for.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// The principal being verified (e.g. `agent:triage`).
    pub principal: &'a str,
    /// The verifier's nonce; `None` = freshness not checked (reported as a warning).
    pub nonce: Option<[u8; 32]>,
    /// Accept a platform that is explicitly unattested (no SNP).
    pub allow_unattested: bool,
    /// A report supplied separately (overrides the one in the bundle).
    pub report: Option<&'a [u8]>,
}

/// Result of [`verify`].
#[derive(Debug, Clone)]
pub struct Outcome {
    pub checks: Vec<Check>,
    pub warnings: Vec<String>,
    /// The principal's claim when the leaf decoded.
    pub claim: Option<Claim>,
    /// REPORT_DATA the report must carry.
    pub expected_report_data: [u8; 64],
    /// The report whose REPORT_DATA matched (its signature still needs checking).
    pub report: Option<Vec<u8>>,
    pub unattested: bool,
}

impl Outcome {
    pub fn verified(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

fn check(checks: &mut Vec<Check>, name: &'static str, r: Result<String, String>) {
    match r {
        Ok(m) => checks.push(Check {
            name,
            passed: true,
            message: m,
        }),
        Err(m) => checks.push(Check {
            name,
            passed: false,
            message: m,
        }),
    }
}

fn sig64(v: &[u8]) -> Option<[u8; 64]> {
    v.try_into().ok()
}

/// Runs every check; never panics on any bundle (decoded or constructed).
pub fn verify(b: &Bundle, opts: &Options<'_>) -> Outcome {
    let mut checks = Vec::new();
    let mut warnings = Vec::new();
    let rd = report_data(&b.report_nonce, &b.base_root, &b.monitor_key);

    if let Err(e) = b.check_shape() {
        check(&mut checks, "shape", Err(e.to_string()));
    }

    // 1. The leaf is P's claim.
    let claim = match SaltedLeaf::decode(&b.leaf) {
        Ok(l) => {
            let p = l.claim.principal();
            check(
                &mut checks,
                "principal",
                if p == opts.principal {
                    Ok(format!("leaf {} is the claim of {p}", b.leaf_index))
                } else {
                    Err(format!(
                        "leaf is the claim of {p:?}, not {:?}",
                        opts.principal
                    ))
                },
            );
            Some(l.claim)
        }
        Err(e) => {
            check(
                &mut checks,
                "principal",
                Err(format!("leaf does not decode: {e}")),
            );
            None
        }
    };

    // 2. Root-update chain from the attested base.
    let mut seq = 0u32;
    let mut size = b.base_size;
    let mut root: Hash = b.base_root;
    let mut chain_ok = true;
    let mut revoked = false;
    if b.base_size == 0 {
        chain_ok = false;
        check(
            &mut checks,
            "root-updates",
            Err("attested tree is empty".into()),
        );
    }
    for u in &b.updates {
        if !chain_ok {
            break;
        }
        let expect_seq = seq.wrapping_add(1);
        let msg = update_message(&rd, u.seq, size, &root, u.new_size, &u.new_root, &u.revoked);
        let res = if u.seq != expect_seq {
            Err(format!(
                "update has seq {}, expected {expect_seq} (missing, reordered or replayed update)",
                u.seq
            ))
        } else if !sig64(&u.signature).is_some_and(|s| verify_raw(&b.monitor_key, &msg, &s)) {
            Err(format!(
                "update {} is not signed by the monitor key for this report and previous root (stale or foreign update)",
                u.seq
            ))
        } else if verify_consistency(size, u.new_size, &root, &u.new_root, &u.consistency).is_err()
        {
            Err(format!(
                "update {}: tree {}→{} is not append-only (consistency proof fails)",
                u.seq, size, u.new_size
            ))
        } else if u.revoked.iter().any(|&r| r >= size) {
            Err(format!(
                "update {} revokes a leaf that was not yet published",
                u.seq
            ))
        } else {
            Ok(())
        };
        if let Err(m) = res {
            chain_ok = false;
            check(&mut checks, "root-updates", Err(m));
            break;
        }
        if u.revoked.contains(&b.leaf_index) {
            revoked = true;
        }
        seq = u.seq;
        size = u.new_size;
        root = u.new_root;
    }
    if chain_ok {
        check(
            &mut checks,
            "root-updates",
            Ok(format!(
                "{} monitor-signed update(s); tree size {size}",
                b.updates.len()
            )),
        );
    }
    check(
        &mut checks,
        "not-revoked",
        if revoked {
            Err(format!(
                "leaf {} was superseded by a later root update (stale claim)",
                b.leaf_index
            ))
        } else {
            Ok("claim not superseded".into())
        },
    );

    // 3. Inclusion of P's salted leaf in the final root.
    check(
        &mut checks,
        "inclusion",
        match verify_inclusion(&leaf_hash(&b.leaf), b.leaf_index, size, &b.inclusion, &root) {
            Ok(()) if chain_ok => Ok(format!(
                "leaf {} included in tree of size {size}",
                b.leaf_index
            )),
            Ok(()) => Err("inclusion holds only for an unverified root".into()),
            Err(e) => Err(format!("inclusion proof fails: {e}")),
        },
    );

    // 4. Freshness.
    let head_ok = |n: &[u8; 32]| -> bool {
        b.head.as_ref().is_some_and(|h| {
            ct_eq(&h.nonce, n)
                && sig64(&h.signature).is_some_and(|s| {
                    verify_raw(&b.monitor_key, &head_message(&rd, n, seq, size, &root), &s)
                })
        })
    };
    match &opts.nonce {
        Some(n) => {
            let by_report = ct_eq(n, &b.report_nonce) && b.updates.is_empty();
            check(
                &mut checks,
                "nonce",
                if by_report {
                    Ok("nonce is in REPORT_DATA".into())
                } else if head_ok(n) {
                    Ok(format!(
                        "monitor signed the head (seq {seq}, size {size}) for this nonce"
                    ))
                } else {
                    Err("nonce not bound: neither in REPORT_DATA (without later updates) nor in a monitor-signed head for the final root (wrong nonce or stale evidence)".into())
                },
            );
        }
        None => {
            warnings
                .push("no --nonce given: freshness NOT checked (evidence may be replayed)".into());
            if let Some(h) = &b.head
                && !head_ok(&h.nonce)
            {
                check(
                    &mut checks,
                    "head",
                    Err("head signature does not verify for the final root".into()),
                );
            }
        }
    }

    // 5. Binding of the base root to the platform.
    let mut out_report = None;
    let mut unattested = false;
    let report: Option<&[u8]> = match (opts.report, &b.binding) {
        (Some(r), _) => Some(r),
        (None, Binding::Snp { report }) => Some(report),
        (None, Binding::Unattested { .. }) => None,
    };
    match report {
        Some(r) => {
            let res = match r.get(REPORT_DATA) {
                _ if r.len() != REPORT_LEN => Err(format!(
                    "report is {} bytes, expected {REPORT_LEN}",
                    r.len()
                )),
                Some(got) if ct_eq(got, &rd) => {
                    Ok("report REPORT_DATA = SHA-512(tag ‖ nonce ‖ root ‖ H(monitor key))".into())
                }
                _ => Err(
                    "report REPORT_DATA does not bind this evidence (swapped or foreign report)"
                        .into(),
                ),
            };
            if res.is_ok() {
                out_report = Some(r.to_vec());
            }
            check(&mut checks, "binding", res);
            check_platform_tee(&mut checks, claim.as_ref(), true);
        }
        None => {
            unattested = true;
            let marker_ok = matches!(&b.binding, Binding::Unattested { report_data } if ct_eq(report_data, &rd));
            check(
                &mut checks,
                "binding",
                if marker_ok {
                    Ok("unattested marker carries the expected REPORT_DATA".into())
                } else {
                    Err("unattested marker does not carry this evidence's REPORT_DATA".into())
                },
            );
            check_platform_tee(&mut checks, claim.as_ref(), false);
            check(
                &mut checks,
                "platform",
                if opts.allow_unattested {
                    warnings.push("platform is UNATTESTED (no SEV-SNP report); accepted by --allow-unattested".into());
                    Ok("UNATTESTED platform accepted on request".into())
                } else {
                    Err("platform is UNATTESTED (no SEV-SNP report); refused without --allow-unattested".into())
                },
            );
        }
    }

    Outcome {
        checks,
        warnings,
        claim,
        expected_report_data: rd,
        report: out_report,
        unattested,
    }
}

/// SECURITY: a platform claim must not contradict its binding: a monitor that says "none"
/// under a report, or "sev-snp"/"simulated" with only the unattested marker, is refused.
/// Which of "sev-snp" and "simulated" is right depends on the roots the verifier chose,
/// so that is checked by the verifier (`measurements`), not here.
fn check_platform_tee(checks: &mut Vec<Check>, claim: Option<&Claim>, has_report: bool) {
    let Some(Claim::Platform { tee, .. }) = claim else {
        return;
    };
    let consistent = (tee == TEE_NONE) != has_report;
    check(
        checks,
        "tee",
        if consistent {
            Ok(format!("platform claim says tee {tee}"))
        } else if has_report {
            Err(format!(
                "platform claim says tee {tee} but carries a report"
            ))
        } else {
            Err(format!("platform claim says tee {tee} but has no report"))
        },
    );
}
