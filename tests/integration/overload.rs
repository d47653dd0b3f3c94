//! Overload and full KV: every arrival ends as exactly one of completed, rejected or failed,
//! queues stay within their limits, and a full KV cache makes requests wait, never fail.

use std::process::Command;

use pdsim::workload::arrival::ArrivalPattern;
use pdsim::workload::{Source, StopAfter};

use crate::common::{repo, run, scenario, Ran};

/// The shipped A100 heavy_light study at `rate` requests/s. Measured with this scenario: two
/// fused workers complete about 11 requests/s at most, a 1P+1D split about 6.6 (prefill of
/// 1–3k-token prompts is the bottleneck), so 110/s is 10× past the better one's capacity.
fn heavy_light(rate: f64, requests: u64, max_queued: u64) -> String {
    format!(
        r#"
mode = "simulate"
seed = 7
requests = {requests}
[cost_model]
kind = "roofline"
hardware = "a100-80gb"
model = "llama-2-7b"
[[workload.classes]]
name = "heavy"
prompt_tokens = {{ kind = "uniform", min = 1024, max = 3072 }}
output_tokens = {{ kind = "uniform", min = 16, max = 64 }}
[workload.arrival]
kind = "poisson"
rate_per_s = {rate}
[batching]
max_queued_requests = {max_queued}
[slo]
ttft_ms = 1000
tpot_ms = 25
[[topology]]
name = "fused"
kind = "fused"
workers = 2
[[topology]]
name = "split"
kind = "split"
prefill_workers = 1
decode_workers = 1
link = {{ bandwidth_gbps = 200 }}
"#
    )
}

/// Counts by outcome from requests.csv, checked against the summary.
fn check_accounting(r: &Ran, arrived: u64) {
    let s = &r.summary;
    assert_eq!(s.arrived, arrived);
    assert_eq!(s.completed + s.rejected + s.failed, s.arrived);
    assert_eq!(r.requests.len() as u64, arrived, "one row per arrival");
    let count = |o: &str| r.requests.iter().filter(|q| q.s("outcome") == o).count() as u64;
    assert_eq!((count("completed"), count("rejected"), count("failed")), (s.completed, s.rejected, s.failed));
    let ids: std::collections::BTreeSet<u64> = r.requests.iter().map(|q| q.f("request_id") as u64).collect();
    assert_eq!(ids.len() as u64, arrived, "no request appears twice");
}

#[test]
fn ten_times_past_capacity_every_request_is_counted_and_queues_stay_bounded() {
    let s = scenario(&heavy_light(110.0, 4_000, 32));
    for t in ["fused", "split"] {
        let r = run(&s, t);
        check_accounting(&r, 4_000);
        let sm = &r.summary;
        assert!(sm.rejected > 3_000, "{t}: {} rejected at 10x capacity", sm.rejected);
        assert_eq!(sm.failed, 0);
        assert_eq!(sm.dropped.get("queue_full"), Some(&sm.rejected));
        for q in r.requests.iter().filter(|q| q.s("outcome") == "rejected") {
            assert_eq!(q.s("reason"), "queue_full");
            assert!(q.s("detail").contains("32 requests already waiting"), "{}", q.s("detail"));
            assert_eq!(q.s("ttft_ms"), "");
        }
        let most_queued = r.iterations.iter().map(|i| i.f("queued") as u64).max().unwrap();
        assert!(most_queued <= 32, "{t}: {most_queued} queued with a limit of 32");
        // A rejected request met no objective.
        assert!(sm.slo_attainment <= sm.completed as f64 / sm.arrived as f64);
    }
}

fn peak_rss_mb(dir: &std::path::Path, requests: u64) -> f64 {
    let path = dir.join(format!("overload-{requests}.toml"));
    std::fs::write(&path, heavy_light(110.0, requests, 32)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pdsim"))
        .arg(&path)
        .args(["--only", "split", "--json", "--out"])
        .arg(dir.join(format!("out-{requests}")))
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["topologies"][0]["arrived"], requests);
    doc["peak_rss_mb"].as_f64().unwrap()
}

/// With a queue limit, ten times more requests at 10× capacity must not need much more memory:
/// the backlog is bounded (without the limit it would hold ~90% of the arrivals).
#[test]
fn memory_stays_bounded_under_sustained_overload() {
    let dir = tempfile::tempdir().unwrap();
    let small = peak_rss_mb(dir.path(), 20_000);
    let large = peak_rss_mb(dir.path(), 200_000);
    assert!(large < 1.5 * small + 16.0, "peak RSS {large:.1} MiB at 200k requests vs {small:.1} MiB at 20k");
}

#[test]
fn requests_that_can_never_fit_are_rejected_with_the_reason() {
    // Unbounded lengths: validation cannot rule the big ones out, the enqueuer rejects them.
    let text = r#"
mode = "simulate"
requests = 300
[cost_model]
kind = "roofline"
hardware = "a100-80gb"
model = "llama-2-7b"
[[workload.classes]]
name = "long_tail"
prompt_tokens = { kind = "lognormal", mean = 1500, std = 2000 }
output_tokens = 32
[workload.arrival]
kind = "poisson"
rate_per_s = 2
[batching]
kv_capacity_tokens = 3000
[slo]
ttft_ms = 1000
tpot_ms = 50
[[topology]]
kind = "split"
prefill_workers = 1
decode_workers = 1
"#;
    let r = run(&scenario(text), "split-1p1d");
    check_accounting(&r, 300);
    assert!(r.summary.rejected > 10, "{} rejected", r.summary.rejected);
    for q in &r.requests {
        let fits = q.f("prompt_tokens") + q.f("output_tokens") <= 3000.0;
        assert_eq!(q.s("outcome"), if fits { "completed" } else { "rejected" }, "request {}", q.s("request_id"));
        if !fits {
            assert_eq!(q.s("reason"), "exceeds_kv_capacity");
        }
    }
}

/// Decode KV room for two requests at a time: the others wait (on the prefill worker, their
/// KV still counted there) and all complete; the capacity is never overrun.
#[test]
fn full_decode_kv_makes_requests_wait_in_the_simulator() {
    let text = r#"
mode = "simulate"
requests = 200
[cost_model]
kind = "roofline"
hardware = "a100-80gb"
model = "llama-2-7b"
[[workload.classes]]
name = "c"
prompt_tokens = 500
output_tokens = 200
[workload.arrival]
kind = "poisson"
rate_per_s = 20
[batching]
kv_capacity_tokens = 1400
[slo]
ttft_ms = 1000
tpot_ms = 50
[[topology]]
kind = "split"
prefill_workers = 1
decode_workers = 1
[[topology]]
kind = "fused"
workers = 1
"#;
    let s = scenario(text);
    for t in ["split-1p1d", "fused"] {
        let r = run(&s, t);
        check_accounting(&r, 200);
        assert_eq!(r.summary.completed, 200, "{t}");
        let kv_max = r.iterations.iter().map(|i| i.f("kv_used_tokens")).fold(0.0, f64::max);
        assert!(kv_max <= 1400.0, "{t}: {kv_max} KV tokens used of 1400");
        let batch_max = r.iterations.iter().filter(|i| i.f("decode_tokens") > 0.0).map(|i| i.f("batch_size"));
        assert!(batch_max.fold(0.0, f64::max) <= 2.0, "{t}: two requests fit at a time");
        assert!(r.iterations.iter().any(|i| i.f("queued") > 0.0), "{t}: requests waited");
    }
}

/// The same with the real engine: three requests at once, KV room for two.
#[test]
fn full_kv_makes_requests_wait_with_the_real_engine() {
    let mut s = crate::common::shipped("light_light.toml");
    s.workload.stop = StopAfter::Requests(3);
    if let Source::Synthetic { arrival, .. } = &mut s.workload.source {
        *arrival = ArrivalPattern::Bursts { size: 3, every_ns: 60_000_000_000 };
    }
    // Room for any two of the three requests, never all three.
    let needs: Vec<u64> = s.workload.stream().map(|q| q.prompt_tokens + q.output_tokens).collect();
    let cap = needs.iter().sum::<u64>() - needs.iter().min().unwrap();
    for t in &mut s.topologies {
        t.batching.kv_capacity_tokens = cap;
    }
    for t in ["fused", "split"] {
        let r = run(&s, t);
        check_accounting(&r, 3);
        assert_eq!(r.summary.completed, 3, "{t}");
        let kv_max = r.iterations.iter().map(|i| i.f("kv_used_tokens")).fold(0.0, f64::max);
        assert!(kv_max <= cap as f64, "{t}: {kv_max} of {cap}");
        assert!(r.iterations.iter().any(|i| i.f("queued") > 0.0), "{t}: the third request waited");
    }
}
