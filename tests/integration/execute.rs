//! Execute mode end to end: the real model behind the actors, and the model commands.

use std::process::Command;

use pdsim::scenario::Mode;
use pdsim::workload::StopAfter;
use serde_json::Value;

use crate::common::{repo, run, shipped};

#[test]
fn mixed_runs_for_real_and_hands_kv_over_in_messages() {
    let mut s = shipped("mixed.toml");
    assert_eq!(s.mode, Mode::Execute);
    s.workload.stop = StopAfter::Requests(4);
    let r = run(&s, "split");
    assert_eq!(r.requests.len(), 4);
    for q in &r.requests {
        // The first token comes from prefill; the handoff carried the prompt's f32 KV:
        // 2 × 30 layers × 3 KV heads × 64 × 4 bytes per token.
        assert!(q.f("token_count") >= 1.0);
        if q.f("token_count") > 1.0 {
            assert_eq!(q.f("kv_bytes"), 46_080.0 * q.f("prompt_tokens"), "request {}", q.s("request_id"));
            assert!(q.f("tpot_ms") > 0.0);
        }
        assert!(q.f("ttft_ms") > 0.0 && q.f("e2e_ms") >= q.f("ttft_ms"));
    }
    // Wall-clock step times from real work.
    assert!(r.iterations.iter().any(|i| i.s("kind") == "prefill" && i.f("duration_ms") > 1.0));
    assert!(r.iterations.iter().any(|i| i.s("worker").starts_with("decode-")));
}

fn pdsim(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pdsim")).args(args).current_dir(repo()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tokenize_and_generate_from_the_shell() {
    let t = pdsim(&["tokenize", "--json", "Hello, world! The capital of France is"]);
    assert_eq!(t["ids"], serde_json::json!([19556, 28, 905, 17, 378, 3575, 282, 4649, 314]));
    let g = pdsim(&["generate", "The capital of France is", "--max-tokens", "5", "--ignore-eos", "--json"]);
    // The fp32 reference's first five greedy tokens: " Paris.\n\nThe".
    assert_eq!(g["ids"], serde_json::json!([7042, 30, 198, 198, 504]));
    assert_eq!(g["text"], " Paris.\n\nThe");
    assert!(g["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
}

/// The answer ends at the end-of-sequence token, which is not part of its text.
#[test]
fn generate_leaves_the_end_of_sequence_token_out_of_the_text() {
    let g = pdsim(&["generate", "What is 2+2?", "--chat", "--max-tokens", "24", "--json"]);
    let ids = g["ids"].as_array().unwrap();
    assert_eq!(ids.last().unwrap(), 2, "the model ends its answer: {g}");
    let text = g["text"].as_str().unwrap();
    assert!(!text.is_empty() && !text.contains("<|im_end|>"), "{text:?}");
}

/// Bad model arguments are bad input (exit 2) with a message, before anything is generated.
#[test]
fn bad_model_arguments_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "root:x:0:0\n").unwrap();
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, "").unwrap();
    let (text, empty) = (text.to_str().unwrap(), empty.to_str().unwrap());
    let cases: [(&[&str], &str); 9] = [
        (&["tokenize", "hi", "--model", text], "not a GGUF model file (it starts with \"root\")"),
        (&["tokenize", "hi", "--model", empty], "not a GGUF model file (an empty file)"),
        (&["tokenize", "hi", "--model", "/nonexistent/m.gguf"], "no such file"),
        (&["tokenize", "hi", "--weights", "foo"], "--weights foo: expected"),
        (&["generate", "hi", "--temperature", "-1"], "must be 0 (greedy) or more"),
        (&["generate", "hi", "--top-p", "2"], "must be in (0, 1]"),
        (&["generate", "hi", "--max-tokens", "0"], "--max-tokens"),
        (&["generate", "hi", "--max-tokens", "1000000000000"], "more than the model's context of 8192 tokens"),
        (&["bench", "--threads", "0"], "--threads"),
    ];
    for (args, says) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_pdsim"))
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .current_dir(repo())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says) && !err.contains("backtrace"), "{args:?}: {err}");
    }
}

#[test]
fn outputs_hold_the_generated_text() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pdsim"))
        .args(["scenarios/mixed.toml", "--requests", "2", "--only", "fused", "--out"])
        .arg(dir.path())
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(dir.path().join("mixed/latest/fused/outputs.jsonl")).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| !l["text"].as_str().unwrap().is_empty()));
    // mixed.toml lets the model stop at its end-of-sequence token, which is not text.
    assert!(lines.iter().all(|l| !l["text"].as_str().unwrap().contains("<|im_end|>")), "{text}");
}

/// An execute-mode run leaves `trace.csv`: arrivals and the lengths that really ran (the model
/// may stop early at end-of-sequence), which the simulator replays request for request.
#[test]
fn an_execute_run_replays_in_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pdsim"))
        .args(["scenarios/mixed.toml", "--requests", "4", "--only", "split", "--run-name", "x", "--out"])
        .arg(dir.path())
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ran = dir.path().join("mixed/x/split");
    let executed = crate::common::read_csv(&ran.join("requests.csv"));
    let trace = ran.join("trace.csv");
    let text = format!(
        "mode = \"simulate\"\n[cost_model]\nkind = \"roofline\"\nhardware = \"a100-80gb\"\nmodel = \"smollm2-135m\"\n\
         [workload.arrival]\nkind = \"trace\"\npath = {:?}\n[slo]\nttft_ms = 100\ntpot_ms = 10\n\
         [[topology]]\nkind = \"split\"\nprefill_workers = 1\ndecode_workers = 1\n",
        trace.display().to_string()
    );
    let s = crate::common::scenario(&text);
    let replayed = run(&s, "split-1p1d");
    assert_eq!(replayed.requests.len(), executed.len());
    let mut executed = executed;
    executed.sort_by(|a, b| a.f("enqueue_s").total_cmp(&b.f("enqueue_s")));
    for (e, r) in executed.iter().zip(&replayed.requests) {
        assert_eq!(r.f("prompt_tokens"), e.f("prompt_tokens"));
        assert_eq!(r.f("output_tokens"), e.f("token_count"), "the length that ran, not the one asked for");
        assert_eq!(r.s("class"), e.s("class"));
        assert!((r.f("enqueue_s") - e.f("enqueue_s")).abs() < 1e-6);
    }
}

/// Requests longer than the model's context (8192 tokens): a class that can make one is refused
/// before anything runs (exit 2, no folder left), a trace's are rejected as they arrive
/// (`exceeds_context`) while the rest run. Both used to fail every such request as a worker
/// failure, the engine replaced each time.
#[test]
fn requests_past_the_models_context_are_refused_or_rejected() {
    let d = tempfile::tempdir().unwrap();
    let run_text = |name: &str, text: &str| {
        let path = d.path().join(format!("{name}.toml"));
        std::fs::write(&path, format!("mode = \"execute\"\nname = \"{name}\"\n{text}\n[slo]\nttft_ms = 100\ntpot_ms = 10\n[[topology]]\nkind = \"fused\"\nworkers = 1\n")).unwrap();
        Command::new(env!("CARGO_BIN_EXE_pdsim"))
            .arg(&path)
            .arg("--out")
            .arg(d.path().join("out"))
            .current_dir(repo())
            .output()
            .unwrap()
    };
    let out = run_text(
        "long_class",
        "requests = 2\n[[workload.classes]]\nname = \"long\"\nprompt_tokens = 9000\noutput_tokens = 4\n\
         [workload.arrival]\nkind = \"poisson\"\nrate_per_s = 1.0",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("long_class.toml: class `long` can reach 9000 prompt + 4 output tokens, more than the model's context of 8192"), "{err}");
    assert!(!d.path().join("out/long_class").exists(), "no folder left by a run that never started");

    let trace = d.path().join("t.csv");
    std::fs::write(&trace, "arrival_s,prompt_tokens,output_tokens\n0.0,9000,4\n0.01,16,2\n").unwrap();
    let out = run_text(
        "long_trace",
        &format!("[workload.arrival]\nkind = \"trace\"\npath = {:?}", trace.display().to_string()),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = crate::common::read_csv(&d.path().join("out/long_trace/latest/fused/requests.csv"));
    let outcome = |tokens: f64| {
        rows.iter()
            .find(|r| r.f("prompt_tokens") == tokens)
            .map(|r| (r.s("outcome").to_owned(), r.s("reason").to_owned()))
    };
    assert_eq!(outcome(9000.0), Some(("rejected".into(), "exceeds_context".into())));
    assert_eq!(outcome(16.0), Some(("completed".into(), String::new())));
}
