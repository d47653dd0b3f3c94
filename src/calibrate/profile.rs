//! A calibration profile: what `pdsim calibrate` measured, as a TOML file that scenarios name
//! (`[cost_model] kind = "profile", path = "..."`). One fit per thread count: a simulated
//! worker takes the fit of the threads its topology gives it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::fit::{Fit, LinesFit};
use crate::engine::sim::batch_lines::{BatchLine, BatchLines};
use crate::engine::sim::linear::{CoRun, DecodeCoeffs, LinearCost, PrefillCoeffs, Wake};
use crate::engine::sim::noise::Noise;
use crate::engine::sim::quantiles::Quantiles;
use crate::engine::sim::CostModel;
use crate::scenario::error::line_col;

/// The fits for one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadsFit {
    pub threads: usize,
    pub prefill: Fit,
    /// Batch-1 decode: base + per_ctx_token·ctx.
    pub decode_single: Fit,
    /// Decode batches of two or more.
    pub decode: Fit,
    /// A line per measured batch size: what the simulator takes for decode steps.
    pub decode_by_batch: LinesFit,
    /// The extra time of a step after a pause.
    pub wake: Wake,
    /// The slowdown of steps beside another worker.
    pub co_run: CoRun,
    /// How unsteady the machine ran the same step, when measured.
    pub noise: Option<Noise>,
    /// The share of the machine's CPU time the hypervisor took while this thread count was
    /// timed (Linux's `/proc/stat`), when it could be read.
    pub cpu_stolen: Option<f64>,
    /// The median of batch-1 decode steps run back to back (the unsteadiness series, a segment
    /// in each of the grid's rounds) over the grid's batch-1 fit, when measured: the decode fits
    /// are the grid's times scaled by it (far from 1, long stretches of steps ran otherwise than
    /// the grid's short ones).
    pub back_to_back_decode: Option<f64>,
    /// Batch-1 decode steps back to back, the median per context bin (`[context, ms]`; empty
    /// when not measured): what the simulator's batch-1 steps take.
    pub decode_single_by_context: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub model: String,
    pub weights: String,
    pub machine: String,
    /// [`super::cpu()`]: `None` in a merge of profiles written before it was.
    pub cpu: Option<String>,
    pub kv_bytes_per_token: u64,
    /// One KV handoff between actor threads, µs.
    pub handoff_us: f64,
    pub fits: Vec<ThreadsFit>,
}

/// The real engine's timing revision, written into every profile: raised when a change to the
/// engine moves its step times (a kernel, the threading), so that a profile timed with an
/// earlier build is told apart from one of this engine.
/// - 1: profiles without the key: prompt attention through candle's tensor ops.
/// - 2: prompt attention in pdsim's own kernel (a 512-token prefill ×1.5 faster at one thread).
/// - 3: the 8-bit kernel reads a call's activation rows through one pointer (on the Xeon,
///   one-thread prompts of 16–128 tokens 8–13% faster in calibrate's grid, longer ones 0–8%).
/// - 4: pdsim's kernels keep their weights on huge pages (on the AMX Xeon's KVM guest, the first
///   step after seconds idle paid about an eighth of the extra time it paid on 4 KiB pages, and
///   back-to-back bench steps ran ×1.1–1.5 faster).
///
/// - 5: AVX2 kernels for decode attention and the exponential (2026-12-02; on the AVX2 EPYC a
///   batch of 16 at context 512 spent about 80 of its 198 ms one-thread step in the portable
///   loops' attention, and the SwiGLU's scalar `expf` calls cost every step).
///
/// A revision is this CPU's: a change no path of the CPU takes leaves its revision as it was.
/// The AVX2 kernels of the matrices (2026-12-02) raised none (no profile had been timed on a CPU
/// without AVX-512, whose every matrix ran through the portable loops, too slowly to calibrate),
/// and revision 5 is only for CPUs without AVX-512: one with it takes none of its paths, so its
/// engine is still revision 4 and its profiles stay valid.
pub fn engine_revision() -> u32 {
    if crate::engine::candle::kernels::cpu::avx512() {
        4
    } else {
        5
    }
}

/// The file as written and read back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub model: String,
    pub weights: String,
    pub machine: String,
    /// The CPU's family, model and the kernels' vector extensions ([`super::cpu()`]; absent in
    /// older profiles: the machine is told by `machine` alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// [`engine_revision`] of the build and CPU that timed it (absent in older profiles: 1).
    #[serde(default = "first_revision")]
    pub engine_revision: u32,
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
    /// Decode batches of two or more: one plane over every batch size, DistServe's form (for
    /// people, and for profiles without `decode_by_batch`).
    pub decode: DecodeFile,
    /// Decode step time per measured batch size, interpolated between sizes (absent in older
    /// profiles: `decode_single` and `decode` then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode_by_batch: Vec<BatchLineFile>,
    /// Batch-1 decode steps run back to back, as runs decode: `[context, ms]`, the median per
    /// 50-token bin. Batch-1 steps take it instead of their `decode_by_batch` line (absent in
    /// older profiles: the line).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode_single_by_context: Vec<[f64; 2]>,
    /// A step after the worker sat idle `after_idle_ms` or more takes `extra_ms` longer, or
    /// what `by_pause` gives for its pause (absent in profiles written before it was measured:
    /// no charge).
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
    /// The share of the machine's CPU time the hypervisor took while this fit was timed, for
    /// people: a profile measured while the machine lost time to it is slow by as much; not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_stolen_share: Option<f64>,
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
pub struct BatchLineFile {
    pub batch: u64,
    pub base_ms: f64,
    pub per_ctx_token_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WakeFile {
    pub after_idle_ms: f64,
    pub extra_ms: f64,
    /// The charge measured after several pauses, `[pause_ms, extra_ms]` by increasing pause,
    /// interpolated between them (absent in older profiles: `extra_ms` after any pause).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_pause: Vec<[f64; 2]>,
    /// The same, measured with another engine computing through the pause: the worker's own
    /// part of the charge (absent in older profiles: the whole charge whatever other workers
    /// do).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub beside_by_pause: Vec<[f64; 2]>,
    /// `[tokens, ms]`: how much more than the probe a step of that many tokens pays after the
    /// shortest pause, the probe's size at 0 (absent in older profiles: every step the probe's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_step_tokens: Vec<[f64; 2]>,
    /// `[k, fraction]`: how much slower the k-th decode step after the step that paid the
    /// charge runs than the steps well after it (absent in older profiles: no slower).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode_after: Vec<[f64; 2]>,
}

impl WakeFile {
    pub fn of(w: &Wake) -> WakeFile {
        WakeFile {
            after_idle_ms: w.after_idle_ms,
            extra_ms: w.extra_ms,
            by_pause: w.by_pause.iter().map(|&(p, e)| [p, e]).collect(),
            beside_by_pause: w.beside_by_pause.iter().map(|&(p, e)| [p, e]).collect(),
            by_step_tokens: w.by_step_tokens.iter().map(|&(t, e)| [t, e]).collect(),
            decode_after: w.decode_after.iter().map(|&(k, f)| [k, f]).collect(),
        }
    }

    pub fn wake(&self) -> Wake {
        Wake {
            after_idle_ms: self.after_idle_ms,
            extra_ms: self.extra_ms,
            by_pause: self.by_pause.iter().map(|&[p, e]| (p, e)).collect(),
            beside_by_pause: self.beside_by_pause.iter().map(|&[p, e]| (p, e)).collect(),
            by_step_tokens: self.by_step_tokens.iter().map(|&[t, e]| (t, e)).collect(),
            decode_after: self.decode_after.iter().map(|&[k, f]| (k, f)).collect(),
        }
    }

    fn check(&self) -> Result<(), String> {
        let curves = self.by_pause.iter().chain(&self.beside_by_pause).flatten().copied();
        let values = [self.after_idle_ms, self.extra_ms].into_iter().chain(curves);
        if !values.clone().all(|x| x.is_finite() && (0.0..=1e9).contains(&x)) {
            return Err("has a wake outside 0 to 1e9 ms".into());
        }
        for (name, curve) in [("by_pause", &self.by_pause), ("beside_by_pause", &self.beside_by_pause)] {
            if curve.windows(2).any(|w| w[0][0] >= w[1][0]) {
                return Err(format!("has a wake.{name} whose pauses do not increase"));
            }
        }
        // Its charges may be negative: a small step pays less than the probe.
        let sizes = &self.by_step_tokens;
        if !sizes.iter().all(|&[t, ms]| (1.0..=1e9).contains(&t) && ms.is_finite() && ms.abs() <= 1e9) {
            return Err("has a wake.by_step_tokens outside 1 to 1e9 tokens or ±1e9 ms".into());
        }
        if sizes.windows(2).any(|w| w[0][0] >= w[1][0]) {
            return Err("has a wake.by_step_tokens whose token counts do not increase".into());
        }
        // A fraction may be negative, a noisy calibration's step running faster; never −1 or
        // below, a step of no time.
        let after = &self.decode_after;
        if !after.iter().all(|&[k, f]| (1.0..=1e6).contains(&k) && f.is_finite() && f > -1.0 && f <= 100.0) {
            return Err("has a wake.decode_after outside steps 1 to 1e6 or fractions above -1 and up to 100".into());
        }
        if after.windows(2).any(|w| w[0][0] >= w[1][0]) {
            return Err("has a wake.decode_after whose steps do not increase".into());
        }
        Ok(())
    }
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
    /// The shape of a decode step's jitter: the quantiles of its log at probabilities 0.01,
    /// 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995 and 0.999 (absent in
    /// older profiles: normal, of `step_sd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_quantiles: Option<Vec<f64>>,
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
    /// The lines per batch size over every decode point, batch 1 included (absent in older
    /// profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_by_batch_r2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_by_batch_max_residual_ms: Option<f64>,
    /// Batch-1 decode steps run back to back in the grid's rounds, their median over the grid's
    /// batch-1 fit (absent in older profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_to_back_decode_ratio: Option<f64>,
    /// True when the decode fits are the grid's times × `back_to_back_decode_ratio`: the grid's
    /// shape at the back-to-back steps' level (absent in older profiles: the grid's own level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_level_from_back_to_back: Option<bool>,
}

/// Shares, ratios and log factors are written to four decimals (0.01%): finer is noise.
fn four_decimals(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

impl Profile {
    pub fn to_file(&self) -> ProfileFile {
        ProfileFile {
            model: self.model.clone(),
            weights: self.weights.clone(),
            machine: self.machine.clone(),
            cpu: self.cpu.clone(),
            engine_revision: engine_revision(),
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
                    decode_by_batch: f
                        .decode_by_batch
                        .lines
                        .iter()
                        .map(|l| BatchLineFile {
                            batch: l.batch,
                            base_ms: l.base_ms,
                            per_ctx_token_ms: l.per_ctx_token_ms,
                        })
                        .collect(),
                    decode_single_by_context: f
                        .decode_single_by_context
                        .iter()
                        .map(|&(c, ms)| [c, four_decimals(ms)])
                        .collect(),
                    wake: Some(WakeFile::of(&f.wake)),
                    co_run: Some(CoRunFile {
                        prefill: f.co_run.prefill,
                        decode: f.co_run.decode,
                        prefill_beside_single: f.co_run.prefill_beside_single,
                    }),
                    noise: f.noise.map(|n| NoiseFile {
                        slow_sd: n.slow_sd,
                        corr_ms: n.corr_ms,
                        step_sd: n.step_sd,
                        step_quantiles: n.step_shape.map(|q| q.0.iter().copied().map(four_decimals).collect()),
                    }),
                    cpu_stolen_share: f.cpu_stolen.map(four_decimals),
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
                        decode_by_batch_r2: Some(f.decode_by_batch.r2),
                        decode_by_batch_max_residual_ms: Some(f.decode_by_batch.max_residual_ms),
                        back_to_back_decode_ratio: f.back_to_back_decode.map(four_decimals),
                        decode_level_from_back_to_back: f.back_to_back_decode.map(|_| true),
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
             # (decode_single). Simulated decode steps take decode_by_batch instead: a line in Σctx\n\
             # per measured batch size, interpolated between sizes, and batch-1 steps the curve\n\
             # decode_single_by_context (steps run back to back). Name this file in a scenario:\n\
             #   [cost_model]\n#   kind = \"profile\"\n#   path = \"<this file>\"\n\n{body}",
            self.model,
            self.weights,
            self.cpu.as_ref().map_or(self.machine.clone(), |cpu| format!("{} ({cpu})", self.machine))
        )
    }
}

impl FitFile {
    /// The simulator's cost model for this fit; an error names what is out of range.
    pub fn cost(&self) -> Result<LinearCost, String> {
        let c = [
            self.prefill.base_ms,
            self.prefill.per_token_ms,
            self.prefill.per_token_sq_ms,
            self.decode.base_ms,
            self.decode.per_ctx_token_ms,
            self.decode.per_seq_ms,
            self.decode_single.base_ms,
            self.decode_single.per_ctx_token_ms,
        ];
        if c.iter().any(|x| !x.is_finite() || x.abs() > 1e9) || self.threads == 0 {
            return Err("has an invalid coefficient".into());
        }
        if let Some(c) = &self.co_run {
            let factors = [c.prefill, c.decode, c.prefill_beside_single.unwrap_or(0.0)];
            if !factors.iter().all(|x| x.is_finite() && (0.0..=100.0).contains(x)) {
                return Err("has co_run factors outside 0 to 100".into());
            }
        }
        if let Some(w) = &self.wake {
            w.check()?;
        }
        let noise = match &self.noise {
            None => None,
            Some(n) => {
                let step_shape = n.step_quantiles.as_deref().map(Quantiles::from_values).transpose();
                let noise = Noise {
                    step_shape: step_shape.map_err(|e| format!("noise.step_quantiles {e}"))?,
                    ..Noise::normal(n.slow_sd, n.corr_ms, n.step_sd)
                };
                noise.check()?;
                Some(noise)
            }
        };
        let decode_by_batch = match self.decode_by_batch.as_slice() {
            [] => None,
            lines => Some(
                BatchLines::new(
                    lines
                        .iter()
                        .map(|l| BatchLine { batch: l.batch, base_ms: l.base_ms, per_ctx_token_ms: l.per_ctx_token_ms })
                        .collect(),
                )?
                .with_single(self.decode_single_by_context.iter().map(|&[c, ms]| (c, ms)).collect())?,
            ),
        };
        Ok(LinearCost {
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
            decode_by_batch,
            wake: self.wake.as_ref().map(WakeFile::wake),
            co_run: self.co_run.as_ref().map(|c| CoRun {
                prefill: c.prefill,
                decode: c.decode,
                prefill_beside_single: c.prefill_beside_single,
            }),
            noise,
        })
    }
}

fn first_revision() -> u32 {
    1
}

/// Why the profile at `path` may not time this machine's engine, for a run on the machine
/// `here` with the CPU `here_cpu` ([`super::machine()`], [`super::cpu()`]): it names another
/// machine or another CPU, or it was timed by another revision of the engine. Nothing when it
/// cannot be read (loading it reports that).
pub fn origin_warnings(path: &Path, here: &str, here_cpu: &str) -> Vec<String> {
    let Some(v) = std::fs::read_to_string(path).ok().and_then(|t| toml::from_str::<toml::Value>(&t).ok()) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    let recalibrate = "run `pdsim calibrate --out PATH` here and pass --profile PATH";
    let machine = v.get("machine").and_then(|m| m.as_str());
    let cpu = v.get("cpu").and_then(|c| c.as_str());
    if machine.is_some_and(|m| m != here) || cpu.is_some_and(|c| c != here_cpu) {
        let theirs = match (machine, cpu) {
            (Some(m), Some(c)) => format!("{m} ({c})"),
            (m, c) => m.or(c).unwrap_or_default().to_owned(),
        };
        warnings.push(format!(
            "{} was measured on {theirs}; this machine is {here} ({here_cpu}): the simulation predicts the other machine ({recalibrate})",
            path.display()
        ));
    }
    let revision = v.get("engine_revision").and_then(|r| r.as_integer()).unwrap_or(first_revision().into());
    let ours = engine_revision();
    if revision != i64::from(ours) {
        warnings.push(format!(
            "{} was timed by engine revision {revision} and this build's engine is revision {ours} on this CPU: \
             its step times changed between them, so the simulation predicts the other engine ({recalibrate})",
            path.display()
        ));
    }
    warnings
}

/// The file at `path` as written; an error gives the file and, for a bad key or value, its line.
pub fn read(path: &Path) -> Result<ProfileFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read profile {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(&text, s.start));
        format!("{}:{line}:{column}: {}", path.display(), e.message().trim())
    })
}

/// Reads a profile a scenario names (`[cost_model] kind = "profile"`) or `compare --profile`
/// takes; errors give the file and, for a bad key or value, its line.
pub fn load(path: &Path) -> Result<CostModel, String> {
    let p = read(path)?;
    if p.fit.is_empty() {
        return Err(format!("{}: the profile has no [[fit]]", path.display()));
    }
    let fits = p
        .fit
        .iter()
        .map(|f| {
            f.cost()
                .map(|c| (f.threads, c))
                .map_err(|e| format!("{}: the fit for {} threads {e}", path.display(), f.threads))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !(p.handoff_us.is_finite() && (0.0..=1e9).contains(&p.handoff_us)) {
        return Err(format!("{}: handoff_us must be from 0 to 1e9", path.display()));
    }
    Ok(CostModel::Profile {
        fits,
        kv_bytes_per_token: p.kv_bytes_per_token,
        handoff_ns: (p.handoff_us * 1e3).round() as u64,
        source: format!("profile {} ({}, {} weights, {})", path.display(), p.model, p.weights, p.machine),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_from_another_machine_or_engine_is_named_as_such() {
        let (here, cpu) = ("Some CPU, 2 cores", "family 6 model 1 stepping 1; no AVX-512");
        // The committed AMD profile: another machine, and timed before revisions were written.
        let amd = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/amd-epyc-2vcpu.toml");
        let w = origin_warnings(&amd, here, cpu);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("was measured on AMD EPYC, 2 cores; this machine is Some CPU, 2 cores (family 6 model 1"),
            "{w:?}"
        );
        assert!(
            w[1].contains(&format!(
                "engine revision 1 and this build's engine is revision {} on this CPU",
                engine_revision()
            )),
            "{w:?}"
        );
        // One written by this build on this machine: nothing to say.
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.toml");
        let text = format!("model = \"m\"\nmachine = \"{here}\"\nengine_revision = {}\n", engine_revision());
        std::fs::write(&fresh, &text).unwrap();
        assert_eq!(origin_warnings(&fresh, here, cpu), Vec::<String>::new());
        assert!(origin_warnings(&dir.path().join("missing.toml"), here, cpu).is_empty());
        // The same model name on another CPU (a hypervisor may name two CPUs alike).
        let text = format!("{text}cpu = \"family 6 model 167 stepping 1; AVX-512 VNNI BF16\"\n");
        std::fs::write(&fresh, text).unwrap();
        let w = origin_warnings(&fresh, here, cpu);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains(
                "was measured on Some CPU, 2 cores (family 6 model 167 stepping 1; AVX-512 VNNI BF16); \
                           this machine is Some CPU, 2 cores (family 6 model 1 stepping 1; no AVX-512)"
            ),
            "{w:?}"
        );
        // Written on this CPU: nothing to say.
        assert!(origin_warnings(&fresh, here, "family 6 model 167 stepping 1; AVX-512 VNNI BF16").is_empty());
    }

    #[test]
    fn the_workers_own_wake_up_and_the_step_sizes_are_read_and_bad_ones_named() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/calibrated.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let with = |beside: &str| text.replace("\nextra_ms = ", &format!("\nbeside_by_pause = {beside}\nextra_ms = "));
        let model = load_text(&with("[[300.0, 2.0], [4000.0, 9.0]]")).unwrap();
        let CostModel::Linear { cost, .. } = model.for_threads(1).unwrap() else { panic!("a profile's fit is linear") };
        assert_eq!(cost.wake.unwrap().beside_by_pause, [(300.0, 2.0), (4000.0, 9.0)]);
        let err = load_text(&with("[[4000.0, 2.0], [300.0, 9.0]]")).unwrap_err();
        assert!(err.contains("wake.beside_by_pause whose pauses do not increase"), "{err}");
        let sized = with("[[300.0, 2.0]]")
            .replace("\nextra_ms = ", "\nby_step_tokens = [[16.0, -5.0], [64.0, 0.0]]\nextra_ms = ");
        let CostModel::Linear { cost, .. } = load_text(&sized).unwrap().for_threads(2).unwrap() else { panic!() };
        assert_eq!(cost.wake.unwrap().by_step_tokens, [(16.0, -5.0), (64.0, 0.0)]);
        let bad = with("[[300.0, 2.0]]")
            .replace("\nextra_ms = ", "\nby_step_tokens = [[64.0, 0.0], [16.0, -5.0]]\nextra_ms = ");
        let err = load_text(&bad).unwrap_err();
        assert!(err.contains("wake.by_step_tokens whose token counts do not increase"), "{err}");
        // Older profiles do not have it: the whole charge, whatever other workers do.
        let CostModel::Linear { cost, .. } = load_text(&text).unwrap().for_threads(1).unwrap() else { panic!() };
        assert!(cost.wake.unwrap().beside_by_pause.is_empty());
    }

    #[test]
    fn the_decode_steps_after_a_wake_up_are_read_and_bad_ones_named() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/calibrated.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let with = |after: &str| text.replace("\nextra_ms = ", &format!("\ndecode_after = {after}\nextra_ms = "));
        let CostModel::Linear { cost, .. } =
            load_text(&with("[[1.0, 0.12], [2.0, -0.01]]")).unwrap().for_threads(2).unwrap()
        else {
            panic!("a profile's fit is linear")
        };
        assert_eq!(cost.wake.unwrap().decode_after, [(1.0, 0.12), (2.0, -0.01)]);
        let err = load_text(&with("[[2.0, 0.1], [1.0, 0.2]]")).unwrap_err();
        assert!(err.contains("wake.decode_after whose steps do not increase"), "{err}");
        let err = load_text(&with("[[0.0, 0.1]]")).unwrap_err();
        assert!(err.contains("wake.decode_after outside steps 1 to 1e6"), "{err}");
        let err = load_text(&with("[[1.0, -1.0]]")).unwrap_err();
        assert!(err.contains("fractions above -1"), "{err}");
        // Older profiles do not have it: decode steps after a pause at their usual time.
        let CostModel::Linear { cost, .. } = load_text(&text).unwrap().for_threads(1).unwrap() else { panic!() };
        assert!(cost.wake.unwrap().decode_after.is_empty());
    }

    #[test]
    fn the_batch_1_decode_curve_is_read_and_a_bad_one_named() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/calibrated.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let with = |curve: &str| text.replace("[[fit]]\n", &format!("[[fit]]\ndecode_single_by_context = {curve}\n"));
        let single = |text: &str, threads: usize| {
            let CostModel::Linear { cost, .. } = load_text(text).unwrap().for_threads(threads).unwrap() else {
                panic!()
            };
            cost.decode_by_batch.unwrap().single().to_vec()
        };
        let curved = with("[[89.5, 7.0], [139.5, 7.6]]");
        assert_eq!(single(&curved, 1), [(89.5, 7.0), (139.5, 7.6)]);
        let err = load_text(&with("[[139.5, 7.6], [89.5, 7.0]]")).unwrap_err();
        assert!(err.contains("decode_single_by_context: the contexts do not increase"), "{err}");
        // Older profiles do not have it: batch-1 steps take their line.
        assert!(single(&text, 1).is_empty());
    }

    /// The committed profile with its noise's `step_quantiles` set to `step` (a TOML array), or
    /// removed when `None`.
    fn with_quantiles(step: Option<&str>) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/calibrated.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut out = String::new();
        for line in text.lines().filter(|l| !l.starts_with("step_quantiles")) {
            out.push_str(line);
            out.push('\n');
            if line.starts_with("step_sd") {
                step.iter().for_each(|v| out.push_str(&format!("step_quantiles = {v}\n")));
            }
        }
        out
    }

    fn load_text(text: &str) -> Result<CostModel, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    #[test]
    fn noise_quantiles_are_read_and_bad_ones_named() {
        let good = "[-0.2, -0.15, -0.1, -0.05, -0.02, 0.0, 0.02, 0.08, 0.2, 0.3, 0.45, 0.6, 0.9]";
        let model = load_text(&with_quantiles(Some(good))).unwrap();
        assert_eq!(model.for_threads(1).unwrap().noise().unwrap().step_shape.unwrap().0[12], 0.9);
        // Without them (an older profile): normal noise.
        let plain = load_text(&with_quantiles(None)).unwrap().for_threads(1).unwrap().noise().unwrap();
        assert!(plain.step_shape.is_none());
        let short = load_text(&with_quantiles(Some("[0.0, 0.1]"))).unwrap_err();
        assert!(short.contains("noise.step_quantiles needs 13 values"), "{short}");
        let off = "[-0.2, -0.15, -0.1, -0.05, -0.02, 0.01, 0.02, 0.08, 0.2, 0.3, 0.45, 0.6, 0.9]";
        let err = load_text(&with_quantiles(Some(off))).unwrap_err();
        assert!(err.contains("noise.step_quantiles must have median 0"), "{err}");
    }
}
