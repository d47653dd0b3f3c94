//! A calibration profile: what `pdsim calibrate` measured, as a TOML file that scenarios name
//! (`[cost_model] kind = "profile", path = "..."`). One fit per thread count: a simulated
//! worker takes the fit of the threads its topology gives it.

use serde::{Deserialize, Serialize};

use super::fit::Fit;
use crate::engine::sim::linear::{CoRun, DecodeCoeffs, LinearCost, PrefillCoeffs, Wake};
use crate::engine::sim::noise::Noise;

/// The fits for one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadsFit {
    pub threads: usize,
    pub prefill: Fit,
    /// Batch-1 decode: base + per_ctx_token·ctx.
    pub decode_single: Fit,
    /// Decode batches of two or more.
    pub decode: Fit,
    /// The extra time of a step after a pause.
    pub wake: Wake,
    /// The slowdown of steps beside another worker.
    pub co_run: CoRun,
    /// How unsteady the machine ran the same step, when measured.
    pub noise: Option<Noise>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub model: String,
    pub weights: String,
    pub machine: String,
    pub kv_bytes_per_token: u64,
    /// One KV handoff between actor threads, µs.
    pub handoff_us: f64,
    pub fits: Vec<ThreadsFit>,
}

/// The file as written and read back.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub model: String,
    pub weights: String,
    pub machine: String,
    pub kv_bytes_per_token: u64,
    pub handoff_us: f64,
    pub fit: Vec<FitFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitFile {
    pub threads: usize,
    pub prefill: PrefillFile,
    /// Batch-1 decode (`per_seq_ms` is 0).
    pub decode_single: DecodeFile,
    /// Decode batches of two or more.
    pub decode: DecodeFile,
    /// A step after the worker sat idle `after_idle_ms` or more takes `extra_ms` longer
    /// (absent in profiles written before it was measured: no charge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake: Option<WakeFile>,
    /// Steps run × (1 + factor) while another worker computes on the machine (absent in older
    /// profiles: no charge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co_run: Option<CoRunFile>,
    /// How unsteady the machine is (absent in older profiles: every step takes the fitted
    /// time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<NoiseFile>,
    /// Fit quality, for people; not read.
    pub quality: Quality,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefillFile {
    pub base_ms: f64,
    pub per_token_ms: f64,
    pub per_token_sq_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeFile {
    pub base_ms: f64,
    pub per_ctx_token_ms: f64,
    pub per_seq_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WakeFile {
    pub after_idle_ms: f64,
    pub extra_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoRunFile {
    pub prefill: f64,
    pub decode: f64,
    /// A prefill's factor beside a single-sequence decode step (absent in older profiles:
    /// `prefill` then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill_beside_single: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseFile {
    pub slow_sd: f64,
    pub corr_ms: f64,
    pub step_sd: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    pub prefill_r2: f64,
    pub prefill_max_residual_ms: f64,
    pub prefill_points: usize,
    pub decode_single_r2: f64,
    pub decode_single_max_residual_ms: f64,
    pub decode_single_points: usize,
    pub decode_r2: f64,
    pub decode_max_residual_ms: f64,
    pub decode_points: usize,
}

impl Profile {
    pub fn to_file(&self) -> ProfileFile {
        ProfileFile {
            model: self.model.clone(),
            weights: self.weights.clone(),
            machine: self.machine.clone(),
            kv_bytes_per_token: self.kv_bytes_per_token,
            handoff_us: self.handoff_us,
            fit: self
                .fits
                .iter()
                .map(|f| FitFile {
                    threads: f.threads,
                    prefill: PrefillFile {
                        base_ms: f.prefill.coeffs[0],
                        per_token_ms: f.prefill.coeffs[1],
                        per_token_sq_ms: f.prefill.coeffs[2],
                    },
                    decode_single: DecodeFile {
                        base_ms: f.decode_single.coeffs[0],
                        per_ctx_token_ms: f.decode_single.coeffs[1],
                        per_seq_ms: 0.0,
                    },
                    decode: DecodeFile {
                        base_ms: f.decode.coeffs[0],
                        per_ctx_token_ms: f.decode.coeffs[1],
                        per_seq_ms: f.decode.coeffs[2],
                    },
                    wake: Some(WakeFile { after_idle_ms: f.wake.after_idle_ms, extra_ms: f.wake.extra_ms }),
                    co_run: Some(CoRunFile {
                        prefill: f.co_run.prefill,
                        decode: f.co_run.decode,
                        prefill_beside_single: f.co_run.prefill_beside_single,
                    }),
                    noise: f.noise.map(|n| NoiseFile { slow_sd: n.slow_sd, corr_ms: n.corr_ms, step_sd: n.step_sd }),
                    quality: Quality {
                        prefill_r2: f.prefill.r2,
                        prefill_max_residual_ms: f.prefill.max_residual_ms,
                        prefill_points: f.prefill.points,
                        decode_single_r2: f.decode_single.r2,
                        decode_single_max_residual_ms: f.decode_single.max_residual_ms,
                        decode_single_points: f.decode_single.points,
                        decode_r2: f.decode.r2,
                        decode_max_residual_ms: f.decode.max_residual_ms,
                        decode_points: f.decode.points,
                    },
                })
                .collect(),
        }
    }

    /// The TOML text, with a header saying what it is.
    pub fn to_toml(&self, date: &str) -> String {
        let body = toml::to_string(&self.to_file()).expect("a profile serializes");
        format!(
            "# pdsim calibrate, {date}: {} ({} weights) on {}.\n\
             # Step time fits, in DistServe's form: prefill = base + per_token·ΣL + per_token_sq·ΣL²,\n\
             # decode = base + per_ctx_token·Σctx + per_seq·B (ms), batch-1 decode fitted apart\n\
             # (decode_single). Name this file in a scenario:\n\
             #   [cost_model]\n#   kind = \"profile\"\n#   path = \"<this file>\"\n\n{body}",
            self.model, self.weights, self.machine
        )
    }
}

impl FitFile {
    pub fn cost(&self) -> LinearCost {
        LinearCost {
            prefill: PrefillCoeffs {
                base_ms: self.prefill.base_ms,
                per_token_ms: self.prefill.per_token_ms,
                per_token_sq_ms: self.prefill.per_token_sq_ms,
            },
            decode: DecodeCoeffs {
                base_ms: self.decode_single.base_ms,
                per_ctx_token_ms: self.decode_single.per_ctx_token_ms,
                per_seq_ms: self.decode_single.per_seq_ms,
            },
            large_batch_decode: Some((
                2,
                DecodeCoeffs {
                    base_ms: self.decode.base_ms,
                    per_ctx_token_ms: self.decode.per_ctx_token_ms,
                    per_seq_ms: self.decode.per_seq_ms,
                },
            )),
            wake: self.wake.as_ref().map(|w| Wake { after_idle_ms: w.after_idle_ms, extra_ms: w.extra_ms }),
            co_run: self.co_run.as_ref().map(|c| CoRun {
                prefill: c.prefill,
                decode: c.decode,
                prefill_beside_single: c.prefill_beside_single,
            }),
            noise: self.noise.as_ref().map(|n| Noise { slow_sd: n.slow_sd, corr_ms: n.corr_ms, step_sd: n.step_sd }),
        }
    }
}
