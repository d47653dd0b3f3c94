//! Rate sweeps and goodput: SLO attainment as a function of the arrival rate (and burstiness),
//! and the highest rate each topology sustains with attainment at or above the target, found by
//! bisection (DistServe's definition of goodput), over several seeds with a confidence interval.

pub mod goodput;
pub mod stats;

use std::path::Path;

use serde::Serialize;

use crate::metrics::summary::Summary;
use crate::run::{summarize_topology, Backend, RunError};
use crate::scenario::{Scenario, Topology};
use crate::workload::arrival::ArrivalPattern;
use crate::workload::Source;

/// One run of one topology at one rate.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub topology: String,
    pub cv: f64,
    pub rate_per_s: f64,
    pub seed: u64,
    pub completed: u64,
    pub slo_attainment: f64,
    pub slo_ttft_attainment: f64,
    pub slo_tpot_attainment: f64,
    /// Over the last quarter of arrivals (see [`goodput`]).
    pub slo_attainment_late: f64,
    pub ttft_p90_ms: Option<f64>,
    pub tpot_p90_ms: Option<f64>,
    pub throughput_req_per_s: f64,
}

pub const POINT_HEADER: &str = "topology,cv,rate_per_s,seed,completed,slo_attainment,slo_ttft_attainment,slo_tpot_attainment,slo_attainment_late,ttft_p90_ms,tpot_p90_ms,throughput_req_per_s";

impl Point {
    pub fn csv_row(&self) -> String {
        let opt = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.6}"));
        format!(
            "{},{},{:.6},{},{},{:.4},{:.4},{:.4},{:.4},{},{},{:.3}",
            crate::metrics::format::csv_field(&self.topology),
            self.cv,
            self.rate_per_s,
            self.seed,
            self.completed,
            self.slo_attainment,
            self.slo_ttft_attainment,
            self.slo_tpot_attainment,
            self.slo_attainment_late,
            opt(self.ttft_p90_ms),
            opt(self.tpot_p90_ms),
            self.throughput_req_per_s
        )
    }
}

/// Why a sweep cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// The scenario's arrival pattern at another rate and, when given, another burstiness
/// (gamma with that cv; cv = 1 is Poisson itself, the same arrivals a Poisson scenario draws;
/// cv = 0 is constant arrivals).
pub fn rescaled(scenario: &Scenario, rate_per_s: f64, cv: Option<f64>) -> Result<Scenario, SweepError> {
    let mut s = scenario.clone();
    let Source::Synthetic { arrival, .. } = &mut s.workload.source else {
        return Err(SweepError::Unsupported(
            "a sweep changes the arrival rate, which a trace fixes; use a synthetic arrival pattern".into(),
        ));
    };
    *arrival = match (arrival.clone(), cv) {
        (_, Some(1.0)) => ArrivalPattern::Poisson { rate_per_s },
        (_, Some(0.0)) => ArrivalPattern::Constant { interval_ns: (1e9 / rate_per_s).round().max(1.0) as u64 },
        (_, Some(cv)) => ArrivalPattern::Gamma { rate_per_s, cv },
        (ArrivalPattern::Poisson { .. }, None) => ArrivalPattern::Poisson { rate_per_s },
        (ArrivalPattern::Gamma { cv, .. }, None) => ArrivalPattern::Gamma { rate_per_s, cv },
        (ArrivalPattern::Constant { .. }, None) => {
            ArrivalPattern::Constant { interval_ns: (1e9 / rate_per_s).round().max(1.0) as u64 }
        }
        (ArrivalPattern::Bursts { size, .. }, None) => {
            ArrivalPattern::Bursts { size, every_ns: (size as f64 * 1e9 / rate_per_s).round().max(1.0) as u64 }
        }
    };
    Ok(s)
}

/// The burstiness of the scenario's own arrival pattern: the coefficient of variation of its
/// gaps between arrivals (1 for Poisson, 0 for constant; bursts of n, n − 1 gaps of nothing and
/// one long one, √(n − 1)); `None` for a trace.
pub fn base_cv(scenario: &Scenario) -> Option<f64> {
    match &scenario.workload.source {
        Source::Synthetic { arrival, .. } => Some(match arrival {
            ArrivalPattern::Gamma { cv, .. } => *cv,
            ArrivalPattern::Poisson { .. } => 1.0,
            ArrivalPattern::Constant { .. } => 0.0,
            // Four decimals: a label, not a measurement.
            ArrivalPattern::Bursts { size, .. } => (f64::from(size.saturating_sub(1)).sqrt() * 1e4).round() / 1e4,
        }),
        Source::Trace { .. } => None,
    }
}

/// The scenario's own mean arrival rate.
pub fn base_rate(scenario: &Scenario) -> Option<f64> {
    match &scenario.workload.source {
        Source::Synthetic { arrival, .. } => Some(arrival.rate_per_s()),
        Source::Trace { .. } => None,
    }
}

/// Runs `topology` of `scenario` (already rescaled) with `seed`; CSVs go to a scratch folder.
pub fn run_point(
    scenario: &Scenario,
    backend: &Backend,
    topology: &Topology,
    seed: u64,
    cv: f64,
    scratch: &Path,
) -> Result<Point, SweepError> {
    let mut s = scenario.clone();
    s.seed = seed;
    s.workload.seed = seed;
    let rate = base_rate(&s).unwrap_or(0.0);
    let sum: Summary = summarize_topology(&s, backend, topology, scratch)?;
    Ok(Point {
        topology: topology.name.clone(),
        cv,
        rate_per_s: rate,
        seed,
        completed: sum.completed,
        slo_attainment: sum.slo_attainment,
        slo_ttft_attainment: sum.slo_ttft_attainment,
        slo_tpot_attainment: sum.slo_tpot_attainment,
        slo_attainment_late: sum.slo_attainment_late,
        ttft_p90_ms: sum.ttft_ms.map(|x| x.p90),
        tpot_p90_ms: sum.tpot_ms.map(|x| x.p90),
        throughput_req_per_s: sum.throughput_req_per_s,
    })
}

/// The highest rate at which `meets(rate)` holds, by doubling or halving from `start` to bracket
/// it and then bisecting until the bracket is within `rel_tol` of its top: `(highest rate that
/// met, lowest that failed)`. The first is 0 when even `start / 2^20` fails; the second `None`
/// when `start · 2^20` still met. Assumes attainment falls as the rate rises.
pub fn bisect_rate(
    start: f64,
    rel_tol: f64,
    mut meets: impl FnMut(f64) -> Result<bool, SweepError>,
) -> Result<(f64, Option<f64>), SweepError> {
    let (mut lo, mut hi);
    if meets(start)? {
        lo = start;
        hi = start * 2.0;
        let mut n = 0;
        while meets(hi)? {
            lo = hi;
            hi *= 2.0;
            n += 1;
            if n >= 20 {
                return Ok((lo, None));
            }
        }
    } else {
        hi = start;
        lo = start / 2.0;
        let mut n = 0;
        while !meets(lo)? {
            hi = lo;
            lo /= 2.0;
            n += 1;
            if n >= 20 {
                return Ok((0.0, Some(hi)));
            }
        }
    }
    while (hi - lo) > rel_tol * hi {
        let mid = (lo + hi) / 2.0;
        if meets(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok((lo, Some(hi)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_brackets_and_converges() {
        let cap = 13.7;
        for start in [1.0, 100.0] {
            let (g, hi) = bisect_rate(start, 0.01, |r| Ok(r <= cap)).unwrap();
            let hi = hi.unwrap();
            assert!(g <= cap && g > cap * 0.98 && hi > cap && hi - g <= 0.01 * hi, "{g} {hi}");
        }
        assert_eq!(bisect_rate(1.0, 0.01, |_| Ok(false)).unwrap(), (0.0, Some(1.0 / 2f64.powi(20))));
        assert_eq!(bisect_rate(1.0, 0.01, |_| Ok(true)).unwrap(), (2f64.powi(20), None), "never bracketed");
    }

    #[test]
    fn burstiness_is_the_cv_of_the_gaps_and_cv_1_is_poisson() {
        let gaps = |a: &ArrivalPattern| {
            let mut g = a.gaps();
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
            (0..200_000).map(|_| g.next_gap_ns(&mut rng) as f64).collect::<Vec<_>>()
        };
        let cv_of = |x: Vec<f64>| {
            let m = x.iter().sum::<f64>() / x.len() as f64;
            (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / x.len() as f64).sqrt() / m
        };
        let bursts = ArrivalPattern::Bursts { size: 10, every_ns: 1_000_000 };
        assert!((cv_of(gaps(&bursts)) - 3.0).abs() < 0.01);
        let sc = |arrival: ArrivalPattern| {
            let mut s = crate::scenario::parse(std::path::Path::new("s.toml"), SCENARIO).unwrap();
            let Source::Synthetic { arrival: a, .. } = &mut s.workload.source else { unreachable!() };
            *a = arrival;
            s
        };
        assert_eq!(base_cv(&sc(bursts)), Some(3.0));
        assert_eq!(base_cv(&sc(ArrivalPattern::Constant { interval_ns: 5 })), Some(0.0));
        let poisson = sc(ArrivalPattern::Poisson { rate_per_s: 2.0 });
        assert_eq!(base_cv(&poisson), Some(1.0));
        let as_gamma_1 = rescaled(&poisson, 4.0, Some(1.0)).unwrap();
        let Source::Synthetic { arrival, .. } = &as_gamma_1.workload.source else { unreachable!() };
        assert_eq!(*arrival, ArrivalPattern::Poisson { rate_per_s: 4.0 }, "the same arrivals as the scenario's own");
        let constant = rescaled(&poisson, 4.0, Some(0.0)).unwrap();
        let Source::Synthetic { arrival, .. } = &constant.workload.source else { unreachable!() };
        assert_eq!(*arrival, ArrivalPattern::Constant { interval_ns: 250_000_000 }, "cv 0: constant arrivals");
    }

    const SCENARIO: &str =
        "requests = 10\n[cost_model]\nkind = \"roofline\"\nhardware = \"a100-80gb\"\nmodel = \"llama-2-7b\"\n\
        [[workload.classes]]\nname = \"a\"\nprompt_tokens = 100\noutput_tokens = 10\n\
        [workload.arrival]\nkind = \"poisson\"\nrate_per_s = 2.0\n[slo]\nttft_ms = 100\ntpot_ms = 10\n\
        [[topology]]\nkind = \"fused\"\nworkers = 1\n";
}
