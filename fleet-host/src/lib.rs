//! `omega-fleet`: the host half of issue 17's fleet.
//!
//! * [`attest`]: verified evidence → the no_std admission input ([`omega_fleet::Attested`]):
//!   an Omega node's platform evidence through `omega-evidence` and `measurements` (the SNP
//!   chain; the coordinator itself checks it inside `omega_fleet::service`, and a Nitro
//!   guest's document and a TDX guest's quote too).
//! * [`source`]: the fleet policy's JSON source form → its canonical signed form; a bundle
//!   directory's files (in sending order, for the coordinator) and agent pins.
//! * [`store`]: the key layout in etcd and a reconnecting client.
//! * [`coordinator`]: the coordinator's host process: etcd in and out, the coordinator
//!   itself (`omega_fleet::service`) behind a [`backend::Backend`]: in this process
//!   ([`backend::Local`], the **stand-in**) or in an attested Omega image through its
//!   launcher's relay ([`relay::InImage`], [`relay::RelayClient`]).
//! * [`scheduler`]: the untrusted scheduler: desired workloads, live nodes (etcd leases),
//!   proposals, restarts.
//! * [`node`]: the node agent: boots a coordinator-signed placement with `omega run` and
//!   submits the evidence.
#![forbid(unsafe_code)]

pub mod attest;
pub mod audit;
pub mod backend;
pub mod coordinator;
pub mod endorse;
pub mod node;
pub mod relay;
pub mod scheduler;
pub mod source;
pub mod store;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 32 bytes from the OS RNG.
pub fn random32() -> anyhow::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
    Ok(b)
}

/// Reads a 32-byte key seed or public key stored as 64 hex digits.
pub fn read_key(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_key(text.trim()).with_context(|| format!("{}", path.display()))
}

pub fn parse_key(hex_text: &str) -> anyhow::Result<[u8; 32]> {
    let v = hex::decode(hex_text).map_err(|e| anyhow::anyhow!("not hex: {e}"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("a key is 32 bytes (64 hex digits)"))
}
