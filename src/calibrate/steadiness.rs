//! How unsteadily the machine runs the same step: the [`Noise`] a profile gives the simulation.
//! One sequence decodes back to back for a while (batch 1, the shortest step, so the series is
//! finely sampled in time); each step's time over the fitted time at its context is one sample.
//!
//! From that series: the per-step jitter from the differences of neighbouring steps (the slow
//! pace barely moves in one step); the slow pace from 100 ms bin means, whose autocorrelation
//! over lags gives how long a spell lasts. Robust spreads (MAD) throughout, so the odd step
//! that met a page fault or an interrupt does not set the figures.

use std::time::Instant;

use super::fit::Fit;
use super::{median, Bench};
use crate::engine::sim::noise::Noise;
use crate::engine::step::DecodeSlot;
use crate::engine::EngineError;

/// The width of the bins the slow pace is read from.
const BIN_MS: f64 = 100.0;

/// The context a sequence starts from, and how many tokens it decodes before the next one takes
/// over (so the context, and the step, stay in the range the scenarios run).
const START_CONTEXT: usize = 64;
const TOKENS_PER_SEQUENCE: usize = 400;

/// Below this the autocorrelation of a series of a few hundred bins is mostly its own noise.
const MIN_CORRELATION: f64 = 0.15;

/// Untimed prefill and decode steps first.
const WARM_UP_STEPS: usize = 3;

/// Times batch-1 decode steps back to back for `secs` seconds and reads the noise off them;
/// `single` is the batch-1 decode fit (base + per_ctx_token·ctx) the times are taken against.
/// Also returns the median step over the fit: a check that a long series of steps runs as fast
/// as the grid's short ones did.
pub(super) fn measure(b: &mut Bench, single: &Fit, secs: f64) -> Result<(Noise, f64), EngineError> {
    let predict = |ctx: u64| single.coeffs[0] + single.coeffs[1] * ctx as f64;
    let mut samples: Vec<(f64, f64)> = Vec::new();
    // The pool's first steps are slower (threads waking, caches cold): not the machine's pace.
    for _ in 0..WARM_UP_STEPS {
        let (_, ids) = b.prefill(&[START_CONTEXT], 2)?;
        b.decode(vec![DecodeSlot { request: ids[0], context_tokens: START_CONTEXT as u64 + 1 }])?;
        b.finish(&ids);
    }
    let clock = Instant::now();
    while clock.elapsed().as_secs_f64() < secs {
        let (_, ids) = b.prefill(&[START_CONTEXT], TOKENS_PER_SEQUENCE + 2)?;
        for k in 1..=TOKENS_PER_SEQUENCE as u64 {
            let ctx = START_CONTEXT as u64 + k;
            let at_ms = clock.elapsed().as_secs_f64() * 1e3;
            let ms = b.decode(vec![DecodeSlot { request: ids[0], context_tokens: ctx }])?;
            samples.push((at_ms, (ms / predict(ctx)).ln()));
            if clock.elapsed().as_secs_f64() >= secs {
                break;
            }
        }
        b.finish(&ids);
    }
    let typical = if samples.is_empty() { 1.0 } else { median(samples.iter().map(|s| s.1).collect()).exp() };
    Ok((estimate(&samples), typical))
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

/// The noise of a series of (start time ms, log of time over fitted time) samples.
pub(crate) fn estimate(samples: &[(f64, f64)]) -> Noise {
    // Neighbouring steps share the slow pace: their difference is the jitter of two steps.
    let diffs: Vec<f64> = samples.windows(2).map(|w| w[1].1 - w[0].1).collect();
    let step_sd = robust_sd(&diffs) / std::f64::consts::SQRT_2;
    // Bin means: the slow pace, plus what is left of the jitter after averaging.
    let mut bins: Vec<(f64, usize)> = Vec::new();
    for &(at, y) in samples {
        let j = (at / BIN_MS) as usize;
        if bins.len() <= j {
            bins.resize(j + 1, (0.0, 0));
        }
        bins[j].0 += y;
        bins[j].1 += 1;
    }
    let means: Vec<f64> = bins.iter().filter(|b| b.1 > 0).map(|b| b.0 / b.1 as f64).collect();
    let per_bin = samples.len() as f64 / means.len().max(1) as f64;
    let slow_var = (robust_sd(&means).powi(2) - step_sd * step_sd / per_bin).max(0.0);
    let none = Noise { slow_sd: 0.0, corr_ms: BIN_MS, step_sd };
    if means.len() < 8 || slow_var <= 0.0 {
        return none;
    }
    // Autocorrelation of the slow pace over lags of one bin and more, while it stays clear of
    // the estimate's own noise: log-linear in the lag, with a slope of -1/τ. (The intercept is
    // free: bin means correlate a little more than the points they average.)
    let center = median(means.clone());
    let dev: Vec<f64> = means.iter().map(|m| m - center).collect();
    let mut points: Vec<(f64, f64)> = Vec::new();
    for lag in 1..=(dev.len() / 4).min(20) {
        let n = dev.len() - lag;
        let cov = dev[..n].iter().zip(&dev[lag..]).map(|(a, b)| a * b).sum::<f64>() / n as f64;
        let rho = cov / slow_var;
        if rho < MIN_CORRELATION {
            break;
        }
        points.push((lag as f64 * BIN_MS, rho.min(1.0).ln()));
    }
    if points.is_empty() {
        return none;
    }
    // A series this long cannot tell spells longer than a quarter of it apart from drift.
    let longest = (samples.last().map_or(BIN_MS, |s| s.0) / 4.0).max(BIN_MS);
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
    // A bin mean of an Ornstein–Uhlenbeck process keeps f(W/τ) of its variance.
    let r = BIN_MS / corr_ms;
    let kept = 2.0 * (r - 1.0 + (-r).exp()) / (r * r);
    Noise { slow_sd: (slow_var / kept).sqrt(), corr_ms, step_sd }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sim::noise::Pace;

    /// A series drawn from the simulation's own process, one step every `step_ms`.
    fn series(noise: Noise, step_ms: f64, secs: f64) -> Vec<(f64, f64)> {
        let mut p = Pace::new(noise, 11);
        let n = (secs * 1e3 / step_ms) as usize;
        (0..n).map(|i| (i as f64 * step_ms, p.factor((step_ms * 1e6) as u64).ln())).collect()
    }

    #[test]
    fn the_estimate_recovers_the_process_it_is_given() {
        let truth = Noise { slow_sd: 0.06, corr_ms: 400.0, step_sd: 0.04 };
        // Two minutes of 8 ms steps: long enough for the estimate to settle.
        let got = estimate(&series(truth, 8.0, 120.0));
        assert!((got.step_sd - 0.04).abs() < 0.005, "{got:?}");
        assert!((got.slow_sd - 0.06).abs() < 0.015, "{got:?}");
        assert!(got.corr_ms > 250.0 && got.corr_ms < 650.0, "{got:?}");
    }

    #[test]
    fn a_steady_machine_has_no_slow_pace() {
        let truth = Noise { slow_sd: 0.0, corr_ms: 400.0, step_sd: 0.03 };
        let got = estimate(&series(truth, 8.0, 30.0));
        assert!(got.slow_sd < 0.01, "{got:?}");
        assert!((got.step_sd - 0.03).abs() < 0.005, "{got:?}");
    }

    #[test]
    fn too_few_samples_give_jitter_only() {
        let got = estimate(&[(0.0, 0.1), (5.0, -0.1), (10.0, 0.05)]);
        assert_eq!(got.slow_sd, 0.0);
        assert!(estimate(&[]).step_sd == 0.0);
    }
}
