//! The parallel driver the matrix kernels share. Their weights are packed by panels of 16
//! output columns; each task owns a panel (weight-stationary: it reads its weights from memory
//! once and sweeps every activation row), walked in calls of a few rows at a time.

use rayon::prelude::*;

/// Output columns of a panel: one 512-bit register of f32 results.
pub const PANEL: usize = 16;

/// The `m × n` output buffer, shared by tasks that write disjoint columns.
#[derive(Clone, Copy)]
pub struct OutPtr(pub *mut f32, pub usize);
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Writes output (row, col).
    ///
    /// # Safety
    /// The position must be inside the buffer and written by no other task.
    #[inline(always)]
    pub unsafe fn write(self, row: usize, col: usize, value: f32) {
        *self.0.add(row * self.1 + col) = value;
    }

    /// Where output (row, col) goes.
    ///
    /// # Safety
    /// What is written through it must be inside the buffer and written by no other task.
    #[inline(always)]
    pub unsafe fn at(self, row: usize, col: usize) -> *mut f32 {
        self.0.add(row * self.1 + col)
    }

    /// Stores R rows' 16 sums of panel `p` (only the first `cols` columns: a last panel may be
    /// partial), rows `r0..r0+R`: how every matrix kernel ends a call.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the positions must be inside the buffer and written by no
    /// other task.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn store_panel<const R: usize>(
        self,
        r0: usize,
        p: usize,
        cols: usize,
        acc: &[std::arch::x86_64::__m512; R],
    ) {
        use std::arch::x86_64::*;
        let mask: __mmask16 = if cols == PANEL { 0xFFFF } else { (1u16 << cols) - 1 };
        for (r, a) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(self.at(r0 + r, p * PANEL), mask, *a);
        }
    }

    /// Stores the first `cols` (at most 8) lanes of `v` at (row, col..): how the AVX2 kernels
    /// end a call, a half panel at a time.
    ///
    /// # Safety
    /// The CPU must have AVX; the positions must be inside the buffer and written by no other
    /// task.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    pub unsafe fn store_half(self, row: usize, col: usize, cols: usize, v: std::arch::x86_64::__m256) {
        use std::arch::x86_64::*;
        if cols == PANEL / 2 {
            _mm256_storeu_ps(self.at(row, col), v);
        } else {
            let mut lanes = [0f32; PANEL / 2];
            _mm256_storeu_ps(lanes.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(lanes.as_ptr(), self.at(row, col), cols);
        }
    }
}

/// Computes an `m × n` output panel by panel, in parallel over panels of [`PANEL`] columns.
/// `panel(p, r0, rows, out)` computes columns `p·PANEL..` (at most `n`) of rows `r0..r0+rows`,
/// with at most `max_rows` rows per call; it must write exactly those outputs.
pub fn for_each_panel(
    m: usize,
    n: usize,
    max_rows: usize,
    panel: impl Fn(usize, usize, usize, OutPtr) + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    let ptr = OutPtr(out.as_mut_ptr(), n);
    (0..n.div_ceil(PANEL)).into_par_iter().for_each(|p| {
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(max_rows);
            panel(p, r, rows, ptr);
            r += rows;
        }
    });
    out
}
