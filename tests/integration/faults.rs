//! Faults: crashed workers, failing steps and panicking engines are survived; every request is
//! accounted for; the remaining workers keep serving.

use pdsim::workload::StopAfter;

use crate::common::{read_csv, run, scenario, Ran};

/// A 1P + 2D split (and a 2-worker fused) on the A100 roofline, 600 requests over ~60 s, with
/// `faults` added to both topologies' tables.
fn with_faults(split_faults: &str, fused_faults: &str, max_retries: u32) -> pdsim::scenario::Scenario {
    scenario(&format!(
        r#"
mode = "simulate"
seed = 3
requests = 600
max_retries = {max_retries}
[cost_model]
kind = "roofline"
hardware = "a100-80gb"
model = "llama-2-7b"
[[workload.classes]]
name = "c"
prompt_tokens = {{ kind = "uniform", min = 256, max = 1024 }}
output_tokens = {{ kind = "uniform", min = 32, max = 256 }}
[workload.arrival]
kind = "poisson"
rate_per_s = 10
[slo]
ttft_ms = 1000
tpot_ms = 50
[[topology]]
name = "split"
kind = "split"
prefill_workers = 1
decode_workers = 2
{split_faults}
[[topology]]
name = "fused"
kind = "fused"
workers = 2
{fused_faults}
"#
    ))
}

fn accounted(r: &Ran) {
    let s = &r.summary;
    assert_eq!(s.completed + s.rejected + s.failed, s.arrived);
    assert_eq!(s.arrived, 600);
    assert_eq!(r.requests.len(), 600);
}

fn events(r: &Ran, topology: &str) -> Vec<crate::common::Row> {
    // The collector writes events.csv beside requests.csv; `run` keeps the folder alive.
    read_csv(&r.dir(topology).join("events.csv"))
}

#[test]
fn a_crashed_decode_worker_loses_its_requests_to_retries_and_the_other_keeps_serving() {
    let crash = "[[topology.faults]]\nworker = \"decode-0\"\nat_s = 20\nkind = \"crash\"";
    let s = with_faults(crash, "", 1);
    let r = run(&s, "split");
    accounted(&r);
    let sm = &r.summary;
    assert_eq!(sm.worker_failures, 1);
    assert!(sm.retries > 0, "the requests decode-0 held were started again");
    assert_eq!(sm.failed, 0, "one retry is enough with decode-1 up");
    assert_eq!(sm.completed, 600);
    let after_crash = |q: &&crate::common::Row| q.f("end_s") > 20.0;
    assert!(r.requests.iter().filter(after_crash).all(|q| q.s("decode_worker") != "0" || q.f("token_count") <= 1.0));
    assert!(r.requests.iter().filter(after_crash).filter(|q| q.s("decode_worker") == "1").count() > 100);
    let ev = events(&r, "split");
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].s("worker"), ev[0].s("event")), ("decode-0", "crashed"));
    assert!(ev[0].s("detail").contains("down for the rest of the run"));
}

#[test]
fn a_crashed_worker_that_comes_back_serves_again() {
    let crash = "[[topology.faults]]\nworker = \"fused-1\"\nat_s = 10\nkind = \"crash\"\ndown_s = 5";
    let s = with_faults("", crash, 1);
    let r = run(&s, "fused");
    accounted(&r);
    assert_eq!(r.summary.completed, 600);
    let on_1 = |q: &&crate::common::Row| q.s("prefill_worker") == "1";
    assert!(r.requests.iter().filter(on_1).any(|q| q.f("prefill_start_s") > 15.0), "fused-1 serves after its restart");
    assert!(!r.requests.iter().filter(on_1).any(|q| (10.0..15.0).contains(&q.f("prefill_start_s"))));
    let ev = events(&r, "fused");
    let kinds: Vec<&str> = ev.iter().map(|e| e.s("event")).collect();
    assert_eq!(kinds, ["crashed", "restarted"]);
    assert!((ev[1].f("time_s") - 15.0).abs() < 1e-6);
}

#[test]
fn with_every_worker_down_the_rest_fail_with_a_reason_and_the_run_ends() {
    let crash = |w: &str| format!("[[topology.faults]]\nworker = \"{w}\"\nat_s = 30\nkind = \"crash\"\n");
    let s = with_faults("", &(crash("fused-0") + &crash("fused-1")), 0);
    let r = run(&s, "fused");
    accounted(&r);
    let sm = &r.summary;
    assert!(sm.completed > 200 && sm.failed > 200, "{} completed, {} failed", sm.completed, sm.failed);
    for q in r.requests.iter().filter(|q| q.s("outcome") == "failed") {
        let arrived_after = q.f("enqueue_s") >= 30.0;
        let want = if arrived_after { "no_live_worker" } else { "worker_failed" };
        assert_eq!(q.s("reason"), want, "request {} arrived at {}", q.s("request_id"), q.s("enqueue_s"));
    }
    served_over_the_whole_run(&r);
}

/// With both decode workers down, prompts are still prefilled, but nothing can decode them:
/// they fail as having no live worker, not as lost in a failure.
#[test]
fn with_the_decode_workers_down_prompts_fail_for_want_of_a_live_worker() {
    let crash = |w: &str| format!("[[topology.faults]]\nworker = \"{w}\"\nat_s = 30\nkind = \"crash\"\n");
    let s = with_faults(&(crash("decode-0") + &crash("decode-1")), "", 1);
    let r = run(&s, "split");
    accounted(&r);
    let late: Vec<_> = r.requests.iter().filter(|q| q.f("enqueue_s") > 31.0).collect();
    assert!(late.len() > 200, "{} arrived after the crash", late.len());
    for q in late {
        assert_eq!((q.s("outcome"), q.s("reason")), ("failed", "no_live_worker"), "request {}", q.s("request_id"));
        assert!(q.s("detail").contains("no decode worker is up"), "{}", q.s("detail"));
    }
    served_over_the_whole_run(&r);
}

/// The run lasts until its last request is settled, failed ones too: a topology whose workers
/// died does not show the throughput of the seconds before.
fn served_over_the_whole_run(r: &Ran) {
    let last_arrival = r.requests.iter().map(|q| q.f("enqueue_s")).fold(0.0, f64::max);
    let s = &r.summary;
    assert!(
        s.makespan_ns as f64 / 1e9 >= last_arrival,
        "makespan {} s, last arrival {last_arrival} s",
        s.makespan_ns as f64 / 1e9
    );
    let rate = s.completed as f64 / (s.makespan_ns as f64 / 1e9);
    assert!((s.throughput_req_per_s - rate).abs() < 1e-9 * rate.max(1.0));
}

#[test]
fn failing_and_panicking_steps_restart_the_engine_and_requests_are_retried() {
    let split = "[[topology.faults]]\nworker = \"decode-1\"\nat_s = 5\nkind = \"panic\"\n\
                 [[topology.faults]]\nworker = \"prefill-0\"\nat_s = 12\nkind = \"step_error\"";
    let fused = "[[topology.faults]]\nworker = \"fused-0\"\nat_s = 5\nkind = \"step_error\"";
    let s = with_faults(split, fused, 1);
    for t in ["split", "fused"] {
        let r = run(&s, t);
        accounted(&r);
        assert_eq!(r.summary.completed, 600, "{t}: every lost request succeeded on its retry");
        assert!(r.summary.retries > 0);
        let ev = events(&r, t);
        assert!(ev.iter().all(|e| e.s("event") == "engine_failed"));
        assert!(ev.iter().any(|e| e.s("detail").contains("injected")), "{t}");
    }
    let r = run(&s, "split");
    let details: Vec<String> = events(&r, "split").iter().map(|e| e.s("detail").to_owned()).collect();
    assert!(details[0].starts_with("engine panicked: injected panic"), "{details:?}");
}

/// The real engine: a panic raised on a compute thread inside the candle forward pass of the
/// first decode step is caught; the worker replaces its engine and the requests are retried.
#[test]
fn a_panic_inside_the_candle_engine_is_caught_and_the_worker_restarted() {
    let mut s = crate::common::shipped("light_light.toml");
    s.workload.stop = StopAfter::Requests(3);
    s.max_retries = 2;
    for t in &mut s.topologies {
        let worker = if t.name == "split" { "decode-0" } else { "fused-0" };
        t.faults.push(pdsim::scenario::FaultSpec {
            worker: worker.into(),
            at_ns: 0,
            kind: pdsim::scenario::FaultKind::Panic,
        });
    }
    for t in ["split", "fused"] {
        let r = run(&s, t);
        assert_eq!(r.summary.completed, 3, "{t}");
        assert!(r.summary.retries >= 1, "{t}");
        assert_eq!(r.summary.worker_failures, 1, "{t}");
        let ev = events(&r, t);
        assert!(ev[0].s("detail").starts_with("engine panicked: injected panic"), "{t}: {}", ev[0].s("detail"));
    }
}

#[test]
fn a_fault_aimed_at_a_worker_the_topology_lacks_is_a_scenario_error() {
    let text = with_faults_text("[[topology.faults]]\nworker = \"decode-7\"\nat_s = 1\nkind = \"crash\"");
    let e = pdsim::scenario::parse(std::path::Path::new("f.toml"), &text).unwrap_err().to_string();
    assert!(e.contains("topology[0].faults[0].worker") && e.contains("decode-0, decode-1"), "{e}");
    assert!(e.starts_with("f.toml:"), "{e}");
}

fn with_faults_text(split_faults: &str) -> String {
    format!(
        "mode = \"simulate\"\nrequests = 5\n[cost_model]\nkind = \"roofline\"\nhardware = \"a100-80gb\"\nmodel = \"llama-2-7b\"\n\
         [[workload.classes]]\nname = \"c\"\nprompt_tokens = 10\noutput_tokens = 10\n[workload.arrival]\nkind = \"poisson\"\n\
         rate_per_s = 1\n[slo]\nttft_ms = 1\ntpot_ms = 1\n[[topology]]\nkind = \"split\"\nprefill_workers = 1\ndecode_workers = 2\n{split_faults}\n"
    )
}

/// A panic a worker survives is told once, in the worker's words: Rust's panic report and
/// backtrace (printed even though the worker caught it, with `RUST_BACKTRACE=1` 66 frames of it)
/// stay out of stderr.
#[test]
fn a_caught_panic_is_reported_once_without_a_backtrace() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("p.toml");
    std::fs::write(&path, with_faults_text("[[topology.faults]]\nworker = \"decode-0\"\nat_s = 1\nkind = \"panic\""))
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pdsim"))
        .arg(&path)
        .arg("--out")
        .arg(d.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("engine panicked: injected panic").count(), 1, "{err}");
    assert!(!err.contains("panicked at") && !err.contains("backtrace"), "{err}");
}
