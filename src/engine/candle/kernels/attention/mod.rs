//! Decode attention: one new query per sequence against its own cache, for every sequence and
//! head of a step in one parallel pass. Grouped-query attention: query head `h` reads KV head
//! `h / (heads / kv_heads)`, and the heads sharing a KV head are one job, so each cache row is
//! read once per step. With AVX-512 (and a head dimension of whole registers) the dot products
//! and the weighted sum of values run on 16 lanes; each (sequence, KV head) is computed the same
//! way whatever else is in the batch.

use rayon::prelude::*;

use super::exp::exp_in_place;

/// One sequence of a decode step.
pub struct DecodeQuery<'a> {
    /// `[heads × head_dim]`, already rotated.
    pub q: &'a [f32],
    /// The cache of the layer: `[kv_heads × capacity × head_dim]`, the first `len` positions valid.
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub capacity: usize,
    pub len: usize,
    /// `[heads × head_dim]`, written.
    pub out: &'a mut [f32],
}

pub fn decode_attention(queries: Vec<DecodeQuery<'_>>, heads: usize, kv_heads: usize, head_dim: usize) {
    let group = heads / kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    // One job per (sequence, KV head): its group of query heads reads the KV rows once. The
    // group's query and output rows are contiguous, so each job owns its slice of the output.
    let mut jobs = Vec::with_capacity(queries.len() * kv_heads);
    for dq in queries {
        let rows = dq.q.chunks_exact(group * head_dim).zip(dq.out.chunks_mut(group * head_dim));
        for (kv, (q, out)) in rows.enumerate() {
            let base = kv * dq.capacity * head_dim;
            let span = base..base + dq.len * head_dim;
            jobs.push(Job { q, k: &dq.k[span.clone()], v: &dq.v[span], out });
        }
    }
    let simd = simd(head_dim);
    jobs.into_par_iter().with_min_len(2).for_each(|job| {
        let len = job.k.len() / head_dim;
        // `[group × len]`: scores, then attention weights.
        let mut p = vec![0f32; group * len];
        if simd {
            // Safety: simd() checked the CPU and that head_dim is a multiple of 16.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                x86::scores(job.q, job.k, job.v, head_dim, scale, &mut p)
            }
        } else {
            for (g, row) in p.chunks_exact_mut(len).enumerate() {
                let q = &job.q[g * head_dim..(g + 1) * head_dim];
                for (s, kj) in row.iter_mut().zip(job.k.chunks_exact(head_dim)) {
                    *s = dot(q, kj) * scale;
                }
            }
        }
        for row in p.chunks_exact_mut(len) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            row.iter_mut().for_each(|s| *s -= max);
            exp_in_place(row);
            let sum: f32 = row.iter().sum();
            row.iter_mut().for_each(|s| *s /= sum);
        }
        job.out.fill(0.0);
        if simd {
            #[cfg(target_arch = "x86_64")]
            unsafe {
                x86::weighted_sum(&p, job.v, head_dim, job.out)
            }
        } else {
            for (g, o) in job.out.chunks_exact_mut(head_dim).enumerate() {
                for (&w, vj) in p[g * len..(g + 1) * len].iter().zip(job.v.chunks_exact(head_dim)) {
                    o.iter_mut().zip(vj).for_each(|(o, x)| *o += w * x);
                }
            }
        }
    });
}

/// Running sums of [`dot`]: one 256-bit register of f32.
const LANES: usize = 8;

/// `Σ a_i · b_i` in [`LANES`] running sums added together at the end: a loop the compiler
/// vectorizes (a single running sum must be added in order and stays scalar: on an AVX2 CPU,
/// decode at context 512 ran at 45 tok/s with it, 62% of its pace at context 32).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (a, b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a.remainder().iter().zip(b.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0f32; LANES];
    for (a, b) in a.zip(b) {
        for l in 0..LANES {
            acc[l] += a[l] * b[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A group of query heads against one KV head's cache rows.
struct Job<'a> {
    /// `[group × head_dim]`.
    q: &'a [f32],
    /// `[len × head_dim]` each.
    k: &'a [f32],
    v: &'a [f32],
    /// `[group × head_dim]`.
    out: &'a mut [f32],
}

/// Whether the AVX-512 path applies: the CPU has it and a head is whole registers.
fn simd(head_dim: usize) -> bool {
    head_dim.is_multiple_of(16) && super::cpu::avx512()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
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
                    _mm512_storeu_ps(
                        or.add(c),
                        _mm512_fmadd_ps(w, _mm512_loadu_ps(vr.add(c)), _mm512_loadu_ps(or.add(c))),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_direct_softmax_attention() {
        // 12: the portable path; 16 and 64: the AVX-512 path where the CPU has it.
        for d in [12, 16, 64] {
            check(d);
        }
    }

    fn check(d: usize) {
        let (heads, kv_heads, cap, len) = (6, 2, 8, 5);
        let q: Vec<f32> = (0..heads * d).map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5).collect();
        let k: Vec<f32> = (0..kv_heads * cap * d).map(|i| ((i * 5) % 13) as f32 / 13.0 - 0.5).collect();
        let v: Vec<f32> = (0..kv_heads * cap * d).map(|i| ((i * 3) % 17) as f32 / 17.0).collect();
        let mut out = vec![0f32; heads * d];
        decode_attention(
            vec![DecodeQuery { q: &q, k: &k, v: &v, capacity: cap, len, out: &mut out }],
            heads,
            kv_heads,
            d,
        );
        for h in 0..heads {
            let kv = h / 3;
            let s: Vec<f32> = (0..len)
                .map(|j| (0..d).map(|i| q[h * d + i] * k[(kv * cap + j) * d + i]).sum::<f32>() / (d as f32).sqrt())
                .collect();
            let m = s.iter().copied().fold(f32::MIN, f32::max);
            let z: f32 = s.iter().map(|x| (x - m).exp()).sum();
            for i in 0..d {
                let want: f32 = (0..len).map(|j| (s[j] - m).exp() / z * v[(kv * cap + j) * d + i]).sum();
                assert!((out[h * d + i] - want).abs() < 1e-5, "d {d}, head {h}, {i}");
            }
        }
    }
}
