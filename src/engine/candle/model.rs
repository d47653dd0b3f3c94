//! pdsim's llama forward pass on candle tensors, batched over requests, each with its own
//! [`KvCache`].
//!
//! One call processes any mix of sequences: a prefill batch (several prompts), a decode step
//! (one token for each of several requests at different context lengths), or both. Every matrix
//! multiply runs once over all the step's tokens; attention runs per sequence against its own
//! cache. Grouped-query attention multiplies each KV head with its group of query heads at once
//! (no copies of K and V per query head).

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};

use super::config::LlamaConfig;
use super::kernels::attention::{decode_attention, DecodeQuery};
use super::kernels::bf16::Bf16Matrix;
use super::kernels::exp::silu_mul;
use super::kernels::huge_pages::Arena;
use super::kernels::prompt_attention::{prompt_attention, PromptQuery};
use super::kernels::q8::Q8Matrix;
use super::kv_cache::KvCache;
use super::LoadError;

/// How the matrix weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// Dequantized to f32 and multiplied in f32: the reference path.
    F32,
    /// Requantized to 8-bit blocks of 32 (the Q8_0 scheme) and multiplied by pdsim's VNNI
    /// kernel against 8-bit activations. (Q4_1, the default model's format, has no SIMD kernel
    /// in candle, and candle's quantized matmul reads the weights once per activation row.)
    Q8_0,
    /// As stored in the file.
    Native,
    /// bf16, multiplied with AVX-512 BF16 dot products (f32 accumulation).
    Bf16,
    /// The fastest path for each row on this CPU: sequences of few tokens (decode) stream the
    /// Q8_0 weights; sequences bringing many tokens to a step (prompts) go through Q8_0 too
    /// where the CPU has 8-bit dot products (VNNI), and through a bf16 copy where it does
    /// not: see [`mixed_prompts_in_bf16`].
    Mixed,
    /// Q8_0 for decode and bf16 for prompts on any CPU: `mixed` as it is where the CPU lacks
    /// VNNI (prompts at bf16's precision, more slowly on a CPU with VNNI).
    Q8Bf16,
}

impl WeightFormat {
    /// Every format, `mixed` (the default) first.
    pub const ALL: [WeightFormat; 6] = [
        WeightFormat::Mixed,
        WeightFormat::Q8_0,
        WeightFormat::Q8Bf16,
        WeightFormat::Bf16,
        WeightFormat::F32,
        WeightFormat::Native,
    ];

    pub fn parse(s: &str) -> Option<WeightFormat> {
        WeightFormat::ALL.into_iter().find(|f| f.name() == s)
    }

    /// The names [`parse`](Self::parse) takes, for error messages: `"mixed", "q8_0", … or "native"`.
    pub fn expected() -> String {
        let names: Vec<String> = WeightFormat::ALL.iter().map(|f| format!("\"{}\"", f.name())).collect();
        format!("{} or {}", names[..names.len() - 1].join(", "), names[names.len() - 1])
    }

    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::Native => "native",
            WeightFormat::Mixed => "mixed",
            WeightFormat::Bf16 => "bf16",
            WeightFormat::Q8Bf16 => "q8_0+bf16",
        }
    }

    /// "NAME weights", saying so when `mixed` runs prompts through Q8_0 too on this CPU.
    pub fn label(self) -> String {
        match self {
            WeightFormat::Mixed if !mixed_prompts_in_bf16() => {
                "mixed weights, all 8-bit on this CPU: AVX-512 VNNI".into()
            }
            f => format!("{} weights", f.name()),
        }
    }
}

/// Whether [`WeightFormat::Mixed`] keeps a bf16 copy for prompts on this CPU: only where it
/// lacks AVX-512 VNNI. VNNI's 8-bit dot products do 64 multiply-adds per instruction where
/// AVX-512 BF16's do 32, on weights half the size.
/// Measured with `pdsim bench`, prefill of 32/128/512 tokens in tokens/s, Q8_0 against bf16:
/// - an Intel Xeon with VNNI and no BF16 (Ice Lake), 2 threads: 564/515/403 against 376/374/283;
/// - an Intel Xeon with VNNI and BF16 (AMX-class, 2026-11-30), two interleaved pairs at 2
///   threads: 929–973/1191–1271/1056–1156 against 397–431/477–502/462–488 (×2.2–2.5), and at
///   one thread 777/957/730 against 266/307/276 (×2.6–3.1).
///
/// On the AMD EPYC (VNNI and BF16) the bf16 copy was chosen against f32, before the 8-bit
/// kernel was packed by panels; the two were not compared there since.
/// Without VNNI the bf16 copy stays: before the AVX2 kernels (2026-12-02) the 8-bit kernel's
/// portable loop was the slower one by far; the AVX2 8-bit kernel and the AVX2 bf16 one were
/// not yet timed against each other for prompts.
pub fn mixed_prompts_in_bf16() -> bool {
    !super::kernels::cpu::vnni()
}

/// Sequences bringing at least this many tokens to a step go through the bf16 copy of
/// [`WeightFormat::Mixed`] weights, the others through Q8_0. Deciding per sequence (not per
/// step) keeps a request's numerics independent of what it is batched with.
pub const MIXED_WIDE_MIN_TOKENS: usize = 16;

/// A weight matrix: one form for narrow sequences, and for [`WeightFormat::Mixed`] a second
/// form for wide ones.
struct Linear {
    q: Quantized,
    wide: Option<Quantized>,
}

/// The narrow path of a [`Linear`]: pdsim's weight-stationary Q8 kernel, or candle's.
enum Quantized {
    Q8(Q8Matrix),
    Bf16(Bf16Matrix),
    Candle(QMatMul),
}

impl Quantized {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Quantized::Candle(q) => q.forward(x),
            Quantized::Q8(q) => own_kernel(x, q.out_features(), |data, m| q.matmul(data, m)),
            Quantized::Bf16(q) => own_kernel(x, q.out_features(), |data, m| q.matmul(data, m)),
        }
    }
}

impl Linear {
    /// `x`'s first `wide_rows` rows use the wide form (when there is one), the rest the narrow one.
    fn forward(&self, x: &Tensor, wide_rows: usize) -> Result<Tensor> {
        let rows = x.dim(0)?;
        match &self.wide {
            Some(f) if wide_rows >= rows => f.forward(x),
            Some(f) if wide_rows > 0 => Tensor::cat(
                &[f.forward(&x.narrow(0, 0, wide_rows)?)?, self.q.forward(&x.narrow(0, wide_rows, rows - wide_rows)?)?],
                0,
            ),
            _ => self.q.forward(x),
        }
    }
}

/// Runs one of pdsim's kernels (which work on plain row-major slices) on a `[m, in]` tensor.
fn own_kernel(x: &Tensor, out_features: usize, matmul: impl Fn(&[f32], usize) -> Vec<f32>) -> Result<Tensor> {
    let m = x.dim(0)?;
    let data = x.flatten_all()?.to_vec1::<f32>()?;
    Tensor::from_vec(matmul(&data, m), (m, out_features), x.device())
}

/// A weight matrix as f32 rows: (data, out, in).
fn f32_rows(q: &QTensor) -> Result<(Vec<f32>, usize, usize)> {
    let f = q.dequantize(&Device::Cpu)?;
    let (out, inp) = f.dims2()?;
    Ok((f.flatten_all()?.to_vec1::<f32>()?, out, inp))
}

/// pdsim's bf16 copy of a weight matrix, kept in `arena`.
fn bf16_matrix(q: &QTensor, arena: &Arena) -> Result<Bf16Matrix> {
    let (data, out, inp) = f32_rows(q)?;
    Ok(Bf16Matrix::from_f32(&data, out, inp).into_arena(arena))
}

/// pdsim's Q8 copy of a weight matrix, kept in `arena`.
fn q8_matrix(q: &QTensor, arena: &Arena) -> Result<Q8Matrix> {
    let (data, out, inp) = f32_rows(q)?;
    Ok(Q8Matrix::from_f32(&data, out, inp).into_arena(arena))
}

/// One transformer block. Q, K and V are one matrix (their rows stacked), and so are the
/// gate and up projections: one parallel pass each instead of three and two.
struct Layer {
    attn_norm: Tensor,
    wqkv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    w_gate_up: Linear,
    w_down: Linear,
}

/// A loaded llama model.
pub struct Llama {
    pub config: LlamaConfig,
    pub format: WeightFormat,
    device: Device,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// One sequence's part of a forward call: `tokens` go at the end of its `kv` cache.
pub struct SeqInput<'a> {
    pub tokens: &'a [u32],
    pub kv: &'a mut KvCache,
}

/// A GGUF file starts with the bytes `GGUF`; anything else (an empty file, a text file) is said
/// to be no model before candle reads it as one ("unknown magic 0x746f6f72").
fn check_magic(file: &mut std::fs::File) -> std::result::Result<(), LoadError> {
    use std::io::{Read, Seek};
    let mut magic = [0u8; 4];
    let read = file.read(&mut magic).unwrap_or(0);
    if read < 4 || &magic != b"GGUF" {
        let what = if read == 0 {
            "an empty file".to_owned()
        } else {
            format!("it starts with {:?}", String::from_utf8_lossy(&magic[..read]))
        };
        return Err(LoadError::NotGguf(what));
    }
    file.rewind().map_err(|e| LoadError::Gguf(e.to_string()))
}

impl Llama {
    /// Loads a llama-family GGUF file; the metadata gives the hyper-parameters.
    pub fn load(path: &Path, format: WeightFormat) -> std::result::Result<(Llama, gguf_file::Content), LoadError> {
        let mut file = std::fs::File::open(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
        check_magic(&mut file)?;
        // Only the message: candle's error also carries a backtrace when RUST_BACKTRACE is set.
        let content = gguf_file::Content::read(&mut file).map_err(|e| LoadError::Gguf(super::error_message(&e)))?;
        let config = LlamaConfig::from_metadata(&content.metadata)?;
        let device = Device::Cpu;
        let mut tensor = |name: &str| -> std::result::Result<QTensor, LoadError> {
            content.tensor(&mut file, name, &device).map_err(|e| LoadError::Gguf(format!("tensor `{name}`: {e}")))
        };
        let c = |e: candle_core::Error| LoadError::Gguf(super::error_message(&e));
        // pdsim's kernels' weights, on huge pages (candle's formats keep candle's storage).
        let arena = Arena::new();
        let matrix = |q: QTensor| -> std::result::Result<Linear, LoadError> {
            Ok(match format {
                WeightFormat::F32 => {
                    Linear { q: Quantized::Candle(QMatMul::Tensor(q.dequantize(&Device::Cpu).map_err(c)?)), wide: None }
                }
                WeightFormat::Q8_0 => Linear { q: Quantized::Q8(q8_matrix(&q, &arena).map_err(c)?), wide: None },
                WeightFormat::Native => {
                    Linear { q: Quantized::Candle(QMatMul::from_qtensor(q).map_err(c)?), wide: None }
                }
                WeightFormat::Bf16 => Linear { q: Quantized::Bf16(bf16_matrix(&q, &arena).map_err(c)?), wide: None },
                WeightFormat::Mixed | WeightFormat::Q8Bf16 => Linear {
                    q: Quantized::Q8(q8_matrix(&q, &arena).map_err(c)?),
                    wide: match format == WeightFormat::Q8Bf16 || mixed_prompts_in_bf16() {
                        true => Some(Quantized::Bf16(bf16_matrix(&q, &arena).map_err(c)?)),
                        false => None,
                    },
                },
            })
        };
        let vector = |q: QTensor| q.dequantize(&Device::Cpu).map_err(c);
        // Stacks the rows of several matrices (same input size) into one, in the original
        // storage type for `native`, so one matrix multiply computes all their outputs.
        let stacked = |parts: Vec<QTensor>| -> std::result::Result<Linear, LoadError> {
            let dtype = parts[0].dtype();
            let f = parts.iter().map(|q| q.dequantize(&Device::Cpu)).collect::<Result<Vec<_>>>().map_err(c)?;
            let cat = Tensor::cat(&f, 0).map_err(c)?;
            let q = QTensor::quantize(&cat, if format == WeightFormat::Native { dtype } else { GgmlDType::F32 })
                .map_err(c)?;
            matrix(q)
        };
        let embed_q = tensor("token_embd.weight")?;
        let embed = embed_q.dequantize(&device).map_err(c)?;
        let lm_head = match tensor("output.weight") {
            Ok(q) => matrix(q)?,
            Err(_) => matrix(embed_q)?,
        };
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let mut t = |n: &str| tensor(&format!("blk.{i}.{n}.weight"));
            layers.push(Layer {
                attn_norm: vector(t("attn_norm")?)?,
                wqkv: stacked(vec![t("attn_q")?, t("attn_k")?, t("attn_v")?])?,
                wo: matrix(t("attn_output")?)?,
                ffn_norm: vector(t("ffn_norm")?)?,
                w_gate_up: stacked(vec![t("ffn_gate")?, t("ffn_up")?])?,
                w_down: matrix(t("ffn_down")?)?,
            });
        }
        let norm = vector(tensor("output_norm.weight")?)?;
        let (cos, sin) = rope_tables(&config);
        Ok((Llama { config, format, device, embed, layers, norm, lm_head, cos, sin }, content))
    }

    /// A cache for one request of up to `capacity` tokens (prompt + output).
    pub fn new_kv(&self, capacity: usize) -> Result<KvCache> {
        let c = &self.config;
        Ok(KvCache::new(c.layers, c.kv_heads, c.head_dim, capacity))
    }

    /// Runs the sequences' new tokens through the model, appending to their caches, and returns
    /// the logits after each sequence's last token: `[sequences, vocab]`.
    pub fn forward(&self, seqs: &mut [SeqInput<'_>]) -> Result<Tensor> {
        let c = &self.config;
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut spans = vec![(0, 0, 0); seqs.len()];
        // Wide sequences' tokens first, so the bf16 rows of mixed weights are one block.
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| seqs[i].tokens.len() < MIXED_WIDE_MIN_TOKENS);
        let wide = order
            .iter()
            .take_while(|&&i| seqs[i].tokens.len() >= MIXED_WIDE_MIN_TOKENS)
            .map(|&i| seqs[i].tokens.len())
            .sum();
        for &i in &order {
            let s = &seqs[i];
            if s.tokens.is_empty() {
                candle_core::bail!("a sequence with no tokens");
            }
            let start = s.kv.len();
            if start + s.tokens.len() > c.context {
                candle_core::bail!("{} tokens exceed the model's context of {}", start + s.tokens.len(), c.context);
            }
            spans[i] = (ids.len(), s.tokens.len(), start);
            ids.extend_from_slice(s.tokens);
            positions.extend((start..start + s.tokens.len()).map(|p| p as u32));
        }
        let total = ids.len();
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        let eps = c.rms_eps as f32;
        let (hd, kvd) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let qkv = layer.wqkv.forward(&h, wide)?.flatten_all()?.to_vec1::<f32>()?;
            let (mut q, mut k, mut v) =
                (Vec::with_capacity(total * hd), Vec::with_capacity(total * kvd), Vec::with_capacity(total * kvd));
            for row in qkv.chunks_exact(hd + 2 * kvd) {
                q.extend_from_slice(&row[..hd]);
                k.extend_from_slice(&row[hd..hd + kvd]);
                v.extend_from_slice(&row[hd + kvd..]);
            }
            self.rotate(&mut q, c.heads, &positions);
            self.rotate(&mut k, c.kv_heads, &positions);
            let mut attn = vec![0f32; total * hd];
            for (s, &(offset, n, _)) in seqs.iter_mut().zip(&spans) {
                s.kv.write(li, &k[offset * kvd..(offset + n) * kvd], &v[offset * kvd..(offset + n) * kvd])?;
            }
            // Decode sequences (one token) together through one kernel, prompts through another.
            // Each sequence's rows of the output, in token order (offsets follow `order`).
            let mut slots: Vec<Option<&mut [f32]>> = (0..seqs.len()).map(|_| None).collect();
            let mut rest: &mut [f32] = &mut attn;
            for &i in &order {
                let (mine, tail) = std::mem::take(&mut rest).split_at_mut(spans[i].1 * hd);
                slots[i] = Some(mine);
                rest = tail;
            }
            let outs = slots.into_iter().map(|o| o.expect("every sequence has rows"));
            let (mut decode, mut prompts) = (Vec::new(), Vec::new());
            for ((s, &(offset, n, start)), out) in seqs.iter().zip(&spans).zip(outs) {
                let (k, v) = s.kv.layer(li);
                let q = &q[offset * hd..(offset + n) * hd];
                let capacity = s.kv.capacity();
                if n == 1 {
                    decode.push(DecodeQuery { q, k, v, capacity, len: start + 1, out });
                } else {
                    prompts.push(PromptQuery { q, k, v, capacity, start, out });
                }
            }
            decode_attention(decode, c.heads, c.kv_heads, c.head_dim);
            prompt_attention(prompts, c.heads, c.kv_heads, c.head_dim);
            let attn = Tensor::from_vec(attn, (total, hd), &self.device)?;
            x = (x + layer.wo.forward(&attn, wide)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let gate_up = layer.w_gate_up.forward(&h, wide)?.flatten_all()?.to_vec1::<f32>()?;
            let ffn = c.ffn;
            let mut act = Vec::with_capacity(total * ffn);
            silu_mul(&gate_up, ffn, &mut act);
            let act = Tensor::from_vec(act, (total, ffn), &self.device)?;
            x = (x + layer.w_down.forward(&act, wide)?)?;
        }
        for (s, &(_, n, _)) in seqs.iter_mut().zip(&spans) {
            s.kv.advance(n);
        }
        let last: Vec<u32> = spans.iter().map(|&(offset, n, _)| (offset + n - 1) as u32).collect();
        let last = Tensor::from_vec(last, spans.len(), &self.device)?;
        let x = candle_nn::ops::rms_norm(&x.index_select(&last, 0)?, &self.norm, eps)?;
        self.lm_head.forward(&x, 0)
    }

    /// Rotary embedding in place on `x` (`[tokens × heads·head_dim]`), interleaved pairs
    /// (GGUF llama weights are permuted for GPT-J-style rotation).
    fn rotate(&self, x: &mut [f32], heads: usize, positions: &[u32]) {
        let d = self.config.head_dim;
        let half = d / 2;
        for (t, &pos) in positions.iter().enumerate() {
            let (cos, sin) = (&self.cos[pos as usize * half..][..half], &self.sin[pos as usize * half..][..half]);
            for h in 0..heads {
                let v = &mut x[(t * heads + h) * d..][..d];
                for i in 0..half {
                    let (a, b) = (v[2 * i], v[2 * i + 1]);
                    v[2 * i] = a * cos[i] - b * sin[i];
                    v[2 * i + 1] = a * sin[i] + b * cos[i];
                }
            }
        }
    }
}

/// cos and sin of position × frequency, `[context × head_dim/2]`, computed in f32 as candle's
/// tensor version did (so results match the reference to the same precision).
fn rope_tables(c: &LlamaConfig) -> (Vec<f32>, Vec<f32>) {
    let half = c.head_dim / 2;
    let inv: Vec<f32> = (0..half).map(|i| 1.0 / c.rope_base.powf(2.0 * i as f32 / c.head_dim as f32)).collect();
    let mut cos = Vec::with_capacity(c.context * half);
    let mut sin = Vec::with_capacity(c.context * half);
    for t in 0..c.context {
        for f in &inv {
            let a = t as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    (cos, sin)
}

/// The logits rows as vectors.
pub fn rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    logits.to_dtype(DType::F32)?.to_vec2::<f32>()
}

#[cfg(test)]
mod tests {
    use super::WeightFormat;

    #[test]
    fn every_weight_format_parses_from_its_name_and_the_error_lists_them() {
        for f in WeightFormat::ALL {
            assert_eq!(WeightFormat::parse(f.name()), Some(f));
        }
        assert_eq!(WeightFormat::parse("q4_1"), None);
        assert_eq!(WeightFormat::expected(), "\"mixed\", \"q8_0\", \"q8_0+bf16\", \"bf16\", \"f32\" or \"native\"");
    }
}
