//! Rate sweeps and goodput on the simulator.

use std::process::Command;

use pdsim::run::prepare;
use pdsim::scenario::TopologyKind;
use pdsim::sweep::goodput::{goodput, Limit};
use pdsim::sweep::{bisect_rate, rescaled, run_point};
use pdsim::workload::StopAfter;

use crate::common::{repo, shipped};

#[test]
fn attainment_falls_with_rate_and_goodput_sits_at_the_edge() {
    let mut s = shipped("sim/heavy_light.toml");
    s.workload.stop = StopAfter::Requests(400);
    let backend = prepare(&mut s).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let t = s.topologies.iter().find(|t| t.name == "split").unwrap().clone();
    let at =
        |rate: f64| run_point(&rescaled(&s, rate, None).unwrap(), &backend, &t, s.seed, 1.0, scratch.path()).unwrap();
    let (low, high) = (at(1.0), at(16.0));
    assert!(low.slo_attainment > high.slo_attainment, "{} vs {}", low.slo_attainment, high.slo_attainment);
    let target = s.slo.attainment;
    let (g, _) = bisect_rate(4.0, 0.02, |r| Ok(at(r).slo_attainment >= target)).unwrap();
    assert!(g > 0.0);
    assert!(at(g).slo_attainment >= target);
    assert!(at(g * 1.3).slo_attainment < target, "30% above goodput should miss the target");
}

#[test]
fn sweep_command_writes_points_and_goodput() {
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pdsim"))
        .args(["sweep", "scenarios/sim/heavy_light.toml", "--requests", "200", "--rates", "1,4", "--cv", "1,3"])
        .args(["--goodput", "--seeds", "2", "--json", "--out"])
        .arg(d.path())
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 2 cv × 2 rates × 2 topologies × 2 seeds.
    assert_eq!(v["points"].as_array().unwrap().len(), 16);
    let g = v["goodput"].as_array().unwrap();
    assert_eq!(g.len(), 4);
    assert!(g.iter().all(|x| x["goodput_req_per_s"]["n"] == 2));
    let csv = std::fs::read_to_string(d.path().join("heavy_light/sweep/latest/sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 17);
    assert!(d.path().join("heavy_light/sweep/latest/goodput.csv").exists());
    let svg = std::fs::read_to_string(d.path().join("heavy_light/sweep/latest/attainment.svg")).unwrap();
    assert_eq!(svg.matches("<path").count(), 4, "one attainment line per topology and cv");
    let html = std::fs::read_to_string(d.path().join("heavy_light/sweep/latest/index.html")).unwrap();
    assert!(html.contains("attainment.svg") && html.contains("Goodput"));
    assert!(html.contains("href=\"goodput.csv\""), "the page links every file it sums up");
}

/// Goodput is a rate the topology sustains, not one a short run gets away with: it is never
/// above the topology's capacity, and it still meets the target in a run ten times as long.
#[test]
fn goodput_holds_in_a_long_run_and_never_passes_the_capacity() {
    let mut s = shipped("sim/heavy_light.toml");
    s.workload.stop = StopAfter::Requests(500);
    let backend = prepare(&mut s).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let target = s.slo.attainment;
    let mut t = s.topologies.iter().find(|t| t.name == "split").unwrap().clone();
    if let TopologyKind::Split { prefill_workers, decode_workers, .. } = &mut t.kind {
        (*prefill_workers, *decode_workers) = (6, 2);
    }
    let g = goodput(&s, &backend, &t, s.seed, None, 4.0, target, scratch.path()).unwrap();
    assert!(g.req_per_s > 0.0 && g.req_per_s <= g.capacity_req_per_s, "{g:?}");
    let mut long = rescaled(&s, g.req_per_s, None).unwrap();
    long.workload.stop = StopAfter::Requests(5000);
    let p = run_point(&long, &backend, &t, s.seed, 1.0, scratch.path()).unwrap();
    assert!(p.slo_attainment >= target, "5,000 requests at the goodput {g:?}: {}", p.slo_attainment);

    // Objectives nothing misses: the capacity is the limit (it was 2^20 times the start rate),
    // and a rate 10% above it falls behind its arrivals.
    s.slo.ttft_ms = 1e9;
    s.slo.tpot_ms = 1e9;
    let g = goodput(&s, &backend, &t, s.seed, None, 4.0, target, scratch.path()).unwrap();
    assert_eq!(g.limit, Limit::Capacity, "{g:?}");
    assert!(g.req_per_s <= g.capacity_req_per_s && g.req_per_s > 0.95 * g.capacity_req_per_s, "{g:?}");
    let mut over = rescaled(&s, 1.1 * g.capacity_req_per_s, None).unwrap();
    over.workload.stop = StopAfter::Requests(5000);
    let p = run_point(&over, &backend, &t, s.seed, 1.0, scratch.path()).unwrap();
    assert!(p.throughput_req_per_s < 1.02 * g.capacity_req_per_s, "served {} of {g:?}", p.throughput_req_per_s);
}
