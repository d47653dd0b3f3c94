//! Fuzzing the scenario parser and validator and the trace readers: proptest generates edits
//! of valid inputs (the shipped scenarios, a trace-driven scenario, CSV and Mooncake traces);
//! every edited input must give either a result or one located error (`file:line:column: …`),
//! never a panic. Scenarios that still validate are run in simulate mode, capped at 30
//! requests, under a 30 s watchdog, so a hang fails too.
//!
//! Each test runs for `PDSIM_FUZZ_SECONDS` (default 15) from `PDSIM_FUZZ_SEED` (default 1);
//! `scripts/fuzz.sh` runs both for 10 minutes from a fresh seed. A failure is shrunk to a
//! smallest failing input and printed with the seed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use pdsim::run::{prepare, run_topology};
use pdsim::scenario::{self, Mode};
use pdsim::workload::trace::{read_trace, TraceFormat};
use pdsim::workload::StopAfter;

use crate::common::repo;

/// Tokens that break TOML, CSV and JSON in interesting ways, and values at the edges.
const SNIPPETS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    "\n",
    "#",
    ".",
    "-",
    "\\",
    "\u{0}",
    "é",
    "\r\n",
    "-1",
    "0",
    "1",
    "0.0",
    "-0.0",
    "1e308",
    "-1e308",
    "1e-308",
    "nan",
    "inf",
    "-inf",
    "18446744073709551615",
    "9223372036854775807",
    "4294967296",
    "\"x\"",
    "true",
    "[]",
    "{}",
    "[[topology]]\nkind = \"split\"\nprefill_workers = 1\ndecode_workers = 1\n",
    "[[topology.faults]]\nworker = \"decode-0\"\nat_s = 0\nkind = \"crash\"\n",
    "[[topology.faults]]\nworker = \"fused-0\"\nat_s = 0.001\nkind = \"panic\"\n",
    "[batching]\nmax_queued_requests = 1\n",
    "max_retries = 0\n",
    "kv_capacity_tokens = 1\n",
    "{ kind = \"lognormal\", mean = 1, std = 1e9 }",
    "{ kind = \"empirical\", values = [1, 2], weights = [0, 0] }",
    "{\"timestamp\": 1e300, \"input_length\": 1, \"output_length\": 1}",
];

#[derive(Debug, Clone)]
enum Edit {
    /// Replace bytes [at, at+len) with a snippet (len 0 inserts).
    Splice {
        at: usize,
        len: usize,
        snippet: usize,
    },
    /// Replace the k-th number in the text with a snippet.
    Number {
        k: usize,
        snippet: usize,
    },
    /// Delete, duplicate, or swap lines.
    DropLine(usize),
    DupLine(usize),
    SwapLines(usize, usize),
    /// Replace the k-th `key =` with the j-th key of the text (type confusion).
    SwapKey {
        k: usize,
        j: usize,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    let s = 0..SNIPPETS.len();
    prop_oneof![
        (any::<usize>(), 0usize..8, s.clone()).prop_map(|(at, len, snippet)| Edit::Splice { at, len, snippet }),
        (any::<usize>(), s).prop_map(|(k, snippet)| Edit::Number { k, snippet }),
        any::<usize>().prop_map(Edit::DropLine),
        any::<usize>().prop_map(Edit::DupLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(k, j)| Edit::SwapKey { k, j }),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut t = text.to_owned();
    for e in edits {
        t = match *e {
            Edit::Splice { at, len, snippet } => {
                let b = t.as_bytes();
                let at = if b.is_empty() { 0 } else { at % (b.len() + 1) };
                let end = (at + len).min(b.len());
                let mut out = b[..at].to_vec();
                out.extend_from_slice(SNIPPETS[snippet].as_bytes());
                out.extend_from_slice(&b[end..]);
                String::from_utf8_lossy(&out).into_owned()
            }
            Edit::Number { k, snippet } => {
                let spans = spans(&t, |c| c.is_ascii_digit() || c == '.');
                match spans.get(k % spans.len().max(1)) {
                    Some(&(a, b)) => format!("{}{}{}", &t[..a], SNIPPETS[snippet], &t[b..]),
                    None => t,
                }
            }
            Edit::DropLine(k) | Edit::DupLine(k) => {
                let mut lines: Vec<&str> = t.lines().collect();
                if !lines.is_empty() {
                    let i = k % lines.len();
                    if matches!(e, Edit::DropLine(_)) {
                        lines.remove(i);
                    } else {
                        lines.insert(i, lines[i]);
                    }
                }
                lines.join("\n")
            }
            Edit::SwapLines(a, b) => {
                let mut lines: Vec<&str> = t.lines().collect();
                if !lines.is_empty() {
                    let n = lines.len();
                    lines.swap(a % n, b % n);
                }
                lines.join("\n")
            }
            Edit::SwapKey { k, j } => {
                // Offsets from the raw lines (terminators included: "\r\n" is two bytes).
                let keys: Vec<(usize, usize)> = t
                    .split_inclusive('\n')
                    .scan(0usize, |off, l| {
                        let start = *off;
                        *off += l.len();
                        Some((start, l))
                    })
                    .filter_map(|(start, l)| {
                        let (k, _) = l.split_once('=')?;
                        let k = k.trim_end();
                        (!k.is_empty() && !k.contains(['"', '[', '{'])).then_some((start, start + k.len()))
                    })
                    .collect();
                if keys.is_empty() {
                    t
                } else {
                    let (a, b) = keys[k % keys.len()];
                    let (c, d) = keys[j % keys.len()];
                    let other = t[c..d].trim().to_owned();
                    format!("{}{}{}", &t[..a], other, &t[b..])
                }
            }
        };
    }
    t
}

/// Byte spans of maximal runs of characters matching `f`.
fn spans(t: &str, f: impl Fn(char) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in t.char_indices().chain([(t.len(), ' ')]) {
        match (f(c) && i < t.len(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// `PATH:LINE:COLUMN: ` with numbers ≥ 1, at the start of the message.
fn is_located(msg: &str, path: &Path) -> bool {
    let Some(rest) = msg.strip_prefix(&format!("{}:", path.display())) else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let num = |p: Option<&str>| p.and_then(|x| x.parse::<u64>().ok()).is_some_and(|n| n >= 1);
    num(parts.next()) && num(parts.next()) && parts.next().is_some_and(|m| m.starts_with(' ') && m.len() > 2)
}

/// Runs `f` on another thread; a panic or a run over `limit` is an error.
fn watched<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(p)) => Err(format!(
            "panicked: {}",
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        )),
        Err(_) => Err(format!("no answer within {limit:?} (a hang)")),
    }
}

/// Edited scenarios that were still valid and ran, and those rejected with a located error.
static RAN: AtomicU64 = AtomicU64::new(0);
static REJECTED: AtomicU64 = AtomicU64::new(0);

/// Parses `text` as `dir/fuzz.toml`; a valid simulate-mode scenario is also run.
fn check_scenario(dir: &Path, text: &str) -> Result<(), String> {
    let path = dir.join("fuzz.toml");
    let out = dir.join("out");
    let text = text.to_owned();
    let p = path.clone();
    watched(Duration::from_secs(30), move || -> Result<(), String> {
        match scenario::parse(&p, &text) {
            Err(e) if is_located(&e.to_string(), &p) => {
                REJECTED.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(format!("an error that does not name file, line and column: {e}")),
            Ok(mut s) if s.mode == Mode::Simulate => {
                RAN.fetch_add(1, Ordering::Relaxed);
                s.workload.stop = match s.workload.stop {
                    StopAfter::Requests(n) => StopAfter::Requests(n.min(30)),
                    _ => StopAfter::Requests(30),
                };
                let backend = prepare(&mut s).map_err(|e| format!("prepare: {e}"))?;
                for t in &s.topologies {
                    // A run may fail cleanly (e.g. a results folder); it must not panic or hang.
                    let _ = run_topology(&s, &backend, t, &out, false);
                }
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    })?
}

fn check_trace(dir: &Path, text: &str, format: TraceFormat) -> Result<(), String> {
    let path = dir.join(if format == TraceFormat::Csv { "fuzz.csv" } else { "fuzz.jsonl" });
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    let p = path.clone();
    watched(Duration::from_secs(10), move || match read_trace(&p, format, 1.0) {
        Ok(_) => Ok(()),
        Err(e) if is_located(&e.to_string(), &p) || e.to_string().contains("holds no requests") => Ok(()),
        Err(e) => Err(format!("an error that does not name file, line and column: {e}")),
    })?
}

fn settings() -> (Duration, u64) {
    let var = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    (Duration::from_secs(var("PDSIM_FUZZ_SECONDS", 15)), var("PDSIM_FUZZ_SEED", 1))
}

/// Generates cases from `seeds × edits` until the time is up; shrinks and reports a failure.
fn fuzz(name: &str, seeds: &[String], check: impl Fn(&str) -> Result<(), String>) {
    let (budget, seed) = settings();
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &key));
    let strategy = (0..seeds.len(), proptest::collection::vec(edit(), 1..6));
    let input = |(i, edits): &(usize, Vec<Edit>)| apply(&seeds[*i], edits);
    let deadline = Instant::now() + budget;
    let mut cases = 0u64;
    while Instant::now() < deadline {
        let mut tree = strategy.new_tree(&mut runner).expect("a case");
        if let Err(first) = check(&input(&tree.current())) {
            // proptest's shrinking: simplify while the case fails, complicate when it passes.
            let (mut why, mut failing) = (first, true);
            loop {
                let moved = if failing { tree.simplify() } else { tree.complicate() };
                if !moved {
                    break;
                }
                match check(&input(&tree.current())) {
                    Err(w) => (why, failing) = (w, true),
                    Ok(()) => failing = false,
                }
            }
            panic!(
                "{name} fuzz (PDSIM_FUZZ_SEED={seed}, case {cases}): {why}\n--- input ---\n{}\n-------------",
                input(&tree.current())
            );
        }
        cases += 1;
    }
    eprintln!("{name} fuzz: {cases} cases in {budget:?} (seed {seed}), no panic, every error located");
}

fn shipped_texts() -> Vec<String> {
    let mut files: Vec<PathBuf> = Vec::new();
    for d in ["scenarios", "scenarios/sim"] {
        for e in std::fs::read_dir(repo().join(d)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                files.push(p);
            }
        }
    }
    files.sort();
    files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

const CSV_TRACE: &str = "arrival_s,prompt_tokens,output_tokens,class\n0,100,10,chat\n0.5,2000,20,rag\n1.25,50,300,\n";
const MOONCAKE_TRACE: &str = "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 10}\n\
    {\"timestamp\": 500, \"input_length\": 2000, \"output_length\": 20, \"hash_ids\": [1, 2]}\n";

#[test]
fn fuzz_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trace.csv"), CSV_TRACE).unwrap();
    let mut seeds = shipped_texts();
    seeds.push(
        "mode = \"simulate\"\n[cost_model]\nkind = \"preset\"\nname = \"distserve-a100-opt-13b\"\n\
         [workload.arrival]\nkind = \"trace\"\npath = \"trace.csv\"\nspeedup = 2\n[slo]\nttft_ms = 100\ntpot_ms = 10\n\
         [batching]\nkv_capacity_tokens = 4096\n[[topology]]\nkind = \"split\"\nprefill_workers = 1\ndecode_workers = 1\n\
         [[topology.faults]]\nworker = \"decode-0\"\nat_s = 0.5\nkind = \"crash\"\ndown_s = 1\n"
            .into(),
    );
    // Every seed is itself valid: the edits, not the seeds, make the bad inputs.
    for s in &seeds {
        scenario::parse(&dir.path().join("fuzz.toml"), s).unwrap_or_else(|e| panic!("seed scenario: {e}"));
    }
    fuzz("scenario", &seeds, |t| check_scenario(dir.path(), t));
    let (ran, rejected) = (RAN.load(Ordering::Relaxed), REJECTED.load(Ordering::Relaxed));
    eprintln!(
        "scenario fuzz: {ran} edited scenarios still valid and simulated, {rejected} rejected with a located error"
    );
    assert!(ran > 10 && rejected > 10, "the edits should give both valid and invalid scenarios");
}

#[test]
fn fuzz_traces() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = [CSV_TRACE.to_owned(), MOONCAKE_TRACE.to_owned()];
    fuzz("trace", &seeds, |t| {
        check_trace(dir.path(), t, TraceFormat::Csv)?;
        check_trace(dir.path(), t, TraceFormat::Mooncake)
    });
}
