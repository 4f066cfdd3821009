//! Helpers for the proxy's evidence (`omega-proxy-evidence`; built per connection by
//! `tls::EvidenceSource`): file digests and the JSON form for people. Without confidential
//! hardware the evidence says `tee: none` and `gpu: none`; it never claims what it cannot
//! prove.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use omega_proxy_evidence::{Gpu, ProxyEvidence, Tee};
use sha2::{Digest, Sha256};

/// SHA-256 of a file, read in pieces (models are hundreds of MiB to tens of GiB).
pub fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// The evidence as JSON for people (the binary form is what a guest checks).
pub fn to_json(e: &ProxyEvidence) -> serde_json::Value {
    let gpu = match &e.gpu {
        Gpu::None => serde_json::json!("none"),
        Gpu::Nvidia { model, cc_mode } => {
            serde_json::json!({"model": model, "cc_mode": format!("{cc_mode:?}")})
        }
    };
    let tee = match e.tee {
        Tee::None => "none",
        Tee::SevSnp => "sev-snp",
        Tee::Tdx => "tdx",
    };
    serde_json::json!({
        "identity": hex::encode(e.identity()),
        "version": e.version,
        "proxy_sha256": hex::encode(e.proxy_sha256),
        "model_sha256": hex::encode(e.model_sha256),
        "backend": e.backend,
        "tee": tee,
        "gpu": gpu,
        "gpu_evidence": e.gpu_evidence.as_ref().map(hex::encode),
        "tls_spki": hex::encode(&e.tls_spki),
        "nonce": hex::encode(e.nonce),
        "report_data": hex::encode(e.report_data),
    })
}
