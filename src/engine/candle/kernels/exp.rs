//! The exponential on 16 lanes (AVX-512) or 8 (AVX2), for the two places a step takes many of
//! them: the softmax of decode attention and the SwiGLU activation (at batch 16 SmolLM2 takes
//! 740,000 a step, and the scalar `expf` calls were about a tenth of the step). Within 2 ulp of
//! `f32::exp`; a portable scalar path where neither is present.

use super::cpu::Lanes;

/// `x ← eˣ` for every element.
pub fn exp_in_place(x: &mut [f32]) {
    // Safety: the CPU has its widest lanes.
    unsafe { exp_in_place_on(x, Lanes::widest()) }
}

/// # Safety
/// The CPU must have `lanes`.
unsafe fn exp_in_place_on(x: &mut [f32], lanes: Lanes) {
    #[cfg(target_arch = "x86_64")]
    match lanes {
        Lanes::Avx512 => return x86::exp_in_place(x),
        Lanes::Avx2 => return x86::exp_in_place_avx2(x),
        Lanes::Scalar => {}
    }
    x.iter_mut().for_each(|v| *v = v.exp());
}

/// SwiGLU: for each row of `gate_up` (`[gate | up]`, `2·ffn` wide), `silu(gate) · up`, appended
/// to `out`.
pub fn silu_mul(gate_up: &[f32], ffn: usize, out: &mut Vec<f32>) {
    for row in gate_up.chunks_exact(2 * ffn) {
        let (gate, up) = row.split_at(ffn);
        let start = out.len();
        out.extend(gate.iter().map(|&g| -g));
        let e = &mut out[start..];
        exp_in_place(e);
        for ((e, &g), &u) in e.iter_mut().zip(gate).zip(up) {
            *e = g / (1.0 + *e) * u;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp_in_place(x: &mut [f32]) {
        let mut chunks = x.chunks_exact_mut(16);
        for c in &mut chunks {
            _mm512_storeu_ps(c.as_mut_ptr(), exp16(_mm512_loadu_ps(c.as_ptr())));
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let mask: __mmask16 = (1u16 << tail.len()) - 1;
            let v = exp16(_mm512_maskz_loadu_ps(mask, tail.as_ptr()));
            _mm512_mask_storeu_ps(tail.as_mut_ptr(), mask, v);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_in_place_avx2(x: &mut [f32]) {
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            _mm256_storeu_ps(c.as_mut_ptr(), exp8(_mm256_loadu_ps(c.as_ptr())));
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let mut lanes = [0f32; 8];
            lanes[..tail.len()].copy_from_slice(tail);
            _mm256_storeu_ps(lanes.as_mut_ptr(), exp8(_mm256_loadu_ps(lanes.as_ptr())));
            tail.copy_from_slice(&lanes[..tail.len()]);
        }
    }

    /// As [`exp16`], on 8 lanes. AVX2 has no `vscalefps`: 2ⁿ is applied as two powers of two
    /// built in the exponent bits, 2^⌊n/2⌋ and 2^(n−⌊n/2⌋), each within f32's normal range for
    /// every n the clamp allows (−150 to 128), so the products round once where the result is
    /// normal, as `vscalefps` does, and still reach 0 and +∞ beyond the range.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(89.0)), _mm256_set1_ps(-104.0));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(TAYLOR[0]);
        for c in &TAYLOR[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
        }
        let n = _mm256_cvtps_epi32(n);
        let half = _mm256_srai_epi32::<1>(n);
        let pow2 =
            |e: __m256i| _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(e, _mm256_set1_epi32(127))));
        _mm256_mul_ps(_mm256_mul_ps(p, pow2(half)), pow2(_mm256_sub_epi32(n, half)))
    }

    /// ln 2 in two parts, so that n · LN2_HI is exact and r keeps f32 precision.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;

    /// eʳ's Taylor coefficients, highest degree (7) first, for Horner's scheme.
    const TAYLOR: [f32; 8] = [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];

    /// eˣ = 2ⁿ · eʳ with n = round(x·log₂e) and |r| ≤ ln2/2 (ln 2 in two parts, so r is exact
    /// to f32 precision), eʳ by its Taylor polynomial to degree 7, and 2ⁿ
    /// applied by `vscalefps`, which also gives 0 and +∞ beyond f32's range.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn exp16(x: __m512) -> __m512 {
        let x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(89.0)), _mm512_set1_ps(-104.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
            x,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(TAYLOR[0]);
        for c in &TAYLOR[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
        }
        _mm512_scalef_ps(p, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_the_library_exp_on_every_path() {
        // 1001 values over f32's whole range, plus the ends and a tail shorter than 8 and 16.
        let mut x: Vec<f32> = (0..=1000).map(|i| -100.0 + 0.19 * i as f32).collect();
        x.extend([0.0, -0.0, 1e-8, -1e-8, 88.0, 88.7, -87.0, -88.0, -200.0, 200.0]);
        for path in Lanes::available() {
            let mut got = x.clone();
            // Safety: the paths this CPU has.
            unsafe { exp_in_place_on(&mut got, path) };
            for (&v, &g) in x.iter().zip(&got) {
                let want = v.exp();
                let ulp = (want.to_bits() as i64 - g.to_bits() as i64).abs();
                assert!(
                    ulp <= 2 || (want < 1e-37 && g < 1e-37),
                    "{path:?}: exp({v}) = {g}, library {want} ({ulp} ulp)"
                );
            }
            assert_eq!(got[1001], 1.0, "{path:?}");
        }
        assert_eq!(Lanes::widest() == Lanes::Scalar, !super::super::cpu::avx2() && !super::super::cpu::avx512());
    }

    #[test]
    fn silu_mul_matches_its_definition() {
        let ffn = 37; // not a multiple of 16
        let gate_up: Vec<f32> = (0..4 * ffn).map(|i| ((i * 13) % 29) as f32 / 3.0 - 5.0).collect();
        let mut out = Vec::new();
        silu_mul(&gate_up, ffn, &mut out);
        assert_eq!(out.len(), 2 * ffn);
        for (r, row) in gate_up.chunks_exact(2 * ffn).enumerate() {
            for i in 0..ffn {
                let (g, u) = (row[i], row[ffn + i]);
                let want = g / (1.0 + (-g).exp()) * u;
                assert!((out[r * ffn + i] - want).abs() <= 1e-6 * want.abs().max(1.0), "{r},{i}");
            }
        }
    }
}
