//! Number formatting for CSV and tables: fixed decimals from integers where possible, so the
//! same run always writes the same bytes on every machine.

/// Nanoseconds as seconds with 9 decimals (exact).
pub fn secs(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// Nanoseconds as milliseconds with 6 decimals (exact).
pub fn ms(ns: u64) -> String {
    format!("{}.{:06}", ns / 1_000_000, ns % 1_000_000)
}

/// Fractional nanoseconds as milliseconds with 6 decimals.
pub fn ms_f(ns: f64) -> String {
    format!("{:.6}", ns / 1e6)
}

/// A rate or ratio with 3 decimals.
pub fn f3(x: f64) -> String {
    format!("{x:.3}")
}

/// A share (0..1) with 4 decimals.
pub fn share(x: f64) -> String {
    format!("{x:.4}")
}

pub fn opt<T>(x: Option<T>, f: impl Fn(T) -> String) -> String {
    x.map(f).unwrap_or_default()
}

/// Quotes a CSV field when it needs it, and writes pdsim's own typographic signs in ASCII
/// (`2 x tp2`, `10.0 us`): a spreadsheet opens a UTF-8 file without a byte-order mark as its
/// local code page, and `×` became `Ã—`. Other text (a file path, a user's name) is kept.
pub fn csv_field(s: &str) -> String {
    let s = ascii_signs(s);
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn ascii_signs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '×' => out.push('x'),
            'µ' | 'μ' => out.push('u'),
            '−' | '–' | '—' => out.push('-'),
            '≤' => out.push_str("<="),
            '≥' => out.push_str(">="),
            '÷' => out.push('/'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_fixed_point() {
        assert_eq!(secs(1_000_000_500), "1.000000500");
        assert_eq!(ms(1_500), "0.001500");
        assert_eq!(ms(12_345_678_901), "12345.678901");
        assert_eq!(ms_f(2_500.4), "0.002500");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(
            csv_field("2 × tp2 fused, in-process handoff 10.0 µs"),
            "\"2 x tp2 fused, in-process handoff 10.0 us\""
        );
        assert_eq!(csv_field("/home/zoë/trace.csv"), "/home/zoë/trace.csv", "other text is kept");
    }
}
