//! `pdsim calibrate --merge`: one profile from several calibrations of the same machine.
//!
//! A calibration is a few minutes of a shared machine, and the machine's pace wanders over
//! hours. On the 2-vCPU Xeon, four calibrations of one night by the same build timed a
//! one-thread 64-token prefill at 92, 93, 111 and 116 ms in their grids, and judged against the
//! same 43 runs per topology (the night's twelve rounds, pooled) they put 32, 35, 39 and 41 of 48
//! figures within the goal (≤ 5% at p50, ≤ 10% at p90). Their medians, merged as here, put 42
//! within it: more than any one of them. The three calibrations of that build made while the
//! hypervisor took under 2% of the CPU put 45, 41 and 39 alone, and 46 merged.
//!
//! Each step time is the median of the calibrations' fits at calibrate's own grid points,
//! fitted again in the same forms (prefill in DistServe's, decode a line per batch size); the
//! wake-up, the co-run factors and the unsteadiness are the medians of theirs. A median rather
//! than a mean, so that one calibration timed in a slow spell moves nothing.

use std::path::{Path, PathBuf};

use super::fit::{least_squares, least_squares_with, lines_per_batch, Fit};
use super::grid::{decode_points, prefill_points};
use super::median;
use super::profile::{engine_revision, FitFile, Profile, ProfileFile, ThreadsFit, WakeFile};
use crate::engine::sim::batch_lines::{BatchLine, BatchLines};
use crate::engine::sim::linear::{CoRun, Wake};
use crate::engine::sim::noise::Noise;
use crate::engine::sim::quantiles::Quantiles;

/// How far apart the calibrations put one step, for the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    pub step: String,
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug)]
pub struct Merged {
    pub profile: Profile,
    /// Per thread count, a few telling steps.
    pub spreads: Vec<(usize, Vec<Spread>)>,
    /// The calibrations merged.
    pub kept: Vec<PathBuf>,
    /// Those left out for the CPU time the hypervisor took while they were timed (the largest
    /// share over their thread counts).
    pub left_out: Vec<(PathBuf, f64)>,
    /// Merged calibrations without the jitter's shape (`step_quantiles`) where others have it:
    /// the merge then draws normal jitter, as they do. Empty when all or none have it.
    pub without_jitter_shape: Vec<PathBuf>,
    /// Where some measured the wake-up after longer pauses (`wake.by_pause`) but not all after
    /// the same ones, every calibration merged with the pauses it measured after (none: empty):
    /// the merge then charges the shortest pause's wake-up after any pause. Empty otherwise.
    pub wake_curve_left_out: Vec<(PathBuf, Vec<f64>)>,
    /// The same for the worker's own part (`wake.beside_by_pause`): the merge then charges the
    /// whole wake-up whatever other workers do.
    pub wake_beside_left_out: Vec<(PathBuf, Vec<f64>)>,
    /// The same for the step sizes' charges (`wake.by_step_tokens`), with the token counts each
    /// measured at: the merge then charges every step what the probe paid.
    pub wake_tokens_left_out: Vec<(PathBuf, Vec<f64>)>,
    /// The same for the decode steps just after a wake-up (`wake.decode_after`), with the steps
    /// each measured: the merge's decode steps then run at their usual time after a pause.
    pub wake_decode_after_left_out: Vec<(PathBuf, Vec<f64>)>,
    /// Where some measured the batch-1 decode curve (`decode_single_by_context`) but they share
    /// no context (one measured none), every calibration merged with the contexts it measured
    /// at: the merge's batch-1 steps then take its batch-1 line. Empty otherwise.
    pub decode_single_left_out: Vec<(PathBuf, Vec<f64>)>,
}

/// The largest share of CPU time the hypervisor took while one of a calibration's thread counts
/// was timed; `None` when not recorded.
fn stolen(p: &ProfileFile) -> Option<f64> {
    p.fit.iter().filter_map(|f| f.cpu_stolen_share).reduce(f64::max)
}

/// Merges `inputs` (path, file): calibrations of one model on one machine by this build's
/// engine, each with the same thread counts, less those that lost more than `max_stolen` of the
/// CPU to the hypervisor (a share; those that did not record it are kept). An error says which
/// file differs and how.
///
/// On the Xeon the share a calibration lost ranked the calibrations as the pooled runs did:
/// 1.1–1.2%, 1.4–1.5%, 1.8–1.9%, 2.5–3.7%, 3.4–3.7%, 5.2–5.5% and 8.2–8.7% put 45, 41, 39, 35, 32,
/// 23 and 14 of 48 figures within the goal. Merged, the three under 2% put 46; the four other
/// under 4%, 42; all six but 22:16, 38 (a median follows the majority).
pub fn merge(inputs: &[(PathBuf, ProfileFile)], max_stolen: Option<f64>) -> Result<Merged, String> {
    let (inputs, left_out): (Vec<&(PathBuf, ProfileFile)>, Vec<_>) =
        inputs.iter().partition(|(_, p)| match (max_stolen, stolen(p)) {
            (Some(max), Some(share)) => share <= max,
            _ => true,
        });
    let left_out: Vec<(PathBuf, f64)> =
        left_out.into_iter().map(|(path, p)| (path.clone(), stolen(p).expect("left out by it"))).collect();
    if inputs.len() < 2 {
        let why = if left_out.is_empty() {
            String::new()
        } else {
            // As the user wrote it: 3, not 3.0000000000000004.
            let pct = (100.0 * max_stolen.unwrap_or(0.0) * 1e6).round() / 1e6;
            format!(
                " ({} of {} lost more than {pct}% of the CPU to the hypervisor while timed: calibrate again when less is stolen, or raise --max-stolen)",
                left_out.len(),
                left_out.len() + inputs.len()
            )
        };
        return Err(format!("--merge needs at least two profiles{why}"));
    }
    let (first_path, first) = inputs[0];
    let threads = |p: &ProfileFile| {
        let mut t: Vec<usize> = p.fit.iter().map(|f| f.threads).collect();
        t.sort_unstable();
        t
    };
    for &(path, p) in &inputs {
        let name = path.display();
        if p.engine_revision != engine_revision() {
            return Err(format!(
                "{name} was timed by engine revision {}, and this build's engine is revision {} on this CPU: \
                 its step times are another engine's; merge calibrations made by this build",
                p.engine_revision,
                engine_revision()
            ));
        }
        let differs = |what: &str, theirs: &str, ours: &str| {
            format!(
                "{name} is a calibration of {what} {theirs}, {} of {ours}: merge calibrations of one model on one machine",
                first_path.display()
            )
        };
        if p.machine != first.machine {
            return Err(differs("the machine", &p.machine, &first.machine));
        }
        if let (Some(theirs), Some(ours)) = (&p.cpu, &first.cpu) {
            if theirs != ours {
                return Err(differs("the CPU", theirs, ours));
            }
        }
        if (&p.model, &p.weights) != (&first.model, &first.weights) {
            let (theirs, ours) =
                (format!("{} ({})", p.model, p.weights), format!("{} ({})", first.model, first.weights));
            return Err(differs("the model", &theirs, &ours));
        }
        if p.kv_bytes_per_token != first.kv_bytes_per_token {
            return Err(differs(
                "KV bytes per token",
                &p.kv_bytes_per_token.to_string(),
                &first.kv_bytes_per_token.to_string(),
            ));
        }
        if threads(p) != threads(first) {
            return Err(format!(
                "{name} has fits for threads {:?}, {} for {:?}: merge calibrations of the same thread counts",
                threads(p),
                first_path.display(),
                threads(first)
            ));
        }
    }
    let mut fits = Vec::new();
    let mut spreads = Vec::new();
    let mut without_jitter_shape: Vec<PathBuf> = Vec::new();
    let mut wake_curve_left_out = Vec::new();
    let mut wake_beside_left_out = Vec::new();
    let mut wake_tokens_left_out = Vec::new();
    let mut wake_decode_after_left_out = Vec::new();
    let mut decode_single_left_out = Vec::new();
    for t in threads(first) {
        let of_t: Vec<(&PathBuf, &FitFile)> = inputs
            .iter()
            .map(|&(path, p)| (path, p.fit.iter().find(|f| f.threads == t).expect("the thread counts match")))
            .collect();
        let (fit, spread, shapeless) = merge_threads(t, &of_t)?;
        for path in shapeless {
            if !without_jitter_shape.contains(&path) {
                without_jitter_shape.push(path);
            }
        }
        if wake_curve_left_out.is_empty() {
            wake_curve_left_out = dropped_curve(&fit.wake.by_pause, &of_t, |f| wake_curve(f, |w| &w.by_pause));
        }
        if wake_beside_left_out.is_empty() {
            wake_beside_left_out =
                dropped_curve(&fit.wake.beside_by_pause, &of_t, |f| wake_curve(f, |w| &w.beside_by_pause));
        }
        if wake_tokens_left_out.is_empty() {
            wake_tokens_left_out =
                dropped_curve(&fit.wake.by_step_tokens, &of_t, |f| wake_curve(f, |w| &w.by_step_tokens));
        }
        if wake_decode_after_left_out.is_empty() {
            wake_decode_after_left_out =
                dropped_curve(&fit.wake.decode_after, &of_t, |f| wake_curve(f, |w| &w.decode_after));
        }
        if decode_single_left_out.is_empty() {
            decode_single_left_out =
                dropped_curve(&fit.decode_single_by_context, &of_t, |f| &f.decode_single_by_context);
        }
        fits.push(fit);
        spreads.push((t, spread));
    }
    let profile = Profile {
        model: first.model.clone(),
        weights: first.weights.clone(),
        machine: first.machine.clone(),
        // Kept only when every calibration named it (they agree where they do, checked above).
        cpu: inputs.iter().map(|(_, p)| p.cpu.clone()).collect::<Option<Vec<_>>>().and(first.cpu.clone()),
        kv_bytes_per_token: first.kv_bytes_per_token,
        handoff_us: median(inputs.iter().map(|(_, p)| p.handoff_us).collect()),
        fits,
    };
    let kept = inputs.iter().map(|(path, _)| path.clone()).collect();
    Ok(Merged {
        profile,
        spreads,
        kept,
        left_out,
        without_jitter_shape,
        wake_curve_left_out,
        wake_beside_left_out,
        wake_tokens_left_out,
        wake_decode_after_left_out,
        decode_single_left_out,
    })
}

/// A figure every calibration must have measured (older profiles lack some).
fn measured<'a, T>(path: &Path, threads: usize, what: &str, v: Option<&'a T>) -> Result<&'a T, String> {
    v.ok_or_else(|| {
        format!(
            "{}: the fit for {threads} threads has no {what} (an older calibration): calibrate again",
            path.display()
        )
    })
}

/// One thread count's merged fit, the spread of a few steps, and the calibrations whose lack of
/// the jitter's shape left it out where others had it.
fn merge_threads(
    threads: usize,
    fits: &[(&PathBuf, &FitFile)],
) -> Result<(ThreadsFit, Vec<Spread>, Vec<PathBuf>), String> {
    let each = |f: &dyn Fn(&FitFile) -> f64| -> Vec<f64> { fits.iter().map(|(_, x)| f(x)).collect() };
    let refit = |features: usize, xs: Vec<[f64; 3]>, ys: Vec<f64>, what: &str| -> Result<Fit, String> {
        least_squares_with(features, &xs, &ys)
            .ok_or_else(|| format!("threads {threads}: the {what} medians do not determine a fit"))
    };
    let mut spread = Vec::new();
    let mut note = |step: String, v: &[f64]| {
        let (min_ms, max_ms) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        spread.push(Spread { step, min_ms, median_ms: median(v.to_vec()), max_ms });
    };

    // Prefill: the fits at the grid's points, their median per point, fitted again.
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for lens in prefill_points(false) {
        let sum = lens.iter().sum::<usize>() as f64;
        let sq = lens.iter().map(|&l| (l * l) as f64).sum::<f64>();
        let at = each(&|f| f.prefill.base_ms + f.prefill.per_token_ms * sum + f.prefill.per_token_sq_ms * sq);
        if lens.len() == 1 && [16, 64, 256, 1024].contains(&lens[0]) {
            note(format!("a {}-token prefill", lens[0]), &at);
        }
        xs.push([1.0, sum, sq]);
        ys.push(median(at));
    }
    let prefill = least_squares(&xs, &ys)
        .ok_or_else(|| format!("threads {threads}: the prefill medians do not determine a fit"))?;

    // Decode: each calibration's lines per batch size at the grid's contexts and sizes.
    let (contexts, batches) = decode_points(false);
    let lines: Vec<BatchLines> = fits
        .iter()
        .map(|(path, f)| {
            if f.decode_by_batch.is_empty() {
                return Err(format!(
                    "{}: the fit for {threads} threads has no decode_by_batch (an older calibration): calibrate again",
                    path.display()
                ));
            }
            let lines = f.decode_by_batch.iter().map(|l| BatchLine {
                batch: l.batch,
                base_ms: l.base_ms,
                per_ctx_token_ms: l.per_ctx_token_ms,
            });
            BatchLines::new(lines.collect()).map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect::<Result<_, _>>()?;
    let mut points = Vec::new();
    for &b in &batches {
        for &c in &contexts {
            let ctx = (b * c) as u64;
            let at: Vec<f64> = lines.iter().map(|l| l.parts(b as u64, ctx)).map(|(base, var)| base + var).collect();
            if c == 256 && (b == 1 || b == 8) {
                note(format!("a batch-{b} decode step at context {c}"), &at);
            }
            points.push((b as u64, ctx as f64, median(at)));
        }
    }
    let decode_by_batch = lines_per_batch(&points)
        .ok_or_else(|| format!("threads {threads}: the decode medians do not determine a line per batch size"))?;
    // DistServe's forms, for people: batch 1 as a line, batches of two or more as a plane.
    let single: Vec<&(u64, f64, f64)> = points.iter().filter(|p| p.0 == 1).collect();
    let decode_single = refit(
        2,
        single.iter().map(|p| [1.0, p.1, 0.0]).collect(),
        single.iter().map(|p| p.2).collect(),
        "batch-1 decode",
    )?;
    let batched: Vec<&(u64, f64, f64)> = points.iter().filter(|p| p.0 > 1).collect();
    let decode = refit(
        3,
        batched.iter().map(|p| [1.0, p.1, p.0 as f64]).collect(),
        batched.iter().map(|p| p.2).collect(),
        "batched decode",
    )?;

    // What runs pay around the steps, and how unsteady the machine is: the medians.
    let wakes: Vec<_> =
        fits.iter().map(|(p, f)| measured(p, threads, "wake", f.wake.as_ref())).collect::<Result<_, _>>()?;
    // The charge after longer pauses, point by point, when every calibration measured it after
    // the same pauses; the flat charge of the shortest pause otherwise.
    // The worker's own part and the step sizes' the same way, when every calibration measured
    // them.
    let wake = Wake {
        after_idle_ms: median(wakes.iter().map(|w| w.after_idle_ms).collect()),
        extra_ms: median(wakes.iter().map(|w| w.extra_ms).collect()),
        by_pause: point_by_point(wakes.iter().map(|w| w.by_pause.as_slice()).collect()),
        beside_by_pause: point_by_point(wakes.iter().map(|w| w.beside_by_pause.as_slice()).collect()),
        by_step_tokens: point_by_point(wakes.iter().map(|w| w.by_step_tokens.as_slice()).collect()),
        decode_after: point_by_point(wakes.iter().map(|w| w.decode_after.as_slice()).collect()),
    };
    let co: Vec<_> =
        fits.iter().map(|(p, f)| measured(p, threads, "co_run", f.co_run.as_ref())).collect::<Result<_, _>>()?;
    let beside: Option<Vec<f64>> = co.iter().map(|c| c.prefill_beside_single).collect();
    let co_run = CoRun {
        prefill: median(co.iter().map(|c| c.prefill).collect()),
        decode: median(co.iter().map(|c| c.decode).collect()),
        prefill_beside_single: beside.map(median),
    };
    let noises: Vec<_> =
        fits.iter().map(|(p, f)| measured(p, threads, "noise", f.noise.as_ref())).collect::<Result<_, _>>()?;
    // A shape from some of them only is a median of fewer than were merged. On the Xeon's pooled
    // runs the three calibrations under 2% merged (two with a shape) put 46 of 48 figures within
    // the goal with normal jitter, 44 with those two's shape (TPOT p50s 1–3 points higher): keep
    // it only when every calibration recorded it, and name the others.
    let shapes: Option<Vec<&Vec<f64>>> = noises.iter().map(|n| n.step_quantiles.as_ref()).collect();
    let shapeless: Vec<PathBuf> = match shapes {
        None if noises.iter().any(|n| n.step_quantiles.is_some()) => fits
            .iter()
            .zip(&noises)
            .filter(|(_, n)| n.step_quantiles.is_none())
            .map(|((path, _), _)| (*path).clone())
            .collect(),
        _ => Vec::new(),
    };
    let step_shape = match shapes {
        Some(q) => {
            let per_probability =
                (0..q[0].len()).map(|i| median(q.iter().map(|v| v.get(i).copied().unwrap_or(f64::NAN)).collect()));
            Some(
                Quantiles::from_values(&per_probability.collect::<Vec<_>>())
                    .map_err(|e| format!("threads {threads}: noise.step_quantiles {e}"))?,
            )
        }
        None => None,
    };
    let noise = Noise {
        step_shape,
        ..Noise::normal(
            median(noises.iter().map(|n| n.slow_sd).collect()),
            median(noises.iter().map(|n| n.corr_ms).collect()),
            median(noises.iter().map(|n| n.step_sd).collect()),
        )
    };
    noise.check()?;
    let stolen: Vec<f64> = fits.iter().filter_map(|(_, f)| f.cpu_stolen_share).collect();
    let levelled: Option<Vec<f64>> = fits
        .iter()
        .map(|(_, f)| {
            f.quality.back_to_back_decode_ratio.filter(|_| f.quality.decode_level_from_back_to_back == Some(true))
        })
        .collect();
    let fit = ThreadsFit {
        threads,
        prefill,
        decode_single,
        decode,
        decode_by_batch,
        wake,
        co_run,
        noise: Some(noise),
        cpu_stolen: (!stolen.is_empty()).then(|| median(stolen)),
        back_to_back_decode: levelled.map(median),
        decode_single_by_context: shared_points(
            fits.iter().map(|(_, f)| f.decode_single_by_context.as_slice()).collect(),
        ),
    };
    Ok((fit, spread, shapeless))
}

/// Where a curve (`curve` of each calibration's fit: a wake-up curve, the batch-1 decode curve)
/// some calibrations measured did not survive the merge (`merged` is empty), each calibration
/// with the points (pauses, token counts or contexts) it measured it at; empty otherwise.
fn dropped_curve(
    merged: &[(f64, f64)],
    of_t: &[(&PathBuf, &FitFile)],
    curve: fn(&FitFile) -> &[[f64; 2]],
) -> Vec<(PathBuf, Vec<f64>)> {
    let pauses = |f: &FitFile| -> Vec<f64> { curve(f).iter().map(|p| p[0]).collect() };
    match merged.is_empty() && of_t.iter().any(|(_, f)| !pauses(f).is_empty()) {
        true => of_t.iter().map(|(path, f)| ((*path).clone(), pauses(f))).collect(),
        false => Vec::new(),
    }
}

/// Curves of `[context, ms]` merged at the contexts all of them have, each time the median of
/// theirs: a calibration's batch-1 series reaches a bin more or fewer with the machine's pace,
/// and the bins lie at the same contexts in every calibration.
fn shared_points(curves: Vec<&[[f64; 2]]>) -> Vec<(f64, f64)> {
    let at = |c: &[[f64; 2]], x: f64| c.iter().find(|p| p[0] == x).map(|p| p[1]);
    let shared = curves[0].iter().map(|p| p[0]).filter(|&x| curves.iter().all(|c| at(c, x).is_some()));
    shared.map(|x| (x, median(curves.iter().filter_map(|c| at(c, x)).collect()))).collect()
}

/// One of a fit's wake-up curves (none in a fit without a wake-up).
fn wake_curve(f: &FitFile, curve: fn(&WakeFile) -> &Vec<[f64; 2]>) -> &[[f64; 2]] {
    f.wake.as_ref().map_or(&[], |w| curve(w).as_slice())
}

/// Curves of `[pause or tokens, charge]` merged point by point, each charge the median of
/// theirs, when they were all measured at the same points; none otherwise.
fn point_by_point(curves: Vec<&[[f64; 2]]>) -> Vec<(f64, f64)> {
    let pauses: Vec<f64> = curves[0].iter().map(|p| p[0]).collect();
    if curves.iter().any(|c| c.iter().map(|p| p[0]).ne(pauses.iter().copied())) {
        return Vec::new();
    }
    (0..pauses.len()).map(|i| (pauses[i], median(curves.iter().map(|c| c[i][1]).collect()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::profile::read;

    /// One of the Xeon's calibrations (it recorded the jitter's shape), as if this build had
    /// timed it (it was revision 3's).
    fn calibration() -> ProfileFile {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/xeon/2026-11-30-0424.toml");
        ProfileFile { engine_revision: engine_revision(), ..read(&path).unwrap() }
    }

    /// That calibration with every step time × `f`, the wake-up `wake` ms and the
    /// one-thread prefill co-run factor `co`.
    fn scaled(f: f64, wake: f64, co: f64) -> (PathBuf, ProfileFile) {
        let mut p = calibration();
        for x in &mut p.fit {
            let pf = &mut x.prefill;
            (pf.base_ms, pf.per_token_ms, pf.per_token_sq_ms) =
                (pf.base_ms * f, pf.per_token_ms * f, pf.per_token_sq_ms * f);
            for l in &mut x.decode_by_batch {
                (l.base_ms, l.per_ctx_token_ms) = (l.base_ms * f, l.per_ctx_token_ms * f);
            }
            x.wake.as_mut().unwrap().extra_ms = wake;
            if x.threads == 1 {
                x.co_run.as_mut().unwrap().prefill = co;
            }
        }
        (PathBuf::from(format!("x{f}.toml")), p)
    }

    /// [`scaled`]`(f, 5.0, 0.1)` with `set` applied to every fit's wake-up.
    fn with_wake(f: f64, set: impl Fn(&mut WakeFile)) -> (PathBuf, ProfileFile) {
        let (path, mut p) = scaled(f, 5.0, 0.1);
        for x in &mut p.fit {
            set(x.wake.as_mut().unwrap());
        }
        (path, p)
    }

    #[test]
    fn the_wake_up_after_longer_pauses_is_merged_point_by_point_when_the_pauses_agree() {
        let with = |f: f64, curve: Vec<[f64; 2]>| with_wake(f, |w| w.by_pause = curve.clone());
        let inputs = [
            with(0.9, vec![[300.0, 5.0], [4000.0, 30.0]]),
            with(1.0, vec![[300.0, 9.0], [4000.0, 10.0]]),
            with(1.1, vec![[300.0, 1.0], [4000.0, 60.0]]),
        ];
        let m = merge(&inputs, None).unwrap();
        assert_eq!(m.profile.fits[0].wake.by_pause, [(300.0, 5.0), (4000.0, 30.0)]);
        // Measured after other pauses (or not at all): the flat charge of the shortest pause.
        let other = with(1.1, vec![[300.0, 1.0], [8000.0, 60.0]]);
        let m = merge(&[inputs[0].clone(), inputs[1].clone(), other], None).unwrap();
        assert!(m.profile.fits[0].wake.by_pause.is_empty());
        assert_eq!(m.profile.fits[0].wake.extra_ms, 5.0);
        // And says so, naming each calibration's pauses.
        let named: Vec<(String, Vec<f64>)> =
            m.wake_curve_left_out.iter().map(|(p, v)| (p.display().to_string(), v.clone())).collect();
        assert_eq!(
            named,
            [
                ("x0.9.toml".to_string(), vec![300.0, 4000.0]),
                ("x1.toml".to_string(), vec![300.0, 4000.0]),
                ("x1.1.toml".to_string(), vec![300.0, 8000.0])
            ]
        );
        assert!(merge(&inputs, None).unwrap().wake_curve_left_out.is_empty(), "the same pauses");
    }

    #[test]
    fn the_step_sizes_wake_up_is_merged_point_by_point_or_left_out_and_named() {
        let with = |f: f64, curve: Vec<[f64; 2]>| with_wake(f, |w| w.by_step_tokens = curve.clone());
        let inputs = [
            with(0.9, vec![[16.0, -7.0], [64.0, 0.0], [256.0, 5.0]]),
            with(1.0, vec![[16.0, -1.0], [64.0, 0.0], [256.0, 3.0]]),
            with(1.1, vec![[16.0, -4.0], [64.0, 0.0], [256.0, 9.0]]),
        ];
        let m = merge(&inputs, None).unwrap();
        assert_eq!(m.profile.fits[0].wake.by_step_tokens, [(16.0, -4.0), (64.0, 0.0), (256.0, 5.0)]);
        assert!(m.wake_tokens_left_out.is_empty());
        let other = with(1.1, vec![[32.0, -4.0], [64.0, 0.0]]);
        let m = merge(&[inputs[0].clone(), other], None).unwrap();
        assert!(m.profile.fits[0].wake.by_step_tokens.is_empty());
        let sizes: Vec<usize> = m.wake_tokens_left_out.iter().map(|(_, t)| t.len()).collect();
        assert_eq!(sizes, [3, 2]);
    }

    #[test]
    fn the_decode_steps_after_a_wake_up_are_merged_step_by_step_or_left_out_and_named() {
        let with = |f: f64, curve: Vec<[f64; 2]>| with_wake(f, |w| w.decode_after = curve.clone());
        let inputs = [
            with(0.9, vec![[1.0, 0.20], [2.0, 0.10]]),
            with(1.0, vec![[1.0, 0.10], [2.0, 0.04]]),
            with(1.1, vec![[1.0, 0.15], [2.0, 0.02]]),
        ];
        let m = merge(&inputs, None).unwrap();
        assert_eq!(m.profile.fits[0].wake.decode_after, [(1.0, 0.15), (2.0, 0.04)]);
        assert!(m.wake_decode_after_left_out.is_empty());
        // One measured before it was: none, and both named with the steps they measured.
        let m = merge(&[inputs[0].clone(), with(1.0, Vec::new())], None).unwrap();
        assert!(m.profile.fits[0].wake.decode_after.is_empty());
        let steps: Vec<usize> = m.wake_decode_after_left_out.iter().map(|(_, k)| k.len()).collect();
        assert_eq!(steps, [2, 0]);
    }

    #[test]
    fn the_workers_own_wake_up_is_merged_point_by_point_or_left_out_and_named() {
        let with = |f: f64, curve: Vec<[f64; 2]>| with_wake(f, |w| w.beside_by_pause = curve.clone());
        let inputs = [
            with(0.9, vec![[300.0, 1.0], [4000.0, 12.0]]),
            with(1.0, vec![[300.0, 3.0], [4000.0, 8.0]]),
            with(1.1, vec![[300.0, 2.0], [4000.0, 30.0]]),
        ];
        let m = merge(&inputs, None).unwrap();
        assert_eq!(m.profile.fits[0].wake.beside_by_pause, [(300.0, 2.0), (4000.0, 12.0)]);
        assert!(m.wake_beside_left_out.is_empty());
        // One calibration from before it was measured: the whole charge, and the merge says so.
        let older = with(1.1, Vec::new());
        let m = merge(&[inputs[0].clone(), inputs[1].clone(), older], None).unwrap();
        assert!(m.profile.fits.iter().all(|f| f.wake.beside_by_pause.is_empty()));
        let named: Vec<(String, usize)> =
            m.wake_beside_left_out.iter().map(|(p, v)| (p.display().to_string(), v.len())).collect();
        assert_eq!(named, [("x0.9.toml".into(), 2), ("x1.toml".into(), 2), ("x1.1.toml".into(), 0)]);
        // None measured it: nothing to say.
        let none = [with(0.9, Vec::new()), with(1.0, Vec::new())];
        assert!(merge(&none, None).unwrap().wake_beside_left_out.is_empty());
    }

    #[test]
    fn the_batch_1_decode_curve_is_merged_at_the_contexts_all_share_or_left_out_and_named() {
        let with = |f: f64, curve: Vec<[f64; 2]>| {
            let (path, mut p) = scaled(f, 5.0, 0.1);
            p.fit.iter_mut().for_each(|x| x.decode_single_by_context = curve.clone());
            (path, p)
        };
        let inputs = [
            with(0.9, vec![[89.5, 7.0], [139.5, 7.5]]),
            with(1.0, vec![[89.5, 6.0], [139.5, 8.0]]),
            with(1.1, vec![[89.5, 6.5], [139.5, 9.0]]),
        ];
        let m = merge(&inputs, None).unwrap();
        assert!(m.profile.fits.iter().all(|f| f.decode_single_by_context == [(89.5, 6.5), (139.5, 8.0)]));
        assert!(m.decode_single_left_out.is_empty());
        // One calibration reached a bin fewer: the bins all have.
        let shorter = with(1.1, vec![[89.5, 6.5]]);
        let m = merge(&[inputs[0].clone(), inputs[1].clone(), shorter.clone()], None).unwrap();
        assert!(m.profile.fits.iter().all(|f| f.decode_single_by_context == [(89.5, 6.5)]));
        assert!(m.decode_single_left_out.is_empty());
        // One from before it was measured: the batch-1 line, and the merge says so.
        let older = with(1.1, Vec::new());
        let m = merge(&[inputs[0].clone(), shorter, older], None).unwrap();
        assert!(m.profile.fits.iter().all(|f| f.decode_single_by_context.is_empty()));
        let named: Vec<(String, usize)> =
            m.decode_single_left_out.iter().map(|(p, v)| (p.display().to_string(), v.len())).collect();
        assert_eq!(named, [("x0.9.toml".into(), 2), ("x1.1.toml".into(), 1), ("x1.1.toml".into(), 0)]);
    }

    #[test]
    fn every_figure_is_the_median_of_the_calibrations() {
        let inputs = [scaled(0.9, 9.0, 0.5), scaled(1.0, 1.0, 0.1), scaled(1.3, 5.0, 0.2)];
        let m = merge(&inputs, None).unwrap();
        let base = calibration();
        for (fit, want) in m.profile.fits.iter().zip(&base.fit) {
            // The median calibration's step times at every grid point, fitted again: the same
            // curve and lines (the fit reproduces a curve of its own form exactly).
            let p = &want.prefill;
            for l in [16.0, 64.0, 512.0] {
                let got = fit.prefill.coeffs[0] + fit.prefill.coeffs[1] * l + fit.prefill.coeffs[2] * l * l;
                let want = p.base_ms + p.per_token_ms * l + p.per_token_sq_ms * l * l;
                assert!((got / want - 1.0).abs() < 1e-9, "threads {}: {l} tokens {got} against {want}", fit.threads);
            }
            for (got, want) in fit.decode_by_batch.lines.iter().zip(&want.decode_by_batch) {
                assert_eq!(got.batch, want.batch);
                assert!((got.base_ms / want.base_ms - 1.0).abs() < 1e-9, "{got:?} {want:?}");
                assert!((got.per_ctx_token_ms / want.per_ctx_token_ms - 1.0).abs() < 1e-6, "{got:?} {want:?}");
            }
            assert_eq!(fit.wake.extra_ms, 5.0);
            let noise = want.noise.as_ref().unwrap();
            assert_eq!(fit.noise.unwrap().slow_sd, noise.slow_sd);
            assert_eq!(fit.noise.unwrap().step_shape.unwrap().0.to_vec(), *noise.step_quantiles.as_ref().unwrap());
        }
        assert!(m.without_jitter_shape.is_empty(), "all three recorded it");
        assert_eq!(m.profile.fits[0].co_run.prefill, 0.2);
        assert_eq!(m.profile.fits[1].co_run.prefill, base.fit[1].co_run.as_ref().unwrap().prefill);
        // The summary tells how far apart they were: ×0.9 to ×1.3 of the median.
        let (threads, spread) = &m.spreads[0];
        let s = spread.iter().find(|s| s.step == "a 64-token prefill").unwrap();
        assert_eq!(*threads, 1);
        assert!((s.min_ms / s.median_ms - 0.9).abs() < 1e-9 && (s.max_ms / s.median_ms - 1.3).abs() < 1e-9, "{s:?}");
        // Written and read back, it is a profile the simulator loads.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, m.profile.to_toml("2026-11-30")).unwrap();
        assert!(crate::calibrate::profile::load(&path).is_ok());
    }

    #[test]
    fn calibrations_of_another_machine_engine_or_thread_count_are_refused() {
        let one = scaled(1.0, 1.0, 0.1);
        let mut other = scaled(1.1, 1.0, 0.1);
        other.1.machine = "AMD EPYC, 2 cores".into();
        let err = merge(&[one.clone(), other], None).unwrap_err();
        assert!(err.contains("x1.1.toml is a calibration of the machine AMD EPYC, 2 cores, x1.toml of Intel"), "{err}");
        // The same model name on two CPUs: refused when both name their CPU, not when one is
        // older than the key.
        let sapphire = "family 6 model 143 stepping 8; AVX-512 VNNI BF16";
        let (mut a, mut b) = (one.clone(), scaled(1.1, 1.0, 0.1));
        a.1.cpu = Some("family 6 model 106 stepping 6; AVX-512 VNNI".into());
        b.1.cpu = Some(sapphire.into());
        let err = merge(&[a.clone(), b.clone()], None).unwrap_err();
        assert!(
            err.contains(&format!("x1.1.toml is a calibration of the CPU {sapphire}, x1.toml of family 6 model 106"))
        );
        b.1.cpu = None;
        assert_eq!(merge(&[a.clone(), b.clone()], None).unwrap().profile.cpu, None, "not every file names it");
        b.1.cpu = a.1.cpu.clone();
        assert_eq!(merge(&[a.clone(), b], None).unwrap().profile.cpu, a.1.cpu);
        let mut old = scaled(1.1, 1.0, 0.1);
        old.1.engine_revision = engine_revision() - 1;
        let err = merge(&[one.clone(), old], None).unwrap_err();
        assert!(err.contains("x1.1.toml was timed by engine revision"), "{err}");
        let mut fewer = scaled(1.1, 1.0, 0.1);
        fewer.1.fit.retain(|f| f.threads == 1);
        let err = merge(&[one.clone(), fewer], None).unwrap_err();
        assert!(err.contains("x1.1.toml has fits for threads [1], x1.toml for [1, 2]"), "{err}");
        let mut unmeasured = scaled(1.1, 1.0, 0.1);
        unmeasured.1.fit[1].wake = None;
        let err = merge(&[one.clone(), unmeasured], None).unwrap_err();
        assert!(err.contains("x1.1.toml: the fit for 2 threads has no wake (an older calibration)"), "{err}");
        assert!(merge(&[one], None).unwrap_err().contains("at least two"));
    }

    #[test]
    fn calibrations_that_lost_more_than_the_bound_are_left_out() {
        let mut inputs = [scaled(0.9, 1.0, 0.1), scaled(1.0, 2.0, 0.1), scaled(1.3, 3.0, 0.1)];
        for ((_, p), share) in inputs.iter_mut().zip([0.01, 0.05, 0.02]) {
            p.fit[1].cpu_stolen_share = Some(share);
        }
        inputs[0].1.fit[0].cpu_stolen_share = None;
        let m = merge(&inputs, Some(0.03)).unwrap();
        assert_eq!(m.kept, [PathBuf::from("x0.9.toml"), PathBuf::from("x1.3.toml")]);
        assert_eq!(m.left_out, [(PathBuf::from("x1.toml"), 0.05)]);
        assert_eq!(m.profile.fits[0].wake.extra_ms, 2.0, "the median of the two kept: 1 and 3");
        // Without a bound every calibration counts; one not recorded is kept under any bound.
        assert!(merge(&inputs, None).unwrap().left_out.is_empty());
        inputs[0].1.fit[1].cpu_stolen_share = None;
        assert_eq!(merge(&inputs, Some(0.0)).unwrap_err(), "--merge needs at least two profiles (2 of 3 lost more than 0% of the CPU to the hypervisor while timed: calibrate again when less is stolen, or raise --max-stolen)");
    }

    #[test]
    fn the_jitter_shape_is_kept_only_when_every_calibration_recorded_it() {
        let mut inputs = [scaled(0.9, 1.0, 0.1), scaled(1.0, 2.0, 0.1), scaled(1.3, 3.0, 0.1)];
        inputs[2].1.fit.iter_mut().for_each(|f| f.noise.as_mut().unwrap().step_quantiles = None);
        let m = merge(&inputs, None).unwrap();
        assert_eq!(m.without_jitter_shape, [PathBuf::from("x1.3.toml")]);
        assert!(m.profile.fits.iter().all(|f| f.noise.unwrap().step_shape.is_none()), "normal jitter, as x1.3 draws");
        // None recorded it: nothing to say.
        inputs
            .iter_mut()
            .for_each(|(_, p)| p.fit.iter_mut().for_each(|f| f.noise.as_mut().unwrap().step_quantiles = None));
        assert!(merge(&inputs, None).unwrap().without_jitter_shape.is_empty());
    }
}
