//! The machine's unsteadiness in simulation: a profile's `[fit.noise]` makes each step vary
//! around its fitted time, drawn from the scenario's seed; `noise = false` turns it off.

use std::path::{Path, PathBuf};

use crate::common::{close, one_thread_profile, run, scenario};

/// The shared one-thread profile with `noise` (a `[fit.noise]` table, or nothing).
fn profile(dir: &Path, noise: &str) -> PathBuf {
    one_thread_profile(dir, "profile.toml", noise)
}

/// One request that decodes 2,000 tokens on one fused worker.
fn text(profile: &Path, seed: u64, cost_extra: &str) -> String {
    format!(
        r#"
seed = {seed}
requests = 1
[cost_model]
kind = "profile"
path = "{}"
{cost_extra}
[[workload.classes]]
name = "one"
prompt_tokens = 50
output_tokens = 2001
[workload.arrival]
kind = "constant"
interval_ms = 100
[slo]
ttft_ms = 1000
tpot_ms = 100
[[topology]]
name = "fused"
kind = "fused"
workers = 1
"#,
        profile.display()
    )
}

const NOISE: &str = "[fit.noise]\nslow_sd = 0.1\ncorr_ms = 100.0\nstep_sd = 0.05";

/// Log of each decode step's time over the fitted 5 ms.
fn decode_logs(s: &str) -> Vec<f64> {
    let r = run(&scenario(s), "fused");
    r.iterations.iter().filter(|i| i.s("kind") == "decode").map(|i| (i.f("duration_ms") / 5.0).ln()).collect()
}

#[test]
fn steps_vary_around_the_fitted_time_as_the_profile_says() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), NOISE);
    let v = decode_logs(&text(&p, 1, ""));
    assert_eq!(v.len(), 2000);
    let mut sorted = v.clone();
    sorted.sort_by(f64::total_cmp);
    // The median step takes the fitted time.
    assert!(sorted[1000].abs() < 0.03, "median log {}", sorted[1000]);
    // Spread: √(0.1² + 0.05²) = 0.112 (2,000 steps span 100 correlation times).
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / v.len() as f64;
    assert!((var.sqrt() - 0.112).abs() < 0.025, "sd {}", var.sqrt());
    // Neighbouring steps (5 ms apart, a twentieth of a spell) share the slow pace:
    // correlation 0.1² · e^(-1/20) / 0.112² = 0.76.
    let lag1 = v.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum::<f64>() / (v.len() - 1) as f64 / var;
    assert!(lag1 > 0.6 && lag1 < 0.9, "lag-1 correlation {lag1}");
}

#[test]
fn the_seed_draws_the_noise_and_noise_false_turns_it_off() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), NOISE);
    assert_eq!(decode_logs(&text(&p, 1, "")), decode_logs(&text(&p, 1, "")));
    assert_ne!(decode_logs(&text(&p, 1, "")), decode_logs(&text(&p, 2, "")));
    for x in decode_logs(&text(&p, 1, "noise = false")) {
        close(x, 0.0);
    }
    // A profile without the table: the fitted time, every step.
    let bare = d.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    let plain = profile(&bare, "");
    assert!(decode_logs(&text(&plain, 1, "")).iter().all(|x| x.abs() < 1e-9));
}

#[test]
fn a_profile_with_impossible_noise_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(d.path(), "[fit.noise]\nslow_sd = 0.1\ncorr_ms = 0.0\nstep_sd = 0.05");
    let e = pdsim::scenario::parse(Path::new("test.toml"), &text(&p, 1, "")).unwrap_err().to_string();
    assert!(e.contains("profile.toml") && e.contains("corr_ms"), "{e}");
}

/// A jitter shape as `calibrate` writes it: decode steps within ±2% of the median up to the
/// 90th percentile, the slowest twentieth stalled to ×1.5 (a log of 0.405), and the twentieth
/// between interpolated.
const SHAPE: [f64; 13] = [-0.02, -0.019, -0.018, -0.016, -0.01, 0.0, 0.01, 0.02, 0.405, 0.405, 0.405, 0.405, 0.405];

#[test]
fn a_measured_jitter_shape_lengthens_the_mean_decode_step_and_so_the_tpot() {
    let d = tempfile::tempdir().unwrap();
    let p = profile(
        d.path(),
        &format!("[fit.noise]\nslow_sd = 0.0\ncorr_ms = 100.0\nstep_sd = 0.01\nstep_quantiles = {SHAPE:?}"),
    );
    let s = text(&p, 1, "");
    let v = decode_logs(&s);
    let mut sorted = v.clone();
    sorted.sort_by(f64::total_cmp);
    // The median step still takes the fitted time; the mean is the shape's.
    assert!(sorted[1000].abs() < 0.01, "median log {}", sorted[1000]);
    let want = pdsim::engine::sim::quantiles::Quantiles(SHAPE).mean_factor();
    assert!(want > 1.03, "the shape's mean factor {want}");
    let mean = v.iter().map(|x| x.exp()).sum::<f64>() / v.len() as f64;
    assert!((mean - want).abs() < 0.01, "mean step ×{mean} against ×{want}");
    // The request's TPOT is a mean over its steps: ×(the mean factor) of the fitted 5 ms.
    let r = run(&scenario(&s), "fused");
    let tpot = r.requests[0].f("tpot_ms");
    assert!((tpot / 5.0 - want).abs() < 0.01, "TPOT {tpot} ms against {} ms", 5.0 * want);
}
