//! Runs one topology of a scenario: builds the actor graph on the mode's runtime, drives it to
//! the last request, and returns the summary.

pub mod graph;

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::summary::Summary;
use crate::scenario::{Scenario, Topology};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create the output folder {}: {source}", path.display())]
    Output { path: PathBuf, source: std::io::Error },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("topology `{topology}`: {reason}")]
    Aborted { topology: String, reason: String },
}

/// Where a topology's files go: `output_dir/<scenario>/<topology>/`.
pub fn topology_dir(out_root: &Path, scenario: &Scenario, topology: &Topology) -> PathBuf {
    out_root.join(&scenario.name).join(&topology.name)
}

/// Runs `topology` in simulate mode on a paused (virtual) clock.
pub fn run_topology(
    scenario: &Scenario,
    topology: &Topology,
    out_root: &Path,
    progress: bool,
) -> Result<Summary, RunError> {
    let dir = topology_dir(out_root, scenario, topology);
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Output { path: dir.clone(), source })?;
    let bar = progress_bar(progress, scenario.workload.expected_requests(), &topology.name);
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime builds")
    });
    let result = system.block_on(graph::drive(scenario, topology, dir, bar));
    result.map_err(|reason| RunError::Aborted { topology: topology.name.clone(), reason })
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
