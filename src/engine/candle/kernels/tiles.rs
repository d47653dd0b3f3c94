//! The parallel driver both matrix kernels share: output columns split into tasks (weight-
//! stationary: a task reads its weight rows once and sweeps every activation row), each task
//! walked in register tiles of up to 4 × 4 outputs; or, for kernels whose weights are packed
//! by panels of 16 output columns, one task per panel ([`for_each_panel`]).

use rayon::prelude::*;

pub const TILE_ROWS: usize = 4;
pub const TILE_COLS: usize = 4;
/// Output columns per parallel task.
const COLS_PER_TASK: usize = 16;

/// A block of outputs: rows `r0..r0+rows`, columns `c0..c0+cols`.
#[derive(Clone, Copy, Debug)]
pub struct Tile {
    pub r0: usize,
    pub rows: usize,
    pub c0: usize,
    pub cols: usize,
}

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

    /// Output columns per row.
    pub fn cols(self) -> usize {
        self.1
    }
}

/// Computes an `m × n` output by calling `tile` on every tile, in parallel over column runs.
/// `tile` must write exactly its tile's outputs through the given pointer.
pub fn for_each_tile(m: usize, n: usize, tile: impl Fn(Tile, OutPtr) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    let ptr = OutPtr(out.as_mut_ptr(), n);
    (0..n.div_ceil(COLS_PER_TASK)).into_par_iter().for_each(|task| {
        let c_end = ((task + 1) * COLS_PER_TASK).min(n);
        let mut c = task * COLS_PER_TASK;
        while c < c_end {
            let cols = (c_end - c).min(TILE_COLS);
            let mut r = 0;
            while r < m {
                let rows = (m - r).min(TILE_ROWS);
                tile(Tile { r0: r, rows, c0: c, cols }, ptr);
                r += rows;
            }
            c += cols;
        }
    });
    out
}

/// Output columns of a panel: one 512-bit register of f32 results.
pub const PANEL: usize = 16;

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
