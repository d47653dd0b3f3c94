//! Least-squares fit of `y ≈ β·x` (DistServe's polynomial form has three features), with the
//! quality figures a user needs to trust it: R² and the largest residual.
//!
//! The fit minimizes *relative* residuals, Σ((y − ŷ)/y)², not absolute ones. Step times span
//! two orders of magnitude (a 16-token prefill ~20 ms, a 1024-token one ~2 s), and ordinary
//! least squares spends its freedom on the long steps: on the build machine it predicted a
//! two-thread 16-token prefill 41% short (12 ms against 20 ms measured) to gain a few ms at
//! 1024 tokens, and every short prompt of a light scenario inherited that. Weighted by 1/y, the
//! same points fit within 3% at 16 tokens and within 8% everywhere, and the simulator's error is
//! what a user reads: relative.

use serde::Serialize;

/// A fitted model and how well it fits its points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fit {
    /// One per feature; features a fit leaves out are 0.
    pub coeffs: [f64; 3],
    /// 1 − SS_res / SS_tot.
    pub r2: f64,
    /// Largest |measured − predicted|, ms.
    pub max_residual_ms: f64,
    /// Largest |measured − predicted| / measured.
    pub max_relative_residual: f64,
    pub points: usize,
}

/// Fits `y ≈ Σ βᵢ xᵢ` over the first `features` columns (the rest get 0), minimizing the
/// relative residuals (each point weighted by 1/y; points with y ≤ 0 count as plain ones):
/// normal equations, Gaussian elimination with partial pivoting. Columns are scaled to unit
/// size first so ΣL² and ΣL do not swamp each other. `None` with fewer points than features or
/// a singular system. R² and the residuals are reported on the unweighted points.
pub fn least_squares_with(features: usize, xs: &[[f64; 3]], ys: &[f64]) -> Option<Fit> {
    let n = features.clamp(1, 3);
    if xs.len() < n || xs.len() != ys.len() {
        return None;
    }
    let scale: Vec<f64> = (0..n).map(|j| xs.iter().map(|x| x[j].abs()).fold(0.0, f64::max).max(1e-300)).collect();
    let mut a = vec![vec![0.0f64; n + 1]; n];
    for (x, &y) in xs.iter().zip(ys) {
        let w = if y > 0.0 { 1.0 / y } else { 1.0 };
        let x: Vec<f64> = (0..n).map(|j| x[j] / scale[j] * w).collect();
        let y = y * w;
        for i in 0..n {
            for j in 0..n {
                a[i][j] += x[i] * x[j];
            }
            a[i][n] += x[i] * y;
        }
    }
    for col in 0..n {
        let pivot = (col..n).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for (row, r) in a.iter_mut().enumerate() {
            if row != col {
                let f = r[col] / pivot_row[col];
                for (x, p) in r.iter_mut().zip(&pivot_row).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    let mut coeffs = [0.0; 3];
    for (j, c) in coeffs.iter_mut().enumerate().take(n) {
        *c = a[j][n] / a[j][j] / scale[j];
    }
    let predict = |x: &[f64; 3]| coeffs[0] * x[0] + coeffs[1] * x[1] + coeffs[2] * x[2];
    let mean = ys.iter().sum::<f64>() / ys.len() as f64;
    let (mut ss_res, mut ss_tot, mut max_abs, mut max_rel) = (0.0, 0.0, 0.0f64, 0.0f64);
    for (x, &y) in xs.iter().zip(ys) {
        let r = y - predict(x);
        ss_res += r * r;
        ss_tot += (y - mean) * (y - mean);
        max_abs = max_abs.max(r.abs());
        if y > 0.0 {
            max_rel = max_rel.max(r.abs() / y);
        }
    }
    let r2 = if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { 1.0 };
    Some(Fit { coeffs, r2, max_residual_ms: max_abs, max_relative_residual: max_rel, points: xs.len() })
}

/// [`least_squares_with`] over all three features.
pub fn least_squares(xs: &[[f64; 3]], ys: &[f64]) -> Option<Fit> {
    least_squares_with(3, xs, ys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_known_coefficients() {
        // y = 3 + 0.02·L + 1e-5·L² exactly.
        let xs: Vec<[f64; 3]> = [16.0, 64.0, 256.0, 512.0, 1024.0].iter().map(|&l| [1.0, l, l * l]).collect();
        let ys: Vec<f64> = xs.iter().map(|x| 3.0 + 0.02 * x[1] + 1e-5 * x[2]).collect();
        let f = least_squares(&xs, &ys).unwrap();
        assert!((f.coeffs[0] - 3.0).abs() < 1e-6 && (f.coeffs[1] - 0.02).abs() < 1e-9, "{f:?}");
        assert!((f.coeffs[2] - 1e-5).abs() < 1e-12);
        assert!(f.r2 > 0.999_999 && f.max_residual_ms < 1e-6);
        // Noise lowers R² and shows in the residuals.
        let noisy: Vec<f64> = ys.iter().enumerate().map(|(i, y)| y * if i % 2 == 0 { 1.1 } else { 0.9 }).collect();
        let g = least_squares(&xs, &noisy).unwrap();
        assert!(g.r2 < 1.0 && g.max_relative_residual > 0.01);
        assert!(least_squares(&xs[..2], &ys[..2]).is_none());
        // Two features: y = 1 + 2x, the third column ignored.
        let xs: Vec<[f64; 3]> = [1.0, 2.0, 5.0].iter().map(|&x| [1.0, x, 99.0]).collect();
        let f = least_squares_with(2, &xs, &[3.0, 5.0, 11.0]).unwrap();
        assert!((f.coeffs[0] - 1.0).abs() < 1e-9 && (f.coeffs[1] - 2.0).abs() < 1e-9 && f.coeffs[2] == 0.0);
    }

    #[test]
    fn short_steps_keep_their_relative_accuracy() {
        // A two-thread prefill grid measured by `pdsim calibrate` on the build machine
        // (2026-11-29 07:33): (prompts, tokens each, ms). Unweighted least squares fitted it with
        // a negative base and put the 16-token step 41% short.
        let grid = [
            (1, 16, 19.75),
            (1, 32, 33.23),
            (1, 64, 61.12),
            (1, 128, 131.39),
            (1, 256, 293.66),
            (1, 384, 504.83),
            (1, 512, 724.84),
            (1, 768, 1277.19),
            (1, 1024, 1757.51),
            (2, 64, 129.51),
            (4, 64, 258.24),
            (2, 256, 616.61),
            (4, 128, 517.70),
            (8, 32, 221.48),
        ];
        let xs: Vec<[f64; 3]> = grid.iter().map(|&(n, l, _)| [1.0, (n * l) as f64, (n * l * l) as f64]).collect();
        let ys: Vec<f64> = grid.iter().map(|g| g.2).collect();
        let f = least_squares(&xs, &ys).unwrap();
        let short = f.coeffs[0] + 16.0 * f.coeffs[1] + 256.0 * f.coeffs[2];
        assert!((short / 19.75 - 1.0).abs() < 0.05, "16 tokens predicted {short:.2} ms, {f:?}");
        assert!(f.max_relative_residual < 0.10 && f.coeffs[0] > 0.0, "{f:?}");
        assert!(f.r2 > 0.99, "{f:?}");
    }
}
