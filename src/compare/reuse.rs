//! `pdsim compare --executed DIR`: the executed runs of an earlier comparison, simulated again.
//!
//! Two executions of the same requests on a shared machine differ by more than most changes to
//! the model move a figure (a fused TTFT p50 by ±5–10% from one run to the next here), so a
//! model change or a new profile is only judged fairly on the very runs the old one was judged
//! on. Each run's executed CSVs are copied into the new comparison's folder, so that it stands
//! on its own like one that executed.

use std::path::{Path, PathBuf};

use crate::scenario::Topology;

/// What a simulation of an executed topology reads: its requests, the trace the simulator
/// replays, the steps the run's pace is read from, and the summary that names the scenario.
const NEEDED: [&str; 4] = ["requests.csv", "trace.csv", "iterations.csv", "summary.csv"];

/// The run folders of an earlier comparison at `dir` (its `run-K/` folders in order, or `dir`
/// itself when it ran once), each checked to hold every topology's executed CSVs, written by
/// a run of the scenario named `scenario`.
pub fn executed_runs(dir: &Path, scenario: &str, topologies: &[Topology]) -> Result<Vec<PathBuf>, String> {
    let dir = dir.canonicalize().map_err(|e| format!("--executed {}: {e}", dir.display()))?;
    let mut runs: Vec<(usize, PathBuf)> = std::fs::read_dir(&dir)
        .map_err(|e| format!("--executed {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let k = e.file_name().to_str()?.strip_prefix("run-")?.parse::<usize>().ok()?;
            e.path().is_dir().then(|| (k, e.path()))
        })
        .collect();
    runs.sort();
    let runs: Vec<PathBuf> = if runs.is_empty() { vec![dir.clone()] } else { runs.into_iter().map(|r| r.1).collect() };
    for run in &runs {
        for t in topologies {
            for file in NEEDED {
                let path = run.join(&t.name).join(file);
                if !path.is_file() {
                    return Err(format!(
                        "--executed: {} is missing; name the folder of an earlier `pdsim compare` of this \
                         scenario (e.g. output/<scenario>/compare/latest), or narrow with --only",
                        path.display()
                    ));
                }
            }
            let summary = run.join(&t.name).join("summary.csv");
            let ran = scenario_of(&summary).map_err(|e| format!("--executed: {}: {e}", summary.display()))?;
            if ran != scenario {
                return Err(format!(
                    "--executed: {} holds runs of scenario `{ran}`, not `{scenario}`; compare that scenario's \
                     file, or name a comparison of this one",
                    run.display()
                ));
            }
        }
    }
    Ok(runs)
}

/// The `scenario` column of a run's summary.csv.
fn scenario_of(summary: &Path) -> Result<String, String> {
    let mut rd = csv::Reader::from_path(summary).map_err(|e| e.to_string())?;
    let col = rd.headers().map_err(|e| e.to_string())?.iter().position(|h| h == "scenario");
    let row = rd.records().next().transpose().map_err(|e| e.to_string())?;
    match (col, row) {
        (Some(c), Some(r)) => Ok(r.get(c).unwrap_or_default().to_owned()),
        _ => Err("no scenario row".into()),
    }
}

/// Copies the executed CSVs of `topology` from the run folder `from` into `to/<topology>/`
/// (not the old comparison's own compare.csv: the new one writes its own).
pub fn copy_executed(from: &Path, topology: &str, to: &Path) -> std::io::Result<()> {
    let (src, dst) = (from.join(topology), to.join(topology));
    std::fs::create_dir_all(&dst)?;
    for entry in std::fs::read_dir(&src)? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_file() && name != "compare.csv" {
            std::fs::copy(entry.path(), dst.join(&name))?;
        }
    }
    Ok(())
}
