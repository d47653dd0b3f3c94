//! `pdsim compare`: execute a scenario, simulate it with a calibration profile, and show per
//! request and per percentile how far the simulation is from what ran.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::compare::attempts::{execute_undisturbed, Attempts};
use crate::compare::{
    ratio_text, simulate_and_compare, stolen_text, Pair, RunPairs, Tally, TopologyComparison, GOAL_P50, GOAL_P90,
};
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
    /// Execute (and simulate) the same requests N times, the topologies taking turns; the
    /// figures pool all runs' requests and say how far each moved from run to run (on a shared
    /// machine, the floor below which an error cannot be judged).
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: usize,
    /// Do not execute: simulate again the executed runs of an earlier `pdsim compare` of this
    /// scenario (its folder, e.g. output/NAME/compare/latest), to judge another profile or
    /// model on the very runs the first was judged on. Given several times, the runs of every
    /// folder pool: runs from several sittings average out the machine's pace of each.
    #[arg(long, value_name = "DIR", action = clap::ArgAction::Append, conflicts_with_all = ["repeat", "requests"])]
    executed: Vec<PathBuf>,
    /// Execute a run again when the hypervisor took more than PCT percent of the machine's CPU
    /// time during it (`steal` in /proc/stat; up to 3 attempts, then the least disturbed
    /// counts). A run on a shared VM that another tenant slows is no measurement of the serving
    /// system; the disturbed attempts are kept in the run's `disturbed/` folder. With
    /// --executed: leave such earlier runs out.
    #[arg(long, value_name = "PCT")]
    max_stolen: Option<f64>,
}

pub fn run(args: CompareArgs) -> ExitCode {
    let bad = super::bad_input;
    if args.repeat == 0 {
        return bad("--repeat must be at least 1".into());
    }
    if let Err(e) = super::max_stolen_share(args.max_stolen) {
        return bad(e);
    }
    let mut sc = match scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => return bad(e.to_string()),
    };
    if sc.mode != Mode::Execute {
        return bad(format!("{}: compare executes the scenario; use an execute-mode one", args.scenario.display()));
    }
    let profile = match scenario::load_profile(&args.profile) {
        Ok(p) => Arc::new(p),
        // Only a missing profile is one to make: a file that is no profile is the user's own.
        Err(e) if !args.profile.exists() => {
            return bad(format!("{e}\n(make one with: pdsim calibrate --out {})", args.profile.display()));
        }
        Err(e) => return bad(e.to_string()),
    };
    if let Err(e) = args.narrow.apply(&mut sc, &args.scenario) {
        return bad(e);
    }
    // The executed side of `--executed` ran wherever it ran: nothing here to hold the profile to.
    if args.executed.is_empty() {
        for w in crate::calibrate::profile::origin_warnings(
            &args.profile,
            &crate::calibrate::machine(),
            &crate::calibrate::cpu(),
        ) {
            eprintln!("warning: {w}");
        }
    }
    for t in &sc.topologies {
        for n in [t.threads.prefill, t.threads.decode] {
            if let Err(e) = profile.for_threads(n) {
                return bad(format!("topology `{}`: {e}", t.name));
            }
        }
    }
    // Where the executed side comes from: this process, or earlier comparisons' folders (per
    // topology: `--max-stolen` leaves out each topology's own disturbed runs).
    let (backend, earlier, left_out) = if args.executed.is_empty() {
        match prepare(&mut sc) {
            Ok(b) => (Some(b), Vec::new(), Vec::new()),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let runs = match crate::compare::reuse::executed_runs(&args.executed, &sc.name, &sc.topologies) {
            Ok(runs) => runs,
            Err(e) => return bad(e),
        };
        let max = args.max_stolen.map(|pct| pct / 100.0);
        let (kept, left): (Vec<_>, Vec<_>) =
            sc.topologies.iter().map(|t| crate::compare::reuse::undisturbed(&runs, &t.name, max)).unzip();
        if let Some((t, _)) = sc.topologies.iter().zip(&kept).find(|(_, k)| k.is_empty()) {
            return bad(format!(
                "--max-stolen {}: every executed run of topology `{}` lost more than that to the hypervisor; \
                 raise the bound, name other runs, or leave the topology out with --only",
                args.max_stolen.unwrap_or_default(),
                t.name
            ));
        }
        (None, kept, left)
    };
    let repeat = earlier.iter().map(Vec::len).max().unwrap_or(args.repeat);
    let out_root = args.out.clone().unwrap_or_else(|| sc.output_dir.clone());
    let dir = match new_run_dir(&out_root, &format!("{}/compare", sc.name), None, false) {
        Ok(d) => d,
        Err(e) => return bad(e.to_string()),
    };
    let executed = match &backend {
        Some(b) => b.describe(),
        None => {
            let dirs: Vec<String> = args.executed.iter().map(|d| d.display().to_string()).collect();
            let counts: Vec<String> =
                sc.topologies.iter().zip(&earlier).map(|(t, r)| format!("{} {}", r.len(), t.name)).collect();
            format!("earlier, runs from {} ({})", dirs.join(", "), counts.join(", "))
        }
    };
    eprintln!("pdsim compare: `{}` executed ({executed}) and simulated ({})", sc.name, profile.describe());
    let draws = match profile.noise() {
        Some(_) => format!(" in {} draws of the machine's noise", crate::compare::NOISE_DRAWS),
        None => String::new(),
    };
    let mut runs: Vec<Vec<RunPairs>> = sc.topologies.iter().map(|_| Vec::new()).collect();
    let mut attempts: Vec<Vec<Attempts>> = sc.topologies.iter().map(|_| Vec::new()).collect();
    for k in 1..=repeat {
        // One run's folders: the run folder itself, or run-K/ in it when there are several.
        let run_dir = if repeat == 1 { dir.clone() } else { dir.join(format!("run-{k}")) };
        let label = if repeat == 1 { String::new() } else { format!("run {k}/{repeat}: ") };
        for (i, ((t, out), tried)) in sc.topologies.iter().zip(&mut runs).zip(&mut attempts).enumerate() {
            // Pooled earlier runs: a topology may have fewer runs left than another.
            if backend.is_none() && k > earlier[i].len() {
                continue;
            }
            let mut run = || -> Result<RunPairs, Box<dyn std::error::Error>> {
                match &backend {
                    Some(b) => {
                        let mut execute = || -> Result<Option<f64>, Box<dyn std::error::Error>> {
                            eprintln!("  {label}{}: executing...", t.name);
                            run_topology(&sc, b, t, &run_dir, std::io::IsTerminal::is_terminal(&std::io::stderr()))?;
                            Ok(crate::run::steal::read(&run_dir.join(&t.name)))
                        };
                        match args.max_stolen {
                            Some(pct) => {
                                let mut say = |s: &str| eprintln!("  {label}{}: {s}", t.name);
                                let a = execute_undisturbed(&run_dir, &t.name, pct / 100.0, &mut say, &mut execute)?;
                                tried.push(a);
                            }
                            None => {
                                execute()?;
                            }
                        }
                    }
                    None => crate::compare::reuse::copy_executed(&earlier[i][k - 1], &t.name, &run_dir)?,
                }
                eprintln!("  {label}{}: simulating the same requests{draws}...", t.name);
                simulate_and_compare(&sc, t, &profile, &run_dir, k - 1)
            };
            match run() {
                Ok(r) => out.push(r),
                Err(e) => {
                    eprintln!("error: topology `{}`: {e}", t.name);
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let results: Vec<TopologyComparison> = sc
        .topologies
        .iter()
        .zip(&runs)
        .zip(attempts)
        .enumerate()
        .map(|(i, ((t, r), tried))| TopologyComparison {
            attempts: tried,
            left_out: left_out.get(i).cloned().unwrap_or_default(),
            ..TopologyComparison::of(t, r)
        })
        .collect();
    let write = || -> std::io::Result<()> {
        let mut f = CsvFile::create(
            &dir.join("comparison.csv"),
            "topology,metric,executed_ms,simulated_ms,relative_error,runs,\
             executed_min_ms,executed_max_ms,executed_spread,error_min,error_max,\
             simulated_share_at_executed,rank_band",
        )?;
        for c in &results {
            let rows = c.percentiles.iter().chain(&c.phases).map(|p| (p, ""));
            for (p, suffix) in rows.chain(c.paced.iter().map(|p| (p, " at the run's pace"))) {
                let across = p.across_runs.map_or(",,,,".to_owned(), |a| {
                    format!(
                        "{:.3},{:.3},{:.4},{:.4},{:.4}",
                        a.executed_min, a.executed_max, a.executed_spread, a.error_min, a.error_max
                    )
                });
                let rank = p.rank.map_or(",".to_owned(), |r| format!("{:.4},{:.4}", r.simulated_share, r.band));
                f.line(&format!(
                    "{},{}{suffix},{:.3},{:.3},{:.4},{},{across},{rank}",
                    c.topology, p.metric, p.executed, p.simulated, p.relative_error, c.runs
                ))?;
            }
        }
        f.finish().map(|_| ())
    };
    let samples: Vec<_> = runs.iter().map(|r| crate::compare::samples(r)).collect();
    if let Err(e) = write().and_then(|_| crate::report::compare_report::write(&dir, &sc.name, &results, &samples)) {
        eprintln!("error: cannot write {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    mark_latest(&dir);
    let tally = results.iter().map(Tally::of).fold(Tally::default(), |a, b| a + b);
    if args.json {
        let json = serde_json::json!({
            "scenario": sc.name,
            "profile": args.profile,
            "executed_from": (!args.executed.is_empty()).then_some(&args.executed),
            "topologies": results,
            "within_goal": tally
        });
        println!("{json}");
        return ExitCode::SUCCESS;
    }
    for c in &results {
        print_comparison(c);
    }
    let paced = if results.iter().any(|c| !c.paced.is_empty()) {
        format!(", {} at the run's pace", tally.at_the_runs_pace)
    } else {
        String::new()
    };
    println!(
        "\nwithin the goals: {} of {} percentiles as calibrated{paced}; {} executed percentiles rank within sampling \
         of where they belong in the simulated distribution",
        tally.as_calibrated, tally.figures, tally.rank_within_sampling
    );
    let per_run = if repeat == 1 { "" } else { "run-K/" };
    println!(
        "\nper request: {}/{per_run}<topology>/compare.csv; summary: {}/comparison.csv, with CDFs: {}/index.html \
         (goals: p50 within {:.0}%, p90 within {:.0}%)",
        dir.display(),
        dir.display(),
        dir.display(),
        GOAL_P50 * 100.0,
        GOAL_P90 * 100.0
    );
    ExitCode::SUCCESS
}

/// The comparison of one topology as a table on stdout.
fn print_comparison(c: &TopologyComparison) {
    let runs = if c.runs > 1 { format!("{} runs, ", c.runs) } else { String::new() };
    let over_runs = if c.runs > 1 { "   run to run: executed ±, error range" } else { "" };
    println!(
        "\n{} ({runs}{} requests)                executed    simulated    error  sim. rank{over_runs}",
        c.topology, c.requests
    );
    for p in &c.percentiles {
        let mark = match (p.within_goal() == Some(false), p.rank.zip(p.percentile())) {
            (false, _) => "",
            (true, Some((r, pct))) if r.within_band(pct) => "  over the goal (rank within sampling)",
            (true, _) => "  over the goal",
        };
        println!("  {}{mark}", row(p, &error_cells(p)));
    }
    println!("  where it comes from (means, ms):");
    for p in &c.phases {
        // A relative error of a few microseconds says nothing.
        if p.executed.abs().max(p.simulated.abs()) < 0.1 {
            println!("  {:<22} {:>12.2} {:>12.2}       -", p.metric, p.executed, p.simulated);
        } else {
            println!("  {}", row(p, &error_cells(p)));
        }
    }
    let pace = |x: Option<f64>, n: usize| match x {
        Some(_) => format!("{} over {n} steps", ratio_text(x)),
        None => "-".to_owned(),
    };
    println!(
        "  machine pace (executed ÷ profile, median step): prefill {}, decode {}",
        pace(c.pace.prefill, c.pace.prefill_steps),
        pace(c.pace.decode, c.pace.decode_steps)
    );
    if let Some(b) = c.pace.decode_beside_prefill {
        println!(
            "  decode steps beside another worker's prefill: pace ×{:.2} over {} steps, alone ×{:.2} over {}: \
             ×{:.3} (above 1: the neighbour costs more than the profile charges)",
            b.beside,
            b.beside_steps,
            b.alone,
            b.alone_steps,
            b.beside / b.alone
        );
    }
    if let Some(again) = crate::compare::attempts::describe(&c.attempts) {
        println!("  executed again, the hypervisor having disturbed them: {again}");
    }
    if let Some(left) = crate::compare::reuse::brief_left_out(&c.left_out) {
        println!("  left out, the hypervisor having disturbed them: {left}");
    }
    if let Some(runs) = c.pace_by_run_brief() {
        println!("  run by run, pace (executed ÷ profile) and CPU time the hypervisor took: {runs}");
    } else if let Some(runs) = c.pace_by_run_text() {
        println!("  run by run, prefill / decode pace (CPU time the hypervisor took): {runs}");
    } else if c.cpu_stolen.iter().any(Option::is_some) {
        let shares: Vec<String> = c.cpu_stolen.iter().copied().map(stolen_text).collect();
        println!("  CPU time stolen by the hypervisor during the executed run: {}", shares.join(", "));
    }
    if let Some(n) = c.pace.noise {
        println!(
            "  machine unsteadiness (back-to-back batch-1 decode steps): spells of ±{:.1}% lasting about {:.0} ms, ±{:.1}% step to step, \
             the mean decode step ×{:.3} of the median one",
            n.slow_sd * 100.0,
            n.corr_ms,
            n.step_sd * 100.0,
            n.decode_mean_factor()
        );
    }
    if !c.paced.is_empty() {
        let also = if c.pace.noise.is_some() { " and unsteadiness" } else { "" };
        println!("  simulated at the run's pace{also}:");
        for p in &c.paced {
            println!("  {}", row(p, &error_cells(p)));
        }
    }
    if c.percentiles.iter().any(|p| p.rank.is_some()) {
        println!(
            "  sim. rank: the executed figure's place in the simulated distribution (p47: 47% of simulated \
             requests at or below it), ± how far sampling {} requests moves it",
            c.requests
        );
    }
}

/// A metric's relative error and, for a percentile, its rank in the simulated distribution.
fn error_cells(p: &Pair) -> String {
    let rank = p.rank.map_or(" ".repeat(9), |r| {
        format!("{:>9}", format!("p{:.0}±{:.0}", r.simulated_share * 100.0, r.band * 100.0))
    });
    format!("{:>+7.1}%  {rank}", p.relative_error * 100.0)
}

/// A metric's line: name, executed, simulated, error, and with several runs how it moved.
fn row(p: &Pair, err: &str) -> String {
    let across = p.across_runs.map_or(String::new(), |a| {
        format!("   ±{:>4.1}%  {:+.1}%…{:+.1}%", a.executed_spread * 50.0, a.error_min * 100.0, a.error_max * 100.0)
    });
    format!("{:<22} {:>12.2} {:>12.2} {err}{across}", p.metric, p.executed, p.simulated)
}
