//! The pace of an execute run: how fast the machine ran its steps against what the
//! calibration profile predicts for the very same steps (each step's shape, the idle time before
//! it and the workers beside it, from the run's iterations.csv). A shared machine drifts: a
//! pace of 1.3 means the steps took 30% longer than when the profile was measured, which no
//! model of the serving system can predict, and which a comparison should not blame on it.
//! `pdsim compare` reports the pace and simulates a second time with the profile scaled by it
//! (and with the run's own unsteadiness, read off its back-to-back batch-1 decode steps),
//! separating the machine's drift from the simulator's error.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::engine::sim::noise::Noise;
use crate::engine::sim::quantiles::Quantiles;
use crate::engine::sim::wake::SinceWake;
use crate::engine::sim::CostModel;
use crate::engine::step::{DecodeSlot, PromptChunk, StepPlan};
use crate::scenario::Topology;

/// Median executed ÷ predicted step time, per kind of step (`None`: no step of that kind whose
/// shape the iteration rows determine).
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Pace {
    pub prefill: Option<f64>,
    pub prefill_steps: usize,
    pub decode: Option<f64>,
    pub decode_steps: usize,
    /// How unsteadily the machine ran during the run, read off its back-to-back batch-1 decode
    /// steps as `calibrate` reads it off its own (the median of each figure over pooled runs);
    /// `None` when a run has too few such steps.
    pub noise: Option<Noise>,
    /// The decode steps' pace beside another worker's prefill against alone: whether the
    /// profile charges what a prefilling neighbour costs a decode step.
    pub decode_beside_prefill: Option<BesidePrefill>,
}

/// The median pace of the decode steps that started while another worker was prefilling, and
/// of those that started with no other worker computing. The pace already counts the profile's
/// co-run charge, so `beside ÷ alone` near 1 says the charge is right, above 1 that the
/// neighbour costs more than the profile knows: ×1.00–1.16 on the shipped scenarios' split runs
/// on the Emerald Rapids Xeon, whose calibrations' co-run probe read 0–3%, and ×0.99–1.01 on
/// the AMX Xeon (docs/accuracy.md).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BesidePrefill {
    pub beside: f64,
    pub beside_steps: usize,
    pub alone: f64,
    pub alone_steps: usize,
}

/// Steps each side needs before the comparison is shown.
const MIN_BESIDE_STEPS: usize = 20;

/// Back-to-back batch-1 decode steps a run needs for its unsteadiness to be read: the estimate
/// bins them by 100 ms and needs a few dozen bins.
const MIN_NOISE_STEPS: usize = 300;

/// A decode step counts as back to back when it starts within this of its worker's previous
/// step (a worker's own bookkeeping between steps takes well under a millisecond here).
const BACK_TO_BACK_S: f64 = 0.002;

struct Step {
    worker: String,
    kind: String,
    batch: u64,
    prefill_tokens: u64,
    decode_tokens: u64,
    context: u64,
    start_s: f64,
    end_s: f64,
    ms: f64,
}

fn read_steps(path: &Path) -> std::io::Result<Vec<Step>> {
    let err = |e: csv::Error| std::io::Error::other(format!("{}: {e}", path.display()));
    let mut rd = csv::Reader::from_path(path).map_err(err)?;
    let h = rd.headers().map_err(err)?.clone();
    let col = |c: &str| h.iter().position(|x| x == c).ok_or_else(|| std::io::Error::other(format!("no column {c}")));
    let cols = [
        col("worker")?,
        col("kind")?,
        col("batch_size")?,
        col("prefill_tokens")?,
        col("decode_tokens")?,
        col("context_tokens")?,
        col("start_s")?,
        col("end_s")?,
        col("duration_ms")?,
    ];
    let mut out = Vec::new();
    for rec in rd.records() {
        let rec = rec.map_err(err)?;
        let s = |i: usize| rec.get(cols[i]).unwrap_or("");
        let f = |i: usize| s(i).parse::<f64>().unwrap_or(0.0);
        out.push(Step {
            worker: s(0).to_owned(),
            kind: s(1).to_owned(),
            batch: f(2) as u64,
            prefill_tokens: f(3) as u64,
            decode_tokens: f(4) as u64,
            context: f(5) as u64,
            start_s: f(6),
            end_s: f(7),
            ms: f(8),
        });
    }
    Ok(out)
}

/// What else the machine ran around a step, looked up by time: a run has thousands of steps,
/// and scanning them all for each step made reading a long run's pace quadratic.
struct Neighbours<'a> {
    /// Each worker's steps by start (a worker runs one step at a time, so they do not overlap).
    by_worker: HashMap<&'a str, Vec<&'a Step>>,
    /// Every step's end, in order.
    ends: Vec<f64>,
}

impl<'a> Neighbours<'a> {
    fn new(steps: &'a [Step]) -> Self {
        let mut by_worker: HashMap<&str, Vec<&Step>> = Default::default();
        for s in steps {
            by_worker.entry(&s.worker).or_default().push(s);
        }
        for v in by_worker.values_mut() {
            v.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        }
        let mut ends: Vec<f64> = steps.iter().map(|s| s.end_s).collect();
        ends.sort_by(f64::total_cmp);
        Neighbours { by_worker, ends }
    }

    /// The other workers' steps under way when `s` starts (started at or before it, not ended).
    fn beside(&self, s: &Step) -> Vec<&'a Step> {
        let at = s.start_s;
        let other = self.by_worker.iter().filter(|(w, _)| **w != s.worker.as_str());
        other
            .filter_map(|(_, v)| {
                let started = v.partition_point(|o| o.start_s <= at);
                started.checked_sub(1).map(|i| v[i]).filter(|o| at < o.end_s)
            })
            .collect()
    }

    /// The latest end of any step at or before `t`.
    fn last_end_by(&self, t: f64) -> Option<f64> {
        let n = self.ends.partition_point(|&e| e <= t);
        n.checked_sub(1).map(|i| self.ends[i])
    }
}

/// Executed ÷ predicted time of each step whose shape the iteration rows determine, by kind:
/// what a pace is the median of, kept so that several runs can be pooled.
#[derive(Debug, Clone, Default)]
pub struct Ratios {
    pub prefill: Vec<f64>,
    pub decode: Vec<f64>,
    /// The decode ratios again: of the steps that started beside another worker's prefill, and
    /// of those that started with no other worker computing.
    pub decode_beside_prefill: Vec<f64>,
    pub decode_alone: Vec<f64>,
    /// The unsteadiness of each run pooled here that had enough steps to read it.
    pub noise: Vec<Noise>,
}

impl Ratios {
    pub fn extend(&mut self, other: &Ratios) {
        self.prefill.extend_from_slice(&other.prefill);
        self.decode.extend_from_slice(&other.decode);
        self.decode_beside_prefill.extend_from_slice(&other.decode_beside_prefill);
        self.decode_alone.extend_from_slice(&other.decode_alone);
        self.noise.extend_from_slice(&other.noise);
    }

    pub fn pace(&self) -> Pace {
        let median = |v: &Vec<f64>| (!v.is_empty()).then(|| crate::calibrate::median(v.clone()));
        // The jitter's shape is pooled where every run has one (element-wise medians).
        let shapes: Option<Vec<Quantiles>> = self.noise.iter().map(|n| n.step_shape).collect();
        let noise = median(&self.noise.iter().map(|n| n.slow_sd).collect()).map(|slow_sd| Noise {
            slow_sd,
            corr_ms: crate::calibrate::median(self.noise.iter().map(|n| n.corr_ms).collect()),
            step_sd: crate::calibrate::median(self.noise.iter().map(|n| n.step_sd).collect()),
            step_shape: shapes.as_deref().and_then(Quantiles::median_of),
        });
        Pace {
            prefill_steps: self.prefill.len(),
            decode_steps: self.decode.len(),
            prefill: median(&self.prefill),
            decode: median(&self.decode),
            noise,
            decode_beside_prefill: match (median(&self.decode_beside_prefill), median(&self.decode_alone)) {
                (Some(beside), Some(alone))
                    if self.decode_beside_prefill.len().min(self.decode_alone.len()) >= MIN_BESIDE_STEPS =>
                {
                    Some(BesidePrefill {
                        beside,
                        beside_steps: self.decode_beside_prefill.len(),
                        alone,
                        alone_steps: self.decode_alone.len(),
                    })
                }
                _ => None,
            },
        }
    }
}

/// Each step's executed ÷ predicted time in the run whose `iterations.csv` is given, against
/// `profile` (a calibration profile: each worker's fit by its thread count in `topology`); its
/// [`Ratios::pace`] is the run's pace.
pub fn ratios(iterations: &Path, topology: &Topology, profile: &CostModel) -> std::io::Result<Ratios> {
    let steps = read_steps(iterations)?;
    let neighbours = Neighbours::new(&steps);
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    let (mut beside_prefill, mut alone) = (Vec::new(), Vec::new());
    // Per worker: (start ms, log of executed ÷ predicted) of its back-to-back batch-1 decode steps.
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = Default::default();
    // Each worker's step before the one at hand, in the file's order, and its steps since its
    // last wake step.
    let mut previous_of: HashMap<&str, &Step> = Default::default();
    let mut since_wake: HashMap<&str, SinceWake> = Default::default();
    // Each phase's fit, once (a run has thousands of steps).
    let prefill_cost = profile.for_threads(topology.threads.prefill).ok();
    let decode_cost = profile.for_threads(topology.threads.decode).ok();
    for s in &steps {
        let previous = previous_of.insert(&s.worker, s);
        // As the workers count it: a worker's first step follows an unbounded pause.
        let idle_ns = previous.map_or(u64::MAX, |p| ((s.start_s - p.end_s).max(0.0) * 1e9) as u64);
        let cost = if s.worker.starts_with("decode") { &decode_cost } else { &prefill_cost };
        let Some(cost) = cost else { continue };
        // Every step counts, those not compared too; mixed steps have a prompt in them.
        let after_wake = match cost.wake() {
            Some(w) => since_wake.entry(&s.worker).or_default().next(w, idle_ns, s.kind == "decode"),
            None => 1.0,
        };
        // Prefill steps of one prompt (a batch's Σ L² is not in the rows) and decode steps.
        let mut plan = match s.kind.as_str() {
            "prefill" if s.batch == 1 => StepPlan {
                prefill: vec![PromptChunk { request: 0, offset: 0, tokens: s.prefill_tokens }],
                ..Default::default()
            },
            "decode" if s.decode_tokens > 0 => {
                // Only Σ context matters to the fits.
                let mut d = vec![DecodeSlot { request: 0, context_tokens: 0 }; s.decode_tokens as usize];
                d[0].context_tokens = s.context;
                StepPlan { decode: d, ..Default::default() }
            }
            _ => continue,
        };
        plan.idle_ns = idle_ns;
        let beside = neighbours.beside(s);
        let last_end = neighbours.last_end_by(s.start_s);
        plan.machine_idle_ns = match (beside.is_empty(), last_end) {
            (false, _) => Some(0),
            (true, Some(end)) => Some(((s.start_s - end) * 1e9) as u64),
            (true, None) => None,
        };
        plan.co_running = beside.len() as u32;
        plan.beside_single_decode = beside.iter().any(|o| o.kind == "decode" && o.batch == 1);
        let predicted = cost.step_ns(&plan) as f64 / 1e6 * after_wake;
        if predicted > 0.0 && s.ms > 0.0 {
            let ratio = s.ms / predicted;
            if plan.prefill.is_empty() {
                decode.push(ratio);
                if beside.is_empty() {
                    alone.push(ratio);
                } else if beside.iter().any(|o| o.prefill_tokens > 0) {
                    beside_prefill.push(ratio);
                }
            } else {
                prefill.push(ratio);
            }
            let back_to_back = previous.is_some_and(|p| p.kind == "decode" && s.start_s - p.end_s < BACK_TO_BACK_S);
            if s.kind == "decode" && s.batch == 1 && back_to_back {
                series.entry(&s.worker).or_default().push((s.start_s * 1e3, (s.ms / predicted).ln()));
            }
        }
    }
    // The worker with the longest series speaks for the machine.
    let longest = series.into_values().max_by_key(|v| v.len()).unwrap_or_default();
    let noise = if longest.len() >= MIN_NOISE_STEPS {
        vec![crate::calibrate::steadiness::estimate(&longest)]
    } else {
        Vec::new()
    };
    Ok(Ratios { prefill, decode, decode_beside_prefill: beside_prefill, decode_alone: alone, noise })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sim::linear::{DecodeCoeffs, LinearCost, PrefillCoeffs, Wake};
    use crate::scenario::{Batching, Devices, PhaseTp, Threads, TopologyKind};

    fn topology() -> Topology {
        Topology {
            name: "split".into(),
            kind: TopologyKind::Split {
                prefill_workers: 1,
                decode_workers: 1,
                router: crate::sched::router::RouterKind::RoundRobin,
                link: None,
            },
            batching: Batching {
                prefill_token_budget: 1,
                max_decode_batch: 1,
                kv_capacity_tokens: 1,
                max_queued_requests: None,
                kv_capacity_explicit: false,
            },
            threads: Threads { prefill: 1, decode: 1 },
            devices: Devices::CPU,
            faults: Vec::new(),
            tp: PhaseTp::default(),
        }
    }

    /// A one-thread profile: prefill = 10 + 1·L ms, decode as given.
    fn profile(decode: DecodeCoeffs, wake: Option<Wake>) -> CostModel {
        let cost = LinearCost {
            prefill: PrefillCoeffs { base_ms: 10.0, per_token_ms: 1.0, per_token_sq_ms: 0.0 },
            decode,
            large_batch_decode: None,
            decode_by_batch: None,
            wake,
            co_run: None,
            noise: None,
        };
        CostModel::Profile { fits: vec![(1, cost)], kv_bytes_per_token: 1, handoff_ns: 0, source: "t".into() }
    }

    /// The ratios of a run whose `iterations.csv` reads `csv`, against `profile`.
    fn ratios_of(csv: &str, profile: &CostModel) -> Ratios {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iterations.csv");
        std::fs::write(&path, csv).unwrap();
        ratios(&path, &topology(), profile).unwrap()
    }

    #[test]
    fn steps_twice_as_slow_as_the_profile_give_a_pace_of_two() {
        let decode = DecodeCoeffs { base_ms: 5.0, per_ctx_token_ms: 0.01, per_seq_ms: 1.0 };
        let profile = profile(decode, Some(Wake::flat(100.0, 20.0)));
        // prefill-0: a 50-token prompt, its first step (10 + 50 + 20 wake = 80 ms predicted),
        // then a two-prompt batch (its Σ L² is unknown: skipped); decode-0: batch 2 over 100
        // context tokens (5 + 1 + 2 = 8 ms predicted; its first step also pays the wake-up: 28).
        let csv = "worker,kind,batch_size,prefill_tokens,decode_tokens,context_tokens,kv_used_tokens,queued,start_s,end_s,duration_ms\n\
                   prefill-0,prefill,1,50,0,0,50,0,1.0,1.16,160\n\
                   prefill-0,prefill,2,60,0,0,60,0,1.2,1.3,100\n\
                   decode-0,decode,2,0,2,100,100,0,1.5,1.556,56\n\
                   decode-0,decode,2,0,2,100,100,0,1.556,1.572,16\n";
        let p = ratios_of(csv, &profile).pace();
        assert_eq!((p.prefill_steps, p.decode_steps), (1, 2));
        assert!(p.noise.is_none(), "two decode steps say nothing of the machine's unsteadiness");
        assert!((p.prefill.unwrap() - 2.0).abs() < 1e-9, "{p:?}");
        assert!((p.decode.unwrap() - 2.0).abs() < 1e-9, "{p:?}");
        // The paced profile predicts the executed times.
        let paced = profile.paced(2.0, 2.0).for_threads(1).unwrap();
        let plan = StepPlan { decode: vec![DecodeSlot { request: 0, context_tokens: 50 }; 2], ..Default::default() };
        assert_eq!(paced.step_ns(&plan), 16_000_000);
    }

    #[test]
    fn decode_steps_just_after_a_wake_up_are_read_against_what_they_pay() {
        let decode = DecodeCoeffs { base_ms: 5.0, per_ctx_token_ms: 0.0, per_seq_ms: 5.0 };
        let wake = Wake { decode_after: vec![(1.0, 0.5), (2.0, 0.25)], ..Wake::flat(100.0, 20.0) };
        let profile = profile(decode, Some(wake));
        // decode-0 wakes (10 + 20 ms), then runs its next two steps ×1.5 and ×1.25 and the third
        // at 10 ms: every step at the pace of 1.
        let csv = "worker,kind,batch_size,prefill_tokens,decode_tokens,context_tokens,kv_used_tokens,queued,start_s,end_s,duration_ms\n\
                   decode-0,decode,1,0,1,100,100,0,1.0,1.03,30\n\
                   decode-0,decode,1,0,1,101,100,0,1.03,1.045,15\n\
                   decode-0,decode,1,0,1,102,100,0,1.045,1.0575,12.5\n\
                   decode-0,decode,1,0,1,103,100,0,1.0575,1.0675,10\n";
        let r = ratios_of(csv, &profile);
        assert!(r.decode.iter().all(|x| (x - 1.0).abs() < 1e-9), "{:?}", r.decode);
    }

    #[test]
    fn decode_steps_beside_a_prefill_are_read_against_those_alone() {
        let profile = profile(DecodeCoeffs { base_ms: 9.0, per_ctx_token_ms: 0.0, per_seq_ms: 1.0 }, None);
        // decode-0 runs back-to-back 10 ms steps (the profile's) while no one else computes, and
        // 12 ms steps while prefill-0 computes a long prompt: beside ÷ alone = 1.2.
        let mut csv = String::from(
            "worker,kind,batch_size,prefill_tokens,decode_tokens,context_tokens,kv_used_tokens,queued,start_s,end_s,duration_ms\n",
        );
        let mut at = 10.0;
        for _ in 0..MIN_BESIDE_STEPS {
            csv += &format!("decode-0,decode,1,0,1,100,100,0,{at},{},10\n", at + 0.010);
            at += 0.010;
        }
        csv += &format!("prefill-0,prefill,1,2000,0,0,2000,0,{at},{},2010\n", at + 2.010);
        at += 0.001;
        for _ in 0..MIN_BESIDE_STEPS {
            csv += &format!("decode-0,decode,1,0,1,100,100,0,{at},{},12\n", at + 0.012);
            at += 0.012;
        }
        let b = ratios_of(&csv, &profile).pace().decode_beside_prefill.expect("enough steps each side");
        assert_eq!((b.beside_steps, b.alone_steps), (MIN_BESIDE_STEPS, MIN_BESIDE_STEPS));
        assert!((b.beside / b.alone - 1.2).abs() < 1e-9, "{b:?}");
        // One step fewer beside: too few to say.
        let fewer: String = csv.lines().take(csv.lines().count() - 1).map(|l| format!("{l}\n")).collect();
        assert!(ratios_of(&fewer, &profile).pace().decode_beside_prefill.is_none());
    }

    #[test]
    fn a_run_of_back_to_back_decode_steps_says_how_unsteady_the_machine_was() {
        let profile = profile(DecodeCoeffs { base_ms: 6.0, per_ctx_token_ms: 0.0, per_seq_ms: 1.0 }, None);
        // 2,000 back-to-back batch-1 steps of a 7 ms prediction, timed with a known unsteadiness.
        let truth = Noise::normal(0.06, 300.0, 0.03);
        let mut pace = crate::engine::sim::noise::Pace::new(truth, 3);
        let mut csv = String::from(
            "worker,kind,batch_size,prefill_tokens,decode_tokens,context_tokens,kv_used_tokens,queued,start_s,end_s,duration_ms\n",
        );
        let mut at = 1.0;
        for _ in 0..2000 {
            let ms = 7.0 * pace.factor(0, 7_000_000, true);
            csv += &format!("decode-0,decode,1,0,1,100,100,0,{at},{},{ms}\n", at + ms / 1e3);
            at += ms / 1e3;
        }
        let n = ratios_of(&csv, &profile).pace().noise.expect("enough steps");
        assert!((n.step_sd - 0.03).abs() < 0.006, "{n:?}");
        assert!((n.slow_sd - 0.06).abs() < 0.02, "{n:?}");
        // The run's own noise goes into the paced simulation.
        assert_eq!(profile.with_noise(Some(n)).for_threads(1).unwrap().noise(), Some(n));
    }

    #[test]
    fn neighbours_are_the_other_workers_steps_under_way_and_the_last_end() {
        let step = |worker: &str, kind: &str, start_s: f64, end_s: f64| Step {
            worker: worker.into(),
            kind: kind.into(),
            batch: 1,
            prefill_tokens: 0,
            decode_tokens: 0,
            context: 0,
            start_s,
            end_s,
            ms: (end_s - start_s) * 1e3,
        };
        let steps = vec![
            step("prefill-0", "prefill", 1.0, 2.0),
            step("decode-0", "decode", 1.5, 1.6),
            step("decode-0", "decode", 1.6, 1.7),
            step("prefill-1", "prefill", 0.5, 1.5),
            step("prefill-0", "prefill", 3.0, 3.5),
        ];
        let n = Neighbours::new(&steps);
        let workers = |s: &Step| {
            let mut w: Vec<String> = n.beside(s).iter().map(|o| format!("{}@{}", o.worker, o.start_s)).collect();
            w.sort();
            w
        };
        // decode-0's first step: prefill-0 computes through it; prefill-1 ended just as it began.
        assert_eq!(workers(&steps[1]), ["prefill-0@1"]);
        assert_eq!(workers(&steps[2]), ["prefill-0@1"]);
        // prefill-0's first step began while prefill-1's was under way; its second, alone.
        assert_eq!(workers(&steps[0]), ["prefill-1@0.5"]);
        assert!(workers(&steps[4]).is_empty());
        assert_eq!(n.last_end_by(3.0), Some(2.0));
        assert_eq!(n.last_end_by(1.5), Some(1.5));
        assert_eq!(n.last_end_by(1.4), None);
    }
}
