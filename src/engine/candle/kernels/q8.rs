//! Q8 weight matrices: symmetric 8-bit quantization in blocks of 32 along the input dimension
//! (the GGUF Q8_0 scheme) for weights and activations alike, multiplied with AVX-512 VNNI
//! integer dot products in register tiles of up to 4 × 4, with a portable fallback.
//!
//! Weight-stationary: each task owns a run of output columns and sweeps every activation row,
//! so the weights are read from memory once per step whatever the batch.

use super::tiles::{for_each_tile, OutPtr, Tile};

/// Elements per quantization block.
pub const BLOCK: usize = 32;

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
}

/// A weight matrix `[out, in]` (one row per output), quantized.
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    w: Q8Rows,
}

/// Quantized activation rows.
type Activations = Q8Rows;

impl Q8Matrix {
    pub fn from_f32(data: &[f32], out: usize, inp: usize) -> Q8Matrix {
        Q8Matrix { w: Q8Rows::quantize(data, out, inp) }
    }

    pub fn out_features(&self) -> usize {
        self.w.rows
    }

    /// `x` (`m × in`, row-major) times the transposed matrix: `m × out`, row-major. Each output
    /// row depends only on its own input row, so results do not change with the batch.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.w.rows, self.w.cols);
        let act = Q8Rows::quantize(x, m, k);
        let tile = tile_fn();
        // Safety: for_each_tile hands each tile to exactly one call.
        for_each_tile(m, n, |t, out| unsafe { tile(self, &act, t, out) })
    }
}

type TileFn = unsafe fn(&Q8Matrix, &Activations, Tile, OutPtr);

fn tile_fn() -> TileFn {
    #[cfg(target_arch = "x86_64")]
    {
        static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let vnni = *VNNI.get_or_init(|| {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        });
        if vnni {
            return x86::tile_vnni;
        }
    }
    tile_portable
}

/// The reference tile: out[r][c] = Σ_blocks sx·sw·Σ x·w.
unsafe fn tile_portable(w: &Q8Matrix, a: &Activations, t: Tile, out: OutPtr) {
    for r in t.r0..t.r0 + t.rows {
        for c in t.c0..t.c0 + t.cols {
            out.write(r, c, finish(w, a, r, c, 0, 0.0));
        }
    }
}

/// Adds blocks `from..` of (row, col) to `partial`.
fn finish(w: &Q8Matrix, a: &Activations, row: usize, col: usize, from: usize, partial: f32) -> f32 {
    let k = w.w.cols;
    let nb = k / BLOCK;
    let mut sum = partial;
    for b in from..nb {
        let x = &a.qs[row * k + b * BLOCK..][..BLOCK];
        let wq = &w.w.qs[col * k + b * BLOCK..][..BLOCK];
        let dot: i32 = x.iter().zip(wq).map(|(&u, &q)| u as i32 * q as i32).sum();
        sum += a.scales[row * nb + b] * w.w.scales[col * nb + b] * dot as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::tiles::{OutPtr, Tile, TILE_COLS, TILE_ROWS};
    use super::{finish, Activations, Q8Matrix, BLOCK};

    /// A tile of up to 4 × 4 outputs; common shapes take a register-blocked kernel.
    pub unsafe fn tile_vnni(w: &Q8Matrix, a: &Activations, t: Tile, out: OutPtr) {
        let Tile { r0, rows, c0, cols } = t;
        match (rows, cols) {
            (TILE_ROWS, TILE_COLS) => kernel::<TILE_ROWS, TILE_COLS>(w, a, r0, c0, out),
            // A single row runs fastest one column at a time (measured: 2× the 1 × 4 tile).
            (2, TILE_COLS) => kernel::<2, TILE_COLS>(w, a, r0, c0, out),
            (3, TILE_COLS) => kernel::<3, TILE_COLS>(w, a, r0, c0, out),
            _ => {
                for r in r0..r0 + rows {
                    for c in c0..c0 + cols {
                        kernel::<1, 1>(w, a, r, c, out);
                    }
                }
            }
        }
    }

    /// Lanes 0–7 get `p[0]`, lanes 8–15 get `p[1]`: the scales of a pair of blocks.
    #[inline(always)]
    unsafe fn pair(p: *const f32) -> __m512 {
        _mm512_mask_mov_ps(_mm512_set1_ps(*p), 0xFF00, _mm512_set1_ps(*p.add(1)))
    }

    /// R activation rows × C weight rows, two blocks (64 bytes) per step. `dpbusd` multiplies
    /// unsigned by signed bytes, 4 products per 32-bit lane, so each activation goes in as its
    /// magnitude and its sign moves onto the weight.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::needless_range_loop)] // indexes register arrays of compile-time size
    unsafe fn kernel<const R: usize, const C: usize>(w: &Q8Matrix, a: &Activations, r0: usize, c0: usize, out: OutPtr) {
        let k = w.w.cols;
        let nb = k / BLOCK;
        let zero = _mm512_setzero_si512();
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let mut b = 0;
        while b + 2 <= nb {
            let mut wv = [zero; C];
            let mut ws = [_mm512_setzero_ps(); C];
            for c in 0..C {
                wv[c] = _mm512_loadu_si512(w.w.qs.as_ptr().add((c0 + c) * k + b * BLOCK) as *const _);
                ws[c] = pair(w.w.scales.as_ptr().add((c0 + c) * nb + b));
            }
            for r in 0..R {
                let xv = _mm512_loadu_si512(a.qs.as_ptr().add((r0 + r) * k + b * BLOCK) as *const _);
                let (xabs, neg) = (_mm512_abs_epi8(xv), _mm512_movepi8_mask(xv));
                let xs = pair(a.scales.as_ptr().add((r0 + r) * nb + b));
                for c in 0..C {
                    let signed_w = _mm512_mask_sub_epi8(wv[c], neg, zero, wv[c]);
                    let dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, xabs, signed_w));
                    acc[r][c] = _mm512_fmadd_ps(dot, _mm512_mul_ps(xs, ws[c]), acc[r][c]);
                }
            }
            b += 2;
        }
        for r in 0..R {
            for c in 0..C {
                let sum = finish(w, a, r0 + r, c0 + c, b, _mm512_reduce_add_ps(acc[r][c]));
                out.write(r0 + r, c0 + c, sum);
            }
        }
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
    fn fast_kernel_equals_portable_kernel() {
        // Uneven sizes exercise partial tiles and an odd number of blocks.
        let (m, k, n) = (7, 32 * 7, 9);
        let x = random(m * k, 3);
        let q = Q8Matrix::from_f32(&random(n * k, 4), n, k);
        let fast = q.matmul(&x, m);
        let act = Q8Rows::quantize(&x, m, k);
        let mut slow = vec![0f32; m * n];
        unsafe { tile_portable(&q, &act, Tile { r0: 0, rows: m, c0: 0, cols: n }, OutPtr(slow.as_mut_ptr(), n)) };
        for (f, s) in fast.iter().zip(&slow) {
            assert!((f - s).abs() <= 1e-3 * s.abs().max(1.0), "{f} vs {s}");
        }
    }
}
