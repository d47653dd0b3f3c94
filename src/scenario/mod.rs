//! Scenarios: the TOML file a user writes, parsed strictly, validated, and resolved into a
//! [`Scenario`] before anything runs.
//!
//! [`load`] reads a file; every error names the file, line and column of the bad key and says
//! what was expected ([`error`]).

mod blame;
pub mod error;
pub mod raw;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::calibrate::profile::load as load_profile;
use crate::engine::candle::device::DeviceSpec;
use crate::engine::candle::engine::GenerationConfig;
use crate::engine::candle::model::WeightFormat;
use crate::engine::candle::synthetic::SyntheticSpec;
use crate::engine::sim::CostModel;
use crate::metrics::summary::Slo;
use crate::sched::fused::FusedPolicy;
use crate::sched::link::Link;
use crate::sched::router::RouterKind;
use crate::workload::Workload;
pub use error::ScenarioError;

/// A validated scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub path: PathBuf,
    pub mode: Mode,
    pub seed: u64,
    pub workload: Workload,
    /// The cost model (required in simulate mode).
    pub cost: Option<Arc<CostModel>>,
    /// The real model (execute mode).
    pub model: ModelSpec,
    pub slo: Slo,
    /// Results go to `output_dir/<name>/<topology>/`.
    pub output_dir: PathBuf,
    /// Times a request lost to a worker failure is started again before it counts as failed.
    pub max_retries: u32,
    pub topologies: Vec<Topology>,
    /// Keys the scenario sets that this run will not use, each with why: accepted (the file
    /// may serve the other mode too) but said, so that no setting is ignored silently.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Simulate,
    Execute,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Simulate => "simulate",
            Mode::Execute => "execute",
        }
    }
}

/// Which real model execute mode runs, and how it generates.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub source: ModelSource,
    /// The CPU kernels' weight form (a GGUF file on CPU workers).
    pub weights: WeightFormat,
    /// The tensor (device) path's compute type; `None`: bf16 on a GPU, f32 on the CPU.
    pub dtype: Option<candle_core::DType>,
    pub generation: GenerationConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A GGUF file; `None`: the default model, fetched into `models/` on first use.
    File(Option<PathBuf>),
    /// Seeded random weights in a known shape: timings only, no text.
    Synthetic(SyntheticSpec),
}

impl ModelSpec {
    pub fn is_synthetic(&self) -> bool {
        matches!(self.source, ModelSource::Synthetic(_))
    }

    /// The device path's compute type on `device`.
    pub fn dtype_on(&self, device: DeviceSpec) -> candle_core::DType {
        self.dtype.unwrap_or(if device.is_cuda() { candle_core::DType::BF16 } else { candle_core::DType::F32 })
    }
}

/// The devices of a topology's workers in execute mode (a fused topology uses `prefill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Devices {
    pub prefill: DeviceSpec,
    pub decode: DeviceSpec,
}

impl Devices {
    pub const CPU: Devices = Devices { prefill: DeviceSpec::Cpu, decode: DeviceSpec::Cpu };

    pub fn any_cuda(&self) -> bool {
        self.prefill.is_cuda() || self.decode.is_cuda()
    }
}

/// CPU threads per worker in execute mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads {
    /// Fused and prefill workers.
    pub prefill: usize,
    pub decode: usize,
}

impl Threads {
    pub fn of(&self, role: crate::run::graph::Role) -> usize {
        match role {
            crate::run::graph::Role::Prefill => self.prefill,
            crate::run::graph::Role::Decode => self.decode,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub name: String,
    pub kind: TopologyKind,
    pub batching: Batching,
    pub threads: Threads,
    pub devices: Devices,
    /// Failures to inject, by worker name.
    pub faults: Vec<FaultSpec>,
    /// Tensor-parallel degree per phase (simulate mode), overriding the cost model's.
    pub tp: PhaseTp,
}

/// Tensor-parallel degree of each phase's workers; `None`: the cost model's own. A fused
/// topology uses `prefill` for its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhaseTp {
    pub prefill: Option<u32>,
    pub decode: Option<u32>,
}

/// A failure a scenario injects (see [`crate::actors::faults`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// The worker's name, e.g. `decode-0`.
    pub worker: String,
    pub at_ns: u64,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The worker goes down, for `down_ns` or for good.
    Crash { down_ns: Option<u64> },
    /// The worker's next step returns an error.
    StepError,
    /// The worker's next step panics inside the engine.
    Panic,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TopologyKind {
    Fused { workers: u32, policy: FusedPolicy, router: RouterKind },
    Split { prefill_workers: u32, decode_workers: u32, router: RouterKind, link: Option<Link> },
}

/// Per-worker batching limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub prefill_token_budget: u64,
    pub max_decode_batch: u32,
    pub kv_capacity_tokens: u64,
    /// Requests that may wait for prefill at one worker before more are rejected.
    pub max_queued_requests: Option<u64>,
    /// Whether the scenario set `kv_capacity_tokens`; otherwise it came from the cost model,
    /// and a phase with its own tensor-parallel degree gets its own capacity.
    pub kv_capacity_explicit: bool,
}

pub const DEFAULT_MAX_RETRIES: u32 = 1;
/// The highest arrival rate a scenario (or `pdsim sweep --rates`) may name, req/s.
pub const MAX_RATE_PER_S: f64 = 1e9;
pub const DEFAULT_PREFILL_TOKEN_BUDGET: u64 = 4096;
pub const DEFAULT_MAX_DECODE_BATCH: u32 = 128;
pub const DEFAULT_SLO_ATTAINMENT: f64 = 0.9;
/// KV tokens per worker in execute mode when the scenario does not say (≈1.5 GB of f32 KV for
/// SmolLM2-135M).
pub const DEFAULT_EXECUTE_KV_CAPACITY_TOKENS: u64 = 32_768;

impl Topology {
    pub fn workers(&self) -> u32 {
        match self.kind {
            TopologyKind::Fused { workers, .. } => workers,
            TopologyKind::Split { prefill_workers, decode_workers, .. } => prefill_workers + decode_workers,
        }
    }

    /// The names of its workers, as in the CSVs: `fused-0`, or `prefill-0` … `decode-0` ….
    pub fn worker_names(&self) -> Vec<String> {
        match self.kind {
            TopologyKind::Fused { workers, .. } => (0..workers).map(|i| format!("fused-{i}")).collect(),
            TopologyKind::Split { prefill_workers, decode_workers, .. } => (0..prefill_workers)
                .map(|i| format!("prefill-{i}"))
                .chain((0..decode_workers).map(|i| format!("decode-{i}")))
                .collect(),
        }
    }

    /// The faults aimed at the named worker.
    pub fn faults_of(&self, worker: &str) -> Vec<FaultSpec> {
        self.faults.iter().filter(|f| f.worker == worker).cloned().collect()
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            TopologyKind::Fused { .. } => "fused",
            TopologyKind::Split { .. } => "split",
        }
    }

    /// A short description, e.g. `2 fused, chunked 512` or `1P + 1D, round_robin, 100 Gb/s`.
    pub fn layout(&self) -> String {
        match &self.kind {
            TopologyKind::Fused { workers, policy, .. } => {
                let tp = self.tp.prefill.map_or(String::new(), |t| format!(" × tp{t}"));
                match policy {
                    FusedPolicy::Chunked { chunk_tokens } => {
                        format!("{workers}{tp} fused, chunked {chunk_tokens}")
                    }
                    p => format!("{workers}{tp} fused, {}", p.name()),
                }
            }
            TopologyKind::Split { prefill_workers, decode_workers, router, link } => {
                let link = match link {
                    None => "no link model".to_owned(),
                    Some(l) if l.bandwidth_bytes_per_s.is_infinite() => {
                        format!("in-process handoff {:.1} µs", l.latency_ns as f64 / 1e3)
                    }
                    Some(l) => format!("{} Gb/s", l.bandwidth_bytes_per_s * 8.0 / 1e9),
                };
                let tp = |t: Option<u32>| t.map_or(String::new(), |t| format!("(tp{t})"));
                format!(
                    "{prefill_workers}P{} + {decode_workers}D{}, {}, {link}",
                    tp(self.tp.prefill),
                    tp(self.tp.decode),
                    router.name()
                )
            }
        }
    }
}

/// Reads, parses and validates a scenario file to run with this build.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    load_for(path, Build::This)
}

/// Reads, parses and validates a scenario file, for this build or any.
pub fn load_for(path: &Path, build: Build) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.to_owned(), source })?;
    parse_for(path, &text, build)
}

/// Parses and validates scenario text to run with this build; `path` names it in errors and
/// anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    parse_for(path, text, Build::This)
}

pub fn parse_for(path: &Path, text: &str, build: Build) -> Result<Scenario, ScenarioError> {
    let raw = validate::deserialize(path, text)?;
    validate::resolve(raw, path, build).map_err(|e| error::locate(path, text, e))
}

/// Which build a scenario must run on: a scenario with CUDA devices is valid, but only a CUDA
/// build runs it (`pdsim validate` checks the file for any build and says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    This,
    Any,
}
