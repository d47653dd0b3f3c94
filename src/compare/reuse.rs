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
/// replays, and the steps the run's pace is read from.
const NEEDED: [&str; 3] = ["requests.csv", "trace.csv", "iterations.csv"];

/// The run folders of an earlier comparison at `dir` (its `run-K/` folders in order, or `dir`
/// itself when it ran once), each checked to hold every topology's executed CSVs.
pub fn executed_runs(dir: &Path, topologies: &[Topology]) -> Result<Vec<PathBuf>, String> {
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
        }
    }
    Ok(runs)
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
