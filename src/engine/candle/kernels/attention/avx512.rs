//! Decode attention with AVX-512: a head row is whole 16-lane registers.

use std::arch::x86_64::*;

/// Key rows fetched ahead of their dot products.
const PREFETCH_AHEAD: usize = 8;

/// `p[g·len + j] = scale · q_g · k_j` for every query head g of the group and position j:
/// each key row is loaded once for the whole group.
#[target_feature(enable = "avx512f")]
pub unsafe fn scores(q: &[f32], k: &[f32], v: &[f32], d: usize, scale: f32, p: &mut [f32]) {
    let (len, group) = (k.len() / d, q.len() / d);
    for j in 0..len {
        let kr = k.as_ptr().add(j * d);
        // The cache rows come from memory (a step's caches outgrow the L3): ask early for
        // the key row 8 ahead and for this position's value row, needed after the softmax.
        for line in (0..d).step_by(16) {
            if j + PREFETCH_AHEAD < len {
                _mm_prefetch::<_MM_HINT_T0>(kr.add(PREFETCH_AHEAD * d + line) as *const i8);
            }
            _mm_prefetch::<_MM_HINT_T1>(v.as_ptr().add(j * d + line) as *const i8);
        }
        for g in 0..group {
            let qr = q.as_ptr().add(g * d);
            let mut acc = _mm512_mul_ps(_mm512_loadu_ps(qr), _mm512_loadu_ps(kr));
            for c in (16..d).step_by(16) {
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(qr.add(c)), _mm512_loadu_ps(kr.add(c)), acc);
            }
            *p.get_unchecked_mut(g * len + j) = _mm512_reduce_add_ps(acc) * scale;
        }
    }
}

/// `out_g += Σ_j p[g·len + j] · v_j`: each value row is loaded once for the whole group.
#[target_feature(enable = "avx512f")]
pub unsafe fn weighted_sum(p: &[f32], v: &[f32], d: usize, out: &mut [f32]) {
    let (len, group) = (v.len() / d, out.len() / d);
    for j in 0..len {
        let vr = v.as_ptr().add(j * d);
        for g in 0..group {
            let w = _mm512_set1_ps(*p.get_unchecked(g * len + j));
            let or = out.as_mut_ptr().add(g * d);
            for c in (0..d).step_by(16) {
                _mm512_storeu_ps(or.add(c), _mm512_fmadd_ps(w, _mm512_loadu_ps(vr.add(c)), _mm512_loadu_ps(or.add(c))));
            }
        }
    }
}
