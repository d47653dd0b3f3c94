//! Rate sweeps and goodput on the simulator.

use std::process::Command;

use pdsim::run::prepare;
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
    let g = bisect_rate(4.0, 0.02, |r| Ok(at(r).slo_attainment >= target)).unwrap();
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
