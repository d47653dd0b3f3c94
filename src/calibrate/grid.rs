//! The timing grids of `calibrate`, one round at a time, so that the rounds of every grid and
//! every thread count take turns.
//!
//! A median over rounds removes a slow spell of the machine only if the spell hits fewer than
//! half of a point's rounds. Timed one grid after another, the three rounds of one thread
//! count's decode grid took about a minute together, and on the Xeon a spell that long put a
//! whole grid 15–17% slow (the 20:48 calibration: two-thread batch-1 decode 14.0 ms at a
//! context of 132, where 15 s of the same steps right after ran ×0.84 of it and the runs after
//! ×0.82–0.83). Taking turns, round by round over prefill and decode and over the thread
//! counts, spreads a grid's rounds over the whole timing phase, and a spell of a minute falls
//! on one round of each point.

use super::{median, Bench, Sample};
use crate::engine::step::DecodeSlot;
use crate::engine::EngineError;

/// The prefill grid: (prompt lengths in one batch).
pub(super) fn prefill_points(quick: bool) -> Vec<Vec<usize>> {
    let singles: &[usize] = if quick { &[16, 64, 256] } else { &[16, 32, 64, 128, 256, 384, 512, 768, 1024] };
    let mut g: Vec<Vec<usize>> = singles.iter().map(|&l| vec![l]).collect();
    let batches: &[(usize, usize)] = if quick { &[(4, 32)] } else { &[(2, 64), (4, 64), (2, 256), (4, 128), (8, 32)] };
    g.extend(batches.iter().map(|&(n, l)| vec![l; n]));
    g
}

/// The decode grid: (contexts, batch sizes). Small batches are measured one by one: the
/// engine's step time is far from linear in B there (on the build machine batch 2 cost barely
/// more than batch 1, batch 4 much more), and they are the batches a CPU worker runs most.
pub(super) fn decode_points(quick: bool) -> (Vec<usize>, Vec<usize>) {
    if quick {
        (vec![32, 128], vec![1, 2, 3, 4, 8])
    } else {
        (vec![32, 128, 256, 512], vec![1, 2, 3, 4, 6, 8, 12, 16])
    }
}

/// Decode steps per grid point and round. Decode steps are short (6–60 ms) and this machine's
/// noise is not: with one step per point and round (three samples a point), the batch-1 fit
/// rested on four medians of three, and one of them 40% high (9.8 ms at context 512 against
/// 6.3–7.2 ms elsewhere) set its slope. Six steps make each point a median of 18 for about
/// ten seconds more per thread count. (Steps back to back and lone steps between other batch
/// sizes were measured alike, 7.0–7.3 ms at batch 1.)
const DECODE_STEPS_PER_POINT: usize = 6;

/// Prefill steps over the grid, a round at a time.
pub(super) struct PrefillGrid {
    points: Vec<Vec<usize>>,
    times: Vec<Vec<f64>>,
}

impl PrefillGrid {
    pub fn new(quick: bool) -> PrefillGrid {
        let points = prefill_points(quick);
        let times = vec![Vec::new(); points.len()];
        PrefillGrid { points, times }
    }

    /// One round over every point; `timed` false for the warm-up round.
    pub fn round(&mut self, b: &mut Bench, timed: bool) -> Result<(), EngineError> {
        for (lens, times) in self.points.iter().zip(&mut self.times) {
            let (ms, ids) = b.prefill(lens, 2)?;
            b.finish(&ids);
            if timed {
                times.push(ms);
            }
        }
        Ok(())
    }

    /// The median of each point's rounds, reported through `progress`.
    pub fn samples(&self, threads: usize, progress: &mut dyn FnMut(&str)) -> Vec<Sample> {
        let mut out = Vec::new();
        for (lens, times) in self.points.iter().zip(&self.times) {
            let (sum, sq) = (lens.iter().sum::<usize>() as f64, lens.iter().map(|&l| (l * l) as f64).sum::<f64>());
            let ms = median(times.clone());
            progress(&format!("threads {threads}: prefill {:>2} × {:>4} tokens: {ms:>8.2} ms", lens.len(), lens[0]));
            out.push(Sample { x: [1.0, sum, sq], ms });
        }
        out
    }
}

/// Decode steps over the grid, a round at a time. Every context's sequences are prefilled
/// first (untimed), then each round visits every context and batch size in turn, so that the
/// machine's drift over the round falls on all points alike. (Measured one context after
/// another, as before, drift between the blocks set the context slope: a two-thread batch-16
/// step's cost per context token fell from 0.09 to 0.03 ms across the blocks in one calibration
/// and rose from 0.02 to 0.04 ms in another.)
pub(super) struct DecodeGrid {
    contexts: Vec<usize>,
    batches: Vec<usize>,
    /// The sequences of each context (as many as the largest batch).
    ids: Vec<Vec<u64>>,
    /// Context tokens so far per sequence (every step lengthens each sequence in it by one).
    context: Vec<Vec<u64>>,
    times: Vec<Vec<f64>>,
    ctx_sums: Vec<Vec<f64>>,
}

impl DecodeGrid {
    /// Prefills (untimed) the sequences of every context, long enough for `reps` timed rounds
    /// and a warm-up one.
    pub fn new(b: &mut Bench, quick: bool, reps: usize) -> Result<DecodeGrid, EngineError> {
        let (contexts, batches) = decode_points(quick);
        let max_batch = *batches.iter().max().expect("non-empty");
        let output = batches.len() * (reps + 1) * DECODE_STEPS_PER_POINT + 2;
        let mut ids = Vec::new();
        for &ctx in &contexts {
            let mut seqs = Vec::new();
            for _ in 0..max_batch {
                seqs.extend(b.prefill(&[ctx], output)?.1);
            }
            ids.push(seqs);
        }
        // The prompt and the token the prefill made.
        let context = contexts.iter().map(|&c| vec![c as u64 + 1; max_batch]).collect();
        let points = contexts.len() * batches.len();
        Ok(DecodeGrid {
            contexts,
            batches,
            ids,
            context,
            times: vec![Vec::new(); points],
            ctx_sums: vec![Vec::new(); points],
        })
    }

    /// One round over every context and batch size; `timed` false for the warm-up round.
    pub fn round(&mut self, b: &mut Bench, timed: bool) -> Result<(), EngineError> {
        for c in 0..self.contexts.len() {
            for (i, &n) in self.batches.iter().enumerate() {
                let k = c * self.batches.len() + i;
                for _ in 0..DECODE_STEPS_PER_POINT {
                    let slots: Vec<DecodeSlot> = (0..n)
                        .map(|s| DecodeSlot { request: self.ids[c][s], context_tokens: self.context[c][s] })
                        .collect();
                    let ctx_sum: u64 = slots.iter().map(|d| d.context_tokens).sum();
                    let ms = b.decode(slots)?;
                    if timed {
                        self.times[k].push(ms);
                        self.ctx_sums[k].push(ctx_sum as f64);
                    }
                    for t in self.context[c].iter_mut().take(n) {
                        *t += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// The median of each point's steps, reported through `progress`; frees the sequences.
    pub fn samples(self, b: &mut Bench, threads: usize, progress: &mut dyn FnMut(&str)) -> Vec<Sample> {
        let mut out = Vec::new();
        for (c, &ctx) in self.contexts.iter().enumerate() {
            for (i, &n) in self.batches.iter().enumerate() {
                let k = c * self.batches.len() + i;
                let ms = median(self.times[k].clone());
                let ctx_sum = self.ctx_sums[k].iter().sum::<f64>() / self.ctx_sums[k].len() as f64;
                progress(&format!(
                    "threads {threads}: decode batch {n:>2} at context {ctx:>4} (mean {:>4.0}): {ms:>8.2} ms",
                    ctx_sum / n as f64
                ));
                out.push(Sample { x: [1.0, ctx_sum, n as f64], ms });
            }
        }
        for seqs in &self.ids {
            b.finish(seqs);
        }
        out
    }
}
