//! Runs the topologies of a scenario: prepares the mode's backend once (the cost model, or the
//! real model loaded and the text prompts tokenized), then builds each topology's actor graph on
//! the mode's runtime and drives it to the last request.

pub mod execute;
pub mod graph;
pub mod output;
pub mod steal;

use std::path::{Path, PathBuf};

pub use execute::Executors;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::actors::metrics_collector::Results;
use crate::engine::sim::CostModel;
use crate::metrics::summary::Summary;
use crate::scenario::{Mode, Scenario, Topology};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create the output folder {}: {source}", path.display())]
    Output { path: PathBuf, source: std::io::Error },
    #[error("cannot load the model: {0}")]
    Model(String),
    /// The scenario asks what the model cannot do (bad input, found once the model is loaded).
    #[error("{0}")]
    Unfit(String),
    #[error("topology `{topology}`: {reason}")]
    Aborted { topology: String, reason: String },
}

/// What a scenario runs on, loaded once for all its topologies.
pub enum Backend {
    Simulate(Arc<CostModel>),
    Execute(Executors),
}

impl Backend {
    pub fn describe(&self) -> String {
        match self {
            Backend::Simulate(cost) => format!("cost model: {}", cost.describe()),
            Backend::Execute(ex) => ex.describe(),
        }
    }
}

/// Loads what `scenario`'s mode needs: the cost model, or in execute mode the models (fetching
/// the default one on first use), with the text prompts tokenized and their lengths recorded in
/// the scenario's workload.
pub fn prepare(scenario: &mut Scenario) -> Result<Backend, RunError> {
    match scenario.mode {
        Mode::Simulate => {
            let cost =
                scenario.cost.clone().ok_or_else(|| RunError::Model("simulate mode needs a cost model".into()))?;
            Ok(Backend::Simulate(cost))
        }
        Mode::Execute => Ok(Backend::Execute(Executors::prepare(scenario)?)),
    }
}

/// Where a topology's files go inside the run's folder ([`output`]): `<run>/<topology>/`.
pub fn topology_dir(run_dir: &Path, topology: &Topology) -> PathBuf {
    run_dir.join(&topology.name)
}

/// Runs one topology. Simulate mode: every actor on one thread on a virtual clock.
/// Execute mode: wall clock, each worker on its own thread with its own compute pool.
pub fn run_topology(
    scenario: &Scenario,
    backend: &Backend,
    topology: &Topology,
    run_dir: &Path,
    progress: bool,
) -> Result<Summary, RunError> {
    run(scenario, backend, topology, run_dir, progress, true)
}

/// [`run_topology`] without its per-request and per-step rows (`summary.csv` only), quietly: a
/// point of a sweep or a placement search.
pub fn summarize_topology(
    scenario: &Scenario,
    backend: &Backend,
    topology: &Topology,
    run_dir: &Path,
) -> Result<Summary, RunError> {
    run(scenario, backend, topology, run_dir, false, false)
}

fn run(
    scenario: &Scenario,
    backend: &Backend,
    topology: &Topology,
    run_dir: &Path,
    progress: bool,
    rows: bool,
) -> Result<Summary, RunError> {
    let dir = topology_dir(run_dir, topology);
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Output { path: dir.clone(), source })?;
    let bar = progress_bar(progress, scenario.workload.expected_requests(), &topology.name);
    let out = |dir: PathBuf| Results { dir, progress: bar.clone(), rows };
    let result = match backend {
        Backend::Simulate(cost) => {
            // Its park hook tells the virtual clock's driver when every actor is idle.
            let system = actix_rt::System::with_tokio_rt(|| {
                crate::clock::virtual_time::runtime().expect("a current-thread runtime builds")
            });
            system.block_on(graph::drive_simulated(scenario, topology, out(dir), cost.clone()))
        }
        Backend::Execute(ex) => {
            let system = actix_rt::System::new();
            let prompts = ex.prompts.clone();
            let stolen = steal::Meter::start();
            let summary = match (&ex.host, execute::uses_device_path(&scenario.model, topology)) {
                (_, true) => {
                    system.block_on(graph::drive_device(scenario, topology, out(dir.clone()), &ex.devices, prompts))
                }
                (Some(model), false) => {
                    system.block_on(graph::drive_executed(scenario, topology, out(dir.clone()), model.clone(), prompts))
                }
                (None, false) => Err("the CPU model was not prepared".into()),
            };
            if let (Ok(_), Some(share)) = (&summary, stolen.share()) {
                record_steal(&dir, &topology.name, share)?;
            }
            summary
        }
    };
    result.map_err(|reason| RunError::Aborted { topology: topology.name.clone(), reason })
}

/// Keeps the share of CPU time the hypervisor took during an execute run beside its CSVs, and
/// says so when it is large enough to slow the run.
fn record_steal(dir: &Path, topology: &str, share: f64) -> Result<(), RunError> {
    steal::write(dir, share).map_err(|source| RunError::Output { path: dir.to_owned(), source })?;
    if share > steal::NOTABLE_SHARE {
        eprintln!(
            "warning: topology `{topology}`: the hypervisor took {:.0}% of this machine's CPU time during \
             the run (steal in /proc/stat): its timings are slower than the machine's own",
            share * 100.0
        );
    }
    Ok(())
}

fn progress_bar(enabled: bool, total: Option<u64>, name: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} requests ({per_sec}, eta {eta})")
        .expect("valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(name.to_owned());
    bar
}
