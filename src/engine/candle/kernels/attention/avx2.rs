//! Decode attention with AVX2 and FMA, for x86-64 CPUs without AVX-512 (AMD before Zen 4,
//! Intel's client CPUs).
//!
//! The portable loops take one dot product at a time and end each with a sum across its eight
//! lanes. Here the scores come eight positions at a time, their eight sums reduced together,
//! and each query head's weighted sum of values keeps a block of 64 columns in registers over
//! every position. The cache rows are left to the hardware prefetcher: on the AVX2 EPYC, asking
//! for them ahead as the AVX-512 path does (four tiles ahead, the value rows into L2) made a
//! step's attention no faster, 59–69 ms against 56–64 in three interleaved rounds (batch 16 at
//! context 512, 30 layers, one thread; the portable loops 80–95).

use std::arch::x86_64::*;

/// Positions per score tile: eight running sums, so that the fused multiply-adds overlap.
const TILE: usize = 8;

/// Lanes of a 256-bit register.
const LANES: usize = 8;

/// Columns of a weighted-sum block: eight registers.
pub const BLOCK: usize = 64;

/// `p[g·len + j] = scale · q_g · k_j` for every query head g of the group and position j:
/// each tile of key rows is loaded from memory once for the whole group.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `d` must be a multiple of 8.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn scores(q: &[f32], k: &[f32], d: usize, scale: f32, p: &mut [f32]) {
    debug_assert_eq!(d % LANES, 0);
    let (len, group) = (k.len() / d, q.len() / d);
    let scale8 = _mm256_set1_ps(scale);
    let mut j = 0;
    while j + TILE <= len {
        let kr = k.as_ptr().add(j * d);
        for g in 0..group {
            let qr = q.as_ptr().add(g * d);
            let mut acc = [_mm256_setzero_ps(); TILE];
            for c in (0..d).step_by(LANES) {
                let qv = _mm256_loadu_ps(qr.add(c));
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr.add(r * d + c)), *acc);
                }
            }
            let sums = _mm256_mul_ps(reduce8(&acc), scale8);
            _mm256_storeu_ps(p.as_mut_ptr().add(g * len + j), sums);
        }
        j += TILE;
    }
    for j in j..len {
        let kr = k.as_ptr().add(j * d);
        for g in 0..group {
            let qr = q.as_ptr().add(g * d);
            let mut acc = _mm256_setzero_ps();
            for c in (0..d).step_by(LANES) {
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(qr.add(c)), _mm256_loadu_ps(kr.add(c)), acc);
            }
            let mut lanes = [0f32; LANES];
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
            *p.get_unchecked_mut(g * len + j) = lanes.iter().sum::<f32>() * scale;
        }
    }
}

/// The eight registers' sums across their lanes, as one register: `[Σ a0, Σ a1, …, Σ a7]`.
#[target_feature(enable = "avx2")]
unsafe fn reduce8(a: &[__m256; TILE]) -> __m256 {
    // Each hadd sums neighbouring lanes of two registers within each 128-bit half.
    let (h01, h23) = (_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    let (h45, h67) = (_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    // [a0 a1 a2 a3 (low lanes) | a0 a1 a2 a3 (high lanes)], and the same for a4..a7.
    let (lo, hi) = (_mm256_hadd_ps(h01, h23), _mm256_hadd_ps(h45, h67));
    let low_halves = _mm256_permute2f128_ps::<0x20>(lo, hi);
    let high_halves = _mm256_permute2f128_ps::<0x31>(lo, hi);
    _mm256_add_ps(low_halves, high_halves)
}

/// `out_g = Σ_j p[g·len + j] · v_j`, a block of [`BLOCK`] columns at a time in registers; the
/// group's heads read each value row from cache after the first.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `d` must be a multiple of [`BLOCK`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn weighted_sum(p: &[f32], v: &[f32], d: usize, out: &mut [f32]) {
    debug_assert_eq!(d % BLOCK, 0);
    let (len, group) = (v.len() / d, out.len() / d);
    for g in 0..group {
        let pg = p.as_ptr().add(g * len);
        for c0 in (0..d).step_by(BLOCK) {
            let mut acc = [_mm256_setzero_ps(); BLOCK / LANES];
            for j in 0..len {
                let w = _mm256_set1_ps(*pg.add(j));
                let vr = v.as_ptr().add(j * d + c0);
                for (i, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(vr.add(i * LANES)), *acc);
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(g * d + c0 + i * LANES), *acc);
            }
        }
    }
}
