//! The machine's own unsteadiness, for calibration profiles: a real CPU worker's steps do not
//! take the fitted time every time. On a shared VM the same step runs slower or faster in
//! spells that last a good part of a second (other tenants, frequency), and each step also
//! jitters on its own. A spell slows every step a request makes while it lasts, so it widens
//! the spread of TPOT and TTFT across requests, which a noiseless simulation misses: its p90s
//! come out low while its medians match.
//!
//! The model: a step's time × exp(x + e), where x is the average over the step of an
//! Ornstein–Uhlenbeck process (standard deviation `slow_sd`, correlation time `corr_ms`) and e
//! is independent per step (`step_sd`). Both have median 0, so the median step takes the
//! fitted time, as calibrate's medians do (with a measured jitter shape, about: the median of
//! a sum is not the sum of the medians). Draws are seeded: the same seed gives the same run.
//!
//! Where the profile measured the jitter's shape ([`Quantiles`]), a decode step's e is drawn
//! from it: one-sided, it makes the mean step longer than the median one, as the machine's
//! are. (The slow pace's shape was measured too and dropped: the same calibration procedure
//! read its mean factor ×0.99 to ×1.12 from one half hour to the next, where the jitter's read
//! ×1.02–1.06 at two threads.) A step with a prompt in it (a fused worker's mixed steps too)
//! keeps the normal jitter: it lasts tens to thousands of milliseconds, over which a stall of
//! a few is averaged in (the shape is measured on 10–20 ms decode steps), and the grid's
//! prefill medians include it.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::quantiles::{normal_cdf, Quantiles};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Noise {
    /// Standard deviation of the log of the machine's slow pace.
    pub slow_sd: f64,
    /// How long a spell of the slow pace lasts: its autocorrelation falls by 1/e over this.
    pub corr_ms: f64,
    /// Standard deviation of the log of each step's own jitter.
    pub step_sd: f64,
    /// The distribution of the log of a decode step's own jitter, where measured (else normal,
    /// `step_sd`). Named as in a profile.
    #[serde(rename = "step_quantiles")]
    pub step_shape: Option<Quantiles>,
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

    /// Normal spells and jitter of these spreads, no measured shape.
    pub fn normal(slow_sd: f64, corr_ms: f64, step_sd: f64) -> Noise {
        Noise { slow_sd, corr_ms, step_sd, step_shape: None }
    }

    /// How much longer the average decode step is than the median one under this noise (the
    /// slow pace and the jitter taken as independent): what a TPOT, a mean over steps, pays
    /// beyond a fit of medians.
    pub fn decode_mean_factor(&self) -> f64 {
        let normal = |sd: f64| (sd * sd / 2.0).exp();
        normal(self.slow_sd) * self.step_shape.map_or(normal(self.step_sd), |q| q.mean_factor())
    }
}

/// One worker's draw of the process.
#[derive(Debug, Clone)]
pub struct Pace {
    noise: Noise,
    /// The slow pace now, as a standard normal variable (the log of the pace is `slow_sd` × it).
    z: f64,
    rng: ChaCha8Rng,
}

impl Pace {
    /// Starts in the stationary distribution, so the first steps are as unsteady as the rest.
    pub fn new(noise: Noise, seed: u64) -> Pace {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let z: f64 = StandardNormal.sample(&mut rng);
        Pace { noise, z, rng }
    }

    /// The factor of a step of `step_ns` (its fitted time) that starts `idle_ns` after this
    /// worker's previous step ended; `decode`: a step with no prompt in it.
    ///
    /// The slow pace is the process's average over the step, not its value at the start: a
    /// spell of a few hundred milliseconds slows a 15 ms decode step whole, but comes and goes
    /// within a 700 ms prefill, whose time varies the less for it. (Drawn at the start alone,
    /// two-thread prefills of 300–700 tokens varied ±7–12% from step to step in simulation
    /// against ±5–9% in the runs, and queues behind them grew as they do not.)
    pub fn factor(&mut self, idle_ns: u64, step_ns: u64, decode: bool) -> f64 {
        let n = &self.noise;
        let tau_ns = n.corr_ms * 1e6;
        // Through the idle time.
        let keep = (-(idle_ns as f64) / tau_ns).exp();
        let w: f64 = StandardNormal.sample(&mut self.rng);
        self.z = self.z * keep + (1.0 - keep * keep).sqrt() * w;
        // Through the step: its end given its start, then its average given both (the three are
        // jointly normal; in units of the process's standard deviation).
        let r = step_ns as f64 / tau_ns;
        let (start, w_end, w_avg): (f64, f64, f64) =
            (self.z, StandardNormal.sample(&mut self.rng), StandardNormal.sample(&mut self.rng));
        let average = if r < 1e-6 {
            start
        } else {
            let k = (-r).exp();
            // Cov(average, start) and Var(average) of a stationary process of variance 1.
            let g = (1.0 - k) / r;
            let f = 2.0 * (r - 1.0 + k) / (r * r);
            self.z = k * start + (1.0 - k * k).sqrt() * w_end;
            let mean = g * start + g / (1.0 + k) * (self.z - k * start);
            mean + (f - 2.0 * g * g / (1.0 + k)).max(0.0).sqrt() * w_avg
        };
        let x = n.slow_sd * average;
        // One draw either way, so that a profile with and without a jitter shape keeps the
        // same slow pace from the same seed.
        let e: f64 = StandardNormal.sample(&mut self.rng);
        let jitter = match n.step_shape {
            Some(q) if decode => q.at(normal_cdf(e)),
            _ => n.step_sd * e,
        };
        (x + jitter).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logs of `n` decode steps of `step_ns`, each `idle_ns` after the one before.
    fn logs(noise: Noise, idle_ns: u64, step_ns: u64, n: usize) -> Vec<f64> {
        let mut p = Pace::new(noise, 7);
        (0..n).map(|_| p.factor(idle_ns, step_ns, true).ln()).collect()
    }

    fn sd(v: &[f64]) -> f64 {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
    }

    #[test]
    fn the_factor_has_median_one_and_the_stated_spread() {
        let n = Noise::normal(0.05, 500.0, 0.03);
        // 10 ms steps back to back: 200,000 of them span 4,000 correlation times (a 10 ms
        // step averages the slow pace over a fiftieth of one, which keeps 99% of its variance).
        let v = logs(n, 0, 10_000_000, 200_000);
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        assert!(s[s.len() / 2].abs() < 0.005, "median log {}", s[s.len() / 2]);
        let want = (0.05f64 * 0.05 + 0.03 * 0.03).sqrt();
        assert!((sd(&v) - want).abs() < 0.003, "sd {} against {want}", sd(&v));
    }

    #[test]
    fn steps_close_together_share_the_slow_pace_and_far_apart_do_not() {
        let n = Noise::normal(0.05, 500.0, 0.0);
        // Steps of a nanosecond (the pace at a point), `elapsed_ns` apart.
        let corr = |elapsed_ns: u64| {
            let v = logs(n, elapsed_ns, 1, 100_000);
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
        let n = Noise::normal(0.05, 500.0, 0.03);
        assert_eq!(logs(n, 1_000_000, 5_000_000, 50), logs(n, 1_000_000, 5_000_000, 50));
        let mut other = Pace::new(n, 8);
        assert_ne!(logs(n, 1_000_000, 5_000_000, 1)[0], other.factor(1_000_000, 5_000_000, true).ln());
    }

    #[test]
    fn a_long_step_averages_the_slow_pace_over_its_length() {
        let n = Noise::normal(0.05, 500.0, 0.0);
        // Steps of three correlation times back to back: an average over the step keeps
        // f(3) = 2(3 − 1 + e^−3)/9 = 0.456 of the variance, so the spread is 0.05 × 0.675.
        let long = logs(n, 0, 1_500_000_000, 100_000);
        assert!((sd(&long) - 0.05 * 0.4555f64.sqrt()).abs() < 0.002, "sd {}", sd(&long));
        let mut s = long.clone();
        s.sort_by(f64::total_cmp);
        assert!(s[s.len() / 2].abs() < 0.002, "median log {}", s[s.len() / 2]);
        // Back-to-back long steps share a little of their spells: the end of one is the start
        // of the next. Correlation of the averages of adjacent windows of length 3τ:
        // (1 − e^−3)² / (2 · (3 − 1 + e^−3)) = 0.221.
        let (a, b) = (&long[..long.len() - 1], &long[1..]);
        let c = a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / a.len() as f64 / sd(&long).powi(2);
        assert!((c - 0.221).abs() < 0.02, "adjacent correlation {c}");
        // A short step keeps nearly all of it.
        let short = logs(n, 0, 1_000_000, 100_000);
        assert!((sd(&short) - 0.05).abs() < 0.003, "sd {}", sd(&short));
    }

    /// A shape: 90% of values spread evenly over ±`core`, the rest at ln(`slow`).
    fn one_sided(core: f64, slow: f64) -> Quantiles {
        let mut v: Vec<f64> = (0..900).map(|i| (i as f64 / 899.0 - 0.5) * 2.0 * core).collect();
        v.extend((0..100).map(|_| slow.ln()));
        Quantiles::of(&v).unwrap()
    }

    #[test]
    fn a_measured_jitter_shape_lengthens_the_mean_decode_step_and_leaves_prefill_normal() {
        let shape = one_sided(0.02, 1.5);
        let n = Noise { step_shape: Some(shape), ..Noise::normal(0.0, 500.0, 0.02) };
        let mut p = Pace::new(n, 3);
        let decode: Vec<f64> = (0..100_000).map(|_| p.factor(0, 10_000_000, true)).collect();
        let mean = decode.iter().sum::<f64>() / decode.len() as f64;
        let mut sorted = decode.clone();
        sorted.sort_by(f64::total_cmp);
        assert!((sorted[sorted.len() / 2] - 1.0).abs() < 0.003, "median {}", sorted[sorted.len() / 2]);
        assert!((mean - shape.mean_factor()).abs() < 0.003, "mean {mean} against {}", shape.mean_factor());
        assert!((n.decode_mean_factor() - shape.mean_factor()).abs() < 1e-12);
        assert!(sorted[sorted.len() * 99 / 100] > 1.45, "the tail reaches ×1.5");
        // A prefill step keeps the normal jitter of step_sd.
        let prefill: Vec<f64> = (0..100_000).map(|_| p.factor(0, 10_000_000, false).ln()).collect();
        assert!((sd(&prefill) - 0.02).abs() < 0.001, "prefill sd {}", sd(&prefill));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let good = Noise::normal(0.05, 500.0, 0.03);
        assert!(good.check().is_ok());
        assert!(Noise { corr_ms: 0.0, ..good }.check().is_err());
        assert!(Noise { slow_sd: -0.1, ..good }.check().is_err());
        assert!(Noise { step_sd: f64::NAN, ..good }.check().is_err());
    }
}
