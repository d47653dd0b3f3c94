//! `pdsim compare`: execute a scenario, simulate it with a calibration profile, and show per
//! request and per percentile how far the simulation is from what ran.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::compare::{simulate_and_compare, TopologyComparison};
use crate::metrics::sink::CsvFile;
use crate::run::output::{mark_latest, new_run_dir};
use crate::run::{prepare, run_topology};
use crate::scenario::{self, Mode};

#[derive(clap::Args)]
pub struct CompareArgs {
    /// An execute-mode scenario.
    scenario: PathBuf,
    /// The calibration profile (from pdsim calibrate) the simulation uses.
    #[arg(long, default_value = "profiles/calibrated.toml")]
    profile: PathBuf,
    #[command(flatten)]
    narrow: super::Narrow,
    /// Write under DIR instead of the scenario's output_dir.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the comparison as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// The goals: simulation within 5% of execution at p50 and 10% at p90.
const GOAL_P50: f64 = 0.05;
const GOAL_P90: f64 = 0.10;

pub fn run(args: CompareArgs) -> ExitCode {
    let bad = super::bad_input;
    let mut sc = match scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => return bad(e.to_string()),
    };
    if sc.mode != Mode::Execute {
        return bad(format!("{}: compare executes the scenario; use an execute-mode one", args.scenario.display()));
    }
    let profile = match scenario::load_profile(&args.profile) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            return bad(format!("{e}\n(make one with: pdsim calibrate --out {})", args.profile.display()));
        }
    };
    if let Err(e) = args.narrow.apply(&mut sc, &args.scenario) {
        return bad(e);
    }
    for t in &sc.topologies {
        for n in [t.threads.prefill, t.threads.decode] {
            if let Err(e) = profile.for_threads(n) {
                return bad(format!("topology `{}`: {e}", t.name));
            }
        }
    }
    let backend = match prepare(&mut sc) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out_root = args.out.clone().unwrap_or_else(|| sc.output_dir.clone());
    let dir = match new_run_dir(&out_root, &format!("{}/compare", sc.name), None, false) {
        Ok(d) => d,
        Err(e) => return bad(e.to_string()),
    };
    eprintln!("pdsim compare: `{}` executed ({}) and simulated ({})", sc.name, backend.describe(), profile.describe());
    let mut results: Vec<TopologyComparison> = Vec::new();
    for t in &sc.topologies {
        eprintln!("  {}: executing...", t.name);
        let run = || -> Result<TopologyComparison, Box<dyn std::error::Error>> {
            run_topology(&sc, &backend, t, &dir, std::io::IsTerminal::is_terminal(&std::io::stderr()))?;
            eprintln!("  {}: simulating the same requests...", t.name);
            simulate_and_compare(&sc, t, &profile, &dir)
        };
        match run() {
            Ok(c) => results.push(c),
            Err(e) => {
                eprintln!("error: topology `{}`: {e}", t.name);
                return ExitCode::FAILURE;
            }
        }
    }
    let write = || -> std::io::Result<()> {
        let mut f =
            CsvFile::create(&dir.join("comparison.csv"), "topology,metric,executed_ms,simulated_ms,relative_error")?;
        for c in &results {
            for p in c.percentiles.iter().chain(&c.phases) {
                f.line(&format!(
                    "{},{},{:.3},{:.3},{:.4}",
                    c.topology, p.metric, p.executed, p.simulated, p.relative_error
                ))?;
            }
            for p in &c.paced {
                f.line(&format!(
                    "{},{} at the run's pace,{:.3},{:.3},{:.4}",
                    c.topology, p.metric, p.executed, p.simulated, p.relative_error
                ))?;
            }
        }
        f.finish().map(|_| ())
    };
    if let Err(e) = write() {
        eprintln!("error: cannot write {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    mark_latest(&dir);
    if args.json {
        println!("{}", serde_json::json!({ "scenario": sc.name, "profile": args.profile, "topologies": results }));
        return ExitCode::SUCCESS;
    }
    for c in &results {
        println!("\n{} ({} requests)                executed    simulated    error", c.topology, c.requests);
        for p in &c.percentiles {
            let goal = if p.metric.ends_with("p50") { GOAL_P50 } else { GOAL_P90 };
            let mark = if p.relative_error.abs() > goal { "  over the goal" } else { "" };
            println!(
                "  {:<22} {:>12.2} {:>12.2} {:>+7.1}%{mark}",
                p.metric,
                p.executed,
                p.simulated,
                p.relative_error * 100.0
            );
        }
        println!("  where it comes from (means, ms):");
        for p in &c.phases {
            // A relative error of a few microseconds says nothing.
            let err = if p.executed.abs().max(p.simulated.abs()) < 0.1 {
                "      -".to_owned()
            } else {
                format!("{:>+7.1}%", p.relative_error * 100.0)
            };
            println!("  {:<22} {:>12.2} {:>12.2} {err}", p.metric, p.executed, p.simulated);
        }
        let pace = |x: Option<f64>, n: usize| x.map_or("-".to_owned(), |v| format!("×{v:.2} over {n} steps"));
        println!(
            "  machine pace (executed ÷ profile, median step): prefill {}, decode {}",
            pace(c.pace.prefill, c.pace.prefill_steps),
            pace(c.pace.decode, c.pace.decode_steps)
        );
        if !c.paced.is_empty() {
            println!("  simulated at the run's pace:");
            for p in &c.paced {
                println!(
                    "  {:<22} {:>12.2} {:>12.2} {:>+7.1}%",
                    p.metric,
                    p.executed,
                    p.simulated,
                    p.relative_error * 100.0
                );
            }
        }
    }
    println!(
        "\nper request: {}/<topology>/compare.csv; summary: {}/comparison.csv (goals: p50 within {:.0}%, p90 within {:.0}%)",
        dir.display(),
        dir.display(),
        GOAL_P50 * 100.0,
        GOAL_P90 * 100.0
    );
    ExitCode::SUCCESS
}
