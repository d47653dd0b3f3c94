//! Where an executed percentile falls in the simulated distribution.
//!
//! A relative error judges a percentile by its value, and some percentiles are ill-conditioned:
//! when a distribution has two modes and a percentile sits in the gap between them, moving a
//! request or two from one mode to the other moves the percentile by tens of percent. A fused
//! worker's TPOTs are like that: a request whose decode no prefill interrupted runs at the
//! decode step's pace, one that waited out a prefill at several times it, and few fall
//! between. Which side the median request lands on is then a coin flip of the run, and no
//! model of step times can call it to 5%. The rank says instead how much of the simulated
//! distribution lies at or below the executed figure: a model whose distribution is right puts
//! an executed p50 near a share of 0.5, whatever the gap. Nearest-rank percentiles of n
//! requests drawn from the right distribution still wander, by about √(p(1 − p)/n) in share,
//! which is the band given beside it.

use serde::Serialize;

/// An executed percentile against the simulated distribution of the same metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rank {
    /// The share of simulated requests at or below the executed figure (ties count half):
    /// for a p50 a model whose distribution is the machine's gives about 0.5.
    pub simulated_share: f64,
    /// Two standard deviations of the rank of a p-th percentile of `n` requests drawn
    /// independently from the simulated distribution: how far sampling alone moves it. Requests
    /// of one run share its queues and the machine's spells, so the run-to-run spread is wider
    /// still; a rank outside the band is not proof of a model error, one inside it is no
    /// evidence of one.
    pub band: f64,
}

impl Rank {
    /// The rank of `executed`, the `p`-th percentile (0 < p < 100) of `n` executed requests,
    /// among `simulated` (sorted ascending); `None` when there is nothing to rank against.
    pub fn of(executed: f64, p: f64, n: usize, simulated: &[f64]) -> Option<Rank> {
        if simulated.is_empty() || n == 0 {
            return None;
        }
        let below = simulated.partition_point(|&x| x < executed);
        let at_or_below = simulated.partition_point(|&x| x <= executed);
        let simulated_share = (below + at_or_below) as f64 / 2.0 / simulated.len() as f64;
        let q = p / 100.0;
        Some(Rank { simulated_share, band: 2.0 * (q * (1.0 - q) / n as f64).sqrt() })
    }

    /// The rank's distance from where the percentile belongs, in share (−0.04: the executed
    /// p50 sits at the simulated 46th percentile).
    pub fn offset(&self, p: f64) -> f64 {
        self.simulated_share - p / 100.0
    }

    /// Whether the rank is within the sampling band of where the percentile belongs.
    pub fn within_band(&self, p: f64) -> bool {
        self.offset(p).abs() <= self.band
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_counts_ties_half() {
        let sim = [1.0, 2.0, 2.0, 3.0];
        // Below 2: one value; at or below: three; mid-rank (1 + 3) / 2 of 4.
        let r = Rank::of(2.0, 50.0, 10, &sim).unwrap();
        assert!((r.simulated_share - 0.5).abs() < 1e-12);
        assert_eq!(Rank::of(0.5, 50.0, 10, &sim).unwrap().simulated_share, 0.0);
        assert_eq!(Rank::of(9.0, 50.0, 10, &sim).unwrap().simulated_share, 1.0);
        assert!(Rank::of(2.0, 50.0, 10, &[]).is_none());
    }

    #[test]
    fn band_shrinks_with_requests_and_toward_the_tails() {
        let sim: Vec<f64> = (0..100).map(f64::from).collect();
        let b50 = Rank::of(50.0, 50.0, 36, &sim).unwrap().band;
        assert!((b50 - 2.0 * (0.25f64 / 36.0).sqrt()).abs() < 1e-12);
        assert!(Rank::of(50.0, 50.0, 144, &sim).unwrap().band < b50 / 1.9);
        assert!(Rank::of(90.0, 90.0, 36, &sim).unwrap().band < b50);
    }

    /// A bimodal distribution with the median in the gap: a relative error of the p50 of
    /// over 50% with a rank a few points off.
    #[test]
    fn a_percentile_in_a_gap_is_far_in_value_and_near_in_rank() {
        // Simulated: 49% of requests near 15 ms, 51% near 45 ms.
        let mut sim: Vec<f64> =
            (0..49).map(|i| 14.0 + f64::from(i) * 0.04).chain((0..51).map(|i| 44.0 + f64::from(i) * 0.04)).collect();
        sim.sort_by(f64::total_cmp);
        let simulated_p50 = crate::metrics::percentile::nearest_rank(&sim, 50.0).unwrap();
        // Executed: half its requests or a few more in the fast mode, so its p50 is there.
        let executed_p50 = 16.0;
        assert!((simulated_p50 - executed_p50) / executed_p50 > 1.5);
        let r = Rank::of(executed_p50, 50.0, 100, &sim).unwrap();
        assert!(r.offset(50.0).abs() < 0.02, "{r:?}");
        assert!(r.within_band(50.0));
    }
}
