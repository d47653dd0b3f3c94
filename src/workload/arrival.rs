//! Arrival processes: when requests reach the Enqueuer.
//!
//! Each process yields the gap (in nanoseconds) before the next arrival. Trace replay is not a
//! process here: a trace carries its own timestamps (see [`super::trace`]).

use super::sample;
use rand::Rng;

/// A resolved, validated arrival pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrivalPattern {
    /// Exponential gaps with mean `1 / rate_per_s`.
    Poisson { rate_per_s: f64 },
    /// Gamma-distributed gaps with mean `1 / rate_per_s` and coefficient of variation `cv`
    /// (cv = 1 is Poisson, cv > 1 is bursty, cv < 1 is smoother).
    Gamma { rate_per_s: f64, cv: f64 },
    /// One request every `interval_ns`.
    Constant { interval_ns: u64 },
    /// `size` requests at once, every `every_ns`.
    Bursts { size: u32, every_ns: u64 },
}

impl ArrivalPattern {
    /// Mean arrival rate in requests per second.
    pub fn rate_per_s(&self) -> f64 {
        match self {
            ArrivalPattern::Poisson { rate_per_s } | ArrivalPattern::Gamma { rate_per_s, .. } => *rate_per_s,
            ArrivalPattern::Constant { interval_ns } => 1e9 / *interval_ns as f64,
            ArrivalPattern::Bursts { size, every_ns } => *size as f64 * 1e9 / *every_ns as f64,
        }
    }

    pub fn gaps(&self) -> ArrivalGaps {
        let kind = match self {
            ArrivalPattern::Poisson { rate_per_s } => GapKind::Exp { rate: *rate_per_s },
            ArrivalPattern::Gamma { rate_per_s, cv } => {
                // mean = k·θ = 1/rate, cv = 1/√k  ⇒  k = 1/cv², θ = cv²/rate.
                GapKind::Gamma { shape: 1.0 / (cv * cv), scale: cv * cv / rate_per_s }
            }
            ArrivalPattern::Constant { interval_ns } => GapKind::Constant(*interval_ns),
            ArrivalPattern::Bursts { size, every_ns } => GapKind::Bursts { size: *size, every_ns: *every_ns },
        };
        ArrivalGaps { kind, emitted: 0 }
    }
}

/// Draws successive inter-arrival gaps. The first arrival is at time 0.
#[derive(Debug, Clone)]
pub struct ArrivalGaps {
    kind: GapKind,
    emitted: u64,
}

#[derive(Debug, Clone)]
enum GapKind {
    Exp { rate: f64 },
    Gamma { shape: f64, scale: f64 },
    Constant(u64),
    Bursts { size: u32, every_ns: u64 },
}

impl ArrivalGaps {
    /// Gap before the next arrival, in nanoseconds.
    pub fn next_gap_ns<R: Rng>(&mut self, rng: &mut R) -> u64 {
        let first = self.emitted == 0;
        self.emitted += 1;
        if first {
            return 0;
        }
        match &self.kind {
            GapKind::Exp { rate } => secs_to_ns(sample::exponential(rng, *rate)),
            GapKind::Gamma { shape, scale } => secs_to_ns(sample::gamma(rng, *shape, *scale)),
            GapKind::Constant(ns) => *ns,
            GapKind::Bursts { size, every_ns } => {
                if (self.emitted - 1).is_multiple_of(*size as u64) {
                    *every_ns
                } else {
                    0
                }
            }
        }
    }
}

fn secs_to_ns(s: f64) -> u64 {
    (s * 1e9).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn times(p: &ArrivalPattern, n: usize) -> Vec<u64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut g = p.gaps();
        let mut t = 0;
        (0..n)
            .map(|_| {
                t += g.next_gap_ns(&mut rng);
                t
            })
            .collect()
    }

    #[test]
    fn constant_and_bursts_are_exact() {
        assert_eq!(times(&ArrivalPattern::Constant { interval_ns: 5 }, 4), vec![0, 5, 10, 15]);
        assert_eq!(times(&ArrivalPattern::Bursts { size: 3, every_ns: 100 }, 7), vec![0, 0, 0, 100, 100, 100, 200]);
    }

    #[test]
    fn poisson_and_gamma_match_rate_and_cv() {
        for (p, cv) in [
            (ArrivalPattern::Poisson { rate_per_s: 10.0 }, 1.0),
            (ArrivalPattern::Gamma { rate_per_s: 10.0, cv: 3.0 }, 3.0),
            (ArrivalPattern::Gamma { rate_per_s: 10.0, cv: 0.5 }, 0.5),
        ] {
            let n = 50_000;
            let t = times(&p, n + 1);
            let gaps: Vec<f64> = t.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e9).collect();
            let mean = gaps.iter().sum::<f64>() / n as f64;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
            assert!((mean - 0.1).abs() < 0.005, "{p:?}: mean gap {mean}");
            let got_cv = var.sqrt() / mean;
            assert!((got_cv - cv).abs() < 0.1 * cv, "{p:?}: cv {got_cv}");
        }
    }
}
