//! Zipf-like topic popularity: rank `k` (1-based) is chosen with probability
//! proportional to `1 / k^s`, by inverting the cumulative distribution with a
//! binary search (exact for any `s`, O(log n) per sample, 8 bytes per topic).

use rand::Rng;

/// A sampler over ranks `0..n` (rank 0 is the most popular).
#[derive(Debug, Clone)]
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// `n >= 1` ranks with exponent `s >= 0` (`s = 0` is uniform).
    pub(crate) fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let cdf = (1..=n.max(1))
            .map(|k| {
                acc += (k as f64).powf(-s);
                acc
            })
            .collect();
        Self { cdf }
    }

    /// How many ranks there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cdf.len()
    }

    /// The probability of rank `i`.
    pub(crate) fn probability(&self, i: usize) -> f64 {
        let total = self.cdf[self.cdf.len() - 1];
        let below = if i == 0 { 0.0 } else { self.cdf[i - 1] };
        (self.cdf[i] - below) / total
    }

    /// One rank in `0..len()`.
    pub(crate) fn sample(&self, rng: &mut impl Rng) -> usize {
        let total = self.cdf[self.cdf.len() - 1];
        let u = rng.random::<f64>() * total;
        self.cdf.partition_point(|&c| c <= u).min(self.cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn frequencies_follow_the_law() {
        let z = Zipf::new(100, 1.0);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut hits = vec![0u32; z.len()];
        let n = 200_000;
        for _ in 0..n {
            hits[z.sample(&mut rng)] += 1;
        }
        // Rank 1 is chosen twice as often as rank 2, ten times rank 10.
        for i in [0, 1, 9, 49] {
            let expected = z.probability(i) * f64::from(n);
            let got = f64::from(hits[i]);
            assert!((got - expected).abs() < expected * 0.1 + 30.0, "rank {i}: {got} vs {expected}");
        }
        assert!((z.probability(0) / z.probability(1) - 2.0).abs() < 1e-9);
        assert!(hits.iter().all(|&h| h > 0), "every rank is reachable");
    }

    #[test]
    fn degenerate_sizes() {
        let z = Zipf::new(1, 1.0);
        let mut rng = SmallRng::seed_from_u64(1);
        assert!((0..100).all(|_| z.sample(&mut rng) == 0));
        let u = Zipf::new(4, 0.0);
        assert!((u.probability(3) - 0.25).abs() < 1e-12);
    }
}
