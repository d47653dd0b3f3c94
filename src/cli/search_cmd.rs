//! `pdsim search`: the best fused and split placements for a GPU budget.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::metrics::sink::CsvFile;
use crate::run::output::{mark_latest, new_run_dir};
use crate::run::prepare;
use crate::scenario::{self, Mode, TopologyKind};
use crate::sched::fused::FusedPolicy;
use crate::search::{candidates, count, search, Ranked, Space};

#[derive(clap::Args)]
pub struct SearchArgs {
    /// Scenario (simulate mode, roofline cost model): workload, SLOs, model and hardware.
    scenario: PathBuf,
    /// GPUs to place.
    #[arg(long)]
    gpus: u32,
    /// Tensor-parallel degrees to try for each phase.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    tp: Vec<u32>,
    /// Also try placements that leave GPUs idle (default: every GPU used).
    #[arg(long)]
    partial: bool,
    /// Requests per simulation (overrides the scenario; fewer is faster, noisier).
    #[arg(long, default_value_t = 1000)]
    requests: u64,
    /// How many placements to print.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    top: u64,
    /// Refuse to search more placements than this (each is a goodput bisection of several
    /// simulations; about 0.1–1 s each here).
    #[arg(long, default_value_t = 5000)]
    max_candidates: usize,
    /// Write under DIR instead of the scenario's output_dir.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the ranking as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: SearchArgs) -> ExitCode {
    let bad = super::bad_input;
    let mut sc = match scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => return bad(e.to_string()),
    };
    if sc.mode != Mode::Simulate {
        return bad(format!("{}: placement search simulates; use a simulate-mode scenario", args.scenario.display()));
    }
    super::print_notes(&sc);
    if args.gpus == 0 || args.requests == 0 || args.tp.contains(&0) {
        return bad("--gpus, --requests and every --tp must be at least 1".into());
    }
    let cost = sc.cost.clone().expect("simulate mode has a cost model");
    let tps: Vec<u32> = args.tp.iter().copied().filter(|&t| t <= args.gpus).collect();
    if tps.is_empty() {
        return bad(format!("every --tp ({:?}) is more than the {} GPUs to place", args.tp, args.gpus));
    }
    let (fits, skipped): (Vec<u32>, Vec<u32>) = tps.iter().partition(|&&t| cost.with_tp(t).is_ok());
    if let Some(e) = tps.iter().find_map(|&t| cost.with_tp(t).err()).filter(|_| fits.is_empty()) {
        return bad(format!("no tensor-parallel degree in --tp fits: {e}"));
    }
    for t in skipped {
        eprintln!("note: tp {t} skipped: {}", cost.with_tp(t).err().unwrap_or_default());
    }
    sc.workload.stop = crate::workload::StopAfter::Requests(args.requests);
    // Split candidates take the router, link and batching of the scenario's first split
    // topology; fused ones the policy, router and batching of its first fused topology (without
    // one, the other kind's router and batching).
    let split = sc.topologies.iter().find_map(|t| match t.kind {
        TopologyKind::Split { router, link, .. } => Some((router, link, t.batching)),
        _ => None,
    });
    let fused = sc.topologies.iter().find_map(|t| match t.kind {
        TopologyKind::Fused { policy, router, .. } => Some((policy, router, t.batching)),
        _ => None,
    });
    let first = sc.topologies[0].batching;
    let (router, link, split_batching) = split.unwrap_or((crate::sched::router::RouterKind::RoundRobin, None, first));
    let (policy, fused_router, fused_batching) = fused.unwrap_or((FusedPolicy::PrefillFirst, router, split_batching));
    let space = Space {
        gpus: args.gpus,
        tps: fits,
        fused_policy: policy,
        fused_router,
        router,
        link,
        use_all: !args.partial,
        fused_batching,
        split_batching,
    };
    if split.is_none() {
        eprintln!(
            "note: the scenario has no split topology, so split placements hand their KV cache over \
             with no link model (at no cost), which favours them; add a split topology with a `link` to \
             charge the transfer"
        );
    }
    let n = count(&space);
    if n == 0 {
        let (how, idle) = if args.partial {
            ("fits", "")
        } else {
            ("uses every one of them", ", or --partial to let placements leave GPUs idle")
        };
        return bad(format!(
            "no placement of {} GPUs {how} with tensor-parallel degrees {:?}; try other --tp values{idle}",
            args.gpus, space.tps
        ));
    }
    if n > args.max_candidates as u64 {
        return bad(format!(
            "{n} placements of {} GPUs (tp {:?}) is more than --max-candidates {}; each is a goodput bisection of several \
             simulations, hours in all: narrow --tp or the budget, or raise --max-candidates",
            args.gpus,
            space.tps,
            args.max_candidates
        ));
    }
    let cands = candidates(&space);
    let backend = match prepare(&mut sc) {
        Ok(b) => b,
        Err(e) => return bad(e.to_string()),
    };
    let out_root = args.out.clone().unwrap_or_else(|| sc.output_dir.clone());
    let dir = match new_run_dir(&out_root, &format!("{}/search", sc.name), None, false) {
        Ok(d) => d,
        Err(e) => return bad(e.to_string()),
    };
    eprintln!(
        "pdsim search: {} placements of {} GPUs (tp {:?}), {} requests per simulation, SLO attainment ≥ {}",
        cands.len(),
        args.gpus,
        space.tps,
        args.requests,
        sc.slo.attainment
    );
    let started = Instant::now();
    let scratch = std::env::temp_dir().join(format!("pdsim-search-{}", std::process::id()));
    let progress = |done: usize, total: usize| {
        if done.is_multiple_of(10) || done == total {
            eprintln!("  {done}/{total} placements ({:.1} s)", started.elapsed().as_secs_f64());
        }
    };
    let result = search(&sc, &backend, cands, &scratch, &progress);
    let _ = std::fs::remove_dir_all(&scratch);
    let ranked = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let wall = started.elapsed().as_secs_f64();
    let runs: usize = ranked.iter().map(|r| r.runs).sum();
    eprintln!("searched {} placements ({runs} simulations) in {wall:.1} s", ranked.len());
    if let Err(e) = write_csv(&dir, &ranked) {
        eprintln!("error: cannot write {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    mark_latest(&dir);
    if args.json {
        let doc = serde_json::json!({
            "scenario": sc.name, "gpus": args.gpus, "wall_s": wall, "simulations": runs, "placements": ranked,
        });
        println!("{doc}");
    } else {
        println!(
            "\n{:<4} {:<24} {:>5} {:>14} {:>14} {:>14} {:>10}  layout",
            "rank", "placement", "GPUs", "goodput req/s", "per GPU req/s", "capacity req/s", "limited by"
        );
        for (i, r) in ranked.iter().take(args.top as usize).enumerate() {
            println!(
                "{:<4} {:<24} {:>5} {:>14.3} {:>14.3} {:>14.3} {:>10}  {}",
                i + 1,
                r.name,
                r.gpus,
                r.goodput_req_per_s,
                r.goodput_per_gpu,
                r.capacity_req_per_s,
                r.limit.label(),
                r.layout
            );
        }
        println!("{}", crate::sweep::goodput::LIMITS);
        println!(
            "Each goodput is bisected to within 2%: placements whose per-GPU goodputs are within 2% of each other \
             are ties, whatever their order."
        );
        println!("\nall {} placements: {}/search.csv", ranked.len(), dir.display());
    }
    ExitCode::SUCCESS
}

fn write_csv(dir: &std::path::Path, ranked: &[Ranked]) -> std::io::Result<()> {
    let mut f = CsvFile::create(
        &dir.join("search.csv"),
        "rank,placement,gpus,prefill_tp,decode_tp,goodput_req_per_s,goodput_per_gpu_req_per_s,capacity_req_per_s,limited_by,simulations,layout",
    )?;
    for (i, r) in ranked.iter().enumerate() {
        f.line(&format!(
            "{},{},{},{},{},{:.6},{:.6},{:.6},{},{},{}",
            i + 1,
            r.name,
            r.gpus,
            r.prefill_tp,
            r.decode_tp,
            r.goodput_req_per_s,
            r.goodput_per_gpu,
            r.capacity_req_per_s,
            r.limit.label(),
            r.runs,
            crate::metrics::format::csv_field(&r.layout)
        ))?;
    }
    f.finish().map(|_| ())
}
