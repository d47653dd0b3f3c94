//! Placement search: for a GPU budget, enumerate fused and split placements (worker counts and
//! each phase's tensor-parallel degree), find each one's goodput by simulation (the highest
//! arrival rate whose SLO attainment stays at the target, by bisection), and rank them by
//! goodput per GPU, as DistServe's placement search and AIConfigurator's xPyD search do.
//!
//! Candidates run in parallel (one simulation per thread at a time); every simulation of one
//! candidate uses the same seeded requests, so candidates are compared on equal terms.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::run::Backend;
use crate::scenario::{Batching, PhaseTp, Scenario, Topology, TopologyKind};
use crate::sched::fused::FusedPolicy;
use crate::sched::link::Link;
use crate::sched::router::RouterKind;
use crate::sweep::goodput::{goodput, Limit};
use crate::sweep::{base_rate, SweepError};

/// What to search over.
#[derive(Debug, Clone)]
pub struct Space {
    pub gpus: u32,
    /// Tensor-parallel degrees to try for each phase.
    pub tps: Vec<u32>,
    /// The policy and router of fused candidates.
    pub fused_policy: FusedPolicy,
    pub fused_router: RouterKind,
    /// The router and link of split candidates.
    pub router: RouterKind,
    pub link: Option<Link>,
    /// Only placements that use every GPU (the usual question); otherwise any that fit.
    pub use_all: bool,
    /// The batching limits of fused candidates and of split ones.
    pub fused_batching: Batching,
    pub split_batching: Batching,
}

/// Every placement within the budget. Fused: `w` workers of `tp` GPUs. Split: `p` prefill
/// workers of `tp_p` GPUs and `d` decode workers of `tp_d`.
pub fn candidates(space: &Space) -> Vec<Topology> {
    let n = space.gpus;
    let fits = |used: u32| used <= n && (!space.use_all || used == n);
    let mut out = Vec::new();
    for &tp in &space.tps {
        for w in 1..=n / tp {
            if fits(w * tp) {
                out.push(topology(
                    format!("fused-{w}x{tp}"),
                    TopologyKind::Fused { workers: w, policy: space.fused_policy, router: space.fused_router },
                    PhaseTp { prefill: Some(tp), decode: Some(tp) },
                    space.fused_batching,
                ));
            }
        }
    }
    for &tp_p in &space.tps {
        for &tp_d in &space.tps {
            for p in 1..=n / tp_p {
                for d in decode_counts(space, p * tp_p, tp_d) {
                    if fits(p * tp_p + d * tp_d) {
                        out.push(topology(
                            format!("split-{p}x{tp_p}p-{d}x{tp_d}d"),
                            TopologyKind::Split {
                                prefill_workers: p,
                                decode_workers: d,
                                router: space.router,
                                link: space.link,
                            },
                            PhaseTp { prefill: Some(tp_p), decode: Some(tp_d) },
                            space.split_batching,
                        ));
                    }
                }
            }
        }
    }
    out
}

/// How many placements [`candidates`] gives, without making them: a budget of thousands of GPUs
/// has millions.
pub fn count(space: &Space) -> u64 {
    let n = space.gpus;
    let fused: u64 = space
        .tps
        .iter()
        .map(|&tp| if space.use_all { u64::from(n.is_multiple_of(tp)) } else { u64::from(n / tp) })
        .sum();
    let mut split = 0u64;
    for &tp_p in &space.tps {
        for &tp_d in &space.tps {
            for p in 1..=n / tp_p {
                let d = decode_counts(space, p * tp_p, tp_d);
                if !d.is_empty() {
                    split += u64::from(d.end() - d.start() + 1);
                }
            }
        }
    }
    fused + split
}

/// The decode worker counts of `tp_d` GPUs each beside prefill workers taking `used` GPUs: the
/// one that fills the budget, or with idle GPUs allowed every count that fits.
fn decode_counts(space: &Space, used: u32, tp_d: u32) -> std::ops::RangeInclusive<u32> {
    let left = space.gpus.saturating_sub(used);
    match (space.use_all, left.is_multiple_of(tp_d)) {
        (false, _) => 1..=left / tp_d,
        (true, true) if left > 0 => left / tp_d..=left / tp_d,
        #[allow(clippy::reversed_empty_ranges)]
        (true, _) => 1..=0,
    }
}

fn topology(name: String, kind: TopologyKind, tp: PhaseTp, batching: Batching) -> Topology {
    Topology {
        name,
        kind,
        batching,
        threads: crate::scenario::Threads { prefill: 1, decode: 1 },
        devices: crate::scenario::Devices::CPU,
        faults: Vec::new(),
        tp,
    }
}

/// One candidate's result.
#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    pub name: String,
    pub layout: String,
    pub gpus: u32,
    pub prefill_tp: u32,
    pub decode_tp: u32,
    /// Requests/s at which SLO attainment stays at the target (0: not even at a trickle).
    pub goodput_req_per_s: f64,
    pub goodput_per_gpu: f64,
    /// The rate it completes requests at with all of them waiting: no goodput is above it.
    pub capacity_req_per_s: f64,
    /// What keeps it from a higher rate.
    pub limit: Limit,
    /// Simulations run (the capacity's and the bisection's).
    pub runs: usize,
}

/// GPUs a topology uses.
pub fn gpus_of(t: &Topology) -> u32 {
    let (p, d) = (t.tp.prefill.unwrap_or(1), t.tp.decode.unwrap_or(1));
    match t.kind {
        TopologyKind::Fused { workers, .. } => workers * p,
        TopologyKind::Split { prefill_workers, decode_workers, .. } => prefill_workers * p + decode_workers * d,
    }
}

/// Evaluates every candidate (in parallel) and returns them best first (goodput per GPU,
/// then goodput). `progress` is called after each candidate with (done, total).
pub fn search(
    base: &Scenario,
    backend: &Backend,
    candidates: Vec<Topology>,
    scratch: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Ranked>, SweepError> {
    let start = base_rate(base)
        .ok_or_else(|| SweepError::Unsupported("placement search needs a synthetic arrival pattern".into()))?;
    let target = base.slo.attainment;
    let total = candidates.len();
    let done = AtomicUsize::new(0);
    let mut ranked = candidates
        .into_par_iter()
        .enumerate()
        .map(|(i, t)| {
            let first = &base.topologies[0];
            let dir = scratch.join(format!("c{i}"));
            let gpus = gpus_of(&t);
            // Start near where a placement of this size should saturate: the scenario's rate
            // scaled by its share of GPUs (or its capacity, if lower).
            let base_gpus = gpus_of(first).max(1);
            let from = start * gpus as f64 / base_gpus as f64;
            let g = goodput(base, backend, &t, base.seed, None, from, target, &dir)?;
            let _ = std::fs::remove_dir_all(&dir);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            Ok(Ranked {
                name: t.name.clone(),
                layout: t.layout(),
                gpus,
                prefill_tp: t.tp.prefill.unwrap_or(1),
                decode_tp: t.tp.decode.unwrap_or(1),
                goodput_req_per_s: g.req_per_s,
                goodput_per_gpu: g.req_per_s / gpus as f64,
                capacity_req_per_s: g.capacity_req_per_s,
                limit: g.limit,
                runs: g.runs,
            })
        })
        .collect::<Result<Vec<_>, SweepError>>()?;
    ranked.sort_by(|a, b| {
        b.goodput_per_gpu.total_cmp(&a.goodput_per_gpu).then(b.goodput_req_per_s.total_cmp(&a.goodput_req_per_s))
    });
    Ok(ranked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(gpus: u32, tps: &[u32], use_all: bool) -> Space {
        let batching = Batching {
            prefill_token_budget: 4096,
            max_decode_batch: 128,
            kv_capacity_tokens: 100_000,
            max_queued_requests: None,
            kv_capacity_explicit: false,
        };
        Space {
            gpus,
            tps: tps.to_vec(),
            fused_policy: FusedPolicy::PrefillFirst,
            fused_router: RouterKind::LeastLoaded,
            router: RouterKind::RoundRobin,
            link: None,
            use_all,
            fused_batching: Batching { max_decode_batch: 64, ..batching },
            split_batching: batching,
        }
    }

    #[test]
    fn candidates_fill_the_budget() {
        let all = candidates(&space(4, &[1, 2], true));
        let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "fused-4x1",
                "fused-2x2",
                "split-1x1p-3x1d",
                "split-2x1p-2x1d",
                "split-3x1p-1x1d",
                "split-2x1p-1x2d",
                "split-1x2p-2x1d",
                "split-1x2p-1x2d"
            ]
        );
        assert!(all.iter().all(|t| gpus_of(t) == 4));
        // Up to the budget instead of exactly: many more.
        assert!(candidates(&space(8, &[1, 2, 4, 8], false)).len() > 50);
    }

    #[test]
    fn fused_and_split_candidates_take_their_own_router_and_batching() {
        for t in candidates(&space(4, &[1, 2], true)) {
            let (router, expected) = match t.kind {
                TopologyKind::Fused { router, .. } => (router, (RouterKind::LeastLoaded, 64)),
                TopologyKind::Split { router, .. } => (router, (RouterKind::RoundRobin, 128)),
            };
            assert_eq!((router, t.batching.max_decode_batch), expected, "{}", t.name);
        }
    }

    #[test]
    fn the_count_is_the_candidates_without_making_them() {
        for gpus in [1, 3, 4, 7, 16] {
            for use_all in [true, false] {
                for tps in [&[1u32][..], &[1, 2, 4, 8], &[2, 3]] {
                    let s = space(gpus, tps, use_all);
                    assert_eq!(count(&s), candidates(&s).len() as u64, "{gpus} GPUs, tp {tps:?}, all {use_all}");
                }
            }
        }
        // A budget of a hundred thousand GPUs is counted at once, not enumerated.
        assert_eq!(count(&space(100_000, &[1, 2, 4, 8], true)), 462_488);
    }
}
