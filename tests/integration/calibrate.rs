//! Calibration and comparison: the real engine's step times fitted into a profile the
//! simulator loads, and an execute run compared request by request with its simulation.

use std::process::Command;

use serde_json::Value;

use crate::common::repo;

fn pdsim(args: &[&str]) -> Value {
    pdsim_with_stderr(args).0
}

/// pdsim run with `args` in the repository, whatever its exit.
fn output(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pdsim")).args(args).current_dir(repo()).output().unwrap()
}

/// The stderr of pdsim run with `args`, which must refuse them as bad input (exit 2).
#[track_caller]
fn bad_input_error(args: &[&str]) -> String {
    let out = output(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    stderr
}

/// The JSON on stdout and the progress on stderr.
fn pdsim_with_stderr(args: &[&str]) -> (Value, String) {
    let out = output(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&out.stdout).unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn calibrate_then_compare() {
    let d = tempfile::tempdir().unwrap();
    let profile = d.path().join("profile.toml");
    let p = profile.to_str().unwrap();
    let (v, progress) =
        pdsim_with_stderr(&["calibrate", "--quick", "--threads", "1", "--reps", "1", "--json", "--out", p]);
    let fit = &v["fits"][0];
    assert_eq!(fit["threads"], 1);
    // The fitted step time grows with prompt tokens, and a decode batch of 8 costs more than
    // one of 2; the prefill fit explains its measurements (loosely: other tests share the CPU,
    // so single coefficients of the small quick grid are not asserted).
    let c = |k: &str, i: usize| fit[k]["coeffs"][i].as_f64().unwrap();
    let prefill = |l: f64| c("prefill", 0) + c("prefill", 1) * l + c("prefill", 2) * l * l;
    assert!(prefill(256.0) > prefill(16.0), "{fit}");
    let decode = |b: f64| c("decode", 0) + c("decode", 1) * 64.0 * b + c("decode", 2) * b;
    assert!(decode(8.0) > decode(2.0), "{fit}");
    assert!(fit["prefill"]["r2"].as_f64().unwrap() > 0.5, "{fit}");
    // Decode steps also get a line per measured batch size, which the simulator takes.
    let lines = fit["decode_by_batch"]["lines"].as_array().unwrap();
    let batches: Vec<u64> = lines.iter().map(|l| l["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [1, 2, 3, 4, 8], "{fit}");
    assert!(std::fs::read_to_string(&profile).unwrap().matches("[[fit.decode_by_batch]]").count() == 5);
    assert_eq!(v["kv_bytes_per_token"], 46_080);
    // The share of CPU time the hypervisor took meanwhile (Linux's /proc/stat), kept in the file.
    assert!(fit["cpu_stolen"].as_f64().is_some_and(|s| (0.0..=1.0).contains(&s)), "{fit}");
    assert!(std::fs::read_to_string(&profile).unwrap().contains("cpu_stolen_share = "));
    // The wake-up after a 300 ms pause and after longer ones, kept as points to interpolate.
    let pauses: Vec<f64> = fit["wake"]["by_pause"].as_array().unwrap().iter().map(|p| p[0].as_f64().unwrap()).collect();
    assert_eq!(pauses, [300.0, 1000.0, 2000.0, 4000.0, 8000.0], "{fit}");
    assert!(std::fs::read_to_string(&profile).unwrap().contains("by_pause = [[300.0, "));
    assert!(progress.contains("ms after 0.3 s, ") && progress.contains("ms after 8 s"), "{progress}");
    // And with another engine computing through the pause: the worker's own part of it.
    let beside: Vec<f64> =
        fit["wake"]["beside_by_pause"].as_array().unwrap().iter().map(|p| p[0].as_f64().unwrap()).collect();
    assert_eq!(beside, [300.0, 1000.0, 2000.0, 4000.0], "{fit}");
    assert!(std::fs::read_to_string(&profile).unwrap().contains("beside_by_pause = [[300.0, "));
    assert!(progress.contains("with another engine computing until the step: +"), "{progress}");
    // And at three step sizes against the probe's, the probe's own at 0.
    let sizes: Vec<(f64, f64)> = fit["wake"]["by_step_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    assert_eq!(sizes.iter().map(|s| s.0).collect::<Vec<_>>(), [16.0, 64.0, 256.0], "{fit}");
    assert_eq!(sizes[1].1, 0.0, "{fit}");
    assert!(std::fs::read_to_string(&profile).unwrap().contains("by_step_tokens = [[16.0, "));
    assert!(progress.contains("against the 64-token probe after 0.3 s: "), "{progress}");
    // And round by round: the warm-up and the one timed round.
    assert_eq!(progress.matches("of the CPU time during the round").count(), 2, "{progress}");
    // Back-to-back decode steps against the grid's fit: a check of the machine's pace.
    assert!(fit["back_to_back_decode"].as_f64().is_some_and(|r| r > 0.2 && r < 5.0), "{fit}");
    assert!(std::fs::read_to_string(&profile).unwrap().contains("back_to_back_decode_ratio = "));
    // The same steps by context, a point per 50-token bin from context 65 (the middle of each),
    // which the simulator's batch-1 steps take: the 4 s series reaches a few bins at least.
    let curve: Vec<(f64, f64)> = fit["decode_single_by_context"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    assert!(curve.len() >= 2, "{fit}");
    let middles: Vec<f64> = (0..curve.len()).map(|i| 89.5 + 50.0 * i as f64).collect();
    assert_eq!(curve.iter().map(|p| p.0).collect::<Vec<_>>(), middles, "{fit}");
    assert!(curve.iter().all(|p| p.1 > 0.5 && p.1 < 1000.0), "{fit}");
    assert!(std::fs::read_to_string(&profile).unwrap().contains("decode_single_by_context = [[89.5, "));
    assert!(progress.contains("threads 1: a batch-1 decode step back to back, by context"), "{progress}");
    // The decode fits take the back-to-back steps' level: the batch-1 line (through the quick
    // grid's two contexts) is the grid's times, as printed, × that ratio.
    assert!(std::fs::read_to_string(&profile).unwrap().contains("decode_level_from_back_to_back = true"));
    let ratio = fit["back_to_back_decode"].as_f64().unwrap();
    let line = &lines[0];
    let (base, slope) = (line["base_ms"].as_f64().unwrap(), line["per_ctx_token_ms"].as_f64().unwrap());
    let grid: Vec<(f64, f64)> = progress
        .lines()
        .filter(|l| l.contains("threads 1: decode batch  1 at context"))
        .map(|l| {
            let mean = l.split("(mean").nth(1).unwrap().split(')').next().unwrap().trim().parse::<f64>().unwrap();
            let ms = l.rsplit("):").next().unwrap().trim().trim_end_matches(" ms").trim().parse::<f64>().unwrap();
            (mean, ms)
        })
        .collect();
    assert_eq!(grid.len(), 2, "{progress}");
    for (ctx, ms) in grid {
        // Printed to 0.01 ms and the mean context to a token (a quick grid's two contexts, timed
        // on a busy machine, can give a line that falls with context: its slope counts either way).
        let want = ms * ratio;
        assert!(
            (base + slope * ctx - want).abs() < 0.01 * ratio + slope.abs() + 1e-6,
            "{ctx}: {} against {want}",
            base + slope * ctx
        );
    }
    // The engine revision that timed it, so that compare can tell a profile of an older build.
    let revision = format!("engine_revision = {}", pdsim::calibrate::profile::engine_revision());
    assert!(std::fs::read_to_string(&profile).unwrap().contains(&revision));
    // The profile is a cost model a scenario can name.
    let cost = pdsim::scenario::load_profile(&profile).unwrap();
    assert!(cost.for_threads(1).is_ok() && cost.for_threads(3).is_err());

    // The machine, by model name and by family, model and the kernels' extensions.
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(text.contains("\nmachine = \"") && text.contains("\ncpu = \""), "{text}");

    let out = d.path().join("out");
    let (c, compare_stderr) = pdsim_with_stderr(&[
        "compare",
        "scenarios/light_light.toml",
        "--profile",
        p,
        "--requests",
        "4",
        "--only",
        "split",
        "--max-stolen",
        "100",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    // A profile this machine just wrote names this machine: nothing to warn of.
    assert!(!compare_stderr.contains("was measured on"), "{compare_stderr}");
    let t = &c["topologies"][0];
    assert_eq!((t["topology"].as_str(), t["requests"].as_u64()), (Some("split"), Some(4)));
    // No run loses more than all of the CPU: one attempt, and it counts.
    let tried = t["attempts"].as_array().unwrap();
    assert_eq!(tried.len(), 1, "{t}");
    assert_eq!((tried[0]["made"].as_u64(), tried[0]["counted"].as_u64()), (Some(1), Some(1)), "{t}");
    assert!(!out.join("light_light/compare/latest/disturbed").exists());
    // How many of the six percentiles are within the goals, counted for the whole comparison.
    let tally = &c["within_goal"];
    assert_eq!(tally["figures"], 6, "{tally}");
    let within: Vec<u64> = t["percentiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let goal = if m["metric"].as_str().unwrap().ends_with("p50") { 0.05 } else { 0.10 };
            u64::from(m["relative_error"].as_f64().unwrap().abs() <= goal)
        })
        .collect();
    assert_eq!(tally["as_calibrated"].as_u64(), Some(within.iter().sum()), "{tally}");
    let metrics: Vec<&str> =
        t["percentiles"].as_array().unwrap().iter().map(|m| m["metric"].as_str().unwrap()).collect();
    assert_eq!(metrics, ["ttft_ms p50", "ttft_ms p90", "tpot_ms p50", "tpot_ms p90", "e2e_ms p50", "e2e_ms p90"]);
    for m in t["percentiles"].as_array().unwrap() {
        assert!(m["executed"].as_f64().unwrap() > 0.0 && m["simulated"].as_f64().unwrap() > 0.0, "{m}");
    }
    // The machine's pace over the run's own steps, and the comparison again at that pace.
    assert!(t["pace"]["decode"].as_f64().unwrap() > 0.0 && t["pace"]["decode_steps"].as_u64().unwrap() > 0, "{t}");
    assert_eq!(t["paced"].as_array().unwrap().len(), 6, "{t}");
    assert!(out.join("light_light/compare/latest/paced/split/requests.csv").exists());
    // The execution recorded how much CPU time the hypervisor took (Linux's /proc/stat), and
    // the simulations recorded none.
    let stolen = t["cpu_stolen"].as_array().unwrap();
    assert_eq!(stolen.len(), 1, "{t}");
    assert!(stolen[0].as_f64().is_some_and(|s| (0.0..=1.0).contains(&s)), "{t}");
    assert!(out.join("light_light/compare/latest/split/host.csv").exists());
    assert!(!out.join("light_light/compare/latest/simulated/split/host.csv").exists());
    // The profile measured the machine's unsteadiness, so each side was simulated in many
    // draws of it (the request count above is the execution's, not the pool's).
    assert!(fit["noise"]["step_sd"].as_f64().unwrap() > 0.0, "{fit}");
    // And the jitter's shape: 13 quantiles of its log, non-decreasing, median 0. (A quick
    // calibration's series is too short for the slow pace's shape.)
    let q: Vec<f64> = fit["noise"]["step_quantiles"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(q.len(), 13, "{fit}");
    assert!(q.windows(2).all(|w| w[0] <= w[1]) && q[5] == 0.0, "{q:?}");
    // Every draw's times are in one file beside the first draw's; the draws' own folders are gone.
    let draws = crate::common::read_csv(&out.join("light_light/compare/latest/simulated/split/draws.csv"));
    let n = pdsim::compare::NOISE_DRAWS;
    assert_eq!(draws.len(), 4 * n);
    assert_eq!(draws.iter().map(|r| r.f("draw") as usize).max(), Some(n));
    assert!(!out.join("light_light/compare/latest/simulated/.draw").exists());
    let rows = crate::common::read_csv(&out.join("light_light/compare/latest/split/compare.csv"));
    assert_eq!(rows.len(), 4);
    // Both sides served the same requests: the simulation replayed the execute run's trace.
    let read = |f: &str| {
        let mut r = crate::common::read_csv(&out.join("light_light/compare/latest").join(f));
        r.sort_by_key(|x| x.f("request_id") as u64);
        r
    };
    let (exec, sim) = (read("split/requests.csv"), read("simulated/split/requests.csv"));
    assert_eq!(exec.len(), sim.len());
    for (e, s) in exec.iter().zip(&sim) {
        assert_eq!(e.s("request_id"), s.s("request_id"));
        assert_eq!(e.s("prompt_tokens"), s.s("prompt_tokens"));
        assert_eq!(e.s("token_count"), s.s("token_count"));
    }
    // Each executed percentile is ranked among every draw's simulated requests: recomputed
    // here from draws.csv (ties count half), whose first draw is the simulated run's own.
    let ttft_p50 = &t["percentiles"][0];
    let executed = ttft_p50["executed"].as_f64().unwrap();
    let first: Vec<(String, f64)> =
        draws.iter().filter(|r| r.f("draw") == 1.0).map(|r| (r.s("request_id").to_owned(), r.f("ttft_ms"))).collect();
    let own: Vec<(String, f64)> = sim.iter().map(|r| (r.s("request_id").to_owned(), r.f("ttft_ms"))).collect();
    assert_eq!(first.len(), own.len());
    assert!(first.iter().zip(&own).all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() < 1e-3), "{first:?} against {own:?}");
    let pool: Vec<f64> = draws.iter().map(|r| r.f("ttft_ms")).collect();
    let share = (pool.iter().filter(|&&x| x < executed).count() + pool.iter().filter(|&&x| x <= executed).count())
        as f64
        / 2.0
        / pool.len() as f64;
    let rank = &ttft_p50["rank"];
    assert!((rank["simulated_share"].as_f64().unwrap() - share).abs() < 1e-3, "{rank} against {share}");
    // Two standard deviations of a p50's rank in 4 requests: 2·√(0.25/4).
    assert!((rank["band"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{rank}");
    let summary = crate::common::read_csv(&out.join("light_light/compare/latest/comparison.csv"));
    let shares: Vec<f64> =
        summary.iter().filter(|r| r.s("metric").contains(" p")).map(|r| r.f("simulated_share_at_executed")).collect();
    assert_eq!(shares.len(), 12, "six percentiles, simulated and at the run's pace");
    assert!(shares.iter().all(|s| (0.0..=1.0).contains(s)), "{shares:?}");
    // The comparison's page and its CDFs.
    let page = std::fs::read_to_string(out.join("light_light/compare/latest/index.html")).unwrap();
    let count = format!("{} of 6 percentiles as calibrated", tally["as_calibrated"]);
    assert!(page.contains(&count), "the page says what the JSON counts: {count}");
    for m in ["ttft", "tpot", "e2e"] {
        let svg = format!("cdf-split-{m}.svg");
        assert!(page.contains(&svg), "{m}");
        let chart = std::fs::read_to_string(out.join("light_light/compare/latest").join(&svg)).unwrap();
        assert!(chart.contains("executed (4)") && chart.contains("simulated"), "{svg}");
    }

    // Repeated: the same requests executed twice; the figures pool both runs and say how each
    // moved from one run to the other.
    let out = d.path().join("repeated");
    let c = pdsim(&[
        "compare",
        "scenarios/light_light.toml",
        "--profile",
        p,
        "--requests",
        "3",
        "--only",
        "split",
        "--repeat",
        "2",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let t = &c["topologies"][0];
    assert_eq!((t["runs"].as_u64(), t["requests"].as_u64()), (Some(2), Some(6)), "{t}");
    // Each run's pace alone, beside the pooled one: the pooled median lies between them.
    let by_run: Vec<f64> = t["pace_by_run"].as_array().unwrap().iter().map(|p| p["decode"].as_f64().unwrap()).collect();
    assert_eq!(by_run.len(), 2, "{t}");
    let pooled = t["pace"]["decode"].as_f64().unwrap();
    let (lo, hi) = (by_run[0].min(by_run[1]), by_run[0].max(by_run[1]));
    assert!(lo <= pooled && pooled <= hi, "{pooled} outside {by_run:?}");
    let page = std::fs::read_to_string(out.join("light_light/compare/latest/index.html")).unwrap();
    assert!(
        page.contains(&format!(
            "run by run, prefill / decode (CPU time the hypervisor took): ×{:.2}",
            t["pace_by_run"][0]["prefill"].as_f64().unwrap()
        )),
        "the page names each run's pace"
    );
    for m in t["percentiles"].as_array().unwrap() {
        let a = &m["across_runs"];
        let f = |k: &str| a[k].as_f64().unwrap();
        assert!(f("executed_min") <= f("executed_max") && f("error_min") <= f("error_max"), "{m}");
        assert!(f("executed_min") > 0.0 && f("executed_spread") >= 0.0, "{m}");
    }
    let run = out.join("light_light/compare/latest");
    for k in [1, 2] {
        assert_eq!(crate::common::read_csv(&run.join(format!("run-{k}/split/compare.csv"))).len(), 3);
    }
    let rows = crate::common::read_csv(&run.join("comparison.csv"));
    assert!(rows.iter().all(|r| r.s("runs") == "2"), "{:?}", rows.iter().map(|r| r.s("runs")).collect::<Vec<_>>());
    // Each run draws the noise anew: the first prefill (the same prompt in both runs, the
    // noise's first draw alone setting its factor) takes another time in each run's first
    // simulated draw. (With the draws seeded alike, every run drew the same timelines.)
    let first_prefill = |k: usize| {
        let rows = crate::common::read_csv(&run.join(format!("run-{k}/simulated/split/iterations.csv")));
        let first = rows.iter().find(|r| r.s("kind") == "prefill").unwrap();
        (first.s("prefill_tokens").to_owned(), first.f("duration_ms"))
    };
    let (a, b) = (first_prefill(1), first_prefill(2));
    assert_eq!(a.0, b.0, "the same first prompt");
    assert_ne!(a.1, b.1, "the same draw of the noise in both runs");

    // The same executed runs simulated again, without executing: with the same profile every
    // figure comes out as it did, and the new folder holds the executed side too.
    let again = d.path().join("again");
    let c2 = pdsim(&[
        "compare",
        "scenarios/light_light.toml",
        "--profile",
        p,
        "--only",
        "split",
        "--executed",
        run.to_str().unwrap(),
        "--json",
        "--out",
        again.to_str().unwrap(),
    ]);
    let t2 = &c2["topologies"][0];
    assert_eq!((t2["runs"].as_u64(), t2["requests"].as_u64()), (Some(2), Some(6)), "{t2}");
    for key in ["percentiles", "paced"] {
        assert_eq!(t2[key], t[key], "{key}");
    }
    let copy = again.join("light_light/compare/latest/run-2/split");
    assert_eq!(crate::common::read_csv(&copy.join("requests.csv")).len(), 3);
    assert_eq!(crate::common::read_csv(&copy.join("compare.csv")).len(), 3);

    // Earlier comparisons pool: the same two runs named twice are four runs, the figures of a
    // pool of the same requests twice over as they were.
    let pooled = d.path().join("pooled");
    let again = again.join("light_light/compare/latest");
    let two = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["compare", "scenarios/light_light.toml", "--profile", p, "--only", "split", "--json"];
        args.extend(["--executed", run.to_str().unwrap(), "--executed", again.to_str().unwrap()]);
        args.extend(extra);
        args.extend(["--out", out.to_str().unwrap()]);
        pdsim(&args)
    };
    let c4 = two(&pooled, &[]);
    let t4 = &c4["topologies"][0];
    assert_eq!((t4["runs"].as_u64(), t4["requests"].as_u64()), (Some(4), Some(12)), "{t4}");
    assert_eq!(c4["executed_from"].as_array().map(Vec::len), Some(2), "{c4}");
    for k in 0..4 {
        assert_eq!(t4["pace_by_run"][k]["decode"], t["pace_by_run"][k % 2]["decode"], "run {}", k + 1);
    }
    // With --max-stolen, an earlier run that recorded more stolen CPU time than the bound is
    // left out, and named. (What the runs above really lost is the machine's: set, so that a
    // busy machine does not decide the test.)
    for folder in [&run, &again] {
        for k in [1, 2] {
            let host = folder.join(format!("run-{k}/split/host.csv"));
            assert!(host.exists(), "{}", host.display());
            std::fs::write(host, "cpu_stolen_share\n0.0100\n").unwrap();
        }
    }
    std::fs::write(again.join("run-2/split/host.csv"), "cpu_stolen_share\n0.2000\n").unwrap();
    let c3 = two(&d.path().join("pooled3"), &["--max-stolen", "10"]);
    let t3 = &c3["topologies"][0];
    assert_eq!(t3["runs"].as_u64(), Some(3), "{t3}");
    let left = &t3["left_out"];
    assert_eq!(left.as_array().map(Vec::len), Some(1), "{t3}");
    assert!(left[0]["run"].as_str().unwrap().ends_with("run-2") && left[0]["stolen"].as_f64() == Some(0.2), "{left}");
    // Every run of a topology left out: nothing to judge, and the error says what to do.
    std::fs::write(again.join("run-1/split/host.csv"), "cpu_stolen_share\n0.1500\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pdsim"))
        .args(["compare", "scenarios/light_light.toml", "--profile", p, "--only", "split", "--max-stolen", "10"])
        .arg("--executed")
        .arg(&again)
        .arg("--out")
        .arg(d.path().join("none"))
        .current_dir(repo())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("every executed run of topology `split` lost more than that"), "{err}");
    assert!(!d.path().join("none").exists(), "nothing written");
}

#[test]
fn calibrations_merge_into_their_median() {
    let d = tempfile::tempdir().unwrap();
    let calibration = std::fs::read_to_string(repo().join("profiles/xeon/2026-11-29-2216.toml")).unwrap();
    let wake = "extra_ms = 3.5403396153846156";
    assert!(calibration.contains(wake), "the one-thread wake-up this test edits");
    // As if this build had timed it (it was revision 3's): merge takes only this engine's.
    let revision = "engine_revision = 3\n";
    assert!(calibration.contains(revision));
    let this_engine = format!("engine_revision = {}\n", pdsim::calibrate::profile::engine_revision());
    let calibration = calibration.replace(revision, &this_engine);
    let paths: Vec<String> = [3.5, 7.5, 9.5]
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            let p = d.path().join(format!("c{i}.toml"));
            std::fs::write(&p, calibration.replace(wake, &format!("extra_ms = {ms}"))).unwrap();
            p.to_str().unwrap().to_owned()
        })
        .collect();
    let merged = d.path().join("merged.toml");
    let mut args = vec!["calibrate", "--merge"];
    args.extend(paths.iter().map(String::as_str));
    args.extend(["--out", merged.to_str().unwrap()]);
    let out = output(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("threads 1: the 3 calibrations put a 16-token prefill"), "{stdout}");
    assert!(stdout.contains("(merged from 3 calibrations;"), "{stdout}");
    let text = std::fs::read_to_string(&merged).unwrap();
    assert!(text.starts_with("# Merged by `pdsim calibrate --merge` from 3 calibrations"), "{text}");
    let header = text.lines().take_while(|l| !l.starts_with("# pdsim calibrate,"));
    assert!(header.clone().count() > 1 && header.clone().all(|l| l.chars().count() <= 96), "wrapped: {text}");
    assert!(text.contains("extra_ms = 7.5"), "the median wake-up: {text}");
    // A scenario runs on it.
    let scenario = std::fs::read_to_string(repo().join("scenarios/light_light.toml"))
        .unwrap()
        .replace("\"execute\"", "\"simulate\"");
    let scenario = format!("{scenario}\n[cost_model]\nkind = \"profile\"\npath = {merged:?}\n");
    let file = d.path().join("s.toml");
    std::fs::write(&file, scenario).unwrap();
    let v = pdsim(&[file.to_str().unwrap(), "--json", "--out", d.path().to_str().unwrap()]);
    let completed: Vec<u64> =
        v["topologies"].as_array().unwrap().iter().map(|t| t["completed"].as_u64().unwrap()).collect();
    assert_eq!(completed, [24, 24], "{v}");

    // Another machine's calibration is refused, naming it, and nothing is written.
    let other = d.path().join("other.toml");
    std::fs::write(&other, calibration.replace("machine = \"Intel", "machine = \"Other Intel")).unwrap();
    let refused = d.path().join("refused.toml");
    let out = refused.to_str().unwrap();
    let stderr = bad_input_error(&["calibrate", "--merge", &paths[0], other.to_str().unwrap(), "--out", out]);
    assert!(stderr.contains("other.toml is a calibration of the machine Other Intel"), "{stderr}");
    assert!(stderr.contains("merge calibrations of one model on one machine"), "{stderr}");
    assert!(!refused.exists());
    // `--max-stolen` leaves out calibrations that lost more CPU time to the hypervisor (the
    // calibration one's copies lost 1.1–1.2%): fewer than two left is refused, saying why.
    let stderr = bad_input_error(&["calibrate", "--merge", &paths[0], &paths[1], "--max-stolen", "1", "--out", out]);
    assert!(stderr.contains("2 of 2 lost more than 1% of the CPU to the hypervisor while timed"), "{stderr}");
    assert!(!refused.exists());
    let stderr = bad_input_error(&["calibrate", "--merge", &paths[0], &paths[1], "--max-stolen", "0", "--out", out]);
    assert!(stderr.contains("--max-stolen must be a percentage above 0 and at most 100 (got 0)"), "{stderr}");
    // Nor is a calibration overwritten by the merge it is part of.
    let stderr = bad_input_error(&["calibrate", "--merge", &paths[0], &paths[1], "--out", &paths[1]]);
    assert!(stderr.contains("is one of the calibrations to merge"), "{stderr}");
    assert!(std::fs::read_to_string(&paths[1]).unwrap().contains("extra_ms = 7.5"), "c1.toml as it was");
    // One profile is not a merge; nor is a merge timed.
    bad_input_error(&["calibrate", "--merge", &paths[0], "--out", out]);
    bad_input_error(&["calibrate", "--merge", &paths[0], &paths[1], "--reps", "5"]);
    let stderr = bad_input_error(&["calibrate", "--merge", &paths[0], &paths[1], "--weights", "bf16", "--out", out]);
    assert!(stderr.contains("--merge times nothing"), "{stderr}");
    // A calibration named twice would count twice in every median.
    let stderr = bad_input_error(&["calibrate", "--merge", &paths[0], &paths[1], &paths[0], "--out", out]);
    assert!(stderr.contains("twice"), "{stderr}");
}
