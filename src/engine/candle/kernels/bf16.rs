//! bf16 weight matrices multiplied with AVX-512 BF16 dot products (`vdpbf16ps`: 32 products
//! per instruction, accumulated in f32), in register tiles of up to 4 rows × 4 columns, with a
//! portable fallback. Activations are rounded to bf16 on the way in.
//!
//! Weight-stationary like the Q8 kernel: a task owns a run of output columns and sweeps every
//! activation row. Each output is computed by the same instruction sequence whatever the tile,
//! so a row's result does not depend on the rows batched with it.

use super::tiles::{for_each_tile, OutPtr, Tile};

/// bf16 values per 512-bit register.
const LANES: usize = 32;

/// Round-to-nearest-even f32 → bf16 bits.
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// A weight matrix `[out, in]` in bf16.
#[derive(Debug, Clone)]
pub struct Bf16Matrix {
    rows: usize,
    cols: usize,
    data: Vec<u16>,
}

impl Bf16Matrix {
    pub fn from_f32(data: &[f32], out: usize, inp: usize) -> Bf16Matrix {
        assert_eq!(inp % LANES, 0, "bf16 rows need a multiple of {LANES} columns, got {inp}");
        Bf16Matrix { rows: out, cols: inp, data: data.iter().map(|&x| to_bf16(x)).collect() }
    }

    pub fn out_features(&self) -> usize {
        self.rows
    }

    /// `x` (`m × in`, row-major) times the transposed matrix: `m × out`, row-major.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let k = self.cols;
        let xb: Vec<u16> = x.iter().map(|&v| to_bf16(v)).collect();
        let fast = fast();
        // Safety: for_each_tile hands each tile to exactly one call.
        for_each_tile(m, self.rows, |t, out| unsafe { tile(self, &xb, k, t, out, fast) })
    }
}

fn fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static BF16: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *BF16.get_or_init(|| is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

unsafe fn tile(w: &Bf16Matrix, x: &[u16], k: usize, t: Tile, out: OutPtr, fast: bool) {
    let Tile { r0, rows, c0, cols } = t;
    #[cfg(target_arch = "x86_64")]
    if fast {
        match (rows, cols) {
            (4, 4) => return x86::kernel::<4, 4>(w, x, k, r0, c0, out),
            (3, 4) => return x86::kernel::<3, 4>(w, x, k, r0, c0, out),
            (2, 4) => return x86::kernel::<2, 4>(w, x, k, r0, c0, out),
            (1, 4) => return x86::kernel::<1, 4>(w, x, k, r0, c0, out),
            _ => {
                for r in r0..r0 + rows {
                    for c in c0..c0 + cols {
                        x86::kernel::<1, 1>(w, x, k, r, c, out);
                    }
                }
                return;
            }
        }
    }
    for r in r0..r0 + rows {
        for c in c0..c0 + cols {
            let (xr, wr) = (&x[r * k..(r + 1) * k], &w.data[c * k..(c + 1) * k]);
            out.write(r, c, xr.iter().zip(wr).map(|(&a, &b)| from_bf16(a) * from_bf16(b)).sum());
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::tiles::OutPtr;
    use super::{Bf16Matrix, LANES};

    /// Loads 32 bf16 values.
    #[inline(always)]
    unsafe fn load(p: *const u16) -> __m512bh {
        std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p as *const _))
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::needless_range_loop)] // indexes register arrays of compile-time size
    pub unsafe fn kernel<const R: usize, const C: usize>(
        w: &Bf16Matrix,
        x: &[u16],
        k: usize,
        r0: usize,
        c0: usize,
        out: OutPtr,
    ) {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let mut i = 0;
        while i < k {
            let mut wv: [__m512bh; C] = [load(w.data.as_ptr().add(c0 * k + i)); C];
            for c in 1..C {
                wv[c] = load(w.data.as_ptr().add((c0 + c) * k + i));
            }
            for r in 0..R {
                let xv: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(x.as_ptr().add((r0 + r) * k + i) as *const _));
                for c in 0..C {
                    acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);
                }
            }
            i += LANES;
        }
        for r in 0..R {
            for c in 0..C {
                out.write(r0 + r, c0 + c, _mm512_reduce_add_ps(acc[r][c]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_f32_and_is_batch_invariant() {
        let (m, k, n) = (6, 96, 10);
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
        for r in 0..m {
            assert_eq!(&got[r * n..(r + 1) * n], &q.matmul(&x[r * k..(r + 1) * k], 1)[..], "row {r}");
        }
        assert_eq!(to_bf16(1.0), 0x3f80);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }
}
