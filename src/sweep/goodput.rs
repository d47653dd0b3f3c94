//! Goodput: the highest arrival rate a topology sustains with its SLO attainment at the target
//! (DistServe's definition), by bisection, for `pdsim sweep --goodput` and `pdsim search`.
//!
//! A run has a fixed number of requests: it starts with every worker idle and ends when the
//! last one is served. A rate the topology cannot sustain still meets the objectives for many
//! requests while its queue builds, and the fewer the requests the more of them: judged on the
//! attainment over the run alone, a split topology that serves 87 req/s at most passed at
//! 93 req/s with 1,000 requests (attainment 0.1 with 10,000), and a rate with no bound at all
//! (objectives that nothing misses) doubled up to 2²⁰ times the scenario's. So a rate passes
//! only when
//! - it is at most the topology's **capacity**: the rate it completes requests at with all of
//!   them waiting (one run with every request arriving at the same instant and no queue limit,
//!   the middle half of its completions: free of the start, when batches fill, and of the
//!   drain), and
//! - the attainment is at the target, and (simulate mode) a run four times as long, of at least
//!   4,000 requests, meets it too, over all its arrivals and over the **last quarter** of them,
//!   where a queue that keeps growing shows first and the idle start helps least (in execute
//!   mode, the run's own last quarter).

use std::path::Path;

use serde::Serialize;

use super::stats::{estimate, Estimate};
use super::{bisect_rate, rescaled, run_point, SweepError};
use crate::run::{summarize_topology, Backend};
use crate::scenario::{Mode, Scenario, Topology};
use crate::workload::arrival::ArrivalPattern;
use crate::workload::{Source, StopAfter};

/// What keeps a topology from a higher rate: the reason the lowest rate that failed failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The rate is more than the topology completes requests at.
    Capacity,
    /// Too few requests met the TTFT objective.
    Ttft,
    /// Too few met the TPOT objective.
    Tpot,
    /// Too few met both together (each alone may have been met often enough).
    TtftAndTpot,
    /// The run as a whole met the target but the requests that arrived last did not: a queue
    /// that builds.
    Queue,
}

impl Limit {
    pub fn label(self) -> &'static str {
        match self {
            Limit::Capacity => "capacity",
            Limit::Ttft => "ttft",
            Limit::Tpot => "tpot",
            Limit::TtftAndTpot => "ttft+tpot",
            Limit::Queue => "queue",
        }
    }
}

/// JSON writes the label the tables and CSVs show.
impl Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

/// What the `limited by` column of `search` and `sweep --goodput` means.
pub const LIMITS: &str = "limited by: what the next rate up fails on. capacity: more than the topology completes \
with every request waiting (capacity req/s); ttft, tpot, ttft+tpot: too few requests meet that objective; queue: \
the run meets the target but its last quarter of arrivals does not (a queue that keeps growing).";

/// The limit most seeds found (the first of those tied).
pub fn most_common(limits: &[Limit]) -> Option<Limit> {
    let n = |l: &Limit| limits.iter().filter(|x| *x == l).count();
    limits.iter().copied().fold(None, |best, l| match best {
        Some(b) if n(&b) >= n(&l) => Some(b),
        _ => Some(l),
    })
}

/// A topology's goodput over seeds, as `sweep --goodput` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct OverSeeds {
    pub topology: String,
    pub cv: f64,
    pub goodput_req_per_s: Estimate,
    pub capacity_req_per_s: Estimate,
    /// The mean goodput per [`OverSeeds::unit`].
    pub goodput_per_unit_req_per_s: f64,
    /// `GPU` (a simulated GPU cost model: a worker of tensor-parallel degree k is k GPUs) or
    /// `worker`.
    pub unit: &'static str,
    /// The limit most seeds found.
    pub limited_by: Option<Limit>,
}

impl OverSeeds {
    pub fn new(topology: &Topology, cv: f64, seeds: &[Goodput], gpus: bool) -> OverSeeds {
        let goodput = estimate(&seeds.iter().map(|g| g.req_per_s).collect::<Vec<_>>());
        let units = if gpus { crate::search::gpus_of(topology) } else { topology.workers() };
        OverSeeds {
            topology: topology.name.clone(),
            cv,
            goodput_req_per_s: goodput,
            capacity_req_per_s: estimate(&seeds.iter().map(|g| g.capacity_req_per_s).collect::<Vec<_>>()),
            goodput_per_unit_req_per_s: goodput.mean / f64::from(units.max(1)),
            unit: if gpus { "GPU" } else { "worker" },
            limited_by: most_common(&seeds.iter().map(|g| g.limit).collect::<Vec<_>>()),
        }
    }

    pub fn limit_label(&self) -> &'static str {
        self.limited_by.map_or("", Limit::label)
    }
}

/// One topology's goodput for one seed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Goodput {
    pub req_per_s: f64,
    /// The rate the topology completes requests at with all of them waiting.
    pub capacity_req_per_s: f64,
    pub limit: Limit,
    /// Simulations run, the capacity's included.
    pub runs: usize,
}

/// The scenario with every request arriving at the same instant (1 ns apart, a least-loaded
/// router saw no load yet and sent 999 of 1,000 to one worker).
fn all_at_once(scenario: &Scenario) -> Result<Scenario, SweepError> {
    let mut s = scenario.clone();
    let Source::Synthetic { arrival, .. } = &mut s.workload.source else {
        return Err(SweepError::Unsupported(
            "goodput changes the arrival rate, which a trace fixes; use a synthetic arrival pattern".into(),
        ));
    };
    *arrival = ArrivalPattern::Bursts { size: u32::MAX, every_ns: u64::MAX / 2 };
    Ok(s)
}

/// The rate `topology` completes requests at with all of them waiting: the middle half of the
/// completions of a run where every request arrives at once (the whole run's rate when it
/// completed fewer than eight). With too few requests for the topology's batches, most of them
/// finish together and the middle half reads high (a 2 × tp8 fused placement: 1,492 req/s with
/// 200 requests, 548 with 1,000, where runs of 30,000 at 560 and 600 req/s served 551 and 552):
/// while the middle half's rate is more than [`BUNCHED`] times the whole run's, a simulated
/// capacity run takes four times the requests, up to 64 times the scenario's.
pub fn capacity(
    scenario: &Scenario,
    backend: &Backend,
    topology: &Topology,
    seed: u64,
    scratch: &Path,
) -> Result<(f64, usize), SweepError> {
    let mut s = all_at_once(scenario)?;
    // Every request waits: a queue limit would reject nearly all of them (33 of 3,000 completed
    // with a limit of 16).
    let mut topology = topology.clone();
    topology.batching.max_queued_requests = None;
    s.seed = seed;
    s.workload.seed = seed;
    // A run of a duration takes as many requests as the scenario's rate brings in it.
    let first = match scenario.workload.stop {
        StopAfter::Requests(n) => n,
        StopAfter::DurationNs(d) => (super::base_rate(scenario).unwrap_or(1.0) * d as f64 / 1e9).ceil().max(1.0) as u64,
        StopAfter::EndOfTrace => unreachable!("all_at_once refuses a trace"),
    };
    // Simulated, at least CAPACITY_MIN_REQUESTS: with 5 requests the run's own latency read as
    // the capacity.
    let first = if s.mode == Mode::Simulate { first.max(CAPACITY_MIN_REQUESTS) } else { first };
    let (mut n, mut runs) = (first, 0);
    loop {
        s.workload.stop = StopAfter::Requests(n);
        runs += 1;
        let sum = summarize_topology(&s, backend, &topology, scratch)?;
        let whole = sum.throughput_req_per_s;
        let steady = sum.steady_req_per_s;
        let bunched = steady.is_none_or(|r| r > BUNCHED * whole);
        if bunched && s.mode == Mode::Simulate && n < 16 * first {
            n *= 4;
        } else {
            return Ok((steady.unwrap_or(whole), runs));
        }
    }
}

/// How far the middle half's completion rate may exceed the whole run's in a capacity run
/// before it counts as too few requests (with enough, about ×1.1: the start and the drain).
const BUNCHED: f64 = 1.5;

/// The fewest requests of a simulated capacity run.
const CAPACITY_MIN_REQUESTS: u64 = 1000;

/// The goodput of `topology` for `seed`, the bisection starting from `start` req/s (or the
/// capacity, if lower), with the scenario's arrivals at each rate (gamma of `cv` when given),
/// to within 2%.
#[allow(clippy::too_many_arguments)]
pub fn goodput(
    scenario: &Scenario,
    backend: &Backend,
    topology: &Topology,
    seed: u64,
    cv: Option<f64>,
    start: f64,
    target: f64,
    scratch: &Path,
) -> Result<Goodput, SweepError> {
    let (capacity, runs) = capacity(scenario, backend, topology, seed, scratch)?;
    if capacity <= 0.0 {
        return Ok(Goodput { req_per_s: 0.0, capacity_req_per_s: 0.0, limit: Limit::Capacity, runs });
    }
    // The last quarter is judged on the confirming run only (simulate mode), whose last quarter
    // holds 1,000 requests or more: the 250 of a 1,000-request run read low by chance (a fused
    // placement's 0.884 where 20,000 requests at that rate gave 0.958) and biased goodputs down.
    let late = scenario.mode != Mode::Simulate;
    let mut j = Judge { backend, topology, seed, cv, target, scratch, capacity, runs, late, failed: Vec::new() };
    let (mut lo, mut hi) = bisect_rate(start.min(capacity), 0.02, |r| j.meets(scenario, r))?;
    if lo > 0.0 && scenario.mode == Mode::Simulate {
        let long = longer(scenario, CONFIRM_FACTOR);
        j.late = true;
        if !j.meets(&long, lo)? {
            (lo, hi) = j.below(&long, lo)?;
        }
    }
    // The search ends on a failed rate above the goodput; past the capacity it always does.
    let limit = hi.and_then(|h| j.failed.iter().rev().find(|f| f.0 == h)).map_or(Limit::Capacity, |f| f.1);
    Ok(Goodput { req_per_s: lo, capacity_req_per_s: capacity, limit, runs: j.runs })
}

/// A run this many times as long, and of at least [`CONFIRM_MIN_REQUESTS`], confirms the
/// goodput (simulate mode): near the capacity the queue takes long to build. 6 prefill + 2
/// decode A100s on heavy_light passed at 39 req/s with 1,000 requests (attainment 0.92), where
/// 4,000 gave 0.72 and 20,000 0.54; at 37, 0.98, 0.92 and 0.89; at 35, 0.98, 0.97 and 0.97.
/// With the last quarter judged too, 4,000 requests put the goodput where 20,000 do (36 req/s);
/// 2,000 put it at 38.
const CONFIRM_FACTOR: u64 = 4;
const CONFIRM_MIN_REQUESTS: u64 = 4000;

/// The scenario with `k` times the requests (at least [`CONFIRM_MIN_REQUESTS`]) or duration.
fn longer(scenario: &Scenario, k: u64) -> Scenario {
    let mut s = scenario.clone();
    s.workload.stop = match s.workload.stop {
        StopAfter::Requests(n) => StopAfter::Requests((n * k).max(CONFIRM_MIN_REQUESTS)),
        StopAfter::DurationNs(d) => StopAfter::DurationNs(d * k),
        StopAfter::EndOfTrace => StopAfter::EndOfTrace,
    };
    s
}

/// Runs one topology at given rates and says whether each meets the target, counting runs and
/// keeping the reason of each failure.
struct Judge<'a> {
    backend: &'a Backend,
    topology: &'a Topology,
    seed: u64,
    cv: Option<f64>,
    target: f64,
    scratch: &'a Path,
    capacity: f64,
    runs: usize,
    /// Whether the last quarter of arrivals is judged.
    late: bool,
    failed: Vec<(f64, Limit)>,
}

impl Judge<'_> {
    fn meets(&mut self, scenario: &Scenario, rate: f64) -> Result<bool, SweepError> {
        let limit = if rate > self.capacity {
            Some(Limit::Capacity)
        } else {
            self.runs += 1;
            let mut s = rescaled(scenario, rate, self.cv)?;
            // A confirming run of a duration brings CONFIRM_MIN_REQUESTS at least.
            if let (true, Mode::Simulate, StopAfter::DurationNs(d)) = (self.late, s.mode, s.workload.stop) {
                let at_least = (CONFIRM_MIN_REQUESTS as f64 / rate * 1e9).ceil() as u64;
                s.workload.stop = StopAfter::DurationNs(d.max(at_least));
            }
            let p = run_point(&s, self.backend, self.topology, self.seed, self.cv.unwrap_or(1.0), self.scratch)?;
            let late = if self.late { p.slo_attainment_late } else { 1.0 };
            judge(p.slo_attainment, p.slo_ttft_attainment, p.slo_tpot_attainment, late, self.target)
        };
        if let Some(l) = limit {
            self.failed.push((rate, l));
        }
        Ok(limit.is_none())
    }

    /// The goodput below `failed`, a rate that did not meet the target: down 4% at a time (the
    /// goodput is usually a few percent lower), then to within 2%; by halving below 66%.
    fn below(&mut self, scenario: &Scenario, failed: f64) -> Result<(f64, Option<f64>), SweepError> {
        let (mut top, mut r) = (failed, failed * 0.96);
        for _ in 0..10 {
            if self.meets(scenario, r)? {
                while top - r > 0.02 * top {
                    let mid = (r + top) / 2.0;
                    if self.meets(scenario, mid)? {
                        r = mid;
                    } else {
                        top = mid;
                    }
                }
                return Ok((r, Some(top)));
            }
            top = r;
            r *= 0.96;
        }
        bisect_rate(r, 0.02, |x| self.meets(scenario, x))
    }
}

/// Why a run's attainments fail the target, `None` when they meet it.
fn judge(both: f64, ttft: f64, tpot: f64, late: f64, target: f64) -> Option<Limit> {
    if both >= target {
        return (late < target).then_some(Limit::Queue);
    }
    Some(match (ttft < target, tpot < target) {
        (true, false) => Limit::Ttft,
        (false, true) => Limit::Tpot,
        _ => Limit::TtftAndTpot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_names_the_objective_it_missed() {
        assert_eq!(judge(0.95, 0.95, 1.0, 0.92, 0.9), None);
        assert_eq!(judge(0.95, 0.95, 1.0, 0.6, 0.9), Some(Limit::Queue));
        assert_eq!(judge(0.5, 0.5, 1.0, 0.2, 0.9), Some(Limit::Ttft));
        assert_eq!(judge(0.5, 1.0, 0.5, 0.2, 0.9), Some(Limit::Tpot));
        assert_eq!(judge(0.5, 0.6, 0.6, 0.2, 0.9), Some(Limit::TtftAndTpot));
        assert_eq!(judge(0.85, 0.92, 0.93, 0.2, 0.9), Some(Limit::TtftAndTpot), "each met, not both");
        assert_eq!(most_common(&[Limit::Ttft, Limit::Queue, Limit::Queue]), Some(Limit::Queue));
        assert_eq!(most_common(&[Limit::Tpot, Limit::Queue]), Some(Limit::Tpot));
        assert_eq!(most_common(&[]), None);
    }
}
