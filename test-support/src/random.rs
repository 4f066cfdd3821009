//! Seeded random bytes and byte-level mutation for the robustness tests (stable-Rust
//! stand-ins for the fuzz targets). Deterministic: the same seed gives the same inputs on
//! every platform, so a failure can be replayed with `OMEGA_TEST_SEED`.

use std::ops::Range;

/// The seed: env `OMEGA_TEST_SEED` when set (to replay or vary a run), else `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("OMEGA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A small generator (xorshift64*); no dependency, stable across versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (0, which xorshift cannot leave, counts as 1).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n`; `n` must not be 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform-enough in `range`, which must not be empty.
    pub fn in_range(&mut self, range: Range<usize>) -> usize {
        range.start + self.below(range.end - range.start)
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for b in bytes {
            *b = self.byte();
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// Byte values that often sit on a decoder's boundaries (lengths, varint continuation bits,
/// signs).
const BOUNDARY_U8: [u8; 8] = [0, 1, 0x3f, 0x40, 0x7f, 0x80, 0xfe, 0xff];
const BOUNDARY_U16: [u16; 6] = [0, 1, 17, 18, 0x7fff, 0xffff];
const BOUNDARY_U32: [u32; 6] = [0, 1, 0x1000, 0x8000_0000, 0xffff_f000, u32::MAX];

/// Applies 1 to 5 random edits to `v`: flip a bit, overwrite a byte (random or a boundary
/// value), write a boundary `u16`/`u32` (little-endian), insert or remove a byte, remove a
/// run, insert a random run, truncate, or append random bytes.
pub fn mutate(rng: &mut Rng, v: &mut Vec<u8>) {
    edit(rng, v, None);
}

/// [`mutate`], with three edits in four placed inside `hot` (a header, a length field)
/// when it lies within `v`.
pub fn mutate_near(rng: &mut Rng, v: &mut Vec<u8>, hot: Range<usize>) {
    edit(rng, v, Some(hot));
}

fn edit(rng: &mut Rng, v: &mut Vec<u8>, hot: Option<Range<usize>>) {
    for _ in 0..rng.in_range(1..6) {
        if v.is_empty() {
            v.push(rng.byte());
            continue;
        }
        let at = match &hot {
            Some(r) if !rng.one_in(4) && r.end <= v.len() && r.start < r.end => {
                rng.in_range(r.clone())
            }
            _ => rng.below(v.len()),
        };
        match rng.below(10) {
            0 => v[at] ^= 1 << rng.below(8),
            1 => v[at] = rng.byte(),
            2 => v[at] = *rng.pick(&BOUNDARY_U8),
            3 if at + 2 <= v.len() => {
                let x = *rng.pick(&BOUNDARY_U16);
                v[at..at + 2].copy_from_slice(&x.to_le_bytes());
            }
            4 if at + 4 <= v.len() => {
                let x = *rng.pick(&BOUNDARY_U32);
                v[at..at + 4].copy_from_slice(&x.to_le_bytes());
            }
            5 => v.insert(at + rng.below(2), rng.byte()),
            6 => {
                v.remove(at);
            }
            7 => {
                let n = rng.in_range(1..33).min(v.len() - at);
                v.drain(at..at + n);
            }
            8 => {
                let n = rng.in_range(1..33);
                let run = rng.bytes(n);
                v.splice(at..at, run);
            }
            _ => {
                if rng.one_in(2) {
                    v.truncate(at);
                } else {
                    let n = rng.below(64);
                    v.extend(rng.bytes(n));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_mutations_change_bytes() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.bytes(64), b.bytes(64));
        assert_ne!(Rng::new(7).bytes(16), Rng::new(8).bytes(16));
        let base = Rng::new(1).bytes(200);
        let mut changed = 0;
        let mut rng = Rng::new(3);
        for _ in 0..1000 {
            let mut v = base.clone();
            mutate(&mut rng, &mut v);
            changed += usize::from(v != base);
        }
        // A few edits can cancel out (a truncation at the end); nearly all change the bytes.
        assert!(changed > 950, "{changed}");
    }

    #[test]
    fn mutate_near_stays_mostly_in_the_hot_range() {
        let base = vec![0u8; 1000];
        let mut rng = Rng::new(5);
        let mut inside = 0;
        for _ in 0..1000 {
            let mut v = base.clone();
            mutate_near(&mut rng, &mut v, 10..20);
            inside += usize::from(v.get(10..20) != base.get(10..20));
        }
        assert!(inside > 600, "{inside}");
    }
}
