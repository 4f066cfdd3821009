//! CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, init 0xFFFFFFFF, final XOR
//! 0xFFFFFFFF (the iSCSI / ext4 / RFC 3720 checksum). Table-driven, const-built, no_std.

const POLY: u32 = 0x82F6_3B78;

const fn make_table() -> [[u32; 256]; 4] {
    let mut t = [[0u32; 256]; 4];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 4 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

static TABLE: [[u32; 256]; 4] = make_table();

/// Incremental CRC-32C state.
#[derive(Clone, Copy, Debug)]
pub struct Crc32c(u32);

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32c {
    pub const fn new() -> Self {
        Self(0xFFFF_FFFF)
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        let mut chunks = data.chunks_exact(4);
        for w in &mut chunks {
            c ^= u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            c = TABLE[3][(c & 0xff) as usize]
                ^ TABLE[2][((c >> 8) & 0xff) as usize]
                ^ TABLE[1][((c >> 16) & 0xff) as usize]
                ^ TABLE[0][(c >> 24) as usize];
        }
        for &b in chunks.remainder() {
            c = (c >> 8) ^ TABLE[0][((c ^ b as u32) & 0xff) as usize];
        }
        self.0 = c;
    }

    pub fn finish(self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = Crc32c::new();
    c.update(data);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Check values from the CRC catalogue (reveng "CRC-32/ISCSI") and RFC 3720 B.4.
    #[test]
    fn known_vectors() {
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let inc: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        let dec: [u8; 32] = core::array::from_fn(|i| 31 - i as u8);
        assert_eq!(crc32c(&dec), 0x113F_DB5C);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: [u8; 1000] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        for split in [0, 1, 3, 4, 5, 499, 999, 1000] {
            let mut c = Crc32c::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.finish(), crc32c(&data));
        }
    }

    #[test]
    fn bitwise_reference_agrees() {
        fn slow(d: &[u8]) -> u32 {
            let mut c = 0xFFFF_FFFFu32;
            for &b in d {
                c ^= b as u32;
                for _ in 0..8 {
                    c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
                }
            }
            !c
        }
        let data: [u8; 257] = core::array::from_fn(|i| (i * 131 + 17) as u8);
        for n in 0..data.len() {
            assert_eq!(crc32c(&data[..n]), slow(&data[..n]));
        }
    }
}
