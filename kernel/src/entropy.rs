//! Hardware entropy (RDSEED, falling back to RDRAND) with the retry and health rules a
//! monitor needs: bounded retries, and refusal of output that looks stuck.

/// The CPU's random-number instructions; the binary's `hw::entropy::CpuRng` implements
/// this with RDSEED/RDRAND.
pub trait HwRng {
    /// One RDSEED result, `None` when the instruction reported failure (CF=0).
    fn rdseed(&mut self) -> Option<u64>;
    /// One RDRAND result, `None` on failure.
    fn rdrand(&mut self) -> Option<u64>;
}

/// Retries per word, as Intel's DRNG guide recommends for RDRAND.
pub const RETRIES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EntropyError {
    /// Neither instruction produced a value within the retry budget.
    #[error("RDSEED/RDRAND failed {} times in a row", RETRIES)]
    Exhausted,
    /// The generator repeated itself or returned all-zeros/all-ones (a known failure mode
    /// of some AMD parts after suspend, and what a hostile hypervisor might try).
    #[error("hardware RNG looks stuck (returned {0:#x})")]
    Stuck(u64),
}

fn word(rng: &mut impl HwRng) -> Result<u64, EntropyError> {
    for _ in 0..RETRIES {
        if let Some(v) = rng.rdseed() {
            return Ok(v);
        }
    }
    for _ in 0..RETRIES {
        if let Some(v) = rng.rdrand() {
            return Ok(v);
        }
    }
    Err(EntropyError::Exhausted)
}

/// Fills `buf` from the hardware. SECURITY: every key the monitor makes comes from here,
/// so stuck output is an error, never silently used.
pub fn fill(rng: &mut impl HwRng, buf: &mut [u8]) -> Result<(), EntropyError> {
    let mut prev = None;
    for chunk in buf.chunks_mut(8) {
        let v = word(rng)?;
        if v == 0 || v == u64::MAX || prev == Some(v) {
            return Err(EntropyError::Stuck(v));
        }
        prev = Some(v);
        chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scripted {
        seeds: &'static [Option<u64>],
        rands: &'static [Option<u64>],
        i: usize,
        j: usize,
    }

    impl HwRng for Scripted {
        fn rdseed(&mut self) -> Option<u64> {
            let v = self.seeds.get(self.i).copied().flatten();
            self.i += 1;
            v
        }
        fn rdrand(&mut self) -> Option<u64> {
            let v = self.rands.get(self.j).copied().flatten();
            self.j += 1;
            v
        }
    }

    #[test]
    fn falls_back_and_fails_cleanly() {
        let mut r = Scripted {
            seeds: &[None, Some(0x1122334455667788), Some(0xaa)],
            rands: &[],
            i: 0,
            j: 0,
        };
        let mut buf = [0u8; 12];
        fill(&mut r, &mut buf).unwrap();
        assert_eq!(&buf[..8], &0x1122334455667788u64.to_le_bytes());
        assert_eq!(buf[8], 0xaa);

        let mut r = Scripted {
            seeds: &[None; 10],
            rands: &[None, None, Some(5)],
            i: 0,
            j: 0,
        };
        let mut buf = [0u8; 8];
        fill(&mut r, &mut buf).unwrap();
        assert_eq!(buf[0], 5);

        let mut r = Scripted {
            seeds: &[],
            rands: &[],
            i: 0,
            j: 0,
        };
        assert_eq!(fill(&mut r, &mut buf), Err(EntropyError::Exhausted));
    }

    #[test]
    fn refuses_stuck_output() {
        let mut buf = [0u8; 16];
        let mut r = Scripted {
            seeds: &[Some(u64::MAX)],
            rands: &[],
            i: 0,
            j: 0,
        };
        assert_eq!(fill(&mut r, &mut buf), Err(EntropyError::Stuck(u64::MAX)));
        let mut r = Scripted {
            seeds: &[Some(7), Some(7)],
            rands: &[],
            i: 0,
            j: 0,
        };
        assert_eq!(fill(&mut r, &mut buf), Err(EntropyError::Stuck(7)));
        let mut r = Scripted {
            seeds: &[Some(0)],
            rands: &[],
            i: 0,
            j: 0,
        };
        assert_eq!(fill(&mut r, &mut buf), Err(EntropyError::Stuck(0)));
    }
}
