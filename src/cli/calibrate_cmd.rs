//! `pdsim calibrate`: measure the real engine on this machine and write a profile the
//! simulator can use.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::model_cmds::{load, ModelArgs};
use super::EXIT_BAD_INPUT;
use crate::calibrate::{calibrate, profile, Options};

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// Thread counts to fit (one fit each: a worker's threads pick its fit).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Timed rounds over the whole grid after a warm-up round (the median per point counts).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// A small grid: a first look in seconds, a rougher fit.
    #[arg(long)]
    quick: bool,
    /// Where to write the profile.
    #[arg(long, default_value = "profiles/calibrated.toml")]
    out: PathBuf,
    /// Time nothing: merge earlier calibrations of this machine (two or more profiles, best
    /// made hours apart) into one, each step time the median of theirs.
    #[arg(long, num_args = 2.., value_name = "PROFILE", conflicts_with_all = ["threads", "reps", "quick"])]
    merge: Vec<PathBuf>,
    /// With --merge: leave out the calibrations during which the hypervisor took more than PCT%
    /// of the CPU (`cpu_stolen_share`; those that did not record it are kept).
    #[arg(long, value_name = "PCT", requires = "merge")]
    max_stolen: Option<f64>,
    #[command(flatten)]
    model: ModelArgs,
}

/// A fit's largest relative residual above which calibrate warns. On the build machine the
/// prefill fits missed their worst point by 3.7–5.9% and the decode lines by 2.0–6.8% in quiet
/// calibrations; one whose two-thread prefill grid ran during a slow spell missed by 11%, and
/// simulated fused prefills came out 19% slow against runs minutes later. On an Intel Xeon VM
/// (AVX-512 VNNI, no BF16) three calibrations missed by 10–16%, with under 1% of the CPU stolen
/// in the one that measured it: two in a row at the same one-thread points (a 128-token prompt
/// +12%, two 64-token prompts −13%), the third at others (384 tokens +11%, four of 128 +13%).
const LOOSE_FIT: f64 = 0.08;

/// How far batch-1 decode steps run back to back (the unsteadiness series) may stray from the
/// grid's fit before calibrate warns. The profile's decode fits take the series' level (see
/// `calibrate::measure`), so a miss no longer puts the profile off by as much; it says that the
/// machine ran the grid's short stretches of steps otherwise than long ones within the same
/// minutes, and the grid's shape (how a step grows with context and batch) was timed in that
/// state. Six calibrations on the Xeon read ×0.93–1.07 at one thread and ×0.81–1.00 at two (the
/// lowest two, in a row, with 3.6% and 5% of the CPU stolen).
const DRIFTED_DECODE: f64 = 0.10;

pub fn run(args: CalibrateArgs) -> ExitCode {
    if !args.merge.is_empty() {
        // A merge times nothing: the model and its weights are the calibrations' own.
        if args.model.model.is_some() || args.model.weights != "mixed" {
            return super::bad_input(
                "--merge times nothing: the calibrations' model and weights are merged as they are (drop --model and --weights)"
                    .into(),
            );
        }
        return merge(&args.merge, args.max_stolen, &args.out, args.model.json);
    }
    if args.threads.is_empty() || args.threads.contains(&0) || args.reps == 0 {
        eprintln!("error: --threads must list thread counts of at least 1, and --reps be at least 1");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let model = match load(&args.model) {
        Ok(m) => Arc::new(m),
        Err(e) => return e.exit(),
    };
    let name = args
        .model
        .model
        .as_ref()
        .and_then(|p| p.file_name())
        .map_or("SmolLM2-135M-Instruct.Q4_1.gguf".to_owned(), |n| n.to_string_lossy().into_owned());
    eprintln!(
        "pdsim calibrate: {name}, {}, threads {:?}, median of {} after a warm-up{}",
        model.llama.format.label(),
        args.threads,
        args.reps,
        if args.quick { " (quick grid)" } else { "" }
    );
    let opts = Options { threads: args.threads.clone(), reps: args.reps, quick: args.quick };
    let profile = match calibrate(model, name, &opts, |l| eprintln!("  {l}")) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = profile.to_toml(&today());
    if let Err(e) = write_profile(&args.out, &text) {
        eprintln!("error: cannot write {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    if args.model.json {
        println!("{}", serde_json::to_string_pretty(&profile).unwrap_or_default());
    } else {
        for f in &profile.fits {
            let q = |name: &str, r2: f64, max_ms: f64, max_rel: f64, points: usize| {
                format!("{name} R² {r2:.4}, max residual {max_ms:.2} ms ({:.1}%), {points} points", max_rel * 100.0)
            };
            let fit = |name: &str, x: &crate::calibrate::fit::Fit| {
                q(name, x.r2, x.max_residual_ms, x.max_relative_residual, x.points)
            };
            let lines = &f.decode_by_batch;
            println!(
                "threads {}: {}; {}; {}; {}",
                f.threads,
                fit("prefill", &f.prefill),
                q(
                    "decode as a line per batch size (what the simulator takes)",
                    lines.r2,
                    lines.max_residual_ms,
                    lines.max_relative_residual,
                    lines.points
                ),
                fit("batch-1 decode as one line", &f.decode_single),
                fit("batched decode as one plane", &f.decode)
            );
        }
        println!(
            "profile: {} (name it in a scenario: [cost_model] kind = \"profile\", path = ...)",
            args.out.display()
        );
    }
    for f in &profile.fits {
        if let Some(share) = f.cpu_stolen.filter(|s| *s > crate::run::steal::NOTABLE_SHARE) {
            eprintln!(
                "warning: threads {}: the hypervisor took {:.0}% of this machine's CPU time while they were \
                 timed (steal in /proc/stat): the profile is slower than the machine's own; run calibrate \
                 again when less is stolen",
                f.threads,
                share * 100.0
            );
        }
        if let Some(r) = f.back_to_back_decode.filter(|r| (r - 1.0).abs() > DRIFTED_DECODE) {
            eprintln!(
                "warning: threads {}: batch-1 decode steps run back to back in the grid's rounds took \
                 ×{r:.2} of the grid's fit: the machine ran the grid's short stretches of steps more than {:.0}% \
                 otherwise than long ones; the profile's decode times take the back-to-back level, but the \
                 grid's shape was timed in that state too: run calibrate again for a steadier grid",
                f.threads,
                DRIFTED_DECODE * 100.0
            );
        }
        let loose = [("prefill", f.prefill.max_relative_residual), ("decode", f.decode_by_batch.max_relative_residual)];
        for (what, r) in loose.into_iter().filter(|(_, r)| *r > LOOSE_FIT) {
            eprintln!(
                "warning: threads {}: the {what} fit misses one of its points by {:.0}% (quiet calibrations \
                 on the AMD EPYC this was built on stayed under {:.0}%): the machine may have been busy while \
                 the grid was timed, so run calibrate again; if the same points miss again, the engine's \
                 time has a shape on this CPU that the fit does not follow, and the simulation inherits the miss",
                f.threads,
                r * 100.0,
                LOOSE_FIT * 100.0
            );
        }
    }
    ExitCode::SUCCESS
}

/// The UTC date, for a profile's header.
fn today() -> String {
    crate::run::output::utc_stamp(std::time::SystemTime::now())[..10].to_owned()
}

/// Writes `text` to `out` through a file beside it, so that an interrupted write leaves an
/// earlier profile whole.
fn write_profile(out: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, out)
}

/// `calibrate --merge`: one profile from earlier calibrations; times nothing.
fn merge(paths: &[PathBuf], max_stolen: Option<f64>, out: &Path, json: bool) -> ExitCode {
    let bad = super::bad_input;
    let max_stolen = match super::max_stolen_share(max_stolen) {
        Ok(share) => share,
        Err(e) => return bad(e),
    };
    // Each calibration by its canonical path, for the two checks below (as named where it has none).
    let canonical: Vec<PathBuf> = paths.iter().map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).collect();
    // The merge replaces --out whole: never one of the calibrations it is made of.
    if let Ok(out) = out.canonicalize() {
        if let Some(i) = canonical.iter().position(|c| *c == out) {
            return bad(format!(
                "--out {} is one of the calibrations to merge: write the merge to another file (--out PATH)",
                paths[i].display()
            ));
        }
    }
    // Named twice, a calibration would count twice in every median.
    for (i, c) in canonical.iter().enumerate() {
        if let Some(first) = canonical[..i].iter().position(|earlier| earlier == c) {
            return bad(format!(
                "--merge names {} twice (as {} and {})",
                c.display(),
                paths[first].display(),
                paths[i].display()
            ));
        }
    }
    let inputs = match paths.iter().map(|p| profile::read(p).map(|f| (p.clone(), f))).collect::<Result<Vec<_>, _>>() {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    let merged = match crate::calibrate::merge::merge(&inputs, max_stolen) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let names: Vec<String> = merged.kept.iter().map(|p| p.display().to_string()).collect();
    let left_out: Vec<String> =
        merged.left_out.iter().map(|(p, share)| format!("{} ({:.1}%)", p.display(), share * 100.0)).collect();
    let left_out = match left_out.as_slice() {
        [] => String::new(),
        l => format!("Left out for the CPU time the hypervisor took while they were timed: {}.", l.join(", ")),
    };
    let shapeless: Vec<String> = merged.without_jitter_shape.iter().map(|p| p.display().to_string()).collect();
    let shapeless = match shapeless.as_slice() {
        [] => String::new(),
        l => format!(
            "The jitter's shape (step_quantiles) is left out: {} did not record it, so the merged profile draws normal jitter.",
            l.join(", ")
        ),
    };
    // What the merge left out of the wake-up, one sentence each.
    let seconds = |v: &[f64]| -> String {
        let s: Vec<String> = v.iter().map(|ms| format!("{}", ms / 1e3)).collect();
        format!("after {} s", s.join(", "))
    };
    let tokens = |v: &[f64]| -> String {
        let t: Vec<String> = v.iter().map(|t| t.to_string()).collect();
        format!("at {} tokens", t.join(", "))
    };
    let mut curve = Vec::new();
    if let Some(l) = each_at(&merged.wake_curve_left_out, "after none", seconds) {
        curve.push(format!(
            "The wake-up after longer pauses (wake.by_pause) is left out: the calibrations measured it after different pauses ({l}), so the merged profile charges the wake-up of their shortest pause (extra_ms) after any pause."
        ));
    }
    if let Some(l) = each_at(&merged.wake_beside_left_out, "after none", seconds) {
        curve.push(format!(
            "The worker's own part of the wake-up (wake.beside_by_pause) is left out: the calibrations measured it after different pauses ({l}), so the merged profile charges the whole wake-up whatever other workers do."
        ));
    }
    if let Some(l) = each_at(&merged.wake_tokens_left_out, "at none", tokens) {
        curve.push(format!(
            "How the wake-up changes with the step's size (wake.by_step_tokens) is left out: the calibrations measured it at different sizes ({l}), so the merged profile charges every step what the probe paid."
        ));
    }
    let steps = |v: &[f64]| -> String { format!("steps {}–{}", v[0], v[v.len() - 1]) };
    if let Some(l) = each_at(&merged.wake_decode_after_left_out, "no step", steps) {
        curve.push(format!(
            "The decode steps just after a wake-up (wake.decode_after) are left out: the calibrations measured different steps ({l}), so the merged profile's decode steps after a pause run at their usual time."
        ));
    }
    let contexts = |v: &[f64]| -> String {
        let c: Vec<String> = v.iter().map(|c| format!("{c:.0}")).collect();
        format!("at contexts {}", c.join(", "))
    };
    if let Some(l) = each_at(&merged.decode_single_left_out, "at none", contexts) {
        curve.push(format!(
            "The batch-1 decode curve (decode_single_by_context) is left out: the calibrations share no context it was measured at ({l}), so the merged profile's batch-1 steps take its batch-1 line."
        ));
    }
    let curve = curve.join(" ");
    let header = format!(
        "Merged by `pdsim calibrate --merge` from {} calibrations ({}): each step time is the median \
         of their fits at calibrate's grid points, fitted again; the wake-up, co-run and noise figures \
         are the medians of theirs. {left_out} {shapeless} {curve}",
        names.len(),
        names.join(", "),
    );
    let text = format!("{}{}", comment(&header), merged.profile.to_toml(&today()));
    if let Err(e) = write_profile(out, &text) {
        eprintln!("error: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let notes: Vec<&str> =
        [left_out.as_str(), shapeless.as_str(), curve.as_str()].into_iter().filter(|s| !s.is_empty()).collect();
    if json {
        notes.iter().for_each(|n| eprintln!("{n}"));
        println!("{}", serde_json::to_string_pretty(&merged.profile).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    notes.iter().for_each(|n| println!("{n}"));
    for (threads, spread) in &merged.spreads {
        let steps: Vec<String> = spread
            .iter()
            .map(|s| format!("{} {:.1}–{:.1} ms (median {:.1})", s.step, s.min_ms, s.max_ms, s.median_ms))
            .collect();
        println!("threads {threads}: the {} calibrations put {}", names.len(), steps.join("; "));
    }
    println!(
        "profile: {} (merged from {} calibrations; name it in a scenario: [cost_model] kind = \"profile\", path = ...)",
        out.display(),
        names.len()
    );
    ExitCode::SUCCESS
}

/// `text` as TOML comment lines of at most 96 characters (a long word gets a line of its own).
fn comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.chars().count() + 1 + word.chars().count() > 96 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// "PATH after 0.3, 1 s; PATH at none" for each calibration and the points it measured a
/// wake-up curve at (`points` says them, `none` stands for no points); `None` when there are
/// no calibrations.
fn each_at(
    calibrations: &[(std::path::PathBuf, Vec<f64>)],
    none: &str,
    points: impl Fn(&[f64]) -> String,
) -> Option<String> {
    let each: Vec<String> = calibrations
        .iter()
        .map(|(p, v)| format!("{} {}", p.display(), if v.is_empty() { none.to_string() } else { points(v) }))
        .collect();
    (!each.is_empty()).then(|| each.join("; "))
}

#[cfg(test)]
mod tests {
    use super::comment;

    #[test]
    fn a_header_is_wrapped_into_comment_lines() {
        let text = format!("{} {}", "word ".repeat(40), "profiles/".repeat(12));
        let wrapped = comment(&text);
        let lines: Vec<&str> = wrapped.lines().collect();
        assert!(lines.iter().all(|l| l.starts_with("# ")), "{lines:?}");
        assert!(lines[..lines.len() - 1].iter().all(|l| l.chars().count() <= 96), "{lines:?}");
        assert_eq!(lines.last().unwrap(), &format!("# {}", "profiles/".repeat(12)), "a long word on its own line");
        assert_eq!(lines.concat().replace("# ", " ").split_whitespace().count(), 41, "no word lost");
        assert_eq!(comment(""), "");
    }
}
