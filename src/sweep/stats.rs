//! Mean and confidence interval over repeated runs (different seeds).

use serde::Serialize;

/// Mean with the half-width of its 95% confidence interval (Student's t); no interval from
/// one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub ci95: Option<f64>,
    pub n: usize,
}

impl Estimate {
    /// `± x` with `digits` decimals, or `(one seed)`.
    pub fn interval(&self, digits: usize) -> String {
        match self.ci95 {
            Some(c) => format!("± {c:.digits$}"),
            None => "(one seed)".into(),
        }
    }
}

/// Two-sided 95% t quantiles for 1..=10 degrees of freedom; 1.96 beyond.
const T95: [f64; 10] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228];

pub fn estimate(xs: &[f64]) -> Estimate {
    let n = xs.len();
    if n == 0 {
        return Estimate { mean: f64::NAN, ci95: None, n };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Estimate { mean, ci95: None, n };
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T95.get(n - 2).copied().unwrap_or(1.96);
    Estimate { mean, ci95: Some(t * (var / n as f64).sqrt()), n }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_interval() {
        let e = estimate(&[1.0, 2.0, 3.0]);
        assert_eq!(e.mean, 2.0);
        // sd = 1, t(2) = 4.303, √3.
        assert!((e.ci95.unwrap() - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(e.interval(2), "± 2.48");
        assert_eq!(estimate(&[5.0]).ci95, None, "no interval from one run");
        assert_eq!(estimate(&[5.0]).interval(3), "(one seed)");
    }
}
