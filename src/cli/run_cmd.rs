//! `pdsim SCENARIO` and `pdsim validate`: running and checking scenarios.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use super::EXIT_BAD_INPUT;
use crate::engine::candle::device::CUDA_BUILT;
use crate::metrics::outcome::DropReason;
use crate::metrics::sink::CsvFile;
use crate::metrics::summary::Summary;
use crate::report::{comparison_rows, comparison_table};
use crate::run::output::{mark_latest, OutputError};
use crate::run::{prepare, run_topology, RunError};
use crate::scenario::{self, Mode, Scenario};
use crate::workload::StopAfter;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Scenario file (TOML), e.g. scenarios/heavy_light.toml.
    pub scenario: Option<PathBuf>,
    #[command(flatten)]
    folder: super::RunFolder,
    /// Print the summaries as JSON on stdout (progress and notes go to stderr).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    narrow: super::Narrow,
}

pub fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        match scenario::load_for(f, scenario::Build::Any) {
            Ok(s) => {
                let cuda = s.topologies.iter().any(|t| t.devices.any_cuda());
                let n = s.topologies.len();
                println!(
                    "{}: ok ({n} {}: {}){}",
                    f.display(),
                    if n == 1 { "topology" } else { "topologies" },
                    s.topologies.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "),
                    if cuda && !CUDA_BUILT { "; it runs on a CUDA build only (scripts/cuda-build.sh)" } else { "" }
                );
                super::print_notes(&s)
            }
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
    if let Err(e) = args.narrow.apply(&mut scenario, &path) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    super::print_notes(&scenario);
    let run_dir = match args.folder.create(&scenario, &scenario.name) {
        Ok(d) => d,
        Err(e @ (OutputError::Exists(_) | OutputError::BadName(_) | OutputError::Reserved(_))) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = run_all(&mut scenario, &run_dir, args.json);
    if result.is_err() {
        // A run that failed before writing anything leaves no empty folder (remove_dir only
        // removes an empty one).
        let _ = std::fs::remove_dir(&run_dir);
        if let Some(parent) = run_dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if matches!(e.downcast_ref::<RunError>(), Some(RunError::Unfit(_))) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `; 12 rejected (queue_full 12), 1 failed (worker_failed 1), 2 worker failures`, or nothing.
fn not_served(s: &Summary) -> String {
    let mut parts = Vec::new();
    let reasons = |rejection: bool| {
        s.dropped
            .iter()
            .filter(|(code, _)| DropReason::from_code(code).is_some_and(DropReason::is_rejection) == rejection)
            .map(|(code, n)| format!("{code} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if s.rejected > 0 {
        parts.push(format!("{} rejected ({})", s.rejected, reasons(true)));
    }
    if s.failed > 0 {
        parts.push(format!("{} failed ({})", s.failed, reasons(false)));
    }
    if s.worker_failures > 0 {
        let n = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        parts.push(format!(
            "{}, {} (see events.csv)",
            n(s.worker_failures, "worker failure", "worker failures"),
            n(s.retries, "retry", "retries")
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join("; "))
    }
}

fn run_all(scenario: &mut Scenario, run_dir: &std::path::Path, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let progress = std::io::stderr().is_terminal();
    let backend = prepare(scenario)?;
    let scenario = &*scenario;
    let requests = match (scenario.workload.expected_requests(), &scenario.workload.stop) {
        (Some(n), _) => format!("{n} request{}", if n == 1 { "" } else { "s" }),
        (None, StopAfter::DurationNs(d)) => format!("arrivals for {} s", *d as f64 / 1e9),
        (None, _) => "every request".to_owned(),
    };
    eprintln!(
        "pdsim: scenario `{}` ({} mode), {requests}, seed {}, {}",
        scenario.name,
        scenario.mode.name(),
        scenario.seed,
        backend.describe()
    );
    let mut summaries: Vec<Summary> = Vec::new();
    for t in &scenario.topologies {
        let started = Instant::now();
        let s = run_topology(scenario, &backend, t, run_dir, progress)?;
        let wall = started.elapsed().as_secs_f64();
        let verb = if scenario.mode == Mode::Simulate { "simulated" } else { "served" };
        eprintln!(
            "  {:<16} {} of {} requests {verb} in {:.2} s wall ({:.1} req/s), makespan {:.1} s{}",
            t.name,
            s.completed,
            s.arrived,
            wall,
            s.arrived as f64 / wall.max(1e-9),
            s.makespan_ns as f64 / 1e9,
            not_served(&s)
        );
        // A fault at 40 s in a run of a few requests never comes; say so rather than pass it over.
        let faults = t.faults.len() as u64;
        if s.worker_failures < faults {
            eprintln!(
                "  note: {} of the {faults} faults set for {} did not happen: the run ended before them, or their worker was already down",
                faults - s.worker_failures,
                t.name
            );
        }
        summaries.push(s);
    }
    let mut all = CsvFile::create(&run_dir.join("summary.csv"), &Summary::csv_header())?;
    for s in &summaries {
        all.line(&s.csv_row())?;
    }
    all.finish()?;
    crate::report::run_report::write(run_dir, &scenario.name, &summaries, &comparison_rows(&summaries))?;
    mark_latest(run_dir);
    if json {
        let doc = serde_json::json!({
            "scenario": scenario.name,
            "results_dir": run_dir,
            "topologies": summaries,
            "peak_rss_mb": crate::bench::peak_rss_mb(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!();
        print!("{}", comparison_table(&summaries));
        println!();
        println!(
            "results: {}/ (index.html: table and plots; <topology>/requests.csv, iterations.csv, summary.csv, timeline.svg; {} links to the newest run)",
            run_dir.display(),
            run_dir.with_file_name("latest").display()
        );
    }
    Ok(())
}
