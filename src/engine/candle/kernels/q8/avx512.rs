//! The Q8 panel with AVX-512 VNNI: one `vpdpbusd` adds four products to each of 16 columns'
//! 32-bit sums (see the parent module for the layout and the +128 offset).

use std::arch::x86_64::*;

use super::super::tiles::{OutPtr, PANEL};
use super::{Activations, Q8Matrix, BLOCK, GROUP_BLOCK_QUADS, PANEL_BLOCK_BYTES, QUAD, ROWS_PER_CALL};

/// [`super::quantize_block`] on 16 lanes: the same maximum, scale and rounding (the
/// conversion rounds to nearest even), so the same bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn quantize_block(src: &[f32], dst: &mut [i8]) -> f32 {
    let (lo, hi) = (_mm512_loadu_ps(src.as_ptr()), _mm512_loadu_ps(src.as_ptr().add(16)));
    let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    let scale = amax / 127.0;
    let inv = _mm512_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
    let (limit, floor) = (_mm512_set1_epi32(127), _mm512_set1_epi32(-127));
    for (half, v) in [lo, hi].into_iter().enumerate() {
        let q = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, inv)), limit), floor);
        _mm_storeu_si128(dst.as_mut_ptr().add(16 * half) as *mut __m128i, _mm512_cvtepi32_epi8(q));
    }
    scale
}

/// Rows `r0..r0+rows` (at most 8) of panel `p`.
pub unsafe fn panel(w: &Q8Matrix, a: &Activations, p: usize, r0: usize, rows: usize, out: OutPtr) {
    match rows {
        8 => kernel::<8>(w, a, p, r0, out),
        7 => kernel::<7>(w, a, p, r0, out),
        6 => kernel::<6>(w, a, p, r0, out),
        5 => kernel::<5>(w, a, p, r0, out),
        4 => kernel::<4>(w, a, p, r0, out),
        3 => kernel::<3>(w, a, p, r0, out),
        2 => kernel::<2>(w, a, p, r0, out),
        1 => kernel::<1>(w, a, p, r0, out),
        _ => unreachable!("at most {} rows per call, got {rows}", super::ROWS_PER_CALL),
    }
}

/// R activation rows × the panel's 16 columns: per block, eight dot products per row
/// against weight vectors loaded once for all R rows, the rows' quads broadcast from one
/// pointer at fixed offsets.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kernel<const R: usize>(w: &Q8Matrix, a: &Activations, p: usize, r0: usize, out: OutPtr) {
    let nb = w.inp / BLOCK;
    let groups = a.groups.as_ref().expect("the vector kernel's activations are grouped");
    debug_assert_eq!(r0 % ROWS_PER_CALL, 0, "calls start at a group");
    let g = r0 / ROWS_PER_CALL;
    let quads = groups.quads.as_ptr().add(g * nb * GROUP_BLOCK_QUADS);
    let corr = groups.corr.as_ptr().add(g * nb * ROWS_PER_CALL);
    let xs = groups.scales.as_ptr().add(g * nb * ROWS_PER_CALL);
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        let wp = w.packed.as_ptr().add((p * nb + b) * PANEL_BLOCK_BYTES);
        let xq = quads.add(b * GROUP_BLOCK_QUADS);
        let mut dot: [__m512i; R] = std::array::from_fn(|r| _mm512_set1_epi32(*corr.add(b * ROWS_PER_CALL + r)));
        for j in 0..BLOCK / QUAD {
            let wv = _mm512_loadu_si512(wp.add(j * PANEL * QUAD) as *const _);
            for (r, dot) in dot.iter_mut().enumerate() {
                *dot = _mm512_dpbusd_epi32(*dot, wv, _mm512_set1_epi32(*xq.add(j * ROWS_PER_CALL + r)));
            }
        }
        let ws = _mm512_loadu_ps(w.scales.as_ptr().add((p * nb + b) * PANEL));
        for (r, (acc, dot)) in acc.iter_mut().zip(dot).enumerate() {
            let scale = _mm512_mul_ps(ws, _mm512_set1_ps(*xs.add(b * ROWS_PER_CALL + r)));
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, *acc);
        }
    }
    out.store_panel(r0, p, w.panel_cols(p), &acc);
}
