//! Q8 weight matrices: symmetric 8-bit quantization in blocks of 32 along the input dimension
//! (the GGUF Q8_0 scheme), with an AVX-512 VNNI dot product and a portable fallback.

use rayon::prelude::*;

/// Elements per quantization block.
pub const BLOCK: usize = 32;
/// Output columns per parallel task.
const COLS_PER_TASK: usize = 16;

/// Rows quantized to i8 with one f32 scale per block of 32: `value ≈ q · scale`.
#[derive(Debug, Clone)]
pub struct Q8Rows {
    pub rows: usize,
    pub cols: usize,
    pub qs: Vec<i8>,
    pub scales: Vec<f32>,
}

impl Q8Rows {
    /// Quantizes `data` (`rows × cols`, row-major); `cols` must be a multiple of 32.
    pub fn quantize(data: &[f32], rows: usize, cols: usize) -> Q8Rows {
        assert_eq!(cols % BLOCK, 0, "Q8 rows need a multiple of {BLOCK} columns, got {cols}");
        assert_eq!(data.len(), rows * cols);
        let mut qs = vec![0i8; rows * cols];
        let mut scales = vec![0f32; rows * cols / BLOCK];
        for (b, (src, dst)) in data.chunks_exact(BLOCK).zip(qs.chunks_exact_mut(BLOCK)).enumerate() {
            let amax = src.iter().fold(0f32, |a, &x| a.max(x.abs()));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for (q, &x) in dst.iter_mut().zip(src) {
                *q = (x * inv).round().clamp(-127.0, 127.0) as i8;
            }
            scales[b] = scale;
        }
        Q8Rows { rows, cols, qs, scales }
    }

    fn row(&self, r: usize) -> (&[i8], &[f32]) {
        let nb = self.cols / BLOCK;
        (&self.qs[r * self.cols..(r + 1) * self.cols], &self.scales[r * nb..(r + 1) * nb])
    }

    pub fn bytes(&self) -> usize {
        self.qs.len() + 4 * self.scales.len()
    }
}

/// A weight matrix `[out, in]` (one row per output), quantized.
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    w: Q8Rows,
}

impl Q8Matrix {
    pub fn from_f32(data: &[f32], out: usize, inp: usize) -> Q8Matrix {
        Q8Matrix { w: Q8Rows::quantize(data, out, inp) }
    }

    pub fn out_features(&self) -> usize {
        self.w.rows
    }

    pub fn in_features(&self) -> usize {
        self.w.cols
    }

    /// `x` (`m × in`, row-major) times the transposed matrix: `m × out`, row-major.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.w.rows, self.w.cols);
        let xq = Q8Rows::quantize(x, m, k);
        let dot = dot_fn();
        // Column-major result: each task owns a contiguous run of output columns.
        let mut out_t = vec![0f32; n * m];
        out_t.par_chunks_mut(m * COLS_PER_TASK).enumerate().for_each(|(task, chunk)| {
            for (j, col_out) in chunk.chunks_mut(m).enumerate() {
                let (wq, wd) = self.w.row(task * COLS_PER_TASK + j);
                for (r, o) in col_out.iter_mut().enumerate() {
                    let (xr, xd) = xq.row(r);
                    *o = dot(wq, wd, xr, xd);
                }
            }
        });
        if m == 1 {
            return out_t;
        }
        let mut out = vec![0f32; m * n];
        for c in 0..n {
            for r in 0..m {
                out[r * n + c] = out_t[c * m + r];
            }
        }
        out
    }
}

type DotFn = fn(&[i8], &[f32], &[i8], &[f32]) -> f32;

/// The fastest dot product this CPU supports (checked once).
pub fn dot_fn() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let vnni = *VNNI.get_or_init(|| {
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni")
        });
        if vnni {
            return |a, ad, b, bd| unsafe { x86::dot_vnni(a, ad, b, bd) };
        }
    }
    dot_portable
}

/// Σ over blocks of `ad[b]·bd[b]·Σ a·b`.
pub fn dot_portable(a: &[i8], ad: &[f32], b: &[i8], bd: &[f32]) -> f32 {
    let mut sum = 0f32;
    for (blk, (x, y)) in a.chunks_exact(BLOCK).zip(b.chunks_exact(BLOCK)).enumerate() {
        let s: i32 = x.iter().zip(y).map(|(&p, &q)| p as i32 * q as i32).sum();
        sum += ad[blk] * bd[blk] * s as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::BLOCK;

    /// Two blocks per 512-bit register: `dpbusd` multiplies unsigned by signed bytes, so the
    /// activations go in as |b| and their signs move onto `a`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot_vnni(a: &[i8], ad: &[f32], b: &[i8], bd: &[f32]) -> f32 {
        let nb = ad.len();
        let zero = _mm512_setzero_si512();
        let mut acc = _mm512_setzero_ps();
        let mut blk = 0;
        while blk + 2 <= nb {
            let va = _mm512_loadu_si512(a.as_ptr().add(blk * BLOCK) as *const _);
            let vb = _mm512_loadu_si512(b.as_ptr().add(blk * BLOCK) as *const _);
            let neg = _mm512_movepi8_mask(vb);
            let signed_a = _mm512_mask_sub_epi8(va, neg, zero, va);
            let dot = _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(vb), signed_a);
            let s0 = _mm512_set1_ps(ad[blk] * bd[blk]);
            let scale = _mm512_mask_mov_ps(s0, 0xFF00, _mm512_set1_ps(ad[blk + 1] * bd[blk + 1]));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc);
            blk += 2;
        }
        let mut sum = _mm512_reduce_add_ps(acc);
        if blk < nb {
            sum += super::dot_portable(&a[blk * BLOCK..], &ad[blk..], &b[blk * BLOCK..], &bd[blk..]);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| r.gen_range(-1.0..1.0)).collect()
    }

    #[test]
    fn matmul_matches_f32_within_quantization_error() {
        let (m, k, n) = (5, 96, 40);
        let x = random(m * k, 1);
        let w = random(n * k, 2);
        let q = Q8Matrix::from_f32(&w, n, k);
        let got = q.matmul(&x, m);
        for r in 0..m {
            for c in 0..n {
                let want: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                assert!((got[r * n + c] - want).abs() < 0.05, "({r},{c}): {} vs {want}", got[r * n + c]);
            }
        }
        // Each row's result does not depend on the other rows.
        let alone = q.matmul(&x[k..2 * k], 1);
        assert_eq!(&got[n..2 * n], &alone[..]);
    }

    #[test]
    fn fast_dot_equals_portable_dot() {
        let k = 32 * 7; // odd block count exercises the tail
        let a = Q8Rows::quantize(&random(k, 3), 1, k);
        let b = Q8Rows::quantize(&random(k, 4), 1, k);
        let fast = dot_fn()(&a.qs, &a.scales, &b.qs, &b.scales);
        let slow = dot_portable(&a.qs, &a.scales, &b.qs, &b.scales);
        assert!((fast - slow).abs() <= 1e-4 * slow.abs().max(1.0), "{fast} vs {slow}");
    }
}
