//! The machine's own unsteadiness, for calibration profiles: a real CPU worker's steps do not
//! take the fitted time every time. On a shared VM the same step runs slower or faster in
//! spells that last a good part of a second (other tenants, frequency), and each step also
//! jitters on its own. A spell slows every step a request makes while it lasts, so it widens
//! the spread of TPOT and TTFT across requests, which a noiseless simulation misses: its p90s
//! come out low while its medians match.
//!
//! The model: a step's time × exp(x + e), where x follows an Ornstein–Uhlenbeck process
//! (standard deviation `slow_sd`, correlation time `corr_ms`) and e is independent per step
//! (`step_sd`). Both have median 0, so the median step takes the fitted time, as calibrate's
//! medians do. Draws are seeded: the same seed gives the same run.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Noise {
    /// Standard deviation of the log of the machine's slow pace.
    pub slow_sd: f64,
    /// How long a spell of the slow pace lasts: its autocorrelation falls by 1/e over this.
    pub corr_ms: f64,
    /// Standard deviation of the log of each step's own jitter.
    pub step_sd: f64,
}

impl Noise {
    /// Whether the values make a process (finite, non-negative sds, positive correlation time).
    pub fn check(&self) -> Result<(), String> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !(ok(self.slow_sd) && ok(self.step_sd) && self.corr_ms.is_finite() && self.corr_ms > 0.0) {
            return Err(format!(
                "noise: slow_sd and step_sd must be ≥ 0 and corr_ms > 0 (got {}, {}, {})",
                self.slow_sd, self.step_sd, self.corr_ms
            ));
        }
        Ok(())
    }
}

/// One worker's draw of the process.
#[derive(Debug, Clone)]
pub struct Pace {
    noise: Noise,
    /// The log of the slow pace now.
    x: f64,
    rng: ChaCha8Rng,
}

impl Pace {
    /// Starts in the stationary distribution, so the first steps are as unsteady as the rest.
    pub fn new(noise: Noise, seed: u64) -> Pace {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let z: f64 = StandardNormal.sample(&mut rng);
        Pace { noise, x: z * noise.slow_sd, rng }
    }

    /// The factor of a step that starts `elapsed_ns` after the previous step of this worker
    /// started (the process moves on by that much first).
    pub fn factor(&mut self, elapsed_ns: u64) -> f64 {
        let Noise { slow_sd, corr_ms, step_sd } = self.noise;
        let keep = (-(elapsed_ns as f64 / 1e6) / corr_ms).exp();
        let z: f64 = StandardNormal.sample(&mut self.rng);
        self.x = self.x * keep + slow_sd * (1.0 - keep * keep).sqrt() * z;
        let e: f64 = StandardNormal.sample(&mut self.rng);
        (self.x + step_sd * e).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(noise: Noise, elapsed_ns: u64, n: usize) -> Vec<f64> {
        let mut p = Pace::new(noise, 7);
        (0..n).map(|_| p.factor(elapsed_ns).ln()).collect()
    }

    fn sd(v: &[f64]) -> f64 {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
    }

    #[test]
    fn the_factor_has_median_one_and_the_stated_spread() {
        let n = Noise { slow_sd: 0.05, corr_ms: 500.0, step_sd: 0.03 };
        // Steps 10 ms apart: 200,000 steps span 4,000 correlation times.
        let v = logs(n, 10_000_000, 200_000);
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        assert!(s[s.len() / 2].abs() < 0.005, "median log {}", s[s.len() / 2]);
        let want = (0.05f64 * 0.05 + 0.03 * 0.03).sqrt();
        assert!((sd(&v) - want).abs() < 0.003, "sd {} against {want}", sd(&v));
    }

    #[test]
    fn steps_close_together_share_the_slow_pace_and_far_apart_do_not() {
        let n = Noise { slow_sd: 0.05, corr_ms: 500.0, step_sd: 0.0 };
        let corr = |elapsed_ns: u64| {
            let v = logs(n, elapsed_ns, 100_000);
            let (a, b) = (&v[..v.len() - 1], &v[1..]);
            a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / a.len() as f64 / (0.05 * 0.05)
        };
        // One correlation time apart: e^-1.
        assert!((corr(500_000_000) - (-1f64).exp()).abs() < 0.02);
        assert!(corr(5_000_000) > 0.98);
        assert!(corr(5_000_000_000) < 0.02);
    }

    #[test]
    fn the_same_seed_draws_the_same_factors() {
        let n = Noise { slow_sd: 0.05, corr_ms: 500.0, step_sd: 0.03 };
        assert_eq!(logs(n, 1_000_000, 50), logs(n, 1_000_000, 50));
        let mut other = Pace::new(n, 8);
        assert_ne!(logs(n, 1_000_000, 1)[0], other.factor(1_000_000).ln());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let good = Noise { slow_sd: 0.05, corr_ms: 500.0, step_sd: 0.03 };
        assert!(good.check().is_ok());
        assert!(Noise { corr_ms: 0.0, ..good }.check().is_err());
        assert!(Noise { slow_sd: -0.1, ..good }.check().is_err());
        assert!(Noise { step_sd: f64::NAN, ..good }.check().is_err());
    }
}
