//! Decode attention: one new query per sequence against its own cache, for every sequence and
//! head of a step in one parallel pass. Grouped-query attention: query head `h` reads KV head
//! `h / (heads / kv_heads)`.

use rayon::prelude::*;

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
    // One job per (sequence, head); each owns its slice of the output.
    let mut jobs = Vec::with_capacity(queries.len() * heads);
    for dq in queries {
        for (h, out) in dq.out.chunks_mut(head_dim).enumerate() {
            let kv = h / group;
            let base = kv * dq.capacity * head_dim;
            let span = base..base + dq.len * head_dim;
            jobs.push((&dq.q[h * head_dim..(h + 1) * head_dim], &dq.k[span.clone()], &dq.v[span], out));
        }
    }
    jobs.into_par_iter().with_min_len(4).for_each(|(q, k, v, out)| {
        let mut scores: Vec<f32> = k.chunks_exact(head_dim).map(|kj| dot(q, kj) * scale).collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        out.fill(0.0);
        for (p, vj) in scores.iter().zip(v.chunks_exact(head_dim)) {
            let w = p / sum;
            for (o, x) in out.iter_mut().zip(vj) {
                *o += w * x;
            }
        }
    });
}

/// A dot product written so the compiler vectorizes it (16 independent partial sums).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_direct_softmax_attention() {
        let (heads, kv_heads, d, cap, len) = (4, 2, 16, 8, 5);
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
            let kv = h / 2;
            let s: Vec<f32> = (0..len)
                .map(|j| (0..d).map(|i| q[h * d + i] * k[(kv * cap + j) * d + i]).sum::<f32>() / (d as f32).sqrt())
                .collect();
            let m = s.iter().copied().fold(f32::MIN, f32::max);
            let z: f32 = s.iter().map(|x| (x - m).exp()).sum();
            for i in 0..d {
                let want: f32 = (0..len).map(|j| (s[j] - m).exp() / z * v[(kv * cap + j) * d + i]).sum();
                assert!((out[h * d + i] - want).abs() < 1e-5);
            }
        }
    }
}
