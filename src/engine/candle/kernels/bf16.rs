//! bf16 weight matrices multiplied with AVX-512 BF16 dot products (`vdpbf16ps`: 32 products
//! per instruction, accumulated in f32). Activations are rounded to bf16 on the way in. CPUs
//! with AVX-512F but not its BF16 extension (Intel before Cooper Lake and Sapphire Rapids) widen
//! the weights to f32 in registers instead (a shift and a mask per vector) and use two FMAs per
//! vector: half the arithmetic rate, the same memory traffic, the same products. CPUs with AVX2
//! (and FMA) but not AVX-512 do the same on 8 lanes. Elsewhere a portable loop, which the
//! compiler does not vectorize (on an AMD EPYC with AVX2, `pdsim bench` had not finished its
//! prefills after 8 minutes on it; with the AVX2 kernel the whole bench takes 2).
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

use super::huge_pages::{Arena, Stored};
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
    packed: Stored<u16>,
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
        Bf16Matrix { out, inp, packed: packed.into() }
    }

    /// The same matrix with its weights in `arena` (on huge pages: see [`super::huge_pages`]).
    pub fn into_arena(self, arena: &Arena) -> Bf16Matrix {
        Bf16Matrix { packed: arena.store(&self.packed), ..self }
    }

    pub fn out_features(&self) -> usize {
        self.out
    }

    /// `x` (`m × in`, row-major) times the transposed matrix: `m × out`, row-major.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let path = Path::of_cpu();
        let xb: Vec<u16> = x.iter().map(|&v| to_bf16(v)).collect();
        // The paths that widen read the rounded activations as f32, broadcast from memory.
        let rounded: Vec<f32> = match path {
            Path::DotBf16 => Vec::new(),
            _ => xb.iter().map(|&h| from_bf16(h)).collect(),
        };
        let rows = Rows { bf16: &xb, f32: &rounded };
        // Safety: for_each_panel hands each (panel, rows) to exactly one call.
        for_each_panel(m, self.out, ROWS_PER_CALL, |p, r0, n, out| unsafe { panel(self, rows, p, r0, n, out, path) })
    }

    /// Output columns of panel `p` (16 but for a last, partial panel).
    fn panel_cols(&self, p: usize) -> usize {
        (self.out - p * PANEL).min(PANEL)
    }
}

/// How a panel is computed on this CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    /// AVX-512 BF16 dot products.
    DotBf16,
    /// AVX-512F: weights widened to f32 in registers, FMAs.
    WidenAvx512,
    /// The same on AVX2 and FMA, half a panel per register.
    WidenAvx2,
    Portable,
}

impl Path {
    fn of_cpu() -> Path {
        if super::cpu::bf16() {
            Path::DotBf16
        } else if super::cpu::avx512() {
            Path::WidenAvx512
        } else if super::cpu::avx2() {
            Path::WidenAvx2
        } else {
            Path::Portable
        }
    }
}

/// The activation rows, rounded to bf16: as bf16 bits (the dot-product path) and as f32 (the
/// paths that widen; empty on the dot-product path).
#[derive(Clone, Copy)]
struct Rows<'a> {
    bf16: &'a [u16],
    f32: &'a [f32],
}

unsafe fn panel(w: &Bf16Matrix, x: Rows, p: usize, r0: usize, rows: usize, out: OutPtr, path: Path) {
    #[cfg(target_arch = "x86_64")]
    match path {
        Path::DotBf16 => return x86::panel_dot(w, x.bf16, p, r0, rows, out),
        Path::WidenAvx512 => return x86::panel_widen(w, x.f32, p, r0, rows, out),
        Path::WidenAvx2 => return x86::panel_widen_avx2(w, x.f32, p, r0, rows, out),
        Path::Portable => {}
    }
    let k = w.inp;
    let base = &w.packed[p * PANEL * k..(p + 1) * PANEL * k];
    for r in r0..r0 + rows {
        let xr = &x.f32[r * k..(r + 1) * k];
        // All 16 columns at once, a pair of inputs at a time, in the order the vector paths
        // add them (the odd input, then the even one): a loop the compiler vectorizes.
        let mut acc = [0f32; PANEL];
        for (pair, wv) in xr.chunks_exact(PAIR).zip(base.chunks_exact(PANEL * PAIR)) {
            let (even, odd) = (pair[0], pair[1]);
            for (a, wc) in acc.iter_mut().zip(wv.chunks_exact(PAIR)) {
                *a = from_bf16(wc[1]).mul_add(odd, *a);
                *a = from_bf16(wc[0]).mul_add(even, *a);
            }
        }
        for (col, &v) in acc.iter().enumerate().take(w.panel_cols(p)) {
            out.write(r, p * PANEL + col, v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::tiles::{OutPtr, PANEL};
    use super::{Bf16Matrix, PAIR};

    /// Calls the kernel for `rows` rows (at most 16): the register tile is a const generic.
    macro_rules! by_rows {
        ($kernel:ident, $rows:expr, $args:tt) => {
            by_rows!(@ $kernel, $rows, $args, 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
        };
        (@ $kernel:ident, $rows:expr, $args:tt, $($n:literal)*) => {
            match $rows {
                $($n => $kernel::<$n> $args,)*
                r => unreachable!("at most {} rows per call, got {r}", super::ROWS_PER_CALL),
            }
        };
    }

    /// Rows `r0..r0+rows` of panel `p` with bf16 dot products.
    pub unsafe fn panel_dot(w: &Bf16Matrix, x: &[u16], p: usize, r0: usize, rows: usize, out: OutPtr) {
        by_rows!(kernel_dot, rows, (w, x, p, r0, out))
    }

    /// Rows `r0..r0+rows` of panel `p` with the weights widened to f32.
    pub unsafe fn panel_widen(w: &Bf16Matrix, x: &[f32], p: usize, r0: usize, rows: usize, out: OutPtr) {
        by_rows!(kernel_widen, rows, (w, x, p, r0, out))
    }

    /// R activation rows × the panel's 16 columns: per input pair, one weight vector for all R
    /// rows, each row's pair broadcast from memory.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::needless_range_loop)] // indexes register arrays of compile-time size
    unsafe fn kernel_dot<const R: usize>(w: &Bf16Matrix, x: &[u16], p: usize, r0: usize, out: OutPtr) {
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
        out.store_panel(r0, p, w.panel_cols(p), &acc);
    }

    /// The same tile on AVX-512F alone: each weight vector's 32 bf16 values become two f32
    /// vectors (the even inputs shifted into the high half of their lanes, the odd ones masked
    /// in place), each multiplied by its input broadcast from memory: the products `vdpbf16ps`
    /// forms, exact in f32, added odd input first as it adds them.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)] // indexes register arrays of compile-time size
    unsafe fn kernel_widen<const R: usize>(w: &Bf16Matrix, x: &[f32], p: usize, r0: usize, out: OutPtr) {
        let k = w.inp;
        let wp = w.packed.as_ptr().add(p * PANEL * k);
        let xp = x.as_ptr().add(r0 * k);
        let high = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
        let mut acc = [_mm512_setzero_ps(); R];
        for i in 0..k / PAIR {
            let wv = _mm512_loadu_si512(wp.add(i * PANEL * PAIR) as *const _);
            let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(wv));
            let odd = _mm512_castsi512_ps(_mm512_and_si512(wv, high));
            for r in 0..R {
                let xr = xp.add(r * k + i * PAIR);
                acc[r] = _mm512_fmadd_ps(odd, _mm512_set1_ps(*xr.add(1)), acc[r]);
                acc[r] = _mm512_fmadd_ps(even, _mm512_set1_ps(*xr), acc[r]);
            }
        }
        out.store_panel(r0, p, w.panel_cols(p), &acc);
    }

    /// Rows per AVX2 kernel call: 4 rows × 2 half panels of sums, and the 4 widened weight
    /// vectors, fill 12 of AVX2's 16 registers.
    const AVX2_ROWS: usize = 4;

    /// Rows `r0..r0+rows` of panel `p` with the weights widened to f32 on AVX2.
    pub unsafe fn panel_widen_avx2(w: &Bf16Matrix, x: &[f32], p: usize, r0: usize, rows: usize, out: OutPtr) {
        let mut r = r0;
        while r < r0 + rows {
            let n = (r0 + rows - r).min(AVX2_ROWS);
            match n {
                4 => kernel_widen_avx2::<4>(w, x, p, r, out),
                3 => kernel_widen_avx2::<3>(w, x, p, r, out),
                2 => kernel_widen_avx2::<2>(w, x, p, r, out),
                1 => kernel_widen_avx2::<1>(w, x, p, r, out),
                _ => unreachable!("at most {AVX2_ROWS} rows per AVX2 call, got {n}"),
            }
            r += n;
        }
    }

    /// [`kernel_widen`] on AVX2: each 512-bit weight vector is two halves of 8 columns, each
    /// widened and added to as there, in the same order.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)] // indexes register arrays of compile-time size
    unsafe fn kernel_widen_avx2<const R: usize>(w: &Bf16Matrix, x: &[f32], p: usize, r0: usize, out: OutPtr) {
        let k = w.inp;
        let wp = w.packed.as_ptr().add(p * PANEL * k);
        let xp = x.as_ptr().add(r0 * k);
        let high = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for i in 0..k / PAIR {
            let halves = [0, 1].map(|h| _mm256_loadu_si256(wp.add(i * PANEL * PAIR + h * PANEL) as *const __m256i));
            let even = halves.map(|v| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v)));
            let odd = halves.map(|v| _mm256_castsi256_ps(_mm256_and_si256(v, high)));
            for r in 0..R {
                let xr = xp.add(r * k + i * PAIR);
                let (xo, xe) = (_mm256_set1_ps(*xr.add(1)), _mm256_set1_ps(*xr));
                for h in 0..2 {
                    acc[r][h] = _mm256_fmadd_ps(odd[h], xo, acc[r][h]);
                    acc[r][h] = _mm256_fmadd_ps(even[h], xe, acc[r][h]);
                }
            }
        }
        let cols = w.panel_cols(p);
        for (r, halves) in acc.iter().enumerate() {
            for (h, v) in halves.iter().enumerate() {
                let real = cols.saturating_sub(h * PANEL / 2).min(PANEL / 2);
                if real > 0 {
                    out.store_half(r0 + r, p * PANEL + h * PANEL / 2, real, *v);
                }
            }
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
        // Every path this CPU has computes the same products of the same bf16 values; widening
        // adds them in the portable loop's order, to the bit.
        let xb: Vec<u16> = x.iter().map(|&v| to_bf16(v)).collect();
        let xf: Vec<f32> = xb.iter().map(|&h| from_bf16(h)).collect();
        let by_path = |path: Path| {
            let mut out = vec![f32::NAN; m * n];
            for p in 0..n.div_ceil(PANEL) {
                for r0 in (0..m).step_by(ROWS_PER_CALL) {
                    let rows = Rows { bf16: &xb, f32: &xf };
                    let tile = (m - r0).min(ROWS_PER_CALL);
                    unsafe { panel(&q, rows, p, r0, tile, OutPtr(out.as_mut_ptr(), n), path) };
                }
            }
            out
        };
        let portable = by_path(Path::Portable);
        for (f, s) in got.iter().zip(&portable) {
            assert!((f - s).abs() <= 1e-4 * s.abs().max(1.0), "{f} vs {s}");
        }
        if super::super::cpu::avx512() {
            assert_eq!(by_path(Path::WidenAvx512), portable);
        }
        if super::super::cpu::avx2() {
            assert_eq!(by_path(Path::WidenAvx2), portable);
        }
        if super::super::cpu::bf16() {
            assert_eq!(by_path(Path::DotBf16), got);
        }
        assert_eq!(to_bf16(1.0), 0x3f80);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }
}
