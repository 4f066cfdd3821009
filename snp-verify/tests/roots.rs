//! Which roots a chain passes under, on the simulated PSP's lab chain (the AMD chains and
//! real reports are `measurements`' tests, through the same code).

use omega_sim_psp::{LAB_ARK_PEM, LAB_ASK_PEM, LAB_VCEK_DER};
use omega_snp_verify::{CaChain, Roots, VerifyOptions, verify_report};

fn lab(lab: bool) -> Roots<'static> {
    Roots {
        ark: LAB_ARK_PEM,
        ask: LAB_ASK_PEM,
        amd_arks: &[],
        lab,
    }
}

#[test]
fn the_lab_root_passes_only_when_the_verifier_chose_it() {
    let opts = VerifyOptions::default();
    let chosen = CaChain::new(&lab(true), &opts);
    assert!(chosen.trusted(), "{:?}", chosen.checks());
    assert!(chosen.vcek(LAB_VCEK_DER).trusted());
    // SECURITY: as an unnamed root (an `--ark` file) it is not AMD's.
    let unnamed = CaChain::new(&lab(false), &opts);
    assert!(!unnamed.trusted());
    let root = unnamed
        .checks()
        .iter()
        .find(|c| c.name == "ark.amd_root")
        .unwrap();
    assert!(
        !root.passed && root.message.contains("not one of AMD's roots"),
        "{root:?}"
    );
    // Named as one of AMD's roots by the caller: accepted under that name.
    let named = CaChain::new(
        &Roots {
            amd_arks: &[("lab-as-amd", LAB_ARK_PEM)],
            ..lab(false)
        },
        &opts,
    );
    assert!(
        named
            .checks()
            .iter()
            .any(|c| c.message == "ARK is AMD's lab-as-amd root")
    );
    let allowed = CaChain::new(
        &lab(false),
        &VerifyOptions {
            allow_unknown_ark: true,
            ..VerifyOptions::default()
        },
    );
    assert!(allowed.trusted());
}

#[test]
fn garbage_never_verifies() {
    for (report, vcek) in [(&[][..], &[][..]), (&[0u8; 1184][..], LAB_VCEK_DER)] {
        let o = verify_report(report, vcek, &lab(true), &VerifyOptions::default());
        assert!(!o.verified());
        assert!(o.failures().count() >= 1, "{:?}", o.checks);
    }
}
