//! The `pdsim` command line: argument parsing and dispatch. `main.rs` only calls [`main`].

mod calibrate_cmd;
mod compare_cmd;
mod device_cmd;
mod model_cmds;
mod run_cmd;
mod search_cmd;
mod sweep_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bad input (a scenario, trace or argument the user can fix).
pub const EXIT_BAD_INPUT: u8 = 2;

/// Prints a bad-input error and returns its exit code.
fn bad_input(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_BAD_INPUT)
}

/// `--max-stolen PCT` (compare, calibrate --merge) as a share of the CPU; an error for a
/// percentage outside (0, 100].
fn max_stolen_share(pct: Option<f64>) -> Result<Option<f64>, String> {
    match pct {
        Some(pct) if !(pct > 0.0 && pct <= 100.0) => {
            Err(format!("--max-stolen must be a percentage above 0 and at most 100 (got {pct})"))
        }
        pct => Ok(pct.map(|p| p / 100.0)),
    }
}

/// `--requests` and `--only`: which part of a scenario to run.
#[derive(clap::Args)]
pub struct Narrow {
    /// Override the scenario's request count (or duration) with N requests.
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Run only the named topology (repeatable).
    #[arg(long = "only", value_name = "TOPOLOGY")]
    only: Vec<String>,
}

impl Narrow {
    /// Keeps the named topologies and overrides the request count; the error is the message
    /// for the user.
    fn apply(&self, scenario: &mut crate::scenario::Scenario, path: &std::path::Path) -> Result<(), String> {
        let only = &self.only;
        if let Some(bad) = only.iter().find(|n| !scenario.topologies.iter().any(|t| &t.name == *n)) {
            let known: Vec<&str> = scenario.topologies.iter().map(|t| t.name.as_str()).collect();
            return Err(format!("--only {bad}: no such topology in {}; it has {}", path.display(), known.join(", ")));
        }
        if !only.is_empty() {
            scenario.topologies.retain(|t| only.contains(&t.name));
        }
        match self.requests {
            Some(0) => Err("--requests must be at least 1".into()),
            Some(n) => {
                if let crate::workload::Source::Trace { rows } = &scenario.workload.source {
                    if n > rows.len() as u64 {
                        eprintln!("note: --requests {n}: the trace has {} requests; all of them run", rows.len());
                    }
                }
                scenario.workload.stop = crate::workload::StopAfter::Requests(n);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// `--out`, `--run-name`, `--force`: where a run's folder goes.
#[derive(clap::Args)]
pub struct RunFolder {
    /// Write results under DIR instead of the scenario's `output_dir`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Name this run's folder (default: its start time, UTC).
    #[arg(long, value_name = "NAME")]
    run_name: Option<String>,
    /// Replace the files of an earlier run with the same --run-name.
    #[arg(long)]
    force: bool,
}

impl RunFolder {
    /// Creates `<out or output_dir>/<sub>/<run>/` (see [`crate::run::output`]).
    fn create(
        &self,
        scenario: &crate::scenario::Scenario,
        sub: &str,
    ) -> Result<PathBuf, crate::run::output::OutputError> {
        let root = self.out.clone().unwrap_or_else(|| scenario.output_dir.clone());
        crate::run::output::new_run_dir(&root, sub, self.run_name.as_deref(), self.force)
    }
}

/// Prefill–decode disaggregation: run a scenario's topologies side by side.
#[derive(Parser)]
#[command(name = "pdsim", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: run_cmd::RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario (the same as `pdsim SCENARIO`).
    Run(run_cmd::RunArgs),
    /// SLO attainment across arrival rates (and burstiness), and goodput by bisection.
    Sweep(sweep_cmd::SweepArgs),
    /// The best fused and split placements for a GPU budget, ranked by goodput per GPU.
    Search(search_cmd::SearchArgs),
    /// Check scenario files without running them.
    Validate {
        /// Scenario files (TOML): each is checked, errors name the file, line, column and key.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the token ids of TEXT (no special tokens added; those written in TEXT count).
    Tokenize(model_cmds::TokenizeArgs),
    /// Generate text from PROMPT with the real model.
    Generate(model_cmds::GenerateArgs),
    /// Measure the real engine: prefill, decode, batched decode, actor overhead, memory.
    Bench(model_cmds::BenchArgs),
    /// Measure the tensor model on a GPU (or the CPU) against the device's rooflines.
    BenchDevice(device_cmd::BenchDeviceArgs),
    /// Fit the simulator's cost model to the real engine on this machine; writes a profile.
    Calibrate(calibrate_cmd::CalibrateArgs),
    /// Execute a scenario and simulate it with a calibration profile; compare request by request.
    Compare(compare_cmd::CompareArgs),
    /// Download the default model into models/ or $PDSIM_MODELS (done on first use anyway).
    FetchModel {
        /// Folder for the model file [default: $PDSIM_MODELS, or models/ here]. Other commands
        /// look for it in the default folder.
        #[arg(long)]
        models_dir: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    crate::engine::quiet_handled_panics();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Validate { files }) => run_cmd::validate(&files),
        Some(Command::Run(args)) => run_cmd::run(args),
        Some(Command::Sweep(args)) => sweep_cmd::sweep(args),
        Some(Command::Search(args)) => search_cmd::run(args),
        Some(Command::Tokenize(args)) => model_cmds::tokenize(args),
        Some(Command::Generate(args)) => model_cmds::generate(args),
        Some(Command::Bench(args)) => model_cmds::bench(args),
        Some(Command::BenchDevice(args)) => device_cmd::run(args),
        Some(Command::Calibrate(args)) => calibrate_cmd::run(args),
        Some(Command::Compare(args)) => compare_cmd::run(args),
        Some(Command::FetchModel { models_dir }) => {
            model_cmds::fetch(&models_dir.unwrap_or_else(crate::engine::candle::fetch::models_dir))
        }
        None if cli.run.scenario.is_some() => run_cmd::run(cli.run),
        None => {
            eprintln!("usage: pdsim SCENARIO.toml [--out DIR] [--json]   (pdsim --help for more)");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Says which of the scenario's settings this run does not use (see `Scenario::notes`).
fn print_notes(s: &crate::scenario::Scenario) {
    for n in &s.notes {
        eprintln!("note: {}: {n}", s.path.display());
    }
}
