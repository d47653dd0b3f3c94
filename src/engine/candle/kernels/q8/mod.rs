//! Q8 weight matrices: symmetric 8-bit quantization in blocks of 32 along the input dimension
//! (the GGUF Q8_0 scheme) for weights and activations alike, multiplied with AVX-512 VNNI
//! integer dot products ([`avx512`]), with AVX2 where VNNI is missing ([`avx2`]), and with a
//! portable loop elsewhere.
//!
//! The weights are packed by panels of 16 output columns. For each block of 32 inputs a panel
//! holds eight 64-byte vectors; vector `j` holds inputs `4j..4j+4` of its 16 columns. One
//! `vpdpbusd` then adds four products to each of the 16 columns' integer sums for one activation
//! row, whose four bytes are broadcast from memory. There is no sign fix-up and no horizontal
//! sum: a block's 16 integer sums are rescaled at once (a conversion and a multiply-add), so
//! eight of every eleven instructions are dot products. (The earlier row-major kernel spent
//! four instructions around each dot product and reached about 70 GMAC/s here.)
//!
//! `vpdpbusd` multiplies unsigned by signed bytes: the weights are stored offset by +128 as
//! unsigned bytes, and 128 × each activation block's sum is subtracted back (the integer sum
//! starts from it), so the integer dot products stay exact.
//!
//! Weight-stationary: each task owns a panel and sweeps every activation row, so the weights
//! are read from memory once per step whatever the batch. Every row goes through the same
//! instruction sequence whatever rows are beside it, so results do not change with the batch.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use super::huge_pages::{Arena, Stored};
use super::tiles::{for_each_panel, OutPtr, PANEL};

/// Elements per quantization block.
pub const BLOCK: usize = 32;

/// Inputs per 32-bit lane of a dot product instruction.
const QUAD: usize = 4;

/// Packed bytes per (panel, block): 16 columns × 32 inputs.
const PANEL_BLOCK_BYTES: usize = PANEL * BLOCK;

/// Activation rows per kernel call (register tile height: 2 registers per row).
const ROWS_PER_CALL: usize = 8;

/// Rows quantized to i8 with one f32 scale per block of 32: `value ≈ q · scale`.
#[derive(Debug, Clone)]
pub struct Q8Rows {
    pub qs: Vec<i8>,
    pub scales: Vec<f32>,
}

impl Q8Rows {
    /// Quantizes `data` (`rows × cols`, row-major); `cols` must be a multiple of 32. Values
    /// round to the nearest step, ties to even (what the vector conversion does).
    pub fn quantize(data: &[f32], rows: usize, cols: usize) -> Q8Rows {
        assert_eq!(cols % BLOCK, 0, "Q8 rows need a multiple of {BLOCK} columns, got {cols}");
        assert_eq!(data.len(), rows * cols);
        let mut qs = vec![0i8; rows * cols];
        let mut scales = vec![0f32; rows * cols / BLOCK];
        let block = block_fn();
        for ((src, dst), scale) in data.chunks_exact(BLOCK).zip(qs.chunks_exact_mut(BLOCK)).zip(&mut scales) {
            // Safety: both are blocks of 32, as block_fn's functions need.
            *scale = unsafe { block(src, dst) };
        }
        Q8Rows { qs, scales }
    }
}

/// Quantizes one block of 32 values, returning its scale.
type BlockFn = unsafe fn(&[f32], &mut [i8]) -> f32;

fn block_fn() -> BlockFn {
    #[cfg(target_arch = "x86_64")]
    if super::cpu::vnni() {
        return avx512::quantize_block;
    }
    quantize_block
}

unsafe fn quantize_block(src: &[f32], dst: &mut [i8]) -> f32 {
    let amax = src.iter().fold(0f32, |a, &x| a.max(x.abs()));
    let scale = amax / 127.0;
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for (q, &x) in dst.iter_mut().zip(src) {
        *q = (x * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// Quantized activation rows, with each block's correction for the weights' +128 offset.
struct Activations {
    q: Q8Rows,
    /// −128 × Σ q per (row, block).
    corr: Vec<i32>,
    /// The same, laid out for the vector kernel (absent on the portable path).
    groups: Option<RowGroups>,
}

impl Activations {
    fn quantize(x: &[f32], m: usize, k: usize, grouped: bool) -> Activations {
        let q = Q8Rows::quantize(x, m, k);
        let corr = q.qs.chunks_exact(BLOCK).map(|b| -128 * b.iter().map(|&v| v as i32).sum::<i32>()).collect();
        let mut a = Activations { q, corr, groups: None };
        if grouped {
            a.groups = Some(RowGroups::new(&a, m, k));
        }
        a
    }
}

/// Activation rows in groups of [`ROWS_PER_CALL`] (a kernel call's rows), interleaved so that
/// a call reads everything through one pointer at fixed offsets. With a pointer per row, eight
/// rows' addresses did not fit the general registers beside the loop's own: the kernel
/// reloaded them from the stack around its dot products and reached about a fifth of the
/// dot-product units' rate on the Xeon.
struct RowGroups {
    /// Per (group, block, quad j, row): the row's inputs `4j..4j+4` of the block, as one i32.
    quads: Vec<i32>,
    /// Per (group, block, row): the row's [`Activations::corr`] and scale.
    corr: Vec<i32>,
    scales: Vec<f32>,
}

/// i32 quads per (group, block): 8 quads × 8 rows.
const GROUP_BLOCK_QUADS: usize = BLOCK / QUAD * ROWS_PER_CALL;

impl RowGroups {
    /// Rows past `m` in the last group are zero (they are never stored).
    fn new(a: &Activations, m: usize, k: usize) -> RowGroups {
        let (nb, groups) = (k / BLOCK, m.div_ceil(ROWS_PER_CALL));
        let mut quads = vec![0i32; groups * nb * GROUP_BLOCK_QUADS];
        let mut corr = vec![0i32; groups * nb * ROWS_PER_CALL];
        let mut scales = vec![0f32; groups * nb * ROWS_PER_CALL];
        for r in 0..m {
            let (g, slot) = (r / ROWS_PER_CALL, r % ROWS_PER_CALL);
            for b in 0..nb {
                let at = (g * nb + b) * ROWS_PER_CALL + slot;
                corr[at] = a.corr[r * nb + b];
                scales[at] = a.q.scales[r * nb + b];
                let block = &a.q.qs[r * k + b * BLOCK..][..BLOCK];
                for (j, quad) in block.chunks_exact(QUAD).enumerate() {
                    let bytes = [quad[0] as u8, quad[1] as u8, quad[2] as u8, quad[3] as u8];
                    quads[(g * nb + b) * GROUP_BLOCK_QUADS + j * ROWS_PER_CALL + slot] = i32::from_le_bytes(bytes);
                }
            }
        }
        RowGroups { quads, corr, scales }
    }
}

/// A weight matrix `[out, in]` (one row per output), quantized and packed by panels.
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    out: usize,
    inp: usize,
    /// Per (panel, block): 8 vectors of 16 columns × 4 inputs, each byte `q + 128`.
    packed: Stored<u8>,
    /// Per (panel, block): the 16 columns' scales (0 for the padding of a last, partial panel).
    scales: Stored<f32>,
}

impl Q8Matrix {
    pub fn from_f32(data: &[f32], out: usize, inp: usize) -> Q8Matrix {
        let rows = Q8Rows::quantize(data, out, inp);
        let (nb, panels) = (inp / BLOCK, out.div_ceil(PANEL));
        // Padding columns: q = 0 (stored as 128) with scale 0.
        let mut packed = vec![128u8; panels * nb * PANEL_BLOCK_BYTES];
        let mut scales = vec![0f32; panels * nb * PANEL];
        for o in 0..out {
            let (p, col) = (o / PANEL, o % PANEL);
            for b in 0..nb {
                let base = (p * nb + b) * PANEL_BLOCK_BYTES;
                for (i, &q) in rows.qs[o * inp + b * BLOCK..][..BLOCK].iter().enumerate() {
                    packed[base + (i / QUAD) * PANEL * QUAD + col * QUAD + i % QUAD] = (q as i16 + 128) as u8;
                }
                scales[(p * nb + b) * PANEL + col] = rows.scales[o * nb + b];
            }
        }
        Q8Matrix { out, inp, packed: packed.into(), scales: scales.into() }
    }

    /// The same matrix with its weights in `arena` (on huge pages: see [`super::huge_pages`]).
    pub fn into_arena(self, arena: &Arena) -> Q8Matrix {
        Q8Matrix { packed: arena.store(&self.packed), scales: arena.store(&self.scales), ..self }
    }

    pub fn out_features(&self) -> usize {
        self.out
    }

    /// `x` (`m × in`, row-major) times the transposed matrix: `m × out`, row-major. Each output
    /// row depends only on its own input row, so results do not change with the batch.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.matmul_on(x, m, Path::of_cpu())
    }

    /// [`matmul`](Self::matmul) on the given path, which the CPU must have.
    fn matmul_on(&self, x: &[f32], m: usize, path: Path) -> Vec<f32> {
        let act = Activations::quantize(x, m, self.inp, path != Path::Portable);
        // Safety: for_each_panel hands each (panel, rows) to exactly one call; the caller
        // chose a path this CPU has.
        for_each_panel(m, self.out, ROWS_PER_CALL, |p, r0, rows, out| unsafe {
            path.panel(self, &act, p, r0, rows, out)
        })
    }

    /// Output columns of panel `p` (16 but for a last, partial panel).
    fn panel_cols(&self, p: usize) -> usize {
        (self.out - p * PANEL).min(PANEL)
    }
}

/// How a panel is computed. The vector paths read the activations as [`RowGroups`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    /// AVX-512 VNNI.
    Vnni,
    /// AVX2 and FMA.
    Avx2,
    Portable,
}

impl Path {
    /// The fastest path this CPU has.
    fn of_cpu() -> Path {
        if super::cpu::vnni() {
            Path::Vnni
        } else if super::cpu::avx2() {
            Path::Avx2
        } else {
            Path::Portable
        }
    }

    /// Rows `r0..r0+rows` (at most [`ROWS_PER_CALL`]) of panel `p`.
    ///
    /// # Safety
    /// The CPU must have the path; `out` must hold the panel's columns of those rows, written
    /// by no other task.
    unsafe fn panel(self, w: &Q8Matrix, a: &Activations, p: usize, r0: usize, rows: usize, out: OutPtr) {
        #[cfg(target_arch = "x86_64")]
        match self {
            Path::Vnni => return avx512::panel(w, a, p, r0, rows, out),
            Path::Avx2 => return avx2::panel(w, a, p, r0, rows, out),
            Path::Portable => {}
        }
        panel_portable(w, a, p, r0, rows, out)
    }
}

/// The reference: per column, per block, the exact integer dot product, then
/// `sum = fma(dot, w_scale · x_scale, sum)` in block order, as the vector kernels do.
unsafe fn panel_portable(w: &Q8Matrix, a: &Activations, p: usize, r0: usize, rows: usize, out: OutPtr) {
    let (k, nb) = (w.inp, w.inp / BLOCK);
    for r in r0..r0 + rows {
        for col in 0..w.panel_cols(p) {
            let mut sum = 0f32;
            for b in 0..nb {
                let base = (p * nb + b) * PANEL_BLOCK_BYTES;
                let x = &a.q.qs[r * k + b * BLOCK..][..BLOCK];
                let mut dot = a.corr[r * nb + b];
                for (i, &xv) in x.iter().enumerate() {
                    dot += w.packed[base + (i / QUAD) * PANEL * QUAD + col * QUAD + i % QUAD] as i32 * xv as i32;
                }
                let scale = w.scales[(p * nb + b) * PANEL + col] * a.q.scales[r * nb + b];
                sum = (dot as f32).mul_add(scale, sum);
            }
            out.write(r, p * PANEL + col, sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cpu;
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| r.gen_range(-1.0..1.0)).collect()
    }

    #[test]
    fn matmul_matches_f32_within_quantization_error() {
        let (m, k, n) = (5, 96, 40);
        let x = random(m * k, 1);
        let w = random(n * k, 2);
        let q = Q8Matrix::from_f32(&w, n, k);
        let got = q.matmul(&x, m);
        for r in 0..m {
            for c in 0..n {
                let want: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                assert!((got[r * n + c] - want).abs() < 0.05, "({r},{c}): {} vs {want}", got[r * n + c]);
            }
        }
        // Each row's result does not depend on the other rows.
        let alone = q.matmul(&x[k..2 * k], 1);
        assert_eq!(&got[n..2 * n], &alone[..]);
    }

    /// The vector paths this CPU has (each is checked against the portable loop where it runs).
    fn vector_paths() -> Vec<Path> {
        let has = [(Path::Vnni, cpu::vnni()), (Path::Avx2, cpu::avx2())];
        has.into_iter().filter(|&(_, here)| here).map(|(path, _)| path).collect()
    }

    #[test]
    fn vector_kernels_equal_portable_kernel_exactly() {
        // 21 rows: calls of 8, 8 and 5 rows; 37 columns: a partial last panel (and on AVX2 a
        // partial half); 7 blocks.
        let (m, k, n) = (21, 32 * 7, 37);
        let x = random(m * k, 3);
        // Large activations exercise the +128 correction near the i8 range's ends.
        let x: Vec<f32> = x.iter().enumerate().map(|(i, v)| if i % 29 == 0 { v * 50.0 } else { *v }).collect();
        let q = Q8Matrix::from_f32(&random(n * k, 4), n, k);
        for path in vector_paths() {
            check_path_against_portable(&q, &x, (m, k, n), path);
        }
        // Narrower than a half panel: only the first half's first columns are real.
        let q = Q8Matrix::from_f32(&random(5 * k, 5), 5, k);
        for path in vector_paths() {
            check_path_against_portable(&q, &x, (m, k, 5), path);
        }
    }

    fn check_path_against_portable(q: &Q8Matrix, x: &[f32], (m, k, n): (usize, usize, usize), path: Path) {
        let fast = q.matmul_on(x, m, path);
        let act = Activations::quantize(x, m, k, false);
        let mut portable = vec![0i8; BLOCK];
        for (b, block) in x.chunks_exact(BLOCK).enumerate() {
            assert_eq!(unsafe { quantize_block(block, &mut portable) }, act.q.scales[b]);
            assert_eq!(portable, act.q.qs[b * BLOCK..(b + 1) * BLOCK], "block {b}");
        }
        let mut slow = vec![f32::NAN; m * n];
        let out = OutPtr(slow.as_mut_ptr(), n);
        for p in 0..n.div_ceil(PANEL) {
            unsafe { panel_portable(q, &act, p, 0, m, out) };
        }
        assert_eq!(fast, slow, "{path:?}");
        // Rows batched with others equal the same rows alone, at every tile height.
        for r in [0, 3, 4, 7, 8, 20] {
            assert_eq!(
                &fast[r * n..(r + 1) * n],
                &q.matmul_on(&x[r * k..(r + 1) * k], 1, path)[..],
                "{path:?} row {r}"
            );
        }
    }
}
