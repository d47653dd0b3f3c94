//! Causal prompt attention: every new token of a prompt against the cache up to its own
//! position, for every sequence and KV head of a step in one parallel pass.
//!
//! candle's tensor path (two matmuls, a mask tensor, a softmax, copies of the cache) took a
//! third of a 512-token prefill for under a tenth of its arithmetic. Here each job is one KV head
//! and a block of [`BLOCK_TOKENS`] tokens: its query rows (the heads sharing that KV head, for
//! each token) are multiplied by the transposed keys in register tiles of 4 rows × 64 keys, the
//! masked softmax runs per row, and the weights multiply the value rows in tiles of 4 rows × 64
//! dimensions. A job reads keys only up to its last token's position, so the masked upper
//! triangle costs at most one block. Jobs never depend on what else is in the batch, so a
//! sequence's numerics do not either.

use rayon::prelude::*;

use super::exp::exp_in_place;

/// Tokens per job: with SmolLM2's three query heads per KV head, 48 query rows share each key
/// and value row loaded, and a 512-token prompt makes 96 jobs to spread over the threads.
const BLOCK_TOKENS: usize = 16;

/// One prompt (or prompt chunk) of a step.
pub struct PromptQuery<'a> {
    /// `[n × heads·head_dim]`, token-major, already rotated.
    pub q: &'a [f32],
    /// The cache of the layer: `[kv_heads × capacity × head_dim]`, positions `0..start+n` valid
    /// (this step's tokens already written).
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub capacity: usize,
    /// Tokens in the cache before this step's: token `t` sits at position `start + t`.
    pub start: usize,
    /// `[n × heads·head_dim]`, written.
    pub out: &'a mut [f32],
}

pub fn prompt_attention(seqs: Vec<PromptQuery<'_>>, heads: usize, kv_heads: usize, head_dim: usize) {
    attention(seqs, Shape { heads, kv_heads, d: head_dim }, simd(head_dim));
}

#[derive(Clone, Copy)]
struct Shape {
    heads: usize,
    kv_heads: usize,
    d: usize,
}

impl Shape {
    fn group(self) -> usize {
        self.heads / self.kv_heads
    }
}

/// One job: sequence `seq`, KV head `kv`, tokens `a..b`.
#[derive(Clone, Copy)]
struct Job {
    seq: usize,
    kv: usize,
    a: usize,
    b: usize,
}

fn attention(mut seqs: Vec<PromptQuery<'_>>, shape: Shape, simd: bool) {
    let mut jobs = Vec::new();
    for (seq, pq) in seqs.iter().enumerate() {
        let n = pq.q.len() / (shape.heads * shape.d);
        for kv in 0..shape.kv_heads {
            for a in (0..n).step_by(BLOCK_TOKENS) {
                jobs.push(Job { seq, kv, a, b: (a + BLOCK_TOKENS).min(n) });
            }
        }
    }
    // Both paths read keys transposed, so that a row's scores are computed all at once along
    // the positions (16 a register on the vector path): each (sequence, KV head) is transposed
    // once, for all its blocks.
    let heads: Vec<(usize, usize)> = (0..seqs.len()).flat_map(|s| (0..shape.kv_heads).map(move |kv| (s, kv))).collect();
    let transposed: Vec<Keys> = heads.par_iter().map(|&(s, kv)| Keys::transpose(&seqs[s], kv, shape)).collect();
    // Each job's rows come back in its own buffer: a block's output rows interleave with other
    // KV heads' in the token-major output, so jobs cannot own disjoint slices of it.
    let blocks: Vec<Vec<f32>> = jobs
        .par_iter()
        .map(|&job| block(&seqs[job.seq], &transposed[job.seq * shape.kv_heads + job.kv], job, shape, simd))
        .collect();
    let (group, d) = (shape.group(), shape.d);
    for (job, rows) in jobs.iter().zip(&blocks) {
        let out = &mut *seqs[job.seq].out;
        for (t, rows) in (job.a..job.b).zip(rows.chunks_exact(group * d)) {
            let at = (t * shape.heads + job.kv * group) * d;
            out[at..at + group * d].copy_from_slice(rows);
        }
    }
}

/// One KV head's keys of a sequence, transposed: `[d × stride]`, zero past the last position.
struct Keys {
    kt: Vec<f32>,
    stride: usize,
}

impl Keys {
    fn transpose(pq: &PromptQuery<'_>, kv: usize, shape: Shape) -> Keys {
        let d = shape.d;
        let len = pq.start + pq.q.len() / (shape.heads * d);
        let stride = len.next_multiple_of(16);
        let mut kt = vec![0f32; d * stride];
        let keys = &pq.k[kv * pq.capacity * d..][..len * d];
        for (j, key) in keys.chunks_exact(d).enumerate() {
            for (c, &x) in key.iter().enumerate() {
                kt[c * stride + j] = x;
            }
        }
        Keys { kt, stride }
    }
}

/// The output rows of one job, `[(b − a)·group × d]`, ordered by token then query head. `keys`:
/// the KV head's transposed keys; `simd`: the vector path.
fn block(pq: &PromptQuery<'_>, keys: &Keys, job: Job, shape: Shape, simd: bool) -> Vec<f32> {
    let (group, d) = (shape.group(), shape.d);
    let len = pq.start + job.b; // keys the block's last token sees
    let rows = (job.b - job.a) * group;
    let scale = 1.0 / (d as f32).sqrt();
    let mut q = Vec::with_capacity(rows * d);
    for t in job.a..job.b {
        let at = (t * shape.heads + job.kv * group) * d;
        q.extend(pq.q[at..at + group * d].iter().map(|x| x * scale));
    }
    let base = job.kv * pq.capacity * d;
    let values = &pq.v[base..base + len * d];
    // Scores, then weights: `[rows × stride]`, a row's keys past its own position zero.
    let stride = len.next_multiple_of(16);
    let mut p = vec![0f32; rows * stride];
    if simd {
        // Safety: `simd` only where simd() found AVX-512 and d a multiple of 16; both strides
        // are multiples of 16 and the block's fits in the keys'.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::scores(&q, &keys.kt, keys.stride, d, stride, &mut p)
        }
    } else {
        scores(&q, &keys.kt, keys.stride, d, stride, &mut p);
    }
    for (r, row) in p.chunks_exact_mut(stride).enumerate() {
        let (live, masked) = row.split_at_mut(pq.start + job.a + r / group + 1);
        masked.fill(0.0);
        let max = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        live.iter_mut().for_each(|s| *s -= max);
        exp_in_place(live);
        let sum: f32 = live.iter().sum();
        live.iter_mut().for_each(|s| *s /= sum);
    }
    let mut out = vec![0f32; rows * d];
    weighted_sum(&p, stride, values, d, group, pq.start + job.a, &mut out, simd);
    out
}

/// `p[r·stride + j] = q_r · k_j` for every query row r and key j < stride, from the transposed
/// keys (`kt`: `[d × kstride]`; `p` starts at zero). Each score is a chain of fused
/// multiply-adds in order of c, the same arithmetic as each lane of the vector path; a row's
/// scores advance together, so the inner loop runs along contiguous positions and the
/// compiler vectorizes it (one score at a time, a chain along c, stays scalar: on an AVX2 CPU a
/// 512-token prefill ran at 202 tok/s with it).
fn scores(q: &[f32], kt: &[f32], kstride: usize, d: usize, stride: usize, p: &mut [f32]) {
    for (qr, row) in q.chunks_exact(d).zip(p.chunks_exact_mut(stride)) {
        for (c, &x) in qr.iter().enumerate() {
            for (s, &k) in row.iter_mut().zip(&kt[c * kstride..][..stride]) {
                *s = x.mul_add(k, *s);
            }
        }
    }
}

/// `out_r = Σ_j p[r·stride + j] · v_j`, where row r (token `r / group` of the block, at position
/// `first + r / group`) reads values up to its own position: the weights past it are zero.
#[allow(clippy::too_many_arguments)]
fn weighted_sum(
    p: &[f32],
    stride: usize,
    values: &[f32],
    d: usize,
    group: usize,
    first: usize,
    out: &mut [f32],
    simd: bool,
) {
    let live = |r: usize| first + r / group + 1;
    #[cfg(target_arch = "x86_64")]
    if simd {
        // Safety: the caller passes `simd` only where simd() found AVX-512 and d a multiple of 16.
        return unsafe { x86::weighted_sum(p, stride, values, d, &live, out) };
    }
    for (r, (o, w)) in out.chunks_exact_mut(d).zip(p.chunks_exact(stride)).enumerate() {
        for (&w, value) in w[..live(r)].iter().zip(values.chunks_exact(d)) {
            o.iter_mut().zip(value).for_each(|(o, &x)| *o = w.mul_add(x, *o));
        }
    }
}

/// Whether the AVX-512 path applies: the CPU has it and a head is whole registers.
fn simd(head_dim: usize) -> bool {
    head_dim.is_multiple_of(16) && super::cpu::avx512()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Query rows per register tile.
    const ROWS: usize = 4;
    /// Registers of 16 lanes per tile row: 64 keys (scores) or 64 dimensions (weighted sum).
    const WIDE: usize = 4;

    #[target_feature(enable = "avx512f")]
    /// `p[r·stride + j] = Σ_c q[r][c] · kt[c·kstride + j]` for j < stride.
    pub unsafe fn scores(q: &[f32], kt: &[f32], kstride: usize, d: usize, stride: usize, p: &mut [f32]) {
        debug_assert!(stride <= kstride && kt.len() >= d * kstride);
        let rows = q.len() / d;
        let mut r = 0;
        while r < rows {
            let nr = (rows - r).min(ROWS);
            let mut j = 0;
            while j < stride {
                let nv = ((stride - j) / 16).min(WIDE);
                let (qr, kr, pr) = (q.as_ptr().add(r * d), kt.as_ptr().add(j), p.as_mut_ptr().add(r * stride + j));
                match (nr, nv) {
                    (ROWS, WIDE) => score_tile::<ROWS, WIDE>(qr, kr, pr, d, kstride, stride),
                    (ROWS, _) => (0..nv)
                        .for_each(|v| score_tile::<ROWS, 1>(qr, kr.add(16 * v), pr.add(16 * v), d, kstride, stride)),
                    (_, _) => (0..nr).for_each(|i| {
                        (0..nv).for_each(|v| {
                            score_tile::<1, 1>(
                                qr.add(i * d),
                                kr.add(16 * v),
                                pr.add(i * stride + 16 * v),
                                d,
                                kstride,
                                stride,
                            )
                        })
                    }),
                }
                j += 16 * nv;
            }
            r += nr;
        }
    }

    /// R query rows × V·16 keys: `p[i][16v + l] = Σ_c q[i][c] · kt[c][16v + l]`.
    #[target_feature(enable = "avx512f")]
    unsafe fn score_tile<const R: usize, const V: usize>(
        q: *const f32,
        kt: *const f32,
        p: *mut f32,
        d: usize,
        kstride: usize,
        stride: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for c in 0..d {
            let k: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(kt.add(c * kstride + 16 * v)));
            for (i, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*q.add(i * d + c));
                for (a, &k) in acc.iter_mut().zip(&k) {
                    *a = _mm512_fmadd_ps(x, k, *a);
                }
            }
        }
        store_tile(&acc, p, stride);
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn weighted_sum(
        p: &[f32],
        stride: usize,
        values: &[f32],
        d: usize,
        live: &dyn Fn(usize) -> usize,
        out: &mut [f32],
    ) {
        let rows = out.len() / d;
        let mut r = 0;
        while r < rows {
            let nr = (rows - r).min(ROWS);
            // The tile's last row sees the most values; the others' weights past theirs are zero.
            let len = live(r + nr - 1);
            let mut c = 0;
            while c < d {
                let nv = ((d - c) / 16).min(WIDE);
                let (pr, vr, or) =
                    (p.as_ptr().add(r * stride), values.as_ptr().add(c), out.as_mut_ptr().add(r * d + c));
                match (nr, nv) {
                    (ROWS, WIDE) => sum_tile::<ROWS, WIDE>(pr, vr, or, len, stride, d),
                    (ROWS, _) => {
                        (0..nv).for_each(|v| sum_tile::<ROWS, 1>(pr, vr.add(16 * v), or.add(16 * v), len, stride, d))
                    }
                    (_, _) => (0..nr).for_each(|i| {
                        (0..nv).for_each(|v| {
                            sum_tile::<1, 1>(pr.add(i * stride), vr.add(16 * v), or.add(i * d + 16 * v), len, stride, d)
                        })
                    }),
                }
                c += 16 * nv;
            }
            r += nr;
        }
    }

    /// R rows × V·16 dimensions: `out[i][16v + l] = Σ_{j < len} p[i][j] · values[j][16v + l]`.
    #[target_feature(enable = "avx512f")]
    unsafe fn sum_tile<const R: usize, const V: usize>(
        p: *const f32,
        values: *const f32,
        out: *mut f32,
        len: usize,
        stride: usize,
        d: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for j in 0..len {
            let x: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(values.add(j * d + 16 * v)));
            for (i, acc) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_ps(*p.add(i * stride + j));
                for (a, &x) in acc.iter_mut().zip(&x) {
                    *a = _mm512_fmadd_ps(w, x, *a);
                }
            }
        }
        store_tile(&acc, out, d);
    }

    /// Row i of the tile at `to + i·stride`, its V registers side by side.
    #[target_feature(enable = "avx512f")]
    unsafe fn store_tile<const R: usize, const V: usize>(acc: &[[__m512; V]; R], to: *mut f32, stride: usize) {
        for (i, acc) in acc.iter().enumerate() {
            for (v, &a) in acc.iter().enumerate() {
                _mm512_storeu_ps(to.add(i * stride + 16 * v), a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Heads, KV heads, capacity.
    const HEADS: usize = 6;
    const KV_HEADS: usize = 2;
    const CAPACITY: usize = 80;

    struct Case {
        d: usize,
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
        start: usize,
        n: usize,
    }

    fn case(d: usize, start: usize, n: usize) -> Case {
        let wave = |i: usize, a: usize, m: usize| ((i * a) % m) as f32 / m as f32 - 0.5;
        Case {
            d,
            q: (0..n * HEADS * d).map(|i| wave(i, 7, 11)).collect(),
            k: (0..KV_HEADS * CAPACITY * d).map(|i| wave(i, 5, 13)).collect(),
            v: (0..KV_HEADS * CAPACITY * d).map(|i| wave(i, 3, 17)).collect(),
            start,
            n,
        }
    }

    fn query<'a>(c: &'a Case, out: &'a mut [f32]) -> PromptQuery<'a> {
        PromptQuery { q: &c.q, k: &c.k, v: &c.v, capacity: CAPACITY, start: c.start, out }
    }

    fn run(c: &Case, simd: bool) -> Vec<f32> {
        let mut out = vec![f32::NAN; c.n * HEADS * c.d];
        attention(vec![query(c, &mut out)], Shape { heads: HEADS, kv_heads: KV_HEADS, d: c.d }, simd);
        out
    }

    /// Causal softmax attention in f64, straight from the definition.
    fn direct(c: &Case) -> Vec<f64> {
        let d = c.d;
        let mut out = vec![0f64; c.n * HEADS * d];
        for t in 0..c.n {
            for h in 0..HEADS {
                let kv = h / (HEADS / KV_HEADS);
                let q = &c.q[(t * HEADS + h) * d..][..d];
                let row = |buf: &[f32], j: usize| buf[(kv * CAPACITY + j) * d..][..d].to_vec();
                let s: Vec<f64> = (0..=c.start + t)
                    .map(|j| {
                        q.iter().zip(row(&c.k, j)).map(|(&a, b)| a as f64 * b as f64).sum::<f64>() / (d as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::MIN, f64::max);
                let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                for (j, s) in s.iter().enumerate() {
                    let w = (s - m).exp() / z;
                    for (o, x) in out[(t * HEADS + h) * d..][..d].iter_mut().zip(row(&c.v, j)) {
                        *o += w * x as f64;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_causal_softmax_attention() {
        // d 12: the portable path only; 16 and 64: the AVX-512 path too where the CPU has it.
        // 37 tokens: two whole blocks and a ragged one (rows not a multiple of the tile); a
        // start of 20: a prompt chunk after cached tokens; 1 token: a block of one.
        for d in [12, 16, 64] {
            for (start, n) in [(0, 37), (20, 37), (0, 1), (5, 16)] {
                let c = case(d, start, n);
                let want = direct(&c);
                for simd in [false, simd(d)] {
                    let got = run(&c, simd);
                    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g as f64 - w).abs() < 1e-5,
                            "d {d}, start {start}, n {n}, simd {simd}, {i}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_vector_path_computes_what_the_portable_one_does() {
        // Same operations in the same order (fused multiply-adds along the head dimension, then
        // along the positions): bit for bit equal, so CPUs with and without AVX-512 agree.
        if !simd(64) {
            eprintln!("no AVX-512 on this CPU: only the portable path runs here");
            return;
        }
        let c = case(64, 3, 45);
        assert_eq!(run(&c, true), run(&c, false));
    }

    #[test]
    fn a_sequence_does_not_depend_on_its_batch() {
        let (a, b) = (case(64, 0, 29), case(64, 10, 7));
        let shape = Shape { heads: HEADS, kv_heads: KV_HEADS, d: 64 };
        let (mut oa, mut ob) = (vec![0f32; a.q.len()], vec![0f32; b.q.len()]);
        // The pair in one call, then each alone.
        let simd = simd(64);
        attention(vec![query(&a, &mut oa), query(&b, &mut ob)], shape, simd);
        assert_eq!(oa, run(&a, simd));
        assert_eq!(ob, run(&b, simd));
    }
}
