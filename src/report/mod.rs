//! Reports: the side-by-side comparison table printed at the end of a run, and the pictures
//! and web page of a run ([`run_report`]), a sweep ([`sweep_report`]) and a comparison of
//! execution with simulation ([`compare_report`]), drawn by [`svg`].

pub mod compare_report;
pub mod run_report;
pub mod svg;
pub mod sweep_report;

use crate::metrics::summary::Summary;

/// A table with one column per topology and, from the second topology on, its ratio to the
/// first (the baseline). Ratios below 1 mean smaller than the baseline.
pub fn comparison_table(summaries: &[Summary]) -> String {
    render(&comparison_rows(summaries))
}

/// The comparison as rows of cells, the header first.
pub fn comparison_rows(summaries: &[Summary]) -> Vec<Vec<String>> {
    let Some(base) = summaries.first() else {
        return Vec::new();
    };
    type Get = fn(&Summary) -> Option<f64>;
    let mut rows: Vec<(&str, Get)> = vec![("completed requests", |s| Some(s.completed as f64))];
    // Rejections and failures get rows only when some topology had them.
    if summaries.iter().any(|s| s.rejected > 0) {
        rows.push(("rejected requests", |s| Some(s.rejected as f64)));
    }
    if summaries.iter().any(|s| s.failed > 0) {
        rows.push(("failed requests", |s| Some(s.failed as f64)));
    }
    rows.extend::<Vec<(&str, Get)>>(vec![
        ("throughput (req/s)", |s| Some(s.throughput_req_per_s)),
        ("decode tokens/s", |s| Some(s.decode_tokens_per_s)),
        ("TTFT p50 (ms)", |s| s.ttft_ms.map(|x| x.p50)),
        ("TTFT p90 (ms)", |s| s.ttft_ms.map(|x| x.p90)),
        ("TTFT p99 (ms)", |s| s.ttft_ms.map(|x| x.p99)),
        ("TPOT p50 (ms)", |s| s.tpot_ms.map(|x| x.p50)),
        ("TPOT p90 (ms)", |s| s.tpot_ms.map(|x| x.p90)),
        ("TPOT p99 (ms)", |s| s.tpot_ms.map(|x| x.p99)),
        ("E2E p50 (ms)", |s| s.e2e_ms.map(|x| x.p50)),
        ("E2E p90 (ms)", |s| s.e2e_ms.map(|x| x.p90)),
        ("E2E p99 (ms)", |s| s.e2e_ms.map(|x| x.p99)),
        ("queueing p90 (ms)", |s| s.queue_ms.map(|x| x.p90)),
        ("KV transfer p90 (ms)", |s| s.kv_transfer_ms.map(|x| x.p90)),
        ("SLO TTFT attainment", |s| Some(s.slo_ttft_attainment)),
        ("SLO TPOT attainment", |s| Some(s.slo_tpot_attainment)),
        ("SLO attainment", |s| Some(s.slo_attainment)),
    ]);
    let mut header = vec!["metric".to_owned()];
    header.extend(summaries.iter().map(|s| s.topology.topology.clone()));
    header.extend(summaries.iter().skip(1).map(|s| format!("{} / {}", s.topology.topology, base.topology.topology)));
    let mut table = vec![header];
    let mut layout = vec!["layout".to_owned()];
    layout.extend(summaries.iter().map(|s| s.topology.layout.clone()));
    layout.extend(summaries.iter().skip(1).map(|_| String::new()));
    table.push(layout);
    for (name, get) in rows {
        let mut row = vec![name.to_owned()];
        row.extend(summaries.iter().map(|s| get(s).map_or("-".into(), number)));
        row.extend(summaries.iter().skip(1).map(|s| match (get(s), get(base)) {
            (Some(a), Some(b)) if b != 0.0 => format!("{:.2}×", a / b),
            _ => "-".into(),
        }));
        table.push(row);
    }
    let passed = |s: &Summary| format!("{} (target {})", if s.slo_passed { "pass" } else { "FAIL" }, s.slo.attainment);
    let mut verdict = vec!["SLO verdict".to_owned()];
    verdict.extend(summaries.iter().map(passed));
    verdict.extend(summaries.iter().skip(1).map(|_| String::new()));
    table.push(verdict);
    table
}

fn number(x: f64) -> String {
    if x.abs() >= 100.0 || x == x.trunc() {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| if c == 0 { format!("{s:<w$}", w = widths[c]) } else { format!("{s:>w$}", w = widths[c]) })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1)));
            out.push('\n');
        }
    }
    out
}
