//! How unsteadily the machine runs the same step: the [`Noise`] a profile gives the simulation.
//! One sequence decodes back to back for a while (batch 1, the shortest step, so the series is
//! finely sampled in time), a segment in each round of the grids; each step's time over the
//! fitted time at its context is one sample.
//!
//! From that series: the per-step jitter from the differences of neighbouring steps (the slow
//! pace barely moves in one step); the slow pace from 100 ms bin medians, whose autocorrelation
//! over lags gives how long a spell lasts. Robust spreads (MAD) throughout, so the odd step
//! that met a page fault or an interrupt does not set the spreads.
//!
//! Those odd steps still count: they are one-sided and a TPOT is a mean over steps, so the
//! jitter's shape is kept too ([`Quantiles`]), each step against the median of its neighbours.
//! The bins are summarized by their medians, so that a single stalled step is the jitter's and
//! not a spell.

use std::time::Instant;

use super::fit::Fit;
use super::{median, Bench};
use crate::engine::sim::noise::Noise;
use crate::engine::sim::quantiles::Quantiles;
use crate::engine::step::DecodeSlot;
use crate::engine::EngineError;

/// The width of the bins the slow pace is read from.
const BIN_MS: f64 = 100.0;

/// The context a sequence starts from, and how many tokens it decodes before the next one takes
/// over (so the context, and the step, stay in the range the scenarios run).
const START_CONTEXT: usize = 64;
const TOKENS_PER_SEQUENCE: usize = 400;

/// The batch-1 curve's bins: contexts START_CONTEXT + 1 … + CONTEXT_BIN, and so on. A bin needs
/// MIN_BIN_STEPS steps to count: each segment decodes a bin's 50 steps once or twice, so a bin
/// that a slow calibration's segments barely reached is left out rather than read off a few
/// steps.
const CONTEXT_BIN: u64 = 50;
const MIN_BIN_STEPS: usize = 20;

/// Below this the autocorrelation of a series of a few hundred bins is mostly its own noise.
const MIN_CORRELATION: f64 = 0.15;

/// A step's jitter is read against the median of up to this many steps either side of it,
/// within [`NEIGHBOUR_SPAN_MS`] (the slow pace barely moves over that), and needs
/// [`MIN_NEIGHBOURS`] of them.
const NEIGHBOURS: usize = 8;
const NEIGHBOUR_SPAN_MS: f64 = 250.0;
const MIN_NEIGHBOURS: usize = 6;

/// Untimed prefill and decode steps first.
const WARM_UP_STEPS: usize = 3;

/// Batch-1 decode steps run back to back, in segments: `calibrate` takes one in each round of
/// the grids, so that the unsteadiness, like the grid's medians, is read over the whole
/// calibration rather than over one stretch of it (taken in one stretch after the grids, the
/// steps' median read ×1.31 and ×1.58 of the two-thread grid's fit in two busy calibrations;
/// in segments, ×0.98 in the two after them, as busy).
pub(super) struct Series {
    clock: Instant,
    /// Per segment: (start ms since the series began, context tokens, step ms).
    segments: Vec<Vec<(f64, u64, f64)>>,
}

impl Series {
    pub(super) fn new() -> Series {
        Series { clock: Instant::now(), segments: Vec::new() }
    }

    /// Decodes one sequence after another, back to back, for `secs` seconds.
    pub(super) fn segment(&mut self, b: &mut Bench, secs: f64) -> Result<(), EngineError> {
        // The pool's first steps are slower (threads waking, caches cold): not the machine's pace.
        for _ in 0..WARM_UP_STEPS {
            let (_, ids) = b.prefill(&[START_CONTEXT], 2)?;
            b.decode(vec![DecodeSlot { request: ids[0], context_tokens: START_CONTEXT as u64 + 1 }])?;
            b.finish(&ids);
        }
        let start = Instant::now();
        let mut samples = Vec::new();
        while start.elapsed().as_secs_f64() < secs {
            let (_, ids) = b.prefill(&[START_CONTEXT], TOKENS_PER_SEQUENCE + 2)?;
            for k in 1..=TOKENS_PER_SEQUENCE as u64 {
                let ctx = START_CONTEXT as u64 + k;
                let at_ms = self.clock.elapsed().as_secs_f64() * 1e3;
                let ms = b.decode(vec![DecodeSlot { request: ids[0], context_tokens: ctx }])?;
                samples.push((at_ms, ctx, ms));
                if start.elapsed().as_secs_f64() >= secs {
                    break;
                }
            }
            b.finish(&ids);
        }
        self.segments.push(samples);
        Ok(())
    }

    /// The noise of the steps against `single`, the batch-1 decode fit (base + per_ctx_token ·
    /// ctx), and the median step over the fit: a check that long runs of steps go as fast as
    /// the grid's short ones did.
    pub(super) fn noise(&self, single: &Fit) -> (Noise, f64) {
        let predict = |ctx: u64| single.coeffs[0] + single.coeffs[1] * ctx as f64;
        let logs: Vec<Vec<(f64, f64)>> = self
            .segments
            .iter()
            .map(|s| s.iter().map(|&(at, ctx, ms)| (at, (ms / predict(ctx)).ln())).collect())
            .collect();
        let all: Vec<f64> = logs.iter().flatten().map(|s| s.1).collect();
        let typical = if all.is_empty() { 1.0 } else { median(all).exp() };
        let segments: Vec<&[(f64, f64)]> = logs.iter().map(Vec::as_slice).filter(|s| !s.is_empty()).collect();
        (estimate_segments(&segments), typical)
    }

    /// The batch-1 decode step back to back by context: the median of each bin's steps, at the
    /// bin's middle (fixed points, so that calibrations merge point by point), for the bins with
    /// enough steps. The simulator's batch-1 steps take it ([`crate::engine::sim::batch_lines`]).
    pub(super) fn by_context(&self) -> Vec<(f64, f64)> {
        let first = START_CONTEXT as u64 + 1;
        let mut bins: Vec<Vec<f64>> = Vec::new();
        for &(_, ctx, ms) in self.segments.iter().flatten() {
            let Some(i) = ctx.checked_sub(first).map(|d| (d / CONTEXT_BIN) as usize) else { continue };
            if bins.len() <= i {
                bins.resize(i + 1, Vec::new());
            }
            bins[i].push(ms);
        }
        let middle = |i: usize| (first + i as u64 * CONTEXT_BIN) as f64 + (CONTEXT_BIN - 1) as f64 / 2.0;
        let points: Vec<(f64, f64)> = bins
            .into_iter()
            .enumerate()
            .filter(|(_, v)| v.len() >= MIN_BIN_STEPS)
            .map(|(i, v)| (middle(i), median(v)))
            .collect();
        running_median(&points)
    }
}

/// Each inner point's time the median of its own and its neighbours' (the ends as measured).
/// Each bin sits at the same second of every segment, and a slow spell can still fall on one:
/// the 2026-12-01 00:49 calibration's one-thread bins read 13.31, 14.51 and 13.66 ms at contexts
/// 340, 390 and 440. A step's time does not fall with its context, and a monotone stretch keeps
/// its values.
fn running_median(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = points.to_vec();
    for i in 1..points.len().saturating_sub(1) {
        out[i].1 = median(vec![points[i - 1].1, points[i].1, points[i + 1].1]);
    }
    out
}

/// 1.4826 × the median absolute deviation: the standard deviation of a normal sample, robust
/// to outliers.
fn robust_sd(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let m = median(v.to_vec());
    1.4826 * median(v.iter().map(|x| (x - m).abs()).collect())
}

/// In a run's series, samples further apart than this start a new segment (its back-to-back
/// batch-1 steps stop while a batch decodes or the worker idles): the correlation of the slow
/// pace is read within segments only.
const SEGMENT_GAP_MS: f64 = 1000.0;

/// The noise of a series of (start time ms, log of time over fitted time) samples, in time
/// order, split into segments where it pauses for over a second.
pub(crate) fn estimate(samples: &[(f64, f64)]) -> Noise {
    let segments: Vec<&[(f64, f64)]> = samples.chunk_by(|a, b| b.0 - a.0 <= SEGMENT_GAP_MS).collect();
    estimate_segments(&segments)
}

/// The noise of a series taken in segments (each in time order, none empty). The spreads and
/// the shape are read over all of them, as the machine ran; the correlation time within each,
/// about its own level (a segment a minute away may run at another level, which no lag
/// within one sees).
fn estimate_segments(segments: &[&[(f64, f64)]]) -> Noise {
    let samples: Vec<(f64, f64)> = segments.concat();
    let samples = samples.as_slice();
    // Neighbouring steps share the slow pace: their difference is the jitter of two steps.
    let diffs: Vec<f64> = segments.iter().flat_map(|s| s.windows(2).map(|w| w[1].1 - w[0].1)).collect();
    let step_sd = robust_sd(&diffs) / std::f64::consts::SQRT_2;
    // Bin medians: the slow pace, plus what is left of the jitter in a median of the bin's steps
    // (medians rather than means: a single stalled step must not pass for a slow spell; the
    // jitter's shape has the stalls). Per segment, in time order.
    let binned: Vec<Vec<f64>> = segments.iter().map(|s| bin_medians(s)).collect();
    let centers: Vec<f64> = binned.concat();
    let per_bin = samples.len() as f64 / centers.len().max(1) as f64;
    // A median of many normal values varies π/2 times as much as their mean (of the 7–15 a
    // bin holds here, about 1.4–1.5 times: the correction is a little large).
    let left = std::f64::consts::FRAC_PI_2 * step_sd * step_sd / per_bin;
    let slow_var = (robust_sd(&centers).powi(2) - left).max(0.0);
    let step_shape = Quantiles::of(&jitter(samples));
    let none = Noise { step_shape, ..Noise::normal(0.0, BIN_MS, step_sd) };
    if centers.len() < 8 || slow_var <= 0.0 {
        return none;
    }
    // Autocorrelation of the slow pace over lags of one bin and more, within segments, while it
    // stays clear of the estimate's own noise: log-linear in the lag, with a slope of -1/τ. (The
    // intercept is free: bin medians correlate a little more than the points they summarize.)
    let within: Vec<Vec<f64>> = binned
        .iter()
        .map(|b| {
            let level = if b.is_empty() { 0.0 } else { median(b.clone()) };
            b.iter().map(|x| x - level).collect()
        })
        .collect();
    let within_var = (robust_sd(&within.concat()).powi(2) - left).max(0.0);
    if within_var <= 0.0 {
        return none;
    }
    let longest_bins = within.iter().map(Vec::len).max().unwrap_or(0);
    let mut points: Vec<(f64, f64)> = Vec::new();
    for lag in 1..=(longest_bins / 4).min(20) {
        let (mut sum, mut n) = (0.0, 0usize);
        for b in within.iter().filter(|b| b.len() > lag) {
            sum += b.iter().zip(&b[lag..]).map(|(x, y)| x * y).sum::<f64>();
            n += b.len() - lag;
        }
        let rho = sum / n as f64 / within_var;
        if rho < MIN_CORRELATION {
            break;
        }
        points.push((lag as f64 * BIN_MS, rho.min(1.0).ln()));
    }
    if points.is_empty() {
        return none;
    }
    // A segment this long cannot tell spells longer than a quarter of it apart from drift.
    let span = segments.iter().map(|s| s[s.len() - 1].0 - s[0].0).fold(0.0, f64::max);
    let longest = (span / 4.0).max(BIN_MS);
    let slope = if points.len() >= 2 {
        let n = points.len() as f64;
        let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
        sxy / sxx
    } else {
        points[0].1 / points[0].0
    };
    let corr_ms = if slope < 0.0 { (-1.0 / slope).clamp(BIN_MS, longest) } else { longest };
    // A bin's summary of an Ornstein–Uhlenbeck process keeps about f(W/τ) of its variance
    // (exactly, for a mean).
    let r = BIN_MS / corr_ms;
    let kept = 2.0 * (r - 1.0 + (-r).exp()) / (r * r);
    let slow_sd = (slow_var / kept).sqrt();
    Noise { slow_sd, corr_ms, step_sd, step_shape }
}

/// The medians of a segment's samples by 100 ms bin, in time order (empty bins skipped).
fn bin_medians(segment: &[(f64, f64)]) -> Vec<f64> {
    let mut bins: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
    for &(at, y) in segment {
        bins.entry((at / BIN_MS) as u64).or_default().push(y);
    }
    bins.into_values().map(median).collect()
}

/// Each step's log against the median of its neighbours in the series: its own jitter, with
/// the slow pace taken out.
fn jitter(samples: &[(f64, f64)]) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples.len());
    for (i, &(at, y)) in samples.iter().enumerate() {
        let lo = i.saturating_sub(NEIGHBOURS);
        let hi = (i + NEIGHBOURS + 1).min(samples.len());
        let near: Vec<f64> = (lo..hi)
            .filter(|&j| j != i && (samples[j].0 - at).abs() <= NEIGHBOUR_SPAN_MS)
            .map(|j| samples[j].1)
            .collect();
        if near.len() >= MIN_NEIGHBOURS {
            out.push(y - median(near));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sim::noise::Pace;

    /// A series drawn from the simulation's own process, one step every `step_ms`.
    fn series(noise: Noise, step_ms: f64, secs: f64) -> Vec<(f64, f64)> {
        let mut p = Pace::new(noise, 11);
        let n = (secs * 1e3 / step_ms) as usize;
        (0..n).map(|i| (i as f64 * step_ms, p.factor(0, (step_ms * 1e6) as u64, true).ln())).collect()
    }

    #[test]
    fn the_back_to_back_steps_by_context_are_bin_medians_with_a_lone_spike_smoothed() {
        // Contexts 65–464 twice over: 1 ms per 100 context tokens over 7 ms, and the bin of
        // 365–414 slowed by 2 ms in both segments (a spell at the same second of each).
        let segment: Vec<(f64, u64, f64)> = (65..465u64)
            .map(|ctx| {
                let spell = if (365..415).contains(&ctx) { 2.0 } else { 0.0 };
                (ctx as f64, ctx, 7.0 + ctx as f64 / 100.0 + spell)
            })
            .collect();
        let s = Series { clock: Instant::now(), segments: vec![segment.clone(), segment[..120].to_vec()] };
        let got = s.by_context();
        let contexts: Vec<f64> = got.iter().map(|p| p.0).collect();
        assert_eq!(contexts, [89.5, 139.5, 189.5, 239.5, 289.5, 339.5, 389.5, 439.5]);
        // A bin's median step, at its middle (the first two bins' steps were timed twice).
        assert!((got[0].1 - 7.895).abs() < 1e-9 && (got[4].1 - 9.895).abs() < 1e-9, "{got:?}");
        // The spike takes the larger of its neighbours; the ends stay as measured.
        assert!((got[6].1 - got[7].1).abs() < 1e-9 && (got[7].1 - 11.395).abs() < 1e-9, "{got:?}");
        // A bin with too few steps counts for nothing.
        let short = Series { clock: Instant::now(), segments: vec![segment[..60].to_vec()] };
        assert_eq!(short.by_context().len(), 1);
    }

    #[test]
    fn the_estimate_recovers_the_process_it_is_given() {
        let truth = Noise::normal(0.06, 400.0, 0.04);
        // Two minutes of 8 ms steps: long enough for the estimate to settle.
        let got = estimate(&series(truth, 8.0, 120.0));
        assert!((got.step_sd - 0.04).abs() < 0.005, "{got:?}");
        assert!((got.slow_sd - 0.06).abs() < 0.015, "{got:?}");
        assert!(got.corr_ms > 250.0 && got.corr_ms < 650.0, "{got:?}");
    }

    #[test]
    fn segments_a_minute_apart_are_read_as_one_series_without_the_gaps() {
        // Four rounds' segments of 30 s, each from its own draw, a minute apart. (The
        // correlation time read off 2 minutes of such a process spreads from about 250 to 1,000
        // ms over seeds, whole or in segments; the spreads stay within a few tenths.)
        let truth = Noise::normal(0.06, 400.0, 0.04);
        let mut samples = Vec::new();
        for k in 0..4u64 {
            let mut p = Pace::new(truth, 20 + k);
            let offset = k as f64 * 90_000.0;
            samples.extend((0..3750).map(|i| (offset + i as f64 * 8.0, p.factor(0, 8_000_000, true).ln())));
        }
        let got = estimate(&samples);
        assert!((got.step_sd - 0.04).abs() < 0.005, "{got:?}");
        assert!((got.slow_sd - 0.06).abs() < 0.015, "{got:?}");
        assert!(got.corr_ms > 200.0 && got.corr_ms < 1000.0, "{got:?}");
    }

    #[test]
    fn a_steady_machine_has_no_slow_pace() {
        let truth = Noise::normal(0.0, 400.0, 0.03);
        let got = estimate(&series(truth, 8.0, 30.0));
        assert!(got.slow_sd < 0.01, "{got:?}");
        assert!((got.step_sd - 0.03).abs() < 0.005, "{got:?}");
    }

    #[test]
    fn a_one_sided_jitter_is_read_as_its_shape() {
        // 5% of steps stall to ×1.6, spells normal: the jitter's shape must carry the stalls'
        // share of the mean, and the slow spread must not take them for spells.
        let mut v: Vec<f64> = (0..950).map(|i| (i as f64 / 949.0 - 0.5) * 0.06).collect();
        v.extend((0..50).map(|_| 1.6f64.ln()));
        let jitter = Quantiles::of(&v).unwrap();
        let truth = Noise { step_shape: Some(jitter), ..Noise::normal(0.05, 400.0, 0.017) };
        let got = estimate(&series(truth, 8.0, 120.0));
        let (want, read) = (jitter.mean_factor(), got.step_shape.unwrap().mean_factor());
        assert!((read - want).abs() < 0.006, "mean step ×{read} against ×{want}");
        assert!((got.slow_sd - 0.05).abs() < 0.015, "{got:?}");
    }

    #[test]
    fn too_few_samples_give_jitter_only() {
        let got = estimate(&[(0.0, 0.1), (5.0, -0.1), (10.0, 0.05)]);
        assert_eq!(got.slow_sd, 0.0);
        assert!(estimate(&[]).step_sd == 0.0);
    }
}
