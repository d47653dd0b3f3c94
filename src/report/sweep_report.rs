//! The pictures of a sweep: SLO attainment against arrival rate, one line per topology (and
//! burstiness), with the target marked; and an `index.html` with the goodput table.

use std::path::Path;

use super::run_report::{esc, html_table, page_head};
use super::svg::{LineChart, Series};
use crate::sweep::goodput::{OverSeeds, LIMITS};
use crate::sweep::Point;

/// Mean attainment over seeds per (topology, cv, rate), in the order first seen.
fn curves(points: &[Point]) -> Vec<Series> {
    let mut keys: Vec<(String, f64)> = Vec::new();
    for p in points {
        if !keys.iter().any(|k| k.0 == p.topology && k.1 == p.cv) {
            keys.push((p.topology.clone(), p.cv));
        }
    }
    let several_cv = keys.iter().any(|k| k.1 != keys[0].1);
    keys.into_iter()
        .map(|(t, cv)| {
            let mut rates: Vec<f64> =
                points.iter().filter(|p| p.topology == t && p.cv == cv).map(|p| p.rate_per_s).collect();
            rates.sort_by(f64::total_cmp);
            rates.dedup();
            let pts = rates
                .iter()
                .map(|&r| {
                    let at: Vec<f64> = points
                        .iter()
                        .filter(|p| p.topology == t && p.cv == cv && p.rate_per_s == r)
                        .map(|p| p.slo_attainment)
                        .collect();
                    (r, at.iter().sum::<f64>() / at.len() as f64)
                })
                .collect();
            let name = if several_cv { format!("{t}, cv {cv}") } else { t };
            Series { name, points: pts }
        })
        .collect()
}

/// Writes `attainment.svg` and `index.html` into the sweep's folder.
pub fn write(dir: &Path, scenario: &str, points: &[Point], goodput: &[OverSeeds], target: f64) -> std::io::Result<()> {
    let chart = LineChart {
        title: "SLO attainment against arrival rate (mean over seeds)",
        x_label: "arrival rate (requests/s)",
        y_label: "SLO attainment",
        series: curves(points),
        steps: false,
        y_range: Some((0.0, 1.0)),
        y_mark: Some((target, format!("target {target}"))),
        x_max: None,
    };
    std::fs::write(dir.join("attainment.svg"), chart.render())?;
    let mut html = page_head(&format!("pdsim sweep: {scenario}"));
    html.push_str(&format!("<h1>Sweep: {}</h1>\n<img src=\"attainment.svg\">\n", esc(scenario)));
    if let Some(first) = goodput.first() {
        let per = format!("per {} (req/s)", first.unit);
        let mut rows = vec![[
            "topology",
            "cv",
            "goodput (req/s)",
            "± 95% CI",
            "seeds",
            per.as_str(),
            "capacity (req/s)",
            "limited by",
        ]
        .map(String::from)
        .to_vec()];
        for g in goodput {
            let e = g.goodput_req_per_s;
            rows.push(vec![
                g.topology.clone(),
                g.cv.to_string(),
                format!("{:.3}", e.mean),
                e.ci95.map_or("(one seed)".into(), |c| format!("{c:.3}")),
                e.n.to_string(),
                format!("{:.3}", g.goodput_per_unit_req_per_s),
                format!("{:.3}", g.capacity_req_per_s.mean),
                g.limit_label().into(),
            ]);
        }
        html.push_str(&format!("<h2>Goodput: highest rate with attainment ≥ {target}</h2>\n"));
        html.push_str(&html_table(&rows));
        html.push_str(&format!("<p>{}</p>\n", esc(LIMITS)));
    }
    html.push_str("<p>Every point: <a href=\"sweep.csv\">sweep.csv</a>");
    if !goodput.is_empty() {
        html.push_str("; every goodput: <a href=\"goodput.csv\">goodput.csv</a>");
    }
    html.push_str(".</p>\n</body></html>\n");
    std::fs::write(dir.join("index.html"), html)
}
