//! `pdsim compare`: one scenario executed for real and simulated with a calibration profile,
//! request by request. The simulation replays the execute run's own trace (its arrivals and
//! the lengths that really ran), so the two see the same requests; what differs is only how
//! long things take. Per topology: a side-by-side CSV, the relative error of p50/p90 TTFT,
//! TPOT and E2E, and the error split by phase (queueing, prefill, KV transfer, decode) to say
//! where a gap comes from.

pub mod attempts;
pub mod pace;
pub mod rank;
pub mod reuse;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::metrics::percentile::{nearest_rank, Spread};
use crate::metrics::sink::CsvFile;
use crate::run::{run_topology, Backend, RunError};
use crate::scenario::{Mode, Scenario, Topology};
use crate::workload::trace::{read_trace, TraceFormat};
use crate::workload::{Source, StopAfter, Workload};

/// One metric, executed vs simulated.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub metric: String,
    pub executed: f64,
    pub simulated: f64,
    /// (simulated − executed) / executed.
    pub relative_error: f64,
    /// With several runs: how the metric moved from one run to the next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub across_runs: Option<AcrossRuns>,
    /// For a percentile: where the executed figure falls in the simulated distribution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<rank::Rank>,
}

/// One metric over the runs of a repeated comparison, each run taken alone.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AcrossRuns {
    /// The executed figure's lowest and highest value over the runs (ms).
    pub executed_min: f64,
    pub executed_max: f64,
    /// (max − min) / median of the executed figure: how far the machine alone moves it when
    /// the same requests run again, below which no simulator's error can be judged.
    pub executed_spread: f64,
    /// The relative error's lowest and highest value over the runs.
    pub error_min: f64,
    pub error_max: f64,
}

/// The goals: simulation within 5% of execution at p50 and 10% at p90.
pub const GOAL_P50: f64 = 0.05;
pub const GOAL_P90: f64 = 0.10;

impl Pair {
    /// Whether a percentile is within its goal (`None` for other metrics).
    pub fn within_goal(&self) -> Option<bool> {
        let goal = match self.percentile()? {
            p if p <= 50.0 => GOAL_P50,
            _ => GOAL_P90,
        };
        Some(self.relative_error.abs() <= goal)
    }

    fn new(metric: &str, executed: f64, simulated: f64) -> Pair {
        let relative_error = if executed != 0.0 { (simulated - executed) / executed } else { 0.0 };
        Pair { metric: metric.into(), executed, simulated, relative_error, across_runs: None, rank: None }
    }

    /// The percentile this pair is of (50 for `ttft_ms p50`), if it is one.
    pub fn percentile(&self) -> Option<f64> {
        self.metric.rsplit_once(" p").and_then(|(_, p)| p.parse().ok())
    }
}

/// How many percentiles are within their goal, and how many executed ones rank within sampling
/// of where they belong in the simulated distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Percentiles compared (p50 and p90 of TTFT, TPOT and E2E).
    pub figures: usize,
    pub as_calibrated: usize,
    /// At the run's pace (0 also when it could not be measured).
    pub at_the_runs_pace: usize,
    pub rank_within_sampling: usize,
}

impl Tally {
    pub fn of(c: &TopologyComparison) -> Tally {
        let count = |v: &[Pair]| v.iter().filter(|p| p.within_goal() == Some(true)).count();
        let ranked = c.percentiles.iter().filter(|p| p.rank.zip(p.percentile()).is_some_and(|(r, q)| r.within_band(q)));
        Tally {
            figures: c.percentiles.len(),
            as_calibrated: count(&c.percentiles),
            at_the_runs_pace: count(&c.paced),
            rank_within_sampling: ranked.count(),
        }
    }
}

impl std::ops::Add for Tally {
    type Output = Tally;

    fn add(self, o: Tally) -> Tally {
        Tally {
            figures: self.figures + o.figures,
            as_calibrated: self.as_calibrated + o.as_calibrated,
            at_the_runs_pace: self.at_the_runs_pace + o.at_the_runs_pace,
            rank_within_sampling: self.rank_within_sampling + o.rank_within_sampling,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TopologyComparison {
    pub topology: String,
    /// Executions compared (`compare --repeat`); the figures pool their requests.
    pub runs: usize,
    pub requests: usize,
    /// p50 and p90 of TTFT, TPOT and E2E (ms).
    pub percentiles: Vec<Pair>,
    /// Mean time per phase (ms): where the difference comes from.
    pub phases: Vec<Pair>,
    /// How fast the machine ran the executed steps against the profile.
    pub pace: pace::Pace,
    /// The same for each executed run alone: which runs the machine slowed (a run that lost a
    /// fifth of the CPU to the hypervisor can run its steps ×1.3–1.7 where the others ran ×1.0).
    pub pace_by_run: Vec<pace::Pace>,
    /// The percentiles again, simulated with the profile scaled by the run's pace (empty when
    /// the pace could not be measured).
    pub paced: Vec<Pair>,
    /// Per executed run, the share of the machine's CPU time the hypervisor took while it ran
    /// (`None` where the run did not record it): what slowed the machine, when the pace says
    /// it ran slow.
    pub cpu_stolen: Vec<Option<f64>>,
    /// Per executed run, how many times it was executed to find one the hypervisor left alone
    /// (`compare --max-stolen`; empty without it).
    pub attempts: Vec<attempts::Attempts>,
    /// Earlier runs left out (`compare --executed` with `--max-stolen`): the hypervisor took
    /// more than the bound while they executed.
    pub left_out: Vec<reuse::LeftOut>,
}

/// One execution of a topology beside its simulations, request by request.
pub struct RunPairs {
    /// (executed, simulated) per request, for each draw of the machine's noise in turn (the
    /// executed side repeats: nearest-rank percentiles and means of the pool are its own).
    pairs: Vec<(Times, Times)>,
    /// (executed, simulated at the run's pace), the same way; empty when the pace could not be
    /// measured.
    paced: Vec<(Times, Times)>,
    /// Simulations per execution: one, or [`NOISE_DRAWS`] when the profile has noise.
    draws: usize,
    /// The same for the paced simulation, whose noise may be the run's own.
    paced_draws: usize,
    ratios: pace::Ratios,
    /// The share of CPU time stolen during the execution, where it was recorded.
    stolen: Option<f64>,
}

/// Simulations of each execution when the profile says how unsteady the machine is: each draws
/// the noise anew (seeded), and a simulated figure is the median of the draws' own (see
/// [`percentiles`]), so that it is the model's rather than one draw's. With eight draws of a
/// 12-request run, simulating the same executions again with other seeds moved single figures
/// by up to 9 points (heavy_light's fused TPOT p50 at the run's pace from −0.9% to +8.2%); a
/// draw of such a run simulates in about a millisecond, against tens of seconds to execute it.
pub const NOISE_DRAWS: usize = 64;

/// A request's times from one run (ms).
#[derive(Debug, Clone, Copy, Default)]
struct Times {
    ttft: f64,
    tpot: Option<f64>,
    e2e: f64,
    queue: f64,
    prefill: f64,
    transfer: f64,
}

/// A completed request: id, class, prompt tokens, tokens produced, times.
type Row = (u64, String, u64, u64, Times);

/// Reads one metric of a request's times.
type Metric<'a> = (&'a str, &'a dyn Fn(&Times) -> Option<f64>);

/// Completed requests' times by id, from a run's requests.csv.
fn read_times(path: &Path) -> std::io::Result<Vec<Row>> {
    let err = |e: csv::Error| std::io::Error::other(format!("{}: {e}", path.display()));
    let mut rd = csv::Reader::from_path(path).map_err(err)?;
    let h = rd.headers().map_err(err)?.clone();
    let col = |c: &str| h.iter().position(|x| x == c).ok_or_else(|| std::io::Error::other(format!("no column {c}")));
    let (id, class, outcome, p, o) =
        (col("request_id")?, col("class")?, col("outcome")?, col("prompt_tokens")?, col("token_count")?);
    let (ttft, tpot, e2e, queue) = (col("ttft_ms")?, col("tpot_ms")?, col("e2e_ms")?, col("queue_ms")?);
    let (ps, pe, kv) = (col("prefill_start_s")?, col("prefill_end_s")?, col("kv_transfer_ms")?);
    let mut out = Vec::new();
    for rec in rd.records() {
        let rec = rec.map_err(err)?;
        if rec.get(outcome) != Some("completed") {
            continue;
        }
        let f = |i: usize| rec.get(i).and_then(|x| x.parse::<f64>().ok());
        let times = Times {
            ttft: f(ttft).unwrap_or(0.0),
            tpot: f(tpot),
            e2e: f(e2e).unwrap_or(0.0),
            queue: f(queue).unwrap_or(0.0),
            prefill: (f(pe).unwrap_or(0.0) - f(ps).unwrap_or(0.0)) * 1e3,
            transfer: f(kv).unwrap_or(0.0),
        };
        let n = |i: usize| f(i).unwrap_or(0.0) as u64;
        out.push((n(id), rec.get(class).unwrap_or("").to_owned(), n(p), n(o), times));
    }
    out.sort_by_key(|r| r.0);
    Ok(out)
}

/// The simulation of `executed`'s topology: the same scenario in simulate mode with `profile`,
/// replaying the execute run's trace.
pub fn simulated_scenario(
    executed: &Scenario,
    profile: Arc<crate::engine::sim::CostModel>,
    trace: &Path,
) -> Result<Scenario, String> {
    let rows = read_trace(trace, TraceFormat::Csv, 1.0).map_err(|e| e.to_string())?;
    let mut s = executed.clone();
    s.mode = Mode::Simulate;
    s.cost = Some(profile);
    s.workload = Workload::new(Source::Trace { rows: Arc::new(rows) }, StopAfter::EndOfTrace, executed.seed);
    Ok(s)
}

/// Pairs the executed requests `e` (read from the execute run's requests.csv) with those of the
/// simulated run in `simulated_dir` by id and, given `compare_csv`, writes them side by side
/// there.
fn pair_up(e: &[Row], simulated_dir: &Path, compare_csv: Option<&Path>) -> std::io::Result<Vec<Paired>> {
    let s = read_times(&simulated_dir.join("requests.csv"))?;
    let mut pairs = Vec::new();
    let mut j = 0;
    for (id, class, p, o, te) in e.iter().cloned() {
        while j < s.len() && s[j].0 < id {
            j += 1;
        }
        let Some((_, _, _, _, ts)) = s.get(j).filter(|x| x.0 == id) else {
            continue;
        };
        pairs.push(Paired { id, class, prompt: p, output: o, executed: te, simulated: *ts });
    }
    if let Some(path) = compare_csv {
        let mut f = CsvFile::create(
            path,
            "request_id,class,prompt_tokens,output_tokens,exec_ttft_ms,sim_ttft_ms,exec_tpot_ms,sim_tpot_ms,\
             exec_e2e_ms,sim_e2e_ms,exec_queue_ms,sim_queue_ms,exec_prefill_ms,sim_prefill_ms",
        )?;
        let opt = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.3}"));
        for Paired { id, class, prompt, output, executed: te, simulated: ts } in &pairs {
            f.line(&format!(
                "{id},{},{prompt},{output},{:.3},{:.3},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3}",
                crate::metrics::format::csv_field(class),
                te.ttft,
                ts.ttft,
                opt(te.tpot),
                opt(ts.tpot),
                te.e2e,
                ts.e2e,
                te.queue,
                ts.queue,
                te.prefill,
                ts.prefill
            ))?;
        }
        f.finish()?;
    }
    Ok(pairs)
}

/// A request of an execution beside the same request in one simulation of it.
struct Paired {
    id: u64,
    class: String,
    prompt: u64,
    output: u64,
    executed: Times,
    simulated: Times,
}

/// Every draw's simulated times, request by request: the distribution the simulated figures
/// are percentiles of (`draws.csv` beside the first draw's own files).
struct DrawsCsv(CsvFile);

impl DrawsCsv {
    fn create(path: &Path) -> std::io::Result<DrawsCsv> {
        let header = "draw,request_id,ttft_ms,tpot_ms,e2e_ms,queue_ms,prefill_ms,kv_transfer_ms";
        Ok(DrawsCsv(CsvFile::create(path, header)?))
    }

    fn add(&mut self, draw: usize, pairs: &[Paired]) -> std::io::Result<()> {
        for p in pairs {
            let t = &p.simulated;
            let tpot = t.tpot.map_or(String::new(), |v| format!("{v:.3}"));
            self.0.line(&format!(
                "{draw},{},{:.3},{tpot},{:.3},{:.3},{:.3},{:.3}",
                p.id, t.ttft, t.e2e, t.queue, t.prefill, t.transfer
            ))?;
        }
        Ok(())
    }
}

const PERCENTILE_METRICS: [Metric; 3] =
    [("ttft_ms", &|t| Some(t.ttft)), ("tpot_ms", &|t| t.tpot), ("e2e_ms", &|t| Some(t.e2e))];

const PHASE_METRICS: [Metric; 4] = [
    ("queueing", &|t| Some(t.queue)),
    ("prefill", &|t| Some(t.prefill)),
    ("kv transfer", &|t| Some(t.transfer)),
    ("decode (TPOT)", &|t| t.tpot),
];

/// One side's values of one metric, sorted.
fn values(pairs: &[(Times, Times)], get: &dyn Fn(&Times) -> Option<f64>, simulated: bool) -> Vec<f64> {
    let mut v: Vec<f64> = pairs.iter().filter_map(|(a, b)| get(if simulated { b } else { a })).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// One side's spread of one metric.
fn spread(pairs: &[(Times, Times)], get: &dyn Fn(&Times) -> Option<f64>, simulated: bool) -> Spread {
    Spread::of(&mut values(pairs, get, simulated)).unwrap_or(Spread { p50: 0.0, p90: 0.0, p99: 0.0, mean: 0.0 })
}

/// p50 and p90 of TTFT, TPOT and E2E, executed vs simulated, each executed figure ranked in
/// the simulated distribution, over `runs`: each run's pairs and its simulations per execution
/// (each executed request appears that many times, a draw after another).
///
/// The simulated figure is the same statistic as the executed one: each draw's nearest-rank
/// percentile over the same requests, then the median over draws. The percentile of the draws
/// pooled is another statistic, and where a percentile of a few requests sits in a gap it is
/// not the same number: in heavy_heavy's two runs of 8 requests (2026-12-01 00:34), prompts of
/// 288–345 tokens took 224–274 ms to the first token and those of 412–473 tokens 311–380, so the
/// p50 (the 8th of 16) is the faster group's slowest: 266 ms executed, and over 64 draws pooled
/// the faster group's slowest in the slowest draws, 287 ms (+7.9%), where a draw's own p50 is
/// about what the run's was. The rank still reads the pooled distribution.
fn percentiles(runs: &[(&[(Times, Times)], usize)]) -> Vec<Pair> {
    let pairs: Vec<(Times, Times)> = runs.iter().flat_map(|(p, _)| p.iter().copied()).collect();
    let draws = runs.iter().map(|&(_, d)| d.max(1)).min().unwrap_or(1);
    // Draw k of every run: the executed requests once each, simulated under the k-th noise.
    let draw = |k: usize| -> Vec<(Times, Times)> {
        let mut v = Vec::new();
        for &(p, d) in runs {
            let n = p.len() / d.max(1);
            v.extend_from_slice(&p[k * n..(k + 1) * n]);
        }
        v
    };
    let by_draw: Vec<Vec<(Times, Times)>> = (0..draws).map(draw).collect();
    let mut out = Vec::new();
    for (name, get) in PERCENTILE_METRICS {
        // Each side sorted once: its percentiles and the ranks are read off the same values.
        let (exec, sim) = (values(&pairs, get, false), values(&pairs, get, true));
        let n = exec.len() / draws;
        let each_draw: Vec<Vec<f64>> = by_draw.iter().map(|d| values(d, get, true)).collect();
        for p in [50.0, 90.0] {
            let e = nearest_rank(&exec, p).unwrap_or(0.0);
            let of_draws: Vec<f64> = each_draw.iter().filter_map(|v| nearest_rank(v, p)).collect();
            let s = if of_draws.is_empty() { 0.0 } else { crate::calibrate::median(of_draws) };
            let mut pair = Pair::new(&format!("{name} p{p}"), e, s);
            pair.rank = rank::Rank::of(e, p, n, &sim);
            out.push(pair);
        }
    }
    out
}

/// The mean time of each phase, executed vs simulated.
fn phases(pairs: &[(Times, Times)]) -> Vec<Pair> {
    PHASE_METRICS
        .iter()
        .map(|(name, get)| {
            Pair::new(&format!("{name} mean"), spread(pairs, get, false).mean, spread(pairs, get, true).mean)
        })
        .collect()
}

/// Notes on each pooled figure how the same figure came out run by run.
fn note_runs(pooled: &mut [Pair], per_run: &[Vec<Pair>]) {
    if per_run.len() < 2 {
        return;
    }
    for (i, p) in pooled.iter_mut().enumerate() {
        let ex: Vec<f64> = per_run.iter().map(|r| r[i].executed).collect();
        let err: Vec<f64> = per_run.iter().map(|r| r[i].relative_error).collect();
        let ((ex_min, ex_max), (err_min, err_max)) = (span(ex.iter().copied()), span(err));
        let mid = crate::calibrate::median(ex);
        p.across_runs = Some(AcrossRuns {
            executed_min: ex_min,
            executed_max: ex_max,
            executed_spread: if mid > 0.0 { (ex_max - ex_min) / mid } else { 0.0 },
            error_min: err_min,
            error_max: err_max,
        });
    }
}

/// A pace as the comparison prints it: "×1.02", or "-" when it could not be read.
pub(crate) fn ratio_text(x: Option<f64>) -> String {
    x.map_or("-".to_owned(), |v| format!("×{v:.2}"))
}

/// A share of the CPU time the hypervisor took, as the comparison prints it: "1.2%", or "-"
/// where the run did not record it.
pub(crate) fn stolen_text(x: Option<f64>) -> String {
    x.map_or("-".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

/// The smallest and the largest of `v` (infinite when it is empty).
pub(crate) fn span(v: impl IntoIterator<Item = f64>) -> (f64, f64) {
    v.into_iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)))
}

impl TopologyComparison {
    /// The comparison of `topology` over one or more runs: the figures pool every run's
    /// requests (and steps, for the pace); with several runs each figure also says how it
    /// moved from run to run.
    pub fn of(topology: &Topology, runs: &[RunPairs]) -> TopologyComparison {
        let pool = |f: &dyn Fn(&RunPairs) -> &Vec<(Times, Times)>| -> Vec<(Times, Times)> {
            runs.iter().flat_map(|r| f(r).iter().copied()).collect()
        };
        let (pairs, paced_pairs) = (pool(&|r| &r.pairs), pool(&|r| &r.paced));
        let mut ratios = pace::Ratios::default();
        runs.iter().for_each(|r| ratios.extend(&r.ratios));
        let mut c = TopologyComparison {
            topology: topology.name.clone(),
            runs: runs.len(),
            requests: runs.iter().map(|r| r.pairs.len() / r.draws).sum(),
            percentiles: percentiles(&runs.iter().map(|r| (r.pairs.as_slice(), r.draws)).collect::<Vec<_>>()),
            phases: phases(&pairs),
            pace: ratios.pace(),
            pace_by_run: runs.iter().map(|r| r.ratios.pace()).collect(),
            paced: match paced_pairs.is_empty() {
                true => Vec::new(),
                false => percentiles(&runs.iter().map(|r| (r.paced.as_slice(), r.paced_draws)).collect::<Vec<_>>()),
            },
            cpu_stolen: runs.iter().map(|r| r.stolen).collect(),
            attempts: Vec::new(),
            left_out: Vec::new(),
        };
        note_runs(&mut c.percentiles, &runs.iter().map(|r| percentiles(&[(&r.pairs, r.draws)])).collect::<Vec<_>>());
        note_runs(&mut c.phases, &runs.iter().map(|r| phases(&r.pairs)).collect::<Vec<_>>());
        if runs.iter().all(|r| !r.paced.is_empty()) {
            note_runs(
                &mut c.paced,
                &runs.iter().map(|r| percentiles(&[(&r.paced, r.paced_draws)])).collect::<Vec<_>>(),
            );
        }
        c
    }

    /// With several runs, each run's prefill / decode pace and the CPU time the hypervisor took
    /// during it: "×1.13 / ×1.22 (14.5%), ×1.00 / ×0.99 (1.0%)".
    pub fn pace_by_run_text(&self) -> Option<String> {
        if self.runs < 2 {
            return None;
        }
        let runs: Vec<String> = (0..self.runs)
            .map(|k| {
                let p = self.pace_by_run.get(k).copied().unwrap_or_default();
                let stolen = stolen_text(self.cpu_stolen.get(k).copied().flatten());
                format!("{} / {} ({stolen})", ratio_text(p.prefill), ratio_text(p.decode))
            })
            .collect();
        Some(runs.join(", "))
    }

    /// With more runs than [`RUNS_LISTED`] (pooled comparisons run to dozens), the runs' paces in
    /// brief: "41 runs, prefill ×0.81–×1.04 (median ×0.93), decode ×0.94–×1.06 (median ×1.00),
    /// CPU time stolen 0.0–2.9%"; `None` with fewer runs.
    pub fn pace_by_run_brief(&self) -> Option<String> {
        if self.runs <= RUNS_LISTED {
            return None;
        }
        let range = |v: Vec<f64>| -> Option<String> {
            let (lo, hi) = span(v.iter().copied());
            (!v.is_empty()).then(|| format!("×{lo:.2}–×{hi:.2} (median ×{:.2})", crate::calibrate::median(v)))
        };
        let prefill = range(self.pace_by_run.iter().filter_map(|p| p.prefill).collect());
        let decode = range(self.pace_by_run.iter().filter_map(|p| p.decode).collect());
        let shares: Vec<f64> = self.cpu_stolen.iter().flatten().copied().collect();
        let mut parts = vec![format!("{} runs", self.runs)];
        parts.extend(prefill.map(|r| format!("prefill {r}")));
        parts.extend(decode.map(|r| format!("decode {r}")));
        if !shares.is_empty() {
            let (lo, hi) = span(shares);
            parts.push(format!("CPU time stolen {:.1}–{:.1}%", lo * 100.0, hi * 100.0));
        }
        Some(parts.join(", "))
    }
}

/// Runs a comparison's stdout lists one by one; with more, it gives their range (the JSON and
/// the page keep every run).
pub const RUNS_LISTED: usize = 8;

/// Every completed request's value of one of the percentile metrics, pooled over a
/// topology's runs: what the comparison's CDFs draw.
pub struct Samples {
    pub metric: &'static str,
    /// Each executed request once.
    pub executed: Vec<f64>,
    /// Every draw's simulated requests.
    pub simulated: Vec<f64>,
    /// The same at the run's pace (empty when it could not be measured).
    pub paced: Vec<f64>,
}

/// TTFT, TPOT and E2E of a topology's runs, executed, simulated and at the run's pace.
pub fn samples(runs: &[RunPairs]) -> Vec<Samples> {
    PERCENTILE_METRICS
        .iter()
        .map(|(metric, get)| {
            let side = |f: &dyn Fn(&RunPairs) -> &[(Times, Times)], simulated: bool| -> Vec<f64> {
                runs.iter().flat_map(|r| values(f(r), get, simulated)).collect()
            };
            Samples {
                metric,
                // The executed side repeats once per draw: the first draw's pairs hold it once.
                executed: side(&|r| &r.pairs[..r.pairs.len() / r.draws.max(1)], false),
                simulated: side(&|r| &r.pairs, true),
                paced: side(&|r| &r.paced, true),
            }
        })
        .collect()
}

/// Runs the simulated side of one topology into `dir/<sub>/`.
pub fn simulate_topology(sim: &Scenario, topology: &Topology, dir: &Path, sub: &str) -> Result<(), RunError> {
    let backend = Backend::Simulate(sim.cost.clone().expect("a simulated scenario has a cost model"));
    run_topology(sim, &backend, topology, &dir.join(sub), false).map(|_| ())
}

/// Simulates with `profile`, then (when the run's pace can be measured) again with the
/// profile at the run's pace, the topology whose execute run is in `dir/<topology>/`; pairs
/// each with the execute run, request by request. `run` (from 0) is the execution's place in
/// a `--repeat`: its draws of the noise are its own.
pub fn simulate_and_compare(
    executed: &Scenario,
    topology: &Topology,
    profile: &Arc<crate::engine::sim::CostModel>,
    dir: &Path,
    run: usize,
) -> Result<RunPairs, Box<dyn std::error::Error>> {
    let exec_dir = dir.join(&topology.name);
    let draws_of = |cost: &crate::engine::sim::CostModel| if cost.noise().is_some() { NOISE_DRAWS } else { 1 };
    // The first draw into `dir/<sub>/` (its requests paired in `first_pairs_dir/compare.csv`),
    // the others into a scratch folder removed after each; every draw's times go to
    // `dir/<sub>/<topology>/draws.csv`. Returns every draw's pairs.
    let simulate = |cost: Arc<crate::engine::sim::CostModel>, sub: &str, first_pairs_dir: &Path| {
        let draws = draws_of(&cost);
        let first = simulated_scenario(executed, cost, &exec_dir.join("trace.csv"))?;
        let first_dir = dir.join(sub).join(&topology.name);
        let scratch = format!("{sub}/.draw");
        // Read once: every draw pairs with the same execution.
        let executed_times = read_times(&exec_dir.join("requests.csv"))?;
        let mut pairs = Vec::new();
        let mut all = None;
        for k in 0..draws {
            let mut sim = first.clone();
            // The trace fixes the requests; the seed now only draws the machine's noise, anew
            // for every run: with the same seeds, every run of every comparison drew the same
            // timelines of the noise (heavy_light's first fused prefill came out ×0.85–1.41 of
            // its pace, in the same order, run after run), and pooling runs pooled nothing new.
            sim.seed = executed.seed.wrapping_add((run * draws + k) as u64);
            let (sub, compare_csv) =
                if k == 0 { (sub, Some(first_pairs_dir.join("compare.csv"))) } else { (scratch.as_str(), None) };
            simulate_topology(&sim, topology, dir, sub)?;
            let sim_dir = dir.join(sub).join(&topology.name);
            let drawn = pair_up(&executed_times, &sim_dir, compare_csv.as_deref())?;
            if draws > 1 {
                let csv = match &mut all {
                    Some(csv) => csv,
                    None => all.insert(DrawsCsv::create(&first_dir.join("draws.csv"))?),
                };
                csv.add(k + 1, &drawn)?;
            }
            if k > 0 {
                std::fs::remove_dir_all(dir.join(sub))?;
            }
            pairs.extend(drawn.into_iter().map(|p| (p.executed, p.simulated)));
        }
        if let Some(csv) = all {
            csv.0.finish()?;
        }
        Ok::<_, Box<dyn std::error::Error>>((pairs, draws))
    };
    let (pairs, draws) = simulate(profile.clone(), "simulated", &exec_dir)?;
    let ratios = pace::ratios(&exec_dir.join("iterations.csv"), topology, profile)?;
    let run_pace = ratios.pace();
    let (mut paced, mut paced_draws) = (Vec::new(), 1);
    if run_pace.prefill.is_some() || run_pace.decode.is_some() {
        let mut scaled = profile.paced(run_pace.prefill.unwrap_or(1.0), run_pace.decode.unwrap_or(1.0));
        if let Some(noise) = run_pace.noise {
            scaled = scaled.with_noise(Some(noise));
        }
        (paced, paced_draws) = simulate(Arc::new(scaled), "paced", &dir.join("paced").join(&topology.name))?;
    }
    Ok(RunPairs { pairs, paced, draws, paced_draws, ratios, stolen: crate::run::steal::read(&exec_dir) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(metric: &str, executed: f64, simulated: f64, share: f64) -> Pair {
        let mut p = Pair::new(metric, executed, simulated);
        p.rank = Some(rank::Rank { simulated_share: share, band: 0.05 });
        p
    }

    #[test]
    fn a_p50_has_the_5_percent_goal_and_a_p90_the_10_percent_one() {
        assert_eq!(pair("ttft_ms p50", 100.0, 104.9, 0.5).within_goal(), Some(true));
        assert_eq!(pair("ttft_ms p50", 100.0, 106.0, 0.5).within_goal(), Some(false));
        assert_eq!(pair("tpot_ms p90", 100.0, 91.0, 0.9).within_goal(), Some(true));
        assert_eq!(pair("tpot_ms p90", 100.0, 88.0, 0.9).within_goal(), Some(false));
        assert_eq!(Pair::new("prefill mean", 100.0, 200.0).within_goal(), None);
    }

    #[test]
    fn a_simulated_percentile_is_each_draws_over_the_same_requests_then_their_median() {
        let t = |ttft: f64| Times { ttft, e2e: ttft, ..Default::default() };
        // Two requests in a gap-shaped distribution: 100 and 300 ms executed; three draws
        // simulate them at (90, 310), (110, 290) and (120, 320). Each draw's p50 (the 1st of
        // 2) is its fast request; their median 110. Pooled, the 3rd of 6 values is 120.
        let run: Vec<(Times, Times)> =
            [(100.0, 90.0), (300.0, 310.0), (100.0, 110.0), (300.0, 290.0), (100.0, 120.0), (300.0, 320.0)]
                .iter()
                .map(|&(e, s)| (t(e), t(s)))
                .collect();
        let p50 = |runs: &[(&[(Times, Times)], usize)]| {
            percentiles(runs).into_iter().find(|p| p.metric == "ttft_ms p50").map(|p| (p.executed, p.simulated))
        };
        assert_eq!(p50(&[(&run, 3)]), Some((100.0, 110.0)));
        // Two runs pooled: draw k of each together (four requests, the 2nd of 4).
        assert_eq!(p50(&[(&run, 3), (&run, 3)]), Some((100.0, 110.0)));
        // One draw: the plain percentile.
        assert_eq!(p50(&[(&run[..2], 1)]), Some((100.0, 90.0)));
    }

    #[test]
    fn the_tally_counts_goals_and_ranks_apart() {
        let c = TopologyComparison {
            topology: "fused".into(),
            runs: 1,
            requests: 10,
            // Within the goal but ranked far off; off the goal but ranked where it belongs.
            percentiles: vec![pair("tpot_ms p90", 100.0, 95.0, 1.0), pair("tpot_ms p50", 20.0, 30.0, 0.52)],
            phases: vec![Pair::new("prefill mean", 1.0, 1.0)],
            pace: pace::Pace::default(),
            pace_by_run: Vec::new(),
            paced: vec![pair("tpot_ms p90", 100.0, 99.0, 0.9), pair("tpot_ms p50", 20.0, 20.5, 0.5)],
            cpu_stolen: Vec::new(),
            attempts: Vec::new(),
            left_out: Vec::new(),
        };
        let t = Tally::of(&c);
        assert_eq!(t, Tally { figures: 2, as_calibrated: 1, at_the_runs_pace: 2, rank_within_sampling: 1 });
        assert_eq!((t + t).figures, 4);
    }

    #[test]
    fn many_runs_are_told_in_brief() {
        let run = |p: f64, d: f64| pace::Pace { prefill: Some(p), decode: Some(d), ..Default::default() };
        let mut c = TopologyComparison {
            topology: "split".into(),
            runs: 2,
            requests: 24,
            percentiles: Vec::new(),
            phases: Vec::new(),
            pace: pace::Pace::default(),
            pace_by_run: vec![run(0.9, 1.0), run(1.1, 1.2)],
            paced: Vec::new(),
            cpu_stolen: vec![Some(0.001), None],
            attempts: Vec::new(),
            left_out: Vec::new(),
        };
        assert_eq!(c.pace_by_run_text().unwrap(), "×0.90 / ×1.00 (0.1%), ×1.10 / ×1.20 (-)");
        assert_eq!(c.pace_by_run_brief(), None, "two runs are listed");
        c.runs = 10;
        c.pace_by_run = (0..10).map(|k| run(0.8 + 0.02 * k as f64, 1.0)).collect();
        c.cpu_stolen = (0..10).map(|k| Some(0.002 * k as f64)).collect();
        assert_eq!(
            c.pace_by_run_brief().unwrap(),
            "10 runs, prefill ×0.80–×0.98 (median ×0.89), decode ×1.00–×1.00 (median ×1.00), CPU time stolen 0.0–1.8%"
        );
    }
}
