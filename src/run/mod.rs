//! Runs the topologies of a scenario: prepares the mode's backend once (the cost model, or the
//! real model loaded and the text prompts tokenized), then builds each topology's actor graph on
//! the mode's runtime and drives it to the last request.

pub mod graph;
pub mod output;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::candle::prompts::PromptSource;
use crate::engine::candle::{resolve_model, Model};
use crate::engine::sim::CostModel;
use crate::metrics::summary::Summary;
use crate::scenario::{Mode, Scenario, Topology};
use crate::workload::{PromptSpec, Source};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create the output folder {}: {source}", path.display())]
    Output { path: PathBuf, source: std::io::Error },
    #[error("cannot load the model: {0}")]
    Model(String),
    #[error("topology `{topology}`: {reason}")]
    Aborted { topology: String, reason: String },
}

/// What a scenario runs on, loaded once for all its topologies.
pub enum Backend {
    Simulate(Arc<CostModel>),
    Execute { model: Arc<Model>, prompts: Arc<PromptSource> },
}

impl Backend {
    pub fn describe(&self) -> String {
        match self {
            Backend::Simulate(cost) => format!("cost model: {}", cost.describe()),
            Backend::Execute { model, .. } => format!(
                "model: {} ({} weights, {} layers)",
                model.path.display(),
                model.llama.format.name(),
                model.llama.config.layers
            ),
        }
    }
}

/// Loads what `scenario`'s mode needs. In execute mode this loads the model (fetching the
/// default one on first use) and tokenizes the text prompts, recording their lengths in the
/// scenario's workload.
pub fn prepare(scenario: &mut Scenario) -> Result<Backend, RunError> {
    match scenario.mode {
        Mode::Simulate => {
            let cost =
                scenario.cost.clone().ok_or_else(|| RunError::Model("simulate mode needs a cost model".into()))?;
            Ok(Backend::Simulate(cost))
        }
        Mode::Execute => {
            let spec = &scenario.model;
            let path =
                resolve_model(spec.path.as_deref(), Path::new("models")).map_err(|e| RunError::Model(e.to_string()))?;
            let model = Model::load(&path, spec.weights).map_err(|e| RunError::Model(e.to_string()))?;
            let vocab = model.llama.config.vocab as u32;
            let mut per_class = Vec::new();
            let texts: Vec<Option<Vec<String>>> = match &scenario.workload.source {
                Source::Synthetic { classes, .. } => classes
                    .iter()
                    .map(|c| match &c.prompt {
                        PromptSpec::Texts { texts, .. } => Some(texts.clone()),
                        PromptSpec::Lengths(_) => None,
                    })
                    .collect(),
                Source::Trace { .. } => Vec::new(),
            };
            for (class, t) in texts.into_iter().enumerate() {
                let ids: Vec<Vec<u32>> = match t {
                    Some(texts) => texts
                        .iter()
                        .map(|x| model.encode(x))
                        .collect::<Result<_, _>>()
                        .map_err(|e| RunError::Model(e.to_string()))?,
                    None => Vec::new(),
                };
                if !ids.is_empty() {
                    scenario.workload.set_prompt_lengths(class, ids.iter().map(|p| p.len() as u64).collect());
                }
                per_class.push(ids);
            }
            // Warm the model up on every thread count the workers will use, before the clock
            // starts (see Model::warm_up).
            let mut counts: Vec<usize> =
                scenario.topologies.iter().flat_map(|t| [t.threads.prefill, t.threads.decode]).collect();
            counts.sort_unstable();
            counts.dedup();
            for n in counts {
                model.warm_up(n).map_err(|e| RunError::Model(format!("warm-up: {e}")))?;
            }
            let prompts = PromptSource::Text { per_class, seed: scenario.seed, vocab };
            Ok(Backend::Execute { model: Arc::new(model), prompts: Arc::new(prompts) })
        }
    }
}

/// Where a topology's files go inside the run's folder ([`output`]): `<run>/<topology>/`.
pub fn topology_dir(run_dir: &Path, topology: &Topology) -> PathBuf {
    run_dir.join(&topology.name)
}

/// Runs one topology. Simulate mode: every actor on one thread with a paused (virtual) clock.
/// Execute mode: wall clock, each worker on its own thread with its own compute pool.
pub fn run_topology(
    scenario: &Scenario,
    backend: &Backend,
    topology: &Topology,
    run_dir: &Path,
    progress: bool,
) -> Result<Summary, RunError> {
    let dir = topology_dir(run_dir, topology);
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Output { path: dir.clone(), source })?;
    let bar = progress_bar(progress, scenario.workload.expected_requests(), &topology.name);
    let result = match backend {
        Backend::Simulate(cost) => {
            let system = actix_rt::System::with_tokio_rt(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .start_paused(true)
                    .build()
                    .expect("a current-thread runtime builds")
            });
            system.block_on(graph::drive_simulated(scenario, topology, dir, bar, cost.clone()))
        }
        Backend::Execute { model, prompts } => {
            let system = actix_rt::System::new();
            system.block_on(graph::drive_executed(scenario, topology, dir, bar, model.clone(), prompts.clone()))
        }
    };
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
