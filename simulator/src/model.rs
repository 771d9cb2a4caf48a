//! Duration models: how long a step takes in a trial, from the runbook's `estimate`.

use drover_dsl::Estimate;
use rand::Rng;
use rand_distr::{Distribution, LogNormal, Triangular};

/// The z-score of the 95th percentile of a standard normal distribution.
const Z95: f64 = 1.644_853_626_951_472_2;

/// How one step's duration is drawn.
#[derive(Debug, Clone)]
pub enum DurationModel {
    /// Always this long (ms); also steps without an estimate (0).
    Fixed(u64),
    /// Uniform between two bounds (ms), from `estimate = 2m..5m`.
    Uniform(u64, u64),
    /// Triangular, from `estimate = { min, mode, max }`.
    Triangular(Triangular<f64>),
    /// Log-normal with the given median and 95th percentile, from `estimate = { p50, p95 }`.
    LogNormal(LogNormal<f64>),
    /// One of the durations measured in past runs, each equally likely (empirical; a bootstrap
    /// of the journal). Never empty.
    Empirical(Vec<u64>),
}

impl DurationModel {
    /// The model for a step's estimate (none: 0 ms).
    #[must_use]
    pub fn from_estimate(e: Option<&Estimate>) -> Self {
        #[allow(
            clippy::cast_precision_loss,
            reason = "durations in ms are far below 2^52"
        )]
        let f = |ms: u64| ms as f64;
        match e {
            None => Self::Fixed(0),
            Some(Estimate::Fixed { ms }) => Self::Fixed(*ms),
            Some(Estimate::Range { min_ms, max_ms }) if max_ms > min_ms => {
                Self::Uniform(*min_ms, *max_ms)
            }
            Some(Estimate::Range { min_ms, .. }) => Self::Fixed(*min_ms),
            Some(Estimate::Triangular {
                min_ms,
                mode_ms,
                max_ms,
            }) => Triangular::new(f(*min_ms), f(*max_ms), f(*mode_ms))
                .map_or(Self::Fixed(*mode_ms), Self::Triangular),
            Some(Estimate::Percentiles { p50_ms, p95_ms }) => {
                let mu = f((*p50_ms).max(1)).ln();
                let sigma = ((f((*p95_ms).max(*p50_ms).max(1)).ln() - mu) / Z95).max(0.0);
                if sigma == 0.0 {
                    Self::Fixed(*p50_ms)
                } else {
                    LogNormal::new(mu, sigma).map_or(Self::Fixed(*p50_ms), Self::LogNormal)
                }
            }
        }
    }

    /// The empirical model of `measured` durations (ms); `None` when there are none.
    #[must_use]
    pub fn empirical(measured: &[u64]) -> Option<Self> {
        if measured.is_empty() {
            return None;
        }
        let mut v = measured.to_vec();
        v.sort_unstable();
        Some(Self::Empirical(v))
    }

    /// Draws one duration (ms).
    #[inline]
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped, positive, below 2^52"
        )]
        let ms = |v: f64| v.clamp(0.0, 9.0e15).round() as u64;
        match self {
            Self::Fixed(v) => *v,
            Self::Uniform(lo, hi) => rng.random_range(*lo..=*hi),
            Self::Triangular(t) => ms(t.sample(rng)),
            Self::LogNormal(l) => ms(l.sample(rng)),
            Self::Empirical(v) => v[rng.random_range(0..v.len())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_lognormal_from_p50_and_p95_has_those_percentiles() {
        let m = DurationModel::from_estimate(Some(&Estimate::Percentiles {
            p50_ms: 600_000,
            p95_ms: 1_800_000,
        }));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut v: Vec<u64> = (0..20_000).map(|_| m.sample(&mut rng)).collect();
        v.sort_unstable();
        let p50 = v[10_000] as f64;
        let p95 = v[19_000] as f64;
        assert!((p50 / 600_000.0 - 1.0).abs() < 0.05, "p50 {p50}");
        assert!((p95 / 1_800_000.0 - 1.0).abs() < 0.08, "p95 {p95}");
    }

    #[test]
    fn empirical_draws_only_measured_values_and_all_of_them() {
        let m = DurationModel::empirical(&[30_000, 10_000, 20_000]).expect("measured");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let seen: std::collections::BTreeSet<u64> = (0..300).map(|_| m.sample(&mut rng)).collect();
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            [10_000, 20_000, 30_000]
        );
        assert!(DurationModel::empirical(&[]).is_none());
    }

    #[test]
    fn ranges_stay_in_bounds_and_fixed_is_fixed() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let u = DurationModel::from_estimate(Some(&Estimate::Range {
            min_ms: 10,
            max_ms: 20,
        }));
        let t = DurationModel::from_estimate(Some(&Estimate::Triangular {
            min_ms: 5,
            mode_ms: 6,
            max_ms: 30,
        }));
        for _ in 0..1000 {
            assert!((10..=20).contains(&u.sample(&mut rng)));
            assert!((5..=30).contains(&t.sample(&mut rng)));
        }
        assert_eq!(DurationModel::from_estimate(None).sample(&mut rng), 0);
        assert_eq!(
            DurationModel::from_estimate(Some(&Estimate::Fixed { ms: 42 })).sample(&mut rng),
            42
        );
    }
}
