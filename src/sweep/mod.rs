//! Rate sweeps and goodput: SLO attainment as a function of the arrival rate (and burstiness),
//! and the highest rate each topology sustains with attainment at or above the target, found by
//! bisection (DistServe's definition of goodput), over several seeds with a confidence interval.

pub mod stats;

use std::path::Path;

use serde::Serialize;

use crate::metrics::summary::Summary;
use crate::run::{run_topology, Backend, RunError};
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
    pub ttft_p90_ms: Option<f64>,
    pub tpot_p90_ms: Option<f64>,
    pub throughput_req_per_s: f64,
}

pub const POINT_HEADER: &str = "topology,cv,rate_per_s,seed,completed,slo_attainment,slo_ttft_attainment,slo_tpot_attainment,ttft_p90_ms,tpot_p90_ms,throughput_req_per_s";

impl Point {
    pub fn csv_row(&self) -> String {
        let opt = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.6}"));
        format!(
            "{},{},{:.6},{},{},{:.4},{:.4},{:.4},{},{},{:.3}",
            crate::metrics::format::csv_field(&self.topology),
            self.cv,
            self.rate_per_s,
            self.seed,
            self.completed,
            self.slo_attainment,
            self.slo_ttft_attainment,
            self.slo_tpot_attainment,
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
/// (gamma with that cv; cv = 1 is Poisson).
pub fn rescaled(scenario: &Scenario, rate_per_s: f64, cv: Option<f64>) -> Result<Scenario, SweepError> {
    let mut s = scenario.clone();
    let Source::Synthetic { arrival, .. } = &mut s.workload.source else {
        return Err(SweepError::Unsupported(
            "a sweep changes the arrival rate, which a trace fixes; use a synthetic arrival pattern".into(),
        ));
    };
    *arrival = match (arrival.clone(), cv) {
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

/// The burstiness of the scenario's own arrival pattern.
pub fn base_cv(scenario: &Scenario) -> f64 {
    match &scenario.workload.source {
        Source::Synthetic { arrival: ArrivalPattern::Gamma { cv, .. }, .. } => *cv,
        Source::Synthetic { arrival: ArrivalPattern::Poisson { .. }, .. } => 1.0,
        _ => 0.0,
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
    let sum: Summary = run_topology(&s, backend, topology, scratch, false)?;
    Ok(Point {
        topology: topology.name.clone(),
        cv,
        rate_per_s: rate,
        seed,
        completed: sum.completed,
        slo_attainment: sum.slo_attainment,
        slo_ttft_attainment: sum.slo_ttft_attainment,
        slo_tpot_attainment: sum.slo_tpot_attainment,
        ttft_p90_ms: sum.ttft_ms.map(|x| x.p90),
        tpot_p90_ms: sum.tpot_ms.map(|x| x.p90),
        throughput_req_per_s: sum.throughput_req_per_s,
    })
}

/// The highest rate at which `meets(rate)` holds, by doubling or halving from `start` to bracket
/// it and then bisecting until the bracket is within `rel_tol` of its top. Returns 0 when even
/// `start / 2^20` fails. Assumes attainment falls as the rate rises.
pub fn bisect_rate(
    start: f64,
    rel_tol: f64,
    mut meets: impl FnMut(f64) -> Result<bool, SweepError>,
) -> Result<f64, SweepError> {
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
                return Ok(lo);
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
                return Ok(0.0);
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
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_brackets_and_converges() {
        let cap = 13.7;
        let g = bisect_rate(1.0, 0.01, |r| Ok(r <= cap)).unwrap();
        assert!(g <= cap && g > cap * 0.98, "{g}");
        let g = bisect_rate(100.0, 0.01, |r| Ok(r <= cap)).unwrap();
        assert!(g <= cap && g > cap * 0.98, "{g}");
        assert_eq!(bisect_rate(1.0, 0.01, |_| Ok(false)).unwrap(), 0.0);
    }
}
