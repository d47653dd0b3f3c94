//! The Q8 panel with AVX2, for x86-64 CPUs without AVX-512 VNNI (AMD before Zen 4, Intel's
//! client CPUs).
//!
//! AVX2 has no 8-bit dot product into 32 bits. `vpmaddubsw` multiplies unsigned by signed bytes
//! and adds pairs into 16 bits, saturating: the stored weights (`q + 128`, up to 255) times an
//! activation (up to ±127) would overflow a pair (2 · 255 · 127). So each weight byte goes back
//! to signed (its top bit flipped) and a product is formed as `|w| · (x with w's sign)`
//! (`vpabsb`, `vpsignb`): a pair is then at most 2 · 127 · 127 = 32,258, exact in 16 bits.
//! `vpmaddwd` against ones sums each column's four products into 32 bits. The sums are the
//! exact integer dot products, with no +128 correction to add, and they are rescaled per block
//! as the other paths do, so every path gives the same bits.
//!
//! A weight vector of the panel layout (16 columns × 4 inputs, 64 bytes) is two 256-bit
//! halves of 8 columns each. AVX2 has 16 registers: a call takes one half and up to four rows,
//! whose 32-bit sums and f32 sums fill eight of them. The panel's blocks stay in L1 between
//! the calls that sweep its rows.

use std::arch::x86_64::*;

use super::super::tiles::{OutPtr, PANEL};
use super::{Activations, Q8Matrix, BLOCK, GROUP_BLOCK_QUADS, PANEL_BLOCK_BYTES, QUAD, ROWS_PER_CALL};

/// Activation rows per kernel call.
const ROWS: usize = 4;

/// Columns per half panel: one 256-bit register of f32 sums.
const HALF: usize = PANEL / 2;

/// Rows `r0..r0+rows` (at most [`ROWS_PER_CALL`], starting a group) of panel `p`.
pub unsafe fn panel(w: &Q8Matrix, a: &Activations, p: usize, r0: usize, rows: usize, out: OutPtr) {
    for half in 0..PANEL / HALF {
        let cols = w.panel_cols(p).saturating_sub(half * HALF).min(HALF);
        if cols == 0 {
            break;
        }
        let mut first = 0;
        while first < rows {
            let n = (rows - first).min(ROWS);
            let at = Call { r0, first, half, cols };
            match n {
                4 => kernel::<4>(w, a, p, at, out),
                3 => kernel::<3>(w, a, p, at, out),
                2 => kernel::<2>(w, a, p, at, out),
                1 => kernel::<1>(w, a, p, at, out),
                _ => unreachable!("at most {ROWS} rows per kernel call, got {n}"),
            }
            first += n;
        }
    }
}

/// Which part of a panel call a kernel call computes.
#[derive(Clone, Copy)]
struct Call {
    /// The panel call's first row (a group's first).
    r0: usize,
    /// This call's first row within the group.
    first: usize,
    /// Columns `half·8..` of the panel...
    half: usize,
    /// ...of which this many are real (a last panel may be partial).
    cols: usize,
}

/// R activation rows × 8 columns: per block, eight 4-input steps per row against weight
/// vectors loaded (and made signed) once for all R rows.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const R: usize>(w: &Q8Matrix, a: &Activations, p: usize, at: Call, out: OutPtr) {
    let nb = w.inp / BLOCK;
    let groups = a.groups.as_ref().expect("the vector kernels' activations are grouped");
    debug_assert_eq!(at.r0 % ROWS_PER_CALL, 0, "calls start at a group");
    let g = at.r0 / ROWS_PER_CALL;
    let quads = groups.quads.as_ptr().add(g * nb * GROUP_BLOCK_QUADS + at.first);
    let xs = groups.scales.as_ptr().add(g * nb * ROWS_PER_CALL + at.first);
    let (flip, ones) = (_mm256_set1_epi8(i8::MIN), _mm256_set1_epi16(1));
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let wp = w.packed.as_ptr().add((p * nb + b) * PANEL_BLOCK_BYTES + at.half * HALF * QUAD);
        let xq = quads.add(b * GROUP_BLOCK_QUADS);
        let mut dot = [_mm256_setzero_si256(); R];
        for j in 0..BLOCK / QUAD {
            let wv = _mm256_xor_si256(_mm256_loadu_si256(wp.add(j * PANEL * QUAD) as *const __m256i), flip);
            let magnitude = _mm256_abs_epi8(wv);
            for (r, dot) in dot.iter_mut().enumerate() {
                let x = _mm256_sign_epi8(_mm256_set1_epi32(*xq.add(j * ROWS_PER_CALL + r)), wv);
                *dot = _mm256_add_epi32(*dot, _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, x), ones));
            }
        }
        let ws = _mm256_loadu_ps(w.scales.as_ptr().add((p * nb + b) * PANEL + at.half * HALF));
        for (r, (acc, dot)) in acc.iter_mut().zip(dot).enumerate() {
            let scale = _mm256_mul_ps(ws, _mm256_set1_ps(*xs.add(b * ROWS_PER_CALL + r)));
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, *acc);
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        out.store_half(at.r0 + at.first + r, p * PANEL + at.half * HALF, at.cols, *acc);
    }
}
