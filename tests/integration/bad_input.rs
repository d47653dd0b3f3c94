//! Bad scenarios: one clear error naming file, line and column; exit code 2; no panic.

use std::process::Command;

const GOOD: &str = r#"seed = 1
requests = 10

[cost_model]
kind = "roofline"
hardware = "a100-80gb"
model = "llama-2-7b"

[[workload.classes]]
name = "a"
prompt_tokens = 100
output_tokens = 10

[workload.arrival]
kind = "poisson"
rate_per_s = 2.0

[slo]
ttft_ms = 100
tpot_ms = 10

[[topology]]
kind = "fused"
workers = 1
"#;

/// Validates `text` (written to a temp file) and returns (exit code, stderr, file path).
fn validate(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pdsim")).arg("validate").arg(&path).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stderr).unwrap(), path.display().to_string())
}

/// Asserts a clean failure that points at `line` and mentions every piece of `needles`.
#[track_caller]
fn rejects(text: &str, line: usize, needles: &[&str]) {
    let (code, err, path) = validate(text);
    assert_eq!(code, 2, "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "one error line: {err}");
    assert!(err.contains(&format!("{path}:{line}:")), "no {path}:{line}: in {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` missing from: {err}");
    }
}

#[test]
fn the_base_scenario_is_valid() {
    let (code, err, _) = validate(GOOD);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn unknown_key() {
    rejects(&GOOD.replace("seed = 1", "seed = 1\nrequest = 5"), 2, &["unknown field `request`", "requests"]);
    rejects(&GOOD.replace("workers = 1", "workers = 1\ngpus = 2"), 25, &["unknown field `gpus`", "workers"]);
}

#[test]
fn wrong_type() {
    rejects(&GOOD.replace("requests = 10", "requests = \"ten\""), 2, &["requests", "a whole number (0 or more)"]);
}

/// serde reads a table with a `kind` tag whole and names only the table; the error still points
/// at the key's own line and names it.
#[test]
fn errors_inside_tagged_tables_name_the_key() {
    let split = "[[topology]]\nkind = \"split\"\nprefill_workers = 1\ndecode_workers = 1";
    let two = format!("{GOOD}\n{split}\n");
    rejects(
        &two.replace("prefill_workers = 1", "prefill_workers = \"one\""),
        28,
        &["`topology[1].prefill_workers`", "a whole number (0 or more)"],
    );
    rejects(&format!("{two}router = \"random\"\n"), 30, &["`topology[1].router`", "round_robin"]);
    rejects(&format!("{two}link = {{ bandwidth = 200 }}\n"), 30, &["`topology[1].link.bandwidth`", "bandwidth_gbps"]);
    rejects(
        &GOOD.replace("rate_per_s = 2.0", "rate_per_s = \"fast\""),
        16,
        &["`workload.arrival.rate_per_s`", "expected a number"],
    );
    rejects(
        &GOOD.replace("model = \"llama-2-7b\"", "model = \"llama-2-7b\"\ntp = \"1\""),
        8,
        &["`cost_model.tp`", "a whole number (0 or more)"],
    );
    rejects(
        &GOOD.replace("prompt_tokens = 100", "prompt_tokens = { kind = \"uniform\", min = 1, max = \"9\" }"),
        11,
        &["`workload.classes[0].prompt_tokens.max`", "a whole number (0 or more)"],
    );
    rejects(
        &GOOD.replace("kind = \"fused\"", "kind = \"fuse\""),
        23,
        &["`topology[0].kind`", "unknown variant `fuse`"],
    );
}

#[test]
fn negative_rate() {
    rejects(
        &GOOD.replace("rate_per_s = 2.0", "rate_per_s = -2.0"),
        16,
        &["workload.arrival.rate_per_s", "from 1e-6 to 1e9"],
    );
}

#[test]
fn zero_workers() {
    rejects(&GOOD.replace("workers = 1", "workers = 0"), 24, &["topology[0].workers", "at least 1"]);
}

#[test]
fn missing_trace_file() {
    let text = GOOD
        .replace("[[workload.classes]]\nname = \"a\"\nprompt_tokens = 100\noutput_tokens = 10\n", "")
        .replace("kind = \"poisson\"\nrate_per_s = 2.0", "kind = \"trace\"\npath = \"no_such_trace.csv\"");
    rejects(&text, 12, &["workload.arrival.path", "no_such_trace.csv"]);
}

#[test]
fn empty_workload() {
    let text = GOOD.replace("[[workload.classes]]\nname = \"a\"\nprompt_tokens = 100\noutput_tokens = 10\n", "");
    rejects(&text, 10, &["workload.classes", "missing"]);
}

#[test]
fn unknown_preset_and_hardware() {
    let text = GOOD.replace(
        "kind = \"roofline\"\nhardware = \"a100-80gb\"\nmodel = \"llama-2-7b\"",
        "kind = \"preset\"\nname = \"tpu-v9\"",
    );
    rejects(&text, 6, &["unknown cost-model preset `tpu-v9`", "distserve-a100-opt-13b"]);
    rejects(&GOOD.replace("a100-80gb", "b200"), 6, &["unknown hardware `b200`", "h100-sxm"]);
}

#[test]
fn missing_coefficient_is_an_error_not_a_zero() {
    let text = GOOD.replace(
        "kind = \"roofline\"\nhardware = \"a100-80gb\"\nmodel = \"llama-2-7b\"",
        "kind = \"coefficients\"\nmodel = \"llama-2-7b\"\nprefill = { base_ms = 1, per_token_ms = 0.1 }\ndecode = { base_ms = 1, per_ctx_token_ms = 0, per_seq_ms = 0 }",
    );
    let text = text.replace("[slo]", "[batching]\nkv_capacity_tokens = 10000\n\n[slo]");
    rejects(&text, 7, &["cost_model.prefill.per_token_sq_ms", "missing coefficient"]);
}

#[test]
fn other_bad_values() {
    rejects(
        &GOOD.replace("prompt_tokens = 100", "prompt_tokens = { kind = \"uniform\", min = 9, max = 3 }"),
        11,
        &["prompt_tokens", "greater than"],
    );
    rejects(&GOOD.replace("tpot_ms = 10", "tpot_ms = 10\nattainment = 90"), 21, &["slo.attainment"]);
    rejects(&GOOD.replace("model = \"llama-2-7b\"", "model = \"llama-3-70b\""), 4, &["do not fit", "raise tp"]);
    rejects(&GOOD.replace("kind = \"fused\"", "kind = \"fused\"\npolicy = \"chunked\""), 22, &["chunk_tokens"]);
    rejects(&GOOD.replace("seed = 1", "seed = 1\nmode = \"warp\""), 2, &["mode", "simulate"]);
    rejects("this is not toml", 1, &["bad.toml"]);
    // toml's own errors without a key still name the key of the line.
    rejects(&GOOD.replace("requests = 10", "requests = 18446744073709551615"), 2, &["`requests`", "too large"]);
    // Out of range: the value as written short, not three hundred digits.
    let (_, err, _) = validate(&GOOD.replace("rate_per_s = 2.0", "rate_per_s = 1e300"));
    assert!(err.contains("got 1e300") && err.len() < 200, "{err}");
}

#[test]
fn a_bad_trace_row_names_the_trace_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.csv"), "arrival_s,prompt_tokens,output_tokens\n0,10,2\n0.5,-3,2\n").unwrap();
    let text = GOOD
        .replace("[[workload.classes]]\nname = \"a\"\nprompt_tokens = 100\noutput_tokens = 10\n", "")
        .replace("kind = \"poisson\"\nrate_per_s = 2.0", "kind = \"trace\"\npath = \"t.csv\"");
    let path = dir.path().join("s.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pdsim")).arg("validate").arg(&path).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("t.csv:3:") && err.contains("prompt_tokens"), "{err}");
}

/// A profile that is missing is one to make; a file that is no profile is the user's own, and
/// no advice to overwrite it with a calibration is given.
#[test]
fn compare_says_make_a_profile_only_when_there_is_none() {
    let compare = |profile: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_pdsim"))
            .args(["compare", "scenarios/light_light.toml", "--profile", profile])
            .current_dir(crate::common::repo())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8(out.stderr).unwrap()
    };
    let err = compare("scenarios/sim/light_light.toml");
    assert!(!err.contains("pdsim calibrate --out"), "{err}");
    let err = compare("no/such/profile.toml");
    assert!(err.contains("make one with: pdsim calibrate --out no/such/profile.toml"), "{err}");
}

#[test]
fn missing_scenario_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_pdsim")).arg("no/such/file.toml").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read scenario no/such/file.toml"));
}

#[test]
fn compare_repeat_zero_is_bad_input_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pdsim"))
        .args(["compare", "scenarios/light_light.toml", "--repeat", "0", "--out"])
        .arg(d.path())
        .current_dir(crate::common::repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--repeat must be at least 1"));
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "nothing written");
}

#[test]
fn compare_max_stolen_must_be_a_percentage_and_writes_nothing_otherwise() {
    let d = tempfile::tempdir().unwrap();
    for pct in ["0", "150", "-3"] {
        let out = Command::new(env!("CARGO_BIN_EXE_pdsim"))
            .args(["compare", "scenarios/light_light.toml", &format!("--max-stolen={pct}"), "--out"])
            .arg(d.path())
            .current_dir(crate::common::repo())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{pct}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--max-stolen must be a percentage above 0 and at most 100"), "{pct}: {err}");
    }
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "nothing written");
}

#[test]
fn compare_executed_needs_an_earlier_comparison_of_the_same_scenario() {
    let (earlier, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let compare = || {
        Command::new(env!("CARGO_BIN_EXE_pdsim"))
            .args(["compare", "scenarios/light_light.toml", "--executed"])
            .arg(earlier.path())
            .arg("--out")
            .arg(d.path())
            .current_dir(crate::common::repo())
            .output()
            .unwrap()
    };
    // An empty folder: no executed runs.
    let out = compare();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fused/requests.csv is missing") && err.contains("earlier `pdsim compare`"), "{err}");
    // Runs of another scenario.
    for topology in ["fused", "split"] {
        let dir = earlier.path().join(topology);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["requests.csv", "trace.csv", "iterations.csv"] {
            std::fs::write(dir.join(f), "x\n").unwrap();
        }
        std::fs::write(dir.join("summary.csv"), format!("scenario,topology\nheavy_heavy,{topology}\n")).unwrap();
    }
    let out = compare();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds runs of scenario `heavy_heavy`, not `light_light`"), "{err}");
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "nothing written");
}

/// The corpus in tests/data/malformed: each scenario (some naming a malformed trace beside it)
/// fails validation with one error line at the file, line and column listed in EXPECTED.tsv,
/// exit code 2, no panic.
#[test]
fn malformed_corpus_gives_located_errors() {
    let dir = crate::common::repo().join("tests/data/malformed");
    let expected = std::fs::read_to_string(dir.join("EXPECTED.tsv")).unwrap();
    let mut listed = Vec::new();
    for row in expected.lines().filter(|l| !l.starts_with('#')) {
        let [file, at, start]: [&str; 3] = row.splitn(3, '\t').collect::<Vec<_>>().try_into().unwrap();
        let out =
            Command::new(env!("CARGO_BIN_EXE_pdsim")).arg("validate").arg(file).current_dir(&dir).output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert_eq!(err.lines().count(), 1, "{file}: one error line: {err}");
        let want = format!("error: {file}:{at}: {start}");
        assert!(err.starts_with(&want), "{file}:\n got: {err} want: {want}");
        listed.push(file.to_owned());
    }
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".toml"))
        .collect();
    files.sort();
    listed.sort();
    assert_eq!(files, listed, "every malformed scenario has its expected error");
}

/// A setting the run will not use is accepted (the file may serve the other mode too) and
/// named, with why: no setting is ignored silently.
#[test]
fn settings_a_run_does_not_use_are_noted() {
    let (code, err, path) = validate(&GOOD.replace("workers = 1", "workers = 1\nthreads = 2"));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("note: {path}: topology `fused`: CPU threads are not used in simulate mode")),
        "{err}"
    );
    let execute = format!(
        "{}\n[model]\ntop_p = 0.5\ndtype = \"f16\"\n",
        GOOD.replace("seed = 1", "seed = 1\nmode = \"execute\"")
    );
    let (code, err, _) = validate(&execute);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("model.top_p is not used") && err.contains("model.dtype is not used"), "{err}");
    let (_, err, _) = validate(GOOD);
    assert!(!err.contains("note:"), "{err}");
}
