//! Decode attention: one new query per sequence against its own cache, for every sequence and
//! head of a step in one parallel pass. Grouped-query attention: query head `h` reads KV head
//! `h / (heads / kv_heads)`, and the heads sharing a KV head are one job, so each cache row is
//! read once per step. With AVX-512 ([`avx512`]) or AVX2 ([`avx2`]), where a head is whole
//! registers, the dot products and the weighted sum of values run in vector registers; each
//! (sequence, KV head) is computed the same way whatever else is in the batch.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use rayon::prelude::*;

use super::cpu::Lanes;
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
    decode_attention_on(queries, heads, kv_heads, head_dim, path(head_dim));
}

/// [`decode_attention`] on the given path, which the CPU must have and `head_dim` must fit.
fn decode_attention_on(queries: Vec<DecodeQuery<'_>>, heads: usize, kv_heads: usize, head_dim: usize, path: Lanes) {
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
    jobs.into_par_iter().with_min_len(2).for_each(|job| {
        let len = job.k.len() / head_dim;
        // `[group × len]`: scores, then attention weights.
        let mut p = vec![0f32; group * len];
        // Safety (both calls): the caller chose a path this CPU has and head_dim fits.
        unsafe { scores(path, &job, head_dim, scale, &mut p) };
        for row in p.chunks_exact_mut(len) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            row.iter_mut().for_each(|s| *s -= max);
            exp_in_place(row);
            let sum: f32 = row.iter().sum();
            row.iter_mut().for_each(|s| *s /= sum);
        }
        unsafe { weighted_sum(path, &p, job.v, head_dim, job.out) };
    });
}

/// The widest path this CPU has that heads of `head_dim` fit.
fn path(head_dim: usize) -> Lanes {
    Lanes::available().find(|&l| fits(l, head_dim)).unwrap_or(Lanes::Scalar)
}

/// Whether heads of `head_dim` are whole registers of the path: 16 lanes for AVX-512, whole
/// [`avx2::BLOCK`]s for AVX2 (64, 128, 256: not 80 or 96).
fn fits(lanes: Lanes, head_dim: usize) -> bool {
    match lanes {
        Lanes::Avx512 => head_dim.is_multiple_of(16),
        #[cfg(target_arch = "x86_64")]
        Lanes::Avx2 => head_dim.is_multiple_of(avx2::BLOCK),
        #[cfg(not(target_arch = "x86_64"))]
        Lanes::Avx2 => false,
        Lanes::Scalar => true,
    }
}

/// `p[g·len + j] = scale · q_g · k_j`.
///
/// # Safety
/// The CPU must have the path, and `head_dim` fit it.
unsafe fn scores(path: Lanes, job: &Job<'_>, head_dim: usize, scale: f32, p: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match path {
        Lanes::Avx512 => return avx512::scores(job.q, job.k, job.v, head_dim, scale, p),
        Lanes::Avx2 => return avx2::scores(job.q, job.k, head_dim, scale, p),
        Lanes::Scalar => {}
    }
    let len = job.k.len() / head_dim;
    for (g, row) in p.chunks_exact_mut(len).enumerate() {
        let q = &job.q[g * head_dim..(g + 1) * head_dim];
        for (s, kj) in row.iter_mut().zip(job.k.chunks_exact(head_dim)) {
            *s = dot(q, kj) * scale;
        }
    }
}

/// `out_g = Σ_j p[g·len + j] · v_j`.
///
/// # Safety
/// As [`scores`].
unsafe fn weighted_sum(path: Lanes, p: &[f32], v: &[f32], head_dim: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match path {
        Lanes::Avx512 => {
            out.fill(0.0);
            return avx512::weighted_sum(p, v, head_dim, out);
        }
        Lanes::Avx2 => return avx2::weighted_sum(p, v, head_dim, out),
        Lanes::Scalar => {}
    }
    out.fill(0.0);
    let len = v.len() / head_dim;
    for (g, o) in out.chunks_exact_mut(head_dim).enumerate() {
        for (&w, vj) in p[g * len..(g + 1) * len].iter().zip(v.chunks_exact(head_dim)) {
            o.iter_mut().zip(vj).for_each(|(o, x)| *o += w * x);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths this CPU has for heads of `d`: the portable one and any vector one that fits.
    fn paths(d: usize) -> Vec<Lanes> {
        Lanes::available().filter(|&l| fits(l, d)).collect()
    }

    #[test]
    fn every_path_matches_a_direct_softmax_attention() {
        // 12: the portable path only; 16: AVX-512 too; 64 and 128: AVX2 too. Lengths of 5 and 21
        // positions: AVX2's score tiles of 8 and the positions after the last whole one.
        for d in [12, 16, 64, 128] {
            for len in [5, 21] {
                for path in paths(d) {
                    check(d, len, path);
                }
            }
        }
        assert_eq!(path(64), paths(64)[0], "the fastest path it has");
        assert_eq!(*paths(64).last().unwrap(), Lanes::Scalar);
    }

    fn check(d: usize, len: usize, path: Lanes) {
        let (heads, kv_heads, cap) = (6, 2, 24);
        let q: Vec<f32> = (0..heads * d).map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5).collect();
        let k: Vec<f32> = (0..kv_heads * cap * d).map(|i| ((i * 5) % 13) as f32 / 13.0 - 0.5).collect();
        let v: Vec<f32> = (0..kv_heads * cap * d).map(|i| ((i * 3) % 17) as f32 / 17.0).collect();
        let mut out = vec![f32::NAN; heads * d];
        decode_attention_on(
            vec![DecodeQuery { q: &q, k: &k, v: &v, capacity: cap, len, out: &mut out }],
            heads,
            kv_heads,
            d,
            path,
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
                let got = out[h * d + i];
                assert!((got - want).abs() < 1e-5, "{path:?}, d {d}, len {len}, head {h}, {i}: {got} vs {want}");
            }
        }
    }
}
