//! The scenario file as written: serde structs that mirror the TOML one to one.
//!
//! Everything here is "raw": optional where the file may leave a key out, no cross-field
//! checks. [`super::validate`] turns it into the resolved [`super::Scenario`].

use serde::Deserialize;

use crate::workload::dist::LengthDist;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Option<String>,
    pub mode: Option<RawMode>,
    pub seed: Option<u64>,
    pub requests: Option<u64>,
    pub duration_s: Option<f64>,
    pub output_dir: Option<String>,
    pub cost_model: Option<RawCostModel>,
    pub model: Option<RawModel>,
    pub workload: Option<RawWorkload>,
    pub batching: Option<RawBatching>,
    pub slo: Option<RawSlo>,
    /// Times a request lost to a worker failure is started again (default 1).
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub topology: Vec<RawTopology>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawMode {
    Simulate,
    Execute,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawCostModel {
    /// Analytic roofline from a hardware preset and a model shape.
    Roofline {
        hardware: String,
        model: String,
        tp: Option<u32>,
        compute_efficiency: Option<f64>,
        memory_efficiency: Option<f64>,
        step_overhead_ms: Option<f64>,
    },
    /// A named table of fitted coefficients (e.g. DistServe's A100 profiles).
    Preset { name: String, tp: Option<u32> },
    /// A profile written by `pdsim calibrate` (this machine's real engine); `noise = false`
    /// leaves out the machine's measured unsteadiness (every step takes the fitted time).
    Profile { path: String, noise: Option<bool> },
    /// Explicit coefficients.
    Coefficients {
        model: Option<String>,
        kv_bytes_per_token: Option<u64>,
        prefill: RawPrefillCoeffs,
        decode: RawDecodeCoeffs,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrefillCoeffs {
    pub base_ms: Option<f64>,
    pub per_token_ms: Option<f64>,
    pub per_token_sq_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecodeCoeffs {
    pub base_ms: Option<f64>,
    pub per_ctx_token_ms: Option<f64>,
    pub per_seq_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    #[serde(default)]
    pub classes: Vec<RawClass>,
    pub arrival: Option<RawArrival>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClass {
    pub name: String,
    pub weight: Option<f64>,
    pub prompt_tokens: Option<LengthDist>,
    /// Real text prompts (execute mode): each request of the class takes one at random.
    pub prompts: Option<Vec<String>>,
    pub output_tokens: LengthDist,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawArrival {
    Poisson { rate_per_s: f64 },
    Gamma { rate_per_s: f64, cv: f64 },
    Constant { interval_ms: f64 },
    Bursts { size: u32, every_ms: f64 },
    Trace { path: String, format: Option<RawTraceFormat>, speedup: Option<f64> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawTraceFormat {
    Csv,
    Mooncake,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatching {
    pub prefill_token_budget: Option<u64>,
    pub max_decode_batch: Option<u32>,
    pub kv_capacity_tokens: Option<u64>,
    /// Requests that may wait for prefill at one worker; more are rejected (default: no limit).
    pub max_queued_requests: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    pub ttft_ms: f64,
    pub tpot_ms: f64,
    pub attainment: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawTopology {
    Fused {
        name: Option<String>,
        workers: u32,
        policy: Option<RawFusedPolicy>,
        chunk_tokens: Option<u64>,
        router: Option<RawRouter>,
        batching: Option<RawBatching>,
        threads: Option<usize>,
        /// Execute mode: `cpu` (default) or `cuda:N`.
        device: Option<String>,
        /// Tensor-parallel degree of each worker (simulate mode; default: the cost model's).
        tp: Option<u32>,
        #[serde(default)]
        faults: Vec<RawFault>,
    },
    Split {
        name: Option<String>,
        prefill_workers: u32,
        decode_workers: u32,
        router: Option<RawRouter>,
        link: Option<RawLink>,
        batching: Option<RawBatching>,
        prefill_threads: Option<usize>,
        decode_threads: Option<usize>,
        /// Execute mode: both pools' device, or each pool's (`cpu` default, `cuda:N`).
        device: Option<String>,
        prefill_device: Option<String>,
        decode_device: Option<String>,
        /// Tensor-parallel degree of each phase's workers (simulate mode).
        prefill_tp: Option<u32>,
        decode_tp: Option<u32>,
        #[serde(default)]
        faults: Vec<RawFault>,
    },
}

/// A failure to inject: `[[topology.faults]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    /// e.g. `decode-0`, `prefill-1`, `fused-0`.
    pub worker: String,
    pub at_s: f64,
    pub kind: RawFaultKind,
    /// Crash only: the worker comes back after this long (default: it stays down).
    pub down_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFaultKind {
    Crash,
    StepError,
    Panic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFusedPolicy {
    PrefillFirst,
    DecodeFirst,
    Chunked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawRouter {
    RoundRobin,
    LeastLoaded,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    pub bandwidth_gbps: f64,
    pub latency_us: Option<f64>,
}

/// The real model (execute mode).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// GGUF file, relative to the scenario; default: the SmolLM2-135M-Instruct model in models/.
    pub path: Option<String>,
    /// Instead of a file: seeded random weights in a known architecture's shape.
    pub synthetic: Option<String>,
    /// Synthetic models: keep only this many layers.
    pub layers: Option<usize>,
    /// Compute type of the tensor (device) path: `bf16` (GPU default), `f16`, `f32` (CPU default).
    pub dtype: Option<String>,
    /// CPU kernels' weight form: `mixed` (default), `q8_0`, `q8_0+bf16`, `bf16`, `f32` or `native`.
    pub weights: Option<String>,
    /// Generate exactly the requested output lengths (default true).
    pub ignore_eos: Option<bool>,
    /// 0 (default) is greedy.
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
}
