//! Decode step time measured per batch size, for calibration profiles.
//!
//! DistServe's decode form (base + per_ctx_token·Σctx + per_seq·B) is one plane through every
//! batch size. The real CPU engine is not a plane in B: on the build machine a batch of two
//! cost barely more than one (6.1 against 5.7 ms at two threads), a batch of four a good deal
//! more, and from eight on each sequence added a steady 1–1.5 ms. The plane fitted through
//! batches 2–16 put batch 2 about 10% short at every context, and the fused worker, which
//! decodes two or three sequences at a time most of a run, inherited that.
//!
//! So `pdsim calibrate` fits a line in Σctx at each batch size of its grid, and a step of B
//! sequences with mean context m takes, between two measured sizes B₀ < B < B₁, the linear
//! interpolation in B of their lines at the same mean context (each at Σctx = Bᵢ·m). Past the
//! largest size it extrapolates along the last two; below the smallest it takes the smallest's
//! line.
//!
//! A batch-1 step may take a curve in context instead of its line ([`BatchLines::with_single`]):
//! `calibrate` times one sequence decoding back to back over contexts 65–464, as runs decode,
//! and the median per 50-token bin is a point. Its grid cannot show the low end: the batch-1
//! point of its shortest context decodes through every batch size's turn, so its steps span
//! contexts 33–232. On the AMX Xeon a two-thread batch-1 step took 6.9 ms at context 75 and 8.4
//! at 175, then rose 0.004–0.007 ms a token to 10.5 at 525 (back to back, in a run): the
//! grid's line, 8.2 ms at 75, put the light scenarios' fused TPOT p50s 6–13% high.

/// One measured batch size: decode step time = base_ms + per_ctx_token_ms · Σctx.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BatchLine {
    pub batch: u64,
    pub base_ms: f64,
    pub per_ctx_token_ms: f64,
}

impl BatchLine {
    fn at_mean_context(&self, mean_ctx: f64) -> (f64, f64) {
        (self.base_ms, self.per_ctx_token_ms * self.batch as f64 * mean_ctx)
    }
}

/// Lines at distinct batch sizes, in increasing batch order, and the batch-1 curve when
/// measured: `[context, ms]` in increasing context.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchLines(Vec<BatchLine>, Vec<(f64, f64)>);

impl BatchLines {
    /// Sorts the lines by batch size; errors on none, a batch of 0, a repeated size or a
    /// coefficient that is not finite.
    pub fn new(mut lines: Vec<BatchLine>) -> Result<BatchLines, String> {
        if lines.is_empty() {
            return Err("decode_by_batch has no lines".into());
        }
        lines.sort_by_key(|l| l.batch);
        if lines[0].batch == 0 {
            return Err("decode_by_batch: batch must be at least 1".into());
        }
        if let Some(w) = lines.windows(2).find(|w| w[0].batch == w[1].batch) {
            return Err(format!("decode_by_batch: batch {} appears twice", w[0].batch));
        }
        if let Some(l) =
            lines.iter().find(|l| ![l.base_ms, l.per_ctx_token_ms].iter().all(|x| x.is_finite() && x.abs() <= 1e9))
        {
            return Err(format!("decode_by_batch: the line for batch {} has an invalid coefficient", l.batch));
        }
        Ok(BatchLines(lines, Vec::new()))
    }

    /// Batch-1 steps take `points` (`[context, ms]`, in increasing context): interpolated
    /// between them, the first point's time below the first (runs' steps are flat there), and
    /// past the last its time plus the first line's slope. Errors on points out of order or out
    /// of range.
    pub fn with_single(self, points: Vec<(f64, f64)>) -> Result<BatchLines, String> {
        if !points.iter().all(|&(c, ms)| (0.0..=1e9).contains(&c) && ms > 0.0 && ms <= 1e9) {
            return Err("decode_single_by_context: contexts must lie in 0 to 1e9 and times in (0, 1e9] ms".into());
        }
        if points.windows(2).any(|w| w[1].0 <= w[0].0) {
            return Err("decode_single_by_context: the contexts do not increase".into());
        }
        Ok(BatchLines(self.0, points))
    }

    pub fn lines(&self) -> &[BatchLine] {
        &self.0
    }

    /// The batch-1 curve (empty when not measured).
    pub fn single(&self) -> &[(f64, f64)] {
        &self.1
    }

    /// Every coefficient × `f`.
    pub fn scaled(&self, f: f64) -> BatchLines {
        BatchLines(
            self.0
                .iter()
                .map(|l| BatchLine { base_ms: l.base_ms * f, per_ctx_token_ms: l.per_ctx_token_ms * f, ..*l })
                .collect(),
            self.1.iter().map(|&(c, ms)| (c, ms * f)).collect(),
        )
    }

    /// A decode step of `seqs` sequences over `ctx_sum` context tokens: (fixed, variable) ms,
    /// so that a mixed step can share one fixed overhead with its prefill part.
    pub fn parts(&self, seqs: u64, ctx_sum: u64) -> (f64, f64) {
        if seqs == 0 {
            return (0.0, 0.0);
        }
        let lines = &self.0;
        let mean = ctx_sum as f64 / seqs as f64;
        let first = &lines[0];
        if seqs == 1 && !self.1.is_empty() {
            let total = self.single_at(ctx_sum as f64, first.per_ctx_token_ms);
            let base = first.base_ms.clamp(0.0, total);
            return (base, total - base);
        }
        if lines.len() == 1 || seqs <= first.batch {
            // Below the grid (or a grid of one): the nearest line at this step's own Σctx.
            return (first.base_ms, first.per_ctx_token_ms * ctx_sum as f64);
        }
        // The bracketing pair, or the last two beyond the grid.
        let hi = lines.iter().position(|l| l.batch >= seqs).unwrap_or(lines.len() - 1).max(1);
        let (a, b) = (&lines[hi - 1], &lines[hi]);
        let w = (seqs - a.batch) as f64 / (b.batch - a.batch) as f64;
        let ((base_a, var_a), (base_b, var_b)) = (a.at_mean_context(mean), b.at_mean_context(mean));
        let base = base_a + w * (base_b - base_a);
        let var = var_a + w * (var_b - var_a);
        // Extrapolation along two noisy lines can dip below zero at the far end; a step still
        // takes no less than nothing.
        (base.max(0.0), var.max(0.0))
    }

    /// The batch-1 curve at `ctx`; past its last point, along `slope` ms a token.
    fn single_at(&self, ctx: f64, slope: f64) -> f64 {
        let (last_ctx, last_ms) = self.1[self.1.len() - 1];
        match ctx > last_ctx {
            true => last_ms + slope.max(0.0) * (ctx - last_ctx),
            false => super::wake::curve(&self.1, last_ms, ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> BatchLines {
        BatchLines::new(vec![
            BatchLine { batch: 4, base_ms: 8.0, per_ctx_token_ms: 0.002 },
            BatchLine { batch: 1, base_ms: 5.0, per_ctx_token_ms: 0.01 },
            BatchLine { batch: 2, base_ms: 5.5, per_ctx_token_ms: 0.005 },
        ])
        .unwrap()
    }

    fn total(l: &BatchLines, seqs: u64, ctx: u64) -> f64 {
        let (a, b) = l.parts(seqs, ctx);
        a + b
    }

    #[test]
    fn measured_sizes_take_their_own_line() {
        let l = lines();
        assert_eq!(l.lines().iter().map(|l| l.batch).collect::<Vec<_>>(), [1, 2, 4], "sorted");
        assert!((total(&l, 1, 100) - 6.0).abs() < 1e-12);
        assert!((total(&l, 2, 200) - 6.5).abs() < 1e-12);
        assert_eq!(l.parts(4, 400), (8.0, 0.8));
        assert_eq!(l.parts(0, 0), (0.0, 0.0));
    }

    #[test]
    fn between_sizes_interpolates_at_the_same_mean_context() {
        let l = lines();
        // Batch 3 at mean context 100: halfway between batch 2 at Σ200 (5.5 + 1.0) and batch 4
        // at Σ400 (8.0 + 0.8).
        let (base, var) = l.parts(3, 300);
        assert!((base - 6.75).abs() < 1e-12 && (var - 0.9).abs() < 1e-12, "{base} {var}");
    }

    #[test]
    fn beyond_the_grid_extrapolates_along_the_last_two() {
        let l = lines();
        // Batch 6 at mean context 100: batch 4 (8.8) plus one more step of (8.8 − 6.5).
        assert!((total(&l, 6, 600) - 11.1).abs() < 1e-12);
        // One line: that line at the step's own context, whatever the batch.
        let one = BatchLines::new(vec![BatchLine { batch: 2, base_ms: 3.0, per_ctx_token_ms: 0.01 }]).unwrap();
        assert!((total(&one, 5, 1000) - 13.0).abs() < 1e-12);
        assert!((total(&one, 1, 100) - 4.0).abs() < 1e-12);
        // A falling extrapolation stops at zero.
        let falling = BatchLines::new(vec![
            BatchLine { batch: 1, base_ms: 10.0, per_ctx_token_ms: 0.0 },
            BatchLine { batch: 2, base_ms: 1.0, per_ctx_token_ms: 0.0 },
        ])
        .unwrap();
        assert_eq!(falling.parts(5, 0), (0.0, 0.0));
    }

    #[test]
    fn a_batch_1_curve_replaces_the_batch_1_line_and_only_it() {
        let l = lines().with_single(vec![(100.0, 4.0), (200.0, 6.0), (400.0, 7.0)]).unwrap();
        // Between points: interpolated; below the first: the first's time.
        assert!((total(&l, 1, 150) - 5.0).abs() < 1e-12);
        assert!((total(&l, 1, 300) - 6.5).abs() < 1e-12);
        assert!((total(&l, 1, 20) - 4.0).abs() < 1e-12);
        // Past the last: its time plus the batch-1 line's slope (0.01 ms a token).
        assert!((total(&l, 1, 600) - 9.0).abs() < 1e-12);
        // The fixed part stays the line's (a mixed step shares it), never above the total.
        assert_eq!(l.parts(1, 100), (4.0, 0.0));
        assert_eq!(l.parts(1, 200).0, 5.0);
        // Other batch sizes keep their lines; a pace scales the curve too.
        assert_eq!(l.parts(4, 400), (8.0, 0.8));
        assert!((total(&l.scaled(2.0), 1, 150) - 10.0).abs() < 1e-12);
        assert_eq!(l.single().len(), 3);
        assert!(lines().single().is_empty());
    }

    #[test]
    fn a_bad_batch_1_curve_is_refused() {
        assert!(lines().with_single(vec![(200.0, 6.0), (100.0, 4.0)]).unwrap_err().contains("do not increase"));
        assert!(lines().with_single(vec![(100.0, 0.0)]).unwrap_err().contains("times"));
        assert!(lines().with_single(vec![(f64::NAN, 1.0)]).is_err());
    }

    #[test]
    fn bad_lines_are_refused() {
        let line = BatchLine { batch: 2, base_ms: 1.0, per_ctx_token_ms: 0.0 };
        assert!(BatchLines::new(vec![]).is_err());
        assert!(BatchLines::new(vec![BatchLine { batch: 0, ..line }]).unwrap_err().contains("at least 1"));
        assert!(BatchLines::new(vec![line, line]).unwrap_err().contains("twice"));
        assert!(BatchLines::new(vec![BatchLine { base_ms: f64::NAN, ..line }]).unwrap_err().contains("batch 2"));
        assert_eq!(lines().scaled(2.0).parts(4, 400), (16.0, 1.6));
    }
}
