//! A distribution given by its quantiles at fixed probabilities: the shape of a step's jitter,
//! which a normal distribution misses. On a shared VM the single slow steps are one-sided: a
//! preempted or stalled thread slows a step by 30–200%, and nothing speeds one up by as much. A
//! workload's TPOT is a mean over its steps, so that one-sided tail, which a median fit and a
//! symmetric noise leave out, shows in it whole: in execute runs here, two-thread decode steps
//! averaged ×1.01–1.06 of the median of their neighbours, run by run.

use serde::Serialize;

/// The probabilities the quantiles are taken at: dense in the upper tail, which carries the
/// mean's excess.
pub const PROBABILITIES: [f64; 13] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999];

/// Quantiles at [`PROBABILITIES`], non-decreasing, the median (index 5) 0: deviations of a log
/// from its median.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles(pub [f64; PROBABILITIES.len()]);

const MEDIAN: usize = 5;

impl Quantiles {
    /// The empirical quantiles of `samples`, moved so that their median is 0; `None` with too
    /// few samples to read a tail (fifty at least) or any that is not finite.
    pub fn of(samples: &[f64]) -> Option<Quantiles> {
        if samples.len() < 50 || samples.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |p: f64| {
            // Linear between order statistics (the (n − 1)·p rule).
            let h = (s.len() - 1) as f64 * p;
            let (i, f) = (h.floor() as usize, h.fract());
            s[i] + (s[(i + 1).min(s.len() - 1)] - s[i]) * f
        };
        let mut q = PROBABILITIES.map(at);
        let m = q[MEDIAN];
        q.iter_mut().for_each(|x| *x -= m);
        Some(Quantiles(q))
    }

    /// From a profile's list: the right length, finite, non-decreasing, median 0 (within
    /// rounding).
    pub fn from_values(v: &[f64]) -> Result<Quantiles, String> {
        let q: [f64; PROBABILITIES.len()] = v.try_into().map_err(|_| {
            format!(
                "needs {} values, the quantiles at probabilities {:?} (got {})",
                PROBABILITIES.len(),
                PROBABILITIES,
                v.len()
            )
        })?;
        if q.iter().any(|x| !x.is_finite() || x.abs() > 10.0) {
            return Err("has a value that is not a finite log factor (|x| ≤ 10)".into());
        }
        if q.windows(2).any(|w| w[1] < w[0]) {
            return Err("must not decrease".into());
        }
        if q[MEDIAN].abs() > 1e-6 {
            return Err(format!("must have median 0 (the value at probability 0.5), got {}", q[MEDIAN]));
        }
        Ok(Quantiles(q))
    }

    /// The value at probability `u` in (0, 1): linear between the stored quantiles, the end
    /// ones beyond them.
    pub fn at(&self, u: f64) -> f64 {
        let p = &PROBABILITIES;
        let q = &self.0;
        if u <= p[0] {
            return q[0];
        }
        let i = p.iter().position(|&x| x >= u).unwrap_or(p.len());
        if i == p.len() {
            return q[p.len() - 1];
        }
        q[i - 1] + (q[i] - q[i - 1]) * (u - p[i - 1]) / (p[i] - p[i - 1])
    }

    /// The mean of e^x over the distribution (numerically, over 1,000 evenly spaced
    /// probabilities): how much longer the average step is than the median one.
    pub fn mean_factor(&self) -> f64 {
        let n = 1000;
        (0..n).map(|i| self.at((i as f64 + 0.5) / n as f64).exp()).sum::<f64>() / n as f64
    }

    /// The element-wise median of several (pooled runs; of an even count, the mean of the two
    /// middle values, so that two runs pool to their middle and not to the wider of them).
    pub fn median_of(all: &[Quantiles]) -> Option<Quantiles> {
        if all.is_empty() {
            return None;
        }
        let mut q = [0.0; PROBABILITIES.len()];
        for (k, x) in q.iter_mut().enumerate() {
            let mut v: Vec<f64> = all.iter().map(|a| a.0[k]).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            *x = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        }
        Some(Quantiles(q))
    }
}

/// The standard normal distribution function (Abramowitz and Stegun 26.2.17, error under
/// 7.5e-8): turns a normal draw into the probability a shape is read at, so that a profile
/// with and without a shape draws the same numbers from the same seed.
pub fn normal_cdf(z: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.231_641_9 * z.abs());
    let poly =
        t * (0.319_381_530 + t * (-0.356_563_782 + t * (1.781_477_937 + t * (-1.821_255_978 + t * 1.330_274_429))));
    let upper = (-z * z / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt() * poly;
    if z >= 0.0 {
        1.0 - upper
    } else {
        upper
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quantiles_of_a_uniform_sample_are_its_probabilities() {
        let v: Vec<f64> = (0..=10_000).map(|i| i as f64 / 10_000.0).collect();
        let q = Quantiles::of(&v).unwrap();
        for (x, p) in q.0.iter().zip(PROBABILITIES) {
            assert!((x - (p - 0.5)).abs() < 1e-9, "{x} at {p}");
        }
        assert!((q.at(0.3) - (-0.2)).abs() < 1e-9);
        assert_eq!(q.at(0.0001), q.0[0]);
        assert_eq!(q.at(0.9999), q.0[12]);
    }

    #[test]
    fn a_one_sided_tail_raises_the_mean_above_the_median() {
        // 90% of steps at the median's pace ±1%, 10% half again as long.
        let mut v: Vec<f64> = (0..900).map(|i| (i as f64 / 899.0 - 0.5) * 0.02).collect();
        v.extend((0..100).map(|_| 1.5f64.ln()));
        let q = Quantiles::of(&v).unwrap();
        assert!(q.0[MEDIAN].abs() < 1e-12);
        let m = q.mean_factor();
        // 0.9 × 1 + 0.1 × 1.5, less what interpolating into the tail's edge shaves off.
        assert!(m > 1.03 && m < 1.06, "{m}");
        assert!(Quantiles::of(&v[..49]).is_none());
    }

    #[test]
    fn a_profile_list_is_checked() {
        let good: Vec<f64> = PROBABILITIES.iter().map(|p| p - 0.5).collect();
        assert!(Quantiles::from_values(&good).is_ok());
        assert!(Quantiles::from_values(&good[1..]).unwrap_err().contains("needs 13"));
        let mut down = good.clone();
        down.swap(0, 1);
        assert!(Quantiles::from_values(&down).unwrap_err().contains("decrease"));
        let shifted: Vec<f64> = good.iter().map(|x| x + 0.1).collect();
        assert!(Quantiles::from_values(&shifted).unwrap_err().contains("median 0"));
    }

    #[test]
    fn the_normal_cdf_matches_known_values() {
        for (z, want) in [(0.0, 0.5), (1.0, 0.841_344_746), (-1.96, 0.024_997_895), (3.0, 0.998_650_102)] {
            assert!((normal_cdf(z) - want).abs() < 1e-7, "{z}");
        }
    }
}
