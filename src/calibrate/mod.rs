//! `pdsim calibrate`: teaches the simulator this machine. It times the real engine's steps
//! (the same `Engine::step` calls a worker makes) over a grid of prefill batches and decode
//! batches × contexts, for each thread count a scenario's workers may get, and fits them:
//! prefill in DistServe's polynomial form (a + b·ΣL + c·ΣL²), decode as a line in Σctx at each
//! measured batch size, interpolated between sizes (`engine::sim::batch_lines`: the engine's
//! decode time is far from linear in B at the small batches a CPU worker runs). DistServe's
//! decode plane (a + b·Σctx + c·B) is fitted too, for comparison and for people. It also
//! measures the in-process KV handoff (a message carrying the cache between two actor threads),
//! what runs pay around the steps (a wake-up after a pause, a neighbour computing beside) and
//! how unsteadily the machine runs the same step (`steadiness`). The result is a profile TOML
//! that simulate-mode scenarios name as their cost model.

mod co_run;
pub mod fit;
mod grid;
mod host;
pub mod merge;
pub mod profile;
pub(crate) mod steadiness;
mod wake;

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::engine::candle::engine::{CandleEngine, GenerationConfig};
use crate::engine::candle::prompts::PromptSource;
use crate::engine::candle::sampler::Sampling;
use crate::engine::candle::Model;
use crate::engine::sim::linear::Wake;
use crate::engine::sim::noise::Noise;
use crate::engine::step::{DecodeSlot, PromptChunk, StepPlan};
use crate::engine::{Engine, EngineError};
use crate::workload::RequestSpec;
use fit::{least_squares, least_squares_with, lines_per_batch, Fit, LinesFit};
use grid::{DecodeGrid, PrefillGrid};
pub use host::{cpu, machine};
use profile::{Profile, ThreadsFit};

/// How thoroughly to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub threads: Vec<usize>,
    /// Timed rounds over the grid (the median per point counts).
    pub reps: usize,
    /// A small grid (for tests and a first look).
    pub quick: bool,
}

/// One timed point: its features and the median step time.
#[derive(Debug, Clone, Copy)]
struct Sample {
    x: [f64; 3],
    ms: f64,
}

/// The middle value (the mean of the two middle ones of an even count); `v` must not be empty.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Bench {
    engine: CandleEngine,
    next_id: u64,
}

impl Bench {
    fn spec(&mut self, prompt: usize, output: usize) -> RequestSpec {
        self.next_id += 1;
        RequestSpec {
            id: self.next_id,
            arrival_ns: 0,
            class: 0,
            prompt_tokens: prompt as u64,
            output_tokens: output as u64,
            prompt: None,
        }
    }

    /// Admits and prefills prompts of `lens` in one step; returns the step's time in ms.
    fn prefill(&mut self, lens: &[usize], output: usize) -> Result<(f64, Vec<u64>), EngineError> {
        let mut plan = StepPlan::default();
        let mut ids = Vec::new();
        for &l in lens {
            let s = self.spec(l, output);
            self.engine.admit(&s)?;
            plan.prefill.push(PromptChunk { request: s.id, offset: 0, tokens: l as u64 });
            ids.push(s.id);
        }
        let t = Instant::now();
        self.engine.step(&plan)?;
        Ok((t.elapsed().as_secs_f64() * 1e3, ids))
    }

    /// One decode step over `slots`; returns its time in ms.
    fn decode(&mut self, slots: Vec<DecodeSlot>) -> Result<f64, EngineError> {
        let plan = StepPlan { decode: slots, ..Default::default() };
        let t = Instant::now();
        self.engine.step(&plan)?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }

    fn finish(&mut self, ids: &[u64]) {
        for &id in ids {
            self.engine.finish(id);
        }
    }
}

/// What one thread count's grid gives.
struct Measured {
    prefill: Fit,
    decode_single: Fit,
    decode: Fit,
    decode_by_batch: LinesFit,
    wake: Wake,
    noise: Noise,
    /// The back-to-back batch-1 decode steps' median over the grid's batch-1 fit: the decode
    /// fits above are the grid's times this much.
    back_to_back: f64,
    /// The same steps' median per context bin: `[context, ms]`.
    single_by_context: Vec<(f64, f64)>,
}

/// One thread count's engine, grids and unsteadiness series while the grids take turns.
struct Timing {
    threads: usize,
    bench: Bench,
    prefill: PrefillGrid,
    decode: DecodeGrid,
    series: steadiness::Series,
}

/// Times every thread count's prefill and decode grids, round by round (see [`grid`]): a
/// warm-up round, then `opts.reps` timed ones, each with a segment of the unsteadiness series.
fn time_grids(model: &Arc<Model>, opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Vec<Timing>, EngineError> {
    let mut timings = Vec::new();
    for &threads in &opts.threads {
        let mut bench = bench(model, threads);
        let decode = DecodeGrid::new(&mut bench, opts.quick, opts.reps)?;
        let series = steadiness::Series::new();
        timings.push(Timing { threads, bench, prefill: PrefillGrid::new(opts.quick), decode, series });
    }
    for round in 0..=opts.reps {
        progress(&grid_round(&opts.threads, round, opts.reps));
        let stolen = crate::run::steal::Meter::start();
        for t in &mut timings {
            // This pool slept while the others computed: an untimed step wakes it, so that the
            // round's first point does not pay for it.
            let (_, ids) = t.bench.prefill(&[16], 2)?;
            t.bench.finish(&ids);
            t.prefill.round(&mut t.bench, round > 0)?;
            t.decode.round(&mut t.bench, round > 0)?;
            if round > 0 {
                t.series.segment(&mut t.bench, steadiness_secs(opts) / opts.reps as f64)?;
            }
        }
        // Whether a slow spell hit one round or all of them: the profile keeps only the share
        // over each thread count's whole timing.
        if let Some(share) = stolen.share() {
            progress(&format!("  the hypervisor took {:.1}% of the CPU time during the round", share * 100.0));
        }
    }
    Ok(timings)
}

/// Fits one thread count's grids, reads its unsteadiness series against the batch-1 decode fit
/// and measures its wake-up (alone, and with another engine computing through the pause).
///
/// The decode fits take their shape (how a step grows with context and batch) from the grid and
/// their level from the series: the grid's times are scaled by the median back-to-back step
/// over the grid's batch-1 fit. Runs decode back to back, as the series does, and the grid's
/// level strayed where the series' did not: two busy calibrations in a row timed the two-thread
/// batch-1 step at 13.5 and 13.7 ms (context 128) where a quiet one had timed 11.4, and their
/// series read ×0.81 and ×0.84 of it, levels of 10.9 and 11.5 ms; the fused worker's decode
/// steps in the runs after the first went ×0.82–0.93 of its grid. Over five calibrations and
/// their rounds the runs' decode pace strayed from the series' level by ±2.5% (one thread) and
/// ±7.6% (two), from the grid's by ±4.6% and ±12.9% (root mean square of the log).
fn measure(
    model: &Arc<Model>,
    t: Timing,
    opts: &Options,
    progress: &mut dyn FnMut(&str),
) -> Result<Measured, EngineError> {
    let Timing { threads, mut bench, prefill, decode, series } = t;
    let prefill = prefill.samples(threads, progress);
    let decode = decode.samples(&mut bench, threads, progress);
    let fit = |features: usize, s: &[&Sample]| {
        let xs: Vec<[f64; 3]> = s.iter().map(|p| p.x).collect();
        let ys: Vec<f64> = s.iter().map(|p| p.ms).collect();
        let f = if features == 3 { least_squares(&xs, &ys) } else { least_squares_with(features, &xs, &ys) };
        f.ok_or_else(|| EngineError::Step("the measurements do not determine a fit".into()))
    };
    let (single, _): (Vec<&Sample>, Vec<&Sample>) = decode.iter().partition(|p| p.x[2] == 1.0);
    let (noise, back_to_back) = series.noise(&fit(2, &single)?);
    let single_by_context = series.by_context();
    let decode: Vec<Sample> = decode.iter().map(|p| Sample { ms: p.ms * back_to_back, ..*p }).collect();
    let (single, batched): (Vec<&Sample>, Vec<&Sample>) = decode.iter().partition(|p| p.x[2] == 1.0);
    let per_batch: Vec<(u64, f64, f64)> = decode.iter().map(|p| (p.x[2] as u64, p.x[1], p.ms)).collect();
    let decode_by_batch = lines_per_batch(&per_batch)
        .ok_or_else(|| EngineError::Step("the decode measurements do not determine a line per batch size".into()))?;
    let wake = wake::measure(model, &mut bench, opts)?;
    let each = |curve: &[(f64, f64)]| -> String {
        let each: Vec<String> = curve.iter().map(|(p, e)| format!("{e:+.1} ms after {} s", p / 1e3)).collect();
        each.join(", ")
    };
    let sizes: Vec<String> = wake.by_step_tokens.iter().map(|(t, ms)| format!("{ms:+.1} ms at {t} tokens")).collect();
    let after: Vec<String> = wake.decode_after.iter().map(|(k, f)| format!("{:+.1}% at {k}", f * 100.0)).collect();
    progress(&format!(
        "threads {threads}: a step after a pause takes longer than one right after another: {}; \
         with another engine computing until the step: {}; against the {}-token probe after 0.3 s: {}; \
         the decode steps after it, against steps well after it: {}",
        each(&wake.by_pause),
        each(&wake.beside_by_pause),
        wake::WAKE_PROBE_TOKENS,
        sizes.join(", "),
        after.join(", ")
    ));
    Ok(Measured {
        prefill: fit(3, &prefill.iter().collect::<Vec<_>>())?,
        decode_single: fit(2, &single)?,
        decode: fit(3, &batched)?,
        decode_by_batch,
        wake,
        noise,
        back_to_back,
        single_by_context,
    })
}

/// The progress line at the start of a round over the grids (round 0 warms up).
fn grid_round(threads: &[usize], round: usize, reps: usize) -> String {
    let threads: Vec<String> = threads.iter().map(usize::to_string).collect();
    let threads = threads.join(" and ");
    match round {
        0 => format!("timing the prefill and decode grids with {threads} threads in turn: warm-up round"),
        r => format!("timing the prefill and decode grids with {threads} threads in turn: round {r} of {reps}"),
    }
}

/// How long one sequence decodes back to back for the machine's unsteadiness, over all the
/// timed rounds together (a segment of this ÷ `reps` in each): the estimate needs a few dozen
/// spells, and reads a spell up to a quarter of a segment long (1.25 s with the default three
/// rounds; the spells here read 0.2–0.7 s).
fn steadiness_secs(opts: &Options) -> f64 {
    if opts.quick {
        4.0
    } else {
        15.0
    }
}

fn bench(model: &Arc<Model>, threads: usize) -> Bench {
    let prompts = Arc::new(PromptSource::Synthetic { seed: 7, vocab: model.llama.config.vocab as u32 });
    let generation = GenerationConfig { sampling: Sampling::Greedy, ignore_eos: true };
    Bench { engine: CandleEngine::new(model.clone(), threads, prompts, generation), next_id: 0 }
}

/// The in-process KV handoff: a message carrying a cache-sized buffer from one actor thread to
/// another and back, halved; median over `n` round trips, in microseconds.
fn handoff_us(bytes: usize, n: usize) -> f64 {
    struct Echo;
    impl Actor for Echo {
        type Context = Context<Self>;
    }
    #[derive(Message)]
    #[rtype(result = "Vec<f32>")]
    struct Carry(Vec<f32>);
    impl Handler<Carry> for Echo {
        type Result = MessageResult<Carry>;
        fn handle(&mut self, m: Carry, _: &mut Context<Self>) -> Self::Result {
            MessageResult(m.0)
        }
    }
    let system = actix_rt::System::new();
    system.block_on(async move {
        let arbiter = Arbiter::new();
        let echo = Echo::start_in_arbiter(&arbiter.handle(), |_| Echo);
        let mut buf = vec![0f32; bytes / 4];
        let mut times = Vec::new();
        for i in 0..=n {
            let t = Instant::now();
            buf = echo.send(Carry(buf)).await.unwrap_or_default();
            if i > 0 {
                times.push(t.elapsed().as_secs_f64() * 1e6 / 2.0);
            }
        }
        arbiter.stop();
        median(times)
    })
}

/// Measures and fits the engine for each thread count in `opts`.
pub fn calibrate(
    model: Arc<Model>,
    model_name: String,
    opts: &Options,
    mut progress: impl FnMut(&str),
) -> Result<Profile, EngineError> {
    let mut fits = Vec::new();
    // The grids of every thread count take turns, so each fit's share of stolen CPU time counts
    // from the start of the grids to the end of its own measurements.
    let stolen = crate::run::steal::Meter::start();
    for timing in time_grids(&model, opts, &mut progress)? {
        let threads = timing.threads;
        let Measured {
            prefill,
            decode_single,
            decode,
            decode_by_batch,
            wake,
            noise,
            back_to_back: typical,
            single_by_context,
        } = measure(&model, timing, opts, &mut progress)?;
        let co_run = co_run::measure(&model, threads)?;
        progress(&format!(
            "threads {threads}: beside another worker, prefill steps take {:+.0}% ({:+.0}% beside a \
             single-sequence decode) and decode steps {:+.0}%",
            co_run.prefill * 100.0,
            co_run.prefill_beside_single.unwrap_or(co_run.prefill) * 100.0,
            co_run.decode * 100.0
        ));
        progress(&format!(
            "threads {threads}: the same step runs unsteadily: slow spells of ±{:.1}% lasting about {:.0} ms, \
             and ±{:.1}% step to step (batch-1 decode steps back to back, their median ×{typical:.3} of the grid's \
             fit: the decode fits take their level); the mean decode step ×{:.3} of the median one",
            noise.slow_sd * 100.0,
            noise.corr_ms,
            noise.step_sd * 100.0,
            noise.decode_mean_factor()
        ));
        let by_context: Vec<String> = single_by_context.iter().map(|(c, ms)| format!("{ms:.2} ms at {c:.0}")).collect();
        progress(&format!(
            "threads {threads}: a batch-1 decode step back to back, by context (what the simulation's batch-1 \
             steps take): {}",
            by_context.join(", ")
        ));
        let cpu_stolen = stolen.share();
        if let Some(share) = cpu_stolen {
            progress(&format!(
                "threads {threads}: the hypervisor took {:.1}% of the machine's CPU time meanwhile (steal in /proc/stat)",
                share * 100.0
            ));
        }
        fits.push(ThreadsFit {
            threads,
            prefill,
            decode_single,
            decode,
            decode_by_batch,
            wake,
            co_run,
            noise: Some(noise),
            cpu_stolen,
            back_to_back_decode: Some(typical),
            decode_single_by_context: single_by_context,
        });
    }
    let c = &model.llama.config;
    let kv_bytes_per_token = (2 * c.layers * c.kv_heads * c.head_dim * std::mem::size_of::<f32>()) as u64;
    // A 512-token cache, the size the shipped scenarios hand over.
    let handoff = handoff_us(512 * kv_bytes_per_token as usize, 50);
    progress(&format!("KV handoff between actor threads (512-token cache): {handoff:.1} µs"));
    Ok(Profile {
        model: model_name,
        weights: model.llama.format.name().to_owned(),
        machine: machine(),
        cpu: Some(cpu()),
        kv_bytes_per_token,
        handoff_us: handoff,
        fits,
    })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_its_middle_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        // Not the upper middle value: a pace read off two steps, ×1.0 and ×1.2, is ×1.1.
        assert_eq!(median(vec![1.2, 1.0]), 1.1);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
