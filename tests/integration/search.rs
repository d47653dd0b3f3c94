//! Placement search: every placement of the budget is evaluated, ranked by goodput per GPU, and
//! the winner's goodput holds up when its placement is run directly.

use std::process::Command;

use pdsim::scenario::{PhaseTp, TopologyKind};
use pdsim::sweep::rescaled;
use pdsim::workload::StopAfter;

use crate::common::{repo, run, shipped};

#[test]
fn search_ranks_placements_and_the_winner_holds_up() {
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pdsim"))
        .args(["search", "scenarios/sim/heavy_light.toml", "--gpus", "16", "--requests", "400", "--json", "--out"])
        .arg(d.path())
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = v["placements"].as_array().unwrap();
    assert!(p.len() >= 50, "{} placements", p.len());
    let per_gpu: Vec<f64> = p.iter().map(|x| x["goodput_per_gpu"].as_f64().unwrap()).collect();
    assert!(per_gpu.windows(2).all(|w| w[0] >= w[1]), "ranked best first");
    for x in p {
        assert_eq!(x["gpus"], 16);
        let g = x["goodput_req_per_s"].as_f64().unwrap();
        assert!((x["goodput_per_gpu"].as_f64().unwrap() - g / 16.0).abs() < 1e-9);
        assert!(g <= x["capacity_req_per_s"].as_f64().unwrap(), "no goodput above the capacity: {x}");
        assert!(["capacity", "ttft", "tpot", "ttft+tpot", "queue"].contains(&x["limit"].as_str().unwrap()), "{x}");
    }
    assert!(d.path().join("heavy_light/search/latest/search.csv").exists());

    // Long prompts and a tight TPOT objective: a split placement wins (prefill interference).
    let best = &p[0];
    assert!(best["name"].as_str().unwrap().starts_with("split-"), "{best}");
    // Run the winner directly: it meets the target at its goodput and misses well above it.
    let mut s = shipped("sim/heavy_light.toml");
    s.workload.stop = StopAfter::Requests(400);
    let t = s.topologies.iter_mut().find(|t| t.name == "split").unwrap();
    let (tp_p, tp_d) = (best["prefill_tp"].as_u64().unwrap() as u32, best["decode_tp"].as_u64().unwrap() as u32);
    let name = best["name"].as_str().unwrap();
    // split-{p}x{tp}p-{d}x{tp}d
    let nums: Vec<u32> = name.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse().ok()).collect();
    if let TopologyKind::Split { prefill_workers, decode_workers, .. } = &mut t.kind {
        (*prefill_workers, *decode_workers) = (nums[0], nums[2]);
    }
    t.tp = PhaseTp { prefill: Some(tp_p), decode: Some(tp_d) };
    let g = best["goodput_req_per_s"].as_f64().unwrap();
    let at = |rate: f64| run(&rescaled(&s, rate, None).unwrap(), "split").summary.slo_attainment;
    assert!(at(g) >= s.slo.attainment, "at its goodput {g}");
    assert!(at(g * 1.25) < s.slo.attainment, "25% above its goodput {g}");
}

/// A search that cannot be run, or would run for hours, says why before it starts, and writes
/// nothing.
#[test]
fn impossible_or_endless_searches_are_refused_up_front() {
    let d = tempfile::tempdir().unwrap();
    let search = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pdsim"))
            .args(["search", "scenarios/sim/heavy_light.toml", "--out"])
            .arg(d.path())
            .args(extra)
            .current_dir(repo())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let err = search(&["--gpus", "4", "--tp", "3"]);
    assert!(err.contains("32 attention heads") && err.trim_end().ends_with("degree of 1, 2, 4, 8"), "{err}");
    let err = search(&["--gpus", "2", "--tp", "4", "--partial"]);
    assert!(err.contains("every --tp ([4]) is more than the 2 GPUs"), "{err}");
    let err = search(&["--gpus", "16", "--tp", "16"]);
    assert!(err.contains("more than one 8-GPU NVLink node"), "{err}");
    let err = search(&["--gpus", "3", "--tp", "2"]);
    assert!(err.contains("no placement of 3 GPUs") && err.contains("--partial"), "{err}");
    let err = search(&["--gpus", "100000"]);
    assert!(err.contains("more than --max-candidates 5000"), "{err}");
    search(&["--gpus", "4", "--top", "0"]);
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "nothing written");
}
