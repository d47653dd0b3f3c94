//! `pdsim compare --executed DIR`: the executed runs of an earlier comparison, simulated again.
//!
//! Two executions of the same requests on a shared machine differ by more than most changes to
//! the model move a figure (a fused TTFT p50 by ±5–10% from one run to the next here), so a
//! model change or a new profile is only judged fairly on the very runs the old one was judged
//! on. Each run's executed CSVs are copied into the new comparison's folder, so that it stands
//! on its own like one that executed.
//!
//! Several earlier comparisons pool: one sitting executes a few runs, and their pooled level is
//! still the machine's of that hour (on the build machine a run's median step went ×0.80–1.86 of
//! a profile over a night, and three runs' pool strayed by several percent from round to
//! round). Pooled over twelve rounds of that night (30–41 runs per topology, those that lost at
//! most 3% of the CPU to the hypervisor), the committed profile put 45 of the 48 figures within
//! the goal as calibrated, where the rounds one by one put 21–40.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::scenario::Topology;

/// What a simulation of an executed topology reads: its requests, the trace the simulator
/// replays, the steps the run's pace is read from, and the summary that names the scenario.
const NEEDED: [&str; 4] = ["requests.csv", "trace.csv", "iterations.csv", "summary.csv"];

/// The run folders of the earlier comparisons at `dirs`, one after another (each one's `run-K/`
/// folders in order, or the folder itself when it ran once), each checked to hold every
/// topology's executed CSVs, written by a run of the scenario named `scenario`.
pub fn executed_runs(dirs: &[PathBuf], scenario: &str, topologies: &[Topology]) -> Result<Vec<PathBuf>, String> {
    let mut all = Vec::new();
    for dir in dirs {
        all.extend(runs_of(dir, scenario, topologies)?);
    }
    Ok(all)
}

/// The run folders of one earlier comparison at `dir`, checked.
fn runs_of(dir: &Path, scenario: &str, topologies: &[Topology]) -> Result<Vec<PathBuf>, String> {
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

/// An earlier run left out of a comparison (`--executed` with `--max-stolen`): the hypervisor
/// took more than the bound of the machine's CPU time while it executed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeftOut {
    pub run: PathBuf,
    pub stolen: f64,
}

/// Of the earlier `runs`, those whose execution of `topology` lost at most `max` of the CPU
/// time (every one without a bound; a run that recorded no share counts), and those left out.
pub fn undisturbed(runs: &[PathBuf], topology: &str, max: Option<f64>) -> (Vec<PathBuf>, Vec<LeftOut>) {
    let mut kept = Vec::new();
    let mut left = Vec::new();
    for run in runs {
        match (crate::run::steal::read(&run.join(topology)), max) {
            (Some(stolen), Some(max)) if stolen > max => left.push(LeftOut { run: run.clone(), stolen }),
            _ => kept.push(run.clone()),
        }
    }
    (kept, left)
}

/// The runs left out in brief when there are more than [`super::RUNS_LISTED`]: "13 runs (3.5–22.0%
/// stolen)"; their list otherwise ([`describe_left_out`]).
pub fn brief_left_out(left: &[LeftOut]) -> Option<String> {
    if left.len() <= super::RUNS_LISTED {
        return describe_left_out(left);
    }
    let (lo, hi) = super::span(left.iter().map(|l| l.stolen));
    Some(format!("{} runs ({:.1}–{:.1}% stolen)", left.len(), lo * 100.0, hi * 100.0))
}

/// The runs left out, in a line: "/x/run-3 (14.5% stolen), /y (4.0% stolen)"; `None` when none
/// was.
pub fn describe_left_out(left: &[LeftOut]) -> Option<String> {
    let runs: Vec<String> =
        left.iter().map(|l| format!("{} ({:.1}% stolen)", l.run.display(), l.stolen * 100.0)).collect();
    (!runs.is_empty()).then(|| runs.join(", "))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_that_lost_more_than_the_bound_are_left_out() {
        let d = tempfile::tempdir().unwrap();
        let run = |k: usize, stolen: Option<&str>| {
            let dir = d.path().join(format!("run-{k}"));
            std::fs::create_dir_all(dir.join("fused")).unwrap();
            if let Some(s) = stolen {
                std::fs::write(dir.join("fused").join(crate::run::steal::FILE), format!("cpu_stolen_share\n{s}\n"))
                    .unwrap();
            }
            dir
        };
        let runs = vec![run(1, Some("0.0100")), run(2, Some("0.1450")), run(3, None), run(4, Some("0.0300"))];
        let (kept, left) = undisturbed(&runs, "fused", Some(0.03));
        assert_eq!(kept, [runs[0].clone(), runs[2].clone(), runs[3].clone()], "at the bound and unrecorded count");
        assert_eq!(left, [LeftOut { run: runs[1].clone(), stolen: 0.145 }]);
        assert_eq!(describe_left_out(&left).unwrap(), format!("{} (14.5% stolen)", runs[1].display()));
        // Many runs left out are told in brief.
        let many: Vec<LeftOut> =
            (0..9).map(|k| LeftOut { run: runs[0].clone(), stolen: 0.04 + 0.01 * k as f64 }).collect();
        assert_eq!(brief_left_out(&many).unwrap(), "9 runs (4.0–12.0% stolen)");
        assert_eq!(brief_left_out(&left), describe_left_out(&left));
        // Without a bound every run counts, and nothing is said.
        let (kept, left) = undisturbed(&runs, "fused", None);
        assert_eq!((kept.len(), describe_left_out(&left)), (4, None));
    }
}
