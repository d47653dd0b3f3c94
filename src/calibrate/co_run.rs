//! What a second worker computing on the same machine does to a worker's steps: the co-run
//! factor `pdsim calibrate` measures and the simulation charges to steps that start while
//! another worker of the topology computes.

use std::sync::Arc;
use std::time::Instant;

use super::{bench, median, Bench};
use crate::engine::candle::Model;
use crate::engine::sim::linear::CoRun;
use crate::engine::step::DecodeSlot;
use crate::engine::EngineError;

/// What a second worker computing on the machine does to a worker's steps (shared memory
/// bandwidth and caches), as in a split topology: a 64-token prefill while another engine
/// decodes a batch of 4, the same while it decodes a single sequence, and a batch-4 decode step
/// while another engine prefills 256-token prompts; as factors over the same steps alone (never
/// below 0). A single-sequence decode beside is measured apart because it slows a prefill far
/// more (on the build machine, one thread each: +12–19% against +2% beside a batch of 4; in
/// executed split runs the prefill worker's short prompts ran ×1.26–1.40 the profile while the
/// decode worker decoded one sequence, and a light load's decode worker mostly does).
///
/// The other engine takes turns: it computes for [`CO_RUN_PHASE_MS`], then sleeps as long.
/// The timed engine steps back to back all along, and each step counts as beside when the other
/// computed from its start to its end, as alone when it slept throughout (steps that straddle
/// a turn are dropped). Alone and beside samples so come from the same seconds. Timing them
/// in two windows a few seconds apart, as before, measured the machine's drift as much as the
/// neighbour: a one-thread decode beside a prefilling engine read 0%, 13%, 20% and 47% in four
/// calibrations, while in executed split runs the same steps ran as fast beside the prefill
/// worker as without it (×0.97 over 6,000 steps).
pub fn measure(model: &Arc<Model>, threads: usize) -> Result<CoRun, EngineError> {
    let mut b = bench(model, threads);
    let mut seqs = Vec::new();
    for _ in 0..4 {
        seqs.extend(b.prefill(&[128], CO_RUN_MAX_STEPS + 2)?.1);
    }
    let mut produced = 1u64;
    let mut decode = |b: &mut Bench| -> Result<f64, EngineError> {
        if produced as usize > CO_RUN_MAX_STEPS {
            return Err(EngineError::Step("the co-run measurement ran out of decode steps".into()));
        }
        let ms =
            b.decode(seqs.iter().map(|&request| DecodeSlot { request, context_tokens: 128 + produced }).collect())?;
        produced += 1;
        Ok(ms)
    };
    let mut prefill = |b: &mut Bench| {
        let (ms, ids) = b.prefill(&[64], 2)?;
        b.finish(&ids);
        Ok(ms)
    };
    let factor = |(alone, beside): (f64, f64)| (beside / alone - 1.0).max(0.0);
    let (mut batched, mut single, mut decodes) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..CO_RUN_PASSES {
        let n = CO_RUN_SAMPLES;
        batched.push(factor(beside(model, threads, Background::Decode(4), &mut b, n, &mut prefill)?));
        single.push(factor(beside(model, threads, Background::Decode(1), &mut b, n, &mut prefill)?));
        decodes.push(factor(beside(model, threads, Background::Prefill, &mut b, 4 * n, &mut decode)?));
    }
    Ok(CoRun { prefill: median(batched), decode: median(decodes), prefill_beside_single: Some(median(single)) })
}

/// Passes over the three measurements, the median of each counting. One pass now and then
/// reads far off: one calibration on the build machine put the one-thread decode factor at +48%
/// and the prefill one at +19%, where passes minutes before and after read +0–5% and +0–5%,
/// and the executed split runs +1% (batched decode beside the prefill worker).
const CO_RUN_PASSES: usize = 3;

/// Steps timed alone and beside another engine, at least, each (four times as many decode
/// steps, which are short).
const CO_RUN_SAMPLES: usize = 9;

/// How long the other engine computes, then sleeps, in turn, in the co-run measurement: a few
/// of the timed engine's longest steps (a one-thread 64-token prefill, ~90 ms on the Xeons), and
/// at least [`CO_RUN_PHASE_STEPS`] of the timed step.
const CO_RUN_PHASE_MS: u64 = 400;

/// A turn lasts this many of the timed steps at least: only a step that falls wholly inside
/// one turn counts, and with turns of 400 ms an AVX2 EPYC's one-thread 64-token prefill
/// (290 ms, twice that while the tests ran beside it) got 11 steps alone and 4 beside in 60 s.
const CO_RUN_PHASE_STEPS: f64 = 4.0;

/// The most decode steps the co-run measurement takes (its batch's caches are sized for them).
const CO_RUN_MAX_STEPS: usize = 600;

/// Gives up on the co-run measurement after this long.
const CO_RUN_LIMIT_S: f64 = 60.0;

#[derive(Clone, Copy)]
enum Background {
    Prefill,
    /// A batch of this many sequences.
    Decode(usize),
}

/// Times `step` on `b` back to back while another engine (its own `threads`) takes turns
/// computing (prefilling 256-token prompts or decoding a batch) and sleeping; returns the
/// medians of at least `samples` steps alone and beside it.
fn beside(
    model: &Arc<Model>,
    threads: usize,
    work: Background,
    b: &mut Bench,
    samples: usize,
    step: &mut dyn FnMut(&mut Bench) -> Result<f64, EngineError>,
) -> Result<(f64, f64), EngineError> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;
    let settle = step(b)?;
    let phase = Duration::from_millis(CO_RUN_PHASE_MS.max((CO_RUN_PHASE_STEPS * settle).ceil() as u64));
    let stop = Arc::new(AtomicBool::new(false));
    // Counts the other engine's turns: odd while it computes, even while it sleeps (0: not
    // started yet).
    let turn = Arc::new(AtomicU64::new(0));
    let (m, flag, turns) = (model.clone(), stop.clone(), turn.clone());
    let other = std::thread::spawn(move || -> Result<(), EngineError> {
        let mut b = bench(&m, threads);
        let running = || !flag.load(Ordering::Relaxed);
        let mut seqs: Vec<u64> = Vec::new();
        let mut k = 0u64;
        while running() {
            turns.fetch_add(1, Ordering::SeqCst);
            let t = Instant::now();
            while running() && t.elapsed() < phase {
                match work {
                    Background::Prefill => {
                        let (_, ids) = b.prefill(&[256], 2)?;
                        b.finish(&ids);
                    }
                    Background::Decode(n) => {
                        if seqs.is_empty() || k >= 500 {
                            b.finish(&seqs);
                            seqs.clear();
                            for _ in 0..n {
                                seqs.extend(b.prefill(&[128], 512)?.1);
                            }
                            k = 1;
                        }
                        let slots = seqs.iter().map(|&request| DecodeSlot { request, context_tokens: 128 + k });
                        b.decode(slots.collect())?;
                        k += 1;
                    }
                }
            }
            turns.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(phase);
        }
        Ok(())
    });
    let (mut alone, mut with) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut out = Ok(());
    while alone.len() < samples || with.len() < samples {
        if other.is_finished() {
            break;
        }
        if started.elapsed().as_secs_f64() > CO_RUN_LIMIT_S {
            out = Err(EngineError::Step(format!(
                "the co-run measurement got {} steps alone and {} beside in {CO_RUN_LIMIT_S} s",
                alone.len(),
                with.len()
            )));
            break;
        }
        let before = turn.load(Ordering::SeqCst);
        let ms = match step(b) {
            Ok(ms) => ms,
            Err(e) => {
                out = Err(e);
                break;
            }
        };
        if before > 0 && turn.load(Ordering::SeqCst) == before {
            if before % 2 == 1 { &mut with } else { &mut alone }.push(ms);
        }
    }
    stop.store(true, Ordering::Relaxed);
    other.join().map_err(|_| EngineError::Panicked("the background engine panicked".into()))??;
    out?;
    if alone.is_empty() || with.is_empty() {
        return Err(EngineError::Step("the background engine stopped before the co-run measurement".into()));
    }
    Ok((median(alone), median(with)))
}
