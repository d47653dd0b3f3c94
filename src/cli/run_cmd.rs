//! `pdsim SCENARIO` and `pdsim validate`: running and checking scenarios.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use super::EXIT_BAD_INPUT;
use crate::metrics::sink::CsvFile;
use crate::metrics::summary::Summary;
use crate::report::comparison_table;
use crate::run::{prepare, run_topology};
use crate::scenario::{self, Mode, Scenario};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Scenario file (TOML), e.g. scenarios/heavy_light.toml.
    pub scenario: Option<PathBuf>,
    /// Write results under DIR instead of the scenario's `output_dir`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the summaries as JSON on stdout (progress and notes go to stderr).
    #[arg(long)]
    json: bool,
    /// Override the scenario's request count (or duration) with N requests.
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Run only the named topology (repeatable).
    #[arg(long = "only", value_name = "TOPOLOGY")]
    only: Vec<String>,
}

pub fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        match scenario::load(f) {
            Ok(s) => println!(
                "{}: ok ({} topologies: {})",
                f.display(),
                s.topologies.len(),
                s.topologies.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BAD_INPUT)
    }
}

pub fn run(args: RunArgs) -> ExitCode {
    let Some(path) = args.scenario else {
        eprintln!("error: no scenario given; usage: pdsim run SCENARIO.toml [--out DIR] [--json]");
        return ExitCode::from(EXIT_BAD_INPUT);
    };
    let mut scenario = match scenario::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    if !args.only.is_empty() {
        if let Some(bad) = args.only.iter().find(|n| !scenario.topologies.iter().any(|t| &t.name == *n)) {
            let known: Vec<&str> = scenario.topologies.iter().map(|t| t.name.as_str()).collect();
            eprintln!("error: --only {bad}: no such topology in {}; it has {}", path.display(), known.join(", "));
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        scenario.topologies.retain(|t| args.only.contains(&t.name));
    }
    if let Some(n) = args.requests {
        if n == 0 {
            eprintln!("error: --requests must be at least 1");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        scenario.workload.stop = crate::workload::StopAfter::Requests(n);
    }
    let out_root = args.out.clone().unwrap_or_else(|| scenario.output_dir.clone());
    match run_all(&mut scenario, &out_root, args.json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_all(scenario: &mut Scenario, out_root: &std::path::Path, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let progress = std::io::stderr().is_terminal();
    let backend = prepare(scenario)?;
    let scenario = &*scenario;
    let requests = scenario.workload.expected_requests().map_or("a duration of".to_owned(), |n| n.to_string());
    eprintln!(
        "pdsim: scenario `{}` ({} mode), {requests} requests, seed {}, {}",
        scenario.name,
        scenario.mode.name(),
        scenario.seed,
        backend.describe()
    );
    let mut summaries: Vec<Summary> = Vec::new();
    for t in &scenario.topologies {
        let started = Instant::now();
        let s = run_topology(scenario, &backend, t, out_root, progress)?;
        let wall = started.elapsed().as_secs_f64();
        let verb = if scenario.mode == Mode::Simulate { "simulated" } else { "served" };
        eprintln!(
            "  {:<16} {} requests {verb} in {:.2} s wall ({:.1} req/s), makespan {:.1} s",
            t.name,
            s.completed,
            wall,
            s.completed as f64 / wall.max(1e-9),
            s.makespan_ns as f64 / 1e9
        );
        summaries.push(s);
    }
    let dir = out_root.join(&scenario.name);
    let mut all = CsvFile::create(&dir.join("summary.csv"), &Summary::csv_header())?;
    for s in &summaries {
        all.line(&s.csv_row())?;
    }
    all.finish()?;
    if json {
        let doc = serde_json::json!({ "scenario": scenario.name, "topologies": summaries });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!();
        print!("{}", comparison_table(&summaries));
        println!();
        println!(
            "results: {}/<topology>/{{requests,iterations,summary}}.csv and {}/summary.csv",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}
