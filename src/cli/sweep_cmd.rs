//! `pdsim sweep`: SLO attainment across arrival rates (and burstiness), and goodput.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::metrics::sink::CsvFile;
use crate::run::output::mark_latest;
use crate::run::prepare;
use crate::scenario::{self, Mode};
use crate::sweep::stats::{estimate, Estimate};
use crate::sweep::{base_cv, base_rate, bisect_rate, rescaled, run_point, Point, POINT_HEADER};

#[derive(clap::Args)]
pub struct SweepArgs {
    /// Scenario file (TOML): its topologies are run at each rate with its workload and SLOs.
    scenario: PathBuf,
    /// Arrival rates to run, req/s, comma-separated [default: the scenario's rate × 0.25, 0.5,
    /// 0.75, 1, 1.5, 2, 3].
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Burstiness as a second axis: gamma arrivals with these coefficients of variation of the
    /// gaps between arrivals (1 is Poisson) [default: the scenario's own pattern, whose cv the
    /// output gives: 1 for Poisson, 0 for constant, √(n − 1) for bursts of n].
    #[arg(long, value_delimiter = ',')]
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
    if let Some(r) = args.rates.iter().chain(&args.cv).find(|r| !(r.is_finite() && **r > 0.0)) {
        return bad(format!("rates and cv values must be positive numbers, got {r}"));
    }
    if let Err(e) = args.narrow.apply(&mut sc, &args.scenario) {
        return bad(e);
    }
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
    let mut goodputs: Vec<(String, f64, Estimate, f64)> = Vec::new();
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
                        let g = bisect_rate(rate0, 0.02, |r| {
                            let s = rescaled(&sc, r, *cv)?;
                            Ok(run_point(&s, &backend, t, seed, cv_value, &scratch)?.slo_attainment >= target)
                        })?;
                        per_seed.push(g);
                    }
                    let e = estimate(&per_seed);
                    eprintln!("  cv {cv_value:<4} goodput {:<14} {:.3} ± {:.3} req/s", t.name, e.mean, e.ci95);
                    goodputs.push((t.name.clone(), cv_value, e, e.mean / t.workers() as f64));
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
                "topology,cv,goodput_req_per_s,ci95_req_per_s,seeds,goodput_per_worker_req_per_s,slo_target",
            )?;
            for (t, cv, e, per_worker) in &goodputs {
                f.line(&format!("{t},{cv},{:.6},{:.6},{},{per_worker:.6},{target}", e.mean, e.ci95, e.n))?;
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
        let g: Vec<_> = goodputs
            .iter()
            .map(|(t, cv, e, pw)| serde_json::json!({"topology": t, "cv": cv, "goodput_req_per_s": e, "goodput_per_worker_req_per_s": pw}))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "scenario": sc.name, "points": points, "goodput": g, "slo_target": target })
        );
    } else {
        print_table(&points, &sc.topologies.iter().map(|t| t.name.clone()).collect::<Vec<_>>(), target);
        for (t, cv, e, pw) in &goodputs {
            println!(
                "goodput {t} (cv {cv}): {:.3} ± {:.3} req/s ({pw:.3} per worker), attainment ≥ {target}",
                e.mean, e.ci95
            );
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
