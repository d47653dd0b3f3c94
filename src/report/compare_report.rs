//! The pictures of a comparison: per topology, the CDFs of TTFT, TPOT and E2E as executed,
//! as simulated (every draw of the machine's noise pooled) and at the run's pace, and an
//! `index.html` with them and the figures. A percentile's relative error says how far two
//! values are; the curves show why: a distribution with two modes, a tail one side lacks, a
//! shift of the whole body.

use std::path::Path;

use super::run_report::{esc, html_table, page_head, thin, write_file, CDF_POINTS};
use super::svg::{cdf_points, LineChart, Series};
use crate::compare::{Pair, Samples, Tally, TopologyComparison, GOAL_P50, GOAL_P90};

/// The chart's file name for one topology's metric.
fn chart_file(topology: &str, metric: &str) -> String {
    format!("cdf-{topology}-{}.svg", metric.trim_end_matches("_ms"))
}

/// One metric's CDFs: executed, simulated, at the run's pace.
fn chart(topology: &str, runs: usize, s: &Samples) -> String {
    let name = match s.metric {
        "ttft_ms" => "TTFT",
        "tpot_ms" => "TPOT",
        "e2e_ms" => "E2E",
        other => other,
    };
    let runs = if runs > 1 { format!(", {runs} runs") } else { String::new() };
    let mut series = vec![Series {
        name: format!("executed ({}{runs})", s.executed.len()),
        points: thin(cdf_points(&s.executed), CDF_POINTS),
    }];
    series.push(Series { name: "simulated".into(), points: thin(cdf_points(&s.simulated), CDF_POINTS) });
    if !s.paced.is_empty() {
        series.push(Series { name: "at the run's pace".into(), points: thin(cdf_points(&s.paced), CDF_POINTS) });
    }
    let title = format!("{topology}: {name}, executed against simulated");
    let x_label = format!("{name} (ms)");
    LineChart::latency_cdfs(&title, &x_label, series, 0.0).render()
}

/// The figures of one topology as table rows: the header first.
fn rows(c: &TopologyComparison) -> Vec<Vec<String>> {
    let mut out = vec![[
        "metric",
        "executed (ms)",
        "simulated (ms)",
        "error",
        "simulated rank (± sampling)",
        "executed run to run",
    ]
    .map(String::from)
    .to_vec()];
    let line = |p: &Pair, suffix: &str| {
        vec![
            format!("{}{suffix}", p.metric),
            format!("{:.2}", p.executed),
            format!("{:.2}", p.simulated),
            format!("{:+.1}%", p.relative_error * 100.0),
            p.rank.map_or(String::new(), |r| format!("p{:.0} ± {:.0}", r.simulated_share * 100.0, r.band * 100.0)),
            p.across_runs.map_or(String::new(), |a| format!("±{:.1}%", a.executed_spread * 50.0)),
        ]
    };
    out.extend(c.percentiles.iter().chain(&c.phases).map(|p| line(p, "")));
    out.extend(c.paced.iter().map(|p| line(p, " at the run's pace")));
    out
}

/// Writes the CDF charts and `index.html` into the comparison's folder `dir`.
pub fn write(
    dir: &Path,
    scenario: &str,
    results: &[TopologyComparison],
    samples: &[Vec<Samples>],
) -> std::io::Result<()> {
    let mut html = page_head(&format!("pdsim compare: {scenario}"));
    html.push_str(&format!(
        "<h1>{}: executed against simulated</h1>\n<p>Simulated rank: where the executed figure falls in the simulated \
         distribution (p47: 47% of simulated requests at or below it); ± how far sampling this many requests moves a \
         percentile's rank (two standard deviations). Per request: <code>compare.csv</code> in each topology's folder \
         (<code>run-K/&lt;topology&gt;/</code> with several runs); all figures: \
         <a href=\"comparison.csv\">comparison.csv</a>.</p>\n",
        esc(scenario)
    ));
    let t = results.iter().map(Tally::of).fold(Tally::default(), |a, b| a + b);
    html.push_str(&format!(
        "<p><b>Within the goals</b> (p50 within {:.0}%, p90 within {:.0}%): {} of {} percentiles as calibrated, {} at \
         the run's pace; {} executed percentiles rank within sampling of where they belong.</p>\n",
        GOAL_P50 * 100.0,
        GOAL_P90 * 100.0,
        t.as_calibrated,
        t.figures,
        t.at_the_runs_pace,
        t.rank_within_sampling
    ));
    for (c, metrics) in results.iter().zip(samples) {
        let t = &c.topology;
        html.push_str(&format!("<h2>{} ({} requests)</h2>\n", esc(t), c.requests));
        html.push_str(&html_table(&rows(c)));
        html.push('\n');
        html.push_str(&format!(
            "<p>Machine pace (executed ÷ profile, median step): prefill {}, decode {}",
            crate::compare::ratio_text(c.pace.prefill),
            crate::compare::ratio_text(c.pace.decode)
        ));
        if let Some(runs) = c.pace_by_run_text() {
            html.push_str(&format!("; run by run, prefill / decode (CPU time the hypervisor took): {}", esc(&runs)));
        }
        html.push_str(".</p>\n");
        if let Some(again) = crate::compare::attempts::describe(&c.attempts) {
            html.push_str(&format!("<p>Executed again, the hypervisor having disturbed them: {}.</p>\n", esc(&again)));
        }
        if let Some(left) = crate::compare::reuse::describe_left_out(&c.left_out) {
            html.push_str(&format!("<p>Left out, the hypervisor having disturbed them: {}.</p>\n", esc(&left)));
        }
        for s in metrics {
            let file = chart_file(t, s.metric);
            write_file(&dir.join(&file), &chart(t, c.runs, s))?;
            html.push_str(&format!("<img src=\"{}\"> ", esc(&file)));
        }
        html.push('\n');
    }
    html.push_str("</body></html>\n");
    write_file(&dir.join("index.html"), &html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_each_side_and_names_the_runs() {
        let s = Samples {
            metric: "tpot_ms",
            executed: vec![10.0, 12.0, 40.0],
            simulated: vec![11.0, 13.0, 14.0, 41.0, 42.0, 43.0],
            paced: Vec::new(),
        };
        let svg = chart("fused", 3, &s);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("fused: TPOT, executed against simulated"));
        assert!(svg.contains("executed (3, 3 runs)"));
        assert!(svg.contains("simulated"));
        assert!(!svg.contains("at the run&apos;s pace") && !svg.contains("at the run's pace"));
        assert_eq!(chart_file("fused", "tpot_ms"), "cdf-fused-tpot.svg");
    }
}
