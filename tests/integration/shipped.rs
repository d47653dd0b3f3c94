//! Every shipped scenario parses and runs (small), and runs are reproducible byte for byte.

use std::process::Command;

use pdsim::scenario::Mode;
use pdsim::workload::StopAfter;

use crate::common::{repo, run, shipped};

/// Execute mode (the real model on this CPU), then simulate mode (GPU-scale studies).
const SHIPPED: &[&str] = &[
    "light_light.toml",
    "light_heavy.toml",
    "heavy_light.toml",
    "heavy_heavy.toml",
    "mixed.toml",
    "sim/light_light.toml",
    "sim/light_heavy.toml",
    "sim/heavy_light.toml",
    "sim/heavy_heavy.toml",
    "sim/mixed.toml",
    "sim/cluster_8p8d.toml",
    "sim/faults.toml",
];

#[test]
fn every_shipped_scenario_is_listed_here_and_runs() {
    let mut on_disk: Vec<String> = Vec::new();
    for (dir, prefix) in [("scenarios", ""), ("scenarios/sim", "sim/")] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let n = e.unwrap().file_name().into_string().unwrap();
            if n.ends_with(".toml") {
                on_disk.push(format!("{prefix}{n}"));
            }
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = SHIPPED.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    for name in SHIPPED {
        let mut s = shipped(name);
        assert!(s.topologies.len() >= 2, "{name} compares topologies");
        assert!(
            s.topologies.iter().any(|t| t.kind_name() == "fused")
                && s.topologies.iter().any(|t| t.kind_name() == "split")
        );
        // Small: 40 simulated requests, or 3 real ones.
        let n = if s.mode == Mode::Execute { 3 } else { 40 };
        s.workload.stop = StopAfter::Requests(n);
        for t in s.topologies.clone() {
            let r = run(&s, &t.name);
            assert_eq!(r.summary.completed, n, "{name}/{}", t.name);
            assert_eq!(r.requests.len(), n as usize);
        }
    }
}

fn pdsim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pdsim")).args(args).current_dir(repo()).output().unwrap()
}

/// Simulate mode: the same seed gives the same bytes, faults, retries and rejections included.
#[test]
fn same_seed_gives_byte_identical_csvs() {
    for (scenario, name, files) in [
        ("scenarios/sim/heavy_light.toml", "heavy_light", &["requests.csv", "iterations.csv", "summary.csv"][..]),
        ("scenarios/sim/faults.toml", "faults", &["requests.csv", "iterations.csv", "summary.csv", "events.csv"][..]),
    ] {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [&a, &b] {
            let out = pdsim(&[scenario, "--out", d.path().to_str().unwrap(), "--run-name", "r"]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        for t in ["fused", "split"] {
            for f in files {
                let read =
                    |d: &tempfile::TempDir| std::fs::read(d.path().join(name).join("r").join(t).join(f)).unwrap();
                let (x, y) = (read(&a), read(&b));
                assert!(!x.is_empty());
                assert!(x == y, "{name}/{t}/{f} differs between two runs with the same seed");
            }
        }
    }
}

#[test]
fn cli_prints_a_comparison_and_json() {
    let d = tempfile::tempdir().unwrap();
    let out = pdsim(&["scenarios/sim/mixed.toml", "--out", d.path().to_str().unwrap()]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("TPOT p90 (ms)") && table.contains("split / fused"), "{table}");
    let out = pdsim(&["scenarios/sim/mixed.toml", "--out", d.path().to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tops = v["topologies"].as_array().unwrap();
    assert_eq!(tops.len(), 2);
    assert_eq!(tops[0]["completed"], 10);
    assert!(tops[1]["tpot_ms"]["p90"].as_f64().unwrap() > 0.0);
    // A script finds the run's folder in the JSON (the table's last line says it otherwise).
    let dir = std::path::PathBuf::from(v["results_dir"].as_str().unwrap());
    assert!(dir.join("summary.csv").exists() && dir.starts_with(d.path()), "{dir:?}");
    let all = std::fs::read_to_string(d.path().join("mixed/latest/summary.csv")).unwrap();
    assert_eq!(all.lines().count(), 3, "header and one row per topology");
}

#[test]
fn validate_accepts_every_shipped_scenario() {
    let files: Vec<String> = SHIPPED.iter().map(|s| format!("scenarios/{s}")).collect();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = pdsim(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A new run never writes into an earlier run's folder: each gets its own, `latest` points at
/// the newest, and a named folder that holds files is only replaced with --force.
#[test]
fn runs_never_mix_their_files() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().to_str().unwrap();
    for _ in 0..2 {
        assert!(pdsim(&["scenarios/sim/mixed.toml", "--out", out, "--only", "fused"]).status.success());
    }
    let runs: Vec<String> = std::fs::read_dir(d.path().join("mixed"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "latest")
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let latest = std::fs::read_link(d.path().join("mixed/latest")).unwrap();
    assert!(runs.iter().any(|r| latest.to_str() == Some(r.as_str())));

    let named = ["scenarios/sim/mixed.toml", "--out", out, "--only", "fused", "--run-name", "base"];
    assert!(pdsim(&named).status.success());
    let summary = d.path().join("mixed/base/summary.csv");
    let before = std::fs::read(&summary).unwrap();
    let again = pdsim(&named);
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds the results of an earlier run") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&summary).unwrap(), before, "the refused run touched nothing");
    let mut forced = named.to_vec();
    forced.push("--force");
    assert!(pdsim(&forced).status.success());
    assert!(summary.exists());
}

/// A run's folder has its pictures: CDFs, a timeline per topology (SVG and a Chrome trace with
/// one event per step), and an index.html tying them to the summary table.
#[test]
fn a_run_draws_its_plots_and_page() {
    let d = tempfile::tempdir().unwrap();
    let out = pdsim(&["scenarios/sim/mixed.toml", "--out", d.path().to_str().unwrap(), "--run-name", "p"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = d.path().join("mixed/p");
    let html = std::fs::read_to_string(run.join("index.html")).unwrap();
    for needle in ["ttft_cdf.svg", "tpot_cdf.svg", "fused/timeline.svg", "split/timeline.svg", "TPOT p90 (ms)"] {
        assert!(html.contains(needle), "index.html lacks {needle}");
    }
    // It links every file of the run (the run's summary.csv too), and each link resolves.
    let links: Vec<&str> = html.split("href=\"").skip(1).map(|x| &x[..x.find('"').unwrap()]).collect();
    for f in ["summary.csv", "fused/requests.csv", "split/iterations.csv", "split/timeline.trace.json"] {
        assert!(links.contains(&f), "no link to {f}: {links:?}");
    }
    assert!(links.iter().all(|l| run.join(l).exists()), "{links:?}");
    for svg in ["ttft_cdf.svg", "tpot_cdf.svg", "fused/timeline.svg", "split/timeline.svg"] {
        let s = std::fs::read_to_string(run.join(svg)).unwrap();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"), "{svg}");
        assert!(s.contains("<path") || s.contains("<rect x="), "{svg} draws something");
    }
    for t in ["fused", "split"] {
        let trace: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join(t).join("timeline.trace.json")).unwrap()).unwrap();
        let steps = crate::common::read_csv(&run.join(t).join("iterations.csv")).len();
        let events = trace["traceEvents"].as_array().unwrap();
        assert_eq!(events.iter().filter(|e| e["ph"] == "X").count(), steps, "{t}: one trace event per step");
    }
}
