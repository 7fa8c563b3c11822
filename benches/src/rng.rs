//! A small seeded pseudo-random generator, so command streams are reproducible from a seed on
//! any machine and the crate needs no `rand`.

/// SplitMix64: one 64-bit state word, one add and three xor-shift-multiplies per draw. Its output
/// passes BigCrush, which is far more than a load generator needs, and any seed (zero included)
/// is a good seed.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound`. Lemire's multiply-shift: the bias is below 2^-32 for the small
    /// bounds used here, which no benchmark can observe.
    #[inline]
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "empty range");
        let wide = u128::from(self.next_u64()) * u128::from(bound);
        // The high half of a 64×64-bit product always fits in 64 bits.
        u64::try_from(wide >> 64).expect("high half fits")
    }

    /// A value in `low..=high`.
    #[inline]
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "empty range");
        low + self.below(high - low + 1)
    }

    /// True with probability `percent`/100.
    #[inline]
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An index into a slice of length `len`.
    #[inline]
    pub fn index(&mut self, len: usize) -> usize {
        let bound = u64::try_from(len).expect("usize fits u64");
        usize::try_from(self.below(bound)).expect("below len fits usize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..1_000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn ranges_are_respected() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..10_000 {
            let value = rng.between(3, 9);
            assert!((3..=9).contains(&value));
        }
    }
}
