//! Whether a run kept up with its arrivals: what a goodput search needs beyond the attainment
//! over the whole run (see [`crate::sweep::goodput`]).
//!
//! A run has a fixed number of requests: it starts with every worker idle and ends when the
//! last one is served, so a rate a topology cannot sustain still meets the objectives for many
//! requests while its queue builds. Two figures see past that: the attainment of the requests
//! that arrived last, where a growing queue shows first, and the rate requests complete at in
//! the middle of the run, free of its start and its drain.

/// Each settled request's arrival and whether it met both objectives, and each completion's
/// time: 24 bytes a completed request.
#[derive(Debug, Default)]
pub struct Steady {
    /// (enqueue ns, met both objectives), every request that arrived (rejected and failed ones
    /// met none).
    settled: Vec<(u64, bool)>,
    /// End times of completed requests.
    ends: Vec<u64>,
}

/// The share of arrivals, by arrival order from the end, that [`Steady::late_attainment`] takes.
pub const LATE_SHARE: f64 = 0.25;

impl Steady {
    pub fn completed(&mut self, enqueue_ns: u64, end_ns: u64, met: bool) {
        self.settled.push((enqueue_ns, met));
        self.ends.push(end_ns);
    }

    pub fn dropped(&mut self, enqueue_ns: u64) {
        self.settled.push((enqueue_ns, false));
    }

    /// The share of the last quarter of arrivals (at least one request) that met both
    /// objectives; 0 when nothing arrived.
    pub fn late_attainment(&mut self) -> f64 {
        if self.settled.is_empty() {
            return 0.0;
        }
        self.settled.sort_unstable_by_key(|&(t, _)| t);
        let n = self.settled.len();
        let late = ((n as f64 * LATE_SHARE).ceil() as usize).clamp(1, n);
        let met = self.settled[n - late..].iter().filter(|&&(_, m)| m).count();
        met as f64 / late as f64
    }

    /// Completions per second between the first and the third quartile of completion times:
    /// the rate the run served at once started and before its drain. With fewer than eight
    /// completions, or all at one time, `None`.
    pub fn steady_rate(&mut self) -> Option<f64> {
        let n = self.ends.len();
        if n < 8 {
            return None;
        }
        self.ends.sort_unstable();
        let (a, b) = (n / 4, 3 * n / 4);
        let span = self.ends[b] - self.ends[a];
        (span > 0).then(|| (b - a) as f64 * 1e9 / span as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_attainment_takes_the_last_quarter_of_arrivals() {
        let mut s = Steady::default();
        // Eight arrivals; completions out of order; the last two arrivals miss.
        for (t, met) in [(70, false), (10, true), (80, false), (20, true), (30, true), (40, true), (50, true)] {
            s.completed(t, t + 5, met);
        }
        s.dropped(60);
        assert_eq!(s.late_attainment(), 0.0, "arrivals 70 and 80 missed");
        let mut s = Steady::default();
        s.completed(5, 6, true);
        assert_eq!(s.late_attainment(), 1.0);
        assert_eq!(Steady::default().late_attainment(), 0.0);
    }

    #[test]
    fn steady_rate_ignores_the_start_and_the_drain() {
        let mut s = Steady::default();
        // One completion a ms from 100 ms, then a long tail: the middle half runs at 1000/s.
        for i in 0..12u64 {
            s.completed(0, 100_000_000 + i * 1_000_000, true);
        }
        for i in 0..4u64 {
            s.completed(0, 1_000_000_000 * (i + 2), true);
        }
        // Quartiles of 16 ends: the 4th and 12th, 104 ms and 2 s.
        let r = s.steady_rate().unwrap();
        assert!((r - 8.0 / 1.896).abs() < 1e-9, "{r}");
        let mut s = Steady::default();
        for i in 0..12u64 {
            s.completed(0, 100_000_000 + i * 1_000_000, true);
        }
        assert!((s.steady_rate().unwrap() - 1000.0).abs() < 1e-6);
        let mut few = Steady::default();
        few.completed(0, 1, true);
        assert_eq!(few.steady_rate(), None);
    }
}
