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
pub(crate) const CDF_POINTS: usize = 1000;
/// Worker steps in a timeline window.
const WINDOW_STEPS: usize = 400;
/// Most steps written to a Chrome trace (the first ones), to keep it openable.
const TRACE_STEPS: usize = 200_000;

type Io = std::io::Result<()>;

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Writes `path` in one piece (under a temporary name, then renamed).
pub(crate) fn write_file(path: &Path, text: &str) -> Io {
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
pub(crate) fn thin(points: Vec<(f64, f64)>, n: usize) -> Vec<(f64, f64)> {
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

/// Streams the steps of `iterations.csv` (in the order written: by completion) to `f`, which
/// returns false to stop. Nothing is held: a million-step run is read in constant memory.
fn each_step(path: &Path, mut f: impl FnMut(usize, Step) -> bool) -> Io {
    let mut rd = csv::Reader::from_path(path).map_err(io_err)?;
    let h = rd.headers().map_err(io_err)?.clone();
    let at =
        |c: &str| h.iter().position(|x| x == c).ok_or_else(|| io_err(format!("{}: no column {c}", path.display())));
    let (w, k, s, e, b) = (at("worker")?, at("kind")?, at("start_s")?, at("end_s")?, at("batch_size")?);
    let mut rec = csv::StringRecord::new();
    let mut i = 0;
    while rd.read_record(&mut rec).map_err(io_err)? {
        let num = |j: usize| rec.get(j).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        let step = Step {
            worker: rec.get(w).unwrap_or("").to_owned(),
            kind: rec.get(k).unwrap_or("").to_owned(),
            start: num(s),
            end: num(e),
            batch: rec.get(b).unwrap_or("").to_owned(),
        };
        if !f(i, step) {
            break;
        }
        i += 1;
    }
    Ok(())
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
/// in steady state) and the Chrome trace of a topology's steps, in three streaming passes.
fn timeline(topology: &str, dir: &Path) -> Io {
    let path = dir.join("iterations.csv");
    // Pass 1: count the steps, name the workers, and write the Chrome trace as we go:
    // complete events ("ph": "X") in microseconds, one thread per worker.
    let tmp = dir.join("timeline.trace.json.partial");
    let mut json = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    json.write_all(b"{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n")?;
    let mut threads: Vec<String> = Vec::new();
    let (mut n, mut written) = (0usize, Ok(()));
    each_step(&path, |i, s| {
        n = i + 1;
        if i < TRACE_STEPS && written.is_ok() {
            let tid = threads.iter().position(|t| *t == s.worker).unwrap_or_else(|| {
                threads.push(s.worker.clone());
                threads.len() - 1
            });
            written = write!(
                json,
                "{}{{\"name\":\"{}\",\"ph\":\"X\",\"pid\":1,\"tid\":{tid},\"ts\":{:.3},\"dur\":{:.3},\"args\":{{\"batch_size\":\"{}\"}}}}",
                if i > 0 { ",\n" } else { "" },
                s.kind,
                s.start * 1e6,
                (s.end - s.start) * 1e6,
                s.batch
            );
        } else if !threads.contains(&s.worker) {
            threads.push(s.worker.clone());
        }
        true
    })?;
    written?;
    for (i, t) in threads.iter().enumerate() {
        write!(
            json,
            ",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":{i},\"args\":{{\"name\":\"{t}\"}}}}"
        )?;
    }
    let note = if n > TRACE_STEPS { format!(" (first {TRACE_STEPS} of {n} steps)") } else { String::new() };
    write!(
        json,
        ",\n{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{{\"name\":\"{topology}{note}\"}}}}\n]}}\n"
    )?;
    json.into_inner().map_err(io_err)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("timeline.trace.json"))?;

    // Pass 2: the window's time span, from the steps around the middle.
    let from = n.saturating_sub(WINDOW_STEPS) / 2;
    let (mut w0, mut w1) = (f64::MAX, f64::MIN);
    each_step(&path, |i, s| {
        if i >= from {
            (w0, w1) = (w0.min(s.start), w1.max(s.end));
        }
        i + 1 < from + WINDOW_STEPS
    })?;
    let window = if w0 <= w1 { (w0, w1) } else { (0.0, 1.0) };
    // Pass 3: every step that overlaps the window (some started before it).
    let mut rows = threads;
    rows.sort_by_key(|w| worker_order(w));
    let row_of: BTreeMap<String, usize> = rows.iter().enumerate().map(|(i, w)| (w.clone(), i)).collect();
    let kind_of = |k: &str| KINDS.iter().position(|(n, _)| *n == k).unwrap_or(2);
    let mut bars = Vec::new();
    each_step(&path, |_, s| {
        if s.end >= window.0 && s.start <= window.1 {
            bars.push(Bar { row: row_of[&s.worker], start: s.start, end: s.end, kind: kind_of(&s.kind) });
        }
        true
    })?;
    let title = format!("{topology}: worker steps, {:.3}–{:.3} s", window.0, window.1);
    let gantt =
        Gantt { title: &title, x_label: "time since the run started (s)", rows, kinds: KINDS.to_vec(), bars, window };
    write_file(&dir.join("timeline.svg"), &gantt.render())
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
        if let Some(o) = objective {
            // The objective as a vertical line: a two-point series.
            series.push(Series { name: format!("SLO {o} ms"), points: vec![(o, 0.0), (o, 1.0)] });
        }
        // The axis ends at the largest p99, or past the objective.
        let chart = LineChart::latency_cdfs(title, x, series, objective.unwrap_or(0.0) * 1.2);
        write_file(&run_dir.join(file), &chart.render())?;
    }
    let mut html = page_head(&format!("pdsim: {scenario}"));
    html.push_str(&format!("<h1>{}</h1>\n", esc(scenario)));
    html.push_str(&html_table(table));
    html.push_str("<p>Every topology's row: <a href=\"summary.csv\">summary.csv</a>.</p>\n");
    html.push_str("<h2>Latency</h2>\n<img src=\"ttft_cdf.svg\"> <img src=\"tpot_cdf.svg\">\n");
    for s in summaries {
        let name = &s.topology.topology;
        let t = esc(name);
        // Every file the topology's folder has, in the order the README describes them.
        let links: Vec<String> = TOPOLOGY_FILES
            .iter()
            .filter(|(f, _)| run_dir.join(name).join(f).exists())
            .map(|(f, note)| format!("<a href=\"{t}/{f}\">{f}</a>{note}"))
            .collect();
        html.push_str(&format!(
            "<h2>{t}: {}</h2>\n<img src=\"{t}/timeline.svg\">\n<p>Files: {}</p>\n",
            esc(&s.topology.layout),
            links.join(", ")
        ));
    }
    html.push_str("</body></html>\n");
    write_file(&run_dir.join("index.html"), &html)
}

/// A topology's files the page links when they exist, each with a note.
const TOPOLOGY_FILES: [(&str, &str); 8] = [
    ("requests.csv", ""),
    ("iterations.csv", ""),
    ("summary.csv", ""),
    ("timeline.trace.json", " (open in ui.perfetto.dev)"),
    ("events.csv", " (worker failures)"),
    ("outputs.jsonl", " (the generated text)"),
    ("trace.csv", " (what ran, to replay in the simulator)"),
    ("host.csv", " (the CPU share the hypervisor took)"),
];

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
