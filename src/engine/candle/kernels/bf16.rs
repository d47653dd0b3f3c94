//! bf16 weight matrices multiplied with AVX-512 BF16 dot products (`vdpbf16ps`: 32 products
//! per instruction, accumulated in f32), with a portable fallback. Activations are rounded to
//! bf16 on the way in.
//!
//! The weights are packed by panels of 16 output columns, as the Q8 kernel's are: vector `i` of
//! a panel holds inputs `2i, 2i+1` of its 16 columns, so one `vdpbf16ps` adds two products to
//! each of the 16 columns' sums for one activation row, whose two values are broadcast from
//! memory. The sums stay in lanes to the end: no horizontal sums (with row-major weights, each
//! output ended in a 16-lane reduction, about a third of the instructions at SmolLM2's widths).
//!
//! Weight-stationary: a task owns a panel and sweeps every activation row. Each output is
//! computed by the same instruction sequence whatever rows are beside it, so a row's result
//! does not depend on the rows batched with it.

use super::tiles::{for_each_panel, OutPtr, PANEL};

/// Inputs per 32-bit lane of a dot product instruction.
const PAIR: usize = 2;

/// Activation rows per kernel call (one register each).
const ROWS_PER_CALL: usize = 16;

/// Round-to-nearest-even f32 → bf16 bits.
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// A weight matrix `[out, in]` in bf16, packed by panels.
#[derive(Debug, Clone)]
pub struct Bf16Matrix {
    out: usize,
    inp: usize,
    /// Per panel, per input pair: 16 columns × 2 values (0 for a last panel's padding).
    packed: Vec<u16>,
}

impl Bf16Matrix {
    pub fn from_f32(data: &[f32], out: usize, inp: usize) -> Bf16Matrix {
        assert_eq!(inp % PAIR, 0, "bf16 rows need an even number of columns, got {inp}");
        assert_eq!(data.len(), out * inp);
        let mut packed = vec![0u16; out.div_ceil(PANEL) * PANEL * inp];
        for (o, row) in data.chunks_exact(inp).enumerate() {
            let (p, col) = (o / PANEL, o % PANEL);
            for (i, &v) in row.iter().enumerate() {
                packed[p * PANEL * inp + (i / PAIR) * PANEL * PAIR + col * PAIR + i % PAIR] = to_bf16(v);
            }
        }
        Bf16Matrix { out, inp, packed }
    }

    pub fn out_features(&self) -> usize {
        self.out
    }

    /// `x` (`m × in`, row-major) times the transposed matrix: `m × out`, row-major.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let xb: Vec<u16> = x.iter().map(|&v| to_bf16(v)).collect();
        let fast = super::cpu::bf16();
        // Safety: for_each_panel hands each (panel, rows) to exactly one call.
        for_each_panel(m, self.out, ROWS_PER_CALL, |p, r0, rows, out| unsafe {
            panel(self, &xb, p, r0, rows, out, fast)
        })
    }

    /// Output columns of panel `p` (16 but for a last, partial panel).
    fn panel_cols(&self, p: usize) -> usize {
        (self.out - p * PANEL).min(PANEL)
    }
}

unsafe fn panel(w: &Bf16Matrix, x: &[u16], p: usize, r0: usize, rows: usize, out: OutPtr, fast: bool) {
    #[cfg(target_arch = "x86_64")]
    if fast {
        return x86::panel(w, x, p, r0, rows, out);
    }
    let k = w.inp;
    let base = &w.packed[p * PANEL * k..(p + 1) * PANEL * k];
    for r in r0..r0 + rows {
        let xr = &x[r * k..(r + 1) * k];
        for col in 0..w.panel_cols(p) {
            let mut sum = 0f32;
            for (i, &xv) in xr.iter().enumerate() {
                sum += from_bf16(xv) * from_bf16(base[(i / PAIR) * PANEL * PAIR + col * PAIR + i % PAIR]);
            }
            out.write(r, p * PANEL + col, sum);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::tiles::{OutPtr, PANEL};
    use super::{Bf16Matrix, PAIR};

    /// Rows `r0..r0+rows` (at most 16) of panel `p`.
    pub unsafe fn panel(w: &Bf16Matrix, x: &[u16], p: usize, r0: usize, rows: usize, out: OutPtr) {
        macro_rules! by_rows {
            ($($n:literal)*) => {
                match rows {
                    $($n => kernel::<$n>(w, x, p, r0, out),)*
                    _ => unreachable!("at most {} rows per call, got {rows}", super::ROWS_PER_CALL),
                }
            };
        }
        by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    }

    /// R activation rows × the panel's 16 columns: per input pair, one weight vector for all R
    /// rows, each row's pair broadcast from memory.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::needless_range_loop)] // indexes register arrays of compile-time size
    unsafe fn kernel<const R: usize>(w: &Bf16Matrix, x: &[u16], p: usize, r0: usize, out: OutPtr) {
        let k = w.inp;
        let wp = w.packed.as_ptr().add(p * PANEL * k);
        let xp = x.as_ptr().add(r0 * k);
        let mut acc = [_mm512_setzero_ps(); R];
        for i in 0..k / PAIR {
            let wv: __m512bh = std::mem::transmute(_mm512_loadu_si512(wp.add(i * PANEL * PAIR) as *const _));
            for r in 0..R {
                let pair = (xp.add(r * k + i * PAIR) as *const i32).read_unaligned();
                let xv: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                acc[r] = _mm512_dpbf16_ps(acc[r], wv, xv);
            }
        }
        let cols = w.panel_cols(p);
        let mask: __mmask16 = if cols == PANEL { 0xFFFF } else { (1u16 << cols) - 1 };
        for r in 0..R {
            _mm512_mask_storeu_ps(out.at(r0 + r, p * PANEL), mask, acc[r]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_f32_and_is_batch_invariant() {
        // 37 rows: calls of 16, 16 and 5; 21 columns: a partial last panel.
        let (m, k, n) = (37, 98, 21);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 53) % 89) as f32 / 89.0 - 0.5).collect();
        let q = Bf16Matrix::from_f32(&w, n, k);
        let got = q.matmul(&x, m);
        for r in 0..m {
            for c in 0..n {
                let want: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                assert!((got[r * n + c] - want).abs() < 0.05, "({r},{c}) {} vs {want}", got[r * n + c]);
            }
        }
        for r in [0, 15, 16, 36] {
            assert_eq!(&got[r * n..(r + 1) * n], &q.matmul(&x[r * k..(r + 1) * k], 1)[..], "row {r}");
        }
        // The portable path computes the same products of the same bf16 values.
        let xb: Vec<u16> = x.iter().map(|&v| to_bf16(v)).collect();
        let mut slow = vec![f32::NAN; m * n];
        for p in 0..n.div_ceil(PANEL) {
            unsafe { panel(&q, &xb, p, 0, m, OutPtr(slow.as_mut_ptr(), n), false) };
        }
        for (f, s) in got.iter().zip(&slow) {
            assert!((f - s).abs() <= 1e-4 * s.abs().max(1.0), "{f} vs {s}");
        }
        assert_eq!(to_bf16(1.0), 0x3f80);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }
}
