//! Real TDX and Nitro evidence for the fleet verifiers' tests.
//!
//! TDX: the `dcap-qvl` 0.7.1 package's samples, copied under `data/dcap-qvl-0.7.1` (every clone
//! has them; they equal `../shared/testdata/tdx`). Nitro: only `../shared/testdata/nitro` has a
//! document and AWS's root ([`crate::require`]d: a failure under CI, `SKIP:` otherwise).

use std::path::PathBuf;

/// One TDX quote with its collateral and a time inside the collateral's validity.
pub struct TdxVector {
    pub name: &'static str,
    pub quote: &'static [u8],
    pub collateral: &'static [u8],
    /// Seconds since the epoch, a day after the TCB info's issue date.
    pub as_of: u64,
}

/// The up-to-date quote (TCB info issued 2025-06-19) and the out-of-date one (2026-02-18).
pub const TDX: [TdxVector; 2] = [
    TdxVector {
        name: "tdx_quote",
        quote: include_bytes!("../data/dcap-qvl-0.7.1/tdx_quote"),
        collateral: include_bytes!("../data/dcap-qvl-0.7.1/tdx_quote_collateral.json"),
        as_of: 1_750_378_563, // 2025-06-20T00:16:03Z
    },
    TdxVector {
        name: "tdx_quote_outdated",
        quote: include_bytes!("../data/dcap-qvl-0.7.1/tdx_quote_outdated"),
        collateral: include_bytes!("../data/dcap-qvl-0.7.1/tdx_quote_outdated_collateral.json"),
        as_of: 1_771_498_731, // 2026-02-19T10:58:51Z
    },
];

/// `<workspace>/../shared/testdata/<sub>`, [`crate::require`]d.
#[track_caller]
pub fn shared(sub: &str, skipped: &str) -> Option<PathBuf> {
    let d = crate::workspace_root().join("../shared/testdata").join(sub);
    crate::require(
        d.join("README.md").is_file().then_some(d),
        format_args!("../shared/testdata/{sub} is absent: {skipped}"),
    )
}

/// The recorded Nitro document, AWS's root (PEM) and the document's own time in seconds.
pub struct NitroVector {
    pub document: Vec<u8>,
    pub root_pem: Vec<u8>,
    pub as_of: u64,
}

#[track_caller]
pub fn nitro(skipped: &str) -> Option<NitroVector> {
    let d = shared("nitro", skipped)?;
    let read = |n: &str| std::fs::read(d.join(n)).unwrap_or_else(|e| panic!("{n}: {e}"));
    Some(NitroVector {
        document: read("aws-nitro-2023-09-07.cose"),
        root_pem: read("aws-nitro-root.pem"),
        as_of: 1_694_102_161, // its timestamp, 1694102161556 ms
    })
}
