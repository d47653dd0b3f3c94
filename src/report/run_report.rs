//! The pictures of a run, written beside its CSVs: TTFT and TPOT CDFs per topology, a Gantt
//! timeline of each topology's worker steps over a short window (SVG, and the whole run as a
//! Chrome trace that Perfetto or chrome://tracing opens), and an `index.html` showing them with
//! the summary table. Everything is read back from the CSVs, so a run's report can be remade
//! from its folder alone.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::svg::{cdf_points, Bar, Gantt, LineChart, Series, PALETTE};
use crate::metrics::summary::Summary;

/// Most points drawn per CDF line: more adds bytes, not information.
const CDF_POINTS: usize = 1000;
/// Worker steps in a timeline window.
const WINDOW_STEPS: usize = 400;
/// Most steps written to a Chrome trace (the first ones), to keep it openable.
const TRACE_STEPS: usize = 200_000;

type Io = std::io::Result<()>;

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Writes `path` in one piece (under a temporary name, then renamed).
fn write_file(path: &Path, text: &str) -> Io {
    let tmp = path.with_extension("partial");
    std::fs::File::create(&tmp)?.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

/// Values of numeric columns of a CSV file, by name; empty fields are skipped. `keep` filters
/// rows by the value of another column.
fn columns(path: &Path, cols: &[&str], keep: Option<(&str, &str)>) -> std::io::Result<Vec<Vec<f64>>> {
    let mut rd = csv::Reader::from_path(path).map_err(io_err)?;
    let h = rd.headers().map_err(io_err)?.clone();
    let idx =
        |c: &str| h.iter().position(|x| x == c).ok_or_else(|| io_err(format!("{}: no column {c}", path.display())));
    let ix: Vec<usize> = cols.iter().map(|c| idx(c)).collect::<Result<_, _>>()?;
    let filter = keep.map(|(c, v)| idx(c).map(|i| (i, v))).transpose()?;
    let mut out = vec![Vec::new(); cols.len()];
    for rec in rd.records() {
        let rec = rec.map_err(io_err)?;
        if filter.is_some_and(|(i, v)| rec.get(i) != Some(v)) {
            continue;
        }
        for (k, &i) in ix.iter().enumerate() {
            if let Some(x) = rec.get(i).and_then(|s| s.parse::<f64>().ok()) {
                out[k].push(x);
            }
        }
    }
    Ok(out)
}

/// At most `n` points of a CDF, evenly spaced in rank (the last one kept).
fn thin(points: Vec<(f64, f64)>, n: usize) -> Vec<(f64, f64)> {
    if points.len() <= n {
        return points;
    }
    let step = points.len() as f64 / n as f64;
    let mut out: Vec<(f64, f64)> = (0..n).map(|i| points[(i as f64 * step) as usize]).collect();
    out.push(*points.last().expect("non-empty"));
    out
}

/// One step of a worker, from `iterations.csv`.
struct Step {
    worker: String,
    kind: String,
    start: f64,
    end: f64,
    batch: String,
}

fn steps(path: &Path) -> std::io::Result<Vec<Step>> {
    let mut rd = csv::Reader::from_path(path).map_err(io_err)?;
    let h = rd.headers().map_err(io_err)?.clone();
    let at =
        |c: &str| h.iter().position(|x| x == c).ok_or_else(|| io_err(format!("{}: no column {c}", path.display())));
    let (w, k, s, e, b) = (at("worker")?, at("kind")?, at("start_s")?, at("end_s")?, at("batch_size")?);
    let mut out = Vec::new();
    for rec in rd.records() {
        let rec = rec.map_err(io_err)?;
        let num = |i: usize| rec.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        out.push(Step {
            worker: rec.get(w).unwrap_or("").to_owned(),
            kind: rec.get(k).unwrap_or("").to_owned(),
            start: num(s),
            end: num(e),
            batch: rec.get(b).unwrap_or("").to_owned(),
        });
    }
    Ok(out)
}

const KINDS: [(&str, &str); 3] = [("prefill", PALETTE[1]), ("decode", PALETTE[0]), ("mixed", PALETTE[2])];

/// Workers in a natural order: prefill-0, prefill-1, ..., decode-0, ..., fused-0, ...
fn worker_order(name: &str) -> (u8, u64) {
    let (role, i) = name.rsplit_once('-').unwrap_or((name, "0"));
    let r = match role {
        "prefill" => 0,
        "decode" => 1,
        _ => 2,
    };
    (r, i.parse().unwrap_or(0))
}

/// The timeline SVG (a window of `WINDOW_STEPS` steps from the middle of the run, where it is
/// in steady state) and the Chrome trace of a topology's steps.
fn timeline(topology: &str, dir: &Path) -> Io {
    let mut all = steps(&dir.join("iterations.csv"))?;
    all.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut rows: Vec<String> = all.iter().map(|s| s.worker.clone()).collect();
    rows.sort_by_key(|w| worker_order(w));
    rows.dedup();
    let row_of: BTreeMap<&str, usize> = rows.iter().enumerate().map(|(i, w)| (w.as_str(), i)).collect();
    let kind_of = |k: &str| KINDS.iter().position(|(n, _)| *n == k).unwrap_or(2);
    let from = all.len().saturating_sub(WINDOW_STEPS) / 2;
    let window_steps = &all[from..(from + WINDOW_STEPS).min(all.len())];
    let window = match (window_steps.first(), window_steps.iter().map(|s| s.end).reduce(f64::max)) {
        (Some(f), Some(e)) => (f.start, e),
        _ => (0.0, 1.0),
    };
    let bars = all
        .iter()
        .filter(|s| s.end >= window.0 && s.start <= window.1)
        .map(|s| Bar { row: row_of[s.worker.as_str()], start: s.start, end: s.end, kind: kind_of(&s.kind) })
        .collect();
    let title = format!("{topology}: worker steps, {:.3}–{:.3} s", window.0, window.1);
    let gantt =
        Gantt { title: &title, x_label: "time since the run started (s)", rows, kinds: KINDS.to_vec(), bars, window };
    write_file(&dir.join("timeline.svg"), &gantt.render())?;

    // Chrome trace: complete events ("ph": "X") in microseconds, one thread per worker.
    let mut json = String::from("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n");
    let mut threads: Vec<&str> = Vec::new();
    for (n, s) in all.iter().take(TRACE_STEPS).enumerate() {
        let tid = match threads.iter().position(|t| *t == s.worker) {
            Some(i) => i,
            None => {
                threads.push(&s.worker);
                threads.len() - 1
            }
        };
        if n > 0 {
            json.push_str(",\n");
        }
        json.push_str(&format!(
            "{{\"name\":\"{}\",\"ph\":\"X\",\"pid\":1,\"tid\":{tid},\"ts\":{:.3},\"dur\":{:.3},\"args\":{{\"batch_size\":\"{}\"}}}}",
            s.kind,
            s.start * 1e6,
            (s.end - s.start) * 1e6,
            s.batch
        ));
    }
    for (i, t) in threads.iter().enumerate() {
        json.push_str(&format!(
            ",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":{i},\"args\":{{\"name\":\"{t}\"}}}}"
        ));
    }
    json.push_str(&format!(
        ",\n{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{{\"name\":\"{topology}{}\"}}}}\n]}}\n",
        if all.len() > TRACE_STEPS { format!(" (first {TRACE_STEPS} of {} steps)", all.len()) } else { String::new() }
    ));
    write_file(&dir.join("timeline.trace.json"), &json)
}

/// Writes the run's pictures and `index.html` into `run_dir` (which holds one folder per
/// topology of `summaries`).
pub fn write(run_dir: &Path, scenario: &str, summaries: &[Summary], table: &[Vec<String>]) -> Io {
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    for s in summaries {
        let t = &s.topology.topology;
        let dir = run_dir.join(t);
        let cols = columns(&dir.join("requests.csv"), &["ttft_ms", "tpot_ms"], Some(("outcome", "completed")))?;
        ttft.push(Series { name: t.clone(), points: thin(cdf_points(&cols[0]), CDF_POINTS) });
        tpot.push(Series { name: t.clone(), points: thin(cdf_points(&cols[1]), CDF_POINTS) });
        timeline(t, &dir)?;
    }
    let slo = summaries.first().map(|s| s.slo);
    for (file, title, x, series, objective) in [
        ("ttft_cdf.svg", "TTFT of completed requests, to the p99", "TTFT (ms)", ttft, slo.map(|s| s.ttft_ms)),
        ("tpot_cdf.svg", "TPOT of completed requests, to the p99", "TPOT (ms)", tpot, slo.map(|s| s.tpot_ms)),
    ] {
        let mut series = series;
        // The axis ends at the largest p99 (or past the objective): the far tail would squash
        // the body of the curves; the CSVs have every value.
        let p99 = |s: &Series| s.points.iter().find(|p| p.1 >= 0.99).map(|p| p.0);
        let x_max = series.iter().filter_map(p99).fold(objective.unwrap_or(0.0) * 1.2, f64::max);
        if let Some(o) = objective {
            // The objective as a vertical line: a two-point series.
            series.push(Series { name: format!("SLO {o} ms"), points: vec![(o, 0.0), (o, 1.0)] });
        }
        let chart = LineChart {
            title,
            x_label: x,
            y_label: "share of requests at or below",
            series,
            steps: true,
            y_range: Some((0.0, 1.0)),
            y_mark: None,
            x_max: (x_max > 0.0).then_some(x_max),
        };
        write_file(&run_dir.join(file), &chart.render())?;
    }
    let mut html = page_head(&format!("pdsim: {scenario}"));
    html.push_str(&format!("<h1>{}</h1>\n", esc(scenario)));
    html.push_str(&html_table(table));
    html.push_str("<h2>Latency</h2>\n<img src=\"ttft_cdf.svg\"> <img src=\"tpot_cdf.svg\">\n");
    for s in summaries {
        let t = esc(&s.topology.topology);
        html.push_str(&format!(
            "<h2>{t}: {}</h2>\n<img src=\"{t}/timeline.svg\">\n<p>Files: <a href=\"{t}/requests.csv\">requests.csv</a>, \
             <a href=\"{t}/iterations.csv\">iterations.csv</a>, <a href=\"{t}/summary.csv\">summary.csv</a>, \
             <a href=\"{t}/timeline.trace.json\">timeline.trace.json</a> (open in ui.perfetto.dev)</p>\n",
            esc(&s.topology.layout)
        ));
    }
    html.push_str("</body></html>\n");
    write_file(&run_dir.join("index.html"), &html)
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn page_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1500px}} table{{border-collapse:collapse}} \
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} td:first-child,th:first-child{{text-align:left}} \
         img{{max-width:49%}}</style></head><body>\n",
        esc(title)
    )
}

/// A table whose first row is the header.
pub fn html_table(rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table>\n");
    for (i, r) in rows.iter().enumerate() {
        let tag = if i == 0 { "th" } else { "td" };
        out.push_str("<tr>");
        for c in r {
            out.push_str(&format!("<{tag}>{}</{tag}>", esc(c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}
