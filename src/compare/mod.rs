//! `pdsim compare`: one scenario executed for real and simulated with a calibration profile,
//! request by request. The simulation replays the execute run's own trace (its arrivals and
//! the lengths that really ran), so the two see the same requests; what differs is only how
//! long things take. Per topology: a side-by-side CSV, the relative error of p50/p90 TTFT,
//! TPOT and E2E, and the error split by phase (queueing, prefill, KV transfer, decode) to say
//! where a gap comes from.

pub mod pace;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::metrics::percentile::Spread;
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
}

impl Pair {
    fn new(metric: &str, executed: f64, simulated: f64) -> Pair {
        let relative_error = if executed != 0.0 { (simulated - executed) / executed } else { 0.0 };
        Pair { metric: metric.into(), executed, simulated, relative_error }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TopologyComparison {
    pub topology: String,
    pub requests: usize,
    /// p50 and p90 of TTFT, TPOT and E2E (ms).
    pub percentiles: Vec<Pair>,
    /// Mean time per phase (ms): where the difference comes from.
    pub phases: Vec<Pair>,
    /// How fast the machine ran the executed steps against the profile.
    pub pace: pace::Pace,
    /// The percentiles again, simulated with the profile scaled by the run's pace (empty when
    /// the pace could not be measured).
    pub paced: Vec<Pair>,
}

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

/// Compares one topology's two runs (their folders hold requests.csv) and writes
/// `compare.csv` into `dir`.
pub fn compare_topology(
    topology: &Topology,
    executed_dir: &Path,
    simulated_dir: &Path,
    dir: &Path,
) -> std::io::Result<TopologyComparison> {
    let e = read_times(&executed_dir.join("requests.csv"))?;
    let s = read_times(&simulated_dir.join("requests.csv"))?;
    let mut f = CsvFile::create(
        &dir.join("compare.csv"),
        "request_id,class,prompt_tokens,output_tokens,exec_ttft_ms,sim_ttft_ms,exec_tpot_ms,sim_tpot_ms,\
         exec_e2e_ms,sim_e2e_ms,exec_queue_ms,sim_queue_ms,exec_prefill_ms,sim_prefill_ms",
    )?;
    let mut pairs = Vec::new();
    let mut j = 0;
    for (id, class, p, o, te) in &e {
        while j < s.len() && s[j].0 < *id {
            j += 1;
        }
        let Some((_, _, _, _, ts)) = s.get(j).filter(|x| x.0 == *id) else {
            continue;
        };
        let opt = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.3}"));
        f.line(&format!(
            "{id},{},{p},{o},{:.3},{:.3},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3}",
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
        pairs.push((*te, *ts));
    }
    f.finish()?;
    let spread = |get: &dyn Fn(&Times) -> Option<f64>, side: usize| {
        let mut v: Vec<f64> = pairs.iter().filter_map(|(a, b)| get(if side == 0 { a } else { b })).collect();
        Spread::of(&mut v).unwrap_or(Spread { p50: 0.0, p90: 0.0, p99: 0.0, mean: 0.0 })
    };
    let mut percentiles = Vec::new();
    let mut phases = Vec::new();
    let metrics: [Metric; 3] = [("ttft_ms", &|t| Some(t.ttft)), ("tpot_ms", &|t| t.tpot), ("e2e_ms", &|t| Some(t.e2e))];
    for (name, get) in metrics {
        let (a, b) = (spread(get, 0), spread(get, 1));
        percentiles.push(Pair::new(&format!("{name} p50"), a.p50, b.p50));
        percentiles.push(Pair::new(&format!("{name} p90"), a.p90, b.p90));
    }
    let phase_metrics: [Metric; 4] = [
        ("queueing", &|t| Some(t.queue)),
        ("prefill", &|t| Some(t.prefill)),
        ("kv transfer", &|t| Some(t.transfer)),
        ("decode (TPOT)", &|t| t.tpot),
    ];
    for (name, get) in phase_metrics {
        phases.push(Pair::new(&format!("{name} mean"), spread(get, 0).mean, spread(get, 1).mean));
    }
    Ok(TopologyComparison {
        topology: topology.name.clone(),
        requests: pairs.len(),
        percentiles,
        phases,
        pace: pace::Pace::default(),
        paced: Vec::new(),
    })
}

/// Runs the simulated side of one topology into `dir/<sub>/`.
pub fn simulate_topology(sim: &Scenario, topology: &Topology, dir: &Path, sub: &str) -> Result<(), RunError> {
    let backend = Backend::Simulate(sim.cost.clone().expect("a simulated scenario has a cost model"));
    run_topology(sim, &backend, topology, &dir.join(sub), false).map(|_| ())
}

/// Executed, then simulated with `profile`, then (when the run's pace can be measured)
/// simulated again with the profile at the run's pace: the comparison of one topology whose
/// execute run is in `dir/<topology>/`.
pub fn simulate_and_compare(
    executed: &Scenario,
    topology: &Topology,
    profile: &Arc<crate::engine::sim::CostModel>,
    dir: &Path,
) -> Result<TopologyComparison, Box<dyn std::error::Error>> {
    let exec_dir = dir.join(&topology.name);
    let trace = exec_dir.join("trace.csv");
    let sim = simulated_scenario(executed, profile.clone(), &trace)?;
    simulate_topology(&sim, topology, dir, "simulated")?;
    let mut c = compare_topology(topology, &exec_dir, &dir.join("simulated").join(&topology.name), &exec_dir)?;
    c.pace = pace::measure(&exec_dir.join("iterations.csv"), topology, profile)?;
    if c.pace.prefill.is_some() || c.pace.decode.is_some() {
        let paced = profile.paced(c.pace.prefill.unwrap_or(1.0), c.pace.decode.unwrap_or(1.0));
        let sim = simulated_scenario(executed, Arc::new(paced), &trace)?;
        simulate_topology(&sim, topology, dir, "paced")?;
        let paced_dir = dir.join("paced").join(&topology.name);
        c.paced = compare_topology(topology, &exec_dir, &paced_dir, &paced_dir)?.percentiles;
    }
    Ok(c)
}
