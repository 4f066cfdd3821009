//! The proxy's TLS key: Ed25519, stored as PKCS#8 (RFC 8410) so a TLS library can load it;
//! its SubjectPublicKeyInfo is what the evidence commits to.

use std::io;
use std::path::Path;

use ed25519_compact::{KeyPair, Seed};

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410 §7), followed by the 32-byte seed.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// SubjectPublicKeyInfo prefix of an Ed25519 public key (RFC 8410 §4), then the 32-byte key.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An Ed25519 TLS key.
pub struct TlsKey(KeyPair);

impl TlsKey {
    /// A fresh key (for a proxy whose key lives as long as the process).
    pub fn generate() -> Self {
        Self(KeyPair::from_seed(Seed::generate()))
    }

    /// The key in `path` (PKCS#8 DER), created there (mode 0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> io::Result<Self> {
        match std::fs::read(path) {
            Ok(der) => Self::from_pkcs8(&der),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = Self::generate();
                write_private(path, &key.to_pkcs8())?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    pub fn from_pkcs8(der: &[u8]) -> io::Result<Self> {
        let seed = der
            .strip_prefix(&PKCS8_PREFIX[..])
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "not an Ed25519 PKCS#8 v1 key")
            })?;
        Ok(Self(KeyPair::from_seed(Seed::new(seed))))
    }

    pub fn to_pkcs8(&self) -> Vec<u8> {
        [&PKCS8_PREFIX[..], &self.0.sk.seed()[..]].concat()
    }

    /// The SubjectPublicKeyInfo DER of the public key.
    pub fn spki(&self) -> Vec<u8> {
        [&SPKI_PREFIX[..], &self.0.pk[..]].concat()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::TlsKey;

    #[test]
    fn pkcs8_round_trips_and_spki_has_the_public_key() {
        let key = TlsKey::generate();
        let again = TlsKey::from_pkcs8(&key.to_pkcs8()).unwrap();
        assert_eq!(again.spki(), key.spki());
        assert_eq!(key.spki().len(), 44);
        assert_eq!(&key.spki()[12..], &key.0.pk[..]);
        assert!(TlsKey::from_pkcs8(&key.to_pkcs8()[1..]).is_err());
    }

    #[test]
    fn load_or_create_keeps_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tls.key");
        let a = TlsKey::load_or_create(&path).unwrap();
        let b = TlsKey::load_or_create(&path).unwrap();
        assert_eq!(a.spki(), b.spki());
    }
}
