//! AMD's published ARK and ASK certificates for the no_std `amd` module, taken from the
//! `sev` crate (virtee/sev, `src/certs/snp/builtin/`, the certificates AMD publishes at
//! kdsintf.amd.com) at build time, so that they are not copied into this repository and a
//! monitor that cannot link `sev` (std) holds the same bytes as the `measurements` CLI.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    use sev::certs::snp::builtin::{genoa, milan, turin};
    for (family, ark, ask) in [
        ("milan", milan::ARK, milan::ASK),
        ("genoa", genoa::ARK, genoa::ASK),
        ("turin", turin::ARK, turin::ASK),
    ] {
        std::fs::write(out.join(format!("{family}_ark.pem")), ark).expect("writing ARK");
        std::fs::write(out.join(format!("{family}_ask.pem")), ask).expect("writing ASK");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
