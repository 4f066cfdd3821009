use core::fmt;

/// A GUID, kept in the mixed-endian byte order firmware stores it in (`bytes_le`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid([u8; 16]);

const fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not a hex digit in GUID"),
    }
}

impl Guid {
    /// Parses the canonical text form at compile time; panics (at compile time) on bad text.
    pub const fn parse(s: &str) -> Guid {
        let s = s.as_bytes();
        assert!(s.len() == 36, "GUID text must be 36 characters");
        let mut be = [0u8; 16];
        let mut i = 0;
        let mut j = 0;
        while i < 36 {
            if s[i] == b'-' {
                i += 1;
                continue;
            }
            be[j] = hex(s[i]) << 4 | hex(s[i + 1]);
            j += 1;
            i += 2;
        }
        assert!(j == 16, "GUID text must hold 32 hex digits");
        // The first three fields are little-endian in storage.
        Guid([
            be[3], be[2], be[1], be[0], be[5], be[4], be[7], be[6], be[8], be[9], be[10], be[11],
            be[12], be[13], be[14], be[15],
        ])
    }

    /// From 16 stored bytes. Panics if `b` is not 16 bytes long (callers slice exactly).
    pub fn from_bytes_le(b: &[u8]) -> Guid {
        let mut g = [0u8; 16];
        g.copy_from_slice(b);
        Guid(g)
    }

    /// The 16 bytes as stored in firmware.
    pub const fn to_bytes_le(self) -> [u8; 16] {
        self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for x in &b[10..] {
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
