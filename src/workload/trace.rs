//! Trace replay: arrivals and lengths read from a file.
//!
//! Two formats:
//! - CSV with a header `arrival_s,prompt_tokens,output_tokens[,class]`;
//! - Mooncake-style JSON lines: `{"timestamp": ms, "input_length": n, "output_length": m, ...}`
//!   (other keys such as `hash_ids` are ignored).
//!
//! Arrival times must not decrease. Errors name the file and line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One replayed request.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRow {
    pub arrival_ns: u64,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    pub class: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    Csv,
    Mooncake,
}

impl TraceFormat {
    /// `.csv` is CSV; `.jsonl` and `.json` are Mooncake JSON lines.
    pub fn from_extension(path: &Path) -> Option<TraceFormat> {
        match path.extension()?.to_str()? {
            "csv" => Some(TraceFormat::Csv),
            "jsonl" | "json" => Some(TraceFormat::Mooncake),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Row { path: PathBuf, line: u64, column: u64, message: String },
    #[error("{}: the trace holds no requests", path.display())]
    Empty { path: PathBuf },
}

/// Reads a whole trace, applying `speedup` (timestamps are divided by it).
pub fn read_trace(path: &Path, format: TraceFormat, speedup: f64) -> Result<Vec<TraceRow>, TraceError> {
    let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io { path: path.to_owned(), source })?;
    let rows = match format {
        TraceFormat::Csv => parse_csv(&text),
        TraceFormat::Mooncake => parse_mooncake(&text),
    }
    .map_err(|BadRow { line, column, message }| TraceError::Row {
        path: path.to_owned(),
        line,
        column,
        message,
    })?;
    if rows.is_empty() {
        return Err(TraceError::Empty { path: path.to_owned() });
    }
    Ok(rows
        .into_iter()
        .map(|mut r| {
            r.arrival_ns = (r.arrival_ns as f64 / speedup).round() as u64;
            r
        })
        .collect())
}

/// Where a row is wrong (1-based line and column) and why.
#[derive(Debug, PartialEq)]
struct BadRow {
    line: u64,
    column: u64,
    message: String,
}

fn bad(line: u64, column: u64, message: impl Into<String>) -> BadRow {
    BadRow { line, column, message: message.into() }
}

type RowResult = Result<Vec<TraceRow>, BadRow>;

/// Latest arrival a trace may hold: far beyond any study (about 31 years), and small enough
/// that nanosecond arithmetic on the virtual clock cannot overflow.
const MAX_ARRIVAL_S: f64 = 1e9;

/// The 1-based column where field `i` of the CSV line at byte `start` begins (fields split at
/// commas; quoted commas are not expected in a numeric trace).
fn field_column(text: &str, start: usize, i: usize) -> u64 {
    let line = text.get(start..).and_then(|t| t.lines().next()).unwrap_or("");
    let before: usize = line.split(',').take(i).map(|f| f.len() + 1).sum();
    before as u64 + 1
}

fn parse_csv(text: &str) -> RowResult {
    let mut rd = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = rd.headers().map_err(|e| bad(1, 1, e.to_string()))?.clone();
    let expected = ["arrival_s", "prompt_tokens", "output_tokens"];
    let got: Vec<&str> = headers.iter().collect();
    let ok = got.len() >= 3 && got.len() <= 4 && got[..3] == expected && (got.len() == 3 || got[3] == "class");
    if !ok {
        return Err(bad(
            1,
            1,
            format!("header is `{}`, expected `arrival_s,prompt_tokens,output_tokens[,class]`", got.join(",")),
        ));
    }
    let mut rows = Vec::new();
    let mut last = 0u64;
    for rec in rd.records() {
        let rec = rec.map_err(|e| bad(e.position().map_or(0, |p| p.line()), 1, e.to_string()))?;
        let (line, start) = rec.position().map_or((0, 0), |p| (p.line(), p.byte() as usize));
        let at = |i: usize| field_column(text, start, i);
        let field = |i: usize| rec.get(i).unwrap_or("");
        let arrival_s: f64 =
            field(0).parse().map_err(|_| bad(line, at(0), format!("arrival_s `{}` is not a number", field(0))))?;
        if !(0.0..=MAX_ARRIVAL_S).contains(&arrival_s) {
            return Err(bad(
                line,
                at(0),
                format!("arrival_s must be a number of seconds from 0 to {MAX_ARRIVAL_S:e}, got `{}`", field(0)),
            ));
        }
        let prompt_tokens = positive_int(field(1), "prompt_tokens").map_err(|m| bad(line, at(1), m))?;
        let output_tokens = positive_int(field(2), "output_tokens").map_err(|m| bad(line, at(2), m))?;
        let arrival_ns = (arrival_s * 1e9).round() as u64;
        check_order(arrival_ns, &mut last).map_err(|m| bad(line, at(0), m))?;
        let class = rec.get(3).filter(|c| !c.is_empty()).map(str::to_owned);
        rows.push(TraceRow { arrival_ns, prompt_tokens, output_tokens, class });
    }
    Ok(rows)
}

/// Most tokens a trace row may ask for: no model has a context this long, and sums of lengths
/// stay far from overflow.
const MAX_TOKENS: u64 = 1 << 32;

fn positive_int(s: &str, name: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(v) if (1..=MAX_TOKENS).contains(&v) => Ok(v),
        _ => Err(format!("{name} must be a whole number from 1 to {MAX_TOKENS}, got `{s}`")),
    }
}

fn check_order(arrival_ns: u64, last: &mut u64) -> Result<(), String> {
    if arrival_ns < *last {
        return Err("arrival times must not decrease (sort the trace by arrival time)".into());
    }
    *last = arrival_ns;
    Ok(())
}

#[derive(Deserialize)]
struct MooncakeRow {
    timestamp: f64,
    input_length: u64,
    output_length: u64,
}

fn parse_mooncake(text: &str) -> RowResult {
    let mut rows = Vec::new();
    let mut last = 0u64;
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let r: MooncakeRow = serde_json::from_str(raw).map_err(|e| {
            bad(
                line,
                e.column().max(1) as u64,
                // serde_json ends its message with its own "at line 1 column C", of this line
                // alone; the place is already in front.
                format!(
                    "{} (expected {{\"timestamp\": ms, \"input_length\": n, \"output_length\": m}})",
                    without_position(&e.to_string())
                ),
            )
        })?;
        // Semantic errors point at the key.
        let at = |key: &str| raw.find(&format!("\"{key}\"")).map_or(1, |i| i as u64 + 1);
        if !(0.0..=MAX_ARRIVAL_S * 1e3).contains(&r.timestamp) {
            return Err(bad(
                line,
                at("timestamp"),
                format!(
                    "timestamp must be a number of milliseconds from 0 to {:e}, got {}",
                    MAX_ARRIVAL_S * 1e3,
                    r.timestamp
                ),
            ));
        }
        for (key, v) in [("input_length", r.input_length), ("output_length", r.output_length)] {
            if !(1..=MAX_TOKENS).contains(&v) {
                return Err(bad(line, at(key), format!("{key} must be from 1 to {MAX_TOKENS}, got {v}")));
            }
        }
        let arrival_ns = (r.timestamp * 1e6).round() as u64;
        check_order(arrival_ns, &mut last).map_err(|m| bad(line, at("timestamp"), m))?;
        rows.push(TraceRow { arrival_ns, prompt_tokens: r.input_length, output_tokens: r.output_length, class: None });
    }
    Ok(rows)
}

/// A serde_json message without its trailing " at line L column C".
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => &message[..i],
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_and_without_class() {
        let rows = parse_csv("arrival_s,prompt_tokens,output_tokens,class\n0,10,2,chat\n0.5,20,3,\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].class.as_deref(), Some("chat"));
        assert_eq!(rows[1].arrival_ns, 500_000_000);
        assert_eq!(rows[1].class, None);
        assert_eq!(parse_csv("arrival_s,prompt_tokens,output_tokens\n1,1,1\n").unwrap().len(), 1);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let at = |t: &str| {
            let e = parse_csv(t).unwrap_err();
            (e.line, e.column)
        };
        assert_eq!(at("a,b,c\n"), (1, 1));
        assert_eq!(at("arrival_s,prompt_tokens,output_tokens\n0,1,1\n0,x,1\n"), (3, 3));
        assert_eq!(at("arrival_s,prompt_tokens,output_tokens\n1,1,1\n0,1,1\n"), (3, 1));
        assert_eq!(at("arrival_s,prompt_tokens,output_tokens\n-1,1,1\n"), (2, 1));
        assert_eq!(at("arrival_s,prompt_tokens,output_tokens\n0.25,10,0\n"), (2, 9));
        assert_eq!(at("arrival_s,prompt_tokens,output_tokens\n1e300,1,1\n"), (2, 1));
    }

    #[test]
    fn mooncake_rows() {
        let rows = parse_mooncake(
            "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 2, \"hash_ids\": [1]}\n\
             {\"timestamp\": 1500, \"input_length\": 7, \"output_length\": 1}\n",
        )
        .unwrap();
        assert_eq!(rows[1].arrival_ns, 1_500_000_000);
        assert_eq!(rows[1].prompt_tokens, 7);
        let err = parse_mooncake("{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 2}\n{\"timestamp\": 1}\n")
            .unwrap_err();
        assert_eq!((err.line, err.column), (2, 16));
        let err = parse_mooncake("{\"timestamp\": -5, \"input_length\": 5, \"output_length\": 2}\n").unwrap_err();
        assert_eq!((err.line, err.column), (1, 2));
    }
}
