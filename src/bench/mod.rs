//! `pdsim bench`: the real engine's speed on this machine, measured the way the baseline
//! scripts measure llama.cpp and HuggingFace transformers (same prompt text, median of
//! repeats after a warm-up), plus what only pdsim has: batched decode, the actors' overhead,
//! and the KV bytes per token.

pub mod device;
mod text;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::engine::candle::engine::{CandleEngine, GenerationConfig};
use crate::engine::candle::kv_cache::KvCache;
use crate::engine::candle::model::{rows, Llama, SeqInput};
use crate::engine::candle::prompts::PromptSource;
use crate::engine::candle::sampler::{argmax, Sampling};
use crate::engine::candle::Model;
use crate::engine::step::{DecodeSlot, PromptChunk, StepPlan};
use crate::engine::Engine;
use crate::workload::RequestSpec;

pub const PREFILL_LENGTHS: [usize; 3] = [32, 128, 512];
pub const DECODE_CONTEXTS: [usize; 2] = [32, 512];
pub const DECODE_TOKENS: usize = 128;
pub const BATCHES: [usize; 2] = [8, 16];
const BATCH_STEPS: usize = 64;
/// Batched decode at long context: this batch of copies of one prompt's cache of this many
/// tokens, for this many steps (a step there takes several times one at context 32).
pub const LONG_BATCH: usize = 16;
pub const LONG_CONTEXT: usize = 512;
const LONG_STEPS: usize = 16;

/// Median, min and max of repeated throughput measurements, tokens/s.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub tokens: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Rate {
    pub(crate) fn of(tokens: usize, secs: &[f64]) -> Rate {
        let mut r: Vec<f64> = secs.iter().map(|s| tokens as f64 / s).collect();
        r.sort_by(f64::total_cmp);
        Rate { tokens, median: r[r.len() / 2], min: r[0], max: r[r.len() - 1] }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub weights: String,
    pub threads: usize,
    pub reps: usize,
    /// Prompt length → prefill tokens/s.
    pub prefill: Vec<(usize, Rate)>,
    /// Context length → batch-1 decode tokens/s.
    pub decode_batch1: Vec<(usize, Rate)>,
    /// Batch size → aggregate decode tokens/s (32-token prompts).
    pub decode_batched: Vec<(usize, Rate)>,
    /// Aggregate decode tokens/s of [`LONG_BATCH`] sequences at context [`LONG_CONTEXT`], where
    /// attention reads a cache of that many tokens per sequence each step.
    pub decode_batched_long_context: Rate,
    pub actor_overhead: ActorOverhead,
    pub kv_bytes_per_token: KvBytes,
    /// Peak resident memory before the long-context batch (its caches are 16 × 24 MB more).
    pub peak_rss_mb: f64,
    /// Resident memory on transparent huge pages at the end (the weights' arena, when the
    /// kernel granted its advice: see `engine::candle::kernels::huge_pages`), in MiB.
    pub huge_pages_mb: f64,
}

#[derive(Debug, Serialize)]
pub struct ActorOverhead {
    /// Batch-1 decode tokens/s with the engine called in a plain loop.
    pub direct_tokens_per_s: f64,
    /// The same request through Enqueuer → FusedWorker → MetricsCollector (from its TPOT).
    pub actors_tokens_per_s: f64,
    /// 1 − actors / direct, in percent.
    pub overhead_pct: f64,
}

#[derive(Debug, Serialize)]
pub struct KvBytes {
    pub measured: u64,
    /// 2 × layers × kv_heads × head_dim × 4 bytes (f32).
    pub formula: u64,
}

/// Runs every measurement. `progress` gets one line per measurement.
pub fn run(
    model: Arc<Model>,
    threads: usize,
    reps: usize,
    mut progress: impl FnMut(&str),
) -> candle_core::Result<Report> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(candle_core::Error::wrap)?;
    let tokens = model.encode(&text::base_text()).map_err(candle_core::Error::wrap)?;
    let llama = &model.llama;
    let timed = |f: &mut dyn FnMut() -> candle_core::Result<f64>| -> candle_core::Result<Vec<f64>> {
        f()?; // warm-up
        (0..reps).map(|_| f()).collect()
    };
    let mut prefill = Vec::new();
    for n in PREFILL_LENGTHS {
        let secs = pool.install(|| {
            timed(&mut || {
                let mut kv = llama.new_kv(n)?;
                let t = Instant::now();
                rows(&llama.forward(&mut [SeqInput { tokens: &tokens[..n], kv: &mut kv }])?)?;
                Ok(t.elapsed().as_secs_f64())
            })
        })?;
        let r = Rate::of(n, &secs);
        progress(&format!("prefill {n:>4} tokens: {:>7.1} tok/s", r.median));
        prefill.push((n, r));
    }
    let mut decode_batch1 = Vec::new();
    for ctx in DECODE_CONTEXTS {
        let secs = pool.install(|| {
            timed(&mut || {
                let mut kv = llama.new_kv(ctx + DECODE_TOKENS + 1)?;
                let mut next =
                    argmax(&rows(&llama.forward(&mut [SeqInput { tokens: &tokens[..ctx], kv: &mut kv }])?)?[0]);
                let t = Instant::now();
                for _ in 0..DECODE_TOKENS {
                    next = argmax(&rows(&llama.forward(&mut [SeqInput { tokens: &[next], kv: &mut kv }])?)?[0]);
                }
                Ok(t.elapsed().as_secs_f64())
            })
        })?;
        let r = Rate::of(DECODE_TOKENS, &secs);
        progress(&format!("decode batch 1, context {ctx:>3}: {:>7.1} tok/s", r.median));
        decode_batch1.push((ctx, r));
    }
    let mut decode_batched = Vec::new();
    for b in BATCHES {
        let secs = pool.install(|| {
            timed(&mut || {
                let mut caches =
                    (0..b).map(|_| llama.new_kv(32 + BATCH_STEPS + 1)).collect::<candle_core::Result<Vec<_>>>()?;
                let mut next = Vec::with_capacity(b);
                for (i, kv) in caches.iter_mut().enumerate() {
                    let p = &tokens[i * 32..(i + 1) * 32];
                    next.push(argmax(&rows(&llama.forward(&mut [SeqInput { tokens: p, kv }])?)?[0]));
                }
                decode_steps(llama, &mut caches, next, BATCH_STEPS)
            })
        })?;
        let r = Rate::of(b * BATCH_STEPS, &secs);
        progress(&format!("decode batch {b:>2} (aggregate): {:>7.1} tok/s", r.median));
        decode_batched.push((b, r));
    }
    let actor_overhead = actor_overhead(&model, threads, reps)?;
    progress(&format!(
        "actor overhead: direct {:.1} tok/s, through actors {:.1} tok/s ({:+.1}%)",
        actor_overhead.direct_tokens_per_s, actor_overhead.actors_tokens_per_s, actor_overhead.overhead_pct
    ));
    let kv_bytes_per_token = {
        let mut kv = llama.new_kv(64)?;
        llama.forward(&mut [SeqInput { tokens: &tokens[..64], kv: &mut kv }])?;
        use crate::engine::KvHandle;
        KvBytes { measured: kv.bytes() / 64, formula: llama.config.kv_bytes_per_token(4) }
    };
    // Before the long-context batch, whose caches (16 × 24 MB) would be most of the peak.
    let peak_rss_mb = peak_rss_mb();
    let decode_batched_long_context = {
        let secs = pool.install(|| {
            timed(&mut || {
                let mut kv = llama.new_kv(LONG_CONTEXT + LONG_STEPS + 1)?;
                let first = argmax(
                    &rows(&llama.forward(&mut [SeqInput { tokens: &tokens[..LONG_CONTEXT], kv: &mut kv }])?)?[0],
                );
                decode_steps(llama, &mut vec![kv; LONG_BATCH], vec![first; LONG_BATCH], LONG_STEPS)
            })
        })?;
        let r = Rate::of(LONG_BATCH * LONG_STEPS, &secs);
        progress(&format!("decode batch {LONG_BATCH}, context {LONG_CONTEXT} (aggregate): {:>7.1} tok/s", r.median));
        r
    };
    Ok(Report {
        model: model.path.display().to_string(),
        weights: llama.format.name().into(),
        threads,
        reps,
        prefill,
        decode_batch1,
        decode_batched,
        decode_batched_long_context,
        actor_overhead,
        kv_bytes_per_token,
        peak_rss_mb,
        huge_pages_mb: huge_pages_mb(),
    })
}

/// Seconds for `steps` greedy decode steps of the sequences in `caches`, each starting from its
/// token in `next`, all in one batch.
fn decode_steps(llama: &Llama, caches: &mut [KvCache], mut next: Vec<u32>, steps: usize) -> candle_core::Result<f64> {
    let t = Instant::now();
    for _ in 0..steps {
        let inputs: Vec<[u32; 1]> = next.iter().map(|&x| [x]).collect();
        let mut seqs: Vec<SeqInput> =
            inputs.iter().zip(caches.iter_mut()).map(|(tok, kv)| SeqInput { tokens: tok, kv }).collect();
        next = rows(&llama.forward(&mut seqs)?)?.iter().map(|r| argmax(r)).collect();
    }
    Ok(t.elapsed().as_secs_f64())
}

/// One 32-token prompt decoding 128 tokens: the engine in a loop, then the same request
/// through the actor graph (a one-worker fused topology). The two alternate, `reps` times
/// each after a warm-up of both, so drifts in machine speed hit both alike; medians compared.
fn actor_overhead(model: &Arc<Model>, threads: usize, reps: usize) -> candle_core::Result<ActorOverhead> {
    let prompts = Arc::new(PromptSource::Synthetic { seed: 1, vocab: model.llama.config.vocab as u32 });
    let generation = GenerationConfig { sampling: Sampling::Greedy, ignore_eos: true };
    let spec = RequestSpec {
        id: 0,
        arrival_ns: 0,
        class: 0,
        prompt_tokens: 32,
        output_tokens: DECODE_TOKENS as u64 + 1,
        prompt: None,
    };
    let wrap = |e: crate::engine::EngineError| candle_core::Error::Msg(e.to_string());
    let direct_once = || -> candle_core::Result<f64> {
        let mut engine = CandleEngine::new(model.clone(), threads, prompts.clone(), generation);
        engine.admit(&spec).map_err(wrap)?;
        let plan = StepPlan { prefill: vec![PromptChunk { request: 0, offset: 0, tokens: 32 }], ..Default::default() };
        engine.step(&plan).map_err(wrap)?;
        let t = Instant::now();
        for k in 0..DECODE_TOKENS {
            let plan = StepPlan {
                decode: vec![DecodeSlot { request: 0, context_tokens: 33 + k as u64 }],
                ..Default::default()
            };
            engine.step(&plan).map_err(wrap)?;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let text = format!(
        "mode = \"execute\"\nrequests = 1\n[[workload.classes]]\nname = \"bench\"\nprompt_tokens = 32\noutput_tokens = {}\n\
         [workload.arrival]\nkind = \"constant\"\ninterval_ms = 1000\n[slo]\nttft_ms = 1000\ntpot_ms = 1000\n\
         [[topology]]\nname = \"fused\"\nkind = \"fused\"\nworkers = 1\nthreads = {threads}\n",
        DECODE_TOKENS + 1
    );
    let scenario = crate::scenario::parse(Path::new("bench.toml"), &text).map_err(candle_core::Error::wrap)?;
    let backend = crate::run::Backend::Execute(crate::run::Executors::host(model.clone(), prompts.clone()));
    let out = std::env::temp_dir().join(format!("pdsim-bench-{}", std::process::id()));
    let actors_once = || -> candle_core::Result<f64> {
        let s = crate::run::run_topology(&scenario, &backend, &scenario.topologies[0], &out, false)
            .map_err(candle_core::Error::wrap)?;
        // TPOT spans the 128 decode steps from the first token to the last.
        Ok(s.tpot_ms.map_or(f64::NAN, |t| t.p50) / 1e3 * DECODE_TOKENS as f64)
    };
    direct_once()?;
    actors_once()?;
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        direct.push(direct_once()?);
        through.push(actors_once()?);
    }
    let _ = std::fs::remove_dir_all(&out);
    let (direct, actors) = (Rate::of(DECODE_TOKENS, &direct).median, Rate::of(DECODE_TOKENS, &through).median);
    Ok(ActorOverhead {
        direct_tokens_per_s: direct,
        actors_tokens_per_s: actors,
        overhead_pct: (1.0 - actors / direct) * 100.0,
    })
}

/// This process's anonymous memory on transparent huge pages (AnonHugePages), in MiB.
pub fn huge_pages_mb() -> f64 {
    proc_mib("/proc/self/smaps_rollup", "AnonHugePages:")
}

/// Peak resident memory of this process (VmHWM), in MiB.
pub fn peak_rss_mb() -> f64 {
    proc_mib("/proc/self/status", "VmHWM:")
}

/// A `key  N kB` line of a /proc file, in MiB (NaN where there is none).
fn proc_mib(path: &str, key: &str) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
