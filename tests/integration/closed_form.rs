//! Hand-computed cases under a fixed cost model:
//! prefill = 10 + 0.5·ΣL + 0.001·ΣL² ms; decode = 5 + 0.01·Σctx + 1·B ms.

use crate::common::{close, one_thread_profile, run, scenario};

fn text(extra_top: &str, classes_and_arrival: &str, topologies: &str) -> String {
    format!(
        r#"
seed = 1
{extra_top}
[cost_model]
kind = "coefficients"
kv_bytes_per_token = 1000
prefill = {{ base_ms = 10, per_token_ms = 0.5, per_token_sq_ms = 0.001 }}
decode = {{ base_ms = 5, per_ctx_token_ms = 0.01, per_seq_ms = 1 }}
{classes_and_arrival}
[slo]
ttft_ms = 100
tpot_ms = 10
{topologies}
"#
    )
}

const ONE_CLASS: &str = r#"
[[workload.classes]]
name = "one"
prompt_tokens = 100
output_tokens = 11
"#;

const BOTH: &str = r#"
[batching]
kv_capacity_tokens = 100000
[[topology]]
name = "fused"
kind = "fused"
workers = 1
[[topology]]
name = "split"
kind = "split"
prefill_workers = 1
decode_workers = 1
[[topology]]
name = "linked"
kind = "split"
prefill_workers = 1
decode_workers = 1
link = { bandwidth_gbps = 8, latency_us = 50 }
"#;

#[test]
fn one_request_on_an_idle_worker() {
    let arrival = format!("{ONE_CLASS}\n[workload.arrival]\nkind = \"constant\"\ninterval_ms = 1000\n");
    let s = scenario(&text("requests = 1", &arrival, BOTH));
    // TTFT = 10 + 0.5·100 + 0.001·100² = 70 ms.
    // Decode step k (k = 1..10) attends 100 + k tokens: 5 + 0.01·(100 + k) + 1 = 7 + 0.01·k ms;
    // the ten steps take 70.55 ms, so TPOT = 7.055 ms.
    for topo in ["fused", "split"] {
        let r = run(&s, topo);
        let q = &r.requests[0];
        close(q.f("ttft_ms"), 70.0);
        close(q.f("tpot_ms"), 7.055);
        close(q.f("e2e_ms"), 140.55);
        assert_eq!(q.f("token_count"), 11.0);
        close(r.summary.ttft_ms.unwrap().p50, 70.0);
        assert_eq!(r.iterations.len(), 11, "{topo}: one prefill and ten decode steps");
    }
    // KV link: 100 tokens × 1000 B = 100 kB over 1 GB/s is 0.1 ms, plus 50 µs of latency.
    // The transfer sits between the first token and the first decode step, so inside TPOT.
    let r = run(&s, "linked");
    let q = &r.requests[0];
    close(q.f("kv_transfer_ms"), 0.15);
    assert_eq!(q.f("kv_bytes"), 100_000.0);
    close(q.f("ttft_ms"), 70.0);
    close(q.f("tpot_ms"), (70.55 + 0.15) / 10.0);
    close(q.f("decode_start_s") * 1e3, 70.15);
}

#[test]
fn two_requests_share_prefill_and_decode_batches() {
    let arrival = format!("{ONE_CLASS}\n[workload.arrival]\nkind = \"bursts\"\nsize = 2\nevery_ms = 10000\n");
    let s = scenario(&text("requests = 2", &arrival, BOTH));
    // One prefill batch: 10 + 0.5·200 + 0.001·(100² + 100²) = 130 ms.
    // Decode step k with both: 5 + 0.01·2·(100 + k) + 2 = 9 + 0.02·k ms; ten steps: 91.1 ms.
    for topo in ["fused", "split"] {
        let r = run(&s, topo);
        for q in &r.requests {
            close(q.f("ttft_ms"), 130.0);
            close(q.f("tpot_ms"), 9.11);
        }
        let decode: Vec<_> = r.iterations.iter().filter(|i| i.s("kind") == "decode").collect();
        assert_eq!(decode.len(), 10);
        assert!(decode.iter().all(|i| i.f("batch_size") == 2.0));
    }
}

#[test]
fn full_decode_kv_holds_the_second_request_on_the_prefill_worker() {
    let arrival = format!("{ONE_CLASS}\n[workload.arrival]\nkind = \"bursts\"\nsize = 2\nevery_ms = 10000\n");
    let topo = r#"
[batching]
kv_capacity_tokens = 150
[[topology]]
name = "split"
kind = "split"
prefill_workers = 1
decode_workers = 1
"#;
    let s = scenario(&text("requests = 2", &arrival, topo));
    let r = run(&s, "split");
    let (a, b) = (&r.requests[0], &r.requests[1]);
    // 150 KV tokens hold one 100-token prompt on the prefill worker: prefills run one by one,
    // 70 ms each. Request 0 decodes alone (70.55 ms); request 1 waits, KV still on the prefill
    // worker, until request 0 has finished and freed the decode worker's KV.
    close(a.f("ttft_ms"), 70.0);
    close(b.f("ttft_ms"), 140.0);
    close(a.f("end_s") * 1e3, 140.55);
    close(b.f("kv_transfer_start_s") * 1e3, 140.55);
    close(b.f("decode_start_s") * 1e3, 140.55);
    close(b.f("end_s") * 1e3, 140.55 + 70.55);
    close(b.f("tpot_ms"), (140.55 + 70.55 - 140.0) / 10.0);
    assert!(r.iterations.iter().all(|i| i.f("kv_used_tokens") <= 150.0));
}

#[test]
fn chunked_prefill_interleaves_prompt_chunks_with_decodes() {
    let classes = r#"
[[workload.classes]]
name = "short"
prompt_tokens = 100
output_tokens = 3
[workload.arrival]
kind = "bursts"
size = 2
every_ms = 10000
"#;
    let topo = r#"
[batching]
kv_capacity_tokens = 100000
[[topology]]
name = "chunked"
kind = "fused"
workers = 1
policy = "chunked"
chunk_tokens = 64
"#;
    let s = scenario(&text("requests = 2", classes, topo));
    let r = run(&s, "chunked");
    let steps: Vec<(String, u64, u64)> = r
        .iterations
        .iter()
        .map(|i| (i.s("kind").to_owned(), i.f("prefill_tokens") as u64, i.f("decode_tokens") as u64))
        .collect();
    let want =
        [("prefill", 64, 0), ("prefill", 64, 0), ("mixed", 63, 1), ("mixed", 9, 1), ("decode", 0, 1), ("decode", 0, 1)];
    let want: Vec<(String, u64, u64)> = want.iter().map(|(k, p, d)| (k.to_string(), *p, *d)).collect();
    assert_eq!(steps, want);
    // Step times: the mixed steps pay the larger base (10 ms) once, then both variable parts.
    let ms: Vec<f64> = r.iterations.iter().map(|i| i.f("duration_ms")).collect();
    close(ms[0], 10.0 + 0.5 * 64.0 + 0.001 * 64.0 * 64.0);
    // Step 2: 36 tokens of prompt 0 at offset 64, 28 of prompt 1 at offset 0.
    close(ms[1], 10.0 + 0.5 * 64.0 + 0.001 * (36.0 * 100.0 + 28.0 * 28.0));
    // Step 3: request 0's first decode (context 101) and 63 tokens of prompt 1 at offset 28.
    close(ms[2], 10.0 + 0.5 * 63.0 + 0.001 * (63.0 * 91.0) + 0.01 * 101.0 + 1.0);
    // Request 0's first token came at the end of step 2.
    close(r.requests[0].f("ttft_ms"), ms[0] + ms[1]);
    close(r.requests[1].f("ttft_ms"), ms[0] + ms[1] + ms[2] + ms[3]);
}

/// The shared one-thread profile (prefill = 10 + 1·L ms, decode = 5 ms a step): beside another
/// worker a prefill takes × 1.5, × 2 beside a single-sequence decode when `beside_single`.
fn profile(dir: &std::path::Path, beside_single: bool) -> std::path::PathBuf {
    let single = if beside_single { "prefill_beside_single = 1.0\n" } else { "" };
    let name = if beside_single { "single.toml" } else { "plain.toml" };
    one_thread_profile(dir, name, &format!("[fit.co_run]\nprefill = 0.5\ndecode = 0.0\n{single}"))
}

/// `requests` requests of 50-token prompts and `output` tokens, `interval_ms` apart, on one
/// topology (its `[[topology]]` keys) with the calibration profile at `profile`.
fn on_profile(profile: &std::path::Path, requests: u32, output: u32, interval_ms: u32, topology: &str) -> String {
    format!(
        r#"
seed = 1
requests = {requests}
[cost_model]
kind = "profile"
path = "{}"
[[workload.classes]]
name = "one"
prompt_tokens = 50
output_tokens = {output}
[workload.arrival]
kind = "constant"
interval_ms = {interval_ms}
[slo]
ttft_ms = 1000
tpot_ms = 100
[batching]
kv_capacity_tokens = 100000
[[topology]]
{topology}"#,
        profile.display()
    )
}

#[test]
fn a_prefill_beside_a_single_sequence_decode_takes_its_own_factor() {
    // Two requests 100 ms apart on a split topology: the first decodes alone (one sequence,
    // 5 ms steps, 60 ms of prefill then 100 steps) while the second's 50-token prefill runs
    // beside it: 60 ms alone, × 1.5 beside a worker, × 2 beside a single-sequence decode.
    let d = tempfile::tempdir().unwrap();
    for (beside_single, ttft) in [(false, 90.0), (true, 120.0)] {
        let split = "name = \"split\"\nkind = \"split\"\nprefill_workers = 1\ndecode_workers = 1\n";
        let text = on_profile(&profile(d.path(), beside_single), 2, 101, 100, split);
        let r = run(&scenario(&text), "split");
        let q = &r.requests;
        close(q[0].f("ttft_ms"), 60.0);
        close(q[1].f("ttft_ms"), ttft);
    }
}

#[test]
fn a_workers_first_step_pays_the_wake_up() {
    // Prefill = 10 + 1·L ms, and a step after 100 ms or more of idle time takes 20 ms longer.
    // Three one-token requests of 50-token prompts 90 ms apart on one fused worker: the first
    // step is the worker's first (its threads have not run yet: 60 + 20 ms), the others follow
    // 10 and 30 ms of idle time (60 ms each).
    let d = tempfile::tempdir().unwrap();
    let profile = one_thread_profile(d.path(), "wake.toml", "[fit.wake]\nafter_idle_ms = 100.0\nextra_ms = 20.0\n");
    let text = on_profile(&profile, 3, 1, 90, "name = \"fused\"\nkind = \"fused\"\nworkers = 1\n");
    let r = run(&scenario(&text), "fused");
    let ttft: Vec<f64> = r.requests.iter().map(|q| q.f("ttft_ms")).collect();
    assert_eq!(ttft.len(), 3);
    for (got, want) in ttft.iter().zip([80.0, 60.0, 60.0]) {
        close(*got, want);
    }
}
