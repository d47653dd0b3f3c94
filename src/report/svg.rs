//! Small, dependency-free SVG charts: line charts (CDFs, attainment vs rate) and a Gantt
//! timeline. Written by hand rather than with a plotting crate: the charts are simple, the
//! output is deterministic text (diffable, byte-identical across runs), and the build stays
//! lean.

use std::fmt::Write;

/// Colors for series, in order (colour-blind-safe palette, Okabe–Ito).
pub const PALETTE: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"];

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart with linear axes (a step line for CDFs).
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series>,
    /// Draw steps (a CDF) instead of straight segments.
    pub steps: bool,
    /// Fixed y range, e.g. (0, 1) for shares; otherwise from the data.
    pub y_range: Option<(f64, f64)>,
    /// A horizontal reference line (e.g. the SLO target), with its label.
    pub y_mark: Option<(f64, String)>,
    /// Cut the x axis here (a CDF's far tail would squash the rest).
    pub x_max: Option<f64>,
}

/// The empirical CDF of `values` as chart points (x = value, y = share at or below it).
pub fn cdf_points(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    v.iter().enumerate().map(|(i, &x)| (x, (i + 1) as f64 / n)).collect()
}

/// About five round tick values covering [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= 6.0).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    (0..=12).map(|i| first + i as f64 * step).take_while(|t| *t <= hi + step * 1e-9).collect()
}

fn label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e5 || v.abs() < 1e-3 {
        format!("{v:.1e}")
    } else if v == v.trunc() {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn open(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">{}</text>\n",
        W / 2.0,
        esc(title)
    );
}

/// The plot frame and the x ticks (with vertical grid lines) for [x0, x1].
fn frame_and_x_ticks(out: &mut String, (x0, x1): (f64, f64)) {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let _ =
        writeln!(out, "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>");
    for t in ticks(x0, x1) {
        let x = LEFT + (t - x0) / (x1 - x0) * pw;
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + ph,
            TOP + ph + 16.0,
            label(t)
        );
    }
}

/// Axes with ticks and labels for the plot area mapping [x0,x1]×[y0,y1].
fn axes(out: &mut String, (x0, x1): (f64, f64), (y0, y1): (f64, f64), x_label: &str, y_label: &str) {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    frame_and_x_ticks(out, (x0, x1));
    for t in ticks(y0, y1) {
        let y = TOP + ph - (t - y0) / (y1 - y0) * ph;
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            label(t)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">{}</text>",
        LEFT + pw / 2.0,
        H - 12.0,
        esc(x_label),
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        esc(y_label)
    );
}

fn legend(out: &mut String, names: &[(&str, &str)]) {
    for (i, (name, color)) in names.iter().enumerate() {
        let y = TOP + 10.0 + i as f64 * 18.0;
        let x = W - RIGHT + 14.0;
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y - 10.0,
            x + 18.0,
            y,
            esc(name)
        );
    }
}

impl<'a> LineChart<'a> {
    /// CDFs of latencies (step lines, shares from 0 to 1) whose x axis ends at the largest p99
    /// of `series`, or at `x_at_least` if that is further: one far request would squash the
    /// body of the curves (the CSVs have every value).
    pub fn latency_cdfs(title: &'a str, x_label: &'a str, series: Vec<Series>, x_at_least: f64) -> LineChart<'a> {
        let p99 = |s: &Series| s.points.iter().find(|p| p.1 >= 0.99).map(|p| p.0);
        let x_max = series.iter().filter_map(p99).fold(x_at_least, f64::max);
        LineChart {
            title,
            x_label,
            y_label: "share of requests at or below",
            series,
            steps: true,
            y_range: Some((0.0, 1.0)),
            y_mark: None,
            x_max: (x_max > 0.0).then_some(x_max),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        open(&mut out, self.title);
        let x_cut = self.x_max.unwrap_or(f64::INFINITY);
        let shown = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite() && p.0 <= x_cut;
        let all = self.series.iter().flat_map(|s| s.points.iter()).filter(shown);
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in all {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if self.steps {
            x0 = x0.min(0.0);
        }
        if let Some((lo, hi)) = self.y_range {
            (y0, y1) = (lo, hi);
        }
        if x1 - x0 < 1e-12 {
            x1 = x0 + 1.0;
        }
        if y1 - y0 < 1e-12 {
            y1 = y0 + 1.0;
        }
        axes(&mut out, (x0, x1), (y0, y1), self.x_label, self.y_label);
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let py = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;
        if let Some((y, name)) = &self.y_mark {
            let _ = writeln!(
                out,
                "<line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"5 4\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666\">{}</text>",
                py(*y),
                LEFT + pw,
                py(*y),
                LEFT + 4.0,
                py(*y) - 4.0,
                esc(name)
            );
        }
        let mut names = Vec::new();
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            names.push((s.name.as_str(), color));
            let mut d = String::new();
            let mut prev_y = 0.0;
            for (k, &(x, y)) in s.points.iter().filter(shown).enumerate() {
                if k == 0 {
                    let start_y = if self.steps { 0.0 } else { y };
                    let _ = write!(d, "M{:.1},{:.1}", px(x), py(start_y));
                } else if self.steps {
                    let _ = write!(d, " H{:.1}", px(x));
                }
                if self.steps {
                    let _ = write!(d, " V{:.1}", py(y));
                } else if k > 0 {
                    let _ = write!(d, " L{:.1},{:.1}", px(x), py(y));
                }
                prev_y = y;
            }
            let _ = prev_y;
            let _ = writeln!(out, "<path d=\"{d}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>");
            if !self.steps {
                for &(x, y) in s.points.iter().filter(shown) {
                    let _ = writeln!(out, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>", px(x), py(y));
                }
            }
        }
        legend(&mut out, &names);
        out.push_str("</svg>\n");
        out
    }
}

/// One bar of a Gantt chart: a step of one worker.
pub struct Bar {
    pub row: usize,
    pub start: f64,
    pub end: f64,
    /// Index into the chart's kinds (its color and legend entry).
    pub kind: usize,
}

/// Worker steps over time, one row per worker.
pub struct Gantt<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub rows: Vec<String>,
    pub kinds: Vec<(&'a str, &'a str)>,
    pub bars: Vec<Bar>,
    pub window: (f64, f64),
}

impl Gantt<'_> {
    pub fn render(&self) -> String {
        let mut out = String::new();
        open(&mut out, self.title);
        let (x0, x1) = (self.window.0, self.window.1.max(self.window.0 + 1e-9));
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        frame_and_x_ticks(&mut out, (x0, x1));
        let row_h = ph / self.rows.len().max(1) as f64;
        for (i, name) in self.rows.iter().enumerate() {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT - 6.0,
                TOP + (i as f64 + 0.5) * row_h + 4.0,
                esc(name)
            );
        }
        for b in &self.bars {
            let (s, e) = (b.start.max(x0), b.end.min(x1));
            if e <= s {
                continue;
            }
            let x = LEFT + (s - x0) / (x1 - x0) * pw;
            // At least a hairline, so short steps stay visible.
            let w = ((e - s) / (x1 - x0) * pw).max(0.5);
            let _ = writeln!(
                out,
                "<rect x=\"{x:.2}\" y=\"{:.1}\" width=\"{w:.2}\" height=\"{:.1}\" fill=\"{}\"/>",
                TOP + b.row as f64 * row_h + row_h * 0.15,
                row_h * 0.7,
                self.kinds[b.kind].1
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT + pw / 2.0,
            H - 12.0,
            esc(self.x_label)
        );
        legend(&mut out, &self.kinds);
        out.push_str("</svg>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(ticks(0.0, 1000.0), vec![0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]);
        assert_eq!(label(2500.0), "2500");
        assert_eq!(label(0.25), "0.25");
    }

    #[test]
    fn charts_are_well_formed_svg() {
        let chart = LineChart {
            title: "TTFT <CDF>",
            x_label: "ms",
            y_label: "share",
            series: vec![Series { name: "a&b".into(), points: cdf_points(&[3.0, 1.0, 2.0]) }],
            steps: true,
            y_range: Some((0.0, 1.0)),
            y_mark: None,
            x_max: None,
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("TTFT &lt;CDF&gt;") && svg.contains("a&amp;b"));
        assert_eq!(cdf_points(&[3.0, 1.0]), vec![(1.0, 0.5), (3.0, 1.0)]);
        let g = Gantt {
            title: "t",
            x_label: "s",
            rows: vec!["w0".into()],
            kinds: vec![("prefill", PALETTE[0])],
            bars: vec![Bar { row: 0, start: 0.0, end: 1.0, kind: 0 }],
            window: (0.0, 2.0),
        };
        assert_eq!(g.render().matches("<rect").count(), 4, "background, frame, one bar, one legend key");
    }
}
