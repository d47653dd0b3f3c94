//! `pdsim sweep`: SLO attainment across arrival rates (and burstiness), and goodput.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::engine::sim::CostModel;
use crate::metrics::sink::CsvFile;
use crate::run::output::mark_latest;
use crate::run::prepare;
use crate::scenario::{self, Mode, MAX_RATE_PER_S as MAX_RATE};
use crate::sweep::goodput::{goodput, OverSeeds, LIMITS};
use crate::sweep::stats::estimate;
use crate::sweep::{base_cv, base_rate, rescaled, run_point, Point, POINT_HEADER};

#[derive(clap::Args)]
pub struct SweepArgs {
    /// Scenario file (TOML): its topologies are run at each rate with its workload and SLOs.
    scenario: PathBuf,
    /// Arrival rates to run, req/s, comma-separated [default: the scenario's rate × 0.25, 0.5,
    /// 0.75, 1, 1.5, 2, 3].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    rates: Vec<f64>,
    /// Burstiness as a second axis: gamma arrivals with these coefficients of variation of the
    /// gaps between arrivals (1 is Poisson) [default: the scenario's own pattern, whose cv the
    /// output gives: 1 for Poisson, 0 for constant, √(n − 1) for bursts of n]; 0 runs constant
    /// arrivals.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    cv: Vec<f64>,
    /// Also find each topology's goodput: the highest rate with attainment ≥ the SLO target.
    #[arg(long)]
    goodput: bool,
    /// Repeat every point with this many seeds (the scenario's seed and the next ones).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    #[command(flatten)]
    narrow: super::Narrow,
    #[command(flatten)]
    folder: super::RunFolder,
    /// Print the points and goodputs as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn sweep(args: SweepArgs) -> ExitCode {
    let bad = super::bad_input;
    let mut sc = match scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => return bad(e.to_string()),
    };
    if args.seeds == 0 {
        return bad("--seeds must be at least 1".into());
    }
    if let Some(r) = args.rates.iter().find(|r| !(r.is_finite() && **r > 0.0 && **r <= MAX_RATE)) {
        return bad(format!("--rates must be positive numbers up to {MAX_RATE:e} req/s, got {r}"));
    }
    if let Some(c) = args.cv.iter().find(|c| !(c.is_finite() && **c >= 0.0)) {
        return bad(format!("--cv values must be 0 (constant arrivals) or more, got {c}"));
    }
    if let Err(e) = args.narrow.apply(&mut sc, &args.scenario) {
        return bad(e);
    }
    super::print_notes(&sc);
    let Some(rate0) = base_rate(&sc) else {
        return bad("a sweep changes the arrival rate, which a trace fixes; use a synthetic arrival pattern".into());
    };
    if sc.mode == Mode::Execute {
        eprintln!("note: execute mode runs every point for real; expect minutes per point");
    }
    let backend = match prepare(&mut sc) {
        Ok(b) => b,
        Err(e) => return fail(e.to_string()),
    };
    let rates: Vec<f64> = if args.rates.is_empty() {
        [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0].iter().map(|f| f * rate0).collect()
    } else {
        args.rates.clone()
    };
    let cvs: Vec<Option<f64>> =
        if args.cv.is_empty() { vec![None] } else { args.cv.iter().map(|&c| Some(c)).collect() };
    // Sweeps get folders of their own beside the scenario's runs: <root>/<scenario>/sweep/<run>/.
    let dir = match args.folder.create(&sc, &format!("{}/sweep", sc.name)) {
        Ok(d) => d,
        Err(e) => return bad(e.to_string()),
    };
    let scratch = std::env::temp_dir().join(format!("pdsim-sweep-{}", std::process::id()));
    let seeds: Vec<u64> = (0..args.seeds).map(|i| sc.seed + i).collect();
    let target = sc.slo.attainment;

    let mut points: Vec<Point> = Vec::new();
    // Goodput per GPU where the cost model simulates GPUs (a worker of tensor-parallel degree k
    // is k of them), per worker on CPUs.
    let gpus = sc.mode == Mode::Simulate && !matches!(sc.cost.as_deref(), Some(CostModel::Profile { .. }));
    let mut goodputs: Vec<OverSeeds> = Vec::new();
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        for cv in &cvs {
            // (A trace has no cv, and `rescaled` refuses it below.)
            let cv_value = cv.or_else(|| base_cv(&sc)).unwrap_or(0.0);
            for &rate in &rates {
                let s = rescaled(&sc, rate, *cv)?;
                for t in &s.topologies {
                    for &seed in &seeds {
                        let p = run_point(&s, &backend, t, seed, cv_value, &scratch)?;
                        eprintln!(
                            "  cv {cv_value:<4} rate {rate:>8.3}/s  {:<14} seed {seed}: attainment {:.3}",
                            t.name, p.slo_attainment
                        );
                        points.push(p);
                    }
                }
            }
            if args.goodput {
                for t in &sc.topologies {
                    let mut per_seed = Vec::new();
                    for &seed in &seeds {
                        per_seed.push(goodput(&sc, &backend, t, seed, *cv, rate0, target, &scratch)?);
                    }
                    let g = OverSeeds::new(t, cv_value, &per_seed, gpus);
                    eprintln!(
                        "  cv {cv_value:<4} goodput {:<14} {:.3} {} req/s, capacity {:.3}, limited by {}",
                        t.name,
                        g.goodput_req_per_s.mean,
                        g.goodput_req_per_s.interval(3),
                        g.capacity_req_per_s.mean,
                        g.limit_label()
                    );
                    goodputs.push(g);
                }
            }
        }
        let mut f = CsvFile::create(&dir.join("sweep.csv"), POINT_HEADER)?;
        for p in &points {
            f.line(&p.csv_row())?;
        }
        f.finish()?;
        if args.goodput {
            let mut f = CsvFile::create(
                &dir.join("goodput.csv"),
                "topology,cv,goodput_req_per_s,ci95_req_per_s,seeds,goodput_per_unit_req_per_s,unit,capacity_req_per_s,limited_by,slo_target",
            )?;
            for g in &goodputs {
                let e = g.goodput_req_per_s;
                f.line(&format!(
                    "{},{},{:.6},{},{},{:.6},{},{:.6},{},{target}",
                    crate::metrics::format::csv_field(&g.topology),
                    g.cv,
                    e.mean,
                    e.ci95.map_or(String::new(), |c| format!("{c:.6}")),
                    e.n,
                    g.goodput_per_unit_req_per_s,
                    g.unit,
                    g.capacity_req_per_s.mean,
                    g.limit_label()
                ))?;
            }
            f.finish()?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(e) = result {
        return fail(e.to_string());
    }
    if let Err(e) = crate::report::sweep_report::write(&dir, &sc.name, &points, &goodputs, target) {
        return fail(format!("cannot write the sweep's pictures in {}: {e}", dir.display()));
    }
    mark_latest(&dir);
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "scenario": sc.name, "points": points, "goodput": goodputs, "slo_target": target })
        );
    } else {
        print_table(&points, &sc.topologies.iter().map(|t| t.name.clone()).collect::<Vec<_>>(), target);
        for g in &goodputs {
            println!(
                "goodput {} (cv {}): {:.3} {} req/s ({:.3} per {}), attainment ≥ {target}; capacity {:.3} req/s, limited by {}",
                g.topology,
                g.cv,
                g.goodput_req_per_s.mean,
                g.goodput_req_per_s.interval(3),
                g.goodput_per_unit_req_per_s,
                g.unit,
                g.capacity_req_per_s.mean,
                g.limit_label()
            );
        }
        if !goodputs.is_empty() {
            println!("{LIMITS}");
        }
        println!(
            "\nresults: {}/ (index.html, attainment.svg, sweep.csv{})",
            dir.display(),
            if args.goodput { ", goodput.csv" } else { "" }
        );
    }
    ExitCode::SUCCESS
}

fn fail(e: String) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// SLO attainment (mean over seeds), one row per (cv, rate), one column per topology.
fn print_table(points: &[Point], topologies: &[String], target: f64) {
    let mut keys: Vec<(f64, f64)> = Vec::new();
    for p in points {
        if !keys.iter().any(|k| k.0 == p.cv && k.1 == p.rate_per_s) {
            keys.push((p.cv, p.rate_per_s));
        }
    }
    println!("\nSLO attainment (target {target}), mean over seeds");
    print!("{:>6} {:>10}", "cv", "rate/s");
    for t in topologies {
        print!(" {t:>14}");
    }
    println!();
    for (cv, rate) in keys {
        print!("{cv:>6} {rate:>10.3}");
        for t in topologies {
            let xs: Vec<f64> = points
                .iter()
                .filter(|p| &p.topology == t && p.cv == cv && p.rate_per_s == rate)
                .map(|p| p.slo_attainment)
                .collect();
            print!(" {:>14.3}", estimate(&xs).mean);
        }
        println!();
    }
}
