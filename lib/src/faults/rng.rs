//! The faults' random numbers: SplitMix64, small, fast and reproducible from a seed (the
//! same seed gives the same sequence on every machine). Not for anything secret.

/// A seeded generator of 64-bit numbers.
#[derive(Debug, Clone)]
pub struct FaultRng {
    state: u64,
}

impl FaultRng {
    /// The generator whose sequence `seed` fixes.
    pub fn new(seed: u64) -> Self {
        FaultRng { state: seed }
    }

    /// The next number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `probability` (0 never, 1 always).
    pub fn chance(&mut self, probability: f64) -> bool {
        if probability >= 1.0 {
            return true;
        }
        // 53 random bits make a uniform float in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < probability
    }

    /// A number from `low` to `high`, both included (`low` when `high < low`).
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        match high.checked_sub(low).and_then(|span| span.checked_add(1)) {
            Some(choices) => low.saturating_add(self.next_u64() % choices),
            // The whole u64 range, or an empty one.
            None if high >= low => self.next_u64(),
            None => low,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let draw = |seed| {
            let mut rng = FaultRng::new(seed);
            (0..100).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn half_a_chance_over_a_thousand_draws_hits_about_half() {
        for seed in 0..20 {
            let mut rng = FaultRng::new(seed);
            let hits = (0..1_000).filter(|_| rng.chance(0.5)).count();
            assert!((450..=550).contains(&hits), "seed {seed}: {hits}");
        }
        let mut rng = FaultRng::new(1);
        assert!((0..1_000).all(|_| rng.chance(1.0)));
        assert!((0..1_000).all(|_| !rng.chance(0.0)));
    }

    #[test]
    fn between_stays_in_range_even_at_the_extremes() {
        let mut rng = FaultRng::new(9);
        for _ in 0..1_000 {
            assert!((10..=20).contains(&rng.between(10, 20)));
        }
        assert_eq!(rng.between(5, 5), 5);
        assert_eq!(rng.between(7, 3), 7);
        let _any = rng.between(0, u64::MAX);
        assert!(rng.between(u64::MAX - 1, u64::MAX) >= u64::MAX - 1);
    }
}
