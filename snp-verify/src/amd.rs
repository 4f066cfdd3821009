//! AMD's published roots per EPYC generation (ARK and ASK, PEM), from the `sev` crate at
//! build time (`build.rs`): what a verifier, or a coordinator inside an image, checks a
//! VCEK's chain under.

macro_rules! pem {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $file))
    };
}

/// (generation, ARK PEM, ASK PEM).
pub const FAMILIES: [(&str, &[u8], &[u8]); 3] = [
    ("milan", pem!("milan_ark.pem"), pem!("milan_ask.pem")),
    ("genoa", pem!("genoa_ark.pem"), pem!("genoa_ask.pem")),
    ("turin", pem!("turin_ark.pem"), pem!("turin_ask.pem")),
];

/// (generation, ARK PEM): what `ark.amd_root` accepts ([`crate::Roots::amd_arks`]).
pub const ARKS: [(&str, &[u8]); 3] = [
    (FAMILIES[0].0, FAMILIES[0].1),
    (FAMILIES[1].0, FAMILIES[1].1),
    (FAMILIES[2].0, FAMILIES[2].1),
];
