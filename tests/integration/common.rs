//! Helpers: build scenarios from text, run one topology, read the CSVs back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pdsim::metrics::summary::Summary;
use pdsim::run::{prepare, run_topology, topology_dir};
use pdsim::scenario::{self, Scenario};

pub fn scenario(text: &str) -> Scenario {
    scenario::parse(Path::new("test.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

pub fn shipped(name: &str) -> Scenario {
    scenario::load(&repo().join("scenarios").join(name)).unwrap_or_else(|e| panic!("{e}"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One CSV row by column name.
#[derive(Debug, Clone)]
pub struct Row(pub HashMap<String, String>);

impl Row {
    pub fn s(&self, col: &str) -> &str {
        self.0.get(col).unwrap_or_else(|| panic!("no column {col}"))
    }
    pub fn f(&self, col: &str) -> f64 {
        self.s(col).parse().unwrap_or_else(|_| panic!("{col} = {:?} is not a number", self.s(col)))
    }
}

pub fn read_csv(path: &Path) -> Vec<Row> {
    let mut rd = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = rd.headers().unwrap().clone();
    rd.records()
        .map(|r| Row(headers.iter().zip(r.unwrap().iter()).map(|(h, v)| (h.to_owned(), v.to_owned())).collect()))
        .collect()
}

/// The result of one topology: summary, request rows sorted by id, iteration rows.
pub struct Ran {
    pub summary: Summary,
    pub requests: Vec<Row>,
    pub iterations: Vec<Row>,
    dir: tempfile::TempDir,
    scenario: String,
}

impl Ran {
    /// The folder of the topology's files.
    pub fn dir(&self, topology: &str) -> PathBuf {
        self.dir.path().join(&self.scenario).join(topology)
    }
}

pub fn run(s: &Scenario, topology: &str) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let mut s = s.clone();
    let backend = prepare(&mut s).unwrap_or_else(|e| panic!("{e}"));
    let s = &s;
    let t = s.topologies.iter().find(|t| t.name == topology).unwrap_or_else(|| panic!("no topology {topology}"));
    let run_dir = dir.path().join(&s.name);
    let summary = run_topology(s, &backend, t, &run_dir, false).unwrap_or_else(|e| panic!("{e}"));
    let out = topology_dir(&run_dir, t);
    let mut requests = read_csv(&out.join("requests.csv"));
    requests.sort_by_key(|r| r.f("request_id") as u64);
    let iterations = read_csv(&out.join("iterations.csv"));
    Ran { summary, requests, iterations, dir, scenario: s.name.clone() }
}

/// Asserts two millisecond figures agree to within a nanosecond-scale rounding.
#[track_caller]
pub fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
}

/// A one-thread calibration profile written to `dir/name`: prefill = 10 + 1·L ms, decode = 5 ms
/// a step whatever its shape, no wake-up; `tables` adds more of the fit (`[fit.co_run]`,
/// `[fit.noise]`).
pub fn one_thread_profile(dir: &Path, name: &str, tables: &str) -> PathBuf {
    let text = format!(
        r#"model = "m"
weights = "mixed"
machine = "test"
kv_bytes_per_token = 1000
handoff_us = 0.0
[[fit]]
threads = 1
[fit.prefill]
base_ms = 10.0
per_token_ms = 1.0
per_token_sq_ms = 0.0
[fit.decode_single]
base_ms = 5.0
per_ctx_token_ms = 0.0
per_seq_ms = 0.0
[fit.decode]
base_ms = 5.0
per_ctx_token_ms = 0.0
per_seq_ms = 0.0
{tables}
[fit.quality]
prefill_r2 = 1.0
prefill_max_residual_ms = 0.0
prefill_points = 3
decode_single_r2 = 1.0
decode_single_max_residual_ms = 0.0
decode_single_points = 2
decode_r2 = 1.0
decode_max_residual_ms = 0.0
decode_points = 3
"#
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
